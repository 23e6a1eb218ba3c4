"""A source misbehaving: nothing lost, nothing wrong applied, the run says exactly what happened.

The source is the paginated REST fake (benchmarks.fake_source) with failures injected at the
HTTP boundary: an empty list, a truncated body, a short page, an HTML error page with status 200.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from benchmarks.enterprise import generate
from benchmarks.fake_source import FakeSource
from benchmarks.sync_bench import write_config
from records.db import session_factory, upgrade
from records.models import Change, Membership, Person, SourceLink, SyncRun
from sync.config import load_config
from sync.engine import SyncEngine
from sync.runtime import Runtime
from tests.conftest import TEST_SECRET


class RestSite:
    def __init__(self, folder: Path, db_url: str, source: FakeSource) -> None:
        self.source = source
        config = load_config(write_config(folder, source.url, db_url, page_size=100))
        config.secret_key = TEST_SECRET
        config.guard = {"max_deactivate_ratio": 0.2, "max_deactivate": 200}
        self.runtime = Runtime(config)
        upgrade(self.runtime.engine)

    def sync(self, *sources: str, **kwargs):
        return SyncEngine(self.runtime).run(list(sources) or None, **kwargs)

    def snapshot(self) -> dict[str, int]:
        with session_factory(self.runtime.engine)() as s:
            return {
                "persons_staff": s.scalar(select(func.count()).where(Person.staff_active.is_(True))),
                "members": s.scalar(select(func.count()).where(Membership.active.is_(True))),
                "links": s.scalar(select(func.count()).select_from(SourceLink)),
                "changes": s.scalar(select(func.count()).select_from(Change)),
            }


@pytest.fixture
def rest_site(tmp_path: Path, sqlite_url: str) -> Iterator[RestSite]:
    enterprise = generate(staff=400, seed=9)
    with FakeSource(enterprise, page_size=100) as source:
        yield RestSite(tmp_path, sqlite_url, source)


def test_empty_list_is_held_not_believed(rest_site: RestSite) -> None:
    assert rest_site.sync().status == "succeeded"
    before = rest_site.snapshot()
    rest_site.source.fail("staff", "empty")
    result = rest_site.sync()
    assert result.status == "held"
    assert any("hr/staff" in r and "returned 0" in r for r in result.guard["reasons"])
    assert rest_site.snapshot() == before
    approved = rest_site.sync(approve=True)
    assert approved.status == "succeeded"
    assert approved.counts["staff"]["deactivated"] == before["persons_staff"]


@pytest.mark.parametrize("mode,error_class", [("html", "protocol"), ("truncate", "protocol"), ("short", "truncated"), ("error", "http")])
def test_broken_pages_fail_the_run_and_apply_nothing(rest_site: RestSite, mode: str, error_class: str) -> None:
    assert rest_site.sync().status == "succeeded"
    rest_site.source.enterprise.mutate(fraction=0.05, seed=2)
    before = rest_site.snapshot()
    rest_site.source.fail("staff", mode, page=2)
    result = rest_site.sync()
    assert result.status == "failed"
    [error] = result.errors
    assert (error["source"], error["kind"], error["error_class"]) == ("hr", "staff", error_class)
    assert error["message"]
    assert rest_site.snapshot() == before
    with session_factory(rest_site.runtime.engine)() as s:
        run = s.get(SyncRun, result.run_id)
        assert run.status == "failed" and run.error
    rest_site.source.clear_failures()
    assert rest_site.sync().status == "succeeded"


def test_dry_run_writes_nothing_and_reports_exact_plan(rest_site: RestSite) -> None:
    result = rest_site.sync(dry_run=True)
    assert result.status == "dry_run" and result.run_id is None
    assert result.counts["staff"]["created"] > 0 and result.mismatches["opened"] > 0
    assert rest_site.snapshot() == {"persons_staff": 0, "members": 0, "links": 0, "changes": 0}
    with session_factory(rest_site.runtime.engine)() as s:
        assert s.scalar(select(func.count()).select_from(SyncRun)) == 0
    real = rest_site.sync()
    assert real.counts == result.counts
    assert real.mismatches == result.mismatches


def test_guard_absolute_limit(rest_site: RestSite) -> None:
    rest_site.runtime.config.guard = {"max_deactivate_ratio": 1.0, "max_deactivate": 3}
    rest_site.sync()
    enterprise = rest_site.source.enterprise
    enterprise.staff[:] = enterprise.staff[:-10]
    enterprise.version += 1
    result = rest_site.sync("hr")
    assert result.status == "held"
    assert any("staff: would deactivate 10 records (> 3)" in r for r in result.guard["reasons"])
