"""The builtin `national-roster` mapping: the national party-member roster export."""
from __future__ import annotations

import pytest

from mappings import MappingContext, MappingError, load_mapping

ROSTER = load_mapping("national-roster")
BRANCHES = {"第一党支部": "P01", "机关第二党支部": "P02"}
CTX = MappingContext(resolve_party_org=BRANCHES.get)

ROW = {
    "姓名": "张三", "性别": "女", "公民身份号码": "11010519491231002X", "民族": "汉族",
    "出生日期": "1949-12-31", "学历": "大专", "人员类别": "正式党员", "入党日期": "1975/7/1",
    "转为正式党员日期": "1976年7月1日", "所在党支部": "第一党支部", "工作岗位": "退休干部",
    "手机号码": "13800000000", "党籍状态": "",
}


def test_full_row() -> None:
    record = ROSTER.map("party_members", ROW, CTX)
    assert (record.external_id, record.key_field) == ("11010519491231002X", "id_number")
    assert record.data == {
        "name": "张三", "gender": "2", "id_number": "11010519491231002X", "ethnicity": "01",
        "birth_date": "1949-12-31", "education": "30", "category": "full", "joined_on": "1975-07-01",
        "full_member_on": "1976-07-01", "party_org_code": "P01", "position": "退休干部",
        "mobile": "13800000000", "status": "active",
    }


def test_probationary_member_and_explicit_status() -> None:
    row = {**ROW, "人员类别": "预备党员", "转为正式党员日期": "", "党籍状态": "已转出"}
    data = ROSTER.map("party_members", row, CTX).data
    assert (data["category"], data["full_member_on"], data["status"]) == ("probationary", None, "transferred_out")


def test_configured_branch_names_win_over_lookup() -> None:
    ctx = MappingContext(resolve_party_org=BRANCHES.get, party_org_names={"第一党支部": "CFG"})
    assert ROSTER.map("party_members", ROW, ctx).data["party_org_code"] == "CFG"
    ctx = MappingContext(party_org_names={"第一党支部": "CFG"})
    assert ROSTER.map("party_members", ROW, ctx).data["party_org_code"] == "CFG"


def test_unknown_branch_is_quarantined() -> None:
    with pytest.raises(MappingError) as caught:
        ROSTER.map("party_members", {**ROW, "所在党支部": "第九党支部"}, CTX)
    assert str(caught.value) == "所在党支部: unknown party org '第九党支部'"
    assert caught.value.field == "party_org_code"


def test_branch_name_must_match_exactly() -> None:
    with pytest.raises(MappingError, match="unknown party org '一支部'"):
        ROSTER.map("party_members", {**ROW, "所在党支部": "一支部"}, CTX)


def test_employee_number_key_when_no_id_number() -> None:
    row = {**ROW, "公民身份号码": "", "工号": 10023}
    record = ROSTER.map("party_members", row, CTX)
    assert (record.external_id, record.key_field) == ("10023", "employee_no")
    assert record.data["id_number"] is None and record.data["employee_no"] == "10023"


def test_weak_key_by_name_and_birth_date() -> None:
    row = {**ROW, "公民身份号码": " "}
    record = ROSTER.map("party_members", row, CTX)
    assert (record.external_id, record.key_field) == ("name:张三|1949-12-31", "name")
    row = {"姓名": "李四", "所在党支部": "机关第二党支部"}
    record = ROSTER.map("party_members", row, CTX)
    assert (record.external_id, record.key_field) == ("name:李四|", "name")
    assert "status" not in record.data  # 党籍状态 column missing: the roster does not say


def test_id_number_disagreeing_with_birth_date_is_quarantined() -> None:
    with pytest.raises(MappingError) as caught:
        ROSTER.map("party_members", {**ROW, "出生日期": "1950-12-31"}, CTX)
    assert str(caught.value) == "出生日期: disagrees with the birth date in the ID number"
    assert "11010519491231002X" not in str(caught.value)


def test_invalid_id_number_is_masked() -> None:
    with pytest.raises(MappingError) as caught:
        ROSTER.map("party_members", {**ROW, "公民身份号码": "110105194912310021"}, CTX)
    assert str(caught.value) == "公民身份号码: invalid check character (110105********0021)"


def test_missing_name_is_quarantined() -> None:
    with pytest.raises(MappingError, match="姓名: required"):
        ROSTER.map("party_members", {**ROW, "姓名": ""}, CTX)


@pytest.mark.parametrize(("column", "value"), [("人员类别", "入党积极分子"), ("党籍状态", "失联")])
def test_unknown_codes(column: str, value: str) -> None:
    with pytest.raises(MappingError, match=f"{column}: unknown value '{value}'"):
        ROSTER.map("party_members", {**ROW, column: value}, CTX)
