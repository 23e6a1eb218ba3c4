"""Bulk writes for the sync's hot path: id allocation and executemany (or COPY) straight to the driver.

SQLAlchemy's per-row statement machinery costs more than the database does when a sync writes
hundreds of thousands of rows, so the hot tables are written with one DBAPI `executemany` per
batch, each column's bind processor applied once per value (the same conversion SQLAlchemy
would do). On PostgreSQL (psycopg 3) the rows go through `COPY … FROM STDIN` instead: the
server parses one stream rather than an INSERT per row, several times faster at a million rows,
in the same transaction. Ids are allocated up front so that inserts need no RETURNING:
  * PostgreSQL: `nextval` of the table's own sequence, many at once (safe under concurrency);
  * MariaDB/MySQL: MAX(id) read with FOR UPDATE, which locks the end of the index until commit;
  * SQLite: MAX(id) inside the run's write transaction (SQLite has one writer at a time).
On SQLite the rows go through records._sqlite_rows where it was built (`setup.py`; CPython 3.11
to 3.13): the same prepared INSERT on the driver's own connection, bound and stepped in C, a
third to a half less time per row than the driver (benchmarks/insert_bench.py); whatever it does
not take as is goes through the driver.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import sqlite3
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Connection, Date, DateTime, Table, text

from records.stamping import mark_changes_pending

# The C inserter reads the handle out of CPython's sqlite3.Connection, whose layout it was
# checked against on these versions only (records/_sqlite_rows.c).
if sys.implementation.name == "cpython" and (3, 11) <= sys.version_info[:2] <= (3, 13):
    try:
        from records._sqlite_rows import insert_rows as _c_insert_rows
    except ImportError:  # not built here (no compiler at install): the driver does it all
        _c_insert_rows = None
else:  # pragma: no cover - other interpreters
    _c_insert_rows = None

_PLACEHOLDER = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def allocate_ids(conn: Connection, table: Table, count: int) -> Sequence[int]:
    """`count` new ids for `table`, ascending."""
    if count <= 0:
        return range(0)
    name = conn.dialect.name
    if name == "postgresql":
        # The server takes the values and answers with their range; the list itself only when
        # another session's nextval interleaved with ours and left gaps. (Fetching a row per id
        # cost the run 3.6 s of a first load at a million staff: 3 million ids.) The sequence is
        # looked up in the same statement: a round trip of its own cost a first load 1.2 s.
        # MATERIALIZED: inlined, the lookup would run once per value (3.3 ms per 1 000, not 0.4).
        low, high, scattered = conn.execute(text(
            "WITH sequence AS MATERIALIZED (SELECT pg_get_serial_sequence(:t, 'id')::regclass AS id) "
            "SELECT min(v), max(v), CASE WHEN max(v) - min(v) + 1 = count(*) THEN NULL "
            "ELSE array_agg(v ORDER BY v) END "
            "FROM (SELECT nextval(sequence.id) AS v FROM sequence, generate_series(1, :n)) AS taken"),
            {"t": table.name, "n": count}).one()
        return range(low, high + 1) if scattered is None else scattered
    lock = " FOR UPDATE" if name in ("mysql", "mariadb") else ""
    start = conn.execute(text(f"SELECT COALESCE(MAX(id), 0) FROM {table.name}{lock}")).scalar_one()
    return range(start + 1, start + count + 1)


class BulkInserter:
    """INSERT many rows of one table with a fixed column list, via the driver's executemany (COPY on PostgreSQL)."""

    def __init__(self, conn: Connection, table: Table, columns: Sequence[str], into: str | None = None,
                 constants: Mapping[str, Any] | None = None) -> None:
        """`into`: write into a table of that name shaped like `table` (a temporary one).
        `constants`: more columns, with the value every row of this inserter gives them, written
        into the statement instead of each row (SQLite only: see `inlines_constants`); rows
        carry `columns` only."""
        dialect = conn.dialect
        placeholder = _PLACEHOLDER.get(dialect.paramstyle)
        self.conn = conn
        self.table = table
        self.columns = tuple(columns)
        self.constants = dict(constants or {})
        if self.constants and not self.inlines_constants(conn):
            raise ValueError(f"constant columns need SQLite, not {dialect.name}")
        if placeholder is None:  # an unusual driver: let SQLAlchemy do it
            self.sql = None
            return
        quote = dialect.identifier_preparer.quote
        name = quote(into) if into else dialect.identifier_preparer.format_table(table)
        written = (*self.columns, *self.constants)
        target = f"{name} ({', '.join(quote(c) for c in written)})"
        self._into_changes = into is None and table.name == "changes"
        # The driver's connection, for the C inserter (records._sqlite_rows) on SQLite.
        driver = conn.connection.driver_connection if _c_insert_rows is not None and dialect.name == "sqlite" else None
        self._c_driver = driver if isinstance(driver, sqlite3.Connection) else None
        literals = [sqlite_literal(_converted(table.c[c], dialect, v)) for c, v in self.constants.items()]
        self.sql = f"INSERT INTO {target} VALUES ({', '.join([placeholder] * len(self.columns) + literals)})"
        self.copy_sql = None
        if dialect.name == "postgresql" and dialect.driver == "psycopg":
            # Text format: the server converts each value to its column's type as an INSERT
            # would (binary COPY is ~8 % faster but refuses a float for NUMERIC, an int for text…).
            self.copy_sql = f"COPY {target} FROM STDIN"
        copy = self.copy_sql is not None
        self.processors = [_processor(table.c[c], dialect, copy) for c in self.columns]
        # Python-side column defaults (timestamps, `active`, empty JSON) for keys a row leaves out,
        # since rows written here bypass SQLAlchemy's default handling.
        self.defaults = [_default_of(table.c[c]) for c in self.columns]

    @staticmethod
    def inlines_constants(conn: Connection) -> bool:
        """Whether `constants` can be given: on SQLite, where executemany binds every value of
        every row one by one (a million persons' seven shared columns: ~1 µs a row) and a value
        written into the statement costs nothing per row. (PostgreSQL COPY has no constant
        columns; MySQL drivers rewrite executemany into one multi-row INSERT only when every
        value is a placeholder.)"""
        return conn.dialect.name == "sqlite"

    def processor(self, column: str) -> Any:
        """The bind conversion of one column (identity when there is none), for callers that
        build rows as ready tuples (`insert_tuples`)."""
        process = None
        if self.sql is not None:
            process = _processor(self.table.c[column], self.conn.dialect, self.copy_sql is not None, memo=False)
        return process or (lambda value: value)

    def insert_tuples(self, rows: list[tuple[Any, ...]], batch: int = 2000) -> None:
        """INSERT rows already in column order with every value converted (see `processor`)."""
        if not rows:
            return
        if self.sql is None:
            self.insert([dict(zip(self.columns, row)) for row in rows], batch)
            return
        if self.copy_sql is not None:
            self._copy(rows)
            return
        for i in range(0, len(rows), batch):
            self._execute(self.sql, rows[i : i + batch])

    def ahead_converter(self, start: int = 0) -> Callable[[dict[str, Any]], Any]:
        """Like `row_converter`, for rows built in another process (sync.read_ahead): on
        PostgreSQL each comes out as its line of COPY data for `columns[start:]`, which is cheaper
        to send between processes than a tuple and leaves the run nothing to format; elsewhere
        as the tuple. `insert_ahead` takes either."""
        to_values = self.row_converter(start)
        to_line = self.copy_line(start)
        if to_line is None:
            return to_values
        return lambda row: to_line(to_values(row))

    def copy_line(self, start: int = 0) -> Callable[[Sequence[Any]], bytes] | None:
        """On PostgreSQL, a function writing converted values of `columns[start:]` as their line
        of COPY data (what `insert_ahead` takes); elsewhere None."""
        if self.copy_sql is None:
            return None
        return _copy_line(len(self.columns) - start, self._encoding())

    def field_converter(self, column: str) -> Callable[[Any], Any]:
        """One column's value converted (`processor`) and, on PostgreSQL, as its COPY text
        (bytes, escaped), for callers that write rows as COPY text (`insert_text`)."""
        process = self.processor(column)
        if self.copy_sql is None:
            return process
        to_text = _copy_line(1, self._encoding())
        return lambda value: to_text((process(value),))[:-1]

    def insert_ahead(self, rows: list[tuple[tuple[int, ...], Any]]) -> None:
        """INSERT rows given as (leading ids, the rest as `ahead_converter` made it)."""
        if not rows:
            return
        if self.copy_sql is None:
            self.insert_tuples([(*lead, *values) for lead, values in rows])
            return
        data = bytearray()
        for lead, rest in rows:
            for value in lead:
                data += b"%d\t" % value
            data += rest
        self.insert_text(data)

    def _encoding(self) -> str:
        return self.conn.connection.driver_connection.info.encoding

    def insert_text(self, data: bytes | bytearray) -> None:
        """INSERT rows given as COPY data, already in COPY's text format (PostgreSQL only:
        `copy_sql` is set), inside the connection's transaction."""
        with self._copying() as copy:
            copy.write(data)

    def _copy(self, rows: Iterable[Sequence[Any]]) -> None:
        """COPY the rows in, inside the connection's transaction (psycopg 3)."""
        with self._copying() as copy:
            write = copy.write_row
            for row in rows:
                write(row)

    @contextmanager
    def _copying(self) -> Iterator[Any]:
        if self._into_changes:
            # COPY bypasses the cursor-execute hook that marks a transaction's change rows for
            # commit-time stamping (records.stamping), so mark them here.
            mark_changes_pending(self.conn)
        driver_connection = self.conn.connection.driver_connection
        with driver_connection.cursor() as cursor, cursor.copy(self.copy_sql) as copy:
            yield copy

    def insert(self, rows: Iterable[dict[str, Any]], batch: int = 2000) -> None:
        if self.sql is None:
            rows = list(rows)
            if rows:
                self.conn.execute(self.table.insert(), rows)
            return
        to_values = self.row_converter()
        params: list[Any] = []
        append = params.append
        execute = self._copy_params if self.copy_sql is not None else self._execute
        for row in rows:
            append(to_values(row))
            if len(params) >= batch:
                execute(self.sql, params)
                params = []
                append = params.append
        if params:
            execute(self.sql, params)

    def row_converter(self, start: int = 0) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
        """A function turning a row dict into the tuple of its values for `columns[start:]`,
        converted as `insert` would (a column the row leaves out takes its default, None when it
        has none), for callers that build rows ahead and insert them later (`insert_tuples`,
        `insert_ahead`). Fills the columns' defaults into the dict it is given."""
        columns = self.columns[start:]
        # Most rows leave some columns out (a sync's persons: the SCIM ones): look those up with
        # get() rather than catch a KeyError per row.
        defaulted = [(c, d) for c, d in zip(columns, self.defaults[start:]) if d is not None]
        convert = [(i, p) for i, p in enumerate(self.processors[start:]) if p is not None]

        def to_values(row: dict[str, Any]) -> tuple[Any, ...]:
            for column, default in defaulted:
                if column not in row:
                    row[column] = default()
            if not convert:
                return tuple(map(row.get, columns))
            values = list(map(row.get, columns))
            for i, process in convert:
                values[i] = process(values[i])
            return tuple(values)

        return to_values

    def _execute(self, sql: str, params: list[Any]) -> None:
        """One batch of rows through the C inserter where it applies, the rest (all of it
        elsewhere) through the driver's executemany, which converts or raises as it always has."""
        driver = self._c_driver
        # Only inside an open transaction (the driver opens one at a transaction's first write).
        if driver is not None and driver.in_transaction:
            if self._into_changes:
                # The C inserter bypasses the cursor-execute hook that marks a transaction's
                # change rows for commit-time stamping (records.stamping), as COPY does.
                mark_changes_pending(self.conn)
            done = _c_insert_rows(driver, sql, params)
            if done == len(params):
                return
            if not driver.in_transaction:
                # A failure SQLite answers by rolling the whole transaction back (a full disk):
                # the rest must not go in on its own, outside the run's transaction.
                raise sqlite3.OperationalError("the transaction was rolled back while rows were inserted")
            params = params[done:]
        self.conn.exec_driver_sql(sql, params)

    def _copy_params(self, _sql: str, params: list[Any]) -> None:
        self._copy(params)


_MISSING = object()


def _converted(column: Any, dialect: Any, value: Any) -> Any:
    process = _processor(column, dialect, memo=False)
    return process(value) if process else value


def sqlite_literal(value: Any) -> str:
    """A value as the driver binds it (after the column's conversion), written as SQLite SQL
    that stores the same thing: NULL, an integer, a real, text or a blob."""
    if value is None:
        return "NULL"
    kind = value.__class__
    if kind is bool:
        return "1" if value else "0"
    if kind is int:
        return str(value)
    if kind is float and math.isfinite(value):
        return repr(value)
    if kind is str:
        # A quote is doubled; a NUL cannot stand inside a literal, so it is concatenated in.
        return " || char(0) || ".join("'" + part.replace("'", "''") + "'" for part in value.split("\x00"))
    if kind is bytes:
        return f"X'{value.hex()}'"
    raise TypeError(f"no SQLite literal for {kind.__name__}")


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


def _processor(column: Any, dialect: Any, copy: bool = False, memo: bool = True) -> Any:
    type_ = column.type
    json_type = type_ if isinstance(type_, JSON) else getattr(type_, "impl", None)
    if not isinstance(json_type, JSON):
        json_type = None
    if copy and json_type is not None:
        process = _json_text(type_, json_type, dialect)
    else:
        process = type_._cached_bind_processor(dialect)
    if isinstance(type_, Date) and not isinstance(type_, DateTime):
        return _dates(process, as_text=copy)
    if memo and (isinstance(type_, DateTime) or json_type is not None):
        return _memo(process)
    return process


def _json_text(type_: Any, json_type: JSON, dialect: Any) -> Any:
    """JSON as the text COPY reads, serialised when the row is converted. (psycopg's own bind
    value is a wrapper serialised only while COPY writes the row: in the run's process, even
    for rows the read-ahead child built.)"""
    serialise = json_type._make_bind_processor(None, dialect._json_serializer or json.dumps)
    if json_type is type_:
        return serialise
    prepare = type_.process_bind_param  # a TypeDecorator's own step (records.compact)
    return lambda value: serialise(prepare(value, dialect))


def to_date(value: Any) -> dt.date | None:
    """A date from a date or ISO text (what canonical records carry); None for empty."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def _dates(process: Any, as_text: bool = False) -> Any:
    """DATE columns take `date`s or ISO date text (what canonical records carry), so that a
    sync's rows need no str → date → str round trip; text is still parsed, hence validated.

    `as_text`: for COPY, which reads dates as text anyway. A `date` object would cost a pickle by
    way of its class when the read-ahead child sends the row (3 dates a person: 1.5 ms against
    0.13 ms per 1 000 rows) and psycopg's date dumper when the run writes it."""
    fromiso = dt.date.fromisoformat
    date = dt.date
    if process is None and not as_text:  # the driver binds dates itself

        def to_driver(value: Any) -> Any:
            if value.__class__ is str:
                return fromiso(value) if value else None
            return to_date(value)

        return to_driver

    known: dict[str, str] = {}  # text seen → its canonical form (a million staff: ~20 000 days)

    def to_text(value: Any) -> Any:
        # SQLite stores YYYY-MM-DD, which is what isoformat() gives for a date; COPY reads it.
        if value.__class__ is str:
            text = known.get(value)
            if text is None:
                if not value:
                    return None
                if len(known) >= 100_000:
                    known.clear()
                text = known[value] = fromiso(value).isoformat()
            return text
        if value.__class__ is date:
            return value.isoformat()
        day = to_date(value)
        if process is not None:
            return process(day)
        return None if day is None else day.isoformat()[:10]  # a datetime's date part

    return to_text


def _copy_line(width: int, encoding: str) -> Callable[[Sequence[Any]], bytes]:
    """A row's values (as `row_converter` makes them: text, numbers, booleans, timestamps, None)
    as one line of COPY's text format, the way psycopg's `write_row` writes them. A value of
    another type raises TypeError: the run then builds that row itself."""
    last_time: list[Any] = [None, None]  # a run's rows share its one timestamp: format it once

    def text(value: Any) -> str:
        if value is None:
            return "\\N"
        kind = value.__class__
        if kind is bool:
            return "t" if value else "f"
        if kind is dt.datetime:
            if value is not last_time[0]:
                last_time[0], last_time[1] = value, str(value)
            return last_time[1]
        if kind is int or kind is Decimal or kind is dt.date:
            return str(value)
        if kind is float:
            return repr(value) if math.isfinite(value) else _FLOAT_WORDS[repr(value)]
        raise TypeError(f"no COPY text for {kind.__name__}")

    def escaped(value: Any) -> str:
        if value.__class__ is not str:
            return text(value)
        for char, escape in _COPY_ESCAPES:
            value = value.replace(char, escape)
        return value

    def to_line(values: Sequence[Any]) -> bytes:
        line = "\t".join([v if v.__class__ is str else "\\N" if v is None else text(v) for v in values])
        # Every backslash should be a NULL's and every tab a separator; anything else needs
        # escaping, value by value (rare: most records hold no tab, newline or backslash).
        if (line.count("\\") != values.count(None) or line.count("\t") != width - 1
                or "\n" in line or "\r" in line):
            line = "\t".join([escaped(v) for v in values])
        return (line + "\n").encode(encoding)

    return to_line


# COPY text format: the escapes psycopg writes (backslash first, so no escape is escaped twice).
_COPY_ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"))
_FLOAT_WORDS = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _memo(process: Any) -> Any:
    """Every row a run writes carries the run's one timestamp (and many share one provenance
    map): convert each such object once, not per row. Keyed by identity, so callers must not
    mutate a value between rows."""
    if process is None:
        return process
    last: list[Any] = [_MISSING, None]

    def memo(value: Any) -> Any:
        if value is not last[0]:
            last[0], last[1] = value, process(value)
        return last[1]

    return memo


class DeferredIndexes:
    """A first load builds its tables' secondary indexes once, at the end, instead of row by row.

    Inserting a million persons into a table with indexes on random keys (name, ID-number hash,
    unit) updates each B-tree at a random place per row; building an index afterwards sorts the
    column once, which costs a fraction of that. So when a bulk-written table is still empty at
    the start of a run, its plain (non-unique, non-partial) indexes are dropped and `restore()`
    creates them again before anything reads through them — all inside the run's transaction,
    so a failed run rolls the drop back with the rest. SQLite and PostgreSQL only (their DDL is
    transactional; MariaDB's would commit the run). On PostgreSQL the drop locks the (empty)
    table against readers until the run commits.

    On PostgreSQL the unique constraints and indexes wait too, primary keys apart (the run looks
    rows up by id). Each row's check is a B-tree descent and a WAL record in the server, on a
    machine whose cores the pull already keeps busy (1.5 million source links: 2.6 s of server
    CPU for their unique key alone); built at the end, the index is one sort, which PostgreSQL
    spreads over its parallel maintenance workers. A duplicate then fails the restore, so the
    run, rolled back whole, as it would have failed at the row. None is used by an upsert. On
    SQLite they stay: a table's UNIQUE constraints cannot be dropped there.

    On PostgreSQL such a table's foreign keys wait too: checked row by row, each check looks the
    referenced row up and locks it (a WAL record per row: 400 000 for a first load's roster);
    added back, the constraint is validated by one join over both tables — and the run fails
    there, rolled back whole, if a row breaks it, as it would have failed at that row.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.dropped: list[Any] = []
        self.dropped_keys: list[tuple[str, str, str]] = []  # (table, constraint, definition)

    def defer(self, tables: Iterable[Table]) -> list[str]:
        """Drop the indexes (and on PostgreSQL the unique constraints and foreign keys) that wait
        for the end of a first load, of those `tables` that are empty; returns the indexes' names."""
        if self.conn.dialect.name not in ("sqlite", "postgresql"):
            return []
        if self.conn.dialect.name == "sqlite" and not self.conn.connection.driver_connection.in_transaction:
            # Python's sqlite3 opens its transaction at the first INSERT/UPDATE/DELETE, not at
            # DDL: a DROP now would commit at once and outlive a rollback (a dry run's).
            return []
        postgres = self.conn.dialect.name == "postgresql"
        for table in tables:
            deferrable = [ix for ix in table.indexes if (postgres or not ix.unique) and not _partial(ix)]
            if self.conn.execute(text(f"SELECT 1 FROM {table.name} LIMIT 1")).first():
                continue
            for index in deferrable:
                index.drop(self.conn)
                self.dropped.append(index)
            if postgres:
                self._drop_unique_constraints(table)
                self._drop_foreign_keys(table)
        return [ix.name for ix in self.dropped]

    def _drop_unique_constraints(self, table: Table) -> None:
        """Those no foreign key refers to (a key needs its unique index to stay)."""
        keys = self.conn.execute(text(
            "SELECT c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
            "WHERE c.conrelid = CAST(:t AS regclass) AND c.contype = 'u' AND NOT EXISTS ("
            "SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = c.conindid) "
            "ORDER BY c.conname"), {"t": table.name}).all()
        for name, definition in keys:
            self._drop_constraint(table, name, definition)

    def _drop_foreign_keys(self, table: Table) -> None:
        """Those whose referenced table is empty too (a first load of both): dropping a key
        locks the referenced table as well, which must not shut readers out of a full one."""
        keys = self.conn.execute(text(
            "SELECT conname, pg_get_constraintdef(oid), CAST(confrelid AS regclass)::text FROM pg_constraint "
            "WHERE conrelid = CAST(:t AS regclass) AND contype = 'f'"), {"t": table.name}).all()
        for name, definition, referenced in keys:
            if not self.conn.exec_driver_sql(f"SELECT 1 FROM {referenced} LIMIT 1").first():
                self._drop_constraint(table, name, definition)

    def _drop_constraint(self, table: Table, name: str, definition: str) -> None:
        """Drop it, keeping what `restore` adds back."""
        self.conn.exec_driver_sql(f'ALTER TABLE {table.name} DROP CONSTRAINT "{name}"')
        self.dropped_keys.append((table.name, name, definition))

    def restore(self, analyze: Iterable[Table] = ()) -> None:
        """Build the dropped indexes and constraints again; on PostgreSQL then ANALYZE those of
        `analyze` whose indexes were deferred (they went from empty to full in this run)."""
        if not self.dropped and not self.dropped_keys:
            return
        restored = {ix.table.name for ix in self.dropped}
        if self.conn.dialect.name == "postgresql":
            # Sorting in memory rather than in temporary files (the server's memory, for this transaction).
            self.conn.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
        for index in self.dropped:
            index.create(self.conn)
        self.dropped = []
        for table, name, definition in self.dropped_keys:
            self.conn.exec_driver_sql(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        self.dropped_keys = []
        fresh = [t.name for t in analyze if t.name in restored]
        if fresh and self.conn.dialect.name == "postgresql":
            self.conn.exec_driver_sql(f"ANALYZE {', '.join(fresh)}")


def _partial(index: Any) -> bool:
    return any(index.dialect_kwargs.get(f"{d}_where") is not None for d in ("postgresql", "sqlite"))
