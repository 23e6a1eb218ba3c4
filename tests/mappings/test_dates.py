"""Dates, months and appraisal periods in every form sources send them."""
from __future__ import annotations

from datetime import date, datetime

import pytest

from mappings.base import MappingError
from mappings.dates import epoch_ms_date, parse_date, parse_month, parse_period


@pytest.mark.parametrize("value", [
    "2020-01-05", "2020/1/5", "2020/01/05", "2020.1.5", "2020年1月5日", "2020年01月05日", "20200105",
    "2020-01-05 00:00:00", "2020-01-05T08:30:00+08:00", "2020-1-5 8:30", " 2020-01-05 ",
    "２０２０年１月５日", 20200105, date(2020, 1, 5), datetime(2020, 1, 5, 23, 59),
    43835, 43835.0, "43835", "43835.75",  # Excel serial day numbers
    1578153600000, "1578153600000",  # epoch ms of 2020-01-05 00:00 China Standard Time
])
def test_date_forms(value: object) -> None:
    assert parse_date(value) == "2020-01-05"


def test_excel_serial_anchor() -> None:
    assert parse_date(43831) == "2020-01-01"
    assert parse_date("367") == "1901-01-01"


@pytest.mark.parametrize("value", [
    "2020-02-30", "2021-02-29", "2020/13/1", "2020年2月30日", "20200230", "0001-01-01",
    "9999-12-31", "not a date", "2020-01", "", "12", 12, 366, 73051, 999_999_999, True,
    "2020-01-05x",
])
def test_invalid_dates(value: object) -> None:
    with pytest.raises(MappingError, match="invalid date"):
        parse_date(value)


def test_leap_day_is_valid() -> None:
    assert parse_date("2020/2/29") == "2020-02-29"


def test_epoch_ms_is_read_in_china_time() -> None:
    # 2019-12-31T16:00:00Z is local midnight of 2020-01-01: the date is the local one.
    assert epoch_ms_date(1577808000000) == "2020-01-01"
    assert epoch_ms_date("1577807999999") == "2019-12-31"
    assert parse_date(-315648000000) == "1960-01-01"
    with pytest.raises(MappingError, match="invalid epoch"):
        epoch_ms_date("soon")


@pytest.mark.parametrize(("value", "period"), [
    ("2024", "2024"), (2024, "2024"), ("2024年", "2024"), ("2024年度", "2024"),
    ("2024-Q1", "2024-Q1"), ("2024Q1", "2024-Q1"), ("2024 q2", "2024-Q2"), ("2024/Q3", "2024-Q3"),
    ("2024年第一季度", "2024-Q1"), ("2024年第四季度", "2024-Q4"), ("2024年二季度", "2024-Q2"),
    ("2024年第3季度", "2024-Q3"), ("2024-03", "2024-03"), ("2024/3", "2024-03"),
    ("2024年3月", "2024-03"), ("202403", "2024-03"), ("２０２４年第一季度", "2024-Q1"),
    (date(2024, 3, 1), "2024-03"),
])
def test_periods(value: object, period: str) -> None:
    assert parse_period(value) == period


@pytest.mark.parametrize("value", ["2024-Q5", "2024年第五季度", "2024-13", "24", "1899", "上半年", ""])
def test_invalid_periods(value: str) -> None:
    with pytest.raises(MappingError, match="invalid period"):
        parse_period(value)


@pytest.mark.parametrize(("value", "month"), [
    ("2024-03", "2024-03"), ("2024/3", "2024-03"), ("2024年3月", "2024-03"), ("202403", "2024-03"),
    (202403, "2024-03"), ("2024-03-15", "2024-03"), (datetime(2024, 3, 1), "2024-03"),
])
def test_months(value: object, month: str) -> None:
    assert parse_month(value) == month


@pytest.mark.parametrize("value", ["2024-00", "2024-13", "2024", "March"])
def test_invalid_months(value: str) -> None:
    with pytest.raises(MappingError, match="invalid month"):
        parse_month(value)
