"""Issue 7, the rest: the secretary's yearly lecture, `transfer_stale` at its boundaries and the
letter's data, points (schemes from config, caps, clamping, rankings, indices, the ledger) and the
per-org indicators — on hand-made databases with known answers."""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, func, insert, select

from records.crypto import FieldCipher
from records.db import make_engine, session_factory, upgrade
from records.models import (
    Activity, AuditLog, Base, Coverage, DuesPayment, Membership, Mismatch, OrgUnit, PartyOrg, Payroll,
    Performance, PointsEntry, Person, Transfer,
)
from sync.config import ConfigError, parse_config
from sync.indicators import org_indicators
from sync.points import PointsSettings, add_entry, member_scores, weighted_index
from sync.rules.engine import RuleSet
from sync.rules.transfer_stale import add_months
from sync.transfers import letter_data, list_transfers, next_letter_no
from tests.conftest import TEST_SECRET

TODAY = dt.date(2025, 7, 15)
CIPHER = FieldCipher(TEST_SECRET)


class World:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = session_factory(engine)
        self._n = 0

    def org(self, code: str, kind: str = "branch", parent: str | None = None, **values: Any) -> str:
        with self.sessions() as s, s.begin():
            s.add(PartyOrg(code=code, name=f"{code}党支部", kind=kind, parent_code=parent, **values))
        return code

    def person(self, org: str | None, name: str | None = None, category: str = "full", **values: Any) -> int:
        self._n += 1
        with self.sessions() as s, s.begin():
            pid = s.execute(insert(Person).values(name=name or f"党员{self._n}", employee_no=f"E{self._n:03d}",
                                                  **values).returning(Person.id)).scalar_one()
            if org is not None:
                s.add(Membership(person_id=pid, party_org_code=org, category=category,
                                 joined_on=dt.date(2010, 1, 1), full_member_on=dt.date(2011, 1, 1)))
        return pid

    def add(self, *rows: Any) -> None:
        with self.sessions() as s, s.begin():
            s.add_all(rows)

    def detect(self, rule: str, rules: dict[str, Any] | None = None, today: dt.date = TODAY) -> dict[str, Any]:
        with self.sessions() as s:
            return {v.subject_key: v for v in RuleSet.from_config(rules or {}).detect(s, today)[rule]}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    engine = make_engine(f"sqlite:///{tmp_path / 'std.db'}")
    Base.metadata.create_all(engine)
    yield World(engine)
    engine.dispose()


def no(pid: int) -> str:
    return f"E{pid:03d}"


# --- the secretary's yearly party lecture -------------------------------------------------------------


def test_secretary_lecture_once_a_year_by_name_or_employee_number(world: World) -> None:
    for code in ("BYNAME", "BYNO", "OTHER", "NONE"):
        world.org(code, secretary=f"{code}书记")
    world.org("NOSEC")
    sec_no = no(world.person("BYNO", name="BYNO书记"))
    world.add(
        Activity(activity_key="L1", party_org_code="BYNAME", type="party_lecture", held_on=dt.date(2024, 12, 31),
                 lecturer=" BYNAME书记 "),
        Activity(activity_key="L2", party_org_code="BYNO", type="party_lecture", held_on=dt.date(2024, 1, 1),
                 lecturer=sec_no),
        Activity(activity_key="L3", party_org_code="OTHER", type="party_lecture", held_on=dt.date(2024, 6, 1),
                 lecturer="外请专家"),
        Activity(activity_key="L4", party_org_code="NONE", type="party_lecture", held_on=dt.date(2025, 1, 1),
                 lecturer="NONE书记"),  # 2025 is still running: not the judged year
        Activity(activity_key="L5", party_org_code="NOSEC", type="party_lecture", held_on=dt.date(2024, 3, 1),
                 lecturer="某人"),
    )
    found = {k for k, v in world.detect("meetings_missing").items() if v.details["type"] == "secretary_lecture"}
    assert found == {"party_org:OTHER|secretary_lecture|2024", "party_org:NONE|secretary_lecture|2024"}
    # `min: 0` turns it off; with no lecturer recorded anywhere it is not judged at all.
    off = {"meetings_missing": {"types": {"secretary_lecture": {"per": "year", "min": 0}}}}
    assert not any(v.details["type"] == "secretary_lecture" for v in world.detect("meetings_missing", off).values())


def test_secretary_lecture_not_judged_without_lecturers(world: World) -> None:
    world.org("B1", secretary="张书记")
    world.add(Activity(activity_key="A1", party_org_code="B1", type="party_lecture", held_on=dt.date(2024, 5, 1)))
    assert not any(v.details["type"] == "secretary_lecture" for v in world.detect("meetings_missing").values())


# --- transfers -------------------------------------------------------------------------------------------


def _transfer(pid: int, issued: dt.date, valid: dt.date | None = None, **values: Any) -> Transfer:
    return Transfer(**({"person_id": pid, "kind": "internal", "from_party_org_code": "B1",
                        "to_party_org_code": "B2", "category": "full", "issued_on": issued,
                        "valid_until": valid, "status": "issued", "created_by": "officer"} | values))


def test_add_months_clamps_to_the_month_end() -> None:
    assert add_months(dt.date(2025, 1, 31), 1) == dt.date(2025, 2, 28)
    assert add_months(dt.date(2024, 11, 30), 3) == dt.date(2025, 2, 28)
    assert add_months(dt.date(2025, 4, 15), 3) == dt.date(2025, 7, 15)


@pytest.mark.parametrize(("issued", "valid", "stale"), [
    (dt.date(2025, 4, 15), None, False),              # default 3 months → 2025-07-15 = today: still valid
    (dt.date(2025, 4, 14), None, True),               # → 2025-07-14: the day after is stale
    (dt.date(2025, 1, 1), dt.date(2025, 7, 15), False),
    (dt.date(2025, 1, 1), dt.date(2025, 7, 14), True),
])
def test_transfer_stale_boundaries(world: World, issued: dt.date, valid: dt.date | None, stale: bool) -> None:
    world.org("B1"), world.org("B2")
    pid = world.person("B1")
    world.add(_transfer(pid, issued, valid))
    found = world.detect("transfer_stale")
    assert bool(found) is stale
    if stale:
        (v,) = found.values()
        assert v.subject_key.startswith(f"person:{pid}|transfer:") and v.party_org_code == "B1"
        assert v.other_party_org_code == "B2" and v.details["transfer"]["valid_until"] == (valid or add_months(issued, 3)).isoformat()


def test_transfer_stale_ignores_received_and_cancelled_and_reads_its_thresholds(world: World) -> None:
    world.org("B1"), world.org("B2")
    pid = world.person("B1")
    world.add(_transfer(pid, dt.date(2025, 1, 1), status="received", received_on=dt.date(2025, 1, 20)),
              _transfer(pid, dt.date(2025, 1, 1), status="cancelled"),
              _transfer(pid, dt.date(2025, 3, 20)))  # 3 months → 2025-06-20
    assert len(world.detect("transfer_stale")) == 1
    assert world.detect("transfer_stale", {"transfer_stale": {"validity_months": 6}}) == {}
    assert world.detect("transfer_stale", {"transfer_stale": {"grace_days": 25}}) == {}
    assert len(world.detect("transfer_stale", {"transfer_stale": {"grace_days": 24}})) == 1


def test_letter_data_and_numbers(world: World) -> None:
    world.org("B1"), world.org("B2")
    pid = world.person("B1", name="王芳", gender="2", ethnicity="03", birth_date=dt.date(1990, 7, 16),
                       id_number_enc=CIPHER.encrypt("110105199007160026"), id_number_masked="110105********0026")
    with world.sessions() as s:
        assert next_letter_no(s, dt.date(2025, 6, 1)) == "2025第0001号"
    world.add(_transfer(pid, dt.date(2025, 6, 1), dt.date(2025, 8, 30), letter_no="2025第0001号",
                        dues_paid_until=dt.date(2025, 5, 1), to_party_org_code=None, to_org_name="外省某公司党委",
                        kind="out"))
    with world.sessions() as s:
        assert next_letter_no(s, dt.date(2025, 12, 31)) == "2025第0002号"
        assert next_letter_no(s, dt.date(2026, 1, 1)) == "2026第0001号"
        (listed,) = list_transfers(s, status="issued")
        tid = listed.transfer_id
        letter = letter_data(s, tid)
        revealed = letter_data(s, tid, cipher=CIPHER, reveal=True)
        with pytest.raises(LookupError):
            letter_data(s, tid + 1)
        assert list_transfers(s, party_org_codes=["B9"]) == []
    assert (letter.name, letter.gender, letter.age, letter.ethnicity, letter.category) == ("王芳", "女", 34, "回族", "正式党员")
    assert letter.id_number == "110105********0026" and revealed.id_number == "110105199007160026"
    assert (letter.from_org, letter.to_org, letter.dues_paid_until) == ("B1党支部", "外省某公司党委", "2025-05")
    assert (letter.validity_days, letter.letter_no, letter.kind) == (90, "2025第0001号", "out")


# --- points ----------------------------------------------------------------------------------------------


def _roll(world: World, org: str, present: list[int], n: int, year: int = 2024, type_: str = "theme_day") -> None:
    for i in range(n):
        world.add(Activity(activity_key=f"{org}-{type_}-{year}-{i}-{len(present)}", party_org_code=org, type=type_,
                           held_on=dt.date(year, 1 + i % 12, 1 + i // 12), attendees=len(present),
                           attendee_nos=[no(p) for p in present]))


def test_points_default_scheme_caps_clamps_and_ranks(world: World) -> None:
    world.org("B1")
    a, b, c, d = (world.person("B1", name=n) for n in ("甲", "乙", "丙", "丁"))
    _roll(world, "B1", [a, b], 15)                      # a, b: 15 × 2 = 30 → capped at 24
    _roll(world, "B1", [c], 3)                           # c: 6
    world.add(Activity(activity_key="headcount", party_org_code="B1", type="theme_day",
                       held_on=dt.date(2024, 3, 3), attendees=4))  # no roll: nobody credited
    world.add(Performance(employee_no=no(a), period="2024", person_id=a, grade="优秀"),
              Performance(employee_no=no(b), period="2024-Q4", person_id=b, grade="良好"),
              Performance(employee_no=no(b), period="2024-Q1", person_id=b, grade="不合格"),
              Performance(employee_no=no(d), period="2024", person_id=d, grade="不合格"),
              Performance(employee_no=no(a), period="2023", person_id=a, grade="不合格"))
    with world.sessions() as s, s.begin():
        add_entry(s, person_id=b, year=2024, category="manual", points=5, reason="志愿服务", actor="officer")
        add_entry(s, person_id=d, year=2024, category="manual", points=-80, reason="违纪", actor="officer")
        add_entry(s, person_id=c, year=2023, category="manual", points=50, reason="上一年", actor="officer")
        with pytest.raises(ValueError):
            add_entry(s, person_id=c, year=2024, category="manual", points=1, reason=" ", actor="officer")
    settings = PointsSettings.load(None)
    with world.sessions() as s:
        scores = {m.name: m for m in member_scores(s, ["B1"], 2024, settings)}
        audits = s.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "points_entry"))
    assert audits == 3
    assert scores["甲"].categories == {"attendance": 24, "performance": 10, "manual": 0}
    assert scores["甲"].total == 94 and scores["乙"].total == 94  # 60 + 24 + 5 (良好, Q4 latest) + 5
    assert scores["丙"].total == 66 and scores["丙"].categories["manual"] == 0  # 2023's entry is not 2024's
    assert scores["丁"].raw_total == -25 and scores["丁"].total == 0  # 60 − 5 − 80, clamped at the floor
    assert [(scores[n].rank) for n in ("甲", "乙", "丙", "丁")] == [1, 1, 3, 4]
    assert scores["甲"].attended == 15 and scores["甲"].rollcalls == 18
    assert scores["甲"].vanguard_index == 94.0  # default member index: the points component alone


def test_points_scheme_from_config(world: World) -> None:
    world.org("B1"), world.org("B2")
    a = world.person("B1")
    b = world.person("B2")
    _roll(world, "B1", [a], 5, type_="member_meeting")
    _roll(world, "B1", [a], 5, type_="theme_day")
    _roll(world, "B2", [b], 5, type_="member_meeting")
    world.add(Performance(employee_no=no(a), period="2024", person_id=a, grade="优秀"),
              Performance(employee_no=no(b), period="2024", person_id=b, grade="优秀"))
    with world.sessions() as s, s.begin():
        add_entry(s, person_id=a, year=2024, category="volunteer", points=30, reason="x", actor="t")
        add_entry(s, person_id=a, year=2024, category="study", points=3, reason="y", actor="t")
    raw = {"schemes": {
        "default": {"base": 70, "cap": 100, "floor": 0, "rules": [
            {"category": "attendance", "per": "activity", "points": 1, "types": ["支部党员大会"]},
            {"category": "performance", "grade_points": {"优秀": 20}},
            {"category": "volunteer", "max_per_year": 10}]},
        "strict": {"base": 100, "cap": 100, "floor": 0, "rules": [
            {"category": "performance", "grade_points": {"A": -10}}]}},
        "branch_schemes": {"B2": "strict"},
        "member_index": {"weights": {"points": 1, "attendance_rate": 1}}}
    config = parse_config({"points": raw}, path=None)
    settings = PointsSettings.from_config(config)
    with world.sessions() as s:
        (sa,) = member_scores(s, ["B1"], 2024, settings)
        (sb,) = member_scores(s, ["B2"], 2024, settings)
    assert sa.categories == {"attendance": 5, "performance": 20, "volunteer": 10, "study": 3}
    assert sa.total == 100 and sa.raw_total == 108  # capped
    assert sa.vanguard_index == 100.0  # points 100, attendance 10/10
    assert sb.scheme == "strict" and sb.total == 90 and sb.vanguard_index == 95.0  # mean of 90 and 5/5 present
    assert weighted_index({"a": 50, "b": None}, {"a": 1, "b": 3}) == 50.0
    assert weighted_index({"a": None}, {"a": 1}) is None


@pytest.mark.parametrize(("raw", "path"), [
    ({"schemes": {"default": {"rules": [{"category": "attendance"}]}}}, r"points\.schemes\.default\.rules\[0\]\.points"),
    ({"schemes": {"default": {"rules": [{"category": "performance", "grade_points": {"Z": 1}}]}}},
     r"points\.schemes\.default\.rules\[0\]\.grade_points"),
    ({"schemes": {"other": {}}}, r"points\.schemes: a scheme named 'default'"),
    ({"schemes": {"default": {"floor": 100}}}, r"points\.schemes\.default\.floor"),
    ({"branch_schemes": {"B1": "nope"}}, r"points\.branch_schemes\.B1"),
    ({"member_index": {"weights": {"speed": 1}}}, r"points\.member_index\.weights"),
    ({"colour": 1}, r"points\.colour"),
])
def test_points_config_errors_name_the_key(raw: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError, match=path):
        parse_config({"points": raw}, path=None)


# --- indicators ----------------------------------------------------------------------------------------


def test_indicators_of_a_small_subtree(world: World) -> None:
    world.org("C", kind="committee", secretary="董事长甲")
    world.org("B1", parent="C", secretary="主任乙", has_committee=False)
    world.org("B2", parent="C", secretary="无名")
    world.org("X", secretary="外人")  # outside the subtree
    world.add(OrgUnit(code="U1", name="一部", manager_employee_no=None), OrgUnit(code="U2", name="二部", parent_code="U1"),
              OrgUnit(code="U9", name="别处"),
              Coverage(party_org_code="B1", org_unit_code="U1", include_descendants=True, origin="test"))
    chair = world.person("C", name="董事长甲", position="董事长", org_unit_code="U1", staff_active=True,
                         employment_status="active")
    head = world.person("B1", name="主任乙", position="工程师", org_unit_code="U2", staff_active=True,
                        employment_status="active")
    world.add(OrgUnit(code="U3", name="三部", parent_code="U1", manager_employee_no=no(head)))
    staff_only = [world.person(None, org_unit_code="U2", staff_active=True, employment_status="active") for _ in range(3)]
    world.person(None, org_unit_code="U9", staff_active=True, employment_status="active")
    grades = {chair: "优秀", head: "合格", staff_only[0]: "良好", staff_only[1]: "合格", staff_only[2]: "不合格"}
    world.add(*(Performance(employee_no=no(p), period="2024", person_id=p, grade=g) for p, g in grades.items()))
    # findings: B1 one high + one low, B2 one medium, X one high (outside), one resolved in B1
    world.add(*(Mismatch(rule=r, subject_key=f"k{i}", subject_type="party_org", party_org_code=o, severity=sev,
                         state=st, inputs_hash="x")
                for i, (r, o, sev, st) in enumerate([
                    ("dues_overdue", "B1", "high", "open"), ("term_expired", "B1", "low", "open"),
                    ("branch_too_small", "B2", "medium", "open"), ("dues_overdue", "X", "high", "open"),
                    ("branch_mismatch", "B1", "medium", "open"), ("term_expired", "B1", "high", "resolved")])))
    # meetings in 2025Q2 / June 2025 / 2024 for B1 only, everything; B2 nothing
    for type_, day in (("theme_day", dt.date(2025, 6, 3)), ("member_meeting", dt.date(2025, 5, 3)),
                       ("party_lecture", dt.date(2025, 4, 3)), ("org_life_meeting", dt.date(2024, 3, 3)),
                       ("democratic_review", dt.date(2024, 4, 3)), ("theme_day", dt.date(2025, 5, 3))):
        world.add(Activity(activity_key=f"{type_}{day}", party_org_code="B1", type=type_, held_on=day))
    # dues: head pays 2025-06 in full (3000 → 15), chair pays half of 2025-05
    world.add(Payroll(employee_no=no(head), month="2025-06", after_tax_pay=3000),
              Payroll(employee_no=no(chair), month="2025-05", after_tax_pay=4000),
              DuesPayment(employee_no=no(head), month="2025-06", amount=15),
              DuesPayment(employee_no=no(chair), month="2025-05", amount=20))
    with world.sessions() as s:
        ind = org_indicators(s, "C", today=TODAY, dues_months=2)
    assert set(ind["subtree"]) == {"C", "B1", "B2"}
    assert ind["standardization"]["penalty"] == 10 + 2 + 5 and ind["standardization"]["branches"] == 2
    assert ind["standardization"]["score"] == 91.5
    assert ind["findings"] == {"branch_mismatch": 1, "branch_too_small": 1, "dues_overdue": 1, "term_expired": 1}
    # B1 and B2 over the last 12 completed months: theme day 12 months, member meeting and lecture
    # 4 quarters, org life and review 1 year each → 22 required each; B1 held 2 + 1 + 1 + 1 + 1.
    assert ind["meetings"]["required"] == 44 and ind["meetings"]["held"] == 6
    assert ind["meetings"]["by_type"]["theme_day"] == {"held": 2, "required": 24}
    # dues 2025-05..06: chair owes 40 (May) + 40 (June, carried); head owes 15 in June, none known in May
    assert ind["dues"]["expected"] == 95 and ind["dues"]["paid"] == 35 and ind["dues"]["rate"] == round(35 / 95, 4)
    assert ind["integration"]["members"] == {"graded": 2, "good": 1, "share": 0.5}
    # staff in U1's subtree (U1, U2, U3): chair, head and the three staff; U9 is not covered
    assert ind["integration"]["staff"] == {"graded": 5, "good": 2, "share": 0.4}
    assert ind["integration"]["gap"] == 0.1
    cross = {o["party_org_code"]: o["managing"] for o in ind["cross_appointment"]["orgs"]}
    assert cross == {"C": True, "B1": True, "B2": False}  # title; manages U3; unknown person
    assert ind["cross_appointment"]["share"] == round(2 / 3, 4)


# --- the CLI ----------------------------------------------------------------------------------------------


def test_points_and_transfers_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from web.cli import cli

    db = tmp_path / "cli.db"
    config = tmp_path / "dualline.yaml"
    config.write_text(json.dumps({"database": f"sqlite:///{db}", "rules": {"settings": {"today": "2025-07-15"}},
                                  "points": {"schemes": {"default": {"base": 50, "rules": []}}}}), encoding="utf-8")
    monkeypatch.setenv("DUALLINE_CONFIG", str(config))
    monkeypatch.setenv("DUALLINE_SECRET_KEY", TEST_SECRET)
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    world = World(engine)
    world.org("B1"), world.org("B2")
    a = world.person("B1", name="甲", id_number_enc=CIPHER.encrypt("110105199007160026"),
                     id_number_masked="110105********0026")
    world.person("B1", name="乙")
    world.add(_transfer(a, dt.date(2025, 1, 2), letter_no="2025第0001号"))
    runner = CliRunner()
    added = runner.invoke(cli, ["points", "add", no(a), "--year", "2024", "--category", "manual", "--points", "7",
                                "--reason", "优秀志愿者"], catch_exceptions=False)
    assert added.exit_code == 0, added.output
    assert runner.invoke(cli, ["points", "add", "NOPE", "--year", "2024", "--category", "manual", "--points", "1",
                               "--reason", "x"]).exit_code == 2
    ranked = runner.invoke(cli, ["points", "rank", "--branch", "B1", "--year", "2024", "--json"], catch_exceptions=False)
    assert ranked.exit_code == 0, ranked.output
    data = json.loads(ranked.output)
    assert [(m["rank"], m["name"], m["total"]) for m in data["members"]] == [(1, "甲", 57), (2, "乙", 50)]
    assert data["fortress_index"] is not None and "members_points" in data["fortress_components"]
    assert runner.invoke(cli, ["points", "rank", "--branch", "NOPE", "--year", "2024"]).exit_code == 2
    listed = json.loads(runner.invoke(cli, ["transfers", "list", "--json"], catch_exceptions=False).output)
    assert listed["total"] == 1 and listed["items"][0]["id_number"] == "110105********0026"
    tid = listed["items"][0]["transfer_id"]
    letter = runner.invoke(cli, ["transfers", "letter", str(tid)], catch_exceptions=False).output
    assert "党员组织关系介绍信" in letter and "2025第0001号" in letter and "110105********0026" in letter
    revealed = json.loads(runner.invoke(cli, ["transfers", "letter", str(tid), "--json", "--reveal"]).output)
    assert revealed["id_number"] == "110105199007160026"
    assert runner.invoke(cli, ["transfers", "letter", "999"]).exit_code == 2
    sheet = tmp_path / "points.csv"
    sheet.write_text(f"employee_no,year,category,points,reason\n{no(a)},2024,volunteer,4,献血\n", encoding="utf-8")
    assert runner.invoke(cli, ["points", "import", str(sheet)], catch_exceptions=False).exit_code == 0
    bad = tmp_path / "bad.csv"
    bad.write_text(f"employee_no,year,category,points,reason\n{no(a)},2024,volunteer,4,ok\nE999,2024,x,1,y\n",
                   encoding="utf-8")
    refused = runner.invoke(cli, ["points", "import", str(bad)])
    assert refused.exit_code == 2 and "line 3" in refused.output
    with session_factory(engine)() as s:
        entries = s.execute(select(PointsEntry.category, PointsEntry.source)).all()
    assert sorted(entries) == [("manual", "manual"), ("volunteer", "import:points.csv")]  # nothing from bad.csv
    engine.dispose()
