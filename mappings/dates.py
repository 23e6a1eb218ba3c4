"""Dates, months and appraisal periods in every form sources send them, to canonical strings.

Canonical forms: a date is ``YYYY-MM-DD``; a month ``YYYY-MM``; a performance period ``YYYY``,
``YYYY-Qn`` or ``YYYY-MM`` (sources.md "Performance").

`parse_date` accepts ``2020-01-05``, ``2020/1/5``, ``2020.1.5``, ``2020年1月5日``, ``20200105``, the
same followed by a time (``2020-01-05 00:00:00``, ``2020-01-05T08:00:00+08:00``: the date part is
taken as written), `date`/`datetime` objects (openpyxl cells), Excel serial day numbers as int,
float or numeric string (1901-01-01 … 2099-12-31, i.e. 367 … 73050) and epoch milliseconds
(|n| ≥ 10¹¹, read in China Standard Time). Years outside 1900–2100 are rejected: they are
placeholders (0001-01-01, 9999-12-31), not dates.

Each parser raises `MappingError("invalid date '…'")` (month, period likewise); the mapping adds
the field name.
"""
from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime, timedelta, timezone
from typing import Any

from mappings.base import MappingError

MIN_YEAR, MAX_YEAR = 1900, 2100

# China has had one offset, without daylight saving, since 1991; vendors (DingTalk hired_date)
# send local midnight as epoch ms, which is the previous day in UTC.
CHINA_TZ = timezone(timedelta(hours=8))

# Excel day 0 is 1899-12-30 once its phantom 1900-02-29 is accounted for (serials ≥ 61).
_EXCEL_EPOCH = date(1899, 12, 30)
_EXCEL_SERIALS = range(367, 73051)  # 1901-01-01 … 2099-12-31
_YYYYMMDD = range(MIN_YEAR * 10000 + 101, MAX_YEAR * 10000 + 1232)
_EPOCH_MS_MIN = 10**11  # smaller magnitudes are seconds or serials, not milliseconds

_DATE_TEXT = re.compile(
    r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
    r"(?:[ T]+\d{1,2}:\d{1,2}(?::\d{1,2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}:?\d{2})?)?"
)
_COMPACT_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})")
_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")
_YEAR = re.compile(r"(\d{4})\s*(?:年度?)?")
_QUARTER = re.compile(r"(\d{4})\s*(?:[-/ ]?\s*[Qq]\s*([1-4])|年?\s*第?\s*([1-4一二三四])\s*季度?)")
_MONTH = re.compile(r"(\d{4})\s*(?:[-/.年]\s*(\d{1,2})\s*月?份?|(\d{2}))")
_CHINESE_QUARTER = {"一": 1, "二": 2, "三": 3, "四": 4}


def _text(value: Any) -> str:
    """The value as stripped text; NFKC only when it is not plain ASCII (full-width digits)."""
    text = str(value).strip()
    return text if text.isascii() else unicodedata.normalize("NFKC", text)


def _iso(year: int, month: int, day: int, value: Any) -> str:
    if MIN_YEAR <= year <= MAX_YEAR:
        try:
            return date(year, month, day).isoformat()
        except ValueError:
            pass
    raise MappingError(f"invalid date '{value}'", value=value)


def _from_number(number: float, value: Any) -> str:
    """A date from a spreadsheet or JSON number: YYYYMMDD, Excel serial or epoch ms."""
    if number.is_integer() and int(number) in _YYYYMMDD:
        whole = int(number)
        return _iso(whole // 10000, whole // 100 % 100, whole % 100, value)
    if int(number) in _EXCEL_SERIALS:
        return (_EXCEL_EPOCH + timedelta(days=int(number))).isoformat()
    if abs(number) >= _EPOCH_MS_MIN:
        return epoch_ms_date(number)
    raise MappingError(f"invalid date '{value}'", value=value)


def parse_date(value: Any) -> str:
    """`value` as ``YYYY-MM-DD``; MappingError when it is not a valid date."""
    if value.__class__ is str and len(value) == 10 and value[4] == "-" and value[7] == "-":
        # Fast path: already canonical (the usual case for canonical sources).
        try:
            if MIN_YEAR <= date.fromisoformat(value).year <= MAX_YEAR:
                return value
        except ValueError:
            pass
        raise MappingError(f"invalid date '{value}'", value=value)
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _from_number(float(value), value)
    text = _text(value)
    if match := _DATE_TEXT.fullmatch(text) or _COMPACT_DATE.fullmatch(text):
        return _iso(int(match[1]), int(match[2]), int(match[3]), value)
    if _NUMBER.fullmatch(text):
        return _from_number(float(text), value)
    raise MappingError(f"invalid date '{value}'", value=value)


def epoch_ms_date(value: Any) -> str:
    """Epoch milliseconds (number or numeric string) as a China Standard Time date."""
    try:
        moment = datetime.fromtimestamp(float(value) / 1000, CHINA_TZ)
    except (TypeError, ValueError, OverflowError, OSError):
        raise MappingError(f"invalid epoch milliseconds '{value}'", value=value) from None
    if not MIN_YEAR <= moment.year <= MAX_YEAR:
        raise MappingError(f"invalid epoch milliseconds '{value}'", value=value)
    return moment.date().isoformat()


def _year_month(year: int, month: int, value: Any, what: str) -> str:
    if MIN_YEAR <= year <= MAX_YEAR and 1 <= month <= 12:
        return f"{year:04d}-{month:02d}"
    raise MappingError(f"invalid {what} '{value}'", value=value)


def parse_month(value: Any) -> str:
    """`value` as ``YYYY-MM``: 2024-03, 2024/3, 2024年3月, 202403, or a full date in text."""
    if isinstance(value, (date, datetime)):
        return _year_month(value.year, value.month, value, "month")
    text = _text(value)
    if match := _MONTH.fullmatch(text):
        return _year_month(int(match[1]), int(match[2] or match[3]), value, "month")
    if not _NUMBER.fullmatch(text):  # a bare number here is a bad month, not an Excel serial
        try:
            return parse_date(value)[:7]
        except MappingError:
            pass
    raise MappingError(f"invalid month '{value}'", value=value)


def parse_period(value: Any) -> str:
    """An appraisal period as ``YYYY``, ``YYYY-Qn`` or ``YYYY-MM``.

    Accepts 2024, 2024年, 2024年度, 2024-Q1, 2024Q1, 2024 q1, 2024年第一季度, 2024年1季度, and the
    month forms of `parse_month` (a date object counts as its month).
    """
    if isinstance(value, (date, datetime)):
        return parse_month(value)
    text = _text(value)
    if match := _YEAR.fullmatch(text):
        if MIN_YEAR <= int(match[1]) <= MAX_YEAR:
            return match[1]
    elif match := _QUARTER.fullmatch(text):
        quarter = match[2] or match[3]
        quarter = _CHINESE_QUARTER.get(quarter, quarter)
        if MIN_YEAR <= int(match[1]) <= MAX_YEAR:
            return f"{match[1]}-Q{quarter}"
    elif match := _MONTH.fullmatch(text):
        return _year_month(int(match[1]), int(match[2] or match[3]), value, "period")
    raise MappingError(f"invalid period '{value}'", value=value)
