"""End to end: a weaver-soap source (the local HrmService fake) synced into SQLite.

The org tree arrives with subcompanies as S<id>, staff carry political status and party join
date, and an empty answer (the OA's IP allow-list refusing us) fails the run without
deactivating anyone."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from records.db import session_factory, upgrade
from records.models import Change, OrgUnit, Person, SourceCursor
from sync.config import parse_config
from sync.engine import SyncEngine
from sync.runtime import Runtime
from tests.conftest import TEST_SECRET
from tests.fakes.weaver_soap import WeaverSoapFake, sample_org


@pytest.fixture
def oa() -> Iterator[WeaverSoapFake]:
    with WeaverSoapFake(**sample_org()) as fake:
        yield fake


@pytest.fixture
def runtime(oa: WeaverSoapFake, sqlite_url: str) -> Runtime:
    config = parse_config({
        "database": sqlite_url,
        "secret_key": TEST_SECRET,
        "sources": {"oa": {"connector": "weaver-soap", "url": oa.wsdl_url,
                           "provides": ["org_units", "staff"], "retries": {"max_attempts": 1}}},
    }, path=None)
    rt = Runtime(config)
    upgrade(rt.engine)
    return rt


def snapshot(rt: Runtime) -> dict[str, Any]:
    with session_factory(rt.engine)() as s:
        return {
            "units": {u.code: (u.parent_code, u.kind, u.status, u.active) for u in s.scalars(select(OrgUnit))},
            "staff": {p.employee_no: (p.staff_active, p.employment_status, p.political_status,
                                      p.party_joined_on) for p in s.scalars(select(Person))},
            "deactivations": s.scalar(select(func.count()).select_from(Change).where(Change.op == "deactivate")),
        }


def test_weaver_soap_sync_and_refused_answer(oa: WeaverSoapFake, runtime: Runtime) -> None:
    result = SyncEngine(runtime).run()
    assert result.status == "succeeded", result.errors
    state = snapshot(runtime)
    assert state["units"] == {
        "S1": (None, "company", "active", True),
        "S2": ("S1", "company", "active", True),
        "11": ("S1", "department", "active", True),
        "12": ("11", "department", "active", True),
        "21": ("S2", "department", "active", True),
        "22": ("21", "department", "dissolved", True),
    }
    assert state["staff"]["E001"][1:] == ("active", "01", dt.date(2003, 6, 15))
    assert state["staff"]["E002"][1:] == ("probation", "02", dt.date(2024, 1, 10))
    assert state["staff"]["E003"][1:3] == ("left", "13")
    with session_factory(runtime.engine)() as s:
        assert s.get(SourceCursor, ("oa", "staff")).value == "2024-04-01"

    # The OA stops answering (IP allow-list): full and incremental runs fail, nothing changes.
    oa.mode = "empty"
    for full in (True, False):
        failed = SyncEngine(runtime).run(full=full)
        assert failed.status == "failed"
        assert {(e["source"], e["error_class"]) for e in failed.errors} == {("oa", "empty")}
        assert any("IP allow-list" in e["message"] for e in failed.errors)
        assert snapshot(runtime) == state

    oa.mode = "ok"
    assert SyncEngine(runtime).run().status == "succeeded"
    assert snapshot(runtime)["deactivations"] == 0


def test_full_then_incremental_pull(oa: WeaverSoapFake, runtime: Runtime) -> None:
    assert SyncEngine(runtime).run().status == "succeeded"
    # E002 moves to 生产部's sub-department and becomes a full member; the OA stamps the change.
    e002 = next(u for u in oa.users if u["workcode"] == "E002")
    e002.update(departmentid="22", policy="中共党员", lastChangdate="2024-05-20")
    oa.calls.clear()
    result = SyncEngine(runtime).run()
    assert result.status == "succeeded", result.errors
    user_calls = [args for op, args in oa.calls if op == "getHrmUserInfo"]
    assert user_calls and user_calls[-1][5] == "2024-04-01"  # in5 = lastmoddate from the cursor
    assert result.counts["staff"]["updated"] == 1 and result.counts["staff"]["deactivated"] == 0
    assert result.moves.get("staff") == 1
    with session_factory(runtime.engine)() as s:
        person = s.scalar(select(Person).where(Person.employee_no == "E002"))
        assert (person.org_unit_code, person.political_status) == ("22", "01")
        assert s.get(SourceCursor, ("oa", "staff")).value == "2024-05-20"
        # the other staff, not returned by the incremental pull, stay as they were
        assert s.scalar(select(func.count()).where(Person.staff_active.is_(True))) == \
            len([u for u in oa.users if u.get("workcode")])
