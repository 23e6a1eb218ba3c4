"""Sync throughput benchmark: full sync, no-op re-sync and 1 % change re-sync over local HTTP.

    python -m benchmarks.sync_bench --staff 100000 [--database URL] [--floor]

A synthetic enterprise is served page by page by benchmarks.fake_source (canonical field names,
page-number pagination) and synced with the real `dualline sync` in a child process, so that the
peak RSS reported is the sync's own (not the generator's or the fake server's). `--floor` also
times the bare floor: fetch the same pages and insert the rows with one executemany per page.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.enterprise import generate
from benchmarks.fake_source import FakeSource

KINDS = ("org_units", "party_orgs", "staff", "party_members", "performance")
PACKAGES = ("connectors", "mappings", "records", "sync", "web")  # dualline's own (pyproject.toml)


def compile_project() -> None:
    """Write the bytecode of dualline's own packages before measuring, as installing a wheel
    does. Run from a checkout where PYTHONDONTWRITEBYTECODE is set (as on this machine), every
    `dualline` command compiled the ~100 of its modules it imports from source at start-up (0.26 s
    under cProfile); the yardsticks' packages were compiled when pip installed them, and so is an
    installed dualline. compileall writes the files whatever that variable says."""
    import compileall

    root = Path(__file__).resolve().parent.parent
    for package in PACKAGES:
        compileall.compile_dir(str(root / package), quiet=1)


def write_config(folder: Path, url: str, database: str, page_size: int, incremental: bool = False) -> Path:
    """The benchmark's dualline.yaml; `incremental`: the endpoints pull only what changed since
    the last run (`modified_since`, cursor from `modified`: FakeSource(incremental=True))."""
    pagination = {"type": "page_number", "page_param": "page", "size_param": "page_size",
                  "page_size": page_size, "start": 1, "total_pages_path": "total_pages",
                  "total_records_path": "total"}
    delta = {"incremental_param": "modified_since", "cursor_field": "modified"} if incremental else {}
    endpoints = lambda kinds: {k: {"path": f"/{k}", "records_path": "data", **delta} for k in kinds}  # noqa: E731
    config = {
        "database": database,
        "secret_key": "benchmark-secret-key-0123456789",
        "sources": {
            "hr": {"connector": "rest", "url": url, "provides": ["org_units", "staff"],
                   "mapping": "canonical", "endpoints": endpoints(["org_units", "staff"]),
                   "pagination": pagination},
            "party": {"connector": "rest", "url": url, "provides": ["party_orgs", "party_members"],
                      "mapping": "canonical", "endpoints": endpoints(["party_orgs", "party_members"]),
                      "pagination": pagination},
            "appraisal": {"connector": "rest", "url": url, "provides": ["performance"],
                          "mapping": "canonical", "endpoints": endpoints(["performance"]),
                          "pagination": pagination},
        },
        "guard": {"max_deactivate_ratio": 0.2, "max_deactivate": 100000},
    }
    path = folder / "dualline.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


# Runs argv[2:] and writes its peak RSS (KiB) and CPU seconds (user, system) to argv[1]. Linux
# carries the *forking* process's RSS high-water mark into a child's ru_maxrss across exec, so a
# child forked straight from this benchmark (which holds the enterprise and the fake's pages)
# could never report less than our own peak. The launcher is tiny, so what it reports is the
# command's own peak. The CPU times are the command's and those of the processes it forked and
# waited for (a sync's read-ahead children).
LAUNCHER = ("import os, subprocess, sys\n"
            "proc = subprocess.Popen(sys.argv[2:])\n"
            "_, status, usage = os.wait4(proc.pid, 0)\n"
            "open(sys.argv[1], 'w').write(f'{usage.ru_maxrss} {usage.ru_utime} {usage.ru_stime}')\n"
            "sys.exit(os.waitstatus_to_exitcode(status))\n")


def run_child(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run a command; return its wall time, its own peak RSS (MB), its CPU seconds (user and
    system, with its children's), the CPU seconds this process spent meanwhile (the fake
    source's serving, where it runs here) and its parsed JSON output.

    The page cache's dirty pages are written out first (`os.sync`), so a command does not pay
    for the writes an earlier one left behind (dlt's load files and database, a previous sync's
    gigabytes: the kernel flushes them while the next command runs and competes for the disk)."""
    os.sync()
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryFile() as out_file, \
            tempfile.TemporaryFile() as err_file:
        rss_file = Path(tmp) / "rss"
        started, served = time.perf_counter(), time.process_time()
        proc = subprocess.run([sys.executable, "-c", LAUNCHER, str(rss_file), *args],
                              stdout=out_file, stderr=err_file, env=env, check=False)
        seconds, served = time.perf_counter() - started, time.process_time() - served
        rss_kib, user, system = (rss_file.read_text().split() if rss_file.exists() else ("nan",) * 3)
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read().decode(), err_file.read().decode()
    try:
        payload = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    except json.JSONDecodeError:
        payload = {"raw": out[-2000:]}
    return {"seconds": seconds, "rss_mb": float(rss_kib) / 1024, "cpu_seconds": float(user) + float(system),
            "server_cpu_seconds": served, "exit": proc.returncode, "result": payload, "stderr": _ends(err)}


def _ends(text: str, keep: int = 1500) -> str:
    """The head and tail of a long error output: the head names the error, the tail says
    where it ended up (a driver's error quotes its statement's parameters in between)."""
    if len(text) <= 2 * keep:
        return text
    return f"{text[:keep]}\n[… {len(text) - 2 * keep} characters left out …]\n{text[-keep:]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--staff", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--database", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--floor", action="store_true", help="also time fetch + executemany alone")
    parser.add_argument("--with-performance", action="store_true",
                        help="also sync the appraisal records (~1.6 per staff member)")
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args(argv)

    compile_project()
    t0 = time.perf_counter()
    enterprise = generate(staff=opts.staff, seed=opts.seed)
    if not opts.with_performance:
        # The yardstick enterprise: staff, departments, branches and members.
        enterprise.performance.clear()
    gen_seconds = time.perf_counter() - t0
    sizes = {k: len(enterprise.records(k)) for k in KINDS}
    report: dict[str, Any] = {"staff": opts.staff, "records": sizes, "generate_seconds": round(gen_seconds, 2)}
    with tempfile.TemporaryDirectory(prefix="dualline-bench-") as tmp, FakeSource(enterprise, page_size=opts.page_size) as source:
        folder = Path(tmp)
        database = opts.database or f"sqlite:///{folder / 'bench.db'}"
        config = write_config(folder, source.url, database, opts.page_size)
        env = dict(os.environ, DUALLINE_CONFIG=str(config))
        env.pop("DUALLINE_DATABASE_URL", None)
        dualline = [sys.executable, "-c", "from web.cli import main; main()"]
        if opts.database:
            _reset_database(opts.database)
        init = run_child(dualline + ["init"], env)
        if init["exit"]:
            print(init["stderr"], file=sys.stderr)
            return 1
        phases = {}
        phases["full"] = run_child(dualline + ["sync", "--json"], env)
        phases["noop"] = run_child(dualline + ["sync", "--json"], env)
        changed = enterprise.mutate(fraction=0.01, seed=opts.seed + 1)
        source.pages(opts.page_size)  # the fake re-serializes now, not inside the timed run
        phases["one_percent"] = run_child(dualline + ["sync", "--json"], env)
        report["mutated"] = changed
        if opts.floor:
            phases["floor"] = run_child(
                [sys.executable, "-m", "benchmarks.floor", source.url, str(opts.page_size),
                 f"sqlite:///{folder / 'floor.db'}"], env)
    for name, phase in phases.items():
        status = phase["result"].get("status", "?") if name != "floor" else "ok" if phase["exit"] == 0 else "failed"
        report[name] = {"seconds": round(phase["seconds"], 2), "peak_rss_mb": round(phase["rss_mb"]),
                        "status": status}
        if phase["exit"] not in (0,):
            report[name]["stderr"] = phase["stderr"]
        if name != "floor":
            report[name]["counts"] = phase["result"].get("counts")
            report[name]["mismatches"] = phase["result"].get("mismatches")
    if opts.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print(f"enterprise: {opts.staff:,} staff; records per kind: {sizes}")
        for name in phases:
            r = report[name]
            print(f"{name:<12} {r['seconds']:>7.2f} s   peak RSS {r['peak_rss_mb']:>5} MB   {r['status']}")
    return 0


def _reset_database(url: str) -> None:
    """Empty the server database at `url` (a PostgreSQL one is created first when missing)."""
    from sqlalchemy import MetaData, text
    from sqlalchemy.engine import make_url

    from records.db import make_engine

    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        admin = make_engine(parsed.set(database="postgres").render_as_string(hide_password=False),
                            isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": parsed.database}).first():
                conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
        admin.dispose()
    engine = make_engine(url)
    meta = MetaData()
    meta.reflect(engine)
    meta.drop_all(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    engine.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
