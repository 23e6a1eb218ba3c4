"""A vendor preset end to end: the `dingtalk` source synced by SyncEngine into SQLite.

The fake DingTalk of tests/connectors/test_dingtalk.py answers at the HTTP boundary; the config
is a plain dict as dualline.yaml would hold it, with the secret from the environment.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest
import responses
from sqlalchemy import select

from records.db import session_factory, upgrade
from records.models import OrgUnit, Person
from sync.config import parse_config
from sync.engine import SyncEngine
from sync.runtime import Runtime
from tests.conftest import TEST_SECRET
from tests.connectors.test_dingtalk import BASE, ORG, FakeDingTalk, make_users


@pytest.fixture
def fake() -> Iterator[FakeDingTalk]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeDingTalk(dict(ORG), make_users()).install(rsps)


@pytest.fixture
def runtime(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    monkeypatch.setenv("DINGTALK_SECRET", "s3cret")
    config = parse_config({
        "database": sqlite_url,
        "sources": {"dingtalk": {"connector": "dingtalk", "app_key": "key1",
                                 "app_secret": "${DINGTALK_SECRET}", "base_url": BASE,
                                 "provides": ["org_units", "staff"]}},
    }, path=None)
    config.secret_key = TEST_SECRET
    runtime = Runtime(config)
    upgrade(runtime.engine)
    return runtime


def test_dingtalk_org_and_staff_land_in_the_database(fake: FakeDingTalk, runtime: Runtime) -> None:
    result = SyncEngine(runtime).run()
    assert result.status == "succeeded", result.errors
    assert result.counts["org_units"]["created"] == 5
    assert result.counts["staff"]["created"] == 254
    assert result.counts["staff"]["quarantined"] == 0
    with session_factory(runtime.engine)() as s:
        units = {u.code: u for u in s.scalars(select(OrgUnit))}
        assert {c: (u.name, u.parent_code, u.kind) for c, u in units.items() if c in "124"} == {
            "1": ("示范集团", None, "company"), "2": ("生产部", "1", "department"),
            "4": ("一车间", "2", "department")}
        people = {p.employee_no: p for p in s.scalars(select(Person))}
        assert people["U-BOTH"].org_unit_code == "3"
        assert people["u-a"].name == "张三"  # empty 工号: keyed by userid
        assert people["U-B"].employment_status == "active" and people["U-B"].staff_active
        assert people["U-W7"].hired_on is not None and people["U-W7"].org_unit_code == "4"
    # One token for the whole run; the staff read reused the department walk.
    assert fake.count("/gettoken") == 1 and fake.count("/topapi/v2/department/listsub") == 5


def test_resync_is_unchanged_and_a_removed_user_is_deactivated(fake: FakeDingTalk,
                                                               runtime: Runtime) -> None:
    assert SyncEngine(runtime).run().status == "succeeded"
    again = SyncEngine(runtime).run()
    assert again.counts["staff"]["unchanged"] == 254 and again.counts["staff"]["created"] == 0
    fake.users[2] = [u for u in fake.users[2] if u["userid"] != "u-a"]  # left the company
    third = SyncEngine(runtime).run()
    assert third.status == "succeeded" and third.counts["staff"]["deactivated"] == 1
    with session_factory(runtime.engine)() as s:
        person = s.scalars(select(Person).where(Person.employee_no == "u-a")).one()
        assert not person.staff_active


def test_exhausted_quota_fails_the_run_and_applies_nothing(fake: FakeDingTalk,
                                                           runtime: Runtime) -> None:
    fake.fail("/topapi/v2/user/list", {"errcode": 90020, "errmsg": "api调用次数超过限制"})
    result = SyncEngine(runtime).run()
    assert result.status == "failed"
    [error] = result.errors
    assert (error["source"], error["kind"], error["error_class"]) == ("dingtalk", "staff", "quota")
    assert "monthly" in error["message"]
    with session_factory(runtime.engine)() as s:
        assert s.scalars(select(OrgUnit)).first() is None
