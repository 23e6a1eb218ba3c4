"""`dualline scheduler`: cron from the config, missed fires coalesced into one run, catch-up after
downtime, the per-run timeout kills the child, the heartbeat row, two schedulers on one
database never run one source twice at once, and a scheduler killed mid-run takes its run along."""
from __future__ import annotations

import datetime as dt
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import select

from benchmarks.enterprise import generate
from benchmarks.fake_source import FakeSource
from records.db import make_engine, session_factory
from records.models import RunLock, SyncRun, utcnow
from sync.config import ConfigError, parse_config
from sync.scheduler import ChildRunner, add_source_job, build_scheduler, missed_fire, parse_cron, scheduled_sources
from sync.locks import holder_is_dead
from tests.sync.test_crash import state
from tests.sync.test_locks import _config, _run, _sites, _slow, _wait_for_lock

def _source(schedule: str | None) -> dict:
    block = {"connector": "file", "path": "staff.csv", "provides": ["staff"], "mapping": "canonical"}
    if schedule is not None:
        block["schedule"] = schedule
    return block


def test_cron_from_config() -> None:
    config = parse_config({"sources": {"hr": _source("0 2 * * *"), "roster": _source("*/10 * * * * *"),
                                       "manual": _source(None)},
                           "scheduler": {"run_timeout_seconds": 600, "lock_ttl_seconds": 30}}, path=None)
    triggers = scheduled_sources(config)
    assert sorted(triggers) == ["hr", "roster"]
    start = dt.datetime(2026, 1, 1, 3, 0, tzinfo=dt.timezone.utc)
    hr = parse_cron("0 2 * * *")
    hr.timezone = dt.timezone.utc
    assert hr.get_next_fire_time(None, start) == dt.datetime(2026, 1, 2, 2, 0, tzinfo=dt.timezone.utc)
    assert str(triggers["roster"].fields[-1]) == "*/10"  # the seconds field
    assert config.scheduler == {"run_timeout_seconds": 600.0, "lock_ttl_seconds": 30.0, "misfire_grace_seconds": 3600}
    with pytest.raises(ConfigError, match=r"sources\.hr\.schedule"):
        scheduled_sources(parse_config({"sources": {"hr": _source("61 2 * * *")}}, path=None))
    with pytest.raises(ConfigError, match=r"5 fields"):
        parse_cron("0 2 * *")
    with pytest.raises(ConfigError, match=r"scheduler\.run_timeout_seconds"):
        parse_config({"scheduler": {"run_timeout_seconds": 0}}, path=None)


def test_missed_fires_coalesce_into_one_run() -> None:
    """Downtime simulated by pausing: ~8 fire times pass; on resume the job runs once, not 8 times."""
    calls: list[float] = []
    scheduler = BackgroundScheduler()
    add_source_job(scheduler, "hr", IntervalTrigger(seconds=0.1), lambda name: calls.append(time.monotonic()),
                   misfire_grace=60)
    job = scheduler.get_job("sync:hr")
    assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, 60)
    scheduler.start(paused=True)
    try:
        time.sleep(0.9)  # "down": fire times pile up
        resumed = time.monotonic()
        scheduler.resume()
        time.sleep(0.05)
        burst = [c for c in calls if c - resumed < 0.08]
        assert len(burst) == 1, burst
    finally:
        scheduler.shutdown(wait=False)


def test_catch_up_after_downtime(db_engine) -> None:
    trigger = parse_cron("0 * * * *")  # hourly
    now = dt.datetime.now(dt.timezone.utc)
    assert not missed_fire(db_engine, "hr", trigger, now)  # never ran: wait for the cron
    with session_factory(db_engine)() as s, s.begin():
        s.add(SyncRun(sources=["hr"], status="succeeded", started_at=utcnow() - dt.timedelta(hours=5)))
    assert missed_fire(db_engine, "hr", trigger, now)  # five fires missed → one catch-up
    with session_factory(db_engine)() as s, s.begin():
        s.add(SyncRun(sources=["hr"], status="succeeded", started_at=utcnow()))
    assert not missed_fire(db_engine, "hr", trigger, now)

    config = parse_config({"sources": {"hr": _source("0 * * * *")}}, path=None)
    scheduler = BackgroundScheduler()
    build_scheduler(config, db_engine, lambda name: None, scheduler=scheduler, holder="h:1:x")
    job = scheduler.get_job("sync:hr")
    assert job.coalesce and job.max_instances == 1
    # the heartbeat row was written at once
    with session_factory(db_engine)() as s:
        beat = s.scalars(select(RunLock).where(RunLock.name.like("scheduler:%"))).one()
        assert beat.holder == "h:1:x" and beat.expires_at > utcnow()


def test_run_timeout_kills_the_child() -> None:
    class Sleeper(ChildRunner):
        def command(self, source: str) -> list[str]:
            return [sys.executable, "-c", "import time; time.sleep(30)"]

    runner = Sleeper(None, timeout=0.5)
    started = time.monotonic()
    assert runner("hr") == -signal.SIGKILL
    assert time.monotonic() - started < 5 and runner.children == {}


def _each_source_ran(url: str, times: int) -> bool:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as s:
            runs = s.scalars(select(SyncRun).where(SyncRun.status == "succeeded")).all()
    except Exception:  # noqa: BLE001 - the schema may be mid-creation; just look again
        return False
    finally:
        engine.dispose()
    counts: dict[str, int] = {}
    for run in runs:
        for name in run.sources:
            counts[name] = counts.get(name, 0) + 1
    return len(counts) == 3 and min(counts.values()) >= times


def test_two_schedulers_never_run_a_source_twice_at_once(tmp_path: Path) -> None:
    enterprise = generate(staff=300, seed=9)
    with FakeSource(enterprise, page_size=100) as source:
        # Half a second a page, so that a run holds its lock for a second or more: both
        # schedulers fire on the same second, and the child that starts later must find the
        # first one's lock held. With runs shorter than the spread of two child processes'
        # start-up (at 0.05 s a page, on a loaded machine), they ran one after the other and
        # no race was ever lost, so the test failed although nothing overlapped.
        _slow(source, 0.5)
        url = f"sqlite:///{tmp_path / 'db.sqlite'}"
        config = _config(tmp_path, source.url, url)
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
        for name in data["sources"]:
            data["sources"][name]["schedule"] = "* * * * * *"  # every second
        data["scheduler"].update(run_timeout_seconds=30)
        config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        assert _run(config, "init").wait(60) == 0
        schedulers = [_run(config, "scheduler") for _ in range(2)]
        try:
            # Until every source has run at least twice (so overlaps had their chance), or 45 s
            # on a loaded machine; then a little longer for more races.
            deadline = time.monotonic() + 45
            while time.monotonic() < deadline and not _each_source_ran(url, times=2):
                time.sleep(0.5)
            time.sleep(2)
        finally:
            for proc in schedulers:
                proc.send_signal(signal.SIGTERM)
            logs = [proc.communicate(timeout=30)[1].decode() for proc in schedulers]

    engine = make_engine(url)
    with session_factory(engine)() as s:
        runs = s.scalars(select(SyncRun).where(SyncRun.status == "succeeded").order_by(SyncRun.started_at)).all()
        beats = s.scalars(select(RunLock).where(RunLock.name.like("scheduler:%"))).all()
    engine.dispose()
    per_source: dict[str, list[SyncRun]] = {}
    for run in runs:
        assert len(run.sources) == 1
        per_source.setdefault(run.sources[0], []).append(run)
    assert sorted(per_source) == ["appraisal", "hr", "party"], logs
    for name, source_runs in per_source.items():
        for before, after in zip(source_runs, source_runs[1:]):
            assert after.started_at >= before.finished_at, f"{name}: runs {before.id} and {after.id} overlap"
    # both schedulers fired, and the one that lost a race logged the holder instead of running
    assert any("skipped" in log and "is locked by" in log for log in logs), logs
    assert len(beats) == 1


def _succeeded(url: str) -> bool:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as s:
            return s.scalars(select(SyncRun.id).where(SyncRun.status == "succeeded").limit(1)).first() is not None
    finally:
        engine.dispose()


def test_a_scheduler_killed_mid_run_takes_its_run_along_and_the_next_one_completes_it(tmp_path: Path) -> None:
    """kill -9 of the scheduler: its running child dies with it (nothing committed, the lock's
    holder dead), and a scheduler started again runs the source to the same data as a run that
    was never interrupted."""
    enterprise = generate(staff=600, seed=5)
    with FakeSource(enterprise, page_size=100) as source:
        _slow(source, 0.2)  # a run lasts seconds: the kill lands mid-run
        urls, configs = _sites(tmp_path, source.url, "reference", "scheduled")
        # One scheduled source, so that the uninterrupted run to compare with is one `sync hr`
        # (three sources fired at once serialise in any order, each order its own history).
        data = yaml.safe_load(configs["scheduled"].read_text(encoding="utf-8"))
        data["sources"]["hr"]["schedule"] = "* * * * * *"
        data["scheduler"].update(run_timeout_seconds=120)
        configs["scheduled"].write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        reference = _run(configs["reference"], "sync", "hr")

        first = _run(configs["scheduled"], "scheduler")
        lock = _wait_for_lock(urls["scheduled"], "source:hr")
        child = int(lock.holder.split(":")[1])
        assert child != first.pid  # the run is the scheduler's child, holding the lock itself
        time.sleep(0.5)
        assert not holder_is_dead(lock.holder), "the run finished before the scheduler could be killed"
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        # Killed with it at once; the deadline is for a loaded machine. (An orphan not tied to
        # the scheduler finishes and commits the run by itself within it: no run is then
        # marked interrupted, which the end of this test catches.)
        deadline = time.monotonic() + 15
        while not holder_is_dead(lock.holder) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert holder_is_dead(lock.holder), "the run outlived its scheduler"

        second = _run(configs["scheduled"], "scheduler")
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not _succeeded(urls["scheduled"]):
                time.sleep(0.2)
        finally:
            second.send_signal(signal.SIGTERM)
            log = second.communicate(timeout=60)[1].decode()
        assert _succeeded(urls["scheduled"]), log
        assert reference.wait(180) == 0

    assert state(urls["scheduled"]) == state(urls["reference"])
    engine = make_engine(urls["scheduled"])
    with session_factory(engine)() as s:
        killed = s.scalars(select(SyncRun).where(SyncRun.status == "failed")).all()
        assert killed and all("interrupted" in (run.error or "") for run in killed)
        # No live holder keeps a source locked (a run the SIGTERM above cut short may leave its
        # row, whose dead holder the next run takes over).
        locks = s.scalars(select(RunLock).where(RunLock.name.like("source:%"))).all()
        assert all(holder_is_dead(lock.holder) for lock in locks), [lock.holder for lock in locks]
    engine.dispose()
