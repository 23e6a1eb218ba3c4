"""Incremental pulls: a per-source, per-kind cursor committed with the data it covers; a failed
run never advances it; `--full` ignores it and is what detects deletions. Also payroll."""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from sqlalchemy import func, select

from records.db import session_factory, upgrade
from records.models import Payroll, Person, SourceCursor
from sync.config import parse_config
from sync.engine import SyncEngine
from sync.runtime import Runtime
from tests.conftest import TEST_SECRET

BASE = "http://hr.example.test/api"


def staff(n: int, modified: str, unit: str = "D01") -> dict:
    return {"employee_no": f"E{n:04d}", "name": f"员工{n}", "org_unit_code": unit,
            "employment_status": "active", "political_status": "13", "modified": modified}


class HrApi:
    """An HR REST API that honours `modified_since` (records modified at or after it)."""

    def __init__(self) -> None:
        self.records = [staff(i, f"2026-01-{i:02d}T08:00:00") for i in range(1, 11)]
        self.fail = False
        self.seen_since: list[str | None] = []

    def __call__(self, request):
        if self.fail:
            return 503, {}, "busy"
        since = parse_qs(urlsplit(request.url).query).get("modified_since", [None])[0]
        self.seen_since.append(since)
        rows = [r for r in self.records if since is None or r["modified"] >= since]
        return 200, {"Content-Type": "application/json"}, json.dumps({"data": rows})


@pytest.fixture
def engine_and_api(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("connectors.http.time.sleep", lambda s: None)
    config = parse_config({
        "database": sqlite_url, "secret_key": TEST_SECRET,
        "sources": {"hr": {"connector": "rest", "url": BASE, "provides": ["staff"],
                           "retries": {"max_attempts": 2},
                           "endpoints": {"staff": {"path": "/staff", "records_path": "data",
                                                   "incremental_param": "modified_since",
                                                   "cursor_field": "modified"}}}},
    }, path=None)
    runtime = Runtime(config)
    upgrade(runtime.engine)
    api = HrApi()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.GET, f"{BASE}/staff", callback=api)
        yield SyncEngine(runtime), runtime, api


def cursor(runtime: Runtime) -> str | None:
    with session_factory(runtime.engine)() as s:
        row = s.get(SourceCursor, ("hr", "staff"))
        return row.value if row else None


def test_cursor_advances_with_the_data_and_only_on_success(engine_and_api) -> None:
    engine, runtime, api = engine_and_api
    first = engine.run()
    assert first.status == "succeeded" and first.counts["staff"]["created"] == 10
    assert api.seen_since == [None]
    assert cursor(runtime) == "2026-01-10T08:00:00"

    api.records[2] = staff(3, "2026-02-01T09:00:00", unit="D02")  # moved
    del api.records[5]  # gone — an incremental pull cannot tell
    second = engine.run()
    assert api.seen_since[-1] == "2026-01-10T08:00:00"
    assert second.counts["staff"]["updated"] == 1 and second.counts["staff"]["deactivated"] == 0
    assert cursor(runtime) == "2026-02-01T09:00:00"

    api.fail = True
    failed = engine.run()
    assert failed.status == "failed" and failed.errors[0]["error_class"] == "http"
    assert cursor(runtime) == "2026-02-01T09:00:00"

    api.fail = False
    full = engine.run(full=True)
    assert api.seen_since[-1] is None
    assert full.counts["staff"]["deactivated"] == 1
    with session_factory(runtime.engine)() as s:
        assert s.scalar(select(func.count()).where(Person.staff_active.is_(True))) == 9


def test_payroll_from_a_file(tmp_path: Path, sqlite_url: str) -> None:
    (tmp_path / "staff.csv").write_text("employee_no,name\nE1,张三\nE2,李四\n", encoding="utf-8")
    (tmp_path / "pay.csv").write_text(
        "employee_no,month,after_tax_pay\nE1,2026-09,8650.5\nE1,2026/10,8700\nE9,2026-10,3000\n",
        encoding="utf-8")
    config = parse_config({
        "database": sqlite_url, "secret_key": TEST_SECRET,
        "sources": {"hr": {"connector": "file", "path": str(tmp_path / "staff.csv"), "provides": ["staff"]},
                    "erp": {"connector": "file", "path": str(tmp_path / "pay.csv"), "provides": ["payroll"]}},
    }, path=None)
    runtime = Runtime(config)
    upgrade(runtime.engine)
    result = SyncEngine(runtime).run()
    assert result.status == "succeeded" and result.counts["payroll"]["created"] == 3
    with session_factory(runtime.engine)() as s:
        rows = {(p.employee_no, p.month): (p.after_tax_pay, p.person_id) for p in s.scalars(select(Payroll))}
        e1 = s.scalar(select(Person.id).where(Person.employee_no == "E1"))
    assert rows[("E1", "2026-09")] == (8650.5, e1)
    assert rows[("E1", "2026-10")] == (8700.0, e1)
    assert rows[("E9", "2026-10")] == (3000.0, None)  # pay for someone HR does not list: kept, unlinked
    again = SyncEngine(runtime).run()
    assert again.counts["payroll"] == {"created": 0, "updated": 0, "deactivated": 0, "unchanged": 3,
                                       "quarantined": 0, "ambiguous": 0}
