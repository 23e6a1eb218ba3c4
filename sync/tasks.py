"""Distributed runs on Celery: `dualline worker`, `dualline beat`, `dualline sync --distributed`.

A distributed run does what `SyncEngine.run` does, with the slow part — fetching pages from the
sources — spread over workers, and the result identical to a single-process run:

1. `start` (the coordinator) takes the sources' run lock as a *lease* held by the run (holder
   `run:<uuid>`, not a process), creates the SyncRun, decides each pull's cursor exactly as the
   engine does, and enqueues one `fetch` per partition and one `apply`.
2. `fetch` reads one partition of one pull — a stride of pages (pages i, i+N, i+2N …) of a REST
   source with page-number or offset paging and announced totals; any other pull is one
   partition — and writes the raw records to `staged_records` in short transactions, then a
   marker row (page -1) with its outcome (records read, cursor, error).
3. `apply` waits (by retrying itself, so it never holds a worker slot while waiting) until every
   partition has its marker, then replays the staged pages in the source's own page order
   through the ordinary planner: plan → guard → apply → alignment in ONE transaction, exactly as
   a single-process run (mapping happens here too, because a roster's branch names resolve
   against the party orgs planned earlier in the same run). Then the staging rows go.

While a task works on the run it renews the lease (a heartbeat thread); the apply confirms the
lease inside its transaction just before committing. A killed worker stops renewing: its lease
expires after `workers.lock_ttl_seconds` and the next run takes the sources over, marks the dead
run interrupted and deletes its staged rows; a late task of the dead run finds its lease gone and
does nothing. With RabbitMQ a task whose worker died is redelivered (acks late) and simply
continues the run. Nothing is committed to the unified records but by the one apply transaction.
"""
from __future__ import annotations

import datetime as dt
import logging
import math
import os
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from celery import Celery, signals
from celery.schedules import BaseSchedule
from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.orm import Session

from connectors import Connector, SourceError
from connectors.base import Page
from connectors.http import extract_records, get_path, parse_json, safe_url
from connectors.rest import PageRequest, RestConnector, _later, _latest, make_paginator
from records.models import RunLock, StagedRecord, SyncRun, utcnow
from sync.config import Config, ConfigError, load_config
from sync.engine import RunResult, SyncEngine
from sync.locks import LockHeld, RunLocks, source_lock_name
from sync.rules import RuleSet
from sync.runtime import Runtime
from sync.scheduler import parse_cron, scheduled_sources

log = logging.getLogger("dualline.worker")

app = Celery("dualline")
STAGE_BATCH = 2000  # staged rows per INSERT and per commit of a fetch task
WAIT_SECONDS = 0.5  # the apply looks again this often while partitions are still fetching


@signals.setup_logging.connect
def _logging_is_ours(**_: Any) -> None:
    """Celery configures no logging of its own: sync.logs did (human lines or JSON)."""


# --------------------------------------------------------------------------- the Celery app


def configure(config: Config) -> Celery:
    """Point the module's Celery app at the config's broker, backend, queue and beat schedule."""
    workers = config.workers
    if not workers:
        raise ConfigError("no `workers:` block (broker: redis://… or amqp://…) in the config; "
                          "distributed runs need one")
    broker = workers["broker"]
    backend = workers["result_backend"] or (broker if broker.startswith(("redis", "rediss")) else "rpc://")
    queue = workers["queue"]
    app.conf.update(
        broker_url=broker,
        result_backend=backend,
        task_default_queue=queue,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # A task whose worker dies is redelivered (RabbitMQ at once, Redis after its visibility
        # timeout); the lease decides whether it may still continue the run.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a long fetch must not sit on tasks another worker could take
        broker_connection_retry_on_startup=True,
        result_expires=3600,
        worker_hijack_root_logger=False,
        # Redis redelivers a task nobody acknowledged after this long — it must exceed the longest
        # fetch, or a running one would be fetched twice; one of a killed worker is by then
        # long abandoned (its lease expired).
        broker_transport_options={"visibility_timeout": 12 * 3600} if broker.startswith("redis") else {},
        beat_schedule={
            f"sync:{name}": {"task": "dualline.start", "schedule": CronSchedule(str(config.sources[name].block["schedule"]),
                                                                          f"sources.{name}.schedule"),
                             "kwargs": {"sources": [name], "actor": "beat"}, "options": {"queue": queue}}
            for name in scheduled_sources(config)
        },
        beat_schedule_filename=str(config.base_dir / ".dualline-beat-schedule"),
    )
    _runtime.cache_clear()
    return app


class CronSchedule(BaseSchedule):
    """A source's `schedule:` cron for Celery beat, read exactly as `dualline scheduler` reads it
    (five fields, or six with seconds first — Celery's own crontab has no seconds)."""

    def __init__(self, expr: str, where: str = "schedule", app: Celery | None = None) -> None:
        self.expr, self.where = expr, where
        self.trigger = parse_cron(expr, where)
        super().__init__(app=app)

    def is_due(self, last_run_at: dt.datetime) -> tuple[bool, float]:
        now = self.now()
        if now.tzinfo is None:
            now = now.replace(tzinfo=dt.timezone.utc)
        if last_run_at.tzinfo is None:
            last_run_at = last_run_at.replace(tzinfo=dt.timezone.utc)
        due_at = self.trigger.get_next_fire_time(None, last_run_at)
        if due_at is not None and due_at <= now:
            following = self.trigger.get_next_fire_time(None, now)
            return True, max((following - now).total_seconds(), 0.5) if following else 3600.0
        if due_at is None:
            return False, 3600.0
        return False, max((due_at - now).total_seconds(), 0.1)

    def remaining_estimate(self, last_run_at: dt.datetime) -> dt.timedelta:
        return dt.timedelta(seconds=self.is_due(last_run_at)[1])

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.expr, self.where))

    def __repr__(self) -> str:
        return f"<cron {self.expr}>"


@lru_cache(maxsize=1)
def _runtime() -> Runtime:
    """The worker process's runtime, from $DUALLINE_CONFIG (set by `dualline worker`)."""
    return Runtime(load_config())


@signals.worker_ready.connect
def _start_worker_heartbeat(sender: Any = None, **_: Any) -> None:
    """A `worker:<host>:<pid>` row in run_locks, renewed every third of the lock TTL, as the
    scheduler keeps its own (`sync.locks.heartbeats(engine, "worker:")` lists them)."""
    from sqlalchemy.pool import NullPool

    from records.db import make_engine
    from sync.locks import HOST, beat, new_holder_id

    runtime = _runtime()
    ttl = float(runtime.config.scheduler["lock_ttl_seconds"])
    # No pooled connection between beats: pool processes forked later must not inherit one.
    engine = make_engine(runtime.config.database, poolclass=NullPool)
    name, holder = f"worker:{HOST}:{os.getpid()}", new_holder_id()

    def loop() -> None:
        while True:
            try:
                beat(engine, name, holder, ttl)
            except Exception as exc:  # noqa: BLE001 - the database may be away for a moment
                log.warning("worker heartbeat failed: %s", exc)
            time.sleep(max(ttl / 3.0, 0.5))

    threading.Thread(target=loop, name="dualline-worker-heartbeat", daemon=True).start()


# --------------------------------------------------------------------------- the run's lease


class LeaseLost(Exception):
    """The run's lease expired and another run took its sources: this task must not go on."""


class RunLease(RunLocks):
    """The run locks of a distributed run, held by the run (`run:<uuid>`) rather than by a process:
    no heartbeat of its own; each task renews it while it works (`renewing`)."""

    def _start_heartbeat(self) -> None:
        """Nothing: the coordinator's process must not keep the lease alive after it hands over."""

    def renew(self) -> bool:
        """Push the lease forward — only while it has not expired: an expired lease means the run
        was left for dead (its worker killed), and a late task of it must not bring it back."""
        now = utcnow()
        with self.engine.begin() as conn:
            count = conn.execute(
                update(RunLock)
                .where(RunLock.name.in_(self.held), RunLock.holder == self.holder, RunLock.expires_at >= now)
                .values(heartbeat_at=now, expires_at=now + dt.timedelta(seconds=self.ttl))
            ).rowcount
        return count == len(self.held)

    @classmethod
    def resume(cls, engine: Engine, names: Sequence[str], ttl: float, holder: str) -> "RunLease":
        lease = cls(engine, names, ttl=ttl, holder=holder)
        lease.held = list(lease.names)
        return lease

    @contextmanager
    def renewing(self, heartbeat: bool = True) -> Iterator[None]:
        if not self.renew():
            raise LeaseLost(f"the run's lease on {', '.join(self.names)} was taken over")
        self._stop = threading.Event()
        if heartbeat:
            RunLocks._start_heartbeat(self)
        try:
            yield
        finally:
            self._stop.set()
            if self._thread is not None:
                self._thread.join(timeout=0.5)
                self._thread = None

    def confirm(self, session: Session) -> None:
        """Inside the apply's transaction, just before its commit: the lease is still ours (and
        stays so until the commit, as this UPDATE holds the rows)."""
        now = utcnow()
        count = session.execute(
            update(RunLock).where(RunLock.name.in_(self.held), RunLock.holder == self.holder)
            .values(heartbeat_at=now, expires_at=now + dt.timedelta(seconds=self.ttl))
        ).rowcount
        if count != len(self.held):
            raise LeaseLost(f"the run's lease on {', '.join(self.names)} was taken over before the commit")

    def close(self) -> None:
        """Let go of the connections, not of the lease."""
        self.engine.dispose()


# --------------------------------------------------------------------------- partitions


def partitions_for(connector: Connector, kind: str, since: str | None, wanted: int) -> int:
    """How many page strides a pull can be split into: a full pull of a REST endpoint with
    page-number or offset paging that announces its total (so each stride knows where the
    source ends and that every page before the last is whole); else one."""
    if wanted <= 1 or since is not None or not isinstance(connector, RestConnector):
        return 1
    endpoint = connector.config["endpoints"].get(kind) or {}
    pagination = endpoint.get("pagination") or connector.config.get("pagination") or {}
    if pagination.get("type") not in ("page_number", "offset"):
        return 1
    if not (pagination.get("total_pages_path") or pagination.get("total_records_path")):
        return 1
    return wanted


def partition_pages(connector: Connector, kind: str, since: str | None, partition: int,
                    partitions: int) -> Iterator[tuple[int, Page, dict[str, Any]]]:
    """(page index in the source's order, page, facts) for one partition of a pull."""
    if partitions == 1:
        for index, page in enumerate(connector.read(kind, since=since)):
            yield index, page, {}
        return
    assert isinstance(connector, RestConnector)
    yield from _rest_stride(connector, kind, partition, partitions)


def _rest_stride(connector: RestConnector, kind: str, partition: int,
                 partitions: int) -> Iterator[tuple[int, Page, dict[str, Any]]]:
    """Pages partition, partition+N, … of a page-number / offset REST endpoint, with the checks
    the connector's own paginator makes: the totals of the first answer bound the pull, every
    page before the last is full, the last holds what the total says is left."""
    endpoint = connector.config["endpoints"][kind]
    paginator = make_paginator(endpoint.get("pagination") or connector.config.get("pagination"))
    cfg = paginator.cfg
    page_size = int(cfg["page_size"])
    url = connector.config["url"].rstrip("/") + "/" + endpoint["path"].lstrip("/")
    params = dict(endpoint.get("params") or {})
    cursor_field = endpoint.get("cursor_field")
    expected: int | None = None
    total_records: int | None = None
    index = partition
    try:
        while expected is None or index < expected:
            request = PageRequest(url, {**params, **paginator._params(index)})
            response = connector.session.request(endpoint["method"], request.url,
                                                 **RestConnector._payload(endpoint, request.params))
            where = safe_url(response.url or request.url)
            body = parse_json(response, source=connector.name)
            records = extract_records(body, endpoint.get("records_path") or "", where)
            if expected is None:
                total_pages = _number(body, cfg.get("total_pages_path"))
                total_records = _number(body, cfg.get("total_records_path"))
                expected = total_pages if total_pages is not None else math.ceil((total_records or 0) / page_size)
            if index >= expected:
                break
            last = index == expected - 1
            if not last:
                whole, want = len(records) == page_size, page_size
            elif total_records is not None:
                want = total_records - (expected - 1) * page_size
                whole = len(records) == want
            else:
                whole, want = len(records) <= page_size, page_size
            if not whole:
                raise SourceError(
                    f"page {index + 1} of {expected} has {len(records)} records, expected {want}; the server "
                    f"may cap page_size (lower it) or the source changed during the pull",
                    error_class="truncated", source=connector.name, kind=kind)
            cursor = _latest(None, [record.get(cursor_field) for record in records]) if cursor_field else None
            yield index, Page(records, None if cursor is None else str(cursor), {"page": index + 1, "url": where}), \
                {"expected_pages": expected, "total_records": total_records}
            index += partitions
    except SourceError as exc:
        exc.source = exc.source or connector.name
        exc.kind = exc.kind or kind
        raise


def _number(body: Any, path: str | None) -> int | None:
    if not path:
        return None
    value = get_path(body, path, None)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SourceError(f"{path!r} is not a number in the answer", error_class="protocol") from None


class StagedReader(Connector):
    """A source as a distributed run's apply sees it: its staged pages, in the source's page order.

    A pull a fetch task could not read raises that task's SourceError, as the connector would have."""

    def __init__(self, engine: Engine, run_id: int, source: str,
                 outcomes: dict[str, list[dict[str, Any]]]) -> None:
        self.engine, self.run_id, self.source_name, self.outcomes = engine, run_id, source, outcomes

    def read(self, kind: str, *, since: str | None = None) -> Iterator[Page]:
        outcomes = self.outcomes.get(kind, [])
        failed = [o for o in outcomes if o.get("error")]
        if failed:
            first = failed[0]
            raise SourceError(first["error"], error_class=first.get("error_class") or "transport",
                              source=self.source_name, kind=kind)
        pages = {o.get("expected_pages") for o in outcomes if o.get("expected_pages") is not None}
        if len(pages) > 1:
            raise SourceError(f"the source announced different totals to different partitions ({sorted(pages)} "
                              f"pages): it changed during the pull", error_class="truncated",
                              source=self.source_name, kind=kind)
        cursor = None
        for outcome in sorted(outcomes, key=lambda o: o["partition"]):
            if outcome.get("cursor") is not None:
                cursor = outcome["cursor"] if len(outcomes) == 1 else _later(cursor, outcome["cursor"])
        last_page = max((o.get("last_page", -1) for o in outcomes), default=-1)
        # Keyset over (page, position), one short read per batch: the apply's transaction goes on
        # writing between our reads, on a connection of its own.
        current, records = -1, []
        after = (-1, -1)
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    select(StagedRecord.page, StagedRecord.position, StagedRecord.payload)
                    .where(StagedRecord.run_id == self.run_id, StagedRecord.source == self.source_name,
                           StagedRecord.kind == kind, StagedRecord.page >= 0,
                           (StagedRecord.page > after[0])
                           | ((StagedRecord.page == after[0]) & (StagedRecord.position > after[1])))
                    .order_by(StagedRecord.page, StagedRecord.position)
                    .limit(STAGE_BATCH)
                ).all()
            for page, _, payload in rows:
                if page != current:
                    if records:
                        yield Page(records, cursor if current == last_page else None, {"page": current + 1})
                    current, records = page, []
                records.append(payload)
            if len(rows) < STAGE_BATCH:
                break
            after = (rows[-1][0], rows[-1][1])
        if records:
            yield Page(records, cursor if current == last_page else None, {"page": current + 1})


# --------------------------------------------------------------------------- tasks


def _lock_names(source_names: Sequence[str]) -> list[str]:
    return [source_lock_name(name) for name in source_names]


@app.task(name="dualline.start")
def start(sources: Sequence[str] | None = None, full: bool = False, approve: bool = False,
          actor: str = "worker") -> dict[str, Any]:
    """The coordinator: lease, run row, pulls and partitions; then the fetch tasks and the apply."""
    runtime = _runtime()
    workers = runtime.config.workers or {}
    engine = SyncEngine(runtime)
    selected = engine.select_sources(list(sources or []) or None)
    RuleSet.from_config(runtime.config)  # a bad `rules:` block fails before anything runs
    built = {s.name: engine.build(s) for s in selected}
    runtime.cipher  # no secret key: fail before anything is locked
    holder = f"run:{uuid.uuid4().hex}"
    lease = RunLease(runtime.engine, _lock_names([s.name for s in selected]), ttl=workers["lock_ttl_seconds"],
                     holder=holder)
    try:
        lease.acquire()
    except LockHeld as exc:
        lease.close()
        return {"run_id": None, "status": "locked", "message": str(exc), "holder": exc.holder}
    try:
        run_id = engine._start_run(selected, full, approve, actor, lease)
        with engine.sessions() as session, session.begin():
            _delete_dead_staging(session)
            pulls = [
                (source.name, kind, since,
                 partitions_for(built[source.name][0], kind, since, int(workers["partitions"])))
                for source, kind, since in engine.pulls(session, selected, built, full)
            ]
            session.execute(update(SyncRun).where(SyncRun.id == run_id).values(
                progress={"phase": "fetch", "distributed": True, "fetched": {},
                          "partitions": sum(p[3] for p in pulls), "started_at": utcnow().isoformat(timespec="seconds")}))
    except BaseException:
        lease.release()
        raise
    finally:
        for connector, _ in built.values():
            connector.close()
    lease.close()
    names = lease.names
    for source, kind, since, count in pulls:
        for partition in range(count):
            fetch.delay(run_id, holder, names, source, kind, since, partition, count)
    apply_run.delay(run_id, holder, names, [s.name for s in selected], [list(p) for p in pulls],
                    {"full": full, "approve": approve, "actor": actor})
    log.info("run %s: %d pull(s) in %d partition(s) enqueued", run_id, len(pulls), sum(p[3] for p in pulls),
             extra={"run_id": run_id})
    return {"run_id": run_id, "status": "running"}


def _delete_dead_staging(session: Session) -> None:
    """Staged rows of runs that are no longer running (killed, failed, finished)."""
    running = select(SyncRun.id).where(SyncRun.status == "running")
    session.execute(delete(StagedRecord).where(StagedRecord.run_id.not_in(running)))


@app.task(name="dualline.fetch")
def fetch(run_id: int, holder: str, lock_names: Sequence[str], source: str, kind: str, since: str | None,
          partition: int, partitions: int) -> dict[str, Any]:
    """Fetch one partition of one pull into `staged_records`, then its outcome marker."""
    runtime = _runtime()
    ttl = (runtime.config.workers or {})["lock_ttl_seconds"]
    lease = RunLease.resume(runtime.engine, lock_names, ttl, holder)
    extra = {"run_id": run_id, "source": source, "kind": kind, "partition": partition}
    outcome: dict[str, Any] = {"partition": partition, "read": 0, "cursor": None, "error": None,
                               "error_class": None, "last_page": -1}
    mine = (StagedRecord.run_id == run_id, StagedRecord.source == source, StagedRecord.kind == kind,
            StagedRecord.partition == partition)
    try:
        with lease.renewing():
            with runtime.engine.begin() as conn:  # a redelivered task starts its partition over
                conn.execute(delete(StagedRecord).where(*mine))
            engine = SyncEngine(runtime)
            connector, _ = engine.build(runtime.config.sources[source])
            rows: list[dict[str, Any]] = []
            try:
                for index, page, facts in partition_pages(connector, kind, since, partition, partitions):
                    outcome.update(facts)
                    outcome["last_page"] = index
                    for position, raw in enumerate(page.records):
                        rows.append({"run_id": run_id, "source": source, "kind": kind, "partition": partition,
                                     "page": index, "position": position, "payload": raw})
                    outcome["read"] += len(page.records)
                    if page.cursor is not None:
                        outcome["cursor"] = page.cursor if partitions == 1 else _later(outcome["cursor"], page.cursor)
                    if len(rows) >= STAGE_BATCH:
                        _stage(runtime.engine, rows)
                        rows = []
                _stage(runtime.engine, rows)
            except SourceError as exc:
                outcome.update(error=str(exc.message), error_class=exc.error_class)
                log.warning("run %s: %s/%s partition %s failed: %s", run_id, source, kind, partition, exc,
                            extra=extra)
            except Exception as exc:  # noqa: BLE001 - the apply must hear of it now, not after the lease's TTL
                outcome.update(error=f"{type(exc).__name__}: {exc}", error_class="internal")
                log.exception("run %s: %s/%s partition %s failed", run_id, source, kind, partition, extra=extra)
            finally:
                connector.close()
            _stage(runtime.engine, [{"run_id": run_id, "source": source, "kind": kind, "partition": partition,
                                     "page": -1, "position": 0, "payload": outcome}])
    except LeaseLost as exc:
        log.warning("run %s: fetch %s/%s#%s abandoned: %s", run_id, source, kind, partition, exc, extra=extra)
        return {**outcome, "abandoned": True}
    finally:
        lease.close()
    log.info("run %s: fetched %s/%s partition %s/%s: %s records", run_id, source, kind, partition + 1, partitions,
             outcome["read"], extra=extra)
    return outcome


def _stage(engine: Engine, rows: list[dict[str, Any]]) -> None:
    if rows:
        with engine.begin() as conn:
            conn.execute(insert(StagedRecord.__table__), rows)


@app.task(name="dualline.apply", bind=True, max_retries=None)
def apply_run(self: Any, run_id: int, holder: str, lock_names: Sequence[str], source_names: Sequence[str],
              pulls: Sequence[Sequence[Any]], options: dict[str, Any]) -> dict[str, Any]:
    """Once every partition is staged: plan → guard → apply → align in one transaction."""
    runtime = _runtime()
    ttl = (runtime.config.workers or {})["lock_ttl_seconds"]
    lease = RunLease.resume(runtime.engine, lock_names, ttl, holder)
    extra = {"run_id": run_id}
    try:
        outcomes = _outcomes(runtime.engine, run_id)
        expected = sum(int(p[3]) for p in pulls)
        if sum(len(v) for v in outcomes.values()) < expected:
            if _lease_alive(runtime.engine, holder, lease.names):
                raise self.retry(countdown=WAIT_SECONDS)
            _abandon(runtime, run_id, lease, "a fetch task was lost (its worker died and the run's lease expired)")
            return {"run_id": run_id, "status": "failed"}
        engine = SyncEngine(runtime)
        try:
            with lease.renewing(heartbeat=runtime.engine.dialect.name != "sqlite"):
                result = _apply(engine, runtime, run_id, lease, source_names, pulls, outcomes, options)
        except LeaseLost as exc:
            _abandon(runtime, run_id, lease, f"abandoned: {exc}")
            return {"run_id": run_id, "status": "failed"}
        except Exception:
            # plan_and_apply recorded the failure on the run row; free the sources now rather
            # than after the lease's TTL, and say so like any failed run.
            lease.release()
            _cleanup(runtime.engine, run_id)
            _notify(runtime, _recorded(runtime.engine, run_id))
            raise
        lease.release()  # after the commit: the next run must see what this one wrote
        _cleanup(runtime.engine, run_id)
        _notify(runtime, result)
        log.info("run %s: %s in %.1fs", run_id, result.status, result.seconds, extra=extra | {"status": result.status})
        return {"run_id": run_id, "status": result.status}
    finally:
        lease.close()


def _apply(engine: SyncEngine, runtime: Runtime, run_id: int, lease: RunLease, source_names: Sequence[str],
           pulls: Sequence[Sequence[Any]], outcomes: dict[tuple[str, str], list[dict[str, Any]]],
           options: dict[str, Any]) -> RunResult:
    with runtime.engine.connect() as conn:
        begun = conn.scalar(select(SyncRun.started_at).where(SyncRun.id == run_id))
    # The run's seconds count from its start by the coordinator, fetching included.
    started = time.perf_counter() - max((utcnow() - begun).total_seconds(), 0.0) if begun else time.perf_counter()
    sources = engine.select_sources(list(source_names))
    rule_set = RuleSet.from_config(runtime.config)
    built = {s.name: engine.build(s) for s in sources}
    readers: dict[str, Connector] = {}
    for s in sources:
        mine = {kind: v for (name, kind), v in outcomes.items() if name == s.name}
        readers[s.name] = StagedReader(runtime.engine, run_id, s.name, mine)
    since = {(p[0], p[1]): p[2] for p in pulls}
    try:
        with _gc_paused():
            return engine.plan_and_apply(run_id, sources, built, readers, rule_set, dry_run=False,
                                         full=bool(options.get("full")), approve=bool(options.get("approve")),
                                         actor=str(options.get("actor") or "worker"), started=started,
                                         since=since, before_commit=lease.confirm, pull_phase="plan")
    finally:
        for connector, _ in built.values():
            connector.close()


@contextmanager
def _gc_paused() -> Iterator[None]:
    from sync.engine import _cyclic_gc_paused

    with _cyclic_gc_paused():
        yield


def _recorded(engine: Engine, run_id: int) -> RunResult:
    with engine.connect() as conn:
        return result_of(conn.execute(select(SyncRun).where(SyncRun.id == run_id)).one())


def _outcomes(engine: Engine, run_id: int) -> dict[tuple[str, str], list[dict[str, Any]]]:
    with engine.connect() as conn:
        rows = conn.execute(select(StagedRecord.source, StagedRecord.kind, StagedRecord.payload)
                            .where(StagedRecord.run_id == run_id, StagedRecord.page == -1))
        out: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for source, kind, payload in rows:
            out[(source, kind)].append(payload)
    return dict(out)


def _lease_alive(engine: Engine, holder: str, names: Sequence[str]) -> bool:
    """Some task of the run renewed the lease recently enough (it has not expired)."""
    with engine.connect() as conn:
        count = conn.scalar(select(func.count()).select_from(RunLock).where(
            RunLock.name.in_(list(names)), RunLock.holder == holder, RunLock.expires_at >= utcnow()))
    return count == len(names)


def _abandon(runtime: Runtime, run_id: int, lease: RunLease, reason: str) -> None:
    with runtime.engine.begin() as conn:
        conn.execute(update(SyncRun).where(SyncRun.id == run_id, SyncRun.status == "running")
                     .values(status="failed", finished_at=utcnow(), error=reason))
    lease.release()
    _cleanup(runtime.engine, run_id)
    log.error("run %s: %s", run_id, reason, extra={"run_id": run_id})


def _cleanup(engine: Engine, run_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(delete(StagedRecord).where(StagedRecord.run_id == run_id))


def _notify(runtime: Runtime, result: RunResult) -> None:
    from sync.notify import notify_run

    notify_run(runtime, result)


# --------------------------------------------------------------------------- the client


def run_distributed(runtime: Runtime, sources: Sequence[str] | None, *, full: bool = False, approve: bool = False,
                    actor: str = "cli", timeout: float | None = None, poll: float = 0.3) -> RunResult:
    """`dualline sync --distributed`: enqueue a run and wait for its outcome (from its run row).

    Raises LockHeld when another run holds one of the sources."""
    configure(runtime.config)
    timeout = timeout or float(runtime.config.scheduler["run_timeout_seconds"])
    reply = start.apply_async(kwargs={"sources": list(sources or []), "full": full, "approve": approve,
                                      "actor": actor}).get(timeout=timeout)
    if reply["status"] == "locked":
        raise LockHeld(reply["message"].split(" is locked by")[0], reply.get("holder"), None)
    run_id = int(reply["run_id"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with runtime.engine.connect() as conn:
            run = conn.execute(select(SyncRun).where(SyncRun.id == run_id)).one()
        if run.status != "running":
            return result_of(run)
        time.sleep(poll)
    return RunResult(run_id=run_id, status="failed", errors=[
        {"error_class": "internal", "message": f"run {run_id} did not finish within {timeout:.0f}s; it may "
                                               f"still finish (see `dualline runs`)"}])


def result_of(run: Any) -> RunResult:
    """A finished run's RunResult, from its row (what the apply task recorded)."""
    report = run.report or {}
    return RunResult(run_id=run.id, status=run.status, counts=run.counts or {}, mismatches=run.mismatches or {},
                     errors=report.get("errors") or ([{"error_class": "internal", "message": run.error}]
                                                     if run.status == "failed" and run.error else []),
                     guard=report.get("guard") or {}, ambiguous=report.get("ambiguous") or [],
                     moves=report.get("moves") or {}, mismatches_by_rule=report.get("mismatches_by_rule") or {},
                     plan=report.get("plan") or [], seconds=float(report.get("seconds") or 0.0))


def worker_argv(concurrency: int | None, queues: str | None, loglevel: str, beat: bool) -> list[str]:
    # A node name of its own: two workers on one host must not share one (RabbitMQ refuses the
    # second's exclusive remote-control queue).
    argv = ["worker", f"--loglevel={loglevel}", "--without-gossip", "--without-mingle",
            f"--hostname=dualline-{os.getpid()}@%h"]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    argv.append(f"--queues={queues or app.conf.task_default_queue}")
    if beat:
        argv.append("--beat")
    return argv
