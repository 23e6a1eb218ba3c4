"""Sensitive fields: encrypted at rest, matched by keyed hash, shown masked."""
from __future__ import annotations

import pytest

from records.crypto import FieldCipher, mask_id_number, mask_mobile


def test_encrypt_round_trip_with_fresh_nonces() -> None:
    cipher = FieldCipher("k" * 32)
    a, b = cipher.encrypt("11010519491231002X"), cipher.encrypt("11010519491231002X")
    assert a != b and "1101051949" not in a
    assert cipher.decrypt(a) == cipher.decrypt(b) == "11010519491231002X"
    assert cipher.encrypt(None) is None and cipher.encrypt("") is None


def test_keyed_hash_matches_case_insensitively_and_depends_on_the_key() -> None:
    one, two = FieldCipher("k" * 32), FieldCipher("j" * 32)
    assert one.keyed_hash("11010519491231002x") == one.keyed_hash(" 11010519491231002X ")
    assert one.keyed_hash("11010519491231002X") != two.keyed_hash("11010519491231002X")


def test_masks_and_short_keys() -> None:
    assert mask_id_number("11010519491231002X") == "110105********002X"
    assert mask_mobile("13812345678") == "138****5678"
    with pytest.raises(ValueError):
        FieldCipher("short")
