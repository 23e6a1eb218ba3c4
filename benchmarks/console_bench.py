"""Console page benchmark: server time of each main console page at 100 000 persons.

    python -m benchmarks.console_bench [--staff 100000] [--min-open 20000] [--requests 15] [--queries] [--rebuild]

Builds (once; reused from benchmarks/out/console_bench/ afterwards) a synthetic enterprise of
`--staff` staff, synced from its demo source files into SQLite. The generator plants ~2 % of
mismatches; to reach the issue's 20 000 open mismatches the benchmark moves enough party members
to another department before the sync without the party transfer (what a year of reorganisations
without party paperwork leaves behind): each opens a real `branch_mismatch` through the real rules.
A second, emptied-staff sync is held by the guard so `/runs/<id>` has a held run to show.

Then it times each console page with the Flask test client (no network: the time is the server's,
from the request entering the app to the full response body), logged in as the admin and as an
officer of the busiest subsidiary's party committee, and prints median and p95 per page.
Exports stream whole lists and are reported separately (they are downloads, not pages).
`--queries` also prints, for each page at or over half the target, its three slowest SQL statements.
"""
from __future__ import annotations

import argparse
import random
import re
import shutil
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import event, func, select

from benchmarks.answer_key import IN_SERVICE, expected_branches
from benchmarks.enterprise import Enterprise, generate
from benchmarks.writers import write_config, write_demo_sources
from records.db import session_factory, upgrade
from records.models import Mismatch, PartyOrg, Person, SyncRun, User
from records.queries import mismatch_state_filter
from sync.config import load_config
from sync.engine import SyncEngine
from sync.runtime import Runtime

OUT = Path(__file__).resolve().parent / "out" / "console_bench"
SECRET = "console-benchmark-secret-0123456789"
PASSWORD = "bench-pass-123"
TARGET_MS = 300.0


def move_members(enterprise: Enterprise, count: int, seed: int = 5) -> int:
    """Move `count` in-service party members to a department another branch covers, leaving the
    roster row where it was (the party transfer not done): each becomes a branch_mismatch."""
    rng = random.Random(seed)
    expected = expected_branches(enterprise.org_units, enterprise.party_orgs)
    units = {u["code"]: u for u in enterprise.org_units}
    covered = [u["code"] for u in enterprise.org_units
               if u["kind"] != "company" and u["status"] == "active" and expected[u["code"]]]
    by_parent: dict[str | None, list[str]] = {}
    for code in covered:
        by_parent.setdefault(units[code].get("parent_code"), []).append(code)
    managers = {u.get("manager_employee_no") for u in enterprise.org_units}
    rows = {r["employee_no"]: r for r in enterprise.party_members
            if r.get("employee_no") and r["status"] == "active"}
    movable = [s for s in enterprise.staff
               if s["employment_status"] in IN_SERVICE and s["employee_no"] in rows
               and s["employee_no"] not in enterprise.protected and s["employee_no"] not in managers
               and rows[s["employee_no"]].get("party_org_code") == expected.get(s["org_unit_code"])]
    moved = 0
    for s in rng.sample(movable, min(count, len(movable))):
        registered = rows[s["employee_no"]]["party_org_code"]
        # a sibling department first (a move within the same company), else anywhere covered
        siblings = by_parent.get(units[s["org_unit_code"]].get("parent_code"), [])
        for targets in (siblings, covered):
            options = [t for t in rng.sample(targets, min(len(targets), 20)) if expected[t] != registered]
            if options:
                s["org_unit_code"] = options[0]
                moved += 1
                break
    enterprise.version += 1
    return moved


def build(folder: Path, staff: int, min_open: int) -> Runtime:
    """Generate, plant extra branch mismatches, write the sources, sync, and hold one run."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    enterprise = generate(staff=staff, seed=1)
    planted = len(enterprise.expected_mismatches())
    moved = move_members(enterprise, max(0, min_open - planted) + min_open // 10)
    write_demo_sources(enterprise, folder / "src")
    runtime = open_runtime(folder)
    upgrade(runtime.engine)
    result = SyncEngine(runtime).run(None)
    print(f"built: {staff} staff, {moved} members moved, sync {result.status} "
          f"in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    # A held run: the staff export arrives empty; the guard holds it for a person to decide.
    full_staff = list(enterprise.staff)
    enterprise.staff[:] = []
    write_demo_sources(enterprise, folder / "src")
    held = SyncEngine(runtime).run(None)
    enterprise.staff[:] = full_staff
    write_demo_sources(enterprise, folder / "src")
    print(f"second run: {held.status}", file=sys.stderr)
    return runtime


def open_runtime(folder: Path) -> Runtime:
    config = load_config(write_config(folder / "src"))
    config.database = f"sqlite:///{folder / 'console.db'}"
    config.secret_key = SECRET
    return Runtime(config)


def busiest_committee(s) -> str:
    """The party org just below the root whose subtree holds the most open mismatches."""
    parents = dict(s.execute(select(PartyOrg.code, PartyOrg.parent_code)).all())
    top: dict[str, str] = {}

    def top_of(code: str) -> str:
        chain = [code]
        while parents.get(chain[-1]) and parents.get(parents[chain[-1]]):
            chain.append(parents[chain[-1]])
        return chain[-1]

    counts: Counter[str] = Counter()
    for code, n in s.execute(select(Mismatch.party_org_code, func.count()).where(mismatch_state_filter("open"))
                             .where(Mismatch.party_org_code.is_not(None)).group_by(Mismatch.party_org_code)):
        top.setdefault(code, top_of(code))
        counts[top[code]] += n
    return counts.most_common(1)[0][0]


def ensure_users(runtime: Runtime) -> str:
    from web.auth import hash_password

    with session_factory(runtime.engine)() as s, s.begin():
        org = busiest_committee(s)
        for name, role, code in (("bench-admin", "admin", None), ("bench-officer", "officer", org)):
            user = s.scalar(select(User).where(User.username == name))
            if user is None:
                s.add(User(username=name, password_hash=hash_password(PASSWORD), role=role, party_org_code=code))
            else:
                user.party_org_code = code
    return org


def login(client: FlaskClient, username: str) -> None:
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token})
    if response.status_code != 302:
        raise SystemExit(f"log-in as {username} failed: {response.status_code}")


def timed(client: FlaskClient, url: str, n: int) -> dict[str, Any]:
    times, status, size = [], None, 0
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(url)
        body = response.get_data()  # a streamed export counts until its last byte
        times.append((time.perf_counter() - started) * 1000)
        status, size = response.status_code, len(body)
    times.sort()
    p95 = times[min(len(times) - 1, max(0, round(0.95 * len(times)) - 1))]
    return {"url": url, "status": status, "bytes": size, "median": statistics.median(times), "p95": p95}


class QueryLog:
    """Times each SQL statement the engine runs while active (to say which query makes a page slow)."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.entries: list[tuple[float, str]] = []
        self.active = False
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn, cursor, statement, parameters, context, executemany) -> None:
        conn.info.setdefault("query_started", []).append(time.perf_counter())

    def _after(self, conn, cursor, statement, parameters, context, executemany) -> None:
        started = conn.info["query_started"].pop()
        if self.active:
            self.entries.append(((time.perf_counter() - started) * 1000, " ".join(statement.split())))

    def slowest(self, client: FlaskClient, url: str, top: int = 3) -> list[tuple[float, str]]:
        self.entries, self.active = [], True
        try:
            client.get(url).get_data()
        finally:
            self.active = False
        return sorted(self.entries, reverse=True)[:top]


def sample_urls(runtime: Runtime, officer_org: str) -> dict[str, dict[str, str]]:
    """Per role, page label → URL, with ids picked from the data the role may see."""
    from records.queries import subtree_codes

    with session_factory(runtime.engine)() as s:
        subtree = subtree_codes(s, officer_org)
        urls: dict[str, dict[str, str]] = {}
        for role, codes in (("admin", None), ("officer", subtree)):
            open_q = select(Mismatch).where(mismatch_state_filter("open"))
            if codes is not None:
                open_q = open_q.where(Mismatch.party_org_code.in_(codes))
            mismatch = s.scalars(open_q.where(Mismatch.rule == "branch_mismatch").order_by(Mismatch.id.desc()).limit(1)).one()
            person = s.get(Person, mismatch.subject_id)
            run_ids = s.scalars(select(SyncRun.id).order_by(SyncRun.id)).all()
            branch = mismatch.party_org_code
            urls[role] = {
                "/ (dashboard)": "/",
                "/mismatches": "/mismatches",
                "/mismatches filtered": f"/mismatches?rule=branch_mismatch&state=open&party_org={branch}&page=3",
                "/mismatches/<id>": f"/mismatches/{mismatch.id}",
                "/coverage": "/coverage",
                "/runs": "/runs",
                "/runs/<id> (full sync)": f"/runs/{run_ids[0]}",
                "/runs/<id> (held)": f"/runs/{run_ids[-1]}",
                "/people?q=name": f"/people?q={person.name[:2]}",
                "/people?q=employee no": f"/people?q={person.employee_no}",
                "/people/<id>": f"/people/{person.id}",
                "/orgs/<code>": f"/orgs/{branch}",
                "/orgs/<committee>": f"/orgs/{officer_org}",
                "/audit": "/audit",
                "export mismatches.xlsx": "/exports/mismatches.xlsx",
                "export mismatches.csv": "/exports/mismatches.csv",
                "export transfers.xlsx": "/exports/transfers.xlsx",
                "export transfers.csv": "/exports/transfers.csv",
            }
    return urls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--staff", type=int, default=100_000)
    parser.add_argument("--min-open", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=15, help="requests per page")
    parser.add_argument("--export-requests", type=int, default=2, help="requests per export (they take seconds)")
    parser.add_argument("--queries", action="store_true",
                        help="print the slowest SQL statements of each page at or over half the target")
    parser.add_argument("--rebuild", action="store_true", help="build the database again")
    parser.add_argument("--only", default=None, help="time only pages whose label contains this")
    args = parser.parse_args(argv)

    from web import create_app

    ready = (OUT / "console.db").exists() and not args.rebuild
    runtime = open_runtime(OUT) if ready else build(OUT, args.staff, args.min_open)
    upgrade(runtime.engine)  # a database built before a new migration gets it
    officer_org = ensure_users(runtime)
    with session_factory(runtime.engine)() as s:
        persons = s.scalar(select(func.count()).select_from(Person))
        open_count = s.scalar(select(func.count()).select_from(Mismatch).where(mismatch_state_filter("open")))
    print(f"database: {persons} persons, {open_count} open mismatches; officer of {officer_org}")

    app = create_app(test_config={"DUALLINE_CONFIG_OBJECT": runtime.config, "TESTING": True})
    app.extensions["dualline"].set_runtime(runtime)
    rows: list[tuple[str, str, dict[str, Any]]] = []
    queries = QueryLog(runtime.engine) if args.queries else None
    for role, pages in sample_urls(runtime, officer_org).items():
        client = app.test_client()
        login(client, f"bench-{role}")
        for label, url in pages.items():
            if args.only and args.only not in label:
                continue
            if label.startswith("export"):
                rows.append((role, label, timed(client, url, args.export_requests)))
                continue
            timed(client, url, 1)  # warm-up: template compilation, first-use caches
            rows.append((role, label, timed(client, url, args.requests)))
            if queries is not None and rows[-1][2]["median"] >= TARGET_MS / 2:
                for ms, sql in queries.slowest(client, url):
                    print(f"  {role} {label}: {ms:.0f} ms  {sql[:400]}", file=sys.stderr)

    print(f"\n| page | role | status | median ms | p95 ms | KB | < {TARGET_MS:.0f} ms |")
    print("|---|---|---|---|---|---|---|")
    slow: list[str] = []
    for role, label, r in rows:
        ok = r["status"] == 200 and r["p95"] < TARGET_MS
        refused = r["status"] == 403 and role == "officer" and label == "/audit"  # by design: admins, auditors
        mark = "yes" if ok else "export" if label.startswith("export") else "403 (by design)" if refused else "NO"
        if not ok and not label.startswith("export") and not refused:
            slow.append(f"{label} ({role})")
        print(f"| {label} | {role} | {r['status']} | {r['median']:.0f} | {r['p95']:.0f} | {r['bytes'] / 1024:.0f} | {mark} |")
    if slow:
        print("\nover target or not 200: " + ", ".join(slow))
    return 0


if __name__ == "__main__":
    sys.exit(main())
