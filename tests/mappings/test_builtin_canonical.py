"""The builtin `canonical` mapping: canonical names in, validated canonical values out."""
from __future__ import annotations

import pytest

from mappings import MappingContext, MappingError, load_mapping

CTX = MappingContext()
CANONICAL = load_mapping("canonical")

# DESIGN.md "Canonical entity kinds": key fields + main fields.
DESIGN_FIELDS = {
    "org_units": {"code", "name", "parent_code", "kind", "status", "manager_employee_no"},
    "staff": {"employee_no", "name", "gender", "birth_date", "ethnicity", "education", "id_number",
              "mobile", "org_unit_code", "position", "employment_status", "hired_on",
              "political_status", "party_joined_on"},
    "performance": {"employee_no", "period", "grade", "score", "score_max"},
    "party_orgs": {"code", "name", "kind", "parent_code", "covers", "secretary", "elected_on",
                   "term_years", "has_committee", "retirees"},
    "party_members": {"id_number", "employee_no", "name", "party_org_code", "category", "joined_on",
                      "full_member_on", "status", "gender", "birth_date", "ethnicity", "education",
                      "mobile", "position", "dues_category"},
    "payroll": {"employee_no", "month", "after_tax_pay"},
    "activities": {"id", "party_org_code", "type", "held_on", "attendees", "expected", "lecturer", "attendee_nos"},
    "dues_payments": {"employee_no", "month", "amount", "paid_on"},
}


@pytest.mark.parametrize("kind", DESIGN_FIELDS)
def test_every_kind_maps_exactly_the_design_fields(kind: str) -> None:
    assert set(CANONICAL.spec.kinds[kind].fields) == DESIGN_FIELDS[kind]


def test_org_unit() -> None:
    record = CANONICAL.map("org_units", {"code": 101, "name": "财务部", "parent_code": "1",
                                          "kind": "部门", "status": "active", "manager_employee_no": 1001.0}, CTX)
    assert (record.external_id, record.key_field) == ("101", "code")
    assert record.data == {"code": "101", "name": "财务部", "parent_code": "1", "kind": "department",
                           "status": "active", "manager_employee_no": "1001"}


def test_staff_codes_accept_national_codes_and_names() -> None:
    raw = {"employee_no": "E001", "name": "李四", "gender": "1", "birth_date": "1990/1/1",
           "ethnicity": "回族", "education": "20", "id_number": "440304199001010011",
           "mobile": "138-1234-5678", "org_unit_code": "101", "position": "会计",
           "employment_status": "在职", "hired_on": "20150301", "political_status": "中共党员",
           "party_joined_on": "2012-07-01"}
    record = CANONICAL.map("staff", raw, CTX)
    assert (record.external_id, record.key_field) == ("E001", "employee_no")
    assert record.data == {**raw, "birth_date": "1990-01-01", "ethnicity": "03", "mobile": "13812345678",
                           "employment_status": "active", "hired_on": "2015-03-01", "political_status": "01"}


def test_staff_partial_record_keeps_only_provided_fields() -> None:
    record = CANONICAL.map("staff", {"employee_no": "E002", "name": "王五", "mobile": ""}, CTX)
    assert record.data == {"employee_no": "E002", "name": "王五", "mobile": None}


def test_staff_without_employee_no_is_quarantined() -> None:
    with pytest.raises(MappingError, match="employee_no: required"):
        CANONICAL.map("staff", {"employee_no": "", "name": "王五"}, CTX)


def test_staff_id_number_must_agree_with_birth_date() -> None:
    with pytest.raises(MappingError, match="birth_date: disagrees with the birth date in the ID number"):
        CANONICAL.map("staff", {"employee_no": "E1", "name": "x", "id_number": "440304199001010011",
                                "birth_date": "1990-01-02"}, CTX)


@pytest.mark.parametrize(("grade", "canonical"), [("A", "优秀"), ("良好", "良好"), ("c", "合格"),
                                                  ("基本合格", "基本合格"), ("D", "不合格")])
def test_performance(grade: str, canonical: str) -> None:
    record = CANONICAL.map("performance", {"employee_no": "E001", "period": "2024", "grade": grade,
                                           "score": "92.5", "score_max": 100}, CTX)
    assert (record.external_id, record.key_field) == ("E001|2024", "employee_no+period")
    assert record.data == {"employee_no": "E001", "period": "2024", "grade": canonical, "score": 92.5,
                           "score_max": 100.0}


def test_performance_quarter_period_in_key() -> None:
    record = CANONICAL.map("performance", {"employee_no": "E001", "period": "2024Q2"}, CTX)
    assert record.external_id == "E001|2024-Q2"


def test_party_org() -> None:
    raw = {"code": "P01", "name": "第一党支部", "kind": "党支部", "parent_code": "P00",
           "covers": "101;102；103", "secretary": "E001", "elected_on": "2023-06-01", "term_years": "3",
           "has_committee": "是", "retirees": "false"}
    record = CANONICAL.map("party_orgs", raw, CTX)
    assert record.data == {**raw, "kind": "branch", "covers": ["101", "102", "103"], "term_years": 3,
                           "has_committee": True, "retirees": False}


def test_party_member_keys_by_id_number_then_employee_no() -> None:
    raw = {"id_number": "11010519491231002x", "employee_no": "E9", "name": "赵六", "party_org_code": "P01",
           "category": "full", "joined_on": "1975-07-01", "full_member_on": "1976-07-01", "status": "正常",
           "gender": "女", "birth_date": "1949-12-31"}
    record = CANONICAL.map("party_members", raw, CTX)
    assert (record.external_id, record.key_field) == ("11010519491231002X", "id_number")
    assert record.data["category"] == "full" and record.data["status"] == "active"
    assert record.data["gender"] == "2"
    record = CANONICAL.map("party_members", {"employee_no": "E9", "name": "赵六", "id_number": ""}, CTX)
    assert (record.external_id, record.key_field) == ("E9", "employee_no")


def test_payroll_and_activity() -> None:
    record = CANONICAL.map("payroll", {"employee_no": "E1", "month": "2024年3月", "after_tax_pay": "8,650.50"}, CTX)
    assert (record.external_id, record.data["after_tax_pay"]) == ("E1|2024-03", 8650.5)
    record = CANONICAL.map("activities", {"id": 77, "party_org_code": "P01", "type": "主题党日",
                                          "held_on": "2024.3.5", "attendees": "18", "expected": 20}, CTX)
    assert (record.external_id, record.key_field) == ("77", "id")
    assert record.data == {"id": "77", "party_org_code": "P01", "type": "theme_day", "held_on": "2024-03-05",
                           "attendees": 18, "expected": 20}
