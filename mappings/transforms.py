"""The named transforms and record checks a mapping spec may use.

A transform turns one non-empty raw value into the next (a spec chains them:
``transform: [strip, upper]``). `TRANSFORMS` take the value alone; `CONTEXT_TRANSFORMS` also
take the `MappingContext` (they look things up outside the record). A transform raises
`MappingError` with a short reason and no field; the mapping adds the field.

A check (`CHECKS`) looks at the whole mapped record and raises `MappingError` naming a field.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from mappings import idnumber
from mappings.base import MappingContext, MappingError
from mappings.codes import BOOLEAN
from mappings.dates import epoch_ms_date, parse_date, parse_month, parse_period

Transform = Callable[[Any], Any]
ContextTransform = Callable[[Any, MappingContext], Any]
Check = Callable[[dict[str, Any]], None]

# List separators seen in exports: ASCII and full-width semicolon and comma, the enumeration
# comma 、 and line breaks inside a cell.
_LIST_SEPARATORS = re.compile(r"[;；,，、\r\n]+")
_MOBILE_NOISE = re.compile(r"[\s\-()（）]+")
_NUMBER_NOISE = re.compile(r"[,，\s]+")  # thousands separators


def text(value: Any) -> str:
    """A value as text; integral numbers lose the ``.0`` a spreadsheet adds (1001.0 → "1001")."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value.strip() if value.__class__ is str else str(value)


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise MappingError(f"not a number '{value}'", value=value)
    if isinstance(value, (int, float)):
        return value
    try:
        return float(_NUMBER_NOISE.sub("", unicodedata.normalize("NFKC", str(value))))
    except ValueError:
        raise MappingError(f"not a number '{value}'", value=value) from None


def to_int(value: Any) -> int:
    """An integer from 12, 12.0, "12", "1,200"; MappingError for 12.5 or "twelve"."""
    if value.__class__ is int:
        return value
    number = _number(value)
    if isinstance(number, float) and not number.is_integer():
        raise MappingError(f"not a whole number '{value}'", value=value)
    return int(number)


def to_float(value: Any) -> float:
    """A float from 85, "85.5", "1,234.5"."""
    return float(_number(value))


def split(value: Any) -> list[str]:
    """A list of non-empty items from a list or a ``;``/``；``/``,``/``，``/``、`` separated text."""
    items = value if isinstance(value, (list, tuple)) else _LIST_SEPARATORS.split(text(value))
    # dict.fromkeys: drop duplicates, keep the order.
    return list(dict.fromkeys(item for item in map(text, items) if item))


def mobile(value: Any) -> str:
    """An 11-digit mainland mobile number, without spaces, dashes or the +86 / 0086 prefix."""
    number = text(value)
    if len(number) == 11 and number[0] == "1" and number.isdigit() and number.isascii():
        return number  # the usual case, already clean
    if not number.isascii():
        number = unicodedata.normalize("NFKC", number)
    if not number.isdigit():
        number = _MOBILE_NOISE.sub("", number)
    for prefix in ("+86", "0086", "86"):
        if number.startswith(prefix) and len(number) == 11 + len(prefix):
            number = number[len(prefix):]
            break
    if len(number) == 11 and number[0] == "1" and number.isdigit() and number.isascii():
        return number
    masked = idnumber.mask(number, head=3, tail=4)
    raise MappingError(f"invalid mobile '{masked}'", value=masked)


# OData v2 JSON dates (SAP SuccessFactors): "/Date(1700000000000)/", with an optional offset in
# minutes for DateTimeOffset ("/Date(1700000000000+0480)/").
_ODATA_DATE = re.compile(r"/Date\((-?\d+)(?:([+-])(\d{4}))?\)/")


def odata_date(value: Any) -> str:
    """An OData v2 ``/Date(ms±offset)/`` as ``YYYY-MM-DD`` in its own offset (UTC when none:
    OData date-only values are UTC midnight); any other form goes to `parse_date`."""
    match = _ODATA_DATE.fullmatch(text(value)) if isinstance(value, str) else None
    if match is None:
        return parse_date(value)
    minutes = int(match[3] or 0) * (-1 if match[2] == "-" else 1)
    try:
        moment = datetime(1970, 1, 1) + timedelta(milliseconds=int(match[1]), minutes=minutes)
        # Through the text form so the year range check of parse_date applies (9999-12-31 is
        # SuccessFactors' "no end date", not a date).
        return parse_date(moment.date().isoformat())
    except (OverflowError, MappingError):
        raise MappingError(f"invalid date '{value}'", value=value) from None


def epoch_s_date(value: Any) -> str | None:
    """Epoch seconds (Feishu `join_time`) as a China Standard Time date; 0 is Feishu's "not
    set", so it maps to empty rather than to 1970-01-01."""
    seconds = to_float(value)
    return None if seconds == 0 else epoch_ms_date(seconds * 1000)


def party_org_by_name(value: Any, ctx: MappingContext) -> str:
    """The code of the party org with exactly this name: configured map first, then lookup."""
    name = text(value)
    code = ctx.party_org_names.get(name) or ctx.resolve_party_org(name)
    if not code:
        raise MappingError(f"unknown party org '{name}'", value=name)
    return code


TRANSFORMS: dict[str, Transform] = {
    "strip": text,
    "str": text,
    "upper": lambda value: text(value).upper(),
    "lower": lambda value: text(value).lower(),
    "int": to_int,
    "float": to_float,
    "bool": BOOLEAN.lookup,
    "date": parse_date,
    "epoch_ms_date": epoch_ms_date,
    "epoch_s_date": epoch_s_date,
    "odata_date": odata_date,
    "month": parse_month,
    "period": parse_period,
    "split": split,
    "id_number": idnumber.validate,
    "mobile": mobile,
}

CONTEXT_TRANSFORMS: dict[str, ContextTransform] = {
    "party_org_by_name": party_org_by_name,
}

CHECKS: dict[str, Check] = {
    "id_number_matches_birth_date_and_gender": idnumber.check_matches_birth_date_and_gender,
}
