"""Held runs decided by a person: approve applies the sources once, reject records who and why."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from records.db import session_factory
from records.models import AuditLog, Person, SyncRun
from sync.approval import DecisionRefused, approve_run, reject_run, start_approval
from sync.locks import RunLocks, source_lock_name
from tests.sync.conftest import Site, make_site


def held_site(tmp_path: Path, db_url: str) -> tuple[Site, int]:
    """A site whose second run is held: the OA export suddenly lists a third of its staff."""
    site = make_site(tmp_path / "src", db_url, staff=300, seed=5)
    assert site.sync().status == "succeeded"
    site.enterprise.staff[:] = site.enterprise.staff[:100]
    site.rewrite()
    held = site.sync("oa")
    assert held.status == "held"
    return site, held.run_id


def staff_count(site: Site) -> int:
    with session_factory(site.runtime.engine)() as s:
        return s.scalar(select(func.count()).where(Person.staff_active.is_(True)))


def run_row(site: Site, run_id: int) -> SyncRun:
    with session_factory(site.runtime.engine)() as s:
        return s.get(SyncRun, run_id)


def test_approve_applies_the_held_run_once(tmp_path: Path, any_db_url: str) -> None:
    site, held_id = held_site(tmp_path, any_db_url)
    before = staff_count(site)
    assert before > 250
    decision = approve_run(site.runtime, held_id, "alice", "the OA system really lost them")
    assert decision.result is not None and decision.result.status == "succeeded"
    assert 0 < staff_count(site) <= 100
    held = run_row(site, held_id)
    assert held.status == "approved"
    assert held.report["decision"]["by"] == "alice"
    assert held.report["decision"]["run_id"] == decision.result.run_id
    new = run_row(site, decision.result.run_id)
    assert new.approved and new.actor == "console:alice" and new.report["approves_run_id"] == held_id
    with pytest.raises(DecisionRefused):
        approve_run(site.runtime, held_id, "bob")
    with pytest.raises(DecisionRefused):
        reject_run(site.runtime, held_id, "bob", "too late")
    with session_factory(site.runtime.engine)() as s:
        actions = s.scalars(select(AuditLog.action).where(AuditLog.target_id == str(held_id))
                            .order_by(AuditLog.id)).all()
    assert actions == ["run.approve", "run.carried_out"]


def test_reject_keeps_data_and_refuses_a_second_decision(tmp_path: Path, sqlite_url: str) -> None:
    site, held_id = held_site(tmp_path, sqlite_url)
    before = staff_count(site)
    with pytest.raises(DecisionRefused) as refused:
        reject_run(site.runtime, held_id, "alice", "  ")
    assert refused.value.status == 400
    reject_run(site.runtime, held_id, "alice", "export was cut off")
    held = run_row(site, held_id)
    assert held.status == "rejected"
    assert held.report["decision"] == {"status": "rejected", "by": "alice", "at": held.report["decision"]["at"],
                                       "reason": "export was cut off"}
    assert staff_count(site) == before
    for attempt in (lambda: approve_run(site.runtime, held_id, "bob"),
                    lambda: reject_run(site.runtime, held_id, "bob", "again")):
        with pytest.raises(DecisionRefused):
            attempt()
    with pytest.raises(DecisionRefused) as missing:
        reject_run(site.runtime, 999, "alice", "no such run")
    assert missing.value.status == 404


def test_superseded_held_run_cannot_be_approved(tmp_path: Path, sqlite_url: str) -> None:
    site, held_id = held_site(tmp_path, sqlite_url)
    assert site.sync("oa").status == "held"  # held again: decide on the newer one
    with pytest.raises(DecisionRefused, match="newest"):
        approve_run(site.runtime, held_id, "alice")
    assert run_row(site, held_id).status == "held"


def test_console_approval_runs_in_a_child_process(tmp_path: Path, sqlite_url: str) -> None:
    site, held_id = held_site(tmp_path, sqlite_url)
    decision = start_approval(site.runtime, held_id, "alice")
    assert decision.pid
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        report = run_row(site, held_id).report["decision"]
        if report.get("run_status") or report.get("error"):
            break
        time.sleep(0.2)
    assert report.get("run_status") == "succeeded", report
    assert run_row(site, report["run_id"]).report["approves_run_id"] == held_id
    assert 0 < staff_count(site) <= 100


def test_approval_that_cannot_start_leaves_the_run_held(tmp_path: Path, sqlite_url: str) -> None:
    site, held_id = held_site(tmp_path, sqlite_url)
    other = RunLocks(site.runtime.engine, [source_lock_name("oa")])
    other.acquire()  # a live run of the same source
    try:
        decision = approve_run(site.runtime, held_id, "alice")
    finally:
        other.release()
    assert decision.result is None
    held = run_row(site, held_id)
    assert held.status == "held" and "decision" not in held.report
    [attempt] = held.report["failed_approvals"]
    assert attempt["by"] == "alice" and "locked" in attempt["error"]
    with session_factory(site.runtime.engine)() as s:
        assert s.scalars(select(AuditLog.action).where(AuditLog.target_id == str(held_id))
                         .order_by(AuditLog.id)).all() == ["run.approve", "run.approve_failed"]
    assert approve_run(site.runtime, held_id, "alice").result.status == "succeeded"


def test_a_child_that_dies_gives_the_run_back(tmp_path: Path, sqlite_url: str) -> None:
    site, held_id = held_site(tmp_path, sqlite_url)
    broken = tmp_path / "broken.yaml"
    broken.write_text("sources: [not, a, mapping\n", encoding="utf-8")
    site.runtime.config.path = broken  # the child reads this file and fails before any run
    start_approval(site.runtime, held_id, "alice")
    deadline = time.monotonic() + 60
    while run_row(site, held_id).status != "held":
        assert time.monotonic() < deadline, run_row(site, held_id).report
        time.sleep(0.2)
    [attempt] = run_row(site, held_id).report["failed_approvals"]
    assert attempt["by"] == "alice" and "ended with" in attempt["error"]
