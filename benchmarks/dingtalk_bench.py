"""DingTalk-shaped source benchmark: a full and a no-op `dualline sync` against a local fake
DingTalk, next to a bare fetch of the same API calls.

    python -m benchmarks.dingtalk_bench --staff 100000 [--seed 1] [--json]

The budget (issue): a 100 000-staff DingTalk-shaped source syncs within the core throughput
budget — full sync ≤ 10 s on SQLite — *plus the time the fake takes to serve it*. DingTalk
hands out 100 users per call and one department level per call, so ~16 000 round trips are
unavoidable whatever the engine does; the bare fetch measures them: a plain `requests.Session`
that makes exactly the calls the connector must (token, the root's department/get, listsub
breadth-first, user/list cursor pages per department) and only decodes each answer enough to
find the next call. The verdict is `full sync − bare fetch ≤ 10 s`.

The sync and the bare fetch both run in child processes (`sync_bench.run_child`: wall time by
`wait4`), so neither shares a GIL with the fake's server threads in this process. The bare
fetch's time is its loop alone (no interpreter start-up), the sync's the whole command: the
comparison errs against the sync.

Peak RSS is each command's own (see `benchmarks.sync_bench.LAUNCHER`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import yaml

from benchmarks.dingtalk_fake import APP_KEY, APP_SECRET, ROOT_DEPT_ID, DingTalkFake
from benchmarks.enterprise import generate
from benchmarks.sync_bench import run_child

BUDGET_SECONDS = 10.0
PAGE_SIZE = 100  # DingTalk's maximum users per user/list call


def write_config(folder: Path, url: str, database: str, page_size: int) -> Path:
    config = {
        "database": database,
        "secret_key": "benchmark-secret-key-0123456789",
        "sources": {
            "dingtalk": {"connector": "dingtalk", "app_key": APP_KEY,
                         "app_secret": "${BENCH_DINGTALK_SECRET}", "base_url": url,
                         "page_size": page_size, "provides": ["org_units", "staff"]},
        },
        "guard": {"max_deactivate_ratio": 0.2, "max_deactivate": 100000},
    }
    path = folder / "dualline.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def bare_fetch(url: str, page_size: int) -> dict[str, Any]:
    """Walk the fake as the connector must, doing nothing else; calls made and seconds taken."""
    import requests

    started = time.perf_counter()
    http = requests.Session()
    calls = 0

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        answer = http.post(url + path, params={"access_token": token}, json=body).json()
        if answer["errcode"] != 0:
            raise RuntimeError(f"{path} {body}: {answer}")
        return answer

    calls += 1
    token = http.get(url + "/gettoken", params={"appkey": APP_KEY, "appsecret": APP_SECRET}).json()["access_token"]
    post("/topapi/v2/department/get", {"dept_id": ROOT_DEPT_ID})
    departments = [ROOT_DEPT_ID]
    queue = deque([ROOT_DEPT_ID])
    while queue:
        children = post("/topapi/v2/department/listsub", {"dept_id": queue.popleft()})["result"]
        for child in children:
            departments.append(child["dept_id"])
            queue.append(child["dept_id"])
    users: set[str] = set()
    for dept_id in departments:
        cursor: int | None = 0
        while cursor is not None:
            result = post("/topapi/v2/user/list", {"dept_id": dept_id, "cursor": cursor, "size": page_size})["result"]
            users.update(u["userid"] for u in result["list"])
            cursor = result.get("next_cursor") if result["has_more"] else None
    return {"seconds": time.perf_counter() - started, "calls": calls, "departments": len(departments),
            "users": len(users)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--staff", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    # Internal: the bare fetch, run in a child process by the benchmark itself.
    parser.add_argument("--bare-fetch", metavar="URL", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.bare_fetch:
        print(json.dumps(bare_fetch(opts.bare_fetch, PAGE_SIZE)))
        return 0

    t0 = time.perf_counter()
    enterprise = generate(staff=opts.staff, seed=opts.seed)
    gen_seconds = time.perf_counter() - t0
    report: dict[str, Any] = {"staff": opts.staff, "generate_seconds": round(gen_seconds, 2)}
    phases: dict[str, dict[str, Any]] = {}
    requests_made: dict[str, int] = {}
    serve_seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="dualline-dingtalk-bench-") as tmp, DingTalkFake(enterprise) as fake:
        folder = Path(tmp)
        config = write_config(folder, fake.url, f"sqlite:///{folder / 'bench.db'}", PAGE_SIZE)
        env = dict(os.environ, DUALLINE_CONFIG=str(config), BENCH_DINGTALK_SECRET=APP_SECRET)
        env.pop("DUALLINE_DATABASE_URL", None)
        report["source"] = {"departments": len(fake.data.departments), "users": fake.data.user_count,
                            "user_listings": fake.data.listings}
        dualline = [sys.executable, "-c", "from web.cli import main; main()"]
        init = run_child(dualline + ["init"], env)
        if init["exit"]:
            print(init["stderr"], file=sys.stderr)
            return 1
        steps = [("bare_fetch", [sys.executable, "-m", "benchmarks.dingtalk_bench", "--bare-fetch", fake.url]),
                 ("full", dualline + ["sync", "--json"]),
                 ("noop", dualline + ["sync", "--json"])]
        for name, command in steps:
            fake.reset_counters()
            phases[name] = run_child(command, env)
            requests_made[name] = fake.total_requests
            serve_seconds[name] = fake.serve_seconds

    for name, phase in phases.items():
        entry: dict[str, Any] = {"seconds": round(phase["seconds"], 2), "peak_rss_mb": round(phase["rss_mb"]),
                                 "http_requests": requests_made[name],
                                 "fake_serve_seconds": round(serve_seconds[name], 2)}
        if phase["exit"]:
            entry["stderr"] = phase["stderr"]
        if name == "bare_fetch":
            # The loop's own time, without interpreter start-up (see module docstring).
            entry["loop_seconds"] = round(phase["result"].get("seconds", float("nan")), 2)
            entry["users"] = phase["result"].get("users")
        else:
            entry["status"] = phase["result"].get("status", "?")
            entry["counts"] = phase["result"].get("counts")
        report[name] = entry
    bare = phases["bare_fetch"]["result"].get("seconds", float("nan"))
    full = phases["full"]["seconds"]
    report["records"] = {"org_units": len(enterprise.org_units), "staff": len(enterprise.staff)}
    report["full_minus_bare_fetch"] = round(full - bare, 2)
    report["within_budget"] = full - bare <= BUDGET_SECONDS and report["full"].get("status") == "succeeded"

    if opts.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        src = report["source"]
        print(f"enterprise: {opts.staff:,} staff; DingTalk source: {src['departments']:,} departments, "
              f"{src['users']:,} users ({src['user_listings']:,} listings); generated in {gen_seconds:.1f} s")
        print(f"records: {report['records']['org_units']:,} org units + {report['records']['staff']:,} staff")
        b = report["bare_fetch"]
        print(f"bare fetch   {b['loop_seconds']:>7.2f} s   {b['http_requests']:>6,} HTTP requests   "
              f"fake handler {b['fake_serve_seconds']:.2f} s   peak RSS {b['peak_rss_mb']:>4} MB")
        for name in ("full", "noop"):
            r = report[name]
            print(f"{name + ' sync':<12} {r['seconds']:>7.2f} s   {r['http_requests']:>6,} HTTP requests   "
                  f"fake handler {r['fake_serve_seconds']:.2f} s   peak RSS {r['peak_rss_mb']:>4} MB   {r['status']}")
        verdict = "within" if report["within_budget"] else "OVER"
        print(f"full − bare fetch = {report['full_minus_bare_fetch']:.2f} s "
              f"({verdict} the {BUDGET_SECONDS:.0f} s budget)")
        for name in ("full", "noop"):
            if "stderr" in report[name]:
                print(f"{name} stderr:\n{report[name]['stderr']}", file=sys.stderr)
    return 0 if report["within_budget"] else 2


if __name__ == "__main__":
    raise SystemExit(main())
