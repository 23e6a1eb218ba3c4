"""API read latency at 1 000 000 persons: p50/p99 of the calls other systems make most.

    python -m benchmarks.api_bench                                  # SQLite (a fresh file)
    python -m benchmarks.api_bench --database postgresql://postgres@127.0.0.1:5432/dualline_apibench

The database is built set-based, straight in SQL (INSERT … SELECT over a generated sequence:
a recursive CTE on SQLite, generate_series on PostgreSQL) — not through the sync, which has its
own benchmark — in realistic proportions: 40 companies, 5 000 departments of 200 staff, 35 % party
members, 2 500 branches (each covering two departments) under one committee per company.
`--database` wipes that database's tables first: point it at a scratch database.

Requests run in-process (Flask test client, bearer token, rate limit off), so the numbers are the
application's and the database's, without a network or a WSGI server: the lookup by employee
number, a page of 100 filtered by org unit, by party org and by `is_member=true`, a keyset
follow-up page through `next_cursor`, and SCIM `filter=userName eq "…"`.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, bindparam, text
from sqlalchemy.engine import Engine

from records.db import make_engine, session_factory, upgrade
from records.models import Base

PERSONS = 1_000_000
COMPANIES = 40
DEPARTMENT_SIZE = 200
DEPARTMENTS_PER_BRANCH = 2
MEMBER_SHARE = 7  # persons with i % 20 < 7 are party members: 35 %
TARGET_P99_MS = 20.0


def _sequence(dialect: str, n: int, select: str) -> str:
    """`select` (over a column `i` = 1..n) as the source of an INSERT."""
    if dialect == "postgresql":
        return f"{select} FROM generate_series(1, {int(n)}) AS seq(i)"
    return f"{select} FROM seq"


def _with(dialect: str, n: int) -> str:
    if dialect == "postgresql":
        return ""
    return f"WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {int(n)}) "


def _pad(dialect: str, expr: str, width: int) -> str:
    if dialect == "postgresql":
        return f"lpad(({expr})::text, {width}, '0')"
    return f"printf('%0{width}d', {expr})"


def _div(dialect: str, a: str, b: int) -> str:
    return f"(({a}) / {b})" if dialect != "postgresql" else f"(({a}) / {b})::int"


def build(engine: Engine, persons: int = PERSONS) -> dict[str, int]:
    """Fill an empty, migrated database; returns the counts written."""
    d = engine.dialect.name
    departments = -(-persons // DEPARTMENT_SIZE)
    branches = -(-departments // DEPARTMENTS_PER_BRANCH)
    now = dt.datetime(2026, 1, 1)
    dept = _div(d, "i - 1", DEPARTMENT_SIZE)  # 0-based department of person i
    statements = [
        # companies C01..C40 and departments D00000.. (round-robin under the companies)
        (_with(d, COMPANIES) + "INSERT INTO org_units (code, name, parent_code, kind, status, active, provenance, "
         "created_at, updated_at) " + _sequence(d, COMPANIES, f"SELECT 'C' || {_pad(d, 'i', 2)}, '公司' || i, NULL, "
                                                              "'company', 'active', TRUE, '{}', :now, :now")),
        (_with(d, departments) + "INSERT INTO org_units (code, name, parent_code, kind, status, active, provenance, "
         "created_at, updated_at) " + _sequence(d, departments, f"SELECT 'D' || {_pad(d, 'i - 1', 5)}, '部门' || i, "
                                                                f"'C' || {_pad(d, f'(i - 1) % {COMPANIES} + 1', 2)}, "
                                                                "'department', 'active', TRUE, '{}', :now, :now")),
        (_with(d, COMPANIES) + "INSERT INTO party_orgs (code, name, kind, parent_code, retirees, active, provenance, "
         "created_at, updated_at) " + _sequence(d, COMPANIES, f"SELECT 'P' || {_pad(d, 'i', 2)}, '党委' || i, "
                                                              "'committee', NULL, FALSE, TRUE, '{}', :now, :now")),
        (_with(d, branches) + "INSERT INTO party_orgs (code, name, kind, parent_code, retirees, active, provenance, "
         "created_at, updated_at) " + _sequence(d, branches, f"SELECT 'B' || {_pad(d, 'i - 1', 5)}, '支部' || i, "
                                                             f"'branch', 'P' || {_pad(d, f'(i - 1) % {COMPANIES} + 1', 2)}, "
                                                             "FALSE, TRUE, '{}', :now, :now")),
        (_with(d, departments) + "INSERT INTO coverage (party_org_code, org_unit_code, include_descendants, origin, "
         "created_at, updated_at) " + _sequence(d, departments, f"SELECT 'B' || {_pad(d, _div(d, 'i - 1', DEPARTMENTS_PER_BRANCH), 5)}, "
                                                                f"'D' || {_pad(d, 'i - 1', 5)}, TRUE, 'source:bench', :now, :now")),
        (_with(d, persons) + "INSERT INTO persons (id, employee_no, name, gender, org_unit_code, position, "
         "employment_status, political_status, staff_active, provenance, created_at, updated_at) "
         + _sequence(d, persons, f"SELECT i, 'E' || {_pad(d, 'i', 7)}, '员工' || i, CASE WHEN i % 2 = 0 THEN '2' ELSE '1' END, "
                                 f"'D' || {_pad(d, dept, 5)}, '职员', 'active', "
                                 f"CASE WHEN i % 20 < {MEMBER_SHARE} THEN '01' ELSE '13' END, TRUE, "
                                 "'{\"name\": \"bench\"}', :now, :now")),
        (_with(d, persons) + "INSERT INTO memberships (person_id, party_org_code, category, joined_on, status, active, "
         "provenance, created_at, updated_at) "
         + _sequence(d, persons, f"SELECT i, 'B' || {_pad(d, _div(d, dept, DEPARTMENTS_PER_BRANCH), 5)}, 'full', NULL, "
                                 "'active', TRUE, '{}', :now, :now") + f" WHERE i % 20 < {MEMBER_SHARE}"),
    ]
    with engine.begin() as conn:
        for sql in statements:
            conn.execute(text(sql).bindparams(bindparam("now", now, type_=DateTime)))
        if d == "postgresql":
            # Explicit ids were written: move the sequence on, then refresh the planner's statistics.
            conn.execute(text("SELECT setval(pg_get_serial_sequence('persons', 'id'), (SELECT MAX(id) FROM persons))"))
    with engine.connect() as conn:
        # VACUUM on PostgreSQL too: the freshly loaded tables would otherwise get autovacuumed in
        # the middle of the measurements (and the visibility map lets index-only scans work).
        statement = "VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE"
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text(statement))
        counts = {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one()
                  for t in ("persons", "memberships", "org_units", "party_orgs", "coverage")}
    return counts


def wipe(engine: Engine) -> None:
    """Drop every table (and Alembic's version table) of a scratch database."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        else:
            Base.metadata.drop_all(conn)
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
            "max_ms": round(ordered[-1] * 1000, 2)}


def measure(database: str, requests: int, persons: int, seed: int = 7) -> dict[str, Any]:
    from sync.config import parse_config
    from web import create_app
    from web.api.resources import encode_cursor
    from web.tokens import create_token

    engine = make_engine(database)
    with session_factory(engine)() as s, s.begin():
        secret = create_token(s, f"bench-{time.time_ns()}", ["read"]).secret
    app = create_app(test_config={"DUALLINE_CONFIG_OBJECT": parse_config({"database": database, "secret_key": "api-bench-secret-key-0123456789abcdef"}, path=None),
                                  "API_RATE_LIMIT_PER_SECOND": 0})
    client = app.test_client()
    headers = {"Authorization": f"Bearer {secret}"}
    rng = random.Random(seed)
    departments = -(-persons // DEPARTMENT_SIZE)
    branches = -(-departments // DEPARTMENTS_PER_BRANCH)

    def person() -> int:
        return rng.randint(1, persons)

    def follow_up() -> str:
        # The second page of a department's staff: the cursor its first page handed out.
        unit = f"D{rng.randrange(departments):05d}"
        first = client.get(f"/api/v1/persons?org_unit={unit}&limit=100", headers=headers).get_json()
        return f"/api/v1/persons?org_unit={unit}&limit=100&cursor={first['next_cursor']}"

    scenarios: dict[str, Callable[[], str]] = {
        "lookup by employee number": lambda: f"/api/v1/persons?employee_no=E{person():07d}",
        "org unit page of 100": lambda: f"/api/v1/persons?org_unit=D{rng.randrange(departments):05d}&limit=100",
        "party org page of 100": lambda: f"/api/v1/persons?party_org=B{rng.randrange(branches):05d}&limit=100",
        "is_member=true page of 100": lambda: "/api/v1/persons?is_member=true&limit=100&cursor="
                                              + encode_cursor("persons", person() - 1),
        "keyset follow-up page": follow_up,
        "SCIM userName eq": lambda: f'/scim/v2/Users?filter=userName eq "E{person():07d}"',
    }
    results: dict[str, Any] = {}
    for name, make_url in scenarios.items():
        for _ in range(20):  # warm-up: connections, statement caches, the first pages of indexes
            client.get(make_url(), headers=headers)
        samples = []
        sizes = []
        for _ in range(requests):
            url = make_url()
            start = time.perf_counter()
            response = client.get(url, headers=headers)
            body = response.get_data()
            samples.append(time.perf_counter() - start)
            if response.status_code != 200:
                raise RuntimeError(f"{url}: {response.status_code} {body[:300]!r}")
            payload = json.loads(body)
            sizes.append(len(payload.get("items", payload.get("Resources", []))))
        results[name] = {**_percentiles(samples), "requests": requests,
                         "mean_items": round(sum(sizes) / len(sizes), 1)}
    engine.dispose()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", help="a scratch database URL (wiped); default: a fresh SQLite file")
    parser.add_argument("--persons", type=int, default=PERSONS)
    parser.add_argument("--requests", type=int, default=1000, help="requests per scenario (default 1000)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    folder = None
    database = args.database
    if not database:
        folder = tempfile.TemporaryDirectory(prefix="dualline-apibench-")
        database = f"sqlite:///{Path(folder.name) / 'api.db'}"
    engine = make_engine(database)
    if args.database:
        wipe(engine)
    upgrade(engine)
    started = time.perf_counter()
    counts = build(engine, args.persons)
    build_s = round(time.perf_counter() - started, 1)
    engine.dispose()
    # The machine's 1-minute load average around the measurements: p99s taken while other work
    # competes for the cores (the database server included) are not comparable with quiet ones.
    load_before = round(os.getloadavg()[0], 2)
    results = measure(database, args.requests, args.persons)
    load = [load_before, round(os.getloadavg()[0], 2)]
    report = {"database": engine.dialect.name, "counts": counts, "build_s": build_s, "load_average": load,
              "results": results}
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=1))
    else:
        print(f"{report['database']}: built {counts} in {build_s} s; load average {load[0]} → {load[1]}")
        for name, r in results.items():
            flag = "ok" if r["p99_ms"] < TARGET_P99_MS else "SLOW"
            print(f"  {name:<28} p50 {r['p50_ms']:>7.2f} ms  p99 {r['p99_ms']:>7.2f} ms  "
                  f"max {r['max_ms']:>7.2f} ms  items {r['mean_items']:>5}  {flag}")
    if folder is not None:
        folder.cleanup()
    return 0 if all(r["p99_ms"] < TARGET_P99_MS for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
