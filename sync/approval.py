"""A person's decision on a run the guard held: approve (apply it) or reject (leave it).

A held run applied nothing (sync.engine). Approving it starts a new run of the same sources with
`approve=True` (the guard's hold is overruled by a person, like `dualline sync --approve`); the
held run's status becomes `approved` and its report records who decided, when, why and — once the
new run has started — the new run's id (`report.decision.run_id`); the new run's report names the
held one (`report.approves_run_id`). Rejecting sets the status `rejected` with who and why.

Either decision is taken once: the status moves from `held` by a conditional UPDATE whose row
count says who won, so a second attempt (or two officers clicking at once) is refused. A held run
that a later run of one of its sources has superseded (a newer run succeeded or was held again)
cannot be approved any more: the person would be approving what that newer run showed.

`start_approval()` is what the console calls: it records the decision and starts the run as a
child process (`python -m sync.approval RUN_ID`, the same config and database) so the request does
not wait for the sync; `approve_run()` does the same in-process and waits (tests, CLI use).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from records.db import session_factory
from records.models import AuditLog, SyncRun, utcnow
from sync.config import load_config
from sync.engine import RunResult, SyncEngine
from sync.locks import LockHeld
from sync.runtime import Runtime

DECIDABLE = "held"


class DecisionRefused(Exception):
    """The run cannot be decided (not held, decided already, superseded, unknown)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class Decision:
    held_run_id: int
    status: str  # approved | rejected
    actor: str
    reason: str | None
    pid: int | None = None
    result: RunResult | None = None


def _check_decidable(session: Session, run_id: int, approving: bool) -> SyncRun:
    run = session.get(SyncRun, run_id)
    if run is None:
        raise DecisionRefused(f"no run {run_id}", status=404)
    if run.status != DECIDABLE:
        raise DecisionRefused(f"run {run_id} is {run.status}, not held: it was decided already or never held")
    if approving:
        sources = set(run.sources or [])
        newer = session.execute(select(SyncRun.id, SyncRun.sources, SyncRun.status)
                                .where(SyncRun.id > run_id, SyncRun.dry_run.is_(False))).all()
        for other in newer:
            if other.status in ("succeeded", "held", "running", "approved") and sources & set(other.sources or []):
                raise DecisionRefused(f"run {other.id} of the same sources came after run {run_id} "
                                      f"({other.status}); decide on the newest run instead")
    return run


def _decide(session: Session, run_id: int, status: str, actor: str, reason: str | None, approving: bool) -> SyncRun:
    """Move the run from held to `status`, recording the decision; refused if someone was first."""
    run = _check_decidable(session, run_id, approving)
    decision = {"status": status, "by": actor, "at": utcnow().isoformat(timespec="seconds"), "reason": reason}
    report = dict(run.report or {}) | {"decision": decision}
    won = session.execute(update(SyncRun).where(SyncRun.id == run_id, SyncRun.status == DECIDABLE)
                          .values(status=status, report=report)).rowcount
    if won != 1:
        raise DecisionRefused(f"run {run_id} was decided by someone else meanwhile")
    session.add(AuditLog(actor=actor, action=f"run.{'approve' if approving else 'reject'}", target_type="run",
                         target_id=str(run_id), details={"reason": reason, "sources": run.sources,
                                                         "guard": (run.report or {}).get("guard")}))
    return run


def reject_run(runtime: Runtime, run_id: int, actor: str, reason: str) -> Decision:
    if not (reason or "").strip():
        raise DecisionRefused("a rejection needs a reason", status=400)
    with session_factory(runtime.engine)() as session, session.begin():
        _decide(session, run_id, "rejected", actor, reason.strip(), approving=False)
    return Decision(run_id, "rejected", actor, reason.strip())


def _claim_approval(runtime: Runtime, run_id: int, actor: str, reason: str | None) -> SyncRun:
    with session_factory(runtime.engine)() as session, session.begin():
        return _decide(session, run_id, "approved", actor, (reason or "").strip() or None, approving=True)


def _record_decision(runtime: Runtime, held_run_id: int, **values: Any) -> None:
    """Add to the held run's `report.decision` (the new run's id, how it ended, an error)."""
    with session_factory(runtime.engine)() as session, session.begin():
        run = session.get(SyncRun, held_run_id)
        if run is None:
            return
        report = dict(run.report or {})
        report["decision"] = dict(report.get("decision") or {}) | values
        session.execute(update(SyncRun).where(SyncRun.id == held_run_id).values(report=report))


def _release_claim(runtime: Runtime, held_run_id: int, error: str) -> None:
    """The approved run could not even start (its sources are locked by a live run, the child
    could not be spawned): the run is held again, so a person can decide once more, and the
    failed attempt stays in its report and the audit log."""
    with session_factory(runtime.engine)() as session, session.begin():
        run = session.get(SyncRun, held_run_id)
        if run is None or run.status != "approved":
            return
        report = dict(run.report or {})
        attempt = dict(report.pop("decision", None) or {}) | {"error": error}
        report["failed_approvals"] = list(report.get("failed_approvals") or []) + [attempt]
        session.execute(update(SyncRun).where(SyncRun.id == held_run_id, SyncRun.status == "approved")
                        .values(status=DECIDABLE, report=report))
        session.add(AuditLog(actor=attempt.get("by") or "system", action="run.approve_failed", target_type="run",
                             target_id=str(held_run_id), details={"error": error}))


def execute_approved(runtime: Runtime, held_run_id: int) -> RunResult | None:
    """Run the sources of an approved held run with approve=True and link the two runs."""
    with session_factory(runtime.engine)() as session:
        held = session.get(SyncRun, held_run_id)
        if held is None or held.status != "approved":
            raise DecisionRefused(f"run {held_run_id} is not approved")
        decision = (held.report or {}).get("decision") or {}
        if decision.get("run_id"):
            raise DecisionRefused(f"approved run {held_run_id} was carried out already (run {decision['run_id']})")
        sources, full = list(held.sources or []), bool(held.full)
        actor = f"console:{decision.get('by') or 'unknown'}"
    try:
        result = SyncEngine(runtime).run(sources or None, full=full, approve=True, actor=actor)
    except LockHeld as exc:
        _release_claim(runtime, held_run_id, f"not started: {exc}")
        return None
    except Exception as exc:  # noqa: BLE001 - the engine marked its run failed; say so here too
        _record_decision(runtime, held_run_id, error=f"{type(exc).__name__}: {exc}")
        raise
    _record_decision(runtime, held_run_id, run_id=result.run_id, run_status=result.status)
    with session_factory(runtime.engine)() as session, session.begin():
        run = session.get(SyncRun, result.run_id) if result.run_id is not None else None
        if run is not None:
            run.report = dict(run.report or {}) | {"approves_run_id": held_run_id}
        session.add(AuditLog(actor=actor, action="run.carried_out", target_type="run", target_id=str(held_run_id),
                             details={"run_id": result.run_id, "status": result.status}))
    return result


def approve_run(runtime: Runtime, run_id: int, actor: str, reason: str | None = None) -> Decision:
    """Approve and carry out the run in this process (waits for the sync)."""
    _claim_approval(runtime, run_id, actor, reason)
    result = execute_approved(runtime, run_id)
    return Decision(run_id, "approved", actor, reason, result=result)


def child_environment(runtime: Runtime) -> dict[str, str]:
    """The child reads the same config file and, whatever the file says, the same database and
    key this process uses (they may have come from the environment or from code)."""
    env = dict(os.environ)
    config = runtime.config
    if config.path:
        env["DUALLINE_CONFIG"] = str(config.path)
    env["DUALLINE_DATABASE_URL"] = runtime.engine.url.render_as_string(hide_password=False)
    if config.secret_key:
        env["DUALLINE_SECRET_KEY"] = config.secret_key
    return env


def start_approval(runtime: Runtime, run_id: int, actor: str, reason: str | None = None) -> Decision:
    """Approve, then carry the run out in a child process; returns at once."""
    if runtime.config.path is None:
        raise DecisionRefused("the sources' config has no file the approved run could read", status=500)
    _claim_approval(runtime, run_id, actor, reason)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "sync.approval", str(run_id)],
                                env=child_environment(runtime), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    except OSError as exc:
        _release_claim(runtime, run_id, f"could not start the sync: {exc}")
        raise DecisionRefused(f"could not start the sync: {exc}", status=500) from None
    _record_decision(runtime, run_id, pid=proc.pid)
    timeout = float(runtime.config.scheduler["run_timeout_seconds"])

    def reap() -> None:
        # Reaps the child (no zombie) and stops it at the scheduler's run timeout: a killed run
        # commits nothing, and its lock frees itself. A child that died before its run started
        # (it records how its run went itself) gives the held run back, with its last words.
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            _record_decision(runtime, run_id, error=f"killed after the {timeout:.0f}s run timeout")
            return
        if proc.returncode != 0:
            with session_factory(runtime.engine)() as session:
                run = session.get(SyncRun, run_id)
                decision = ((run.report or {}).get("decision") or {}) if run is not None else {}
            if run is not None and run.status == "approved" and not decision.get("run_id") and not decision.get("error"):
                tail = err.decode("utf-8", "replace").strip().splitlines()[-3:]
                _release_claim(runtime, run_id, f"the sync process ended with {proc.returncode}: " + " | ".join(tail))

    threading.Thread(target=reap, name=f"approval-{run_id}", daemon=True).start()
    return Decision(run_id, "approved", actor, reason, pid=proc.pid)


def main(argv: list[str] | None = None) -> int:
    """`python -m sync.approval RUN_ID`: carry out an approved held run (started by the console)."""
    parser = argparse.ArgumentParser(prog="python -m sync.approval")
    parser.add_argument("run_id", type=int)
    args = parser.parse_args(argv)
    runtime = Runtime(load_config(os.environ.get("DUALLINE_CONFIG")))
    try:
        result = execute_approved(runtime, args.run_id)
    except DecisionRefused as exc:
        print(f"dualline: {exc.message}", file=sys.stderr)
        return 2
    if result is None:
        return 1
    return 0 if result.status == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
