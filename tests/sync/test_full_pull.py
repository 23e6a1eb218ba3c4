"""A full pull against the links it starts from (sync.planner.Planner.plan_pull).

The pull holds only the keys and fingerprints of the source's links and reads a link's row when
a record changed or at the end: what the source no longer sends is deactivated, what comes back
is reactivated on the same person, what fails to map keeps its link, and an unchanged re-sync
changes nothing — whether the pages are recognised in a child process or in place.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from benchmarks.enterprise import generate
from benchmarks.fake_source import FakeSource
from records.db import session_factory
from records.models import Person, SourceLink
from sync import read_ahead
from tests.sync.test_failures import RestSite

PAGE_SIZE = 100


def _staff_link(site: RestSite, employee_no: str) -> SourceLink:
    with session_factory(site.runtime.engine)() as s:
        return s.scalars(select(SourceLink).where(
            SourceLink.kind == "staff", SourceLink.external_id == employee_no)).one()


def _persons(site: RestSite) -> int:
    with session_factory(site.runtime.engine)() as s:
        return s.scalar(select(func.count()).select_from(Person))


@pytest.mark.parametrize("ahead", [True, False], ids=["read_ahead", "in_place"])
def test_full_pull_deactivates_what_is_gone_and_reactivates_what_returns(
        tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, forks: list[int], ahead: bool) -> None:
    # Read ahead from the second page on, or never (`forks` tells which it was).
    monkeypatch.setattr(read_ahead, "AHEAD_AFTER_PAGES", 1 if ahead else 10**9)
    enterprise = generate(staff=400, seed=9)
    with FakeSource(enterprise, page_size=PAGE_SIZE) as source:
        site = RestSite(tmp_path, sqlite_url, source)
        first = site.sync()
        assert first.status == "succeeded"
        assert bool(forks) == ahead
        created = first.counts["staff"]["created"]
        candidates = [s for s in enterprise.staff
                      if s["employment_status"] == "active" and s["id_number"] and s["employee_no"] not in enterprise.protected]
        # One from the last page (read by the child when reading ahead), one from the first.
        gone, broken = candidates[-1], candidates[0]
        gone_link = _staff_link(site, gone["employee_no"])
        persons = _persons(site)

        enterprise.staff.remove(gone)
        good_id = broken["id_number"]
        broken["id_number"] = good_id[:-1] + ("0" if good_id[-1] != "0" else "1")  # bad checksum
        enterprise.version += 1
        second = site.sync()
        assert second.status == "succeeded"
        assert second.counts["staff"]["deactivated"] == 1
        # The broken record is quarantined on top of the enterprise's own noisy rows.
        assert second.counts["staff"]["quarantined"] == first.counts["staff"]["quarantined"] + 1
        assert not _staff_link(site, gone["employee_no"]).active
        assert _staff_link(site, broken["employee_no"]).active  # failed to map: kept, not deactivated

        enterprise.staff.append(gone)
        broken["id_number"] = good_id
        enterprise.version += 1
        third = site.sync()
        assert third.status == "succeeded"
        assert third.counts["staff"]["deactivated"] == 0
        assert third.counts["staff"]["created"] == 0
        back = _staff_link(site, gone["employee_no"])
        assert back.active and back.id == gone_link.id and back.entity_id == gone_link.entity_id
        assert _persons(site) == persons  # the returning record found its person; none was added

        noop = site.sync()
        assert noop.counts["staff"]["unchanged"] == created
        assert not any(noop.counts["staff"][k] for k in ("created", "updated", "deactivated"))
