"""How the benchmarks measure a command: wall time, peak RSS, and CPU with its children's."""
from __future__ import annotations

import os
import sys

from benchmarks.scale_bench import least_seconds
from benchmarks.sync_bench import run_child

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
