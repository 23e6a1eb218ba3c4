"""The builtin `oa-export` mapping on realistic Chinese-header rows."""
from __future__ import annotations

import pytest

from mappings import MappingContext, MappingError, load_mapping

CTX = MappingContext()
OA = load_mapping("oa-export")


def test_department_rows() -> None:
    record = OA.map("org_units", {"部门编码": "0101", "部门名称": "生产技术部 ", "上级部门编码": "01",
                                  "部门类型": "部门", "状态": "正常", "负责人工号": "10023"}, CTX)
    assert (record.external_id, record.key_field) == ("0101", "code")
    assert record.data == {"code": "0101", "name": "生产技术部", "parent_code": "01", "kind": "department",
                           "status": "active", "manager_employee_no": "10023"}
    record = OA.map("org_units", {"部门编码": "010101", "部门名称": "一班组", "上级部门编码": "0101",
                                  "部门类型": "班组", "状态": "撤销", "负责人工号": ""}, CTX)
    assert record.data["kind"] == "team" and record.data["status"] == "dissolved"
    assert record.data["manager_employee_no"] is None


def test_staff_row_with_export_quirks() -> None:
    # Values as a GBK/GB18030 export decodes them: padded cells, full-width spaces and digits.
    raw = {"工号": "10023", "姓名": "张　伟 ", "性别": "男 ", "出生日期": "1990/1/1", "民族": "汉",
           "学历": "大学本科", "证件号码": "４４０３０４１９９００１０１００１１", "手机": "138 1234 5678",
           "部门编码": "0101", "职务": "技术员", "人员状态": "试用期", "入职日期": "2021年7月1日",
           "政治面貌": "中共预备党员", "入党日期": ""}
    record = OA.map("staff", raw, CTX)
    assert (record.external_id, record.key_field) == ("10023", "employee_no")
    assert record.data == {
        "employee_no": "10023", "name": "张　伟", "gender": "1", "birth_date": "1990-01-01",
        "ethnicity": "01", "education": "20", "id_number": "440304199001010011", "mobile": "13812345678",
        "org_unit_code": "0101", "position": "技术员", "employment_status": "probation",
        "hired_on": "2021-07-01", "political_status": "02", "party_joined_on": None,
    }


def test_missing_columns_are_absent() -> None:
    record = OA.map("staff", {"工号": "10024", "姓名": "李娜", "性别": "女"}, CTX)
    assert record.data == {"employee_no": "10024", "name": "李娜", "gender": "2"}


def test_english_canonical_headers_are_accepted() -> None:
    record = OA.map("staff", {"employee_no": "10025", "name": "Wang", "political_status": "13",
                              "mobile": "+86 139 0000 0000"}, CTX)
    assert record.data == {"employee_no": "10025", "name": "Wang", "political_status": "13",
                           "mobile": "13900000000"}


def test_alternative_id_headers() -> None:
    for header in ("身份证号", "证件号码", "公民身份号码"):
        record = OA.map("staff", {"工号": "1", "姓名": "x", header: "11010519491231002X"}, CTX)
        assert record.data["id_number"] == "11010519491231002X"


@pytest.mark.parametrize(("column", "value", "message"), [
    ("政治面貌", "党员啊", "政治面貌: unknown value '党员啊'"),
    ("民族", "火星族", "民族: unknown value '火星族'"),
    ("出生日期", "1990-02-30", "出生日期: invalid date '1990-02-30'"),
    ("手机号", "1381234", "手机号: invalid mobile"),
    ("身份证号", "440304199001010012", "身份证号: invalid check character (440304********0012)"),
    ("人员状态", "休假", "人员状态: unknown value '休假'"),
])
def test_bad_values_are_quarantined_naming_the_column(column: str, value: str, message: str) -> None:
    with pytest.raises(MappingError) as caught:
        OA.map("staff", {"工号": "10026", "姓名": "x", column: value}, CTX)
    assert str(caught.value).startswith(message)


def test_id_number_sex_disagreement() -> None:
    with pytest.raises(MappingError, match="性别: disagrees with the sex"):
        OA.map("staff", {"工号": "1", "姓名": "x", "性别": "女", "身份证号": "440304199001010011"}, CTX)


def test_numeric_employee_number_from_a_spreadsheet_cell() -> None:
    assert OA.map("staff", {"工号": 10027.0, "姓名": "x"}, CTX).external_id == "10027"
