"""The change feed's commit-time stamping of `seq` (imports no models, so records.models can
load it without a cycle).

Stamping (why: see records.models.Change). Every `INSERT INTO changes` marks its connection;
when that connection COMMITs, an Engine-level `commit` listener runs, still inside the
transaction and just before the COMMIT:

    SELECT MIN(id), MAX(id) FROM changes WHERE <this transaction's> AND seq IS NULL
    UPDATE change_feed_counter SET last_seq = last_seq + (max - min + 1) WHERE id = 1   -- the lock
    SELECT last_seq FROM change_feed_counter WHERE id = 1
    UPDATE changes SET seq = id + (last_seq - max) WHERE <this transaction's> AND seq IS NULL

The counter's row lock is held from that UPDATE to the COMMIT, so transactions stamp one after
the other, each after the previous one's rows became visible: a reader that sees `seq` N sees
every `seq` below N that will ever exist. The stamping is two set-based statements whatever the
size of the transaction (a full sync's 100 000 changes included), and the lock is held only for
them. It works for every writer — ORM sessions, Core inserts, the sync's bulk executemany — on
SQLite, PostgreSQL and MariaDB, because it hooks the commit, not the writers. On SQLite (one
writer at a time: ids already follow commit order) `seq` is the id and no counter is needed.
A PostgreSQL first load takes the counter's lock at its start instead (`hold_feed`) and writes
its rows numbered `id + offset` at INSERT; its COMMIT only numbers what was left unnumbered.
"""
from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, event, text

_PENDING_FLAG = "dualline_changes_pending"
_STAGED_FLAG = "dualline_changes_staged"
_HELD_FLAG = "dualline_feed_held"
_ID_CHUNK = 5000
_INSERTS_CHANGES = re.compile(r"\s*INSERT\s+INTO\s+[`\"]?changes[`\"]?\s*\(", re.IGNORECASE)


# --- stamping ----------------------------------------------------------------------------------


def _pending_rows(dialect: str) -> str:
    if dialect == "postgresql":
        return "txn = txid_current() AND seq IS NULL"
    if dialect in ("mysql", "mariadb"):
        return "txn = connection_id() AND seq IS NULL"
    raise ValueError(f"no pending-row test for {dialect}")


def hold_feed(conn: Connection) -> int | None:
    """PostgreSQL: lock the feed counter now, until this transaction ends, so that the change
    rows it writes can be numbered as they are inserted: `seq = id + offset` (the returned
    offset), written once, straight into `changes` — no staging table to move at COMMIT.

    Every other writer of the feed then waits at its own COMMIT (where it stamps) until this
    transaction ends, so only a run that shuts them out anyway should hold it: a first load,
    whose deferred indexes (records.bulk DeferredIndexes) already lock the person tables.
    Returns None, holding nothing, when this transaction has written or staged change rows
    already (they are stamped the usual way) or on another database."""
    if conn.dialect.name != "postgresql" or conn.info.get(_STAGED_FLAG):
        return None
    if _HELD_FLAG in conn.info:
        return conn.info[_HELD_FLAG]
    if conn.execute(text(f"SELECT 1 FROM changes WHERE {_pending_rows('postgresql')} LIMIT 1")).first():
        return None
    last = conn.execute(text("SELECT last_seq FROM change_feed_counter WHERE id = 1 FOR UPDATE")).scalar()
    if last is None:  # a database whose counter row is missing: begin it after the largest seq
        last = conn.execute(text("SELECT COALESCE(MAX(seq), 0) FROM changes")).scalar_one()
        conn.execute(text("INSERT INTO change_feed_counter (id, last_seq) VALUES (1, :last)"), {"last": last})
    # Every id this transaction takes from now on is above `first` (the sequence only climbs),
    # so every seq it gives is above `last`: after every seq already committed.
    first = conn.execute(text("SELECT nextval(pg_get_serial_sequence('changes', 'id'))")).scalar_one()
    offset = last + 1 - first
    conn.info[_HELD_FLAG] = offset
    return offset


def held_feed_offset(conn: Connection) -> int | None:
    """The offset of `hold_feed` while this transaction holds the feed, else None."""
    return conn.info.get(_HELD_FLAG)


def _stamp_held(conn: Connection, offset: int) -> int:
    """COMMIT of a transaction holding the feed: its rows still without a `seq` (written by the
    ORM, say) are numbered like the rest, and the counter moves past the largest."""
    stamped = conn.execute(text(f"UPDATE changes SET seq = id + :offset WHERE {_pending_rows('postgresql')}"),
                           {"offset": offset}).rowcount
    # The largest seq of all is this transaction's (nobody else could stamp meanwhile).
    conn.execute(text("UPDATE change_feed_counter SET last_seq = GREATEST(last_seq, "
                      "(SELECT COALESCE(MAX(seq), 0) FROM changes)) WHERE id = 1"))
    return stamped


def stamp_changes(conn: Connection, staged: bool = False) -> int:
    """Give this transaction's change rows their feed `seq`; returns how many were stamped.
    `staged`: PostgreSQL rows waiting in the temporary table of `stage_changes` move into
    `changes` too, numbered in the same range.

    Called by the commit listener; callable directly too (idempotent within a transaction)."""
    if conn.dialect.name == "sqlite":
        # One writer at a time holds the database from its first write to its COMMIT, so ids
        # already follow commit order: `seq` is the id (the sync's bulk writer sets it at INSERT,
        # sync.apply, which spares a second write of every row; this catches every other writer).
        return conn.execute(text("UPDATE changes SET seq = id WHERE seq IS NULL")).rowcount
    pending = _pending_rows(conn.dialect.name)
    innodb = conn.dialect.name in ("mysql", "mariadb")
    ids: list[int] = []
    if innodb:
        # InnoDB's locking reads lock index gaps and the next record too: an UPDATE … WHERE over
        # the index would wait for another transaction's uncommitted rows next to ours, while that
        # one waits for the counter we hold (deadlock). A consistent (non-locking) read finds our
        # rows; the UPDATEs below then lock exactly them, by primary key.
        ids = list(conn.execute(text(f"SELECT id FROM changes WHERE {pending} ORDER BY id")).scalars())
        low, high = (ids[0], ids[-1]) if ids else (None, None)
    else:
        low, high = conn.execute(text(f"SELECT MIN(id), MAX(id) FROM changes WHERE {pending}")).one()
    if staged:
        staged_low, staged_high = conn.execute(text(f"SELECT MIN(id), MAX(id) FROM {STAGED_CHANGES}")).one()
        if staged_low is not None:
            low = staged_low if low is None else min(low, staged_low)
            high = staged_high if high is None else max(high, staged_high)
    if low is None:
        return 0
    conn.execute(text("UPDATE change_feed_counter SET last_seq = last_seq + :n WHERE id = 1"),
                 {"n": high - low + 1})
    lock = " FOR UPDATE" if conn.dialect.name in ("mysql", "mariadb") else ""
    last = conn.execute(text(f"SELECT last_seq FROM change_feed_counter WHERE id = 1{lock}")).scalar()
    if last is None:  # a database whose counter row is missing: begin it after the largest seq
        top = conn.execute(text("SELECT COALESCE(MAX(seq), 0) FROM changes")).scalar_one()
        last = top + high - low + 1
        conn.execute(text("INSERT INTO change_feed_counter (id, last_seq) VALUES (1, :last)"), {"last": last})
    if innodb:
        for i in range(0, len(ids), _ID_CHUNK):
            chunk = ids[i : i + _ID_CHUNK]
            # By primary key only (forced: on a small table the optimiser would scan, and lock,
            # every row): unique lookups lock just the rows named, no gaps.
            conn.execute(text("UPDATE changes FORCE INDEX (PRIMARY) SET seq = id + :offset WHERE id IN :ids")
                         .bindparams(bindparam("ids", expanding=True)), {"offset": last - high, "ids": chunk})
        return len(ids)
    moved = 0
    if staged:
        moved = _move_staged(conn, last - high)
    result = conn.execute(text(f"UPDATE changes SET seq = id + :offset WHERE {pending}"),
                          {"offset": last - high})
    return moved + result.rowcount


STAGED_CHANGES = "changes_staged"
# A first load's staged rows (into an empty feed) at least this many: the feed's plain indexes
# are built after the move instead of updated per row.
_REBUILD_INDEXES_FROM = 100_000


def _move_staged(conn: Connection, offset: int) -> int:
    """PostgreSQL: move the staged rows into `changes`, numbered `id + offset` on the way (one
    write of each row, not an UPDATE of the staging table and then a copy)."""
    columns = list(conn.execute(text(f"SELECT * FROM {STAGED_CHANGES} LIMIT 0")).keys())
    values = ", ".join(f"id + {int(offset)}" if c == "seq" else f'"{c}"' for c in columns)
    rebuild: list[tuple[str, str]] = []
    # The feed was empty before this transaction (its own unstamped rows aside: alignment's).
    if conn.execute(text("SELECT 1 FROM changes WHERE seq IS NOT NULL LIMIT 1")).first() is None and conn.execute(
            text(f"SELECT COUNT(*) >= :n FROM (SELECT 1 FROM {STAGED_CHANGES} LIMIT :n) s"),
            {"n": _REBUILD_INDEXES_FROM}).scalar():
        # Plain indexes only: unique ones are constraints, partial ones hold no stamped rows.
        rebuild = [tuple(r) for r in conn.execute(text(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = 'changes'::regclass AND NOT i.indisunique AND i.indpred IS NULL"))]
        for name, _ in rebuild:
            conn.execute(text(f'DROP INDEX "{name}"'))
    names = ", ".join(f'"{c}"' for c in columns)
    moved = conn.execute(text(f"INSERT INTO changes ({names}) SELECT {values} FROM {STAGED_CHANGES}")).rowcount
    if rebuild:
        conn.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
        for _, definition in rebuild:
            conn.execute(text(definition))
    conn.execute(text(f"TRUNCATE {STAGED_CHANGES}"))
    return moved


def stage_changes(conn: Connection) -> str:
    """PostgreSQL: a temporary table shaped like `changes` (dropped at COMMIT) where a bulk
    writer puts this transaction's change rows; the commit-time stamping moves them into
    `changes` with their `seq` in one INSERT … SELECT. Rows written straight into `changes`
    would be written twice — inserted, then rewritten with their `seq`, every index updated
    both times (≈ 14 s of a million-staff sync's commit); a temporary table has no indexes and
    no WAL. Returns the table's name."""
    if not conn.info.get(_STAGED_FLAG):
        conn.execute(text(f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGED_CHANGES} "
                          "(LIKE changes INCLUDING DEFAULTS) ON COMMIT DROP"))
        conn.info[_STAGED_FLAG] = True
    return STAGED_CHANGES


def unstamped_change_tables(conn: Connection) -> list[str]:
    """Where this transaction's change rows without a `seq` yet are: `changes` (rows there with
    `seq` NULL are this transaction's: others stamp theirs before they commit) and, on PostgreSQL
    after `stage_changes`, the staging table."""
    return ["changes"] + ([STAGED_CHANGES] if conn.info.get(_STAGED_FLAG) else [])


def mark_changes_pending(conn: Connection) -> None:
    """This transaction wrote change rows: stamp them at its COMMIT. Inserts through SQLAlchemy
    are noticed by themselves; a writer that bypasses the cursor (COPY) calls this."""
    conn.info[_PENDING_FLAG] = True


def _mark_change_inserts(conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any,
                         executemany: bool) -> None:
    if statement[:12].lstrip()[:6].upper() == "INSERT" and _INSERTS_CHANGES.match(statement):
        mark_changes_pending(conn)


def _stamp_before_commit(conn: Connection) -> None:
    pending = conn.info.pop(_PENDING_FLAG, False)
    staged = conn.info.pop(_STAGED_FLAG, False)
    held = conn.info.pop(_HELD_FLAG, None)
    if held is not None:
        _stamp_held(conn, held)
    elif pending or staged:
        stamp_changes(conn, staged=staged)


def _forget_on_rollback(conn: Connection) -> None:
    # A rollback drops the temporary table too (created in the transaction, or ON COMMIT DROP).
    conn.info.pop(_PENDING_FLAG, None)
    conn.info.pop(_STAGED_FLAG, None)
    conn.info.pop(_HELD_FLAG, None)


# Class-level: every engine of the process, whoever made it.
event.listen(Engine, "before_cursor_execute", _mark_change_inserts)
event.listen(Engine, "commit", _stamp_before_commit)
event.listen(Engine, "rollback", _forget_on_rollback)


