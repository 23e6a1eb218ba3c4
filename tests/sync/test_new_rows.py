"""sync.new_rows builds a create's row exactly as Applier._new_row and the bulk inserter do.

Every record of a generated enterprise (its noise included: empty values, missing ID numbers),
plus records the enterprise never sends (fields absent, text COPY must escape), is built both
ways on SQLite (a tuple of driver values) and PostgreSQL (a line of COPY data): the values,
the feed entry and the ID number's hash agree; encrypted values, whose nonces differ, decrypt
to the same text. Sync-level equivalence (whole runs with and without the builder) is
tests/sync/test_read_ahead.py.
"""
from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from benchmarks.enterprise import generate
from mappings import MappingContext, MappingError
from mappings.loader import load_mapping
from records.crypto import FieldCipher
from records.db import make_engine, upgrade
from sync.apply import COLUMNS, Applier, _PERSON_ID_FIRST
from sync.new_rows import Unbuildable
from sync.plan import NOT_HASHED
from tests.conftest import TEST_SECRET, _fresh_server_database

KINDS = ("org_units", "party_orgs", "staff", "party_members")


@pytest.fixture(params=["sqlite", "postgresql"])
def applier(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Applier]:
    drop = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'rows.db'}"
    else:
        url, drop = _fresh_server_database("postgresql")
    engine = make_engine(url)
    upgrade(engine)
    try:
        with Session(engine) as session:
            yield Applier(session, FieldCipher(TEST_SECRET), 1, "cli", {"hr": 0})
    finally:
        engine.dispose()
        if drop:
            drop()


@functools.cache
def _mapped(kind: str) -> tuple[dict[str, Any], ...]:
    mapping = load_mapping("canonical")
    context = MappingContext(resolve_party_org=lambda name: None, party_org_names={})
    out = []
    for raw in _enterprise().records(kind):
        try:
            out.append(mapping.map(kind, dict(raw), context).data)
        except MappingError:
            pass
    return tuple(out)


@functools.cache
def _enterprise() -> Any:
    return generate(staff=1500, seed=5)


def _reference(applier: Applier, kind: str, data: dict[str, Any], id_hash: Any) -> tuple[Any, Any]:
    """The row and feed entry as the field-by-field path makes them."""
    inserter = applier._creation_inserter(kind)
    assert inserter is not None
    to_values = inserter.ahead_converter(start=2 if kind in _PERSON_ID_FIRST else 1)
    row, created = applier._new_row(kind, "hr", dict(data), COLUMNS[kind], id_hash)
    return to_values(row), applier._changed_json(created)


def _assert_same_values(applier: Applier, kind: str, ours: Any, theirs: Any) -> None:
    inserter = applier._creation_inserter(kind)
    assert inserter is not None
    columns = inserter.columns[2 if kind in _PERSON_ID_FIRST else 1:]
    if isinstance(ours, bytes):  # PostgreSQL: lines of COPY data
        assert ours.endswith(b"\n") and theirs.endswith(b"\n")
        ours, theirs = ours[:-1].decode().split("\t"), theirs[:-1].decode().split("\t")
        ours = [None if v == "\\N" else v for v in ours]
        theirs = [None if v == "\\N" else v for v in theirs]
    assert len(ours) == len(theirs) == len(columns)
    for column, a, b in zip(columns, ours, theirs):
        if column.endswith("_enc") and a is not None:
            assert applier.cipher.decrypt(a) == applier.cipher.decrypt(b), column
        else:
            assert a == b, column


@pytest.mark.parametrize("kind", KINDS)
def test_every_generated_record_is_built_as_the_field_by_field_path_builds_it(applier: Applier, kind: str) -> None:
    build = applier.row_builder(kind, "hr")
    assert build is not None
    records = _mapped(kind)
    assert len(records) > 30
    for data in records:
        values, entry, id_hash = build(dict(data))
        hashes = kind in ("staff", "party_members")
        expected_values, expected_entry = _reference(applier, kind, data, id_hash if hashes else NOT_HASHED)
        _assert_same_values(applier, kind, values, expected_values)
        assert entry == expected_entry
        if hashes:
            assert id_hash == applier.cipher.keyed_hash(data.get("id_number") or None)
        else:
            assert id_hash is None


def test_records_the_enterprise_never_sends(applier: Applier) -> None:
    odd = [
        ("staff", {"employee_no": "E1", "name": "张三"}),  # most fields absent: their columns empty
        ("staff", {"employee_no": "E2", "name": "李\t四\\", "position": "班长\n副职", "mobile": "", "id_number": None}),
        ("staff", {"employee_no": "E3", "name": "王五", "mobile": "13800001111", "birth_date": "1990-01-02"}),
        ("staff", {"name": "赵六", "employee_no": "E4", "gender": None}),  # another order: another layout
        ("org_units", {"code": "U1", "name": "一车间"}),  # no status: the column's default, 'active'
        ("party_orgs", {"code": "P1", "name": "一支部", "kind": "branch"}),  # no retirees: False
        ("party_members", {"party_org_code": "P1"}),  # no status: 'active'
    ]
    for kind, data in odd:
        build = applier.row_builder(kind, "hr")
        assert build is not None
        values, entry, id_hash = build(dict(data))
        expected_values, expected_entry = _reference(
            applier, kind, data, id_hash if kind in ("staff", "party_members") else NOT_HASHED)
        _assert_same_values(applier, kind, values, expected_values)
        assert entry == expected_entry
    build = applier.row_builder("staff", "hr")
    assert build is not None
    # A hash the caller already has is used as it is (the planner hashes before placing).
    values, _, id_hash = build({"employee_no": "E5", "name": "钱七", "id_number": "110105194912310029"},
                               "given-hash")
    assert id_hash == "given-hash"
    assert ("given-hash" in values.decode()) if isinstance(values, bytes) else ("given-hash" in values)


# A field outside the compact entry's bit list; one with a bit but no column in org_units.
@pytest.mark.parametrize("extra", ["not_a_provenance_field", "period"])
def test_a_field_the_builder_cannot_place_is_left_to_the_field_by_field_path(
        applier: Applier, monkeypatch: pytest.MonkeyPatch, extra: str) -> None:
    monkeypatch.setitem(COLUMNS, "org_units", (*COLUMNS["org_units"], extra))
    build = applier.row_builder("org_units", "hr")
    assert build is not None
    with pytest.raises(Unbuildable):
        build({"code": "U1", "name": "一车间", extra: "2024"})
    # Records without that field still build.
    values, _, _ = build({"code": "U2", "name": "二车间"})
    assert values
