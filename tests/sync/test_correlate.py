"""sync.correlate: the person index loads the stored persons a page's records could be about,
not every stored person, and places records against them as it did against all of them."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, event, insert
from sqlalchemy.orm import Session

from records.db import make_engine, upgrade
from records.models import Membership, Person, SourceLink, utcnow
from sync.correlate import PersonIndex


def _person(pid: int, emp: str | None, idh: str | None, name: str) -> dict:
    now = utcnow()
    return {"id": pid, "employee_no": emp, "id_number_hash": idh, "name": name, "birth_date": None,
            "staff_active": emp is not None, "provenance": {}, "created_at": now, "updated_at": now}


@pytest.fixture
def engine(any_db_url: str) -> Iterator[Engine]:
    engine = make_engine(any_db_url)
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def stored(engine: Engine) -> Engine:
    """张伟 twice (one with an ID number, one without), 李娜, and 王芳 known from the roster only."""
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(insert(Person), [_person(1, "E1", "H1", "张伟"), _person(2, "E2", None, "张伟"),
                                      _person(3, "E3", "H3", "李娜"), _person(4, None, "H4", "王芳")])
        conn.execute(insert(Membership), [{"id": 1, "person_id": 4, "party_org_code": "P1", "status": "active",
                                           "active": True, "provenance": {}, "created_at": now, "updated_at": now}])
        conn.execute(insert(SourceLink), [
            {"source": "hr", "kind": "staff", "external_id": "E1", "entity_id": 1, "fingerprint": "f", "active": True},
            {"source": "party", "kind": "party_members", "external_id": "m4", "entity_id": 1, "fingerprint": "f",
             "active": True},
        ])
    return engine


def _statements(engine: Engine) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda conn, cursor, sql, *rest: seen.append(sql))
    return seen


def test_only_the_persons_a_page_could_be_about_are_loaded(stored: Engine) -> None:
    with Session(stored) as session:
        index = PersonIndex(session)
        index.prepare([("E9", "H1", None)])  # a new hire whose ID number 张伟 (E1) already has
        assert set(index.by_id) == {1}
        assert index.by_id[1].staff_sources == ("hr",)
        placed = index.place_staff("hr2", "E9", {"employee_no": "E9", "name": "张伟"}, "H1")
        assert placed.ambiguous and placed.reason == "same ID number as a person with another employee number"

        # The roster-only person is found by the ID-number hash; its roster source comes along.
        index.prepare([("E4", "H4", None)])
        assert set(index.by_id) == {1, 4} and index.by_id[4].member_sources == ("party",)
        placed = index.place_staff("hr", "E4", {"employee_no": "E4", "name": "王芳"}, "H4")
        assert placed.person is index.by_id[4] and not placed.is_new and index.by_emp["E4"] is placed.person

        # A roster row with a name only meets both 张伟: a human decides.
        index.prepare([(None, None, "张伟")])
        placed = index.place_member("party", "r1", {"name": "张伟"}, None, weak_key=True)
        assert placed.ambiguous and {c.id for c in placed.candidates} == {1, 2}
        assert 3 not in index.by_id  # 李娜 was never asked for


def test_each_value_is_looked_up_once(stored: Engine) -> None:
    with Session(stored) as session:
        index = PersonIndex(session)
        index.prepare([("E3", "H3", None)])
        seen = _statements(stored)
        index.prepare([("E3", "H3", None), ("E3", None, None)])
        assert not [s for s in seen if "persons" in s]
        assert index.place_staff("hr", "E3", {"employee_no": "E3", "name": "李娜"}, "H3").person is index.by_id[3]


def test_a_person_this_run_planned_and_wrote_is_not_loaded_twice(stored: Engine) -> None:
    with Session(stored) as session:
        index = PersonIndex(session)
        index.prepare([("E5", "H5", None)])
        placed = index.place_staff("hr", "E5", {"employee_no": "E5", "name": "赵敏"}, "H5")
        assert placed.is_new
        # The run inserts it (its id assigned on the shared Ref) before a later page asks again.
        placed.person.id = 5
        session.connection().execute(insert(Person), [_person(5, "E5", "H5", "赵敏")])
        index.prepare([(None, None, "赵敏")])  # a roster row with a name only finds it stored
        assert index.by_name["赵敏"] is placed.person and index.by_id[5] is placed.person
        assert index.by_idh["H5"] is placed.person
        # A roster row with that ID number meets one person, not two.
        row = index.place_member("party", "r5", {"name": "赵敏"}, "H5", weak_key=False)
        assert row.person is placed.person


def test_a_first_load_asks_the_database_once(engine: Engine) -> None:
    with Session(engine) as session:
        index = PersonIndex(session)
        seen = _statements(engine)
        index.prepare([("E1", "H1", None)])
        assert not index.wants_keys and len([s for s in seen if "persons" in s]) == 1
        first = index.place_staff("hr", "E1", {"employee_no": "E1", "name": "张伟"}, "H1")
        again = index.place_member("party", "m1", {"name": "张伟"}, "H1", weak_key=False)
        assert first.is_new and again.person is first.person


def test_a_common_name_loads_its_persons_and_their_sources_in_bounded_statements(engine: Engine) -> None:
    """A roster row matched by name only, 600 stored persons of that name: every one is a
    candidate with its sources, and no statement binds more than 500 values (SQLite allows
    32 766, PostgreSQL 65 535: a name can stand for more persons than that)."""
    with engine.begin() as conn:
        conn.execute(insert(Person), [_person(pid, f"E{pid}", f"H{pid}", "王伟") for pid in range(1, 601)])
        conn.execute(insert(SourceLink), [
            {"source": "hr", "kind": "staff", "external_id": f"E{pid}", "entity_id": pid, "fingerprint": "f",
             "active": True} for pid in range(1, 601)])
    sizes: list[int] = []
    event.listen(engine, "before_cursor_execute",
                 lambda conn, cursor, sql, params, *rest: sizes.append(len(params or ())))
    with Session(engine) as session:
        index = PersonIndex(session)
        index.prepare([(None, None, "王伟")])
        placed = index.place_member("party", "r1", {"name": "王伟"}, None, weak_key=True)
        assert placed.ambiguous and {c.id for c in placed.candidates} == set(range(1, 601))
        assert all(index.by_id[pid].staff_sources == ("hr",) for pid in range(1, 601))
    assert sizes and max(sizes) <= 510
