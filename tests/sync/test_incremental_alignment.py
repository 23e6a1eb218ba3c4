"""Incremental alignment: a run without `--full` re-examines only what changed since the last
alignment, and ends with exactly the mismatches a complete alignment would leave."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from records.db import session_factory
from records.models import ExpectedBranch, Mismatch, Person, SyncRun
from tests.sync.conftest import Site, make_site
from tests.sync.test_dual_line import assert_matches_answer_key


def live_mismatches(site: Site) -> set[tuple[Any, ...]]:
    with session_factory(site.runtime.engine)() as s:
        return set(s.execute(select(
            Mismatch.rule, Mismatch.subject_key, Mismatch.state, Mismatch.inputs_hash, Mismatch.severity,
            Mismatch.party_org_code, Mismatch.other_party_org_code, Mismatch.org_unit_code,
        ).where(Mismatch.closed_at.is_(None))).all())


def reorganise(site: Site) -> None:
    """A month of changes of every kind an alignment input can have: staff moves, mobiles and
    leavers (with their roster rows), an org unit renamed and one moved under another company,
    a branch renamed, a branch that stops covering a unit and one that starts covering a unit
    nobody covered, a party member who leaves an uncovered unit."""
    enterprise = site.enterprise
    enterprise.mutate(fraction=0.2, seed=8)
    units = {u["code"]: u for u in enterprise.org_units}
    staffed = sorted({s["org_unit_code"] for s in enterprise.staff if s["org_unit_code"] in units})
    units[staffed[0]]["name"] += "（更名）"
    companies = [u["code"] for u in enterprise.org_units if u["kind"] == "company"]
    moving = next(units[c] for c in staffed[1:] if units[c]["kind"] != "company" and units[c]["parent_code"] in companies)
    moving["parent_code"] = next(c for c in companies if c != moving["parent_code"])
    branches = [o for o in enterprise.party_orgs if o["kind"] == "branch" and o.get("covers")]
    branches[0]["name"] += "（更名）"
    with session_factory(site.runtime.engine)() as s:
        uncovered, *others = s.scalars(select(Mismatch.org_unit_code).where(
            Mismatch.rule == "uncovered_unit", Mismatch.closed_at.is_(None)).order_by(Mismatch.org_unit_code)).all()
        # A unit with a member registered elsewhere, covered directly: once its branch lets it go,
        # only the recomputed expected branches say that member's finding changed.
        let_go = s.execute(select(ExpectedBranch.org_unit_code, ExpectedBranch.branch_code).join(
            Mismatch, Mismatch.org_unit_code == ExpectedBranch.org_unit_code).where(
            Mismatch.rule == "branch_mismatch", Mismatch.closed_at.is_(None),
            ExpectedBranch.via_unit_code == ExpectedBranch.org_unit_code).order_by(Mismatch.id)).first()
    assert others and let_go is not None, "the generated enterprise lacks the cases"
    # A party member leaves an uncovered unit: only the unit they left says its count changed.
    leaving = next(p for p in enterprise.staff if p["org_unit_code"] == others[-1]
                   and p["political_status"] in ("01", "02") and p["employment_status"] == "active")
    leaving["org_unit_code"] = let_go.org_unit_code
    branches[1]["covers"].append(uncovered)
    covering = next(o for o in enterprise.party_orgs if o["code"] == let_go.branch_code)
    covering["covers"].remove(let_go.org_unit_code)
    site.rewrite()


def test_incremental_alignment_equals_a_complete_one(tmp_path: Path, any_db_url: str) -> None:
    site = make_site(tmp_path / "src", any_db_url, staff=500, seed=5)
    first = site.sync()
    assert first.status == "succeeded" and first.aligned_subjects is None  # nothing to start from
    reorganise(site)

    incremental = site.sync()
    assert incremental.status == "succeeded", incremental.errors
    with session_factory(site.runtime.engine)() as s:
        persons = s.scalar(select(func.count()).select_from(Person))
        aligned = s.scalars(select(SyncRun.aligned_seq).order_by(SyncRun.id)).all()
    assert incremental.aligned_subjects is not None and 0 < incremental.aligned_subjects < persons
    assert aligned[0] is not None and aligned[1] > aligned[0]
    assert incremental.mismatches["opened"] and incremental.mismatches["closed"]
    assert_matches_answer_key(site)
    after_incremental = live_mismatches(site)

    complete = site.sync(full=True)  # looks at everything: must find nothing left to do
    assert complete.status == "succeeded" and complete.aligned_subjects is None
    assert complete.mismatches["opened"] == complete.mismatches["closed"] == 0
    assert live_mismatches(site) == after_incremental


def test_nothing_changed_examines_nothing(site: Site) -> None:
    assert site.sync().status == "succeeded"
    again = site.sync()
    assert again.aligned_subjects == 0
    assert again.mismatches["opened"] == again.mismatches["closed"] == 0
    assert again.mismatches["open"] > 0


def test_a_change_too_wide_aligns_everything(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    assert site.sync().status == "succeeded"
    monkeypatch.setattr("sync.alignment.SCOPED_LIMIT", 5)
    site.enterprise.mutate(fraction=0.05, seed=9)
    site.rewrite()
    result = site.sync()
    assert result.status == "succeeded" and result.aligned_subjects is None
    assert_matches_answer_key(site)


def test_a_dry_run_leaves_the_starting_point_alone(site: Site) -> None:
    assert site.sync().status == "succeeded"
    site.enterprise.mutate(fraction=0.05, seed=10)
    site.rewrite()
    assert site.sync(dry_run=True).status == "dry_run"
    # The dry run's changes were rolled back, so the real run must still see all of them.
    result = site.sync()
    assert result.aligned_subjects
    assert_matches_answer_key(site)
