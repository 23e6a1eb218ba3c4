"""Distributed sync benchmark: one Celery worker against two, on a source with per-page latency.

    python -m benchmarks.worker_bench --staff 20000 [--latency 0.05] [--broker redis://127.0.0.1:6379/14]

The synthetic enterprise is served by benchmarks.fake_source with a fixed delay per page (a remote
HR system answers in tens of milliseconds, not microseconds). The same full sync runs, each into
a fresh SQLite database:

* `dualline sync` in one process (the reference: fetching is sequential there);
* `dualline sync --distributed` with ONE `dualline worker --concurrency 1`;
* `dualline sync --distributed` with TWO such workers (two processes, as on two hosts).

Fetching is split into `--partitions` page strides per paginated pull; the apply is one task in
both cases, so what two workers win is the fetch. Times are wall clock of the `sync` command
(process start-up included) and the run's own span from its row; the three must agree on counts.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.enterprise import generate
from benchmarks.fake_source import FakeSource
from benchmarks.sync_bench import compile_project, write_config

DUALLINE = [sys.executable, "-c", "import records.models; from web.cli import main; main()"]


class SlowFakeSource(FakeSource):
    """FakeSource with a fixed latency per page request (served concurrently, like a real server)."""

    def __init__(self, *args: Any, latency: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.latency = latency

    def respond(self, kind: str, page: int, page_size: int, since: str | None = None) -> tuple[int, str, bytes]:
        if self.latency:
            time.sleep(self.latency)
        return super().respond(kind, page, page_size, since)


def start_worker(env: dict[str, str], concurrency: int = 1) -> tuple[subprocess.Popen[str], list[str]]:
    """A `dualline worker` in its own process group; returns once it says it is ready."""
    lines: list[str] = []
    proc = subprocess.Popen(DUALLINE + ["worker", "--concurrency", str(concurrency), "--loglevel", "INFO"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 60
    while not any(" ready." in line for line in lines):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_worker(proc)
            raise RuntimeError("worker did not start:\n" + "".join(lines[-30:]))
        time.sleep(0.1)
    return proc, lines


def stop_worker(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def timed_sync(env: dict[str, str], distributed: bool) -> dict[str, Any]:
    args = DUALLINE + ["sync", "--json"] + (["--distributed"] if distributed else [])
    started = time.perf_counter()
    proc = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        result = {"status": "?", "stdout": proc.stdout[-1000:], "stderr": proc.stderr[-1000:]}
    return {"seconds": seconds, "exit": proc.returncode, "result": result}


def run_span(database: str) -> float:
    """started_at → finished_at of the last run, from its row."""
    from sqlalchemy import select

    from records.db import make_engine
    from records.models import SyncRun

    engine = make_engine(database)
    with engine.connect() as conn:
        started, finished = conn.execute(select(SyncRun.started_at, SyncRun.finished_at)
                                         .order_by(SyncRun.id.desc()).limit(1)).one()
    engine.dispose()
    return (finished - started).total_seconds()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--staff", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--page-size", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per page request")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args(argv)

    from records.db import make_engine, upgrade

    compile_project()

    enterprise = generate(staff=opts.staff, seed=opts.seed)
    enterprise.performance.clear()
    report: dict[str, Any] = {"staff": opts.staff, "latency_s": opts.latency, "page_size": opts.page_size,
                              "partitions": opts.partitions, "broker": opts.broker.split("@")[-1]}
    with tempfile.TemporaryDirectory(prefix="dualline-workers-") as tmp, \
            SlowFakeSource(enterprise, page_size=opts.page_size, latency=opts.latency) as source:
        for label, workers in (("one_process", 0), ("one_worker", 1), ("two_workers", 2)):
            folder = Path(tmp) / label
            folder.mkdir()
            database = f"sqlite:///{folder / 'bench.db'}"
            path = write_config(folder, source.url, database, opts.page_size)
            config = yaml.safe_load(path.read_text(encoding="utf-8"))
            config["workers"] = {"broker": opts.broker, "partitions": opts.partitions,
                                 "queue": f"dualline-bench-{os.getpid()}-{label}"}
            path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
            env = dict(os.environ, DUALLINE_CONFIG=str(path))
            env.pop("DUALLINE_DATABASE_URL", None)
            engine = make_engine(database)
            upgrade(engine)
            engine.dispose()
            procs = [start_worker(env)[0] for _ in range(workers)]
            try:
                outcome = timed_sync(env, distributed=workers > 0)
            finally:
                for proc in procs:
                    stop_worker(proc)
            report[label] = {"seconds": round(outcome["seconds"], 2), "run_seconds": round(run_span(database), 2),
                             "status": outcome["result"].get("status"), "counts": outcome["result"].get("counts")}
    counts = {report[k]["counts"].__repr__() for k in ("one_process", "one_worker", "two_workers")}
    report["same_counts"] = len(counts) == 1
    if opts.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print(f"{opts.staff:,} staff, {opts.latency * 1000:.0f} ms per page of {opts.page_size}, "
              f"{opts.partitions} partitions per pull, broker {report['broker']}")
        for label in ("one_process", "one_worker", "two_workers"):
            r = report[label]
            print(f"{label:<12} {r['seconds']:>7.2f} s  (run {r['run_seconds']:.2f} s)  {r['status']}")
        print(f"same counts: {report['same_counts']}")
    return 0 if report["same_counts"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
