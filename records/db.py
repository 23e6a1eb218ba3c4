"""Engines, sessions and schema management for the unified records.

Plain SQLAlchemy (not Flask-SQLAlchemy): the same code runs from the CLI, the web app, the
scheduler and workers. Alembic owns the schema; `upgrade()` brings any database to head.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def make_engine(url: str, **kwargs) -> Engine:
    """An engine tuned per backend: SQLite in WAL mode with foreign keys; MySQL in utf8mb4."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    # orjson: JSON columns (change feed, provenance, details) are written for every record a
    # sync touches; the stdlib encoder was an eighth of a full sync's time.
    kwargs.setdefault("json_serializer", _json_dumps)
    kwargs.setdefault("json_deserializer", orjson.loads)
    if backend == "sqlite":
        kwargs.setdefault("connect_args", {"timeout": 30})
    elif backend in ("mysql", "mariadb"):
        if parsed.drivername in ("mysql", "mariadb"):
            parsed = parsed.set(drivername=f"{backend}+pymysql")
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
        kwargs.setdefault("pool_recycle", 3600)
        # As PostgreSQL: each statement sees what others committed. Under InnoDB's default
        # REPEATABLE READ a run that waited for another's alignment would still read the old
        # snapshot and reconcile mismatches against it.
        kwargs.setdefault("isolation_level", "READ COMMITTED")
    elif backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        if parsed.drivername == "postgresql+psycopg":
            # No automatic server-side prepared statements: after five runs of one statement
            # psycopg would prepare it, and PostgreSQL's generic plan for it ignores the values —
            # an incremental pull's link lookup (`external_id IN (1 000 keys)`) became a scan
            # of 1.4 million links per page, an API page hash-joined every membership.
            kwargs.setdefault("connect_args", {"prepare_threshold": None})
    engine = create_engine(parsed, **kwargs)
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _json_dumps(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode("utf-8")


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    memory = "memory" in str(getattr(dbapi_conn, "filename", "")) or False
    # 16 KiB pages (SQLite's default is 4): a first load writes every page to the WAL and again
    # at the checkpoint, a page at a time — fewer, larger pages cut the commit of a million-staff
    # load by ~1.2 s and its index builds and alignment by ~1.4 s. Only a new, empty database
    # takes it (so it comes before WAL mode, which creates the file).
    cur.execute("PRAGMA page_size=16384")
    if not memory:
        cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA cache_size=-65536")
    cur.execute("PRAGMA temp_store=MEMORY")
    cur.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A session whose work commits together or not at all."""
    with session_factory(engine)() as session, session.begin():
        yield session


def _alembic_config(engine: Engine):
    # Imported here: alembic is only needed to change or check the schema, and importing it
    # would add a tenth of a second to every `dualline` command.
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Create or upgrade the schema to the newest migration (idempotent)."""
    from alembic import command

    # "heads": a migration added on a parallel branch is applied too, not refused as ambiguous.
    command.upgrade(_alembic_config(engine), "heads")


def schema_is_current(engine: Engine) -> bool:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    heads = set(ScriptDirectory.from_config(_alembic_config(engine)).get_heads())
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads()) == heads
