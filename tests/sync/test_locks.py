"""Run locks in the database: atomic on SQLite, PostgreSQL and MariaDB; two processes racing for a
source → exactly one runs and the other exits 1 naming the holder; a SIGKILLed holder's lock is
taken over and the next run gives the same data as an uninterrupted one; only runs without a live
lock are marked interrupted."""
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import delete, insert, select

from benchmarks.enterprise import generate
from benchmarks.fake_source import FakeSource
from benchmarks.sync_bench import write_config
from records.db import make_engine, session_factory, upgrade
from records.models import RunLock, SyncRun, utcnow
from sync.locks import HOST, LockHeld, RunLocks, holder_is_dead
from tests.conftest import TEST_SECRET
from tests.sync.conftest import Site
from tests.sync.test_crash import state

DUALLINE = [sys.executable, "-c", "from web.cli import main; main()"]


def _row(engine, name: str) -> RunLock | None:
    with session_factory(engine)() as s:
        return s.get(RunLock, name)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lock_semantics_on_every_backend(any_db_url: str) -> None:
    engine = make_engine(any_db_url)
    upgrade(engine)
    try:
        a = RunLocks(engine, ["source:b", "source:a"], ttl=1.0)
        a.acquire()
        assert a.held == ["source:a", "source:b"]
        assert _row(engine, "source:a").holder == a.holder

        # All or nothing: refused on source:b, so source:c (taken first, in sorted order… after b) is not kept.
        b = RunLocks(engine, ["source:c", "source:b"], ttl=1.0)
        with pytest.raises(LockHeld) as info:
            b.acquire()
        assert info.value.holder == a.holder and info.value.name == "source:b"
        assert a.holder in str(info.value) and "since" in str(info.value)
        assert b.held == [] and _row(engine, "source:c") is None

        # Renewed while alive: still refused after more than one TTL.
        time.sleep(1.6)
        with pytest.raises(LockHeld):
            RunLocks(engine, ["source:a"], ttl=1.0).acquire()

        a.release()
        assert _row(engine, "source:a") is None and _row(engine, "source:b") is None

        # An expired lock of a holder on another host (it stopped heartbeating) is taken over.
        past = utcnow() - dt.timedelta(seconds=5)
        with engine.begin() as conn:
            conn.execute(insert(RunLock).values(name="source:x", holder="elsewhere:1:abc", acquired_at=past,
                                                heartbeat_at=past, expires_at=past + dt.timedelta(seconds=2)))
            future = utcnow() + dt.timedelta(seconds=60)
            conn.execute(insert(RunLock).values(name="source:y", holder="elsewhere:1:abc", acquired_at=past,
                                                heartbeat_at=past, expires_at=future))
            conn.execute(insert(RunLock).values(name="source:z", holder=f"{HOST}:{_dead_pid()}:abc",
                                                acquired_at=past, heartbeat_at=past, expires_at=future))
        c = RunLocks(engine, ["source:x"], ttl=30)
        c.acquire()
        assert _row(engine, "source:x").holder == c.holder
        c.release()
        # Not expired, other host: we cannot know it is dead, so it is held.
        with pytest.raises(LockHeld) as info:
            RunLocks(engine, ["source:y"]).acquire()
        assert "elsewhere:1:abc" in str(info.value)
        # A dead process on this host holds nothing, TTL or not.
        d = RunLocks(engine, ["source:z"], ttl=30)
        d.acquire()
        d.release()

        # Racers: for a free lock and for an expired one, exactly one wins.
        with engine.begin() as conn:
            conn.execute(delete(RunLock))
            conn.execute(insert(RunLock).values(name="source:old", holder="elsewhere:2:def", acquired_at=past,
                                                heartbeat_at=past, expires_at=past))
        for name in ("source:new", "source:old"):
            racers = [RunLocks(engine, [name], ttl=30) for _ in range(6)]
            barrier = threading.Barrier(len(racers))
            won: list[str] = []
            lost: list[str] = []

            def race(locks: RunLocks) -> None:
                barrier.wait()
                try:
                    locks.acquire()
                    won.append(locks.holder)
                except LockHeld:
                    lost.append(locks.holder)

            threads = [threading.Thread(target=race, args=(r,)) for r in racers]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert len(won) == 1 and len(lost) == 5, (name, won, lost)
            assert _row(engine, name).holder == won[0]
            for r in racers:
                r.release()
    finally:
        engine.dispose()


def test_holder_is_dead_only_when_sure() -> None:
    assert holder_is_dead(f"{HOST}:{_dead_pid()}:x")
    assert not holder_is_dead(f"{HOST}:{os.getpid()}:x")
    assert not holder_is_dead(f"{HOST}:1:x")  # init is alive
    assert not holder_is_dead(f"other-host:{_dead_pid()}:x")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_an_ended_process_nobody_reaped_yet_is_dead() -> None:
    """A holder killed along with its parent may stay a zombie until something reaps it; signal 0
    still reaches a zombie, but it holds nothing."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # ended, not reaped: no wait() until the end
        with open(f"/proc/{proc.pid}/stat", "rb") as stat:
            if stat.read().rpartition(b")")[2].split()[0] == b"Z":
                break
        time.sleep(0.02)
    try:
        os.kill(proc.pid, 0)  # still there for signals
        assert holder_is_dead(f"{HOST}:{proc.pid}:x")
    finally:
        proc.wait()


def test_only_runs_without_a_live_lock_are_marked_interrupted(site: Site) -> None:
    engine = site.runtime.engine
    now = utcnow()
    with session_factory(engine)() as s, s.begin():
        alive = SyncRun(sources=["remote"], status="running", started_at=now)
        dead = SyncRun(sources=["gone"], status="running", started_at=now)
        s.add_all([alive, dead])
        s.flush()
        alive_id, dead_id = alive.id, dead.id
        s.add(RunLock(name="source:remote", holder="elsewhere:7:abc", run_id=alive_id, acquired_at=now,
                      heartbeat_at=now, expires_at=now + dt.timedelta(seconds=120)))
    assert site.sync().status == "succeeded"
    with session_factory(engine)() as s:
        assert s.get(SyncRun, alive_id).status == "running"
        assert s.get(SyncRun, dead_id).status == "failed"
        assert "interrupted" in s.get(SyncRun, dead_id).error
        # our own locks are gone once the run is over; the other holder's stays
        assert [r.name for r in s.scalars(select(RunLock))] == ["source:remote"]


# -- processes --------------------------------------------------------------------------------


def _slow(source: FakeSource, seconds: float) -> None:
    respond = source.respond

    def slow(kind: str, page: int, page_size: int):
        time.sleep(seconds)
        return respond(kind, page, page_size)

    source.respond = slow  # type: ignore[method-assign]


def _config(folder: Path, url: str, database: str) -> Path:
    path = write_config(folder, url, database, page_size=100)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["scheduler"] = {"lock_ttl_seconds": 2}
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def _sites(tmp_path: Path, url: str, *names: str) -> tuple[dict[str, str], dict[str, Path]]:
    """An initialised SQLite database and its config per name, each reading the source at `url`."""
    urls, configs = {}, {}
    for name in names:
        (tmp_path / name).mkdir()
        urls[name] = f"sqlite:///{tmp_path / name / 'db.sqlite'}"
        configs[name] = _config(tmp_path / name, url, urls[name])
        assert _run(configs[name], "init").wait(60) == 0
    return urls, configs


def _run(config: Path, *args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, DUALLINE_CONFIG=str(config), DUALLINE_SECRET_KEY=TEST_SECRET)
    return subprocess.Popen(DUALLINE + list(args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_lock(url: str, name: str, timeout: float = 30) -> RunLock:
    engine = make_engine(url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                row = _row(engine, name)
            except Exception:  # noqa: BLE001 - the schema may be being created
                row = None
            if row is not None:
                return row
            time.sleep(0.05)
        raise AssertionError(f"{name} was never locked")
    finally:
        engine.dispose()


def test_two_processes_race_then_sigkill_and_takeover(tmp_path: Path) -> None:
    enterprise = generate(staff=600, seed=5)
    with FakeSource(enterprise, page_size=100) as source:
        _slow(source, 0.25)  # runs last seconds, so the second process surely meets the first, on a loaded machine too
        urls, configs = _sites(tmp_path, source.url, "reference", "raced")

        reference = _run(configs["reference"], "sync")

        # Race: the second starts while the first holds source:hr → it refuses, naming the holder.
        first = _run(configs["raced"], "sync")
        lock = _wait_for_lock(urls["raced"], "source:hr")
        assert lock.holder.startswith(f"{HOST}:{first.pid}:")
        second = _run(configs["raced"], "sync", "hr")
        _, err = second.communicate(timeout=60)
        assert second.returncode == 1, err.decode()
        message = err.decode()
        assert "source:hr is locked by" in message and f":{first.pid}:" in message and "since" in message
        assert first.wait(120) == 0, first.stderr.read().decode() if first.stderr else ""

        # SIGKILL the holder mid-run: its lock stays behind, the next run takes it over.
        victim = _run(configs["raced"], "sync")
        _wait_for_lock(urls["raced"], "source:party")
        time.sleep(0.5)
        assert victim.poll() is None, "the run finished before it could be killed"
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
        assert _row(make_engine(urls["raced"]), "source:party") is not None  # left behind by the dead
        time.sleep(2.2)  # past the TTL, as after a crash on another host
        final = _run(configs["raced"], "sync")
        _, err = final.communicate(timeout=180)
        assert final.returncode == 0, err.decode()
        assert reference.wait(180) == 0

    assert state(urls["raced"]) == state(urls["reference"])
    engine = make_engine(urls["raced"])
    with session_factory(engine)() as s:
        runs = s.scalars(select(SyncRun).order_by(SyncRun.id)).all()
        statuses = [r.status for r in runs]
        assert statuses == ["succeeded", "failed", "succeeded"], statuses  # the refused one made no run
        assert "interrupted" in (runs[1].error or "")
        assert s.scalars(select(RunLock)).all() == []
    engine.dispose()
