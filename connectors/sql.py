"""The `sql` connector: rows of a query, table or view in any database SQLAlchemy reaches.

Made for ERP views of payroll and appraisal data (and any HR database that has no API):

    erp:
      connector: sql
      url: "postgresql://dualline:${ERP_DB_PASSWORD}@erp-db/erp"   # a SQLAlchemy URL
      provides: [performance, payroll]
      queries:                                    # per kind, a SELECT …
        performance: "SELECT emp_no AS employee_no, period, grade, score FROM v_appraisal"
      tables:                                     # … or a table / view (schema.name allowed)
        payroll: hr.v_payroll_net
      incremental:                                # optional, per kind
        performance: {column: modified_at}
      chunk_size: 1000

Rows are streamed (`stream_results` with `yield_per`: a server-side cursor where the driver has
one) and yielded `chunk_size` at a time, never fetched whole. Values become JSON-safe: dates and
times ISO 8601 text, Decimal an int or float (text when a float would change it), bytes text.

With `incremental` and a cursor, the rows read are those whose column is greater than the
cursor: the query is wrapped as ``SELECT * FROM (<query>) dl_src WHERE dl_src.<column> > :since``
with the cursor as a bound parameter (never pasted into the SQL), and each Page's cursor is the
greatest value of the column seen so far. The cursor travels as text and is bound untyped, so
the database compares it with the column in the column's own type.

Failures become SourceError: connection problems `transport` (retryable), a missing driver, a
bad URL, an unknown table or column `config`. Messages carry the driver's words with the URL's
password and any other occurrence of it removed.
"""
from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator, Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, ClassVar

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import bindparam, create_engine, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.types import NullType

from connectors.base import KINDS, BaseSourceSchema, Connector, Page, SourceError
from connectors.registry import register

DEFAULT_CHUNK_SIZE = 1000
# Identifiers: letters (Chinese column names are common in ERP views), digits, _ and $.
_IDENTIFIER = r"[^\W\d][\w$]*"
IDENTIFIER = re.compile(rf"^{_IDENTIFIER}$")
TABLE_NAME = re.compile(rf"^{_IDENTIFIER}(\.{_IDENTIFIER})?$")
# A query must read: SELECT or WITH … SELECT, after any leading comments.
_LEADING_COMMENTS = re.compile(r"^(\s*(--[^\n]*\n|/\*.*?\*/))*\s*", re.S)
_READING = re.compile(r"^(select|with)\b", re.I)
# Bare backend names whose SQLAlchemy default driver is not the one dualline installs
# (psycopg2, mysqlclient): use the installed pure/binary ones instead.
_DRIVERS = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql",
            "mariadb": "mariadb+pymysql"}
SOURCE_ALIAS = "dl_src"


def _valid_url(value: str) -> None:
    try:
        make_url(value)
    except sa_exc.ArgumentError:
        # Not the value: it holds a password.
        raise ValidationError("not a SQLAlchemy URL (dialect+driver://user:password@host/db)") \
            from None


def _reading_query(value: str) -> None:
    if not _READING.match(_LEADING_COMMENTS.sub("", value, count=1)):
        raise ValidationError("must be a SELECT (or WITH … SELECT) query")


class _IncrementalSchema(Schema):
    column = fields.String(required=True, validate=validate.Regexp(
        IDENTIFIER, error="a column name (letters, digits, _)"))


class SqlSourceSchema(BaseSourceSchema):
    """The `sql` source block."""

    url = fields.String(required=True, validate=_valid_url)
    queries = fields.Dict(keys=fields.String(validate=validate.OneOf(KINDS)),
                          values=fields.String(validate=_reading_query), load_default=dict)
    tables = fields.Dict(keys=fields.String(validate=validate.OneOf(KINDS)),
                         values=fields.String(validate=validate.Regexp(
                             TABLE_NAME, error="a table or view name, optionally schema.name")),
                         load_default=dict)
    incremental = fields.Dict(keys=fields.String(validate=validate.OneOf(KINDS)),
                              values=fields.Nested(_IncrementalSchema), load_default=dict)
    chunk_size = fields.Integer(load_default=DEFAULT_CHUNK_SIZE,
                                validate=validate.Range(min=1, max=100_000))

    @validates_schema
    def _one_source_per_kind(self, data: dict[str, Any], **_: Any) -> None:
        queries, tables = data.get("queries") or {}, data.get("tables") or {}
        both = sorted(set(queries) & set(tables))
        if both:
            raise ValidationError({"tables": [f"{', '.join(both)}: give a query or a table, "
                                              f"not both"]})
        missing = [k for k in data.get("provides", ()) if k not in queries and k not in tables]
        if missing:
            raise ValidationError({"queries": [f"no query or table for {', '.join(missing)}"]})
        stray = sorted(set(data.get("incremental") or {}) - set(data.get("provides", ())))
        if stray:
            raise ValidationError({"incremental": [f"{', '.join(stray)} not in provides"]})


def engine_url(url: str) -> URL:
    """The URL with the installed driver for a bare backend name."""
    parsed = make_url(url)
    return parsed.set(drivername=_DRIVERS.get(parsed.drivername, parsed.drivername))


def json_safe(value: Any) -> Any:
    """A database value as JSON can carry it (module docstring)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        if value == value.to_integral_value():
            return int(value)
        number = float(value)
        # 8123.45 stays a number; a value a float would round is kept exactly, as text.
        return number if Decimal(repr(number)) == value else str(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    return str(value)


@register
class SqlConnector(Connector):
    """Streams rows of configured queries or tables, one Page per `chunk_size` rows."""

    type_name: ClassVar[str] = "sql"
    config_schema: ClassVar[type[Schema]] = SqlSourceSchema
    secret_fields: ClassVar[tuple[str, ...]] = ("url",)
    supports_incremental: ClassVar[bool] = True

    def __init__(self, name: str, config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(name, config, **kwargs)
        self._engine: Engine | None = None

    # -- engine and messages ---------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            try:
                self._engine = create_engine(engine_url(self.config["url"]), pool_pre_ping=True)
            except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as exc:
                raise self._error(exc, "config", "cannot use the database URL") from None
        return self._engine

    def _clean(self, message: str) -> str:
        """`message` without the URL's password (drivers and SQLAlchemy quote URLs and DSNs)."""
        parsed = make_url(self.config["url"])
        masked = parsed.render_as_string(hide_password=True)
        message = message.replace(self.config["url"], masked)
        message = message.replace(parsed.render_as_string(hide_password=False), masked)
        if parsed.password:
            message = message.replace(str(parsed.password), "***")
        return message

    def _where(self) -> str:
        parsed = make_url(self.config["url"])
        host = f"{parsed.host}:{parsed.port}" if parsed.port else parsed.host
        return f"{parsed.get_backend_name()} {host or ''}/{parsed.database or ''}".replace(" /", " ")

    def _error(self, exc: BaseException, error_class: str, what: str, *,
               retryable: bool = False, kind: str | None = None) -> SourceError:
        # The driver's own words (exc.orig), first line: SQLAlchemy's str() appends the SQL
        # and a link, which says nothing to the admin reading the run report.
        cause = getattr(exc, "orig", None) or exc
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        return SourceError(self._clean(f"{what} ({self._where()}): {reason}"),
                           error_class=error_class, retryable=retryable, source=self.name,
                           kind=kind, detail={"reason": type(cause).__name__})

    def _classify(self, exc: sa_exc.SQLAlchemyError, kind: str) -> SourceError:
        if isinstance(exc, sa_exc.OperationalError) and not _is_schema_problem(exc):
            return self._error(exc, "transport", f"cannot read {kind}", retryable=True, kind=kind)
        if isinstance(exc, (sa_exc.OperationalError, sa_exc.ProgrammingError,
                            sa_exc.ArgumentError, sa_exc.NoSuchModuleError,
                            sa_exc.CompileError)):
            return self._error(exc, "config", f"the {kind} query failed", kind=kind)
        if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
            return self._error(exc, "transport", f"connection lost reading {kind}",
                               retryable=True, kind=kind)
        return self._error(exc, "protocol", f"cannot read {kind}", kind=kind)

    # -- statements ------------------------------------------------------------------------

    def statement(self, kind: str, since: str | None) -> TextClause:
        """The SELECT for `kind`: its query or table, plus the incremental condition."""
        quote = self.engine.dialect.identifier_preparer.quote
        if kind in self.config["queries"]:
            source = self.config["queries"][kind].strip().rstrip(";").rstrip()
        else:
            source = "SELECT * FROM " + ".".join(
                quote(part) for part in self.config["tables"][kind].split("."))
        incremental = self.config["incremental"].get(kind)
        if since is None or incremental is None:
            return text(source)
        alias = quote(SOURCE_ALIAS)
        sql = (f"SELECT * FROM ({source}) {alias} "
               f"WHERE {alias}.{quote(incremental['column'])} > :since")
        # Untyped: the database compares the text with the column in the column's type.
        return text(sql).bindparams(bindparam("since", since, type_=NullType()))

    # -- reading ---------------------------------------------------------------------------

    def is_incremental(self, kind: str) -> bool:
        return kind in self.config["incremental"]

    def read(self, kind: str, *, since: str | None = None) -> Iterator[Page]:
        if kind not in self.config["queries"] and kind not in self.config["tables"]:
            raise SourceError(f"no query or table configured for {kind}", error_class="config",
                              source=self.name, kind=kind)
        incremental = self.config["incremental"].get(kind)
        column = incremental["column"] if incremental else None
        size = self.config["chunk_size"]
        newest: Any = None
        try:
            with self.engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=size).execute(
                    self.statement(kind, since))
                keys = list(result.keys())
                if column is not None and column not in keys:
                    raise SourceError(f"incremental column {column!r} is not among the "
                                      f"columns of {kind} ({', '.join(keys[:12])})",
                                      error_class="config", source=self.name, kind=kind)
                for number, rows in enumerate(result.partitions(size), 1):
                    records = [dict(zip(keys, map(json_safe, row))) for row in rows]
                    if column is not None:
                        at = keys.index(column)
                        for row in rows:
                            value = row[at]
                            if value is not None and (newest is None or value > newest):
                                newest = value
                    cursor = None if column is None else (
                        since if newest is None else str(json_safe(newest)))
                    yield Page(records, cursor, {"page": number, "rows": len(records)})
        except sa_exc.SQLAlchemyError as exc:
            raise self._classify(exc, kind) from None

    def check(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except sa_exc.SQLAlchemyError as exc:
            raise self._classify(exc, self.kinds[0]) from None

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


# Driver messages that mean the query names something that is not there (SQLite and MySQL
# report these as OperationalError, PostgreSQL as ProgrammingError).
_SCHEMA_PROBLEMS = re.compile(r"no such (table|column)|unknown column|doesn't exist|"
                              r"does not exist|syntax error|near \"", re.I)


def _is_schema_problem(exc: sa_exc.SQLAlchemyError) -> bool:
    return bool(_SCHEMA_PROBLEMS.search(str(getattr(exc, "orig", exc))))
