"""Run locks held in the database: runs of one source never overlap, across processes and hosts.

A lock is a row of `run_locks` (see records.models.RunLock). Taking it is decided by the
database alone, never by reading first and writing after:

* a free lock is taken by INSERT — the primary key lets exactly one of several racers in;
* an expired lock (its holder stopped heartbeating: killed, hung, host gone) or one whose holder
  is a dead process on this host is taken over by a conditional UPDATE (`WHERE name = … AND
  (expires_at < now OR holder = <the dead one>)`); its row count says whether we won, because
  PostgreSQL and InnoDB re-check the WHERE on the row's newest version and SQLite has one writer.

Each attempt runs in its own short transaction (on PostgreSQL a failed INSERT spoils the whole
transaction). A run takes all its locks at once, in sorted order, all or nothing: on a refusal
the ones already taken are released. While the run goes on a daemon thread renews them on its
own connection; the end of the run deletes them.

SQLite: the run's own transaction holds the database's single write lock for the whole run, so
renewals cannot get through and the lease may run out while the run is alive. SQLite lives on
one host, so there a lock whose holder process is still alive is never taken over.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from records.db import make_engine
from records.models import RunLock, utcnow

log = logging.getLogger(__name__)

DEFAULT_TTL = 60.0
HOST = socket.gethostname()


def new_holder_id() -> str:
    """host:pid:uuid — the host and pid let a peer on the same host see that we died."""
    return f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def source_lock_name(source: str) -> str:
    return f"source:{source}"


def holder_is_dead(holder: str) -> bool:
    """True only when we can be sure: the holder ran on this host and its process is gone."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != HOST or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    """A process that has ended but was not reaped yet (its parent died too, and nothing adopted
    and reaped it): signal 0 still reaches it, yet it holds nothing. Linux's /proc tells."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # "pid (comm) state …": comm may hold spaces and parentheses, the state follows the last ")".
            return stat.read().rpartition(b")")[2].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


class LockHeld(Exception):
    """Another live holder has the lock; the message names it and since when."""

    def __init__(self, name: str, holder: str | None, since: dt.datetime | None) -> None:
        self.name, self.holder, self.since = name, holder, since
        when = f" since {since.isoformat(sep=' ', timespec='seconds')} UTC" if since else ""
        who = holder or "another process"
        super().__init__(f"{name} is locked by {who}{when}: another run of it is going on; try again later")


@dataclass
class LockInfo:
    name: str
    holder: str
    run_id: int | None
    acquired_at: dt.datetime
    heartbeat_at: dt.datetime
    expires_at: dt.datetime


class RunLocks:
    """The locks one run holds. Use `acquire()`, then `release()` in a `finally`."""

    def __init__(self, engine: Engine, names: Iterable[str], *, ttl: float = DEFAULT_TTL,
                 holder: str | None = None) -> None:
        self.names = sorted(set(names))  # one global order: no two runs wait on each other
        self.ttl = float(ttl)
        self.holder = holder or new_holder_id()
        self.sqlite = engine.dialect.name == "sqlite"
        # Its own engine and connections: renewals must not ride on the run's transaction.
        url = engine.url.render_as_string(hide_password=False)
        self.engine = make_engine(url) if self.sqlite else make_engine(url, pool_size=1, max_overflow=2)
        self.held: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- taking ---------------------------------------------------------------------------

    def acquire(self) -> None:
        """Take every lock or none; raise LockHeld naming the first live holder."""
        try:
            for name in self.names:
                self._acquire_one(name)
                self.held.append(name)
        except BaseException:
            self.release()
            raise
        # Not on SQLite: the run's transaction holds its one write lock for the whole run, so a
        # renewal could never get through; there liveness is the holder's process (see above).
        if self.held and not self.sqlite:
            self._start_heartbeat()

    def _acquire_one(self, name: str) -> None:
        now = utcnow()
        expires = now + dt.timedelta(seconds=self.ttl)
        values = dict(holder=self.holder, run_id=None, acquired_at=now, heartbeat_at=now, expires_at=expires)
        current = self.read(name)
        # The read only refuses early (a live holder stays live for its TTL) and finds a dead
        # holder to name in the UPDATE; whether we get the lock is decided by the write below.
        if current is not None and not self._takeable(current, now):
            raise LockHeld(name, current.holder, current.acquired_at)
        try:
            with self.engine.begin() as conn:
                if current is None:
                    conn.execute(insert(RunLock).values(name=name, **values))
                    return
                cond = RunLock.expires_at < now
                if holder_is_dead(current.holder):
                    cond = cond | (RunLock.holder == current.holder)
                if self.sqlite:
                    # Only the very holder we judged takeable: a live local one never is.
                    cond = (RunLock.holder == current.holder) & (RunLock.expires_at == current.expires_at)
                taken = conn.execute(update(RunLock).where(RunLock.name == name, cond).values(**values)).rowcount
                if taken == 1:
                    log.warning("took over lock %s from %s (expired or dead)", name, current.holder)
                    return
        except IntegrityError:
            pass  # someone inserted it first
        except OperationalError as exc:
            if not (self.sqlite and "locked" in str(exc)):
                raise
            # SQLite stayed busy for its whole timeout: another run is writing; refuse.
        latest = self.read(name) or current
        raise LockHeld(name, latest.holder if latest else None, latest.acquired_at if latest else None)

    def _takeable(self, lock: LockInfo, now: dt.datetime) -> bool:
        if holder_is_dead(lock.holder):
            return True
        if lock.expires_at >= now:
            return False
        if self.sqlite and lock.holder.startswith(f"{HOST}:"):
            return False  # alive on this host; its renewals are blocked by its own write lock
        return True

    def read(self, name: str) -> LockInfo | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(RunLock).where(RunLock.name == name)).first()
        return None if row is None else _info(row)

    # -- keeping --------------------------------------------------------------------------

    def bind_run(self, conn_or_session, run_id: int) -> None:
        """Record which run the locks protect, in the transaction that creates the run row."""
        conn_or_session.execute(
            update(RunLock).where(RunLock.name.in_(self.held), RunLock.holder == self.holder).values(run_id=run_id)
        )

    def renew(self) -> bool:
        """Push our leases forward; False if one was lost (taken over after it expired)."""
        if not self.held:
            return True
        now = utcnow()
        with self.engine.begin() as conn:
            count = conn.execute(
                update(RunLock)
                .where(RunLock.name.in_(self.held), RunLock.holder == self.holder)
                .values(heartbeat_at=now, expires_at=now + dt.timedelta(seconds=self.ttl))
            ).rowcount
        return count == len(self.held)

    def _start_heartbeat(self) -> None:
        interval = max(self.ttl / 3.0, 0.2)

        def beat() -> None:
            while not self._stop.wait(interval):
                try:
                    if not self.renew():
                        log.error("run lock lost (%s): another process took it over", ", ".join(self.held))
                except Exception as exc:  # noqa: BLE001 - a busy database must not kill the heartbeat
                    log.debug("lock heartbeat failed: %s", exc)

        self._thread = threading.Thread(target=beat, name="dualline-lock-heartbeat", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop renewing and delete our rows (only ours: the holder is part of the WHERE)."""
        self._stop.set()
        if self._thread is not None:
            # Not waited for long: a renewal stuck on a busy SQLite is harmless after the
            # delete, because it only ever touches rows that carry our holder id.
            self._thread.join(timeout=0.5)
        names, self.held = self.held, []
        if names:
            try:
                with self.engine.begin() as conn:
                    conn.execute(delete(RunLock).where(RunLock.name.in_(names), RunLock.holder == self.holder))
            except Exception as exc:  # noqa: BLE001 - the lease then simply expires after its TTL
                log.warning("could not release run locks %s: %s", ", ".join(names), exc)
        self.engine.dispose()


def _info(row) -> LockInfo:
    return LockInfo(row.name, row.holder, row.run_id, row.acquired_at, row.heartbeat_at, row.expires_at)


def live_run_ids(session, now: dt.datetime | None = None) -> set[int]:
    """Ids of runs whose locks still have a live holder (for telling a running run from a dead one)."""
    now = now or utcnow()
    sqlite = session.get_bind().dialect.name == "sqlite"
    live: set[int] = set()
    for row in session.execute(select(RunLock.__table__).where(RunLock.run_id.is_not(None))):
        if holder_is_dead(row.holder):
            continue
        if row.expires_at >= now or (sqlite and row.holder.startswith(f"{HOST}:")):
            live.add(row.run_id)
    return live


def beat(engine: Engine, name: str, holder: str, ttl: float) -> None:
    """Upsert a heartbeat row (the scheduler's): UPDATE, else INSERT, else UPDATE again."""
    now = utcnow()
    values = dict(holder=holder, heartbeat_at=now, expires_at=now + dt.timedelta(seconds=ttl))
    for _ in range(2):
        with engine.begin() as conn:
            if conn.execute(update(RunLock).where(RunLock.name == name).values(**values)).rowcount:
                return
        try:
            with engine.begin() as conn:
                conn.execute(insert(RunLock).values(name=name, acquired_at=now, run_id=None, **values))
            return
        except IntegrityError:
            continue


def heartbeats(engine: Engine, prefix: str) -> Sequence[LockInfo]:
    with engine.connect() as conn:
        rows = conn.execute(select(RunLock).where(RunLock.name.like(f"{prefix}%")).order_by(RunLock.name)).all()
    return [_info(r) for r in rows]
