"""Mapping semantics of compiled specs: absent vs empty, defaults, alternatives, paths, keys, errors."""
from __future__ import annotations

from typing import Any

import pytest

from mappings import MappingContext, MappingError, MappingSpecError
from mappings.loader import mapping_from_dict

CTX = MappingContext()


def _map(fields: dict[str, Any], raw: dict[str, Any], key: Any = "code", checks: list[str] | None = None,
         ctx: MappingContext = CTX, kind: str = "org_units"):
    spec = {"name": "t", "kinds": {kind: {"key": key, "fields": fields, **({"checks": checks} if checks else {})}}}
    return mapping_from_dict(spec, "t.yaml").map(kind, raw, ctx)


def test_missing_column_is_absent_and_empty_cell_is_none() -> None:
    fields = {"code": "编码", "name": "名称", "parent_code": "上级", "manager_employee_no": "负责人"}
    record = _map(fields, {"编码": "D1", "名称": "  ", "上级": None})
    assert record.data == {"code": "D1", "name": None, "parent_code": None}
    assert "manager_employee_no" not in record.data


def test_strings_are_stripped_and_non_strings_kept() -> None:
    record = _map({"code": "c", "name": "n"}, {"c": " D1 ", "n": 0})
    assert record.data == {"code": "D1", "name": 0}


def test_default_applies_to_empty_not_to_missing() -> None:
    fields = {"code": "c", "status": {"from": "s", "map": "org_unit_status", "default": "active"}}
    assert _map(fields, {"c": "D1", "s": ""}).data["status"] == "active"
    assert _map(fields, {"c": "D1", "s": "撤销"}).data["status"] == "dissolved"
    assert "status" not in _map(fields, {"c": "D1"}).data


def test_required_field_empty_or_missing() -> None:
    fields = {"code": "c", "name": {"from": "名称", "required": True}}
    with pytest.raises(MappingError) as caught:
        _map(fields, {"c": "D1", "名称": " "})
    assert str(caught.value) == "名称: required"
    assert caught.value.field == "name"
    with pytest.raises(MappingError, match="名称: required column missing"):
        _map(fields, {"c": "D1"})


def test_from_alternatives_first_non_empty_wins() -> None:
    fields = {"code": "c", "name": {"from": ["部门名称", "名称", "name"]}}
    assert _map(fields, {"c": "1", "名称": "办公室", "name": "Office"}).data["name"] == "办公室"
    assert _map(fields, {"c": "1", "部门名称": "", "name": "Office"}).data["name"] == "Office"
    assert _map(fields, {"c": "1", "部门名称": ""}).data["name"] is None
    assert "name" not in _map(fields, {"c": "1", "other": "x"}).data


def test_dotted_path_into_nested_json() -> None:
    fields = {"code": {"from": "dept.id", "transform": "str"}, "name": "dept.names.0",
              "parent_code": {"from": ["parent.id", "parentid"]}}
    raw = {"dept": {"id": 12, "names": ["研发部"]}, "parentid": "1"}
    assert _map(fields, raw).data == {"code": "12", "name": "研发部", "parent_code": "1"}
    assert _map(fields, {"dept": {"id": 12}}).data == {"code": "12"}
    assert _map(fields, {"dept.id": "literal", "dept": {"id": 1}}).data["code"] == "literal"


def test_transform_chain_and_inline_map() -> None:
    fields = {"code": {"from": "c", "transform": ["str", "upper"]},
              "kind": {"from": "k", "map": {"总部": "company", "1": "department", 2: "team"}}}
    assert _map(fields, {"c": "d1", "k": "总　部"}).data == {"code": "D1", "kind": "company"}
    assert _map(fields, {"c": "d1", "k": 1}).data["kind"] == "department"
    assert _map(fields, {"c": "d1", "k": "2"}).data["kind"] == "team"


def test_unknown_value_names_field_and_value() -> None:
    fields = {"employee_no": "工号", "political_status": {"from": "political_status", "map": "political_status"}}
    with pytest.raises(MappingError) as caught:
        _map(fields, {"工号": "E1", "political_status": "党员啊"}, key="employee_no", kind="staff")
    assert str(caught.value) == "political_status: unknown value '党员啊'"
    assert caught.value.value == "党员啊"


def test_error_names_the_column_that_held_the_value() -> None:
    fields = {"employee_no": "工号", "birth_date": {"from": ["出生日期", "birth_date"], "transform": "date"}}
    with pytest.raises(MappingError) as caught:
        _map(fields, {"工号": "E1", "birth_date": "2020-02-30"}, key="employee_no", kind="staff")
    assert str(caught.value) == "birth_date: invalid date '2020-02-30'"
    with pytest.raises(MappingError) as caught:
        _map(fields, {"工号": "E1", "出生日期": "2020-02-30"}, key="employee_no", kind="staff")
    assert str(caught.value) == "出生日期: invalid date '2020-02-30'"
    assert caught.value.field == "birth_date"


def test_map_applies_to_each_list_item() -> None:
    fields = {"code": "c", "kind": {"from": "k", "transform": "split", "map": "org_unit_kind"}}
    assert _map(fields, {"c": "1", "k": "公司;部门"}).data["kind"] == ["company", "department"]


def test_composite_key() -> None:
    fields = {"employee_no": {"transform": "str"}, "period": {"transform": "period"}}
    record = _map(fields, {"employee_no": 1001, "period": "2024年第一季度"}, key="employee_no+period",
                  kind="performance")
    assert (record.external_id, record.key_field) == ("1001|2024-Q1", "employee_no+period")
    with pytest.raises(MappingError, match=r"no record key \(employee_no\+period\)"):
        _map(fields, {"employee_no": "1001", "period": ""}, key="employee_no+period", kind="performance")


def test_key_alternatives_and_weak_key() -> None:
    fields = {"id_number": {"transform": "id_number"}, "employee_no": {}, "name": {},
              "birth_date": {"transform": "date"}}
    key = ["id_number", "employee_no",
           {"fields": ["name", "birth_date"], "prefix": "name:", "key_field": "name", "optional": ["birth_date"]}]

    def keyed(raw: dict[str, Any]) -> tuple[str, str | None]:
        record = _map(fields, raw, key=key, kind="party_members")
        return record.external_id, record.key_field

    assert keyed({"id_number": "11010519491231002X", "employee_no": "E1"}) == ("11010519491231002X", "id_number")
    assert keyed({"id_number": "", "employee_no": "E1", "name": "张三"}) == ("E1", "employee_no")
    assert keyed({"name": "张三", "birth_date": "1980/1/2"}) == ("name:张三|1980-01-02", "name")
    assert keyed({"name": "张三", "birth_date": ""}) == ("name:张三|", "name")
    with pytest.raises(MappingError, match=r"no record key \(id_number, employee_no, name\)") as caught:
        keyed({"name": ""})
    assert caught.value.field == "id_number"


def test_checks_run_on_the_mapped_record() -> None:
    fields = {"employee_no": "工号", "id_number": {"from": "身份证号", "transform": "id_number"},
              "gender": {"from": "性别", "map": "gender"}}
    raw = {"工号": "E1", "身份证号": "11010519491231002X", "性别": "男"}
    with pytest.raises(MappingError) as caught:
        _map(fields, raw, key="employee_no", kind="staff", checks=["id_number_matches_birth_date_and_gender"])
    assert str(caught.value) == "性别: disagrees with the sex in the ID number"
    raw["性别"] = "女"
    assert _map(fields, raw, key="employee_no", kind="staff",
                checks=["id_number_matches_birth_date_and_gender"]).data["gender"] == "2"


def test_context_transform_gets_the_context() -> None:
    fields = {"code": "c", "parent_code": {"from": "p", "transform": ["strip", "party_org_by_name"]}}
    ctx = MappingContext(resolve_party_org={"机关党委": "P0"}.get)
    assert _map(fields, {"c": "1", "p": "机关党委 "}, kind="party_orgs", ctx=ctx).data["parent_code"] == "P0"


def test_unknown_kind_is_a_configuration_error() -> None:
    mapping = mapping_from_dict({"name": "t", "kinds": {"staff": {"key": "employee_no",
                                                                  "fields": {"employee_no": {}}}}}, "t.yaml")
    with pytest.raises(MappingSpecError, match="t.yaml: mapping 't' has no kind 'org_units'"):
        mapping.map("org_units", {}, CTX)


def test_raw_record_is_not_modified() -> None:
    raw = {"c": " D1 ", "k": "公司"}
    _map({"code": "c", "kind": {"from": "k", "map": "org_unit_kind"}}, raw)
    assert raw == {"c": " D1 ", "k": "公司"}
