"""SQLite's bulk inserts with and without the C inserter (records._sqlite_rows).

    python -m benchmarks.insert_bench [--persons 300000] [--changes 500000] [--links 500000] [--rounds 3]

Rows shaped like a first load's (a person's 26 columns with encrypted, hashed and masked ID and
mobile numbers and Chinese names; change-feed rows with their compact JSON; source links) go
into a fresh WAL database, tables as a first load finds them (plain indexes deferred, unique
keys kept), in one transaction, through `BulkInserter.insert_tuples` — once through the driver's
`executemany` alone, once through the C inserter — alternating, `--rounds` times each. Prints the
CPU seconds per table and way (JSON with `--json`).
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from records import bulk
from records.bulk import BulkInserter, DeferredIndexes
from records.db import make_engine
from records.models import Base, Change, Person, SourceLink

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建国志新春梅海波晶鑫"
AT = "2026-11-25 19:55:45.474718"


def _sealed(rng: random.Random, size: int) -> str:
    return base64.b64encode(rng.randbytes(size)).decode("ascii")


def person_rows(count: int, seed: int = 1) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    rng = random.Random(seed)
    columns = tuple(c.name for c in Person.__table__.c)
    rows = []
    for i in range(1, count + 1):
        name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.randint(1, 2)))
        id_number = f"{rng.randint(110000, 659000)}{rng.randint(1960, 2004)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 9999):04d}"
        mobile = f"13{rng.randint(0, 999999999):09d}"
        values = {
            "id": i, "employee_no": str(1_000_000 + i), "name": name, "gender": rng.choice("12"),
            "birth_date": f"{rng.randint(1960, 2004)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "ethnicity": "01", "education": rng.choice(("20", "21", "30")),
            "id_number_enc": _sealed(rng, 46), "id_number_hash": hashlib.sha1(id_number.encode()).hexdigest(),
            "id_number_masked": id_number[:6] + "********" + id_number[-4:],
            "mobile_enc": _sealed(rng, 39), "mobile_hash": hashlib.sha1(mobile.encode()).hexdigest(),
            "mobile_masked": mobile[:3] + "****" + mobile[-4:], "org_unit_code": str(10_000_000 + rng.randint(0, 50_000)),
            "position": rng.choice(("主任", "工程师", "技术员", "会计", "经理")), "employment_status": "active",
            "hired_on": f"{rng.randint(1990, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "political_status": rng.choice(("01", "13")), "party_joined_on": None, "staff_active": 1,
            "provenance": '[["hr",16775170]]', "created_at": AT, "updated_at": AT,
            "scim_external_id": None, "scim_deleted_at": None, "scim_extensions": "null",
        }
        rows.append(tuple(values.get(c) for c in columns))
    return columns, rows


def change_rows(count: int, seed: int = 2) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    rng = random.Random(seed)
    columns = ("id", "seq", "run_id", "actor", "entity", "entity_id", "op", "changed", "at")
    rows = []
    for i in range(1, count + 1):
        name = rng.choice(SURNAMES) + rng.choice(GIVEN)
        changed = json.dumps({"+": [rng.randint(1, 1 << 20), str(1_000_000 + i), name, "2", "1980-01-01",
                                    "110105********002X", "138****0000"]}, ensure_ascii=False, separators=(",", ":"))
        rows.append((i, i, 1, "cli", "person", i, "create", changed, AT))
    return columns, rows


def link_rows(count: int, seed: int = 3) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    rng = random.Random(seed)
    columns = ("id", "source", "kind", "external_id", "entity_id", "fingerprint", "active", "last_run_id")
    return columns, [(i, "hr", "staff", str(1_000_000 + i), i, rng.randbytes(16).hex(), 1, 1)
                     for i in range(1, count + 1)]


def load(tables: list[tuple[Any, tuple[str, ...], list[tuple[Any, ...]]]], c_inserter: bool) -> dict[str, float]:
    """CPU seconds per table, inserting every table's rows in one transaction of a fresh database."""
    with tempfile.TemporaryDirectory(prefix="dualline-insert-") as folder:
        engine = make_engine(f"sqlite:///{Path(folder) / 'insert.db'}")
        try:
            Base.metadata.create_all(engine, tables=[t for t, _, _ in tables])
            saved = bulk._c_insert_rows
            bulk._c_insert_rows = saved if c_inserter else None
            try:
                seconds: dict[str, float] = {}
                with engine.begin() as conn:
                    conn.exec_driver_sql("DELETE FROM persons")  # the driver opens the transaction
                    deferred = DeferredIndexes(conn).defer([t for t, _, _ in tables])
                    assert deferred, "a first load's plain indexes should wait"
                    for table, columns, rows in tables:
                        inserter = BulkInserter(conn, table, columns)
                        started = time.process_time()
                        inserter.insert_tuples(rows)
                        seconds[table.name] = round(time.process_time() - started, 3)
                        assert conn.exec_driver_sql(f"SELECT count(*) FROM {table.name}").scalar() == len(rows)
            finally:
                bulk._c_insert_rows = saved
        finally:
            engine.dispose()
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, default=300_000)
    parser.add_argument("--changes", type=int, default=500_000)
    parser.add_argument("--links", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args(argv)
    if bulk._c_insert_rows is None:
        parser.error("records._sqlite_rows is not built here (pip install -e . compiles it)")
    tables = [(Person.__table__, *person_rows(opts.persons)), (Change.__table__, *change_rows(opts.changes)),
              (SourceLink.__table__, *link_rows(opts.links))]
    report: dict[str, list[dict[str, float]]] = {"driver": [], "c": []}
    for _ in range(opts.rounds):
        for way in ("driver", "c"):
            report[way].append(load(tables, c_inserter=way == "c"))
    if opts.json:
        print(json.dumps(report))
        return 0
    for way, runs in report.items():
        for seconds in runs:
            print(f"{way:6}", "  ".join(f"{name} {value:.2f} s" for name, value in seconds.items()),
                  f"  total {sum(seconds.values()):.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
