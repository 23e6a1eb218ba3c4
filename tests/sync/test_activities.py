"""Organizational life (issue 7): the `activities` kind synced from a file with Chinese type names,
and the `meetings_missing` rule at its boundaries (period edges, quorum, committee), with its
thresholds from config."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from mappings.codes import ACTIVITY_TYPE
from records.db import make_engine, session_factory, upgrade
from records.models import Activity, Base, Change, Mismatch, PartyOrg
from sync.alignment import Violation
from sync.config import parse_config
from sync.engine import SyncEngine
from sync.rules.base import RuleContext
from sync.rules.engine import RuleSet
from sync.rules.meetings_missing import RULE, completed_periods
from sync.runtime import Runtime
from tests.conftest import TEST_SECRET

# Q2 2025 (April–June), June 2025 and the year 2024 are the last completed periods.
TODAY = dt.date(2025, 7, 15)
RID = "meetings_missing"


# --- the kind, synced from a file -------------------------------------------------------------------


def test_activities_from_a_csv_file_with_chinese_type_names(tmp_path: Path, sqlite_url: str) -> None:
    path = tmp_path / "activities.csv"
    path.write_text(
        "id,party_org_code,type,held_on,attendees,expected\n"
        "A1,B01,支部党员大会,2025-06-30,12,20\n"
        "A2,B01,支委会,2025/6/3,5,5\n"
        "A3,B01,主题党日,2025.6.20,18,\n"
        "A4,B01,民主评议党员,2024-12-20,19,20\n"
        "A5,B01,开会,2025-06-01,1,1\n",  # not an activity type: quarantined
        encoding="utf-8")
    config = parse_config({
        "database": sqlite_url, "secret_key": TEST_SECRET,
        "sources": {"party": {"connector": "file", "path": str(path), "provides": ["activities"]}},
        "guard": {"max_deactivate_ratio": 1},
    }, path=None)
    runtime = Runtime(config)
    upgrade(runtime.engine)  # the migrations, 0006 included
    result = SyncEngine(runtime).run()
    assert result.status == "succeeded"
    assert result.counts["activities"]["created"] == 4 and result.counts["activities"]["quarantined"] == 1
    assert result.quarantined[0]["field"] == "type"
    with session_factory(runtime.engine)() as s:
        rows = {a.activity_key: a for a in s.scalars(select(Activity))}
        feed = s.scalars(select(Change.entity).where(Change.entity == "activity")).all()
    assert set(rows) == {"A1", "A2", "A3", "A4"}
    assert (rows["A1"].type, rows["A1"].held_on, rows["A1"].attendees, rows["A1"].expected, rows["A1"].party_org_code) == (
        "member_meeting", dt.date(2025, 6, 30), 12, 20, "B01")
    assert rows["A2"].type == "committee_meeting" and rows["A2"].held_on == dt.date(2025, 6, 3)
    assert rows["A3"].type == "theme_day" and rows["A3"].expected is None
    assert rows["A4"].type == "democratic_review"
    assert all(a.active and a.provenance["type"] == "party" for a in rows.values())
    assert len(feed) == 4

    again = SyncEngine(runtime).run()
    assert again.counts["activities"]["unchanged"] == 4 and again.counts["activities"]["created"] == 0

    # A changed row updates in place (keyed by the source's id); a row gone from a full pull deactivates.
    path.write_text("id,party_org_code,type,held_on,attendees,expected\n"
                    "A1,B01,党员大会,2025-06-30,8,20\n"
                    "A2,B01,支委会,2025/6/3,5,5\n", encoding="utf-8")
    third = SyncEngine(runtime).run()
    assert third.status == "succeeded"
    assert third.counts["activities"]["updated"] == 1 and third.counts["activities"]["deactivated"] == 2
    assert third.counts["activities"]["unchanged"] == 1
    with session_factory(runtime.engine)() as s:
        rows = {a.activity_key: a for a in s.scalars(select(Activity))}
    assert rows["A1"].attendees == 8 and rows["A1"].type == "member_meeting"
    assert not rows["A3"].active and not rows["A4"].active


def test_activity_type_table() -> None:
    assert ACTIVITY_TYPE.lookup("支部党员大会") == "member_meeting"
    assert ACTIVITY_TYPE.lookup("支委会") == ACTIVITY_TYPE.lookup("支部委员会会议") == "committee_meeting"
    assert ACTIVITY_TYPE.lookup("党小组会") == "group_meeting"
    assert ACTIVITY_TYPE.lookup("党课") == "party_lecture"
    assert ACTIVITY_TYPE.lookup("主题党日") == "theme_day"
    assert ACTIVITY_TYPE.lookup("组织生活会") == "org_life_meeting"
    assert ACTIVITY_TYPE.lookup("民主评议") == ACTIVITY_TYPE.lookup("民主评议党员") == "democratic_review"
    assert ACTIVITY_TYPE.lookup("theme_day") == "theme_day"  # canonical values pass through


# --- the rule ----------------------------------------------------------------------------------------


class World:
    def __init__(self, engine: Engine) -> None:
        self.sessions = session_factory(engine)
        self._n = 0

    def org(self, code: str, kind: str = "branch", **values: Any) -> str:
        with self.sessions() as s, s.begin():
            s.add(PartyOrg(code=code, name=f"{code}支部", kind=kind, **values))
        return code

    def held(self, org: str, type_: str, on: dt.date, attendees: int | None = None,
             expected: int | None = None, **values: Any) -> str:
        self._n += 1
        key = f"ACT{self._n}"
        with self.sessions() as s, s.begin():
            s.add(Activity(activity_key=key, party_org_code=org, type=type_, held_on=on,
                           attendees=attendees, expected=expected, **values))
        return key

    def everything(self, org: str, year: int = 2025, quarter: int = 2) -> None:
        """Every default requirement of `org` met for June 2025, Q2 2025 and 2024."""
        for type_ in ("committee_meeting", "theme_day", "group_meeting"):
            self.held(org, type_, dt.date(2025, 6, 10))
        for type_ in ("member_meeting", "party_lecture"):
            self.held(org, type_, dt.date(2025, 5, 10))
        for type_ in ("org_life_meeting", "democratic_review"):
            self.held(org, type_, dt.date(2024, 12, 10))

    def detect(self, rules: dict[str, Any] | None = None, today: dt.date = TODAY) -> dict[str, Violation]:
        thresholds = RULE.Thresholds().load((rules or {}).get(RID, {}))
        with self.sessions() as s:
            ctx = RuleContext(conn=s.connection(), today=today, thresholds=thresholds)
            return {v.subject_key: v for v in RULE.detect(ctx)}

    def missing(self, rules: dict[str, Any] | None = None, today: dt.date = TODAY) -> set[tuple[str, str, str]]:
        """(org, type, period) of every finding."""
        return {(v.party_org_code, v.details["type"], v.details["period"]) for v in self.detect(rules, today).values()}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    engine = make_engine(f"sqlite:///{tmp_path / 'activities.db'}")
    Base.metadata.create_all(engine)
    yield World(engine)
    engine.dispose()


def test_completed_periods() -> None:
    assert completed_periods(TODAY, "month", 2) == [("2025-06", dt.date(2025, 6, 1), dt.date(2025, 7, 1)),
                                                    ("2025-05", dt.date(2025, 5, 1), dt.date(2025, 6, 1))]
    assert completed_periods(TODAY, "quarter", 1) == [("2025Q2", dt.date(2025, 4, 1), dt.date(2025, 7, 1))]
    assert completed_periods(dt.date(2025, 1, 1), "quarter", 1) == [("2024Q4", dt.date(2024, 10, 1), dt.date(2025, 1, 1))]
    assert completed_periods(dt.date(2025, 1, 1), "year", 1) == [("2024", dt.date(2024, 1, 1), dt.date(2025, 1, 1))]
    assert completed_periods(dt.date(2025, 12, 31), "month", 1)[0][0] == "2025-11"  # December still runs


def test_a_fully_active_branch_has_no_findings_and_an_idle_one_every_type(world: World) -> None:
    world.everything(world.org("OK", has_committee=True))
    world.org("IDLE", has_committee=True)
    found = world.detect()
    assert world.missing() == {("IDLE", t, p) for t, p in [
        ("member_meeting", "2025Q2"), ("committee_meeting", "2025-06"), ("party_lecture", "2025Q2"),
        ("theme_day", "2025-06"), ("org_life_meeting", "2024"), ("democratic_review", "2024")]}
    v = found["party_org:IDLE|member_meeting|2025Q2"]
    assert v.subject_type == "party_org" and v.party_org_code == "IDLE"
    assert (v.details["held"], v.details["counted"], v.details["required"]) == (0, 0, 1)
    assert (v.details["period_start"], v.details["period_end"]) == ("2025-04-01", "2025-06-30")
    assert v.details["regulation"] == RULE.reference and v.details["type_regulation"] == "支部工作条例 Art. 11"


def test_last_day_of_the_quarter_counts_the_first_day_of_the_next_does_not(world: World) -> None:
    world.held(world.org("LAST"), "member_meeting", dt.date(2025, 6, 30))
    world.held(world.org("FIRST"), "member_meeting", dt.date(2025, 7, 1))   # Q3: still running, not judged
    world.held(world.org("BEFORE"), "member_meeting", dt.date(2025, 3, 31))  # Q1: not Q2
    world.held(world.org("START"), "member_meeting", dt.date(2025, 4, 1))
    member = {org for org, t, _ in world.missing() if t == "member_meeting"}
    assert member == {"FIRST", "BEFORE"}
    # Once Q3 has ended, FIRST's meeting counts for it.
    q3 = {org for org, t, p in world.missing(today=dt.date(2025, 10, 1)) if t == "member_meeting"}
    assert q3 == {"LAST", "BEFORE", "START"}


@pytest.mark.parametrize(("attendees", "expected", "counts"), [
    (5, 10, False),     # exactly half: no quorum
    (6, 10, True),      # half + 1
    (4, 9, False),      # 4 of 9: not more than half
    (5, 9, True),
    (3, None, True),    # expected unknown: counts
    (None, 10, True),   # attendance unknown: counts
])
def test_member_meeting_quorum(world: World, attendees: int | None, expected: int | None, counts: bool) -> None:
    key = world.held(world.org("B"), "member_meeting", dt.date(2025, 5, 20), attendees, expected)
    found = world.detect()
    finding = found.get("party_org:B|member_meeting|2025Q2")
    assert (finding is None) is counts
    if finding is not None:
        assert (finding.details["held"], finding.details["counted"]) == (1, 0)
        assert finding.details["quorum_failed"] == [
            {"id": key, "held_on": "2025-05-20", "attendees": attendees, "expected": expected}]


def test_quorum_applies_to_member_meetings_only(world: World) -> None:
    world.held(world.org("B"), "party_lecture", dt.date(2025, 5, 20), 1, 10)
    world.held("B", "member_meeting", dt.date(2025, 5, 21), 2, 10)
    world.held("B", "member_meeting", dt.date(2025, 6, 21), 9, 10)  # a second one with quorum: enough
    assert {t for _, t, _ in world.missing()} == {"theme_day", "org_life_meeting", "democratic_review"}


def test_committee_meetings_only_where_there_is_a_committee(world: World) -> None:
    world.org("YES", has_committee=True)
    world.org("NO", has_committee=False)
    world.org("UNKNOWN", has_committee=None)
    world.held("NO", "theme_day", dt.date(2025, 6, 1))  # activities are tracked
    committee = {org for org, t, _ in world.missing() if t == "committee_meeting"}
    assert committee == {"YES"}
    world.held("YES", "committee_meeting", dt.date(2025, 6, 1))
    assert not any(t == "committee_meeting" for _, t, _ in world.missing())


def test_group_meetings_per_group_and_inactive_orgs_and_activities_ignored(world: World) -> None:
    world.everything(world.org("B"))
    world.org("G1", kind="group")
    world.held(world.org("G2", kind="group"), "group_meeting", dt.date(2025, 6, 30))
    world.org("OLD", active=False)
    world.held(world.org("GONE"), "member_meeting", dt.date(2025, 5, 1), active=False)
    world.org("GB", kind="general_branch")  # not judged
    found = world.missing()
    assert ("G1", "group_meeting", "2025-06") in found
    assert not {org for org, _, _ in found} & {"B", "G2", "OLD", "GB"}
    assert {org for org, t, _ in found if t == "group_meeting"} == {"G1"}  # branches have no group-meeting duty
    assert ("GONE", "member_meeting", "2025Q2") in found  # its only meeting was deactivated
    assert not any(t != "group_meeting" for org, t, _ in found if org.startswith("G") and org != "GONE")


def test_nothing_is_judged_until_any_activity_is_stored(world: World) -> None:
    world.org("B")
    assert world.detect() == {}
    assert world.missing({RID: {"only_if_tracked": False}}) != set()


def test_thresholds_from_config_change_the_findings(world: World) -> None:
    world.everything(world.org("B", has_committee=True))
    assert world.missing() == set()
    # two theme days a month
    assert world.missing({RID: {"types": {"theme_day": {"min": 2}}}}) == {("B", "theme_day", "2025-06")}
    world.held("B", "theme_day", dt.date(2025, 6, 25))
    assert world.missing({RID: {"types": {"theme_day": {"min": 2}}}}) == set()
    # member meetings monthly: May is held, June is not
    assert world.missing({RID: {"types": {"member_meeting": {"per": "month"}}}}) == {
        ("B", "member_meeting", "2025-06")}
    # two periods back: May has no committee meeting, Q1 no lecture or member meeting, 2023 nothing
    assert world.missing({RID: {"periods": 2}}) == {
        ("B", "committee_meeting", "2025-05"), ("B", "theme_day", "2025-05"),
        ("B", "member_meeting", "2025Q1"), ("B", "party_lecture", "2025Q1"),
        ("B", "org_life_meeting", "2023"), ("B", "democratic_review", "2023")}
    # min 0 stops requiring a type; the rule can be switched off
    assert world.missing({RID: {"periods": 2, "types": {t: {"min": 0} for t in (
        "committee_meeting", "theme_day", "member_meeting", "party_lecture", "org_life_meeting",
        "democratic_review")}}}) == set()
    # and the finding records what it was judged by
    v = world.detect({RID: {"types": {"theme_day": {"min": 3}}}})["party_org:B|theme_day|2025-06"]
    assert (v.details["held"], v.details["required"], v.details["per"]) == (2, 3, "month")
    assert v.details["thresholds"]["types"] == {"theme_day": {"min": 3}}


@pytest.mark.parametrize("bad", [
    {"types": {"tea_party": {"min": 1}}},
    {"types": {"theme_day": {"per": "week"}}},
    {"types": {"theme_day": {"min": -1}}},
    {"types": {"theme_day": {"every": 1}}},
    {"periods": 0},
])
def test_invalid_thresholds_are_rejected(bad: dict[str, Any]) -> None:
    from marshmallow import ValidationError
    with pytest.raises(ValidationError):
        RULE.Thresholds().load(bad)


def test_findings_reconcile_into_the_mismatch_queue(world: World) -> None:
    """Through the engine's reconciler: one open mismatch per org, type and period; fixed → closed."""
    world.held(world.org("B"), "member_meeting", dt.date(2025, 5, 20), 5, 10)
    rules = RuleSet(thresholds={RID: RULE.Thresholds().load({})}, rules={RID: RULE})
    with world.sessions() as s, s.begin():
        out = rules.evaluate(s, None, "test", today=TODAY)
    assert out.found == {RID: 5}
    with world.sessions() as s:
        open_ = {m.subject_key: m for m in s.scalars(select(Mismatch).where(Mismatch.closed_at.is_(None)))}
    m = open_["party_org:B|member_meeting|2025Q2"]
    assert m.rule == RID and m.severity == "medium" and m.party_org_code == "B"
    world.held("B", "member_meeting", dt.date(2025, 6, 20), 6, 10)
    with world.sessions() as s, s.begin():
        rules.evaluate(s, None, "test", today=TODAY)
    with world.sessions() as s:
        closed = s.scalars(select(Mismatch).where(Mismatch.subject_key == "party_org:B|member_meeting|2025Q2")).one()
    assert closed.closed_at is not None


def test_rule_sql_on_every_database_backend(any_db_url: str) -> None:
    """The CASE-bucketed GROUP BY with date binds on SQLite, PostgreSQL and MariaDB."""
    engine = make_engine(any_db_url)
    Base.metadata.create_all(engine)
    try:
        w = World(engine)
        w.everything(w.org("OK", has_committee=True))
        w.org("NOCOMMITTEE", has_committee=False)
        w.held("NOCOMMITTEE", "member_meeting", dt.date(2025, 6, 30), 5, 10)  # no quorum
        w.held("NOCOMMITTEE", "member_meeting", dt.date(2025, 7, 1), 9, 10)   # next quarter
        w.held("NOCOMMITTEE", "party_lecture", dt.date(2025, 4, 1))
        found = w.detect()
        assert {(v.party_org_code, v.details["type"], v.details["period"]) for v in found.values()} == {
            ("NOCOMMITTEE", "member_meeting", "2025Q2"), ("NOCOMMITTEE", "theme_day", "2025-06"),
            ("NOCOMMITTEE", "org_life_meeting", "2024"), ("NOCOMMITTEE", "democratic_review", "2024")}
        v = found["party_org:NOCOMMITTEE|member_meeting|2025Q2"]
        assert (v.details["held"], v.details["counted"]) == (1, 0)
        assert [m["held_on"] for m in v.details["quorum_failed"]] == ["2025-06-30"]
        assert w.missing({RID: {"periods": 3, "types": {"theme_day": {"min": 0}}}}) >= {
            ("OK", "member_meeting", "2024Q4"), ("NOCOMMITTEE", "democratic_review", "2022")}
    finally:
        engine.dispose()
