"""records.compact: provenance maps and create entries are stored short and read back exactly."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import insert, select, text

from records.compact import (
    PROVENANCE_FIELDS,
    compact_changed,
    compact_provenance,
    created_entry,
    expand_changed,
    expand_provenance,
)
from records.db import make_engine, upgrade
from records.models import Change, Person, utcnow

STAFF_FIELDS = ("employee_no", "name", "gender", "birth_date", "id_number", "mobile", "org_unit_code")


def test_provenance_of_one_source_is_one_pair_and_reads_back_equal() -> None:
    provenance = {field: "hr" for field in STAFF_FIELDS}
    stored = compact_provenance(provenance)
    assert stored == [["hr", sum(1 << PROVENANCE_FIELDS.index(f) for f in STAFF_FIELDS)]]
    assert expand_provenance(json.loads(json.dumps(stored))) == provenance
    assert len(json.dumps(stored)) < len(json.dumps(provenance)) / 4


def test_provenance_of_several_sources_keeps_each_fields_owner() -> None:
    provenance = {"name": "hr", "party_org_code": "roster", "mobile": "scim", "employee_no": "hr"}
    stored = compact_provenance(provenance)
    assert sorted(source for source, _ in stored) == ["hr", "roster", "scim"]
    assert expand_provenance(stored) == provenance


@pytest.mark.parametrize("provenance", [
    {},
    {"name": "hr", "a_field_added_later": "hr"},  # not in the list: kept as it is
    {"name": None},
    {"name": {"source": "hr"}},
])
def test_provenance_that_cannot_be_compacted_is_stored_as_it_is(provenance: dict) -> None:
    assert compact_provenance(provenance) is provenance
    assert expand_provenance(provenance) == provenance


def test_the_field_list_only_grows() -> None:
    # Stored rows depend on each field's position: these must never move.
    assert PROVENANCE_FIELDS[:5] == ("code", "name", "parent_code", "kind", "status")
    assert PROVENANCE_FIELDS.index("id_number") == 16
    assert PROVENANCE_FIELDS.index("paid_on") == 43
    assert len(set(PROVENANCE_FIELDS)) == len(PROVENANCE_FIELDS)


def test_a_create_entry_built_in_its_stored_form_is_kept_as_it_is() -> None:
    stored = created_entry({"name": "张三", "mobile": None})
    assert compact_changed(stored) is stored
    assert expand_changed(stored) == {"name": [None, "张三"], "mobile": [None, None]}
    assert expand_changed(created_entry({"code": "X"})) == {"code": [None, "X"]}
    assert expand_changed(created_entry({})) == {}


def test_a_create_entry_keeps_only_its_values_in_field_order() -> None:
    created = {"employee_no": [None, "E1"], "name": [None, "张三"], "mobile": [None, None],
               "attendee_nos": [None, ["E2", "E3"]]}
    stored = compact_changed(created)
    bits = sum(1 << PROVENANCE_FIELDS.index(f) for f in created)
    assert stored == {"+": [bits, "张三", "E1", None, ["E2", "E3"]]}  # name's bit comes first
    assert expand_changed(json.loads(json.dumps(stored))) == created
    assert len(json.dumps(stored)) < len(json.dumps({f: v for f, (_, v) in created.items()}))


def test_a_create_entry_naming_a_field_outside_the_list_keeps_the_names() -> None:
    created = {"name": [None, "张三"], "id_number": [None, "110101********0015"], "link": [None, {"source": "hr"}]}
    stored = compact_changed(created)
    assert stored == {"+": {"name": "张三", "id_number": "110101********0015", "link": {"source": "hr"}}}
    assert expand_changed(json.loads(json.dumps(stored))) == created


def test_create_entries_written_in_the_earlier_short_form_read_back() -> None:
    assert expand_changed({"+": {"name": "张三", "code": "X"}}) == {"name": [None, "张三"], "code": [None, "X"]}
    assert expand_changed({"+": [1 << PROVENANCE_FIELDS.index("code"), "X", "extra"]}) == \
        {"+": [1 << PROVENANCE_FIELDS.index("code"), "X", "extra"]}  # not ours: left alone


@pytest.mark.parametrize("changed", [
    {"name": ["张三", "张叁"]},                  # an update
    {"name": [None, "张三"], "mobile": ["1", None]},  # partly an update
    {"severity": "high"},                       # not before/after pairs
    {},
    None,
])
def test_other_entries_are_stored_as_they_are(changed: dict | None) -> None:
    assert compact_changed(changed) is changed
    assert expand_changed(changed) == changed


def test_through_the_database_rows_hold_the_short_form_and_queries_see_dicts(any_db_url: str) -> None:
    engine = make_engine(any_db_url)
    try:
        upgrade(engine)
        provenance = {field: "hr" for field in STAFF_FIELDS}
        created = {"name": [None, "张三"], "employee_no": [None, "E1"]}
        with engine.begin() as conn:
            conn.execute(insert(Person).values(id=1, employee_no="E1", name="张三", provenance=provenance))
            conn.execute(insert(Change).values(actor="t", entity="person", entity_id=1, op="create", changed=created))
            # A row written before the compact form existed reads back as it was.
            conn.execute(text("INSERT INTO changes (actor, entity, entity_id, op, changed, at) "
                              "VALUES ('t', 'person', 1, 'update', :c, :at)"),
                         {"c": json.dumps({"name": [None, "李四"]}), "at": utcnow()})
        with engine.connect() as conn:
            raw_provenance = conn.execute(text("SELECT provenance FROM persons")).scalar_one()
            raw_changed = conn.execute(text("SELECT changed FROM changes WHERE op = 'create'")).scalar_one()
            assert (json.loads(raw_provenance) if isinstance(raw_provenance, str) else raw_provenance)[0][0] == "hr"
            assert "+" in (json.loads(raw_changed) if isinstance(raw_changed, str) else raw_changed)
            assert conn.execute(select(Person.provenance)).scalar_one() == provenance
            assert [c for (c,) in conn.execute(select(Change.changed).order_by(Change.id))] == [
                created, {"name": [None, "李四"]}]
    finally:
        engine.dispose()
