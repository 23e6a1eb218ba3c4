"""Standardization rules (issue 7): boundaries, thresholds from config, the mismatch life cycle,
config errors, and a generated enterprise with planted violations checked against an
independent per-member oracle (no false findings)."""
from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, insert, select, update

from benchmarks.enterprise import REFERENCE_DATE
from benchmarks.enterprise import add_years as generator_add_years
from records.db import make_engine, session_factory
from records.models import Base, Change, Membership, Mismatch, PartyOrg, Person, SyncRun
from sync.alignment import Violation
from sync.config import ConfigError
from sync.rules import RULES, RuleOutcome, RuleSet
from sync.rules.base import add_years, last_start
from tests.conftest import TEST_SECRET
from tests.sync.conftest import Site, make_site

TODAY = dt.date(2025, 6, 15)
D = dt.timedelta


# --- a hand-made party line, by direct inserts ----------------------------------------------------


class World:
    """A bare database holding only what a test inserts: orgs, persons, memberships."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = session_factory(engine)
        self._n = 0

    def org(self, code: str, kind: str = "branch", parent: str | None = None, **values: Any) -> str:
        with self.sessions() as s, s.begin():
            s.add(PartyOrg(code=code, name=f"{code}党组织", kind=kind, parent_code=parent, **values))
        return code

    def members(self, org: str | None, full: int = 0, probationary: int = 0, name: str | None = None,
                **values: Any) -> list[int]:
        """`full` + `probationary` members (each a new person) with an active membership in `org`."""
        rows = [("full", i) for i in range(full)] + [("probationary", i) for i in range(probationary)]
        ids = []
        with self.sessions() as s, s.begin():
            for category, _ in rows:
                self._n += 1
                pid = s.execute(insert(Person).values(name=name or f"党员{self._n}").returning(Person.id)).scalar_one()
                fields = {"joined_on": dt.date(2010, 1, 1),
                          "full_member_on": dt.date(2011, 1, 1) if category == "full" else None} | values
                s.add(Membership(person_id=pid, party_org_code=org, category=category, **fields))
                ids.append(pid)
        return ids

    def rule_set(self, rules: dict[str, Any] | None = None) -> RuleSet:
        return RuleSet.from_config(rules or {})

    def detect(self, rule: str, rules: dict[str, Any] | None = None, today: dt.date = TODAY) -> dict[str, Violation]:
        with self.sessions() as s:
            return {v.subject_key: v for v in self.rule_set(rules).detect(s, today)[rule]}

    def run(self, rules: dict[str, Any] | None = None, today: dt.date = TODAY) -> RuleOutcome:
        with self.sessions() as s, s.begin():
            return self.rule_set(rules).evaluate(s, None, "test", today=today)

    def mismatch(self, rule: str, subject_key: str) -> Mismatch:
        with self.sessions() as s:
            return s.scalars(select(Mismatch).where(Mismatch.rule == rule, Mismatch.subject_key == subject_key)
                             .order_by(Mismatch.id.desc())).first()

    def set(self, model: Any, where: Any, **values: Any) -> None:
        with self.sessions() as s, s.begin():
            s.execute(update(model).where(where).values(**values))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    engine = make_engine(f"sqlite:///{tmp_path / 'rules.db'}")
    Base.metadata.create_all(engine)  # the models' schema, without the migrations' time
    yield World(engine)
    engine.dispose()


def key(code: str) -> str:
    return f"party_org:{code}"


# --- organization size ---------------------------------------------------------------------------


def test_branch_too_small_counts_active_full_members_only(world: World) -> None:
    world.members(world.org("B2"), full=2, probationary=5)
    world.members("B2", full=2, status="transferred_out")
    world.members("B2", full=1, active=False)
    world.members(world.org("B3"), full=3)
    world.org("B0")  # no members at all
    world.members(world.org("GB", kind="general_branch"), full=1)  # only branches are judged

    found = world.detect("branch_too_small")
    assert set(found) == {key("B2"), key("B0")}
    assert found[key("B2")].details["full_members"] == 2
    assert found[key("B2")].details["probationary_members"] == 5
    assert found[key("B2")].details["regulation"] == "党章 Art. 30; 支部工作条例 Art. 4"
    assert found[key("B2")].party_org_code == "B2" and found[key("B2")].subject_type == "party_org"


def test_committee_required_from_seven_full_members(world: World) -> None:
    world.members(world.org("F6", has_committee=False), full=6, probationary=3)
    world.members(world.org("F7", has_committee=False), full=7)
    world.members(world.org("F7null", has_committee=None), full=7)
    world.members(world.org("F7yes", has_committee=True), full=9)
    assert set(world.detect("committee_required")) == {key("F7"), key("F7null")}


@pytest.mark.parametrize(("members", "too_large", "kind_expected"), [
    (49, False, None), (50, False, "general_branch"), (51, True, "general_branch"),
    (99, True, "general_branch"), (100, True, "committee"),
])
def test_branch_size_boundaries(world: World, members: int, too_large: bool, kind_expected: str | None) -> None:
    world.members(world.org("B"), full=members - 10, probationary=10)
    assert (key("B") in world.detect("branch_too_large")) is too_large
    kind = world.detect("org_kind_mismatch")
    assert (kind[key("B")].details["expected_kind"] if key("B") in kind else None) == kind_expected
    if too_large:
        assert world.detect("branch_too_large")[key("B")].details["members"] == members


def test_org_kind_counts_the_subtree(world: World) -> None:
    world.org("C", kind="committee")
    world.org("GB", kind="general_branch", parent="C")
    world.members(world.org("B1", parent="GB"), full=49)
    world.members(world.org("B2", parent="GB"), full=30, probationary=10)
    world.members(world.org("B3", parent="GB"), full=10)  # 99 in GB's subtree
    world.org("SMALLGB", kind="general_branch", parent="C")
    assert set(world.detect("org_kind_mismatch")) == set()  # larger kinds are allowed by default
    assert set(world.detect("org_kind_mismatch", {"org_kind_mismatch": {"report_larger_kind": True}})) == {
        key("C"), key("SMALLGB")}

    world.members("B1", probationary=1)  # 100 below GB, and B1 reaches 50
    found = world.detect("org_kind_mismatch")
    assert set(found) == {key("B1"), key("GB")}
    assert found[key("B1")].details["expected_kind"] == "general_branch"
    assert found[key("GB")].details["subtree_members"] == 100
    assert found[key("GB")].details["expected_kind"] == "committee"


def test_org_kind_counts_each_org_once_when_bad_data_links_a_cycle(world: World) -> None:
    world.members(world.org("GA", kind="general_branch", parent="GB"), full=30)
    world.members(world.org("GB", kind="general_branch", parent="GA"), full=30)
    world.members(world.org("B", parent="GA"), full=40)  # 100 in the cycle and below, not 100 × depth
    found = world.detect("org_kind_mismatch")
    assert {k: v.details["subtree_members"] for k, v in found.items()} == {key("GA"): 100, key("GB"): 100}
    inactive = world.org("GONE", kind="general_branch", parent="GA", active=False)
    world.members(inactive, full=500)  # an inactive org and what hangs below it count for nothing
    assert world.detect("org_kind_mismatch")[key("GA")].details["subtree_members"] == 100


# --- terms -----------------------------------------------------------------------------------------

ELECTED = dt.date(2022, 6, 15)  # 3-year term → due 2025-06-15; 5-year → 2027-06-15


@pytest.mark.parametrize(("today", "stage"), [
    (dt.date(2025, 6, 15) - D(91), None),
    (dt.date(2025, 6, 15) - D(90), "expiring"),
    (dt.date(2025, 6, 14), "expiring"),   # the day before the anniversary
    (dt.date(2025, 6, 15), "expiring"),   # the anniversary: the election is due today, not late
    (dt.date(2025, 6, 16), "expired"),    # the day after
])
def test_term_boundaries(world: World, today: dt.date, stage: str | None) -> None:
    world.org("B", elected_on=ELECTED, term_years=None)
    found = world.detect("term_expired", today=today)
    assert (found[key("B")].details["stage"] if found else None) == stage
    if found:
        assert found[key("B")].details["expires_on"] == "2025-06-15"
        assert found[key("B")].details["term_years_from"] == "default"


def test_term_years_by_kind_org_override_and_window(world: World) -> None:
    world.org("C", kind="committee", elected_on=ELECTED)                  # default 5 → 2027
    world.org("C3", kind="committee", elected_on=ELECTED, term_years=3)  # its own term
    world.org("GB", kind="general_branch", elected_on=ELECTED)
    world.org("G", kind="group", elected_on=dt.date(2000, 1, 1))         # groups are not judged
    world.org("NEW", elected_on=None)
    day = dt.date(2025, 6, 16)
    assert set(world.detect("term_expired", today=day)) == {key("C3"), key("GB")}
    assert world.detect("term_expired", today=day)[key("C3")].details["term_years_from"] == "org"
    # thresholds: the committee default and the window come from config
    assert set(world.detect("term_expired", {"term_expired": {"committee_years": 3}}, today=day)) == {
        key("C"), key("C3"), key("GB")}
    early = dt.date(2025, 6, 15) - D(100)
    assert world.detect("term_expired", today=early) == {}
    assert set(world.detect("term_expired", {"term_expired": {"warning_days": 100}}, today=early)) == {
        key("C3"), key("GB")}
    assert world.detect("term_expired", {"term_expired": {"warning_days": 0}}, today=dt.date(2025, 6, 15)) == {}


def test_leap_day_anniversaries() -> None:
    assert add_years(dt.date(2024, 2, 29), 1) == dt.date(2025, 3, 1) == generator_add_years(dt.date(2024, 2, 29), 1)
    for end in (dt.date(2025, 2, 28), dt.date(2025, 3, 1), dt.date(2024, 2, 29), dt.date(2024, 3, 1)):
        for years in (1, 3, 4, 5):
            bound = last_start(end, years)
            assert add_years(bound, years) <= end < add_years(bound + D(1), years)


# --- secretary ---------------------------------------------------------------------------------------


def test_secretary_tenure(world: World) -> None:
    anniversary = add_years(TODAY, -1)
    world.members(world.org("OK", secretary=" 张一 "), full=1, name="张一", full_member_on=anniversary)
    world.members(world.org("SHORT", secretary="张二"), full=1, name="张二", full_member_on=anniversary + D(1))
    world.members(world.org("PROB", secretary="张三"), probationary=1, name="张三")
    world.members(world.org("AWAY", secretary="张四"), full=1)
    world.members("OK", full=1, name="张四")  # a namesake in another branch does not count
    world.members(world.org("TWO", secretary="张五"), full=1, name="张五", full_member_on=TODAY)
    world.members("TWO", full=1, name="张五", full_member_on=dt.date(2000, 1, 1))  # one suffices
    world.members(world.org("EST", secretary="张六"), full=1, name="张六", full_member_on=None,
                  joined_on=add_years(anniversary, -1) + D(1))  # full only from joined + 1 year
    world.org("NONE", secretary=None)
    world.members(world.org("LEFT", secretary="张七"), full=1, name="张七", status="transferred_out")

    found = world.detect("secretary_tenure")
    assert {k: v.details["stage"] for k, v in found.items()} == {
        key("SHORT"): "short_tenure", key("PROB"): "not_full_member", key("AWAY"): "not_a_member",
        key("EST"): "short_tenure", key("LEFT"): "not_a_member"}
    assert found[key("SHORT")].details["full_member_on"] == (anniversary + D(1)).isoformat()
    assert set(world.detect("secretary_tenure", {"secretary_tenure": {"min_years": 0}})) == {
        key("PROB"), key("AWAY"), key("LEFT")}


# --- probation ----------------------------------------------------------------------------------------

ADMITTED = dt.date(2022, 5, 10)  # no 29 February ahead: day 365 is the anniversary 2023-05-10


@pytest.mark.parametrize(("day", "stage"), [
    (334, None), (335, "reminder"),   # 30 days before the due date
    (365, "reminder"),                 # the anniversary: conversion due today, not overdue
    (366, "overdue"),
])
def test_probation_day_365_366(world: World, day: int, stage: str | None) -> None:
    [pid] = world.members(world.org("B"), probationary=1, joined_on=ADMITTED)
    found = world.detect("probation_overdue", today=ADMITTED + D(day))
    v = found.get(f"person:{pid}")
    assert (v.details["stage"] if v else None) == stage
    if v:
        assert v.details["due_on"] == "2023-05-10" and v.party_org_code == "B" and v.subject_type == "person"


def test_probation_leap_day_converted_and_window(world: World) -> None:
    [leap] = world.members(world.org("B"), probationary=1, joined_on=dt.date(2024, 2, 29))
    world.members("B", full=1, joined_on=dt.date(2020, 1, 1))      # converted: not a finding
    world.members("B", probationary=1, joined_on=None)             # no admission date: not judged
    world.members("B", probationary=1, joined_on=dt.date(2020, 1, 1), status="removed")

    def stages(today: dt.date, rules: dict[str, Any] | None = None) -> dict[str, str]:
        return {k: v.details["stage"] for k, v in world.detect("probation_overdue", rules, today).items()}

    assert stages(dt.date(2025, 3, 1)) == {f"person:{leap}": "reminder"}  # due 1 March in a common year
    assert stages(dt.date(2025, 3, 2)) == {f"person:{leap}": "overdue"}
    assert stages(dt.date(2025, 1, 1)) == {}
    assert stages(dt.date(2025, 1, 1), {"probation_overdue": {"reminder_days": 59}}) == {f"person:{leap}": "reminder"}
    assert stages(dt.date(2025, 3, 1), {"probation_overdue": {"reminder_days": 0}}) == {}


# --- config ------------------------------------------------------------------------------------------


def test_thresholds_change_findings_without_code_changes(world: World) -> None:
    world.members(world.org("B3"), full=3)
    world.members(world.org("B8", has_committee=False), full=8)
    assert key("B3") not in world.detect("branch_too_small")
    assert key("B3") in world.detect("branch_too_small", {"branch_too_small": {"min_full_members": 4}})
    assert key("B8") not in world.detect("committee_required", {"committee_required": {"min_full_members": 9}})
    assert key("B8") in world.detect("branch_too_large", {"branch_too_large": {"max_members": 7}})
    with world.sessions() as s:
        detected = world.rule_set({"branch_too_small": {"enabled": False}}).detect(s, TODAY)
    assert "branch_too_small" not in detected and "committee_required" in detected


@pytest.mark.parametrize(("rules", "named"), [
    ({"branch_too_small": {"min_full_member": 3}}, "rules.branch_too_small.min_full_member"),
    ({"branch_too_small": {"min_full_members": "three"}}, "rules.branch_too_small.min_full_members"),
    ({"branch_too_large": {"max_members": 0}}, "rules.branch_too_large.max_members"),
    ({"committee_required": {"min_full_members": True}}, "rules.committee_required.min_full_members"),
    ({"term_expired": {"warning_days": -1}}, "rules.term_expired.warning_days"),
    ({"org_kind_mismatch": {"committee_from": 50}}, "rules.org_kind_mismatch.committee_from"),
    ({"probation_overdue": {"reminder_days": 1.5}}, "rules.probation_overdue.reminder_days"),
    ({"settings": {"today": "2025-02-30"}}, "rules.settings.today"),
    ({"branch_too_smal": {}}, "rules.branch_too_smal"),
])
def test_invalid_threshold_is_a_config_error_naming_the_key(rules: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        RuleSet.from_config(rules)


def test_rules_list_every_rule_of_party_rules_md() -> None:
    assert list(RULES) == ["branch_too_small", "branch_too_large", "committee_required", "org_kind_mismatch",
                           "term_expired", "secretary_tenure", "probation_overdue", "meetings_missing",
                           "dues_underpaid", "dues_overdue", "transfer_stale"]
    reference = Path("/work/shared/reference/party-rules.md")
    if reference.exists():  # every id and regulation as the reference spells them
        text = reference.read_text(encoding="utf-8")
        for rule in RULES.values():
            assert f"`{rule.id}`" in text
            assert all(part.strip() in text for part in rule.reference.split(";"))


# --- life cycle (the alignment Reconciler's semantics) ---------------------------------------------


def test_findings_close_when_fixed_and_ignored_stays_ignored_until_inputs_change(world: World) -> None:
    world.members(world.org("B"), full=2)
    out = world.run()
    assert out.found["branch_too_small"] == 1 and out.result.opened == 1
    m = world.mismatch("branch_too_small", key("B"))
    assert (m.state, m.severity, m.party_org_code, m.subject_type) == ("open", "medium", "B", "party_org")

    world.set(Mismatch, Mismatch.id == m.id, state="ignored")
    world.run()
    assert world.mismatch("branch_too_small", key("B")).state == "ignored"  # same inputs

    world.set(Membership, Membership.party_org_code == "B", status="transferred_out")  # 2 → 0
    world.members("B", full=1)
    world.run()
    again = world.mismatch("branch_too_small", key("B"))
    assert again.id == m.id and again.state == "open" and again.details["full_members"] == 1

    world.members("B", full=2)  # fixed
    out = world.run()
    closed = world.mismatch("branch_too_small", key("B"))
    assert closed.state == "closed" and closed.closed_at is not None and out.result.closed == 1
    with world.sessions() as s:
        feed = s.scalars(select(Change).where(Change.entity == "mismatch", Change.entity_id == m.id)
                         .order_by(Change.seq)).all()
    assert [c.op for c in feed] == ["create", "update", "update"]
    assert feed[1].changed["state"] == ["ignored", "open"] and feed[2].changed["state"] == ["open", "closed"]


def test_an_ignored_reminder_reopens_as_overdue_with_its_severity(world: World) -> None:
    [pid] = world.members(world.org("B"), probationary=1, joined_on=ADMITTED)
    subject = f"person:{pid}"
    world.run(today=ADMITTED + D(360))
    m = world.mismatch("probation_overdue", subject)
    assert (m.state, m.severity, m.details["stage"]) == ("open", "low", "reminder")
    world.set(Mismatch, Mismatch.id == m.id, state="ignored")
    world.run(today=ADMITTED + D(362))
    assert world.mismatch("probation_overdue", subject).state == "ignored"  # details do not move daily

    world.run(today=ADMITTED + D(366))
    m2 = world.mismatch("probation_overdue", subject)
    assert (m2.id, m2.state, m2.severity, m2.details["stage"]) == (m.id, "open", "medium", "overdue")
    with world.sessions() as s:
        last = s.scalars(select(Change).where(Change.entity == "mismatch", Change.entity_id == m.id)
                         .order_by(Change.seq.desc())).first()
    assert last.changed["severity"] == ["low", "medium"] and last.changed["state"] == ["ignored", "open"]

    world.set(Membership, Membership.person_id == pid, category="full", full_member_on=add_years(ADMITTED, 1))
    world.run(today=ADMITTED + D(370))
    assert world.mismatch("probation_overdue", subject).state == "closed"


def test_disabling_a_rule_closes_its_findings(world: World) -> None:
    world.members(world.org("B"), full=1)
    world.run()
    out = world.run({"branch_too_small": {"enabled": False}})
    assert "branch_too_small" not in out.found
    assert world.mismatch("branch_too_small", key("B")).state == "closed"


# --- a generated enterprise: planted violations, no false ones -------------------------------------


def oracle(site: Site, today: dt.date) -> set[tuple[str, str, str | None]]:
    """The default rules computed member by member in Python, independently of the SQL."""
    with session_factory(site.runtime.engine)() as s:
        orgs = [o for o in s.scalars(select(PartyOrg)) if o.active]
        names = {p.id: p.name.strip() for p in s.scalars(select(Person))}
        members = defaultdict(list)
        for m in s.scalars(select(Membership)):
            if m.active and m.status == "active":
                members[m.party_org_code].append(m)
    children = defaultdict(list)
    for o in orgs:
        children[o.parent_code].append(o.code)

    def subtree(code: str) -> int:
        return len(members[code]) + sum(subtree(c) for c in children[code])

    out: set[tuple[str, str, str | None]] = set()
    rank = {"branch": 0, "general_branch": 1, "committee": 2}
    for o in orgs:
        direct, k = members[o.code], key(o.code)
        full = [m for m in direct if m.category == "full"]
        if o.kind == "branch":
            if len(full) < 3:
                out.add(("branch_too_small", k, None))
            if len(direct) > 50:
                out.add(("branch_too_large", k, None))
            if len(full) >= 7 and not o.has_committee:
                out.add(("committee_required", k, None))
            if o.secretary and o.secretary.strip():
                named = [m for m in direct if names[m.person_id] == o.secretary.strip()]
                named_full = [m for m in named if m.category == "full"]
                def tenured(m: Membership) -> bool:
                    if m.full_member_on is None and m.joined_on is None:
                        return True  # not judged
                    since = m.full_member_on or generator_add_years(m.joined_on, 1)
                    return generator_add_years(since, 1) <= today

                if not any(tenured(m) for m in named_full):
                    stage = "not_a_member" if not named else "not_full_member" if not named_full else "short_tenure"
                    out.add(("secretary_tenure", k, stage))
        if o.kind in rank:
            n = subtree(o.code)
            if rank[o.kind] < (2 if n >= 100 else 1 if n >= 50 else 0):
                out.add(("org_kind_mismatch", k, None))
            if o.elected_on:
                years = o.term_years or (5 if o.kind == "committee" else 3)
                due = generator_add_years(o.elected_on, years)
                if due < today:
                    out.add(("term_expired", k, "expired"))
                elif (due - today).days <= 90:
                    out.add(("term_expired", k, "expiring"))
    for direct in members.values():
        for m in direct:
            if m.category == "probationary" and m.joined_on:
                due = generator_add_years(m.joined_on, 1)
                if due < today or (due - today).days <= 30:
                    out.add(("probation_overdue", f"person:{m.person_id}", "overdue" if due < today else "reminder"))
    return out


def findings(site: Site) -> set[tuple[str, str, str | None]]:
    with session_factory(site.runtime.engine)() as s:
        rows = s.scalars(select(Mismatch).where(Mismatch.rule.in_(list(RULES)), Mismatch.closed_at.is_(None))).all()
    return {(m.rule, m.subject_key, m.details.get("stage")) for m in rows}


@pytest.fixture
def gsite(tmp_path: Path, sqlite_url: str) -> Site:
    site = make_site(tmp_path / "src", sqlite_url, staff=600, seed=11)
    site.runtime.config.rules = {"settings": {"today": REFERENCE_DATE.isoformat()}}
    return site


def test_generated_enterprise_planted_violations_found_and_no_false_ones(gsite: Site) -> None:
    ent, today = gsite.enterprise, REFERENCE_DATE
    assert gsite.sync().status == "succeeded"
    before = findings(gsite)
    assert before == oracle(gsite, today)

    flagged = {subject for _, subject, _ in before}
    branches = [o for o in ent.party_orgs if o["kind"] == "branch" and key(o["code"]) not in flagged
                and not o["retirees"]]
    active = [r for r in ent.party_members if r["status"] == "active"]
    full_in = defaultdict(list)
    for r in active:
        if r["category"] == "full":
            full_in[r["party_org_code"]].append(r)
    planted: set[tuple[str, str, str | None]] = set()

    big = next(o for o in branches if len(full_in[o["code"]]) >= 7)
    big["has_committee"] = False
    planted.add(("committee_required", key(big["code"]), None))

    late, soon = [o for o in branches if o is not big][:2]
    late["elected_on"] = (add_years(today, -3) - D(1)).isoformat()
    soon["elected_on"] = (add_years(today, -3) + D(10)).isoformat()
    late["term_years"] = soon["term_years"] = 3
    planted |= {("term_expired", key(late["code"]), "expired"), ("term_expired", key(soon["code"]), "expiring")}

    odd = next(o for o in branches if o not in (big, late, soon) and o["secretary"])
    odd["secretary"] = "查无此人"
    planted.add(("secretary_tenure", key(odd["code"]), "not_a_member"))

    ent.party_orgs.append({"code": "PNEW", "name": "新设党支部", "kind": "branch", "parent_code": ent.party_orgs[0]["code"],
                           "covers": [], "secretary": None, "elected_on": None, "term_years": None,
                           "has_committee": None, "retirees": False})
    planted.add(("branch_too_small", key("PNEW"), None))

    row = next(r for r in active if r["category"] == "probationary" and r.get("employee_no"))
    staff = next(s for s in ent.staff if s["employee_no"] == row["employee_no"])
    row["joined_on"] = staff["party_joined_on"] = (add_years(today, -1) - D(1)).isoformat()  # day 366
    gsite.rewrite()
    assert gsite.sync().status == "succeeded"
    with session_factory(gsite.runtime.engine)() as s:
        pid = s.scalar(select(Person.id).where(Person.employee_no == row["employee_no"]))
    planted.add(("probation_overdue", f"person:{pid}", "overdue"))

    after = findings(gsite)
    assert len(planted) == 6 and not planted & before
    assert planted <= after
    assert after - before == planted - before
    assert after == oracle(gsite, today)


def test_sync_evaluates_rules_with_config_thresholds_and_a_bad_block_fails_first(gsite: Site) -> None:
    result = gsite.sync()
    assert result.mismatches_by_rule.get("branch_too_small", 0) >= 1
    gsite.runtime.config.rules["branch_too_small"] = {"min_full_members": 1000}
    result = gsite.sync()
    assert result.mismatches_by_rule.get("branch_too_small", 0) == len(
        [o for o in gsite.enterprise.party_orgs if o["kind"] == "branch"])
    gsite.runtime.config.rules["branch_too_small"] = {"min_full_members": -1}
    with session_factory(gsite.runtime.engine)() as s:
        runs = s.scalar(select(SyncRun.id).order_by(SyncRun.id.desc()))
    with pytest.raises(ConfigError, match=r"rules\.branch_too_small\.min_full_members"):
        gsite.sync()
    with session_factory(gsite.runtime.engine)() as s:
        assert s.scalar(select(SyncRun.id).order_by(SyncRun.id.desc())) == runs  # nothing ran


def test_cli_rules_list_and_run(gsite: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    from web.cli import cli

    assert gsite.sync().status == "succeeded"
    config = gsite.folder / "dualline.yaml"
    config.write_text(config.read_text(encoding="utf-8")
                      + "rules:\n  settings: {today: 2026-10-31}\n  term_expired: {warning_days: 120}\n",
                      encoding="utf-8")
    monkeypatch.setenv("DUALLINE_CONFIG", str(config))
    monkeypatch.setenv("DUALLINE_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("DUALLINE_DATABASE_URL", str(gsite.runtime.engine.url.render_as_string(hide_password=False)))
    runner = CliRunner()
    listed = json.loads(runner.invoke(cli, ["rules", "list", "--json"], catch_exceptions=False).output)
    by_id = {it["id"]: it for it in listed["items"]}
    assert set(by_id) == set(RULES) and by_id["term_expired"]["thresholds"]["warning_days"] == 120
    assert by_id["secretary_tenure"]["reference"] == "支部工作条例 Art. 23"
    ran = runner.invoke(cli, ["rules", "run", "--json"], catch_exceptions=False)
    assert ran.exit_code == 0, ran.output
    payload = json.loads(ran.output)
    assert payload["today"] == "2026-10-31" and payload["found"] == payload["open_by_rule"]
    assert payload["mismatches"]["opened"] >= 0 and payload["found"]["term_expired"] >= 1
    listed_m = json.loads(runner.invoke(cli, ["mismatches", "--json", "--rule", "branch_too_small"]).output)
    assert listed_m["total"] >= 1 and listed_m["items"][0]["subject"]["type"] == "party_org"
    assert listed_m["items"][0]["subject"]["code"]

    config.write_text(config.read_text(encoding="utf-8") + "  branch_too_large: {max_members: x}\n", encoding="utf-8")
    bad = runner.invoke(cli, ["rules", "run"])
    assert bad.exit_code == 2 and "rules.branch_too_large.max_members" in bad.output


def test_every_rule_on_every_database_backend(any_db_url: str) -> None:
    """The SQL (recursive CTE, date binds, TRIM, booleans) on SQLite, PostgreSQL and MariaDB."""
    engine = make_engine(any_db_url)
    Base.metadata.create_all(engine)
    try:
        w = World(engine)
        w.org("C", kind="committee", elected_on=dt.date(2019, 1, 1))  # 5 years: expired
        w.members(w.org("SMALL", parent="C", secretary="书记甲", elected_on=TODAY), full=2, name="书记甲",
                  full_member_on=TODAY - D(10))
        w.members(w.org("BIG", parent="C", has_committee=False), full=45)
        w.members("BIG", probationary=6, joined_on=TODAY)
        w.members(w.org("ON", parent="C", has_committee=True), probationary=1, joined_on=add_years(TODAY, -1) - D(1))
        w.members("ON", full=7)
        out = w.run()
        assert out.found == {"branch_too_small": 1, "branch_too_large": 1, "committee_required": 1,
                             "org_kind_mismatch": 1, "term_expired": 1, "secretary_tenure": 1,
                             "probation_overdue": 1, "meetings_missing": 0, "dues_underpaid": 0,
                             "dues_overdue": 0, "transfer_stale": 0}
        assert w.mismatch("secretary_tenure", key("SMALL")).details["full_member_on"] == (TODAY - D(10)).isoformat()
        assert w.mismatch("org_kind_mismatch", key("BIG")).details["subtree_members"] == 51
        assert w.mismatch("term_expired", key("C")).details["expires_on"] == "2024-01-01"
        assert w.run().result.opened == 0  # stable details: nothing churns on a rerun
    finally:
        engine.dispose()


def test_after_sync_false_leaves_findings_to_rules_run(gsite: Site) -> None:
    gsite.runtime.config.rules["settings"]["after_sync"] = False
    result = gsite.sync()
    assert not set(result.mismatches_by_rule) & set(RULES)
