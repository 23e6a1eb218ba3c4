"""The sync engine: one run, from source pages to aligned records.

    stream pages → map → correlate → diff by fingerprint → plan → guard → apply → align

Everything a run changes — records, source links, cursors, change feed rows, quarantine,
mismatches and the run's own outcome — commits in ONE transaction, written in batches. A crash
or kill at any point leaves the previous consistent state (the run row, committed at start, is
marked interrupted by the next run once its run lock has no live holder). Runs of one source
never overlap: a run holds a lock per source in the database (sync.locks) for its whole length,
so two processes or hosts cannot apply the same source at once. A failed pull applies nothing; a held run applies nothing;
`dry_run` does all the work and rolls it back, so its numbers are exact.

`run` = select sources → lock → start the run row → `plan_and_apply`. A distributed run
(sync.tasks) fetches on Celery workers first and then calls the same `plan_and_apply` with
readers over its staged pages, so both give the same result. While a run goes on its progress
(phase, records fetched) is written beside its transaction (sync.progress); after it has
committed, notifications go out (sync.notify).
"""
from __future__ import annotations

import gc
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.orm import Session

from connectors import Connector, get_connector_class
from mappings import Mapping, MappingSpecError, load_mapping
from records.bulk import DeferredIndexes
from records.crypto import mask_id_number
from records.db import session_factory
from records.models import Change, Membership, Person, Quarantine, SourceCursor, SourceLink, SyncRun, utcnow
from records.stamping import hold_feed
from sync.alignment import align
from sync.apply import Applier
from sync.config import ConfigError, SourceConfig
from sync.guard import check
from sync.locks import RunLocks, live_run_ids, source_lock_name
from sync.plan import KIND_ORDER, RunPlan
from sync.planner import Planner
from sync.rules import RuleSet
from sync.progress import RunProgress, final_progress
from sync.runtime import Runtime

ProgressFn = Callable[[str, str, int], None]
log = logging.getLogger("dualline.sync")


@dataclass
class RunResult:
    run_id: int | None
    status: str  # succeeded | failed | held | dry_run
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    mismatches: dict[str, int] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    guard: dict[str, Any] = field(default_factory=dict)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    ambiguous: list[dict[str, Any]] = field(default_factory=list)
    moves: dict[str, int] = field(default_factory=dict)
    mismatches_by_rule: dict[str, int] = field(default_factory=dict)
    plan: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    # Wall seconds per phase of the run's transaction: pull (fetch, map, plan and the streamed
    # writes), apply (deactivations and the rest of the writes), align, rules, commit.
    phases: dict[str, float] = field(default_factory=dict)
    # The change feed position the run's alignment accounted for, and how many subjects it
    # re-examined when it was incremental (None: the whole enterprise).
    aligned_seq: int | None = None
    aligned_subjects: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "counts": self.counts,
            "mismatches": self.mismatches,
            "mismatches_by_rule": self.mismatches_by_rule,
            "moves": self.moves,
            "errors": self.errors,
            "guard": self.guard,
            "quarantined": self.quarantined,
            "ambiguous": self.ambiguous,
            "plan": self.plan,
            "seconds": round(self.seconds, 3),
            "phases": {name: round(seconds, 3) for name, seconds in self.phases.items()},
            "aligned_subjects": self.aligned_subjects,
        }


class SyncEngine:
    def __init__(self, runtime: Runtime, progress: ProgressFn | None = None) -> None:
        self.runtime = runtime
        self.config = runtime.config
        self.progress = progress
        self.sessions = session_factory(runtime.engine)

    # -- setup --------------------------------------------------------------------------------

    def select_sources(self, names: Sequence[str] | None) -> list[SourceConfig]:
        if not names:
            if not self.config.sources:
                raise ConfigError("no sources configured (add a `sources:` block to dualline.yaml)")
            return list(self.config.sources.values())
        unknown = [n for n in names if n not in self.config.sources]
        if unknown:
            raise ConfigError(
                f"unknown source {', '.join(unknown)}; configured: {', '.join(self.config.sources) or 'none'}"
            )
        return [self.config.sources[n] for n in names]

    def build(self, source: SourceConfig) -> tuple[Connector, Mapping]:
        cls = get_connector_class(source.connector)
        connector = cls(source.name, source.block, base_dir=self.config.base_dir)
        try:
            mapping = load_mapping(source.mapping or cls.default_mapping, base_dir=self.config.base_dir)
        except MappingSpecError as exc:
            raise ConfigError(f"sources.{source.name}.mapping: {exc}") from None
        missing = [k for k in source.provides if k not in mapping.kinds()]
        if missing:
            raise ConfigError(
                f"sources.{source.name}.mapping: mapping {mapping.name!r} has no spec for {', '.join(missing)}"
            )
        return connector, mapping

    def _ranks(self, sources: list[SourceConfig]) -> dict[str, int]:
        """Authority for fields several sources feed: HR (staff) sources first, then config order."""
        ordered = sorted(self.config.sources.values(), key=lambda s: ("staff" not in s.provides, s.priority))
        return {s.name: i for i, s in enumerate(ordered)}

    # -- a run --------------------------------------------------------------------------------

    def run(self, source_names: Sequence[str] | None = None, **options: Any) -> RunResult:
        with _cyclic_gc_paused():
            result = self._run(source_names, **options)
        log.log(logging.ERROR if result.status == "failed" else logging.INFO, "run %s: %s in %.1fs",
                result.run_id, result.status, result.seconds,
                extra={"run_id": result.run_id, "status": result.status, "sources": list(source_names or []),
                       "seconds": round(result.seconds, 3), "counts": result.counts,
                       "mismatches": result.mismatches,
                       "error": "; ".join(e.get("message", "") for e in result.errors) or None})
        if result.run_id is not None:
            # After the commit; a channel that fails is logged and never fails the run.
            from sync.notify import notify_run

            notify_run(self.runtime, result)
            if result.status != "dry_run":
                # Whoever started the run (CLI, scheduler, worker, the console's approval), the
                # webhooks get its changes; a receiver's failure is logged, never the run's.
                from sync.webhooks import deliver_after_run

                deliver_after_run(self.runtime)
        return result

    def _run(
        self,
        source_names: Sequence[str] | None = None,
        *,
        dry_run: bool = False,
        full: bool = False,
        approve: bool = False,
        actor: str = "cli",
    ) -> RunResult:
        started = time.perf_counter()
        sources = self.select_sources(source_names)
        rule_set = RuleSet.from_config(self.config)  # a bad `rules:` block fails before anything runs
        built = {s.name: self.build(s) for s in sources}
        self.runtime.cipher  # no secret key: fail before anything is locked or recorded
        locks: RunLocks | None = None
        if not dry_run:  # a dry run writes nothing, so it may look while a real run goes on
            locks = RunLocks(self.runtime.engine, [source_lock_name(s.name) for s in sources],
                             ttl=self.config.scheduler["lock_ttl_seconds"])
            locks.acquire()  # raises LockHeld, naming the live holder
        try:
            run_id = None if dry_run else self._start_run(sources, full, approve, actor, locks)
        except BaseException:
            if locks is not None:
                locks.release()
            raise
        try:
            readers = {name: connector for name, (connector, _) in built.items()}
            return self.plan_and_apply(run_id, sources, built, readers, rule_set, dry_run=dry_run, full=full,
                                       approve=approve, actor=actor, started=started)
        finally:
            # After the commit (or rollback): the next run must see what this one wrote.
            if locks is not None:
                locks.release()
            for connector, _ in built.values():
                connector.close()

    def pulls(self, session: Session, sources: list[SourceConfig], built: dict[str, tuple[Connector, Mapping]],
              full: bool) -> list[tuple[SourceConfig, str, str | None]]:
        """The pulls of a run in order — (source, kind, since) — kind by kind in KIND_ORDER;
        `since` is the stored cursor of an incremental pull, None for a full one."""
        cursors = self._cursors(session)
        out = []
        for kind in KIND_ORDER:
            for source in sources:
                if kind not in source.provides:
                    continue
                connector = built[source.name][0]
                since = None
                if not full and connector.is_incremental(kind):
                    since = cursors.get((source.name, kind))
                out.append((source, kind, since))
        return out

    def plan_and_apply(
        self,
        run_id: int | None,
        sources: list[SourceConfig],
        built: dict[str, tuple[Connector, Mapping]],
        readers: dict[str, Connector],
        rule_set: RuleSet,
        *,
        dry_run: bool,
        full: bool,
        approve: bool,
        actor: str,
        started: float,
        since: dict[tuple[str, str], str | None] | None = None,
        before_commit: Callable[[Session], None] | None = None,
        pull_phase: str = "fetch",
    ) -> RunResult:
        """Plan → guard → apply → align in ONE transaction, reading each pull's pages from
        `readers[source]` (the source's own connector, or a distributed run's staged pages).
        `since` fixes each pull's cursor (a distributed run decided them before fetching);
        `before_commit` may still refuse the commit by raising (a distributed run checks that
        its lease is still its own)."""
        cipher = self.runtime.cipher
        result = RunResult(run_id=run_id, status="running")
        tracker = RunProgress(self.runtime.engine, run_id) if run_id is not None else None
        progress = _both(self.progress, tracker.fetched if tracker else None)
        session = self.sessions()
        plan = RunPlan(batch_size=self.config.batch_size)
        try:
            session.begin()
            if run_id is not None and self.runtime.engine.dialect.name == "sqlite":
                # Take the write lock now (SQLite: one writer), so ids allocated later stay ours.
                # Elsewhere the run row stays unlocked until the end: its progress is written
                # beside this transaction (sync.progress).
                session.execute(update(SyncRun).where(SyncRun.id == run_id).values(status="running"))
            if self.runtime.engine.dialect.name == "postgresql":
                # The alignment and rule queries are estimated (recursive walks over the org
                # trees) far costlier than they are, so PostgreSQL JIT-compiles them: 0.6 s of
                # compiling for a 0.3 s query.
                session.execute(text("SET LOCAL jit = off"))
            # Creates and updates stream into this still-uncommitted transaction as they are
            # planned; the guard looks at the whole run before anything is committed.
            # A first load into empty tables builds their indexes once, after the pull.
            deferred = DeferredIndexes(session.connection())
            if _first_load_feed(deferred.defer(_FIRST_LOAD_TABLES), session.connection()):
                deferred.defer((Change.__table__,))
            applier = Applier(session, cipher, run_id, actor, self._ranks(sources))
            plan.sink = applier.apply_batch
            planner = Planner(session, cipher, plan, self.config.party_org_names, applier.row_builder)
            pulls = self.pulls(session, sources, built, full)
            if tracker:
                tracker.phase(pull_phase)
            clock = _PhaseClock(result.phases)
            for source, kind, pull_since in pulls:
                if since is not None:
                    pull_since = since.get((source.name, kind))
                mapping = built[source.name][1]
                stats = planner.plan_pull(source, readers[source.name], mapping, kind, pull_since, progress)
                if stats.error:
                    # The run fails and rolls back: stop here. Later pulls would only cost time,
                    # and would plan against this pull's half-planned records.
                    break
            # The planner's correlation index (at a first load, every person the run planned:
            # the largest thing a run holds) serves no later phase. Freed now, its memory serves
            # the index builds and alignment instead of adding to them: a million-staff first
            # load on SQLite peaked at 792 MB RSS, now 715 MB.
            del planner
            clock.lap("pull")
            result.counts = plan.summary_counts()
            result.quarantined = [_quarantine_view(q) for q in plan.quarantined[:200]]
            result.ambiguous = [
                {"source": a.source, "kind": a.kind, "label": a.label, "reason": a.reason,
                 "candidates": a.candidates}
                for a in plan.ambiguities[:200]
            ]
            result.plan = plan.describe()
            if plan.failed:
                result.errors = [
                    {"source": s.source, "kind": s.kind, "error_class": s.error_class, "message": s.error,
                     "records_read": s.read}
                    for s in plan.failed
                ]
                session.rollback()
                return self._finish(result, plan, "failed", started, tracker)
            decision = check(plan, **self.config.guard)
            result.guard = decision.as_dict() | {"approved": bool(approve and decision.held)}
            if decision.held and not approve and not dry_run:
                session.rollback()
                return self._finish(result, plan, "held", started, tracker)

            if tracker:
                tracker.phase("apply")
            # The tables a first load filled have no statistics yet (autovacuum analyses them a
            # minute or more later); a run right after one planned its link lookups on them as
            # if empty: 170 ms instead of 10 ms per 1 000 ids. Alignment analyses the others.
            deferred.restore(analyze=(SourceLink.__table__, Change.__table__))
            applier.apply_deactivations(plan.deactivations)
            applier.finish()
            result.moves = dict(applier.moves)
            pulled = [(s.source, s.kind, s.full) for s in plan.stats]
            clock.lap("apply")
            if tracker:
                tracker.phase("align")
            alignment = align(session, run_id, actor, plan.ambiguities, pulled, everything=full)
            result.aligned_seq, result.aligned_subjects = alignment.aligned_seq, alignment.scoped_subjects
            clock.lap("align")
            # Standardization findings join the same queue, in the same transaction.
            alignment = rule_set.after_alignment(session, run_id, actor, alignment)
            clock.lap("rules")
            result.mismatches = alignment.as_dict()
            result.mismatches_by_rule = alignment.by_rule
            if dry_run:
                session.rollback()
                result.status = "dry_run"
                result.seconds = time.perf_counter() - started
                return result
            self._save_cursors(session, plan, run_id)
            self._save_quarantine(session, plan, run_id)
            result.status = "succeeded"
            result.seconds = time.perf_counter() - started
            self._update_run(session, result, tracker)
            if before_commit is not None:
                before_commit(session)
            session.commit()
            clock.lap("commit")
            return result
        except BaseException as exc:
            session.rollback()
            if run_id is not None and not isinstance(exc, KeyboardInterrupt):
                result.errors.append({"error_class": "internal", "message": f"{type(exc).__name__}: {exc}"})
                self._finish(result, plan, "failed", started, tracker)
            raise
        finally:
            session.close()
            if tracker:
                tracker.close()

    # -- bookkeeping --------------------------------------------------------------------------

    def _start_run(self, sources: list[SourceConfig], full: bool, approve: bool, actor: str,
                   locks: RunLocks | None = None) -> int:
        with self.sessions() as session, session.begin():
            # A run still "running" whose lock has no live holder was killed: its transaction
            # never committed, say so. Runs other processes are going on with are left alone.
            stale = update(SyncRun).where(SyncRun.status == "running")
            live = live_run_ids(session)
            if live:
                stale = stale.where(SyncRun.id.not_in(live))
            session.execute(
                stale.values(status="failed", finished_at=utcnow(),
                             error="interrupted (process ended before the run finished)")
            )
            run = SyncRun(sources=[s.name for s in sources], full=full, approved=approve, actor=actor,
                          status="running", started_at=utcnow())
            session.add(run)
            session.flush()
            if locks is not None:
                locks.bind_run(session, run.id)
            return run.id

    def _finish(self, result: RunResult, plan: RunPlan, status: str, started: float,
                tracker: RunProgress | None = None) -> RunResult:
        result.status = status
        result.seconds = time.perf_counter() - started
        if result.run_id is None:  # a dry run: nothing to record
            return result
        with self.sessions() as session, session.begin():
            self._save_quarantine(session, plan, result.run_id)
            self._update_run(session, result, tracker)
        return result

    def _update_run(self, session: Session, result: RunResult, tracker: RunProgress | None = None) -> None:
        report = {
            "errors": result.errors,
            "guard": result.guard,
            "moves": result.moves,
            "mismatches_by_rule": result.mismatches_by_rule,
            "ambiguous": result.ambiguous[:200],
            "plan": result.plan,
            "seconds": round(result.seconds, 3),
            "phases": {name: round(seconds, 3) for name, seconds in result.phases.items()},
            "aligned_subjects": result.aligned_subjects,
        }
        message = "; ".join(e.get("message", "") for e in result.errors) or None
        if result.status == "held":
            message = "held by the guard: " + "; ".join(result.guard.get("reasons", []))
        session.execute(
            update(SyncRun)
            .where(SyncRun.id == result.run_id)
            .values(status=result.status, finished_at=utcnow(), counts=result.counts,
                    mismatches=result.mismatches, report=report, error=message,
                    progress=final_progress(tracker, result.status),
                    aligned_seq=result.aligned_seq if result.status == "succeeded" else None)
        )

    def _cursors(self, session: Session) -> dict[tuple[str, str], str]:
        rows = session.execute(select(SourceCursor.source, SourceCursor.kind, SourceCursor.value))
        return {(s, k): v for s, k, v in rows}

    def _save_cursors(self, session: Session, plan: RunPlan, run_id: int | None) -> None:
        for stats in plan.stats:
            if stats.cursor is None:
                continue
            existing = session.get(SourceCursor, (stats.source, stats.kind))
            if existing is None:
                session.add(SourceCursor(source=stats.source, kind=stats.kind, value=stats.cursor, run_id=run_id))
            else:
                existing.value, existing.run_id = stats.cursor, run_id
        session.flush()

    def _save_quarantine(self, session: Session, plan: RunPlan, run_id: int | None) -> None:
        if not plan.quarantined or run_id is None:
            return
        cipher = self.runtime.cipher
        rows = [
            {"run_id": run_id, "source": q.source, "kind": q.kind, "external_id": q.external_id,
             "row": q.row, "field": q.field, "reason": q.reason,
             "record_enc": cipher.encrypt(json.dumps(q.raw, ensure_ascii=False, default=str)),
             "preview": _masked(q.raw), "at": utcnow()}
            for q in plan.quarantined
        ]
        for i in range(0, len(rows), 1000):
            session.execute(insert(Quarantine.__table__), rows[i : i + 1000])


def _both(first: ProgressFn | None, second: ProgressFn | None) -> ProgressFn | None:
    """One per-page progress callback out of two optional ones."""
    if first is None or second is None:
        return first or second

    def both(source: str, kind: str, read: int) -> None:
        first(source, kind, read)
        second(source, kind, read)

    return both


# Tables the sync bulk-writes whose secondary indexes (on PostgreSQL unique keys and foreign keys
# too) a first load builds at the end (records.bulk DeferredIndexes); the change feed's too where
# its rows are numbered as they are written.
_FIRST_LOAD_TABLES = (Person.__table__, Membership.__table__, SourceLink.__table__)


def _first_load_feed(deferred: list[str], conn: Any) -> bool:
    """Whether this run writes its change rows straight into the feed, numbered as it goes: on
    SQLite always (records.stamping); on PostgreSQL when it is a first load (the person tables
    were empty, so their deferred indexes lock them until COMMIT anyway) and it can hold the
    feed counter for its length (records.stamping.hold_feed). Otherwise PostgreSQL stages the
    rows and moves them in at COMMIT, where it defers the feed's indexes itself."""
    if conn.dialect.name == "sqlite":
        return True
    first_load = any(name in deferred for name in (ix.name for ix in Person.__table__.indexes))
    return first_load and hold_feed(conn) is not None


class _PhaseClock:
    """Writes the wall seconds since the previous lap into `phases[name]` (the run report's
    phase breakdown: where a large run spends its time, e.g. alignment alone)."""

    def __init__(self, phases: dict[str, float]) -> None:
        self.phases = phases
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = self.phases.get(name, 0.0) + now - self.last
        self.last = now


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """A run allocates millions of short-lived acyclic objects while holding large indexes;
    the cyclic collector would rescan those indexes again and again (a third of a full sync's
    time). Reference counting still frees everything; cycles are collected once at the end."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        gc.collect()


_SENSITIVE_WORDS = ("id_number", "身份证", "证件", "公民身份", "certificatenum", "mobile", "手机", "电话", "telephone")


def _masked(raw: dict[str, Any]) -> dict[str, Any]:
    """A quarantined record for display: values of ID-number and phone columns masked."""
    out = {}
    for key, value in raw.items():
        if isinstance(value, str) and any(w in str(key).lower() for w in _SENSITIVE_WORDS):
            out[key] = mask_id_number(value)
        else:
            out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
    return out


def _quarantine_view(q: Any) -> dict[str, Any]:
    return {"source": q.source, "kind": q.kind, "row": q.row, "field": q.field, "reason": q.reason,
            "record": _masked(q.raw)}

