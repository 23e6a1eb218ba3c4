"""Compact storage of the two JSON values a sync writes for every record it creates.

A first load writes a million persons, each with a provenance map (which source set each field)
and a change-feed entry (each field's before and after value). Stored literally they were the
largest part of the database (`{"employee_no":"hr","name":"hr",…}` is ~250 bytes, a person's
create entry ~420), and every byte is written to the table, the write-ahead log and the disk.
The column types here store the same values in a shorter form and give back exactly what was
stored; everything above the database (ORM, Core queries, the bulk inserter) sees plain dicts:

* `ProvenanceJSON`: `{field: source}` is kept as `[[source, field bits], …]`, one pair per
  source, each bit a field of `PROVENANCE_FIELDS`. A map naming a field outside that list, or a
  source that is not a string, is stored as it is.
* `ChangedJSON`: a change whose before-values are all null (a create) is kept as
  `{"+": [field bits, after, after, …]}` instead of `{field: [null, after], …}`: the values in
  the order of `PROVENANCE_FIELDS` (which is also the order the fields read back in), or as
  `{"+": {field: after}}` when a field is outside that list.

Rows written before these types existed hold the literal form, which reads back unchanged.
"""
from __future__ import annotations

from operator import itemgetter
from typing import Any

from sqlalchemy import JSON
from sqlalchemy.types import TypeDecorator

# Fields a provenance map may name compactly: bit i is PROVENANCE_FIELDS[i]. Stored rows depend
# on the positions, so this list is only ever appended to.
PROVENANCE_FIELDS = (
    "code", "name", "parent_code", "kind", "status", "manager_employee_no", "secretary",
    "elected_on", "term_years", "has_committee", "retirees", "employee_no", "gender",
    "birth_date", "ethnicity", "education", "id_number", "mobile", "org_unit_code", "position",
    "employment_status", "hired_on", "political_status", "party_joined_on", "party_org_code",
    "category", "joined_on", "full_member_on", "dues_category", "period", "grade", "score",
    "score_max", "month", "after_tax_pay", "activity_key", "type", "held_on", "attendees",
    "expected", "lecturer", "attendee_nos", "amount", "paid_on",
)
_BIT = {name: 1 << i for i, name in enumerate(PROVENANCE_FIELDS)}
CREATED = "+"  # the one key of a compact create entry (no field is named so)
_MISSING = object()


def compact_provenance(provenance: Any) -> Any:
    if not isinstance(provenance, dict) or not provenance:
        return provenance
    masks: dict[str, int] = {}
    bit = _BIT.get
    for field, source in provenance.items():
        flag = bit(field)
        if flag is None or source.__class__ is not str:
            return provenance
        masks[source] = masks.get(source, 0) | flag
    return [[source, mask] for source, mask in masks.items()]


def expand_provenance(stored: Any) -> Any:
    if not isinstance(stored, list):
        return stored
    out: dict[str, str] = {}
    for source, mask in stored:
        i = 0
        while mask:
            if mask & 1:
                out[PROVENANCE_FIELDS[i]] = source
            mask >>= 1
            i += 1
    return out


def compact_changed(changed: Any) -> Any:
    if not isinstance(changed, dict) or not changed or CREATED in changed:
        return changed
    after: dict[str, Any] = {}
    for field, pair in changed.items():
        if pair.__class__ is not list or len(pair) != 2 or pair[0] is not None:
            return changed
        after[field] = pair[1]
    return created_entry(after)


# How to lay out the after-values of a create by its field names (in the writer's order): the
# field bits and a function picking the values in bit order, or None when a field has no bit.
# A writer makes its creates of one kind with the same fields, so a handful of entries serve a
# million rows; bounded against a writer with ever new field sets.
_LAYOUTS: dict[tuple[str, ...], tuple[int, Any] | None] = {}
_MAX_LAYOUTS = 512


def _layout(fields: tuple[str, ...]) -> tuple[int, Any] | None:
    if not fields or any(f not in _BIT for f in fields):
        return None
    ordered = sorted(fields, key=_BIT.__getitem__)
    mask = 0
    for field in ordered:
        mask |= _BIT[field]
    if len(ordered) == 1:
        only = ordered[0]
        return mask, lambda after: (after[only],)
    return mask, itemgetter(*ordered)


def field_bits(fields: tuple[str, ...]) -> dict[str, int] | None:
    """Each field's bit in a compact create entry, None when one has none: a writer that lays
    out the entry itself (sync.new_rows) puts the after-values in the order of their bits."""
    if any(f not in _BIT for f in fields):
        return None
    return {f: _BIT[f] for f in fields}


def created_entry(after: dict[str, Any]) -> dict[str, Any]:
    """A create's change entry (`{field: [None, after]}` when read) built straight in its stored
    form, for writers that make a million of them (sync.apply); `ChangedJSON` keeps it as it is."""
    fields = tuple(after)
    layout = _LAYOUTS.get(fields, _MISSING)
    if layout is _MISSING:
        layout = _layout(fields)
        if len(_LAYOUTS) < _MAX_LAYOUTS:
            _LAYOUTS[fields] = layout
    if layout is None:
        return {CREATED: after}
    mask, pick = layout
    return {CREATED: [mask, *pick(after)]}


def expand_changed(stored: Any) -> Any:
    if not isinstance(stored, dict) or len(stored) != 1:
        return stored
    created = stored.get(CREATED)
    if isinstance(created, dict):
        return {field: [None, value] for field, value in created.items()}
    if isinstance(created, list) and created and isinstance(created[0], int):
        mask, values = created[0], created[1:]
        fields = [PROVENANCE_FIELDS[i] for i in range(mask.bit_length()) if mask >> i & 1]
        if len(fields) == len(values):
            return {field: [None, value] for field, value in zip(fields, values)}
    return stored


class _CompactJSON(TypeDecorator[Any]):
    """JSON stored in a short form: `compact` on the way in, `expand` on the way out."""

    impl = JSON
    cache_ok = True
    compact = staticmethod(lambda value: value)
    expand = staticmethod(lambda value: value)

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        return self.compact(value)

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return self.expand(value)


class ProvenanceJSON(_CompactJSON):
    """A record's provenance `{field: source}`, stored compactly (see the module docstring)."""

    cache_ok = True  # SQLAlchemy asks each subclass for itself
    compact = staticmethod(compact_provenance)
    expand = staticmethod(expand_provenance)


class ChangedJSON(_CompactJSON):
    """A change-feed entry `{field: [before, after]}`, a create's stored compactly."""

    cache_ok = True
    compact = staticmethod(compact_changed)
    expand = staticmethod(expand_changed)
