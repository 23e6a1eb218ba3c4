"""A create's row, built straight into its insert values: the hot path of a first load.

A first load builds a million rows and their change-feed entries. `Applier._new_row` does it
field by field into a row dict, which `BulkInserter.row_converter` then turns into the insert's
values: two passes, each asking per field and per record what the field is (sensitive? a date?
which column, which default?) — 15 µs a person. Those answers depend only on which fields a
record has, and a source's records of one kind nearly always have the same ones. So here they
are worked out once per field set (`_Layout`): a template of the values every row shares
(provenance, timestamps, flags, empty and default columns, already converted), the place and
conversion of each field's value, the encrypted, hashed and masked columns of each sensitive
one, and the order of the feed entry's after-values. A row is then the template's copy with
the record's values put in: 11 µs a person (two encryptions and two keyed hashes are ~5 of
those), ~3.7 µs a membership instead of ~5.8.

The result is what `_new_row` and the inserter make of the same record — value for value, the
encrypted ones aside, whose nonces differ (tests/sync/test_new_rows.py) — so either may build
any row. Records with a field outside the compact feed entry's field list
(records.compact) or without a column of its own are left to `_new_row` (`build` raises
`Unbuildable`).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from records.bulk import BulkInserter
from records.compact import CREATED, field_bits
from records.crypto import FieldCipher
from sync.fields import SENSITIVE_FIELDS, columns_of
from sync.plan import NOT_HASHED, NewRow


class Unbuildable(Exception):
    """A record this builder leaves to `Applier._new_row`."""


class _Layout:
    """How the records with one set of fields become rows (module docstring)."""

    __slots__ = ("template", "defaults", "plain", "secret", "created")

    def __init__(self, template: list[Any], defaults: tuple[Any, ...], plain: tuple[Any, ...],
                 secret: tuple[Any, ...], created: tuple[Any, ...]) -> None:
        self.template = template  # the values every such row shares, converted
        self.defaults = defaults  # (index, default, convert): columns whose default is made per row
        self.plain = plain  # (field, index, convert)
        self.secret = secret  # (field, mask, enc index, hash index, masked index, 3 converts)
        self.created = created  # (field, bit, sensitive) in the feed entry's order


class NewRowBuilder:
    """Builds the rows of creates of one kind from one source, for an inserter whose columns
    are the ids the run assigns (`start` of them) and then the table's other columns."""

    def __init__(self, *, inserter: BulkInserter, start: int, fields: tuple[str, ...], source: str,
                 cipher: FieldCipher, hashes_id_number: bool, now: Any, active_column: str,
                 provenance: dict[tuple[str, tuple[str, ...]], dict[str, str]],
                 serialise: Callable[[Any], Any]) -> None:
        """`fields`: the canonical fields the kind writes; `provenance`: the applier's shared
        provenance maps (one object per field set, which the inserter converts once);
        `serialise`: the feed's `changed` column conversion."""
        self.columns = inserter.columns[start:]
        self.converts = inserter.processors[start:]
        self.column_defaults = [inserter.table.c[c].default for c in self.columns]
        self.fields, self.source, self.now, self.active_column = fields, source, now, active_column
        self.cipher, self.hashes = cipher, hashes_id_number
        self.provenance, self.serialise = provenance, serialise
        self.to_line = inserter.copy_line(start)  # PostgreSQL: the row as its line of COPY data
        self._layouts: dict[tuple[str, ...], _Layout | None] = {}

    def _layout(self, keys: tuple[str, ...]) -> _Layout | None:
        present = tuple(f for f in self.fields if f in keys)
        bits = field_bits(present)
        if bits is None:
            return None
        position = {c: i for i, c in enumerate(self.columns)}
        needed = [c for f in present for c in columns_of(f)]
        if any(c not in position for c in needed):
            return None  # a field the table has no column for: _new_row ignores it, as before
        converts = self.converts
        provenance = self.provenance.get((self.source, present))
        if provenance is None:
            provenance = self.provenance[(self.source, present)] = {f: self.source for f in present}
        shared = {"provenance": provenance, "created_at": self.now, "updated_at": self.now,
                  self.active_column: True}
        plain, secret = [], []
        for name in present:
            mask = SENSITIVE_FIELDS.get(name)
            if mask is None:
                plain.append((name, position[name], converts[position[name]]))
                continue
            at = (position[f"{name}_enc"], position[f"{name}_hash"], position[f"{name}_masked"])
            secret.append((name, mask, *at, *(converts[i] for i in at)))
        written = {i for _, i, _ in plain} | {i for s in secret for i in s[2:5]}
        template: list[Any] = []
        defaults = []
        for i, (column, convert, default) in enumerate(zip(self.columns, converts, self.column_defaults)):
            value = None
            if column in shared:
                value = shared[column]
            elif i not in written and default is not None:
                if default.is_callable:
                    defaults.append((i, default.arg, convert))
                elif default.is_scalar:
                    value = default.arg
            template.append(convert(value) if convert else value)
        created = tuple((name, bits[name], name in SENSITIVE_FIELDS)
                        for name in sorted(present, key=bits.__getitem__))
        return _Layout(template, tuple(defaults), tuple(plain), tuple(secret), created)

    def build(self, data: dict[str, Any], id_hash: Any = NOT_HASHED) -> NewRow:
        """(values, serialised feed entry, keyed hash of the ID number or None): sync.plan.NewRow.
        `id_hash`: the hash when the caller already has it."""
        if self.hashes and id_hash is NOT_HASHED:
            id_hash = self.cipher.keyed_hash(data.get("id_number") or None)
        keys = tuple(data)
        layout = self._layouts.get(keys, _MISSING)
        if layout is _MISSING:
            layout = self._layouts[keys] = self._layout(keys)
        if layout is None:
            raise Unbuildable("a field outside the compact feed entry's list, or without a column")
        values = layout.template.copy()
        for i, default, convert in layout.defaults:
            value = default(None)
            values[i] = convert(value) if convert else value
        for name, i, convert in layout.plain:
            values[i] = convert(data[name]) if convert else data[name]
        masked: dict[str, Any] = {}
        if layout.secret:
            encrypt, keyed_hash = self.cipher.encrypt, self.cipher.keyed_hash
            for name, mask, enc_at, hash_at, masked_at, enc_convert, hash_convert, masked_convert in layout.secret:
                value = data[name] or None
                shown = masked[name] = mask(value)
                sealed = encrypt(value)
                hashed = id_hash if name == "id_number" and id_hash is not NOT_HASHED else keyed_hash(value)
                values[enc_at] = enc_convert(sealed) if enc_convert else sealed
                values[hash_at] = hash_convert(hashed) if hash_convert else hashed
                values[masked_at] = masked_convert(shown) if masked_convert else shown
        # The feed entry in records.compact's create form: field bits, then the after-values.
        after: list[Any] = []
        bits = 0
        for name, bit, sensitive in layout.created:
            value = masked[name] if sensitive else data[name]
            if value is not None:
                bits |= bit
                after.append(value)
        entry = {CREATED: [bits, *after]} if after else {CREATED: {}}
        row = tuple(values) if self.to_line is None else self.to_line(values)
        return row, self.serialise(entry), id_hash if self.hashes else None


_MISSING: Any = object()
