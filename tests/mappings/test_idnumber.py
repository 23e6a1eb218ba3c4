"""GB 11643-1999 ID numbers: checksum, birth date, area, sex, masking, the record check."""
from __future__ import annotations

import random
from datetime import date

import pytest

from mappings import idnumber
from mappings.base import MappingError

# Valid numbers (check characters worked out by hand with the MOD 11-2 weights).
VALID = {
    "11010519491231002X": (date(1949, 12, 31), "2"),  # the standard's own example
    "440304199001010011": (date(1990, 1, 1), "1"),
    "320102198511152348": (date(1985, 11, 15), "2"),
    "510107200002294564": (date(2000, 2, 29), "2"),
    "61010419781231001X": (date(1978, 12, 31), "1"),
}


@pytest.mark.parametrize(("number", "parsed"), VALID.items())
def test_valid_numbers_parse_to_birth_date_and_sex(number: str, parsed: tuple) -> None:
    assert idnumber.validate(number) == number
    assert idnumber.parse(number) == parsed


@pytest.mark.parametrize("spelling", ["11010519491231002x", " 11010519491231002X ",
                                      "１１０１０５１９４９１２３１００２Ｘ", "110105 19491231 002X"])
def test_normalizes_lower_x_full_width_and_spaces(spelling: str) -> None:
    assert idnumber.validate(spelling) == "11010519491231002X"


@pytest.mark.parametrize(("number", "reason"), [
    ("110105194912310021", "invalid check character"),
    ("440304199001010012", "invalid check character"),
    ("11010519491231002", "must be 18 characters"),
    ("110105491231002", "must be 18 characters"),  # old 15-digit numbers are not accepted
    ("1101051949123100XX", "must be 17 digits"),
    ("91010519491231002X", "invalid area code"),
    ("010105194912310021", "invalid area code"),
    ("110105194902300021", "invalid birth date"),  # 1949-02-30
    ("110105189912310021", "invalid birth date"),
])
def test_invalid_numbers_name_the_problem(number: str, reason: str) -> None:
    with pytest.raises(MappingError, match=reason) as caught:
        idnumber.validate(number)
    assert caught.value.field == "id_number"


def test_birth_date_in_the_future_is_invalid() -> None:
    first17 = "11010520990101001"
    number = first17 + idnumber.check_character(first17)
    with pytest.raises(MappingError, match="invalid birth date"):
        idnumber.validate(number, today=date(2024, 1, 1))


def test_errors_never_carry_the_full_number() -> None:
    with pytest.raises(MappingError) as caught:
        idnumber.validate("110105194912310021")
    assert "110105194912310021" not in str(caught.value)
    assert "110105********0021" in str(caught.value)
    assert caught.value.value == "110105********0021"


def test_mask() -> None:
    assert idnumber.mask("11010519491231002X") == "110105********002X"
    assert idnumber.mask("13812345678", head=3, tail=4) == "138****5678"
    assert idnumber.mask("12345") == "*****"


def _check(**data: object) -> None:
    idnumber.check_matches_birth_date_and_gender(dict(data))


def test_record_check_accepts_agreeing_or_missing_fields() -> None:
    _check(id_number="11010519491231002X", birth_date="1949-12-31", gender="2")
    _check(id_number="11010519491231002X")
    _check(id_number="11010519491231002X", birth_date=None, gender="9")
    _check(id_number=None, birth_date="2000-01-01", gender="1")
    _check(birth_date="2000-01-01")


def test_record_check_rejects_other_birth_date() -> None:
    with pytest.raises(MappingError, match="birth date in the ID number") as caught:
        _check(id_number="11010519491231002X", birth_date="1950-01-01")
    assert caught.value.field == "birth_date"
    assert "11010519491231002X" not in str(caught.value)


def test_record_check_rejects_other_sex() -> None:
    with pytest.raises(MappingError, match="sex in the ID number") as caught:
        _check(id_number="11010519491231002X", gender="1")
    assert caught.value.field == "gender"


def test_check_character_is_the_weighted_sum_of_the_standard() -> None:
    # The definition, digit by digit: the fast form (base 13) must agree on every number.
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    rng = random.Random(7)
    for _ in range(20_000):
        first17 = "".join(rng.choice("0123456789") for _ in range(17))
        expected = "10X98765432"[sum(int(d) * w for d, w in zip(first17, weights)) % 11]
        assert idnumber.check_character(first17) == expected


def test_a_birth_date_is_judged_against_today_each_time() -> None:
    # The birth dates seen are remembered; whether one is in the future is not.
    first17 = "11010520240601001"
    number = first17 + idnumber.check_character(first17)
    assert idnumber.validate(number, today=date(2024, 6, 1)) == number
    with pytest.raises(MappingError, match="invalid birth date"):
        idnumber.validate(number, today=date(2024, 5, 31))
    assert idnumber.validate(number, today=date(2025, 1, 1)) == number


def test_today_is_read_on_the_first_call_whenever_it_comes(monkeypatch: pytest.MonkeyPatch) -> None:
    # A process started within a minute of boot (monotonic time below 60 s) still has a today.
    monkeypatch.setattr(idnumber, "_TODAY", [-1.0, None])
    monkeypatch.setattr(idnumber, "monotonic", lambda: 5.0)
    assert idnumber.validate("11010519491231002X") == "11010519491231002X"
