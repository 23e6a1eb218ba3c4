"""The `sql` connector on SQLite files and on the machine's real PostgreSQL.

PostgreSQL tests create and drop their own uniquely named table in the test database; an
unreachable server skips them locally and fails them in CI (CI=true).
"""
from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from datetime import date, datetime, time, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from marshmallow import ValidationError
from sqlalchemy import create_engine, text

from connectors.base import SourceError
from connectors.registry import get_connector_class
from connectors.sql import SqlConnector, SqlSourceSchema, engine_url, json_safe
from tests.conftest import IN_CI, SERVERS

ROWS = [
    ("10023", "2024年第一季度", "优秀", Decimal("95.50"), 100, "2024-04-02 09:00:00"),
    ("10024", "2024-Q1", "B", Decimal("82"), 100, "2024-04-03 09:00:00"),
    ("10025", "2024", "合格", None, None, "2024-04-01 09:00:00"),
    ("10026", "2024-03", "C", Decimal("70.25"), 100, None),
]


def make(url: str, **block: Any) -> SqlConnector:
    config = {"connector": "sql", "url": url, "provides": ["performance"], **block}
    return SqlConnector("erp", SqlSourceSchema().load(config))


@pytest.fixture
def sqlite_db(tmp_path: Path) -> str:
    path = tmp_path / "erp.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE v_appraisal (工号 TEXT, 考核周期 TEXT, 考核等级 TEXT, "
                     "得分 TEXT, 满分 INTEGER, modified_at TEXT)")
        conn.executemany("INSERT INTO v_appraisal VALUES (?, ?, ?, ?, ?, ?)",
                         [(*r[:3], None if r[3] is None else str(r[3]), *r[4:]) for r in ROWS])
    return f"sqlite:///{path}"


def read(connector: SqlConnector, kind: str = "performance", **kwargs: Any) -> list:
    return list(connector.read(kind, **kwargs))


def test_config() -> None:
    assert get_connector_class("sql") is SqlConnector
    assert SqlConnector.secret_fields == ("url",)
    base = {"connector": "sql", "url": "sqlite:///x.db", "provides": ["performance"]}
    with pytest.raises(ValidationError, match="no query or table for performance"):
        SqlSourceSchema().load(base)
    with pytest.raises(ValidationError, match="SELECT"):
        SqlSourceSchema().load({**base, "queries": {"performance": "DELETE FROM v"}})
    with pytest.raises(ValidationError, match="table or view"):
        SqlSourceSchema().load({**base, "tables": {"performance": "v; DROP TABLE x"}})
    with pytest.raises(ValidationError, match="column name"):
        SqlSourceSchema().load({**base, "tables": {"performance": "v"},
                                "incremental": {"performance": {"column": "a) OR (1=1"}}})
    with pytest.raises(ValidationError) as err:
        SqlSourceSchema().load({**base, "url": "not a url:pa55word", "tables": {"performance": "v"}})
    assert "pa55word" not in str(err.value.messages)
    loaded = SqlSourceSchema().load({**base, "queries": {
        "performance": "-- appraisal view\nWITH x AS (SELECT 1) SELECT * FROM x;"}})
    assert loaded["chunk_size"] == 1000
    assert engine_url("postgresql://u:p@h/db").drivername == "postgresql+psycopg"
    assert engine_url("mysql://u:p@h/db").drivername == "mysql+pymysql"


def test_json_safe() -> None:
    assert json_safe(Decimal("95.50")) == 95.5 and json_safe(Decimal("100.00")) == 100
    assert json_safe(Decimal("12345678901234567.89")) == "12345678901234567.89"
    assert json_safe(date(2024, 3, 1)) == "2024-03-01"
    assert json_safe(datetime(2024, 3, 1, 8, 30, tzinfo=timezone.utc)) == "2024-03-01T08:30:00+00:00"
    assert json_safe(time(8, 30)) == "08:30:00"
    assert json_safe(memoryview("党".encode())) == "党" and json_safe(b"\xff") == "/w=="
    assert json_safe(uuid.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"


def test_table_is_streamed_in_chunks(sqlite_db: str) -> None:
    pages = read(make(sqlite_db, tables={"performance": "v_appraisal"}, chunk_size=3))
    assert [len(p.records) for p in pages] == [3, 1]
    assert pages[0].records[0] == {"工号": "10023", "考核周期": "2024年第一季度", "考核等级": "优秀",
                                   "得分": "95.50", "满分": 100, "modified_at": "2024-04-02 09:00:00"}
    assert all(p.cursor is None for p in pages)  # not incremental


def test_incremental_query(sqlite_db: str) -> None:
    connector = make(sqlite_db, queries={"performance": 'SELECT 工号 AS employee_no, 考核周期 AS '
                                                        'period, modified_at FROM v_appraisal;'},
                     incremental={"performance": {"column": "modified_at"}}, chunk_size=2)
    assert connector.is_incremental("performance")
    full = read(connector)
    # The cursor is the newest value so far; rows without one are read but never move it.
    assert [p.cursor for p in full] == ["2024-04-03 09:00:00"] * 2
    delta = read(connector, since="2024-04-02 09:00:00")
    assert [r["employee_no"] for p in delta for r in p.records] == ["10024"]
    assert read(connector, since="2024-04-03 09:00:00") == []
    # The cursor is bound, never pasted into the SQL.
    assert read(connector, since="x' OR '1'='1") == []


def test_missing_table_is_a_config_error(sqlite_db: str) -> None:
    with pytest.raises(SourceError) as err:
        read(make(sqlite_db, tables={"performance": "v_nope"}))
    assert (err.value.error_class, err.value.source, err.value.kind) == ("config", "erp", "performance")
    assert "no such table" in err.value.message


def test_unknown_incremental_column_is_a_config_error(sqlite_db: str) -> None:
    connector = make(sqlite_db, tables={"performance": "v_appraisal"},
                     incremental={"performance": {"column": "changed_on"}})
    with pytest.raises(SourceError, match="changed_on") as err:
        read(connector)
    assert err.value.error_class == "config"
    with pytest.raises(SourceError) as err:
        read(connector, since="2024-01-01")
    assert err.value.error_class == "config"


def test_missing_driver_is_a_config_error() -> None:
    with pytest.raises(SourceError) as err:
        read(make("oracle+nosuchdriver://erp:topsecret@erp-db/ORCL", tables={"performance": "v"}))
    assert err.value.error_class == "config" and "topsecret" not in str(err.value)


def test_unreachable_server_is_transport_without_password() -> None:
    # Port 9 (discard) on localhost: refused at once.
    connector = make("postgresql://erp:topsecret@127.0.0.1:9/erp", tables={"performance": "v"})
    with pytest.raises(SourceError) as err:
        read(connector)
    assert err.value.error_class == "transport" and err.value.retryable
    assert "topsecret" not in str(err.value) and "127.0.0.1" in err.value.message
    with pytest.raises(SourceError):
        connector.check()


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def pg_table() -> Iterator[tuple[str, str]]:
    url = SERVERS["postgresql"]
    name = f"dl_sql_test_{uuid.uuid4().hex[:10]}"
    engine = create_engine(engine_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE TABLE "{name}" (employee_no text, period text, grade text, '
                              f"score numeric(5,2), score_max integer, modified_at timestamp)"))
            conn.execute(text(f'INSERT INTO "{name}" VALUES (:e, :p, :g, :s, :m, :t)'),
                         [{"e": e, "p": p, "g": g, "s": s, "m": m, "t": t} for e, p, g, s, m, t in ROWS])
    except Exception as exc:  # noqa: BLE001 - any failure here means no usable server
        engine.dispose()
        message = f"PostgreSQL not reachable at {url}: {exc.__class__.__name__}: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield url, name
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP TABLE IF EXISTS "{name}"'))
        engine.dispose()


@pytest.mark.postgres
def test_postgres_streams_typed_values_and_deltas(pg_table: tuple[str, str]) -> None:
    url, table = pg_table
    connector = make(url, tables={"performance": table}, chunk_size=2,
                     incremental={"performance": {"column": "modified_at"}})
    try:
        pages = read(connector)
        assert [len(p.records) for p in pages] == [2, 2]
        first = pages[0].records[0]
        assert first == {"employee_no": "10023", "period": "2024年第一季度", "grade": "优秀",
                         "score": 95.5, "score_max": 100, "modified_at": "2024-04-02T09:00:00"}
        assert pages[-1].cursor == "2024-04-03T09:00:00"
        # The text cursor is compared with the timestamp column as a timestamp.
        delta = read(connector, since="2024-04-02T09:00:00")
        assert [r["employee_no"] for p in delta for r in p.records] == ["10024"]
        assert delta[-1].cursor == "2024-04-03T09:00:00"
        connector.check()
    finally:
        connector.close()


@pytest.mark.postgres
def test_postgres_unknown_column_is_a_config_error(pg_table: tuple[str, str]) -> None:
    url, table = pg_table
    with pytest.raises(SourceError) as err:
        read(make(url, queries={"performance": f'SELECT nope FROM "{table}"'}))
    assert err.value.error_class == "config" and "nope" in err.value.message
