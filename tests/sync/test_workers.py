"""Distributed runs with real Celery workers (`dualline worker` processes) on Redis and RabbitMQ.

A partitioned run must leave exactly the database a single-process run leaves; a worker killed
mid-run — while fetching, or inside the apply's transaction — must leave the sources free for the
next run, which completes with the same data.
Locally a missing broker skips; in CI (CI=true) it fails, like the database servers.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy import func, select

from benchmarks.enterprise import generate
from benchmarks.fake_source import FakeSource
from benchmarks.sync_bench import write_config
from benchmarks.worker_bench import SlowFakeSource
from records.db import make_engine, upgrade
from records.models import Membership, Mismatch, OrgUnit, PartyOrg, Person, StagedRecord, SyncRun
from sync.config import load_config
from sync.engine import SyncEngine
from sync.runtime import Runtime
from tests.conftest import IN_CI, TEST_SECRET

BROKERS = {
    "redis": os.environ.get("DUALLINE_TEST_REDIS", "redis://127.0.0.1:6379/13"),
    "rabbitmq": os.environ.get("DUALLINE_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672//"),
}
DUALLINE = [sys.executable, "-c", "import records.models; from web.cli import main; main()"]


def _broker(kind: str) -> str:
    url = BROKERS[kind]
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port or (6379 if kind == "redis" else 5672)), timeout=2).close()
    except OSError as exc:
        message = f"{kind} broker not reachable at {parts.hostname}:{parts.port}: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return url


def site_config(folder: Path, source_url: str, database: str, broker: str | None, *, page_size: int = 40,
                partitions: int = 3, ttl: float = 30.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = write_config(folder, source_url, database, page_size)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["secret_key"] = TEST_SECRET
    if broker:
        config["workers"] = {"broker": broker, "partitions": partitions, "lock_ttl_seconds": ttl,
                             "queue": f"dualline-test-{uuid.uuid4().hex[:8]}"}
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


class Worker:
    """A `dualline worker` child process (its own process group, so SIGKILL takes its pool too)."""

    def __init__(self, config: Path, concurrency: int = 2, log_format: str = "human") -> None:
        env = dict(os.environ, DUALLINE_CONFIG=str(config), DUALLINE_LOG_FORMAT=log_format)
        self.output: list[str] = []
        self.proc = subprocess.Popen(DUALLINE + ["worker", "--concurrency", str(concurrency), "--loglevel", "INFO"],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 40
        while not any(" ready." in line for line in self.output):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("worker did not start:\n" + "".join(self.output[-40:]))
            time.sleep(0.1)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def log(self) -> str:
        return "".join(self.output)


def run_cli(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DUALLINE_CONFIG=str(config))
    return subprocess.run(DUALLINE + list(args), env=env, capture_output=True, text=True, timeout=timeout)


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """What a sync leaves, by business keys: persons, memberships, org units, party orgs, mismatches."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            out = {
                "persons": conn.execute(select(
                    Person.employee_no, Person.name, Person.org_unit_code, Person.political_status,
                    Person.employment_status, Person.id_number_hash, Person.party_joined_on, Person.staff_active)).all(),
                "memberships": conn.execute(select(
                    Person.employee_no, Person.name, Membership.party_org_code, Membership.category,
                    Membership.joined_on, Membership.status, Membership.active)
                    .join(Person, Person.id == Membership.person_id)).all(),
                "org_units": conn.execute(select(OrgUnit.code, OrgUnit.name, OrgUnit.parent_code, OrgUnit.active)).all(),
                "party_orgs": conn.execute(select(PartyOrg.code, PartyOrg.name, PartyOrg.kind, PartyOrg.active)).all(),
                "mismatches": conn.execute(select(
                    Mismatch.rule, Mismatch.subject_type, Mismatch.subject_label, Mismatch.party_org_code,
                    Mismatch.other_party_org_code, Mismatch.org_unit_code, Mismatch.state)).all(),
            }
    finally:
        engine.dispose()
    return {k: sorted((tuple(r) for r in rows), key=repr) for k, rows in out.items()}


def single_process_snapshot(folder: Path, source_url: str) -> dict[str, list[tuple[Any, ...]]]:
    url = f"sqlite:///{folder / 'single.db'}"
    config = load_config(site_config(folder / "single", source_url, url, None))
    runtime = Runtime(config)
    upgrade(runtime.engine)
    assert SyncEngine(runtime).run().status == "succeeded"
    runtime.engine.dispose()
    return snapshot(url)


def init_database(url: str) -> None:
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()


def staged_rows(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(StagedRecord)) or 0
    finally:
        engine.dispose()


def runs(url: str) -> list[tuple[int, str, str | None]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(select(SyncRun.id, SyncRun.status, SyncRun.error).order_by(SyncRun.id))]
    finally:
        engine.dispose()


def kill_worker_mid_run(config: Path, worker: Worker, reached: Callable[[], bool], *,
                        timeout: float, settle: float = 0.0) -> None:
    """Start `sync --distributed` from the CLI, SIGKILL `worker` (and its pool) once `reached()`
    holds (then `settle` seconds later), and kill the client too: the run is left mid-way."""
    env = dict(os.environ, DUALLINE_CONFIG=str(config))
    client = subprocess.Popen(DUALLINE + ["sync", "--distributed", "--json"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout
        while not reached():
            assert time.monotonic() < deadline and client.poll() is None, worker.log[-3000:]
            time.sleep(0.02)
        time.sleep(settle)
        worker.kill()
    finally:
        client.kill()
        client.wait()


@pytest.fixture(scope="module")
def enterprise():
    return generate(staff=400, seed=7)


@pytest.mark.slow
@pytest.mark.parametrize("broker_kind", ["redis", "rabbitmq"])
def test_partitioned_run_leaves_the_same_database_as_one_process(tmp_path: Path, enterprise, broker_kind: str) -> None:
    broker = _broker(broker_kind)
    with FakeSource(enterprise, page_size=40) as source:
        expected = single_process_snapshot(tmp_path, source.url)
        url = f"sqlite:///{tmp_path / 'distributed.db'}"
        config = site_config(tmp_path / "dist", source.url, url, broker, partitions=3)
        init_database(url)
        # One broker's worker logs JSON lines (`--log-format json`): the run's context is in them.
        worker = Worker(config, concurrency=2, log_format="json" if broker_kind == "rabbitmq" else "human")
        try:
            done = run_cli(config, "sync", "--distributed", "--json")
        finally:
            worker.stop()
    assert done.returncode == 0, done.stdout + done.stderr + worker.log[-3000:]
    assert '"status": "succeeded"' in done.stdout
    # The staff pull (400 records, 10 pages of 40) really was split across three partitions.
    assert "staff partition 3/3" in worker.log
    if broker_kind == "rabbitmq":
        fetched = [json.loads(line) for line in worker.output if line.startswith("{") and "fetched" in line]
        assert fetched and all(e["run_id"] == 1 and e["logger"] == "dualline.worker" for e in fetched)
        assert {e["kind"] for e in fetched} >= {"staff", "party_members"}
    assert snapshot(url) == expected
    assert staged_rows(url) == 0


@pytest.mark.slow
@pytest.mark.parametrize("broker_kind", ["redis", "rabbitmq"])
def test_killed_worker_frees_the_sources_and_the_next_run_completes(tmp_path: Path, enterprise,
                                                                    broker_kind: str) -> None:
    """SIGKILL of the worker (and its pool) mid-fetch. With RabbitMQ its unacknowledged task is
    redelivered to the next worker; with Redis the rest of the run's tasks are still queued:
    either way they find the run's lease expired and do nothing."""
    broker = _broker(broker_kind)
    with SlowFakeSource(enterprise, page_size=20, latency=0.15) as source:
        expected = single_process_snapshot(tmp_path, source.url)
        url = f"sqlite:///{tmp_path / 'distributed.db'}"
        config = site_config(tmp_path / "dist", source.url, url, broker, page_size=20, partitions=2, ttl=2.0)
        init_database(url)
        worker = Worker(config, concurrency=1)
        # Mid-fetch: some pages staged, most not.
        kill_worker_mid_run(config, worker, lambda: staged_rows(url) >= 40, timeout=60)
        first = runs(url)
        assert [status for _, status, _ in first] == ["running"]  # nothing of it was committed
        time.sleep(2.5)  # the lease (2 s) runs out: nobody works on the killed run any more
        second = Worker(config, concurrency=2)
        try:
            done = run_cli(config, "sync", "--distributed", "--json")
            # Late tasks of the dead run (still queued) must find their lease gone, do nothing.
            deadline = time.monotonic() + 20
            while staged_rows(url) and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            second.stop()
    assert done.returncode == 0, done.stdout + done.stderr + second.log[-3000:]
    statuses = runs(url)
    assert statuses[0][1] == "failed", statuses
    assert "interrupted" in (statuses[0][2] or "") or "lost" in (statuses[0][2] or ""), statuses
    assert statuses[-1][1] == "succeeded"
    assert snapshot(url) == expected
    assert staged_rows(url) == 0


@pytest.mark.slow
def test_worker_killed_during_the_apply_leaves_nothing_and_the_next_run_completes(tmp_path: Path) -> None:
    """SIGKILL of the worker while it runs the apply task (plan, guard, apply, alignment: one
    transaction): nothing of the run is committed, its lease runs out, the next run completes
    and the data equals an uninterrupted single-process run."""
    broker = _broker("redis")
    enterprise = generate(staff=6000, seed=11)
    with FakeSource(enterprise, page_size=500) as source:
        expected = single_process_snapshot(tmp_path, source.url)
        url = f"sqlite:///{tmp_path / 'distributed.db'}"
        config = site_config(tmp_path / "dist", source.url, url, broker, page_size=500, partitions=2, ttl=2.0)
        init_database(url)
        worker = Worker(config, concurrency=1)
        # 0.3 s after the apply task arrived: inside its transaction (seconds for 6 000 staff).
        kill_worker_mid_run(config, worker, lambda: any("dualline.apply[" in line and "received" in line
                                                        for line in worker.output), timeout=90, settle=0.3)
        assert [status for _, status, _ in runs(url)] == ["running"], worker.log[-3000:]
        assert snapshot(url)["persons"] == []  # nothing of the killed apply was committed
        time.sleep(2.5)  # the lease runs out
        second = Worker(config, concurrency=2)
        try:
            done = run_cli(config, "sync", "--distributed", "--json")
        finally:
            second.stop()
    assert done.returncode == 0, done.stdout + done.stderr + second.log[-3000:]
    statuses = runs(url)
    assert statuses[0][1] == "failed" and statuses[-1][1] == "succeeded", statuses
    assert snapshot(url) == expected
    assert staged_rows(url) == 0


def test_beat_schedule_comes_from_the_sources_crons(tmp_path: Path) -> None:
    import datetime as dt

    from sync.config import parse_config
    from sync.tasks import CronSchedule, app, configure

    config = parse_config({
        "workers": {"broker": "redis://127.0.0.1:6379/13", "queue": "q-test"},
        "sources": {
            "hr": {"connector": "file", "path": "staff.csv", "provides": ["staff"], "schedule": "0 2 * * *"},
            "roster": {"connector": "file", "path": "roster.csv", "provides": ["party_members"]},
            "fast": {"connector": "file", "path": "x.csv", "provides": ["org_units"], "schedule": "*/10 * * * * *"},
        },
    }, path=tmp_path / "dualline.yaml")
    configure(config)
    schedule = app.conf.beat_schedule
    assert set(schedule) == {"sync:hr", "sync:fast"}
    assert schedule["sync:hr"]["task"] == "dualline.start"
    assert schedule["sync:hr"]["kwargs"] == {"sources": ["hr"], "actor": "beat"}
    assert schedule["sync:hr"]["options"] == {"queue": "q-test"}
    fast = schedule["sync:fast"]["schedule"]
    assert isinstance(fast, CronSchedule)
    now = fast.now().astimezone(dt.timezone.utc)
    due, _ = fast.is_due(now - dt.timedelta(seconds=25))  # a fire time passed since
    assert due
    due, wait = fast.is_due(now)
    assert not due and 0 < wait <= 10
