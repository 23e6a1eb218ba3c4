"""records.bulk: rows inserted in bulk — as dicts, or converted ahead (in another process, in a
real run) and inserted later behind the ids the run assigns — read back alike."""
from __future__ import annotations

import datetime as dt
import os
import pickle
import sqlite3

import pytest
from sqlalchemy import Engine, delete, insert, inspect, select
from sqlalchemy.exc import IntegrityError

from records.bulk import BulkInserter, DeferredIndexes, allocate_ids, sqlite_literal
from records.models import Change, Membership, Person, utcnow

AWKWARD = "tab\there\nnew line\\back\rslash \\N 党员「引号」'\""



def _person(employee_no: str, name: str) -> dict:
    return {"employee_no": employee_no, "name": name, "birth_date": "1980-02-29", "gender": None,
            "provenance": {"employee_no": "hr", "name": "hr"}, "created_at": dt.datetime(2026, 11, 24, 9, 30, 1, 5),
            "updated_at": dt.datetime(2026, 11, 24, 9, 30, 1, 5), "staff_active": True}


@pytest.mark.parametrize("name", [AWKWARD, "张伟"], ids=["escaped", "plain"])
def test_rows_encoded_ahead_insert_like_rows_inserted_at_once(engine: Engine, name: str) -> None:
    table = Person.__table__
    columns = ("id", *(c.name for c in table.c if c.name != "id"))
    with engine.begin() as conn:
        at_once = BulkInserter(conn, table, columns)
        at_once.insert([{"id": allocate_ids(conn, table, 1)[0], **_person("E1", name)}])
        later = BulkInserter(conn, table, columns)
        convert = later.ahead_converter(start=1)
        # Built in another process in a real run: what it makes survives pickling.
        converted = [pickle.loads(pickle.dumps(convert(_person(no, name)))) for no in ("E2", "E3")]
        if conn.dialect.name == "postgresql":
            assert all(isinstance(line, bytes) for line in converted)  # COPY data, formatted ahead
        later.insert_ahead([((i,), values) for i, values in zip(allocate_ids(conn, table, 2), converted)])
    with engine.connect() as conn:
        rows = {r.employee_no: r for r in conn.execute(select(table))}
    assert sorted(rows) == ["E1", "E2", "E3"]
    assert [rows[no].id for no in ("E1", "E2", "E3")] == [1, 2, 3]
    for no in ("E2", "E3"):
        first, other = rows["E1"]._asdict(), rows[no]._asdict()
        assert {k: v for k, v in other.items() if k not in ("id", "employee_no")} == {
            k: v for k, v in first.items() if k not in ("id", "employee_no")}
    assert rows["E3"].name == name and rows["E3"].gender is None and rows["E3"].staff_active is True
    assert rows["E3"].birth_date == dt.date(1980, 2, 29)
    assert rows["E3"].provenance == {"employee_no": "hr", "name": "hr"}


def test_values_formatted_ahead_keep_every_character(engine: Engine) -> None:
    """Each character COPY's text format escapes, alone or beside a NULL, in any column."""
    table = Person.__table__
    columns = ("id", "employee_no", "name", "gender", "position", "staff_active", "provenance",
               "created_at", "updated_at")
    awkward = ["\\", "\\N", "\t", "\n", "\r", "a\\tb", "\\\\", "N", "", AWKWARD, "\x01"]
    with engine.begin() as conn:
        inserter = BulkInserter(conn, table, columns)
        convert = inserter.ahead_converter(start=1)
        rows = [convert({"employee_no": f"E{i}", "name": text, "gender": None, "position": text,
                         "staff_active": i % 2 == 0, "provenance": {"name": "hr"}, "created_at": utcnow()})
                for i, text in enumerate(awkward)]
        inserter.insert_ahead([((i + 1,), row) for i, row in enumerate(rows)])
    with engine.connect() as conn:
        stored = conn.execute(select(table.c.id, table.c.name, table.c.gender, table.c.position,
                                     table.c.staff_active, table.c.provenance).order_by(table.c.id)).all()
    assert [tuple(r) for r in stored] == [
        (i + 1, text, None, text, i % 2 == 0, {"name": "hr"}) for i, text in enumerate(awkward)]


def test_the_leading_values_may_be_null(engine: Engine) -> None:
    table = Change.__table__
    columns = ("id", "run_id", "actor", "entity", "entity_id", "op", "changed", "at")
    created = {"name": [None, AWKWARD]}
    with engine.begin() as conn:
        inserter = BulkInserter(conn, table, columns)
        values = inserter.row_converter(start=2)({"actor": "cli", "entity": "person", "entity_id": 3,
                                                   "op": "create", "changed": created, "at": utcnow()})
        inserter.insert_tuples([(7, None, *values)])
    with engine.connect() as conn:
        row = conn.execute(select(table)).one()
    assert (row.id, row.run_id, row.entity_id, row.changed) == (7, None, 3, created)
    assert row.seq is not None  # stamped at commit like any other change row


def _foreign_keys(engine) -> list[str]:
    return [fk["name"] for fk in inspect(engine).get_foreign_keys("memberships")]


def _unique_keys(engine) -> list[str]:
    return [key["name"] for key in inspect(engine).get_unique_constraints("persons")]


def test_a_first_load_checks_keys_once_at_the_end(engine: Engine) -> None:
    """PostgreSQL: the roster's key to persons and the persons' unique employee number wait
    with the indexes when both tables are empty, and a row breaking either fails the restore
    (so the run); elsewhere nothing changes."""
    before, unique_before = _foreign_keys(engine), _unique_keys(engine)
    assert before and unique_before
    postgres = engine.dialect.name == "postgresql"
    with engine.connect() as conn, conn.begin():
        deferred = DeferredIndexes(conn)
        deferred.defer([Person.__table__, Membership.__table__])
        assert [k[1] for k in deferred.dropped_keys] == (unique_before + before if postgres else [])
        conn.execute(insert(Person.__table__), [{**_person("E1", "张三"), "id": 1, "birth_date": None}])
        conn.execute(insert(Membership.__table__), [_membership(1)])
        deferred.restore()
    assert (_foreign_keys(engine), _unique_keys(engine)) == (before, unique_before)
    with engine.connect() as conn, conn.begin():  # not empty any more: the keys stay
        deferred = DeferredIndexes(conn)
        deferred.defer([Person.__table__, Membership.__table__])
        assert deferred.dropped_keys == []
    if postgres:
        with engine.connect() as conn, conn.begin():
            conn.execute(delete(Membership.__table__))
            conn.execute(delete(Person.__table__))
        duplicates = [{**_person("E1", "张三"), "id": 2, "birth_date": None},
                      {**_person("E1", "李四"), "id": 3, "birth_date": None}]
        broken = {"no such person": ([], [_membership(42)]),
                  "duplicate employee number": (duplicates, [_membership(2)])}
        for what, (persons, memberships) in broken.items():
            with engine.connect() as conn:
                conn.begin()
                deferred = DeferredIndexes(conn)
                deferred.defer([Person.__table__, Membership.__table__])
                if persons:
                    conn.execute(insert(Person.__table__), persons)
                conn.execute(insert(Membership.__table__), memberships)
                with pytest.raises(IntegrityError):
                    deferred.restore()
                conn.rollback()
            assert (_foreign_keys(engine), _unique_keys(engine)) == (before, unique_before), what


def _membership(person_id: int) -> dict:
    return {"person_id": person_id, "party_org_code": "P1", "category": "full", "status": "active", "active": True,
            "provenance": {}, "created_at": utcnow(), "updated_at": utcnow()}


def test_dates_go_in_as_dates_text_or_datetimes(engine: Engine) -> None:
    """A DATE column takes ISO text, a date or a datetime (its date part); on PostgreSQL COPY
    gets each as text, which also keeps `date` objects out of the read-ahead child's pickles."""
    table = Person.__table__
    columns = ("id", *(c.name for c in table.c if c.name != "id"))
    given = {"E1": "1980-02-29", "E2": dt.date(1980, 2, 29), "E3": dt.datetime(1980, 2, 29, 23, 59)}
    with engine.begin() as conn:
        inserter = BulkInserter(conn, table, columns)
        convert = inserter.row_converter(start=1)
        rows = [convert({**_person(no, "张三"), "birth_date": day}) for no, day in given.items()]
        if engine.dialect.name in ("sqlite", "postgresql"):  # MariaDB's driver binds dates itself
            at = columns.index("birth_date") - 1
            assert [row[at] for row in rows] == ["1980-02-29"] * 3
        inserter.insert_tuples([(i, *row) for i, row in zip(allocate_ids(conn, table, 3), rows)])
    with engine.connect() as conn:
        born = dict(conn.execute(select(table.c.employee_no, table.c.birth_date)).all())
    assert born == {no: dt.date(1980, 2, 29) for no in given}


def test_ids_come_ascending_and_listed_one_by_one_where_gapped(engine: Engine) -> None:
    table = Person.__table__
    with engine.begin() as conn:
        first, second = allocate_ids(conn, table, 3), allocate_ids(conn, table, 2)
        assert list(allocate_ids(conn, table, 0)) == []
        if conn.dialect.name == "postgresql":
            assert list(first) + list(second) == [1, 2, 3, 4, 5]
            # Another session's nextval between ours leaves gaps (here: a sequence that steps
            # by 3); the ids taken are then listed one by one, still ascending.
            conn.exec_driver_sql("ALTER SEQUENCE persons_id_seq INCREMENT BY 3")
            gapped = allocate_ids(conn, table, 4)
            assert list(gapped) == [8, 11, 14, 17]
        else:  # MAX(id) + 1 …: ids are taken by inserting the rows, inside the run's transaction
            assert (list(first), list(second)) == ([1, 2, 3], [1, 2])


LITERALS = [None, True, False, 0, -5, 2**62, 1.5, 1e16, -0.25, "", "O'Brien", "''", AWKWARD, "a\x00b", "\x00",
            "党员", "2026-11-24 09:30:01.000005", b"", b"\x00\x01'"]


@pytest.mark.parametrize("value", LITERALS, ids=repr)
def test_an_sqlite_literal_stores_what_binding_stores(value: object) -> None:
    import sqlite3

    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (i INTEGER, t TEXT, n NUMERIC, d DATETIME, b BOOLEAN, j JSON, x BLOB)")
    conn.execute("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?)", [value] * 7)
    literal = sqlite_literal(value)
    conn.execute(f"INSERT INTO t VALUES ({', '.join([literal] * 7)})")
    typed = "SELECT " + ", ".join(f"{c}, typeof({c})" for c in "itndbjx") + " FROM t ORDER BY rowid"
    bound, written = conn.execute(typed).fetchall()
    assert written == bound


def test_no_sqlite_literal_for_other_types() -> None:
    for value in (float("nan"), dt.date(2026, 1, 1), {"a": 1}):
        with pytest.raises(TypeError):
            sqlite_literal(value)


def test_columns_every_row_shares_are_stored_as_if_each_row_bound_them(engine: Engine) -> None:
    """SQLite: the shared columns are written into the INSERT, and what is stored (type included)
    is what binding them row by row stores. Other databases refuse them."""
    table = Person.__table__
    at = dt.datetime(2026, 11, 24, 9, 30, 1, 5)
    shared = {"created_at": at, "updated_at": at, "staff_active": True, "position": AWKWARD + "\x00",
              "scim_extensions": None, "scim_deleted_at": None, "hired_on": "2020-02-29",
              "provenance": {"name": "hr", "引号": "'"}}
    varying = ("id", "employee_no", "name", "birth_date")
    with engine.begin() as conn:
        if not BulkInserter.inlines_constants(conn):
            with pytest.raises(ValueError):
                BulkInserter(conn, table, varying, constants=shared)
            return
        everything = BulkInserter(conn, table, (*varying, *shared))
        everything.insert([{"id": 1, "employee_no": "E1", "name": "张三", "birth_date": "1980-02-29", **shared}])
        sharing = BulkInserter(conn, table, varying, constants=shared)
        assert "?" not in sharing.sql.split("VALUES")[1].split(",", len(varying))[-1]
        convert = sharing.row_converter(start=1)
        sharing.insert_ahead([((2,), convert({"employee_no": "E2", "name": "张三", "birth_date": "1980-02-29"}))])
    columns = [c.name for c in table.c if c.name not in ("id", "employee_no")]
    typed = ", ".join(f"{c}, typeof({c})" for c in columns)
    with engine.connect() as conn:
        first, second = conn.exec_driver_sql(f"SELECT {typed} FROM persons ORDER BY id").all()
        assert second == first
        row = conn.execute(select(table).where(table.c.id == 2)).one()
    assert (row.created_at, row.staff_active, row.position) == (at, True, AWKWARD + "\x00")
    assert row.provenance == {"name": "hr", "引号": "'"} and row.hired_on == dt.date(2020, 2, 29)


# -- the C inserter (records._sqlite_rows) --------------------------------------------------------

def _c_inserter():
    from records import bulk

    if bulk._c_insert_rows is None:
        if os.environ.get("CI") == "true":
            pytest.fail("records._sqlite_rows was not built: `pip install -e .` compiles it (setup.py)")
        pytest.skip("records._sqlite_rows is not built here")
    return bulk._c_insert_rows


KINDS = [None, 0, -1, 2**63 - 1, -(2**63), True, False, 1.5, -0.0, float("inf"), float("nan"),
         "", "张伟", AWKWARD, "nul\x00inside", "\U0001f600 astral", b"", b"\x00\xffbytes"]


def test_the_c_inserter_stores_what_the_driver_stores() -> None:
    """Every type it takes, value for value and type for type, as executemany binds it."""
    insert_rows = _c_inserter()
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (k INTEGER, v)")
    rows = [(i, value) for i, value in enumerate(KINDS)]
    conn.execute("BEGIN")
    assert insert_rows(conn, "INSERT INTO t VALUES (?, ?)", rows) == len(rows)
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i + 100, v) for i, v in rows])
    conn.commit()
    ours = conn.execute("SELECT v, typeof(v), length(v) FROM t WHERE k < 100 ORDER BY k").fetchall()
    theirs = conn.execute("SELECT v, typeof(v), length(v) FROM t WHERE k >= 100 ORDER BY k").fetchall()
    assert ours == theirs
    assert ours[KINDS.index("nul\x00inside")][0] == "nul\x00inside"


def test_the_c_inserter_stops_where_the_driver_must_take_over() -> None:
    """It inserts the leading rows it takes as is and says how many; the row it stops at (a type
    it leaves to the driver, a wrong width, a failed constraint) is not inserted."""
    insert_rows = _c_inserter()
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v)")
    sql = "INSERT INTO t VALUES (?, ?)"
    conn.execute("BEGIN")
    assert insert_rows(conn, sql, [(1, "a"), (2, dt.date(2026, 1, 1)), (3, "c")]) == 1
    assert insert_rows(conn, sql, [(2, "b"), (3,), (4, "d")]) == 1
    assert insert_rows(conn, sql, [[3, "c"]]) == 0  # a list, not a tuple
    assert insert_rows(conn, sql, [(3, 2**63)]) == 0  # does not fit in 64 bits
    assert insert_rows(conn, sql, [(3, "c"), (1, "again"), (4, "d")]) == 1  # the key is taken
    assert conn.in_transaction
    conn.commit()
    assert conn.execute("SELECT k, v FROM t ORDER BY k").fetchall() == [(1, "a"), (2, "b"), (3, "c")]


def test_the_c_inserter_leaves_other_transactions_and_statements_to_the_driver() -> None:
    """Each row would commit on its own there; a statement it cannot prepare is the driver's to
    report, and so are several statements, or one that returns rows."""
    insert_rows = _c_inserter()
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (v)")
    assert insert_rows(conn, "INSERT INTO t VALUES (?)", [("a",)]) == 0
    conn.execute("BEGIN")
    assert insert_rows(conn, "INSERT INTO nowhere VALUES (?)", [("a",)]) == 0
    assert insert_rows(conn, "INSERT INTO t VALUES (?); DELETE FROM t", [("a",)]) == 0
    if sqlite3.sqlite_version_info >= (3, 35):  # RETURNING: a step writes before its first row
        assert insert_rows(conn, "INSERT INTO t VALUES (?) RETURNING v", [("a",)]) == 0
    assert insert_rows(conn, "INSERT INTO t VALUES (?)  \n", [("b",)]) == 1  # trailing space is fine
    assert conn.execute("SELECT v FROM t").fetchall() == [("b",)]
    with pytest.raises(TypeError):
        insert_rows(object(), "INSERT INTO t VALUES (?)", [("a",)])


def test_rows_the_c_inserter_leaves_go_through_the_driver(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through BulkInserter on SQLite: what the C inserter stops at is inserted (or refused) by
    the driver, with SQLAlchemy's errors, in the same transaction; change rows are stamped."""
    if engine.dialect.name != "sqlite":
        pytest.skip("the C inserter is SQLite's")
    from records import bulk

    c_insert_rows, took = _c_inserter(), []

    def counted(driver, sql, rows):
        took.append(c_insert_rows(driver, sql, rows))
        return took[-1]

    monkeypatch.setattr(bulk, "_c_insert_rows", counted)
    columns = ("run_id", "actor", "entity", "entity_id", "op", "changed", "at")
    at = utcnow()
    with engine.begin() as conn:
        inserter = BulkInserter(conn, Change.__table__, columns)
        inserter.insert_tuples([(1, "cli", "person", 1, "create", "{}", at.isoformat(" "))])  # opens it
        inserter.insert_tuples([(1, "cli", "person", 2, "create", "{}", at.isoformat(" ")),
                                (1, "cli", "person", 3, "create", "{}", at)])  # a datetime: the driver's
    assert took == [1]
    with engine.connect() as conn:
        assert conn.execute(select(Change.entity_id).order_by(Change.id)).scalars().all() == [1, 2, 3]
        assert None not in conn.execute(select(Change.seq)).scalars().all()  # stamped at commit
    columns = ("id", "employee_no", "name", "staff_active", "provenance")
    with pytest.raises(IntegrityError), engine.begin() as conn:
        inserter = BulkInserter(conn, Person.__table__, columns)
        inserter.insert_tuples([(1, "E1", "张三", 1, "{}")])
        inserter.insert_tuples([(2, "E2", "李四", 1, "{}"), (3, "E1", "重号", 1, "{}"), (4, "E4", "王五", 1, "{}")])
    assert took[-1] == 1
    with engine.connect() as conn:
        assert conn.execute(select(Person.id)).scalars().all() == []  # the transaction rolled back
