"""Killing the process during a sync, then running it again, gives the same final state as an
uninterrupted run: one transaction per run, so a kill leaves the previous consistent state."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from benchmarks.enterprise import generate
from benchmarks.fake_source import FakeSource
from benchmarks.sync_bench import write_config
from records.db import make_engine, session_factory
from records.models import Membership, Mismatch, OrgUnit, Person, SyncRun
from tests.conftest import TEST_SECRET

DUALLINE = [sys.executable, "-c", "from web.cli import main; main()"]


def state(url: str) -> dict[str, list]:
    engine = make_engine(url)
    with session_factory(engine)() as s:
        out = {
            "persons": sorted(s.execute(select(Person.employee_no, Person.name, Person.org_unit_code,
                                               Person.employment_status, Person.staff_active)).all(), key=str),
            "units": sorted(s.execute(select(OrgUnit.code, OrgUnit.parent_code, OrgUnit.active)).all(), key=str),
            "members": sorted(s.execute(select(Person.name, Membership.party_org_code, Membership.category)
                                        .join(Person, Person.id == Membership.person_id)).all(), key=str),
            "mismatches": sorted(s.execute(select(Mismatch.rule, Mismatch.subject_label, Mismatch.state)).all(), key=str),
        }
    engine.dispose()
    return out


def run(config: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, DUALLINE_CONFIG=str(config), DUALLINE_SECRET_KEY=TEST_SECRET)
    return subprocess.Popen(DUALLINE + list(args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_kill_mid_sync_then_rerun_equals_uninterrupted(tmp_path: Path) -> None:
    enterprise = generate(staff=6000, seed=21)
    with FakeSource(enterprise, page_size=200) as source:
        urls = {}
        configs = {}
        for name in ("reference", "killed"):
            folder = tmp_path / name
            folder.mkdir()
            urls[name] = f"sqlite:///{folder / 'db.sqlite'}"
            configs[name] = write_config(folder, source.url, urls[name], page_size=200)
            assert run(configs[name], "init").wait(60) == 0

        started = time.perf_counter()
        assert run(configs["reference"], "sync").wait(300) == 0
        duration = time.perf_counter() - started
        kills = 0
        # Kill points as shares of an uninterrupted run's duration, so that a loaded machine
        # (slower runs) still gets killed mid-run: during start-up/fetch, planning and apply.
        for share in (0.35, 0.55, 0.75, 0.9):
            delay = duration * share
            proc = run(configs["killed"], "sync")
            time.sleep(delay)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait(60)
        assert kills >= 2, "the sync finished before it could be killed; make the enterprise larger"
        final = run(configs["killed"], "sync")
        assert final.wait(300) == 0, final.stderr.read().decode() if final.stderr else ""

    assert state(urls["killed"]) == state(urls["reference"])
    engine = make_engine(urls["killed"])
    with session_factory(engine)() as s:
        statuses = [r.status for r in s.scalars(select(SyncRun).order_by(SyncRun.id))]
        # every killed run is reported as failed (interrupted) by the run that followed it
        assert statuses[-1] == "succeeded"
        assert "running" not in statuses
    engine.dispose()
