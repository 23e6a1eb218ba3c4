"""How canonical fields become columns of the unified records, and back for comparison.

Dates arrive as ISO strings and are stored as dates; ID numbers and mobiles are stored encrypted
with a keyed hash (compared) and a masked copy (shown, and written to the change feed).
"""
from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import orjson

from records.bulk import to_date
from records.crypto import FieldCipher, mask_id_number, mask_mobile

SENSITIVE_FIELDS = {"id_number": mask_id_number, "mobile": mask_mobile}
DATE_FIELDS = frozenset(
    {"birth_date", "hired_on", "party_joined_on", "joined_on", "full_member_on", "elected_on", "held_on",
     "paid_on"}
)


def columns_of(name: str) -> tuple[str, ...]:
    """The columns a canonical field is stored in: its own, or a sensitive one's three."""
    return (f"{name}_enc", f"{name}_hash", f"{name}_masked") if name in SENSITIVE_FIELDS else (name,)


def to_columns(fields: dict[str, Any], cipher: FieldCipher) -> dict[str, Any]:
    """Canonical field values → column values (only the fields given)."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        mask = SENSITIVE_FIELDS.get(name)
        if mask is not None:
            value = value or None
            out[f"{name}_enc"] = cipher.encrypt(value)
            out[f"{name}_hash"] = cipher.keyed_hash(value)
            out[f"{name}_masked"] = mask(value)
        elif name in DATE_FIELDS:
            out[name] = to_date(value)
        else:
            out[name] = value
    return out


def comparable(name: str, value: Any, cipher: FieldCipher) -> Any:
    """A canonical value in the form it is compared with a stored row (hash, date, plain)."""
    if name in SENSITIVE_FIELDS:
        return cipher.keyed_hash(value or None)
    if name in DATE_FIELDS:
        return to_date(value)
    return value


def stored_comparable(name: str, row: Any) -> Any:
    """The stored row's value of a canonical field, in comparable form."""
    if name in SENSITIVE_FIELDS:
        return getattr(row, f"{name}_hash")
    return getattr(row, name)


def shown(name: str, value: Any) -> Any:
    """A value as it may appear in the change feed and plans: masked if sensitive, JSON-safe."""
    mask = SENSITIVE_FIELDS.get(name)
    if mask is not None:
        return mask(value) if value else None
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


def stored_shown(name: str, row: Any) -> Any:
    if name in SENSITIVE_FIELDS:
        return getattr(row, f"{name}_masked")
    return shown(name, getattr(row, name))


class Fingerprinter:
    """Keyed fingerprint of a raw source record: unchanged records are skipped by comparing it.

    Keyed (blake2b with a secret-derived key) because records hold ID numbers: a plain hash of a
    few guessable fields could be reversed by brute force. The file connector's `_row` (the
    record's line number) is left out, so inserting a row above does not change the rows below.
    """

    def __init__(self, cipher: FieldCipher) -> None:
        self._key = hashlib.sha256(b"fingerprint" + cipher.keyed_hash("fingerprint-key").encode()).digest()

    def raw(self, record: dict[str, Any], salt: bytes) -> str:
        row = record.pop("_row", None) if "_row" in record else None
        try:
            payload = _serialise(record)
        finally:
            if row is not None:
                record["_row"] = row
        # Key as a prefix: BLAKE2 has no length-extension weakness, and creating a hasher with
        # `key=` costs more than hashing a whole record.
        return hashlib.blake2b(self._key + salt + b"\x00" + payload, digest_size=16).hexdigest()


# orjson, several times faster than repr() for this; everything it does not encode natively
# (dates and times, subclasses, Decimals, …) is encoded as its repr(), so 1, 1.0, "1",
# True and date(2020, 1, 1) all still differ. What orjson refuses (integers beyond 64 bits)
# falls back to repr() of the whole record.
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS


def _serialise(record: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(record, default=_repr, option=_ORJSON_OPTIONS)
    except (TypeError, orjson.JSONEncodeError):
        return b"r" + repr(record).encode("utf-8")


def _repr(value: Any) -> str:
    return "\x00" + type(value).__name__ + ":" + repr(value)
