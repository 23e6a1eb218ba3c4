"""Coverage edited by a person: the preview tells exactly what saving does, console coverage
survives later syncs, and suggestions read branch names the way officers do."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from records.db import session_factory
from records.models import AuditLog, Change, Coverage, ExpectedBranch, Mismatch, OrgUnit, PartyOrg
from sync.coverage import (
    CoverageEdit,
    CoverageEditError,
    CoverageEditor,
    name_stem,
    parse_edits,
    preview,
    save,
    suggest,
    uncovered_with_suggestions,
)
from tests.sync.conftest import Site, make_site


def open_uncovered(s) -> list[Mismatch]:
    return s.scalars(select(Mismatch).where(Mismatch.rule == "uncovered_unit", Mismatch.closed_at.is_(None))
                     .order_by(Mismatch.id)).all()


def state_of(s) -> tuple:
    coverage = s.execute(select(Coverage.party_org_code, Coverage.org_unit_code, Coverage.include_descendants,
                                Coverage.origin).order_by(Coverage.party_org_code, Coverage.org_unit_code)).all()
    mismatches = s.execute(select(Mismatch.id, Mismatch.state, Mismatch.closed_at).order_by(Mismatch.id)).all()
    expected = s.execute(select(ExpectedBranch.org_unit_code, ExpectedBranch.branch_code)
                         .order_by(ExpectedBranch.org_unit_code)).all()
    changes = s.scalar(select(func.count()).select_from(Change))
    return coverage, mismatches, expected, changes


@pytest.fixture
def site(tmp_path: Path, sqlite_url: str) -> Site:
    site = make_site(tmp_path / "src", sqlite_url, staff=600, seed=11)
    assert site.sync().status == "succeeded"
    return site


def test_preview_counts_equal_what_save_does(site: Site) -> None:
    sessions = session_factory(site.runtime.engine)
    with sessions() as s:
        uncovered = [m.org_unit_code for m in open_uncovered(s)]
        assert len(uncovered) >= 2
        branch_id, branch = s.execute(select(PartyOrg.id, PartyOrg.code).where(
            PartyOrg.kind == "branch", PartyOrg.retirees.is_(False)).order_by(PartyOrg.code)).first()
        covered = s.execute(select(Coverage.party_org_code, Coverage.org_unit_code).join(
            PartyOrg, PartyOrg.code == Coverage.party_org_code).where(
            Coverage.party_org_code != branch, PartyOrg.kind == "branch").order_by(Coverage.id)).first()
        edits = [
            CoverageEdit("assign", branch, uncovered[0], True),
            CoverageEdit("assign", branch, uncovered[1], False),
            CoverageEdit("remove", covered.party_org_code, covered.org_unit_code),
        ]
        before = state_of(s)
        outcome = preview(s, edits)
        assert state_of(s) == before  # nothing kept
    assert outcome.closed.get("uncovered_unit", 0) >= 2
    assert outcome.total_opened > 0  # the removed coverage leaves its unit's members without a branch
    assert any(w["code"] == "source_may_restore" for w in outcome.warnings)

    with sessions() as s, s.begin():
        saved = save(s, edits, "alice", reason="new departments")
    assert (saved.opened, saved.closed, saved.reopened) == (outcome.opened, outcome.closed, outcome.reopened)
    with sessions() as s:
        assert s.scalar(select(Coverage.origin).where(Coverage.org_unit_code == uncovered[0],
                                                      Coverage.party_org_code == branch)) == "console"
        assert s.scalar(select(Coverage.include_descendants).where(Coverage.org_unit_code == uncovered[1])) is False
        assert {m.org_unit_code for m in open_uncovered(s)}.isdisjoint(uncovered[:2])
        audit = s.scalar(select(AuditLog).where(AuditLog.action == "coverage.edit"))
        assert audit.actor == "alice" and audit.details["reason"] == "new departments"
        feed = s.scalars(select(Change).where(Change.entity == "party_org", Change.actor == "alice")).all()
        owner_id = s.scalar(select(PartyOrg.id).where(PartyOrg.code == covered.party_org_code))
        by_org = {c.entity_id: c.changed for c in feed}
        assert set(by_org) == {branch_id, owner_id}
        assert uncovered[0] in by_org[branch_id]["covers"][1] and uncovered[0] not in by_org[branch_id]["covers"][0]
        assert by_org[branch_id]["covers_without_descendants"] == [[], [uncovered[1]]]
        assert covered.org_unit_code not in by_org[owner_id]["covers"][1]
        mismatch_events = s.scalar(select(func.count()).select_from(Change).where(
            Change.entity == "mismatch", Change.actor == "alice"))
        assert mismatch_events == saved.total_opened + saved.total_closed


def test_bad_edits_are_refused_and_change_nothing(site: Site) -> None:
    with pytest.raises(CoverageEditError) as bad:
        parse_edits([{"op": "steal", "party_org_code": "P1", "org_unit_code": "U"}])
    assert bad.value.field == "op"
    sessions = session_factory(site.runtime.engine)
    with sessions() as s:
        before = state_of(s)
        unit = s.scalar(select(OrgUnit.code).order_by(OrgUnit.code))
        branch = s.scalar(select(PartyOrg.code).where(PartyOrg.kind == "branch").order_by(PartyOrg.code))
        for edits, field in (([CoverageEdit("assign", "NOPE", unit)], "edits[0].party_org_code"),
                             ([CoverageEdit("assign", branch, "NOPE")], "edits[0].org_unit_code"),
                             ([CoverageEdit("remove", branch, unit)], "edits[0].org_unit_code")):
            with pytest.raises(CoverageEditError) as refused:
                with sessions() as writer, writer.begin():
                    save(writer, edits, "alice")
            assert refused.value.field == field
        assert state_of(s) == before


def test_console_coverage_survives_a_resync(tmp_path: Path, any_db_url: str) -> None:
    site = make_site(tmp_path / "src", any_db_url, staff=300, seed=17)
    assert site.sync().status == "succeeded"
    sessions = session_factory(site.runtime.engine)
    with sessions() as s:
        target = open_uncovered(s)[0].org_unit_code
        source_row = s.scalar(select(Coverage).order_by(Coverage.id))
    orgs = {o["code"]: o for o in site.enterprise.party_orgs}
    branch = next(o for o in site.enterprise.party_orgs if o["kind"] == "branch" and o["covers"]
                  and o["code"] != source_row.party_org_code)
    editor = CoverageEditor(site.runtime)
    editor.save([CoverageEdit("assign", branch["code"], target, True),
                 CoverageEdit("set_descendants", source_row.party_org_code, source_row.org_unit_code, False)],
                "alice")

    # The source changes both orgs (so their coverage is rewritten), lists the console's pair
    # itself, and drops the pair the console took over.
    branch["covers"] = branch["covers"] + [target]
    branch["secretary"] = "新书记"
    owner = orgs[source_row.party_org_code]
    owner["covers"] = [u for u in owner["covers"] if u != source_row.org_unit_code]
    owner["secretary"] = "另一位书记"
    site.enterprise.version += 1
    site.rewrite()
    assert site.sync(full=True).status == "succeeded"

    with sessions() as s:
        rows = s.execute(select(Coverage.party_org_code, Coverage.include_descendants, Coverage.origin)
                         .where(Coverage.org_unit_code == target)).all()
        assert [(r.party_org_code, r.origin) for r in rows] == [(branch["code"], "console")]
        kept = s.execute(select(Coverage.include_descendants, Coverage.origin).where(
            Coverage.party_org_code == source_row.party_org_code,
            Coverage.org_unit_code == source_row.org_unit_code)).one()
        assert (bool(kept.include_descendants), kept.origin) == (False, "console")
        assert target not in {m.org_unit_code for m in open_uncovered(s)}
        assert s.scalar(select(ExpectedBranch.branch_code).where(ExpectedBranch.org_unit_code == target)) \
            == branch["code"]


def test_name_stems() -> None:
    assert name_stem("生产技术部党支部") == "生产技术部"
    assert name_stem("生产技术部联合党支部") == "生产技术部"
    assert name_stem("机关第二党支部") == ""
    assert name_stem("检修车间第一党支部") == "检修车间"
    assert name_stem("中共北辰能源集团有限公司委员会") == "北辰能源集团有限公司"
    assert name_stem("销售公司党总支") == "销售公司"
    assert name_stem("销售公司党委") == "销售公司"


def test_suggestions_by_name(db_engine) -> None:
    units = [("C1", "北辰电力有限公司", None), ("C2", "北辰煤业有限公司", None),
             ("D1", "生产技术部", "C1"), ("D2", "生产技术部", "C2"), ("D3", "检修车间", "C1"),
             ("D4", "热工车间", "C1"), ("T1", "一班", "D3"), ("T2", "一班", "D4"), ("D5", "财务部", "C1")]
    orgs = [("P1", "中共北辰电力有限公司委员会", "committee", None), ("B1", "生产技术部党支部", "branch", "P1"),
            ("B2", "检修车间一班党支部", "branch", "P1"), ("B3", "财务部党支部", "branch", "P1"),
            ("B4", "机关第一党支部", "branch", "P1")]
    with session_factory(db_engine)() as s, s.begin():
        s.add_all(OrgUnit(code=c, name=n, parent_code=p, kind="department") for c, n, p in units)
        s.add_all(PartyOrg(code=c, name=n, kind=k, parent_code=p) for c, n, k, p in orgs)
        s.add_all([Coverage(party_org_code="P1", org_unit_code="C1", origin="source:x"),
                   Coverage(party_org_code="B3", org_unit_code="D5", origin="source:x")])
    with session_factory(db_engine)() as s:
        [first, second] = suggest(s, "B1", per_org=2)
        assert (first.org_unit_code, first.match) == ("D1", "exact")  # in the committee's company
        assert first.reason["zh"] == "名称匹配：生产技术部党支部 → 生产技术部"
        assert second.org_unit_code == "D2" and second.score < first.score
        assert suggest(s, "B2")[0].org_unit_code == "T1"  # the 一班 of 检修车间, not of 热工车间
        assert suggest(s, "B3") == []  # covers its unit already
        assert suggest(s, "B4") == []  # nothing in "机关第一党支部" names a unit
        listed = {(x.party_org_code, x.org_unit_code) for x in suggest(s)}
        assert ("B1", "D1") in listed and ("B2", "T1") in listed
        assert not any(org == "B3" for org, _ in listed)
        assert {x.party_org_code for x in suggest(s, visible=["B2"])} == {"B2"}


def test_uncovered_units_get_a_suggestion(site: Site) -> None:
    with session_factory(site.runtime.engine)() as s:
        listed = uncovered_with_suggestions(s)
        assert {u["org_unit_code"] for u in listed} == {m.org_unit_code for m in open_uncovered(s)}
        assert all(u["suggestion"] is not None and u["suggestion"].reason["zh"] for u in listed)
        assert all(u["party_members"] for u in listed)
