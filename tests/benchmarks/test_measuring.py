"""How the benchmarks measure a command: wall time, peak RSS, and CPU with its children's."""
from __future__ import annotations

import os
import sys

from benchmarks.scale_bench import least_seconds, least_seconds_with_tail, verdicts
from benchmarks.sync_bench import _ends, run_child

# Spends argv[1] CPU-seconds in a forked child it waits for, then prints a JSON line.
_BUSY_CHILD = """
import json, os, sys, time
def spin(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
pid = os.fork()
if pid == 0:
    spin(float(sys.argv[1]))
    os._exit(0)
os.waitpid(pid, 0)
print(json.dumps({"status": "ok"}))
"""


def test_a_commands_cpu_includes_the_children_it_waited_for() -> None:
    measured = run_child([sys.executable, "-c", _BUSY_CHILD, "0.4"], dict(os.environ))
    assert measured["exit"] == 0
    assert measured["result"] == {"status": "ok"}
    assert measured["cpu_seconds"] >= 0.4  # the forked child's spin, counted for the command
    assert measured["seconds"] >= 0.4
    assert 1 < measured["rss_mb"] < 200  # the command's own peak, not the test process's
    assert measured["server_cpu_seconds"] < measured["cpu_seconds"]  # this process only waited


def test_the_least_wall_time_spreads_all_the_work_over_every_core() -> None:
    assert least_seconds({"cpu_seconds": 90.0, "fake_cpu_seconds": 2.0}, 2) == 46.0
    assert least_seconds({"cpu_seconds": 90.0, "fake_cpu_seconds": 2.0}, 4) == 23.0


def test_the_least_wall_time_with_the_tail_spreads_only_the_pulls_work() -> None:
    phases = {"pull": 40.0, "apply": 5.0, "align": 3.0, "rules": 2.0, "commit": 5.0}
    entry = {"cpu_seconds": 90.0, "fake_cpu_seconds": 2.0, "phases": phases}
    assert least_seconds_with_tail(entry, 2) == 15.0 + 77.0 / 2
    assert least_seconds_with_tail(entry, 2) > least_seconds(entry, 2)
    # A tail that took longer than all the CPU (waiting on the disk) leaves nothing to spread.
    assert least_seconds_with_tail({"cpu_seconds": 10.0, "fake_cpu_seconds": 0.0, "phases": phases}, 2) == 15.0
    assert least_seconds_with_tail({"cpu_seconds": 10.0, "fake_cpu_seconds": 0.0, "phases": None}, 2) is None


def _report(dlt_status: str) -> dict:
    sync = {"status": "succeeded", "peak_rss_mb": 500, "phases": {"align": 4.0}}
    return {"floor": {"seconds": 20.0, "status": "succeeded"}, "dlt": {"seconds": 130.0, "status": dlt_status},
            "full": {**sync, "seconds": 59.0}, "noop": {**sync, "seconds": 20.0},
            "one_percent": {**sync, "seconds": 7.0}}


def test_a_yardstick_that_failed_meets_no_target() -> None:
    assert verdicts(_report("succeeded"))["full ≤ ½ dlt"] is True
    assert verdicts(_report("succeeded"))["all succeeded"] is True
    failed = verdicts(_report("failed"))  # dlt gave up part-way: its time is not a whole load's
    assert failed["full ≤ ½ dlt"] is False
    assert failed["all succeeded"] is False
    assert failed["full ≤ 3 × floor"] is True


def test_a_long_error_output_keeps_its_head_and_tail() -> None:
    text = "sqlite3.OperationalError: database is locked\n" + "x" * 5000 + "\nPending packages are left"
    kept = _ends(text)
    assert kept.startswith("sqlite3.OperationalError: database is locked")
    assert kept.endswith("Pending packages are left")
    assert len(kept) < 3100
    assert _ends("short") == "short"
