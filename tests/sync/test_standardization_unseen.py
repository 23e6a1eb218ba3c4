"""The judged test of the standardization engine (issue 7): an enterprise of a seed and shape used
nowhere else, with violations of every standardization rule planted into its source records
(organization rules, 三会一课, probation, dues, transfers) and near misses beside them.

The answer key is independent of the engine: `oracle()` evaluates the regulations member by
member in plain Python over the *source records* this test writes (never over the database),
with its own calendar and fen arithmetic. After sync + rules the open findings must equal the
key exactly — every planted finding with the right rule id, subject and stage, and no other —
and once more with thresholds changed in the config (no code changed).
"""
from __future__ import annotations

import csv
import datetime as dt
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from benchmarks.enterprise import Enterprise, generate
from benchmarks.writers import write_config, write_demo_sources
from records.db import session_factory, upgrade
from records.models import Mismatch, Person, Transfer
from sync.config import load_config
from sync.indicators import org_indicators
from sync.points import PointsSettings, member_scores
from sync.rules import RULES, RuleSet
from sync.runtime import Runtime
from tests.conftest import TEST_SECRET
from tests.sync.conftest import Site

# Never used elsewhere: seed, size, subsidiaries and member ratio.
SHAPE = {"staff": 470, "subsidiaries": 2, "member_ratio": 0.42, "seed": 6133, "plant": False}
TODAY = dt.date(2026, 11, 16)  # completed: October 2026, Q3 2026, the year 2025
MONTHS = [f"{y}-{m:02d}" for y, m in [(2025, 11), (2025, 12)] + [(2026, m) for m in range(1, 11)]]
ACTIVE = "active"

# --- the independent key -----------------------------------------------------------------------------


def plus_years(day: dt.date, years: int) -> dt.date:
    return dt.date(day.year + years, 3, 1) if (day.month, day.day) == (2, 29) and years % 4 else \
        dt.date(day.year + years, day.month, day.day)


def plus_months(day: dt.date, months: int) -> dt.date:
    y, m = divmod(day.month - 1 + months, 12)
    year, month = day.year + y, m + 1
    days_in_month = (dt.date(year + (month == 12), month % 12 + 1, 1) - dt.timedelta(days=1)).day
    return dt.date(year, month, min(day.day, days_in_month))


def dues_fen(pay: str, retired: bool) -> int:
    """Expected dues in fen: integer arithmetic on fen and per-mille rates, rounding half up."""
    fen = int(round(float(pay) * 100))
    if retired:
        permille = 5 if fen <= 500_000 else 10
    else:
        permille = 5 if fen <= 300_000 else 10 if fen <= 500_000 else 15 if fen <= 1_000_000 else 20
    return (fen * permille + 500) // 1000


def month_of(day: str) -> str:
    return day[:7]


def previous_period(per: str) -> tuple[str, dt.date, dt.date]:
    if per == "month":
        return "2026-10", dt.date(2026, 10, 1), dt.date(2026, 11, 1)
    if per == "quarter":
        return "2026Q3", dt.date(2026, 7, 1), dt.date(2026, 10, 1)
    return "2025", dt.date(2025, 1, 1), dt.date(2026, 1, 1)


def oracle(w: World, t: dict[str, Any]) -> set[tuple[str, str, str | None]]:
    """(rule, subject, stage) of every finding the regulations call for; persons by employee number."""
    e, today = w.ent, TODAY
    staff = {s["id_number"]: s for s in e.staff}
    members = [m for m in e.party_members if m["status"] == ACTIVE]
    by_org: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in members:
        by_org[m["party_org_code"]].append(m)
    children: dict[str, list[str]] = defaultdict(list)
    for o in e.party_orgs:
        children[o["parent_code"]].append(o["code"])

    def subtree(code: str) -> int:
        return len(by_org[code]) + sum(subtree(c) for c in children[code])

    out: set[tuple[str, str, str | None]] = set()
    rank = {"branch": 0, "general_branch": 1, "committee": 2}
    for o in e.party_orgs:
        direct, key = by_org[o["code"]], f"party_org:{o['code']}"
        full = [m for m in direct if m["category"] == "full"]
        if o["kind"] == "branch":
            if len(full) < t["min_full"]:
                out.add(("branch_too_small", key, None))
            if len(direct) > 50:
                out.add(("branch_too_large", key, None))
            if len(full) >= 7 and not o["has_committee"]:
                out.add(("committee_required", key, None))
            secretary = (o["secretary"] or "").strip()
            if secretary:
                named = [m for m in direct if m["name"] == secretary]
                named_full = [m for m in named if m["category"] == "full"]

                def tenured(m: dict[str, Any]) -> bool:
                    if not m["full_member_on"] and not m["joined_on"]:
                        return True
                    since = (dt.date.fromisoformat(m["full_member_on"]) if m["full_member_on"]
                             else plus_years(dt.date.fromisoformat(m["joined_on"]), 1))
                    return plus_years(since, 1) <= today

                if not any(tenured(m) for m in named_full):
                    out.add(("secretary_tenure", key, "not_a_member" if not named
                             else "not_full_member" if not named_full else "short_tenure"))
        if o["kind"] in rank:
            n = subtree(o["code"])
            if rank[o["kind"]] < (2 if n >= 100 else 1 if n >= 50 else 0):
                out.add(("org_kind_mismatch", key, None))
            if o["elected_on"]:
                years = o["term_years"] or (5 if o["kind"] == "committee" else 3)
                due = plus_years(dt.date.fromisoformat(o["elected_on"]), years)
                if due < today:
                    out.add(("term_expired", key, "expired"))
                elif (due - today).days <= t["warning_days"]:
                    out.add(("term_expired", key, "expiring"))
    for m in members:
        if m["category"] == "probationary" and m["joined_on"]:
            due = plus_years(dt.date.fromisoformat(m["joined_on"]), 1)
            if due < today:
                out.add(("probation_overdue", m["employee_no"], "overdue"))
            elif (due - today).days <= t["reminder_days"]:
                out.add(("probation_overdue", m["employee_no"], "reminder"))

    # 三会一课: last completed period of each type, per branch.
    lecturers_tracked = any(a["lecturer"] for a in w.activities)
    for o in e.party_orgs:
        if o["kind"] != "branch":
            continue
        names_to_no = {m["name"]: m["employee_no"] for m in by_org[o["code"]]}
        for type_, per in w.required(t).items():
            if type_ == "committee_meeting" and not o["has_committee"]:
                continue
            if type_ == "secretary_lecture" and not (lecturers_tracked and (o["secretary"] or "").strip()):
                continue
            label, start, end = previous_period(per)
            counted = 0
            for a in w.activities:
                held = dt.date.fromisoformat(a["held_on"])
                if a["party_org_code"] != o["code"] or not start <= held < end:
                    continue
                if type_ == "secretary_lecture":
                    counted += a["type"] == "party_lecture" and a["lecturer"] in (
                        o["secretary"], names_to_no.get(o["secretary"]))
                elif a["type"] == type_:
                    counted += not (type_ == "member_meeting" and 2 * a["attendees"] <= a["expected"])
            if counted < 1:
                out.add(("meetings_missing", f"party_org:{o['code']}|{type_}|{label}", None))

    # Dues over the 12 completed months, from the payroll and payments written for the sources.
    for m in members:
        no = m["employee_no"]
        retired = staff[m["id_number"]]["employment_status"] == "retired"
        owed = [mo for mo in MONTHS if mo >= month_of(m["joined_on"] or "1900-01-01")]
        short, run, longest = False, 0, 0
        for mo in owed:
            paid = w.payments.get((no, mo))
            if paid is None or float(paid) <= 0:
                run += 1
                longest = max(longest, run)
                continue
            run = 0
            if (no, mo) in w.payroll and round(float(paid) * 100) < dues_fen(w.payroll[(no, mo)], retired):
                short = True
        if short:
            out.add(("dues_underpaid", no, None))
        if longest >= t["overdue_months"]:
            out.add(("dues_overdue", no, None))

    for tr in w.transfers:
        if tr["status"] != "issued" or tr["received_on"]:
            continue
        end = tr["valid_until"] or plus_months(tr["issued_on"], t["validity_months"])
        if today > end:
            out.add(("transfer_stale", f"{tr['employee_no']}|{tr['letter_no']}", None))
    return out


DEFAULTS = {"min_full": 3, "warning_days": 90, "reminder_days": 30, "overdue_months": 6, "validity_months": 3,
            "theme_day": 1}
CHANGED_CONFIG = {
    "branch_too_small": {"min_full_members": 4},
    "term_expired": {"warning_days": 0},
    "probation_overdue": {"reminder_days": 0},
    "dues_overdue": {"months": 5},
    "transfer_stale": {"validity_months": 4},
    "meetings_missing": {"types": {"theme_day": {"per": "month", "min": 0}}},
}
CHANGED = {"min_full": 4, "warning_days": -1, "reminder_days": -1, "overdue_months": 5, "validity_months": 4,
           "theme_day": 0}


# --- the enterprise and its plants ---------------------------------------------------------------------


class World:
    """The generated enterprise, the extra source records this test writes, and what it planted."""

    def __init__(self) -> None:
        self.ent: Enterprise = generate(**SHAPE)
        self.rng = random.Random(SHAPE["seed"] * 7)
        self.activities: list[dict[str, Any]] = []
        self.payroll: dict[tuple[str, str], str] = {}
        self.payments: dict[tuple[str, str], str] = {}
        self.transfers: list[dict[str, Any]] = []
        self.planted: set[tuple[str, str, str | None]] = set()
        self.near_misses: set[tuple[str, str, str | None]] = set()
        self.near_overdue = ""

    @staticmethod
    def required(t: dict[str, Any]) -> dict[str, str]:
        types = {"member_meeting": "quarter", "committee_meeting": "month", "party_lecture": "quarter",
                 "theme_day": "month", "org_life_meeting": "year", "democratic_review": "year",
                 "secretary_lecture": "year"}
        if not t["theme_day"]:
            del types["theme_day"]
        return types

    def branches(self) -> list[dict[str, Any]]:
        return [o for o in self.ent.party_orgs if o["kind"] == "branch"]

    def active_members(self, code: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.ent.party_members if m["status"] == ACTIVE
                and (code is None or m["party_org_code"] == code)]

    def payers(self) -> list[dict[str, Any]]:
        """Full members admitted long ago: owe every month of the window (plants stay exact)."""
        return [m for m in self.active_members() if m["category"] == "full" and (m["joined_on"] or "") < "2024-01-01"]

    # organization rules ------------------------------------------------------------------------
    def plant_orgs(self) -> None:
        e = self.ent
        committee = next(o for o in e.party_orgs if o["kind"] == "committee" and o["parent_code"])
        donors = sorted(self.branches(), key=lambda o: -len(self.active_members(o["code"])))
        veterans = [m for d in donors for m in self.active_members(d["code"])
                    if m["category"] == "full" and m["full_member_on"] and m["full_member_on"] < "2020-01-01"]
        assert len(veterans) >= 57
        big = veterans[:52]
        small = veterans[52:54]
        three = veterans[54:57]  # exactly 3 full members: enough by default, not with min 4
        for m in three:
            m["party_org_code"] = "PX003"
        for m in big:
            m["party_org_code"] = "PX002"
        for m in small:
            m["party_org_code"] = "PX001"
        base = {"kind": "branch", "parent_code": committee["code"], "covers": [], "term_years": 3,
                "retirees": False}
        e.party_orgs.append(base | {"code": "PX001", "name": "第一联合党支部", "secretary": small[0]["name"],
                                    "elected_on": "2025-03-01", "has_committee": False})
        e.party_orgs.append(base | {"code": "PX002", "name": "生产联合党支部", "secretary": big[0]["name"],
                                    "elected_on": "2025-03-01", "has_committee": False})
        e.party_orgs.append(base | {"code": "PX003", "name": "机关联合党支部", "secretary": three[0]["name"],
                                    "elected_on": "2025-03-01", "has_committee": False})
        self.near_misses.add(("branch_too_small", "party_org:PX003", None))
        self.planted |= {("branch_too_small", "party_org:PX001", None), ("branch_too_large", "party_org:PX002", None),
                         ("committee_required", "party_org:PX002", None), ("org_kind_mismatch", "party_org:PX002", None)}
        others = [o for o in self.branches() if o["code"] not in ("PX001", "PX002", "PX003")]
        expired, expiring, fresh, odd = others[0], others[1], others[2], others[3]
        expired |= {"elected_on": "2023-11-15", "term_years": 3}    # due 2026-11-15: the day before today
        expiring |= {"elected_on": "2024-02-14", "term_years": None}  # 3 years → due 2027-02-14: day 90
        fresh |= {"elected_on": "2024-02-15", "term_years": None}     # day 91: not yet
        odd["secretary"] = "不存在的书记"
        self.planted |= {("term_expired", f"party_org:{expired['code']}", "expired"),
                         ("term_expired", f"party_org:{expiring['code']}", "expiring"),
                         ("secretary_tenure", f"party_org:{odd['code']}", "not_a_member")}
        self.near_misses.add(("term_expired", f"party_org:{fresh['code']}", "expiring"))

    def plant_probation(self) -> None:
        prob = [m for m in self.active_members() if m["category"] == "probationary"]
        late, due_today, early = prob[0], prob[1], prob[2]
        late["joined_on"] = "2025-11-15"      # due 2026-11-15 < today: overdue (day 366)
        due_today["joined_on"] = "2025-11-16"  # due today: day 365, a reminder only
        early["joined_on"] = "2025-12-17"     # due in 31 days: outside the 30-day reminder window
        self.planted |= {("probation_overdue", late["employee_no"], "overdue"),
                         ("probation_overdue", due_today["employee_no"], "reminder")}
        self.near_misses.add(("probation_overdue", early["employee_no"], "reminder"))

    # organizational life --------------------------------------------------------------------------
    def write_activities(self) -> None:
        n = 0
        orgs = self.branches()
        gap, quorum, lecture, late_day = orgs[4], orgs[5], orgs[6], orgs[7]
        for o in orgs:
            code, size = o["code"], max(len(self.active_members(o["code"])), 2)
            roll = [m["employee_no"] for m in self.active_members(code)]

            def add(type_: str, day: str, attendees: int | None = None, lecturer: str | None = None) -> None:
                nonlocal n
                n += 1
                present = attendees if attendees is not None else size
                self.activities.append({"id": f"ACT{n:05d}", "party_org_code": code, "type": type_, "held_on": day,
                                        "attendees": present, "expected": size, "lecturer": lecturer,
                                        "attendee_nos": ";".join(roll[:present])})

            if o["has_committee"]:
                add("committee_meeting", "2026-10-09")
            if o is gap:
                pass  # no theme day in October
            elif o is late_day:
                add("theme_day", "2026-11-01")  # one day too late for October
            else:
                add("theme_day", "2026-10-31")  # the month's last day still counts
            if o is quorum:
                add("member_meeting", "2026-08-20", attendees=size // 2 if size % 2 == 0 else (size - 1) // 2)
            else:
                add("member_meeting", "2026-09-30", attendees=size // 2 + 1)  # more than half: counts
            add("party_lecture", "2026-07-01")
            add("org_life_meeting", "2025-12-28")
            add("democratic_review", "2025-01-01")
            add("party_lecture", "2025-06-01", lecturer="某讲师" if o is lecture else o["secretary"])
        self.planted |= {
            ("meetings_missing", f"party_org:{gap['code']}|theme_day|2026-10", None),
            ("meetings_missing", f"party_org:{late_day['code']}|theme_day|2026-10", None),
            ("meetings_missing", f"party_org:{quorum['code']}|member_meeting|2026Q3", None),
            ("meetings_missing", f"party_org:{lecture['code']}|secretary_lecture|2025", None),
        }

    # dues --------------------------------------------------------------------------------------------
    def write_dues(self) -> None:
        staff = {s["id_number"]: s for s in self.ent.staff}
        members = self.payers()
        fixed = {  # employee_no → (pay, {month: paid override or None for unpaid})
            members[0]["employee_no"]: ("5000.01", {"2026-09": "50.00"}),   # 1 % paid, 1.5 % due
            members[1]["employee_no"]: ("3000.00", {}),                      # 15.00 exactly: fine
            members[2]["employee_no"]: ("10000.01", {}),                     # 200.00 exactly: fine
            members[3]["employee_no"]: ("3000.01", {"2026-04": "15.00"}),    # 0.5 % paid, 1 % due
            members[4]["employee_no"]: ("6000", {m: None for m in MONTHS[4:]}),   # 2026-03 … 10 unpaid: 8
            members[5]["employee_no"]: ("6000", {m: None for m in MONTHS[7:]}),   # 2026-06 … 10 unpaid: 5
            members[6]["employee_no"]: ("6000", {m: None for m in MONTHS[:6]}),   # 2025-11 … 2026-04: 6
        }
        retired = next((m for m in members[7:] if staff[m["id_number"]]["employment_status"] == "retired"), None)
        if retired is not None:  # pension 5000.01: 1 % due, 0.5 % paid in one month
            fixed[retired["employee_no"]] = ("5000.01", {"2026-02": "25.00"})
        for m in self.active_members():
            no = m["employee_no"]
            is_retired = staff[m["id_number"]]["employment_status"] == "retired"
            pay, overrides = fixed.get(no, (f"{self.rng.randint(1800, 16000)}.{self.rng.randint(0, 99):02d}", {}))
            for month in MONTHS:
                self.payroll[(no, month)] = pay
                if month < month_of(m["joined_on"] or "1900-01-01"):
                    continue
                paid = overrides.get(month, f"{dues_fen(pay, is_retired) / 100:.2f}")
                if paid is not None:
                    self.payments[(no, month)] = paid
        self.planted |= {("dues_underpaid", members[0]["employee_no"], None),
                         ("dues_underpaid", members[3]["employee_no"], None),
                         ("dues_overdue", members[4]["employee_no"], None),
                         ("dues_overdue", members[6]["employee_no"], None)}
        if retired is not None:
            self.planted.add(("dues_underpaid", retired["employee_no"], None))
        self.near_overdue = members[5]["employee_no"]
        self.near_misses |= {("dues_underpaid", members[1]["employee_no"], None),
                             ("dues_underpaid", members[2]["employee_no"], None),
                             ("dues_overdue", members[5]["employee_no"], None)}

    # transfers (written by the console's transfer resolution: inserted here after the sync) ----------
    def plan_transfers(self) -> None:
        members = self.payers()
        d = dt.date

        def tr(i: int, issued: dt.date, valid: dt.date | None, status: str = "issued",
               received: dt.date | None = None) -> dict[str, Any]:
            return {"employee_no": members[10 + i]["employee_no"], "letter_no": f"2026第{i + 1:04d}号",
                    "issued_on": issued, "valid_until": valid, "status": status, "received_on": received,
                    "from": members[10 + i]["party_org_code"]}

        self.transfers = [
            tr(0, d(2026, 7, 1), d(2026, 10, 1)),             # past its validity: stale
            tr(1, d(2026, 8, 15), None),                       # default 3 months → 2026-11-15: stale
            tr(2, d(2026, 8, 16), None),                       # → 2026-11-16 = today: still valid
            tr(3, d(2026, 5, 1), d(2026, 8, 1), "received", d(2026, 5, 20)),
            tr(4, d(2026, 4, 1), d(2026, 7, 1), "cancelled"),
        ]
        self.planted |= {("transfer_stale", f"{self.transfers[0]['employee_no']}|2026第0001号", None),
                         ("transfer_stale", f"{self.transfers[1]['employee_no']}|2026第0002号", None)}
        self.near_misses.add(("transfer_stale", f"{self.transfers[2]['employee_no']}|2026第0003号", None))

    # files -------------------------------------------------------------------------------------------
    def write(self, folder: Path) -> Path:
        write_demo_sources(self.ent, folder)
        config = write_config(folder)
        life = folder / "life"
        life.mkdir()
        _csv(life / "activities.csv", ["id", "party_org_code", "type", "held_on", "attendees", "expected",
                                       "lecturer", "attendee_nos"],
             [[a[k] if a[k] is not None else "" for k in ("id", "party_org_code", "type", "held_on", "attendees",
                                                          "expected", "lecturer", "attendee_nos")]
              for a in self.activities])
        _csv(life / "payroll.csv", ["employee_no", "month", "after_tax_pay"],
             [[no, mo, pay] for (no, mo), pay in sorted(self.payroll.items())])
        _csv(life / "dues.csv", ["employee_no", "month", "amount", "paid_on"],
             [[no, mo, amount, f"{mo}-25"] for (no, mo), amount in sorted(self.payments.items())])
        text = config.read_text(encoding="utf-8").replace("guard:", (
            "  life:\n    connector: file\n    mapping: canonical\n"
            "    provides: [activities, payroll, dues_payments]\n"
            "    files: {activities: life/activities.csv, payroll: life/payroll.csv, dues_payments: life/dues.csv}\n"
            "guard:"), 1)
        config.write_text(text, encoding="utf-8")
        return config


def _csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])


def findings(site: Site) -> set[tuple[str, str, str | None]]:
    """Open standardization findings, persons by employee number (as the key speaks)."""
    with session_factory(site.runtime.engine)() as s:
        nos = dict(s.execute(select(Person.id, Person.employee_no)).all())
        letters = dict(s.execute(select(Transfer.id, Transfer.letter_no)).all())
        rows = s.scalars(select(Mismatch).where(Mismatch.rule.in_(list(RULES)), Mismatch.closed_at.is_(None),
                                                Mismatch.state == "open")).all()
    out = set()
    for m in rows:
        subject = m.subject_key
        if m.subject_type == "person":
            head, _, rest = subject.partition("|")
            subject = nos[int(head.split(":")[1])]
            if rest:
                subject += "|" + letters[int(rest.split(":")[1])]
        out.add((m.rule, subject, m.details.get("stage")))
    return out


@pytest.fixture(scope="module")
def world() -> World:
    w = World()
    w.plant_orgs()
    w.plant_probation()
    w.write_activities()
    w.write_dues()
    w.plan_transfers()
    return w


def build_site(world: World, tmp_path: Path, url: str) -> Site:
    config_path = world.write(tmp_path / "src")
    config = load_config(config_path)
    config.database, config.secret_key = url, TEST_SECRET
    config.rules = {"settings": {"today": TODAY.isoformat()}}
    runtime = Runtime(config)
    upgrade(runtime.engine)
    return Site(tmp_path / "src", world.ent, runtime)


@pytest.fixture
def site(world: World, tmp_path: Path, any_db_url: str) -> Site:
    """On SQLite, PostgreSQL and MariaDB."""
    return build_site(world, tmp_path, any_db_url)


@pytest.fixture
def sqlite_site(world: World, tmp_path: Path, sqlite_url: str) -> Site:
    return build_site(world, tmp_path, sqlite_url)


def insert_transfers(site: Site, world: World) -> None:
    with session_factory(site.runtime.engine)() as s, s.begin():
        ids = dict(s.execute(select(Person.employee_no, Person.id)).all())
        for tr in world.transfers:
            s.add(Transfer(person_id=ids[tr["employee_no"]], kind="internal", from_party_org_code=tr["from"],
                           to_party_org_code="PX001", category="full", letter_no=tr["letter_no"],
                           issued_on=tr["issued_on"], valid_until=tr["valid_until"], received_on=tr["received_on"],
                           status=tr["status"], created_by="officer1"))


def test_every_planted_finding_and_no_other(world: World, site: Site) -> None:
    result = site.sync()
    assert result.status == "succeeded", result.error
    assert result.counts["activities"]["quarantined"] == 0 and result.counts["dues_payments"]["quarantined"] == 0
    insert_transfers(site, world)
    with session_factory(site.runtime.engine)() as s, s.begin():
        RuleSet.from_config(site.runtime.config).evaluate(s, None, "test")

    key = oracle(world, DEFAULTS)
    got = findings(site)
    # The key is independent, so check it against the plants too: each plant is in it, no near miss is.
    assert world.planted <= key, sorted(world.planted - key)
    assert not world.near_misses & key
    assert {rule for rule, _, _ in world.planted} == set(RULES)  # every standardization rule planted
    assert got - key == set(), f"false findings: {sorted(got - key)[:10]}"
    assert key - got == set(), f"missed findings: {sorted(key - got)[:10]}"

    # The indicators of the whole tree count the same open findings; attendance points come from
    # the rolls as written (JSON lists through every backend).
    root = next(o["code"] for o in world.ent.party_orgs if not o["parent_code"])
    settings = PointsSettings.load(None)
    with session_factory(site.runtime.engine)() as s:
        ind = org_indicators(s, root, rule_set=RuleSet.from_config(site.runtime.config))
        branch = world.branches()[0]["code"]
        scores = {m.employee_no: m for m in member_scores(s, [branch], 2026, settings)}
    by_rule = defaultdict(int)
    for rule, _, _ in key:
        by_rule[rule] += 1
    assert {r: n for r, n in ind["findings"].items() if r in RULES} == dict(by_rule)
    rolls = [a["attendee_nos"].split(";") for a in world.activities
             if a["party_org_code"] == branch and a["held_on"].startswith("2026")]
    assert scores and all(m.attended == sum(no in roll for roll in rolls) for no, m in scores.items())
    assert any(m.attended for m in scores.values())


def test_thresholds_changed_in_config_change_the_findings(world: World, sqlite_site: Site) -> None:
    site = sqlite_site
    assert site.sync().status == "succeeded"
    insert_transfers(site, world)
    with session_factory(site.runtime.engine)() as s, s.begin():
        RuleSet.from_config({**CHANGED_CONFIG, "settings": {"today": TODAY.isoformat()}}).evaluate(s, None, "test")
    key = oracle(world, CHANGED)
    got = findings(site)
    assert got == key
    default_key = oracle(world, DEFAULTS)
    changed = key ^ default_key
    # Each changed threshold moved at least one finding.
    assert {r for r, _, _ in changed} >= {"branch_too_small", "term_expired", "probation_overdue", "dues_overdue",
                                         "transfer_stale", "meetings_missing"}
    assert ("dues_overdue", world.near_overdue, None) in got
    assert ("branch_too_small", "party_org:PX003", None) in got  # 5 months is enough now
