"""Named transforms: numbers, text, lists, mobile numbers, party org names; the registries."""
from __future__ import annotations

import pytest

from mappings.base import MappingContext, MappingError
from mappings.transforms import (
    CHECKS, CONTEXT_TRANSFORMS, TRANSFORMS, mobile, party_org_by_name, split, text, to_float, to_int,
)


@pytest.mark.parametrize(("value", "expected"), [
    (" E001 ", "E001"), (1001, "1001"), (1001.0, "1001"), (12.5, "12.5"), ("0012", "0012"),
])
def test_text(value: object, expected: str) -> None:
    assert text(value) == expected


@pytest.mark.parametrize(("value", "expected"), [
    (12, 12), (12.0, 12), ("12", 12), ("12.0", 12), ("1,200", 1200), ("１２", 12), ("-3", -3),
])
def test_int(value: object, expected: int) -> None:
    assert to_int(value) == expected


@pytest.mark.parametrize("value", [12.5, "12.5", "twelve", True, ""])
def test_int_rejects(value: object) -> None:
    with pytest.raises(MappingError, match="not a"):
        to_int(value)


def test_float() -> None:
    assert to_float("85.5") == 85.5
    assert to_float(90) == 90.0 and isinstance(to_float(90), float)
    assert to_float("1,234.5") == 1234.5
    with pytest.raises(MappingError, match="not a number 'abc'"):
        to_float("abc")


@pytest.mark.parametrize(("value", "expected"), [
    ("D01;D02", ["D01", "D02"]), ("D01；D02", ["D01", "D02"]), ("D01, D02", ["D01", "D02"]),
    ("D01、D02，D03", ["D01", "D02", "D03"]), ("D01;;D02;", ["D01", "D02"]),
    ("D01\nD02", ["D01", "D02"]), (["D01", " D02 ", "", 7], ["D01", "D02", "7"]),
    ("D01;D01", ["D01"]), ("D01", ["D01"]),
])
def test_split(value: object, expected: list[str]) -> None:
    assert split(value) == expected


@pytest.mark.parametrize("value", [
    "13812345678", "138 1234 5678", "138-1234-5678", "+86 138 1234 5678", "+8613812345678",
    "8613812345678", "0086-138-1234-5678", 13812345678, 13812345678.0, "１３８１２３４５６７８",
])
def test_mobile(value: object) -> None:
    assert mobile(value) == "13812345678"


@pytest.mark.parametrize("value", ["1381234567", "23812345678", "010-12345678", "138123456789",
                                   "1381234567a"])
def test_mobile_rejects_and_masks(value: str) -> None:
    with pytest.raises(MappingError, match="invalid mobile") as caught:
        mobile(value)
    assert value not in str(caught.value)


def test_party_org_by_name_configured_map_wins_over_lookup() -> None:
    ctx = MappingContext(resolve_party_org={"第一党支部": "LOOKUP"}.get,
                         party_org_names={"第一党支部": "CONFIGURED"})
    assert party_org_by_name(" 第一党支部 ", ctx) == "CONFIGURED"
    assert party_org_by_name("第一党支部", MappingContext(resolve_party_org={"第一党支部": "P1"}.get)) == "P1"


def test_party_org_by_name_unknown() -> None:
    with pytest.raises(MappingError, match="unknown party org '第九党支部'"):
        party_org_by_name("第九党支部", MappingContext())


def test_registries() -> None:
    expected = {"strip", "upper", "lower", "str", "int", "float", "bool", "date", "epoch_ms_date",
                "month", "period", "split", "id_number", "mobile"}
    assert expected <= set(TRANSFORMS)
    assert set(CONTEXT_TRANSFORMS) == {"party_org_by_name"}
    assert "id_number_matches_birth_date_and_gender" in CHECKS
    assert TRANSFORMS["upper"](" ab ") == "AB"
    assert TRANSFORMS["lower"]("AB") == "ab"
    assert TRANSFORMS["bool"]("是") is True
