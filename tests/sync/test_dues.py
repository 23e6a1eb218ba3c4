"""Party dues (issue 7): the 2008 brackets at every edge, retirees, the 0.2-yuan categories,
`dues_underpaid` / `dues_overdue` with their thresholds from config, the `dues_payments` kind
synced from a file, and the branch's monthly XLSX sheet."""
from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook
from sqlalchemy import Engine, insert, select

from records.db import make_engine, session_factory, upgrade
from records.models import Base, DuesPayment, Membership, Mismatch, PartyOrg, Payroll, Person
from sync.config import ConfigError, load_config
from sync.dues import DuesPolicy, build_dues_sheet, completed_months
from sync.engine import SyncEngine
from sync.rules.engine import RuleSet
from sync.runtime import Runtime
from tests.conftest import TEST_SECRET

TODAY = dt.date(2025, 7, 15)  # completed months: … 2025-05, 2025-06
POLICY = DuesPolicy.from_thresholds()


@pytest.mark.parametrize(("pay", "expected"), [
    ("0", "0.00"), ("2999.99", "15.00"), ("3000", "15.00"), ("3000.01", "30.00"),
    ("5000", "50.00"), ("5000.01", "75.00"), ("10000", "150.00"), ("10000.01", "200.00"),
    ("12345.67", "246.91"),
])
def test_bracket_edges_belong_to_the_lower_bracket(pay: str, expected: str) -> None:
    amount, _, basis = POLICY.expected(Decimal(pay))
    assert amount == Decimal(expected) and basis == "pay"


@pytest.mark.parametrize(("pension", "expected"), [("5000", "25.00"), ("5000.01", "50.00"), ("3000.01", "15.00")])
def test_retirees_pay_by_pension(pension: str, expected: str) -> None:
    assert POLICY.expected(Decimal(pension), "retiree")[0] == Decimal(expected)
    assert POLICY.expected(Decimal(pension), None, retired=True)[0] == Decimal(expected)


@pytest.mark.parametrize("category", ["student", "unemployed", "subsistence"])
def test_special_categories_pay_two_jiao_whatever_the_pay(category: str) -> None:
    assert POLICY.expected(None, category)[0] == Decimal("0.20")
    assert POLICY.expected(Decimal("20000"), category)[0] == Decimal("0.20")
    assert POLICY.expected(None, None)[0] is None  # pay unknown: not judged


def test_completed_months() -> None:
    assert completed_months(TODAY, 3) == ["2025-04", "2025-05", "2025-06"]
    assert completed_months(dt.date(2025, 1, 1), 2) == ["2024-11", "2024-12"]


# --- the rules on a hand-made database -----------------------------------------------------------


class World:
    def __init__(self, engine: Engine) -> None:
        self.sessions = session_factory(engine)
        self._n = 0

    def org(self, code: str) -> str:
        with self.sessions() as s, s.begin():
            s.add(PartyOrg(code=code, name=f"{code}支部", kind="branch"))
        return code

    def member(self, org: str, pay: Any = None, months: tuple[str, ...] = (), category: str = "full",
               dues_category: str | None = None, joined_on: dt.date = dt.date(2010, 1, 1), **person: Any) -> str:
        self._n += 1
        no = f"E{self._n:04d}"
        with self.sessions() as s, s.begin():
            pid = s.execute(insert(Person).values(name=f"党员{self._n}", employee_no=no, **person)
                            .returning(Person.id)).scalar_one()
            s.add(Membership(person_id=pid, party_org_code=org, category=category, joined_on=joined_on,
                             dues_category=dues_category))
            for month in months:
                s.add(Payroll(employee_no=no, month=month, person_id=pid, after_tax_pay=pay))
        return no

    def pay(self, no: str, month: str, amount: Any, paid_on: dt.date | None = None) -> None:
        with self.sessions() as s, s.begin():
            s.add(DuesPayment(employee_no=no, month=month, amount=amount, paid_on=paid_on))

    def detect(self, rule: str, rules: dict[str, Any] | None = None, today: dt.date = TODAY) -> dict[str, Any]:
        with self.sessions() as s:
            return {v.label: v for v in RuleSet.from_config(rules or {}).detect(s, today)[rule]}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    engine = make_engine(f"sqlite:///{tmp_path / 'dues.db'}")
    Base.metadata.create_all(engine)
    yield World(engine)
    engine.dispose()


def test_nothing_judged_until_payments_are_tracked(world: World) -> None:
    world.member(world.org("B1"), pay=8000, months=("2025-06",))
    assert world.detect("dues_underpaid") == {} and world.detect("dues_overdue") == {}
    assert world.detect("dues_overdue", {"dues_overdue": {"only_if_tracked": False}})  # 12 months unpaid


@pytest.mark.parametrize(("pay", "paid", "underpaid"), [
    (3000, "15.00", False), (3000, "14.99", True), (3000.01, "15.00", True), (3000.01, "30.00", False),
    (5000, "50.00", False), (5000.01, "50.00", True), (5000.01, "75.00", False),
    (10000, "150.00", False), (10000.01, "150.00", True), (10000.01, "200.00", False),
])
def test_dues_underpaid_at_each_bracket_edge(world: World, pay: float, paid: str, underpaid: bool) -> None:
    no = world.member(world.org("B1"), pay=pay, months=("2025-06",))
    world.pay(no, "2025-06", paid)
    found = world.detect("dues_underpaid", {"dues_underpaid": {"months": 1}})
    assert bool(found) is underpaid
    if underpaid:
        (v,) = found.values()
        assert v.details["months"][0]["month"] == "2025-06" and v.details["months"][0]["paid"] == paid
        assert v.party_org_code == "B1" and v.subject_key.startswith("person:")


def test_two_jiao_categories_and_probationary_members(world: World) -> None:
    b = world.org("B1")
    student = world.member(b, dues_category="student")
    jobless = world.member(b, dues_category="unemployed")
    probationary = world.member(b, pay=4000, months=("2025-06",), category="probationary")
    world.pay(student, "2025-06", "0.20")
    world.pay(jobless, "2025-06", "0.10")
    world.pay(probationary, "2025-06", "20.00")
    found = world.detect("dues_underpaid", {"dues_underpaid": {"months": 1}})
    assert set(found) == {"党员2", "党员3"}
    assert found["党员2"].details["months"][0]["expected"] == "0.20"
    assert found["党员3"].details["months"][0]["expected"] == "40.00"


def test_pay_change_applies_from_its_month_and_carries_forward(world: World) -> None:
    no = world.member(world.org("B1"), pay=4000, months=("2025-03",))
    with world.sessions() as s, s.begin():
        s.add(Payroll(employee_no=no, month="2025-05", after_tax_pay=6000))
    for month, amount in (("2025-04", "40.00"), ("2025-05", "90.00"), ("2025-06", "40.00")):
        world.pay(no, month, amount)
    (v,) = world.detect("dues_underpaid", {"dues_underpaid": {"months": 3}}).values()
    assert [(m["month"], m["expected"]) for m in v.details["months"]] == [("2025-06", "90.00")]


def test_brackets_from_config_change_the_findings(world: World) -> None:
    no = world.member(world.org("B1"), pay=4000, months=("2025-06",))
    world.pay(no, "2025-06", "20.00")  # 0.5 % of 4000
    assert world.detect("dues_underpaid", {"dues_underpaid": {"months": 1}})
    lenient = {"dues_underpaid": {"months": 1, "brackets": [{"up_to": 5000, "rate": 0.005},
                                                             {"up_to": None, "rate": 0.02}]}}
    assert world.detect("dues_underpaid", lenient) == {}


def test_bad_brackets_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"rules\.dues_underpaid\.brackets"):
        RuleSet.from_config({"dues_underpaid": {"brackets": [{"up_to": 3000, "rate": 0.005}]}})
    with pytest.raises(ConfigError, match=r"rules\.dues_underpaid\.brackets\[0\]\.rate"):
        RuleSet.from_config({"dues_underpaid": {"brackets": [{"up_to": None, "rate": 2}]}})
    with pytest.raises(ConfigError, match=r"rules\.dues_overdue\.months"):
        RuleSet.from_config({"dues_overdue": {"months": 13}})


@pytest.mark.parametrize(("last_paid", "overdue"), [
    ("2024-12", True),    # 2025-01 … 2025-06 unpaid: 6 months
    ("2025-01", False),   # 5 months: still inside the back-payment window
])
def test_dues_overdue_after_six_unpaid_months(world: World, last_paid: str, overdue: bool) -> None:
    no = world.member(world.org("B1"), pay=2000, months=("2024-01",))
    for month in completed_months(TODAY, 12):
        if month <= last_paid:
            world.pay(no, month, "10.00")
    found = world.detect("dues_overdue")
    assert bool(found) is overdue
    if overdue:
        (v,) = found.values()
        assert (v.details["first_unpaid"], v.details["last_unpaid"], v.details["unpaid_months"]) == (
            "2025-01", "2025-06", 6)
    # the window is configuration
    assert bool(world.detect("dues_overdue", {"dues_overdue": {"months": 5}})) is True
    assert bool(world.detect("dues_overdue", {"dues_overdue": {"months": 7}})) is False


def test_dues_overdue_counts_consecutive_months_since_joining(world: World) -> None:
    b = world.org("B1")
    gaps = world.member(b, pay=2000, months=("2024-01",))
    newcomer = world.member(b, pay=2000, months=("2024-01",), joined_on=dt.date(2025, 3, 20))
    for month in completed_months(TODAY, 12):
        if month not in ("2024-09", "2024-10", "2024-11", "2025-02", "2025-03", "2025-04"):
            world.pay(gaps, month, "10.00")  # two runs of 3: never 6 in a row
    world.pay(newcomer, "2025-06", "10.00")
    assert world.detect("dues_overdue") == {}


def test_dues_sheet_xlsx(world: World) -> None:
    b = world.org("B1")
    paid = world.member(b, pay=3000.01, months=("2025-06",))
    world.member(b, pay=9000, months=("2025-06",))
    world.member(b, dues_category="subsistence")
    world.pay(paid, "2025-06", "30.00", dt.date(2025, 6, 28))
    with world.sessions() as s:
        data = build_dues_sheet(s, "B1", "2025-06")
    ws = load_workbook(io.BytesIO(data)).active
    rows = list(ws.iter_rows(values_only=True))
    assert rows[0][0] == "B1支部 党费收缴表 2025-06"
    header = rows[2]
    body = {r[1]: dict(zip(header, r)) for r in rows[3:6]}
    assert body["党员1"]["应交(元)"] == 30.0 and body["党员1"]["实交(元)"] == 30.0
    assert body["党员1"]["比例"] == "1%" and body["党员1"]["交纳日期"] == "2025-06-28"
    assert body["党员2"]["应交(元)"] == 135.0 and body["党员2"]["状态"] == "未交"
    assert body["党员3"]["应交(元)"] == 0.2 and "0.2" in body["党员3"]["比例"]
    totals = rows[-1]
    assert totals[0] == "合计" and totals[6] == pytest.approx(165.2) and totals[7] == 30.0
    with pytest.raises(LookupError):
        with world.sessions() as s:
            build_dues_sheet(s, "NOPE", "2025-06")


# --- synced from a file, and the CLI ---------------------------------------------------------------


def test_dues_payments_kind_from_a_csv_file_and_the_sheet_command(tmp_path: Path, any_db_url: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    staff = tmp_path / "staff.csv"
    staff.write_text("employee_no,name,org_unit_code,employment_status,political_status\n"
                     "E1,张三,D1,active,01\nE2,李四,D1,active,02\n", encoding="utf-8")
    members = tmp_path / "members.csv"
    members.write_text("employee_no,name,party_org_code,category,joined_on,dues_category\n"
                       "E1,张三,B1,正式党员,2010-01-01,\nE2,李四,B1,预备党员,2024-07-01,学生\n", encoding="utf-8")
    orgs = tmp_path / "orgs.csv"
    orgs.write_text("code,name,kind,covers\nB1,一支部,branch,D1\n", encoding="utf-8")
    payroll = tmp_path / "payroll.csv"
    payroll.write_text("employee_no,month,after_tax_pay\nE1,2025-06,8000\n", encoding="utf-8")
    dues = tmp_path / "dues.csv"
    dues.write_text("employee_no,month,amount,paid_on\nE1,2025-06,100,2025/6/30\nE2,2025-6,0.2,2025-07-02\n"
                    "E9,bad,1,\n", encoding="utf-8")
    config_path = tmp_path / "dualline.yaml"
    kinds = {"party_orgs": orgs, "party_members": members, "staff": staff, "payroll": payroll, "dues_payments": dues}
    config_path.write_text(json.dumps({
        "database": any_db_url, "guard": {"max_deactivate_ratio": 1},
        "rules": {"settings": {"today": "2025-07-15"}},
        "sources": {"party": {"connector": "file", "files": {k: str(v) for k, v in kinds.items()},
                              "provides": list(kinds)}},
    }), encoding="utf-8")  # JSON is YAML
    monkeypatch.setenv("DUALLINE_CONFIG", str(config_path))
    monkeypatch.setenv("DUALLINE_SECRET_KEY", TEST_SECRET)
    runtime = Runtime(load_config(config_path))
    upgrade(runtime.engine)
    result = SyncEngine(runtime).run()
    assert result.status == "succeeded", result
    assert result.counts["dues_payments"]["created"] == 2 and result.counts["dues_payments"]["quarantined"] == 1
    with session_factory(runtime.engine)() as s:
        rows = {d.employee_no: d for d in s.scalars(select(DuesPayment))}
        cats = dict(s.execute(select(Person.employee_no, Membership.dues_category).join(
            Membership, Membership.person_id == Person.id)).all())
        found = {(m.rule, m.subject_label) for m in s.scalars(select(Mismatch).where(Mismatch.rule.like("dues_%")))}
    assert rows["E1"].amount == 100.0 and rows["E1"].paid_on == dt.date(2025, 6, 30) and rows["E1"].person_id
    assert rows["E2"].month == "2025-06"
    assert cats == {"E1": None, "E2": "student"}
    # 1.5 % of 8000 is 120; 李四 paid 0.2 as a student; neither paid the 11 months before June
    assert found == {("dues_underpaid", "张三"), ("dues_overdue", "张三"), ("dues_overdue", "李四")}

    from web.cli import cli
    out = tmp_path / "sheet.xlsx"
    runner = CliRunner()
    res = runner.invoke(cli, ["dues", "sheet", "--branch", "B1", "--month", "2025-06", "-o", str(out)],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    ws = load_workbook(out).active
    assert [r[1] for r in ws.iter_rows(min_row=4, max_row=5, values_only=True)] == ["张三", "李四"]
    assert runner.invoke(cli, ["dues", "sheet", "--branch", "B1", "--month", "2025-13", "-o", str(out)]).exit_code == 2
    assert runner.invoke(cli, ["dues", "sheet", "--branch", "NOPE", "--month", "2025-06", "-o", str(out)]).exit_code == 2
