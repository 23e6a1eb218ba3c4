"""Bulk writes for the sync's hot path: id allocation and executemany straight to the driver.

SQLAlchemy's per-row statement machinery costs more than the database does when a sync writes
hundreds of thousands of rows, so the hot tables are written with one DBAPI `executemany` per
batch, each column's bind processor applied once per value (the same conversion SQLAlchemy
would do). Ids are allocated up front so that inserts need no RETURNING:
  * PostgreSQL: `nextval` of the table's own sequence, many at once (safe under concurrency);
  * MariaDB/MySQL: MAX(id) read with FOR UPDATE, which locks the end of the index until commit;
  * SQLite: MAX(id) inside the run's write transaction (SQLite has one writer at a time).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, DateTime, Table, text

_PLACEHOLDER = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def allocate_ids(conn: Connection, table: Table, count: int) -> list[int]:
    if count <= 0:
        return []
    name = conn.dialect.name
    if name == "postgresql":
        seq = conn.execute(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table.name}).scalar_one()
        rows = conn.execute(text(f"SELECT nextval('{seq}') FROM generate_series(1, :n)"), {"n": count})
        return sorted(r[0] for r in rows)
    lock = " FOR UPDATE" if name in ("mysql", "mariadb") else ""
    start = conn.execute(text(f"SELECT COALESCE(MAX(id), 0) FROM {table.name}{lock}")).scalar_one()
    return list(range(start + 1, start + count + 1))


class BulkInserter:
    """INSERT many rows of one table with a fixed column list, via the driver's executemany."""

    def __init__(self, conn: Connection, table: Table, columns: Sequence[str]) -> None:
        dialect = conn.dialect
        placeholder = _PLACEHOLDER.get(dialect.paramstyle)
        self.conn = conn
        self.columns = tuple(columns)
        if placeholder is None:  # an unusual driver: let SQLAlchemy do it
            self.sql = None
            self.table = table
            return
        quote = dialect.identifier_preparer.quote
        self.sql = (
            f"INSERT INTO {dialect.identifier_preparer.format_table(table)} "
            f"({', '.join(quote(c) for c in self.columns)}) VALUES ({', '.join([placeholder] * len(self.columns))})"
        )
        self.processors = [_memo_datetimes(table.c[c], table.c[c].type._cached_bind_processor(dialect))
                           for c in self.columns]
        # Python-side column defaults (timestamps, `active`, empty JSON) for keys a row leaves out,
        # since rows written here bypass SQLAlchemy's default handling.
        self.defaults = [_default_of(table.c[c]) for c in self.columns]

    def insert(self, rows: Iterable[dict[str, Any]], batch: int = 2000) -> None:
        if self.sql is None:
            rows = list(rows)
            if rows:
                self.conn.execute(self.table.insert(), rows)
            return
        columns = self.columns
        wanted = set(columns)
        defaults = {c: d for c, d in zip(columns, self.defaults)}
        convert = [(i, p) for i, p in enumerate(self.processors) if p is not None]
        pick = itemgetter(*columns)
        single = len(columns) == 1
        params: list[Any] = []
        for row in rows:
            missing = wanted.difference(row)
            for column in missing:
                default = defaults[column]
                row[column] = default() if default is not None else None
            if convert:
                values = [pick(row)] if single else list(pick(row))
                for i, process in convert:
                    values[i] = process(values[i])
                params.append(tuple(values))
            else:
                params.append((pick(row),) if single else pick(row))
            if len(params) >= batch:
                self.conn.exec_driver_sql(self.sql, params)
                params = []
        if params:
            self.conn.exec_driver_sql(self.sql, params)


_MISSING = object()


def _default_of(column: Any) -> Any:
    default = column.default
    if default is None:
        return None
    if default.is_scalar:
        value = default.arg
        return lambda: value
    if default.is_callable:
        return lambda: default.arg(None)
    return None


def _memo_datetimes(column: Any, process: Any) -> Any:
    """Every row a run writes carries the run's one timestamp: format it once, not per row."""
    if process is None or not isinstance(column.type, DateTime):
        return process
    last: list[Any] = [_MISSING, None]

    def memo(value: Any) -> Any:
        if value is not last[0]:
            last[0], last[1] = value, process(value)
        return last[1]

    return memo
