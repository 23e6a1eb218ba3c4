"""The builtin `appraisal` and `erp-payroll` mappings on Chinese-column exports, and the
performance / payroll kinds of `canonical`."""
from __future__ import annotations

import pytest

from mappings import MappingContext, MappingError, load_mapping

CTX = MappingContext()
APPRAISAL = load_mapping("appraisal")


@pytest.mark.parametrize(("period", "canonical"), [
    ("2024年第一季度", "2024-Q1"), ("2024年第四季度", "2024-Q4"), ("2024年度", "2024"),
    ("2024", "2024"), (2024, "2024"), ("2024-Q2", "2024-Q2"), ("2024年3月", "2024-03"),
    ("2024-03", "2024-03"),
])
def test_periods(period: object, canonical: str) -> None:
    record = APPRAISAL.map("performance", {"工号": "10023", "考核周期": period}, CTX)
    assert record.data["period"] == canonical
    assert record.external_id == f"10023|{canonical}"


@pytest.mark.parametrize(("grade", "canonical"), [
    ("优秀", "优秀"), ("良好", "良好"), ("合格", "合格"), ("基本合格", "基本合格"), ("不合格", "不合格"),
    ("A", "优秀"), ("b", "良好"), ("Ｃ", "合格"), ("D", "不合格"), ("称职", "合格"), ("基本称职", "基本合格"),
])
def test_grades(grade: str, canonical: str) -> None:
    record = APPRAISAL.map("performance", {"工号": "1", "考核周期": "2024", "考核等级": grade}, CTX)
    assert record.data["grade"] == canonical


def test_full_row_and_alternative_headers() -> None:
    record = APPRAISAL.map("performance", {"工号": 10023.0, "考核期间": "2024年第二季度",
                                           "绩效等级": "良好", "得分": "88.5", "满分": "100"}, CTX)
    assert record.data == {"employee_no": "10023", "period": "2024-Q2", "grade": "良好",
                           "score": 88.5, "score_max": 100.0}
    english = APPRAISAL.map("performance", {"employee_no": "E1", "period": "2023", "grade": "A"}, CTX)
    assert english.data == {"employee_no": "E1", "period": "2023", "grade": "优秀"}


@pytest.mark.parametrize(("row", "message"), [
    ({"工号": "1", "考核周期": "2024年上半年"}, "考核周期: invalid period"),
    ({"工号": "1", "考核周期": "2024", "考核等级": "超级优秀"}, "考核等级: unknown value"),
    ({"工号": "1", "考核周期": "2024", "得分": "九十"}, "得分: not a number"),
    ({"考核周期": "2024"}, "工号"),
])
def test_bad_rows_are_quarantine_reasons(row: dict, message: str) -> None:
    with pytest.raises(MappingError, match=message):
        APPRAISAL.map("performance", row, CTX)


def test_payroll_export() -> None:
    payroll = load_mapping("erp-payroll")
    record = payroll.map("payroll", {"工号": "10023", "发放月份": "2024年3月", "实发工资": "8,123.45"}, CTX)
    assert record.data == {"employee_no": "10023", "month": "2024-03", "after_tax_pay": 8123.45}
    assert record.external_id == "10023|2024-03"
    record = payroll.map("payroll", {"工号": "10024", "月份": "202404", "税后工资": 6500}, CTX)
    assert record.data == {"employee_no": "10024", "month": "2024-04", "after_tax_pay": 6500.0}
    with pytest.raises(MappingError, match="发放月份: invalid month"):
        payroll.map("payroll", {"工号": "1", "发放月份": "2024年13月"}, CTX)


def test_canonical_performance_and_payroll() -> None:
    canonical = load_mapping("canonical")
    record = canonical.map("performance", {"employee_no": "E1", "period": "2024-Q3", "grade": "C",
                                           "score": 75, "score_max": 100}, CTX)
    assert record.data == {"employee_no": "E1", "period": "2024-Q3", "grade": "合格",
                           "score": 75.0, "score_max": 100.0}
    record = canonical.map("payroll", {"employee_no": "E1", "month": "2024-05",
                                       "after_tax_pay": "7000.5"}, CTX)
    assert record.data == {"employee_no": "E1", "month": "2024-05", "after_tax_pay": 7000.5}
