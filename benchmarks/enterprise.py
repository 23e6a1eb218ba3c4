"""The synthetic enterprise: a fictional energy group with its business line and party line.

`generate()` builds a group HQ with subsidiaries, departments and teams (the business line), staff
with realistic Chinese identities (GB 11643 ID numbers, mobiles, codes), a party tree (committees,
general branches, branches covering departments, retirees' branches) with a member roster, and
performance appraisals. With ``plant=True`` it then plants several disagreements of every
mismatch rule and a little noise the engine must quarantine.

The answer key is *not* the list of what was planted: `Enterprise.answer_key()` re-evaluates the
rules over the finished records (`benchmarks.answer_key`), so interactions between plants (an
ambiguous row also leaves its person without a membership) come out exactly as the rules say.

Run ``python -m benchmarks.enterprise --staff N --seed S --out DIR`` to write the demo sources.
"""
from __future__ import annotations

import argparse
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import accumulate
from pathlib import Path
from typing import Any

from benchmarks import vocab
from benchmarks.answer_key import (
    HR_MEMBER, IN_SERVICE, Record, evaluate, expected_branches, id_check_char,
)

# "Today" for the data: the roster export is dated this day; ages and recent dates count from it.
REFERENCE_DATE = date(2026, 10, 31)
KINDS = ("org_units", "staff", "party_orgs", "party_members", "performance")
ROOT_CODE = "1000"


def add_years(day: date, years: int) -> date:
    """The same calendar day `years` later; 29 February becomes 1 March in common years."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, month=3, day=1)


@dataclass
class Enterprise:
    """Canonical source records of one synthetic enterprise (DESIGN.md shapes, dates ISO).

    Noise values stay as the source would send them (an unknown 政治面貌 spelling, an impossible
    date, a broken ID checksum) so that every writer and the fake REST source carry them alike.
    """

    group_name: str
    org_units: list[Record]
    staff: list[Record]
    party_orgs: list[Record]
    party_members: list[Record]
    performance: list[Record]
    params: dict[str, Any]
    # Roster rows naming a branch that does not exist carry one of these codes; the value is the
    # branch name the roster shows (the noise row the engine must quarantine).
    phantom_party_orgs: dict[str, str] = field(default_factory=dict)
    # Employee numbers of planted and noisy staff: `mutate` leaves them alone so plants survive.
    protected: set[str] = field(default_factory=set)
    # Bumped by `mutate` so that servers holding serialized pages know to rebuild them.
    version: int = 0

    def records(self, kind: str) -> list[Record]:
        """The canonical records of one kind (one of `KINDS`)."""
        if kind not in KINDS:
            raise KeyError(kind)
        return getattr(self, kind)

    def party_org_name(self, code: str) -> str:
        """The name a roster shows for a party org code (phantom codes included)."""
        if code in self.phantom_party_orgs:
            return self.phantom_party_orgs[code]
        return self._party_org_names()[code]

    def _party_org_names(self) -> dict[str, str]:
        return {o["code"]: o["name"] for o in self.party_orgs}

    def answer_key(self) -> Record:
        """``{"mismatches", "quarantined", "counts"}`` for the current records (the oracle).

        A roster row quarantined for an unknown branch also carries ``branch_name``: the roster
        file shows the name, the REST source the code.
        """
        key = evaluate(self.org_units, self.staff, self.party_orgs, self.party_members)
        for item in key["quarantined"]:
            if item["reason"] == "unknown_party_org" and item["value"] in self.phantom_party_orgs:
                item["branch_name"] = self.phantom_party_orgs[item["value"]]
        return key

    def expected_mismatches(self) -> list[Record]:
        """The mismatch items a correct engine opens for these records."""
        return self.answer_key()["mismatches"]

    def quarantined(self) -> list[Record]:
        """The source records a correct engine quarantines, with the reason category."""
        return self.answer_key()["quarantined"]

    def mutate(self, fraction: float = 0.01, seed: int = 0, hires: float = 0.0) -> dict[str, int]:
        """Change about `fraction` of staff as a month of HR work would, returning counts.

        Department moves (the party transfer usually follows, sometimes not: that opens a
        branch_mismatch), mobile changes, and a few leavers whose membership is transferred out;
        with `hires`, that share of the changes again as new hires on probation (not party
        members), whom a sync must correlate with the persons it has. Planted and noisy staff
        are left alone. The answer key stays right because it is always recomputed from the
        records.
        """
        rng = random.Random(seed)
        expected = expected_branches(self.org_units, self.party_orgs)
        units = {u["code"]: u for u in self.org_units}
        company = _company_of(units)
        targets: dict[str, list[str]] = defaultdict(list)
        for u in self.org_units:
            if u["kind"] != "company" and u["status"] == "active" and expected[u["code"]]:
                targets[company[u["code"]]].append(u["code"])
        managers = {u["manager_employee_no"] for u in self.org_units}
        rows = {r["employee_no"]: r for r in self.party_members if r.get("employee_no") and r["status"] == "active"}
        mobiles = {s["mobile"] for s in self.staff}
        movable = [s for s in self.staff if s["employment_status"] in IN_SERVICE
                   and s["employee_no"] not in self.protected and s["employee_no"] not in managers]
        chosen = rng.sample(movable, min(len(movable), max(1, round(len(self.staff) * fraction))))
        counts = {"moved": 0, "mobile": 0, "left": 0}
        for s in chosen:
            row = rows.get(s["employee_no"])
            roll = rng.random()
            if roll < 0.5:
                s["org_unit_code"] = rng.choice(targets[company[s["org_unit_code"]]])
                if row is not None and rng.random() < 0.8:
                    row["party_org_code"] = expected[s["org_unit_code"]]
                counts["moved"] += 1
            elif roll < 0.85:
                s["mobile"] = _new_mobile(rng, mobiles)
                if row is not None:
                    row["mobile"] = s["mobile"]
                counts["mobile"] += 1
            else:
                s["employment_status"] = "left"
                if row is not None:
                    row["status"] = "transferred_out"
                counts["left"] += 1
        if hires:
            counts["hired"] = self._hire(rng, round(len(chosen) * hires), targets, company, mobiles)
        self.version += 1
        return counts

    def _hire(self, rng: random.Random, count: int, targets: dict[str, list[str]], company: dict[str, str],
              mobiles: set[str]) -> int:
        """`count` new staff: each looks like a random colleague (age, sex, area of birth) with an
        ID number, mobile and employee number of their own, in a department of the same company."""
        ids = {s["id_number"] for s in self.staff}
        number = max(int(s["employee_no"]) for s in self.staff)
        for model in rng.sample(self.staff, count):
            while True:
                first17 = model["id_number"][:14] + f"{rng.randrange(500) * 2 + int(model['id_number'][16]) % 2:03d}"
                id_number = first17 + id_check_char(first17)
                if id_number not in ids:
                    ids.add(id_number)
                    break
            number += 1
            self.staff.append({
                **model, "employee_no": str(number), "id_number": id_number, "mobile": _new_mobile(rng, mobiles),
                "name": rng.choice(self.staff)["name"], "org_unit_code": rng.choice(targets[company[model["org_unit_code"]]]),
                "employment_status": "probation", "hired_on": (REFERENCE_DATE - timedelta(days=rng.randint(1, 25))).isoformat(),
                "political_status": "13", "party_joined_on": None,
            })
        return count


def _company_of(units: dict[str, Record]) -> dict[str, str]:
    """Unit code → code of the company directly below the root that holds it (the root for HQ)."""
    out: dict[str, str] = {}
    for code in units:
        cursor = code
        while units[cursor]["parent_code"] not in (None, ROOT_CODE) and units[cursor]["kind"] != "company":
            cursor = units[cursor]["parent_code"]
        out[code] = cursor if units[cursor]["kind"] == "company" else ROOT_CODE
    return out


def _new_mobile(rng: random.Random, taken: set[str]) -> str:
    while True:
        mobile = rng.choice(vocab.MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"
        if mobile not in taken:
            taken.add(mobile)
            return mobile


def _weighted(pairs: tuple[tuple[str, int], ...]) -> tuple[list[str], list[int]]:
    """Values and cumulative weights for `random.choices` (precomputed: it is hot)."""
    return [v for v, _ in pairs], list(accumulate(w for _, w in pairs))


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


class _Builder:
    """Builds one enterprise step by step; each step reads what the earlier ones made."""

    def __init__(self, rng: random.Random, staff: int, departments: int, subsidiaries: int,
                 member_ratio: float, branch_staff: tuple[int, int] = (25, 55)) -> None:
        self.rng = rng
        self.branch_staff = branch_staff
        self.n_staff = staff
        self.n_departments = departments
        self.n_subsidiaries = subsidiaries
        self.member_ratio = member_ratio
        self.ids: set[str] = set()
        self.mobiles: set[str] = set()
        self.units: list[Record] = []
        self.unit: dict[str, Record] = {}
        self.company: dict[str, str] = {}          # unit code → its company's code
        self.short: dict[str, str] = {}            # company code → short name for party org names
        self.unit_role: dict[str, str] = {}        # unit code → leaders | office | operating | team
        self.next_child: dict[tuple[str, str], int] = defaultdict(int)  # (parent, kind) → last number
        self.children: dict[str, list[Record]] = defaultdict(list)
        self.staff: list[Record] = []
        self.managers: set[str] = set()
        self.party_orgs: list[Record] = []
        self.retirees_branch: dict[str, str] = {}  # company code → its retirees' branch
        self.workplace_branches: dict[str, list[str]] = defaultdict(list)
        self.members: list[Record] = []
        self.row_of: dict[str, Record] = {}        # employee_no → that person's roster row
        self.dropped: set[int] = set()             # id() of roster rows a plant removed
        self.protected: set[str] = set()
        self.noisy: set[str] = set()               # employee numbers of staff rows made invalid
        self.phantoms: dict[str, str] = {}
        self.expected: dict[str, str | None] = {}
        self.surnames = (vocab.SURNAMES, list(accumulate(1 / (i + 1) ** 0.8 for i in range(len(vocab.SURNAMES)))))
        self.ethnicities = _weighted(vocab.ETHNICITIES)
        self.educations = _weighted(vocab.EDUCATIONS)
        self.areas = _weighted(vocab.AREA_CODES)

    # ------------------------------------------------------------------ identities
    def date_between(self, start: date, end: date) -> date:
        return date.fromordinal(self.rng.randint(start.toordinal(), max(start.toordinal(), end.toordinal())))

    def birth_date(self, min_age: int, max_age: int) -> date:
        """A birth date for someone aged min_age … max_age on REFERENCE_DATE."""
        return self.date_between(add_years(REFERENCE_DATE, -max_age - 1) + timedelta(days=1),
                                 add_years(REFERENCE_DATE, -min_age))

    def name(self, gender: str) -> str:
        rng = self.rng
        surname = rng.choices(self.surnames[0], cum_weights=self.surnames[1])[0]
        pool = vocab.GIVEN_MALE if gender == "1" else vocab.GIVEN_FEMALE
        if rng.random() < 0.3:
            return surname + rng.choice(pool)
        first = rng.choice(vocab.GIVEN_NEUTRAL if rng.random() < 0.5 else pool)
        return surname + first + rng.choice(pool)

    def id_number(self, birth: date, gender: str) -> str:
        rng = self.rng
        while True:
            area = rng.choices(self.areas[0], cum_weights=self.areas[1])[0]
            sequence = rng.randrange(500) * 2 + (1 if gender == "1" else 0)  # odd = male
            first17 = f"{area}{birth:%Y%m%d}{sequence:03d}"
            number = first17 + id_check_char(first17)
            if number not in self.ids:
                self.ids.add(number)
                return number

    def identity(self, min_age: int, max_age: int) -> Record:
        """Name, sex, birth date, ID number, ethnicity, education and mobile of a new person."""
        rng = self.rng
        gender = "1" if rng.random() < 0.64 else "2"  # energy groups employ more men
        birth = self.birth_date(min_age, max_age)
        return {
            "name": self.name(gender), "gender": gender, "birth_date": birth.isoformat(),
            "ethnicity": rng.choices(self.ethnicities[0], cum_weights=self.ethnicities[1])[0],
            "education": rng.choices(self.educations[0], cum_weights=self.educations[1])[0],
            "id_number": self.id_number(birth, gender), "mobile": _new_mobile(rng, self.mobiles),
        }

    # ------------------------------------------------------------------ business line
    def add_unit(self, parent: str | None, name: str, kind: str, role: str, status: str = "active") -> Record:
        if parent is None:
            code = ROOT_CODE
        else:
            self.next_child[parent, kind] += 1
            number = self.next_child[parent, kind]
            # Subsidiaries 1001, 1002 …; departments add four digits, teams two (10010001, 1001000101).
            code = str(int(ROOT_CODE) + number) if kind == "company" else f"{parent}{number:0{4 if kind == 'department' else 2}d}"
        unit = {"code": code, "name": name, "parent_code": parent, "kind": kind, "status": status,
                "manager_employee_no": None}
        self.units.append(unit)
        self.unit[code] = unit
        if parent is not None:
            self.children[parent].append(unit)
        self.company[code] = code if kind == "company" else self.company[parent]  # type: ignore[index]
        self.unit_role[code] = role
        return unit

    def operating_names(self, count: int) -> list[str]:
        rng = self.rng
        named = list(vocab.OPERATING_UNITS) + [f"第{vocab.chinese_number(i)}车间" for i in range(1, 9)]
        sites = [place + suffix for place in vocab.SITE_PLACES for suffix in vocab.SITE_SUFFIXES]
        rng.shuffle(named)
        rng.shuffle(sites)
        names = named + sites
        n = 1
        while len(names) < count:  # very large groups: numbered work areas
            names.append(f"第{vocab.chinese_number(n)}工区")
            n += 1
        return names[:count]

    def build_units(self) -> None:
        if self.n_subsidiaries > len(vocab.SUBSIDIARIES):
            raise ValueError(f"at most {len(vocab.SUBSIDIARIES)} subsidiaries")
        root = self.add_unit(None, vocab.GROUP_NAME, "company", "company")
        self.short[ROOT_CODE] = vocab.GROUP_SHORT
        companies = [root]
        for place, industry in vocab.SUBSIDIARIES[: self.n_subsidiaries]:
            company = self.add_unit(ROOT_CODE, f"{vocab.PARTY_SHORT}{place}{industry}有限公司", "company", "company")
            self.short[company["code"]] = place + industry
            companies.append(company)
        hq = max(3, round(self.n_departments * 0.1)) if self.n_subsidiaries else self.n_departments
        rest = self.n_departments - hq
        shares = [hq] + [rest // self.n_subsidiaries + (i < rest % self.n_subsidiaries) for i in range(self.n_subsidiaries)]
        for company, count in zip(companies, shares):
            n_office = min(len(vocab.FUNCTIONAL_DEPARTMENTS), count if company is root else max(3, round(count * 0.35)))
            for name in vocab.FUNCTIONAL_DEPARTMENTS[:n_office]:
                name = "集团领导" if company is root and name == "公司领导" else name
                self.add_unit(company["code"], name, "department", "leaders" if name.endswith("领导") else "office")
            for name in self.operating_names(count - n_office):
                dept = self.add_unit(company["code"], name, "department", "operating")
                if self.rng.random() < 0.45:
                    for team in sorted(self.rng.sample(vocab.TEAM_NAMES, self.rng.randint(2, 4)), key=vocab.TEAM_NAMES.index):
                        self.add_unit(dept["code"], team, "team", "team")
            if company is not root:  # one department dissolved in a past reorganization, no staff
                self.add_unit(company["code"], self.rng.choice(vocab.DISSOLVED_NAMES), "department", "dissolved", "dissolved")

    def build_staff(self) -> None:
        rng = self.rng
        weight = {"leaders": 0.25, "office": 0.9, "operating": 1.6, "team": 1.0}
        places = [u["code"] for u in self.units if self.unit_role[u["code"]] in weight]
        cum = list(accumulate(weight[self.unit_role[c]] for c in places))
        for number, unit in enumerate(rng.choices(places, cum_weights=cum, k=self.n_staff), 1):
            roll = rng.random()
            status = ("retired" if roll < 0.07 else "left" if roll < 0.10 else "dismissed" if roll < 0.105
                      else "invalid" if roll < 0.108 else "probation" if roll < 0.14 else "temporary" if roll < 0.17
                      else "active")
            min_age, max_age = (60, 78) if status == "retired" else (22, 59)
            person = self.identity(min_age, max_age)
            birth = date.fromisoformat(person["birth_date"])
            if status == "probation":
                hired = self.date_between(REFERENCE_DATE - timedelta(days=180), REFERENCE_DATE - timedelta(days=7))
            else:
                hired = self.date_between(add_years(birth, rng.randint(19, 24)), min(add_years(birth, 58), REFERENCE_DATE - timedelta(days=200)))
            member_chance = 0.5 if status == "retired" else self.member_ratio
            political, joined = self.political(birth, member_chance)
            role = self.unit_role[unit]
            self.staff.append({
                "employee_no": f"{1000000 + number}", **person, "org_unit_code": unit,
                "position": self.position(unit, role), "employment_status": status,
                "hired_on": hired.isoformat(), "political_status": political, "party_joined_on": _iso(joined),
            })

    def political(self, birth: date, member_chance: float) -> tuple[str, date | None]:
        """Political status and party join date of one person."""
        rng = self.rng
        if rng.random() < member_chance:
            if rng.random() < 0.05 and add_years(birth, 45) > REFERENCE_DATE:
                # Probationary: joined within the last year (the one-year probation runs).
                return "02", REFERENCE_DATE - timedelta(days=rng.randint(20, 340))
            latest = min(add_years(birth, 45), REFERENCE_DATE - timedelta(days=400))
            return "01", self.date_between(add_years(birth, 18), latest)
        age = REFERENCE_DATE.year - birth.year
        if age < 29 and rng.random() < 0.5:
            return "03", None
        if rng.random() < 0.02:
            return rng.choice(vocab.DEMOCRATIC_PARTIES), None
        return "13", None

    def position(self, unit: str, role: str) -> str:
        if role == "leaders":
            return self.rng.choice(vocab.LEADER_POSITIONS[1:])
        if role == "office":
            return self.rng.choice(vocab.FINANCE_POSITIONS if self.unit[unit]["name"] == "财务部" else vocab.OFFICE_POSITIONS)
        return self.rng.choice(vocab.OPERATING_POSITIONS if role == "operating" else vocab.TEAM_POSITIONS)

    def assign_managers(self) -> None:
        """The first in-service person of each unit manages it; a company is managed by the head of
        its leaders' department."""
        first: dict[str, Record] = {}
        for s in self.staff:
            if s["employment_status"] in IN_SERVICE:
                first.setdefault(s["org_unit_code"], s)
        for code, s in first.items():
            unit, role = self.unit[code], self.unit_role[code]
            s["position"] = _manager_title(unit["name"], role)
            unit["manager_employee_no"] = s["employee_no"]
            self.managers.add(s["employee_no"])
            if role == "leaders":
                self.unit[self.company[code]]["manager_employee_no"] = s["employee_no"]
                if s["political_status"] not in HR_MEMBER:  # a state-owned company's head is a member
                    birth = date.fromisoformat(s["birth_date"])
                    s["political_status"], joined = self.political(birth, member_chance=1.0)
                    s["party_joined_on"] = _iso(joined)

    # ------------------------------------------------------------------ party line
    def add_party_org(self, code: str, name: str, kind: str, parent: str | None, covers: list[str],
                      retirees: bool = False) -> Record:
        org = {"code": code, "name": name, "kind": kind, "parent_code": parent, "covers": covers,
               "secretary": None, "elected_on": None, "term_years": 3,
               "has_committee": kind != "branch", "retirees": retirees}
        self.party_orgs.append(org)
        return org

    def build_party(self) -> None:
        rng = self.rng
        in_service: dict[str, int] = defaultdict(int)  # department code → in-service staff incl. teams
        for s in self.staff:
            if s["employment_status"] in IN_SERVICE:
                unit = self.unit[s["org_unit_code"]]
                in_service[unit["parent_code"] if unit["kind"] == "team" else unit["code"]] += 1
        group = self.add_party_org("P" + ROOT_CODE, f"中共{vocab.GROUP_NAME}委员会", "committee", None, [ROOT_CODE])
        for company in (u for u in self.units if u["kind"] == "company"):
            code, short = company["code"], self.short[company["code"]]
            committee = group if code == ROOT_CODE else self.add_party_org(
                f"P{code}", f"中共{company['name']}委员会", "committee", group["code"], [code])
            departments = [u for u in self.children[code] if u["kind"] == "department" and u["status"] == "active"]
            counter = iter(range(1, 10**6))
            office = [d for d in departments if self.unit_role[d["code"]] != "operating"]
            operating = [d for d in departments if self.unit_role[d["code"]] == "operating"]
            for group_units in self.coverage_groups(office, in_service):
                name = f"{short}机关第{vocab.chinese_number(len(self.workplace_branches[code]) + 1)}党支部"
                self.add_branch(code, committee["code"], name, group_units, counter)
            parent = committee["code"]
            if len(operating) >= 6:  # production units gathered under a general branch
                parent = self.add_party_org(f"P{code}Z1", f"{short}生产党总支", "general_branch",
                                            committee["code"], [d["code"] for d in operating])["code"]
            for group_units in self.coverage_groups(operating, in_service):
                suffix = "党支部" if len(group_units) == 1 else "联合党支部"
                self.add_branch(code, parent, f"{short}{group_units[0]['name']}{suffix}", group_units, counter)
                teams = self.children[group_units[0]["code"]]
                if len(teams) >= 3 and rng.random() < 0.3:
                    # 支部建在班组上: a big team gets its own branch (nearest covering unit wins).
                    self.add_branch(code, parent, f"{short}{group_units[0]['name']}{teams[0]['name']}党支部", [teams[0]], counter)
            self.retirees_branch[code] = self.add_party_org(
                f"P{code}R", f"{short}离退休党支部", "branch", committee["code"], [], retirees=True)["code"]
        self.expected = expected_branches(self.units, self.party_orgs)

    def coverage_groups(self, departments: list[Record], in_service: dict[str, int]) -> list[list[Record]]:
        """Consecutive departments gathered until a branch has ~40 staff (25–55 by default)."""
        groups: list[list[Record]] = []
        current: list[Record] = []
        size, target = 0, self.rng.randint(*self.branch_staff)
        for dept in departments:
            current.append(dept)
            size += in_service[dept["code"]]
            if size >= target:
                groups.append(current)
                current, size, target = [], 0, self.rng.randint(*self.branch_staff)
        if current:
            if groups and size < 15:
                groups[-1].extend(current)
            else:
                groups.append(current)
        return groups

    def add_branch(self, company: str, parent: str, name: str, units: list[Record], counter: Any) -> None:
        code = f"P{company}B{next(counter):04d}"
        self.add_party_org(code, name, "branch", parent, [u["code"] for u in units])
        self.workplace_branches[company].append(code)

    def build_roster(self) -> None:
        rng = self.rng
        for s in self.staff:
            if s["political_status"] not in HR_MEMBER:
                continue
            status = s["employment_status"]
            if status == "retired":
                branch = self.retirees_branch[self.company[s["org_unit_code"]]]
                row_status = "deceased" if rng.random() < 0.03 else "active"
            else:
                branch = self.expected[s["org_unit_code"]]  # type: ignore[assignment]
                row_status = "active" if status in IN_SERVICE else "transferred_out"
            joined = date.fromisoformat(s["party_joined_on"])
            full = s["political_status"] == "01"
            mobile = s["mobile"] if rng.random() < 0.92 else _new_mobile(rng, self.mobiles)
            self.add_member(s, branch, "full" if full else "probationary", joined, row_status, mobile)

    def add_member(self, person: Record, branch: str, category: str, joined: date, status: str,
                   mobile: str | None) -> Record:
        row = {
            "id_number": person["id_number"], "employee_no": person.get("employee_no"), "name": person["name"],
            "party_org_code": branch, "category": category, "joined_on": joined.isoformat(),
            "full_member_on": _iso(add_years(joined, 1)) if category == "full" else None,
            "status": status, "gender": person["gender"], "birth_date": person["birth_date"],
            "ethnicity": person["ethnicity"], "education": person["education"], "mobile": mobile,
            "position": person.get("position"),
        }
        self.members.append(row)
        if person.get("employee_no"):
            self.row_of[person["employee_no"]] = row
        return row

    def finish_party_orgs(self) -> None:
        """Secretaries, election dates and committees, from the roster as planted."""
        rng = self.rng
        members: dict[str, list[str]] = defaultdict(list)
        names = {s["employee_no"]: s["name"] for s in self.staff}
        dropped = self.dropped
        for row in self.members:
            if id(row) not in dropped and row["status"] == "active" and row["category"] == "full":
                members[row["party_org_code"]].append(names.get(row.get("employee_no") or "", row["name"]))
        children: dict[str, list[str]] = defaultdict(list)
        for org in self.party_orgs:
            children[org["parent_code"]].append(org["code"])
        for org in self.party_orgs:
            held = members.get(org["code"], [])
            if org["kind"] == "committee":  # the company head also chairs the committee (一肩挑)
                head = self.unit[org["covers"][0]]["manager_employee_no"]
                held = [names[head]] if head else held
            elif org["kind"] == "general_branch":
                held = [name for child in children[org["code"]] for name in members.get(child, [])]
            if not held and org["covers"]:  # a tiny branch: the head of its unit acts as secretary
                head = self.unit[org["covers"][0]]["manager_employee_no"]
                held = [names[head]] if head else []
            org["secretary"] = rng.choice(held) if held else None
            # Some terms began more than three years ago: the term_expired rule has work to do.
            org["elected_on"] = self.date_between(date(2021, 3, 1), date(2026, 6, 30)).isoformat()
            if org["kind"] == "branch":
                org["has_committee"] = len(held) >= 7  # 7+ full members elect a branch committee

    def build_performance(self) -> list[Record]:
        rng = self.rng
        grades = [g for g, *_ in vocab.GRADES]
        cum = list(accumulate(w for _, w, *_ in vocab.GRADES))
        bands = {g: (lo, hi) for g, _, lo, hi in vocab.GRADES}
        rows: list[Record] = []
        for s in self.staff:
            if s["employment_status"] not in IN_SERVICE | {"left"} or s["employee_no"] in self.noisy:
                continue
            periods = ["2025"] if s["hired_on"] < "2025-07-01" else []
            if s["employment_status"] in IN_SERVICE and s["hired_on"] < "2026-07-01":
                periods.append("2026-Q3")
            for period in periods:
                grade = rng.choices(grades, cum_weights=cum)[0]
                rows.append({"employee_no": s["employee_no"], "period": period, "grade": grade,
                             "score": rng.randint(*bands[grade]), "score_max": 100})
        return rows

    # ------------------------------------------------------------------ planting
    def pool(self) -> list[Record]:
        """Clean in-service members registered where expected: the raw material of plants."""
        pool = []
        for s in self.staff:
            row = self.row_of.get(s["employee_no"])
            if (s["employment_status"] in IN_SERVICE and s["political_status"] == "01" and row is not None
                    and row["status"] == "active" and row["party_org_code"] == self.expected.get(s["org_unit_code"])
                    and s["employee_no"] not in self.managers and s["employee_no"] not in self.protected):
                pool.append(s)
        self.rng.shuffle(pool)
        return pool

    def take(self, pool: list[Record], where: Callable[[Record], bool] = lambda s: True) -> Record:
        """Pop the first person of `pool` that is still unplanted and satisfies `where`."""
        for i, s in enumerate(pool):
            if s["employee_no"] not in self.protected and where(s):
                del pool[i]
                self.protected.add(s["employee_no"])
                return s
        raise ValueError("the enterprise is too small to plant every rule; use more staff")

    def outsiders(self) -> list[Record]:
        """In-service non-members without roster rows, not managers: for noise and name clashes."""
        out = [s for s in self.staff if s["employment_status"] in IN_SERVICE and s["political_status"] not in HR_MEMBER
               and s["employee_no"] not in self.row_of and s["employee_no"] not in self.managers]
        self.rng.shuffle(out)
        return out

    def plant(self) -> None:
        rng = self.rng
        k = max(3, self.n_staff // 400)
        # Both lists are built once (they are O(staff)); `take` skips whoever a plant used since.
        outsiders = self.outsiders()
        self.plant_uncovered(max(3, self.n_staff // 1000), self.pool(), outsiders)
        self.expected = expected_branches(self.units, self.party_orgs)
        pool = self.pool()
        covered: dict[str, list[str]] = defaultdict(list)  # company → its covered active units
        for u in self.units:
            if u["kind"] != "company" and u["status"] == "active" and self.expected[u["code"]]:
                covered[self.company[u["code"]]].append(u["code"])
        everywhere = [code for codes in covered.values() for code in codes]
        for _ in range(k):  # branch_mismatch: moved departments, party transfer not done
            s = self.take(pool)
            registered = self.row_of[s["employee_no"]]["party_org_code"]
            # Mostly a move within the subsidiary; a transfer across subsidiaries where it has one branch.
            for targets in (covered[self.company[s["org_unit_code"]]], everywhere):
                moved = [t for t in rng.sample(targets, min(len(targets), 40)) if self.expected[t] != registered]
                if moved:
                    s["org_unit_code"] = moved[0]
                    break
        for _ in range(k):  # missing_membership: never registered in the roster
            self.dropped.add(id(self.row_of[self.take(pool)["employee_no"]]))
        for i in range(k):  # orphan_membership, three ways
            if i % 3 == 0:
                self.take(pool)["employment_status"] = "left" if i % 2 == 0 else "dismissed"
            elif i % 3 == 1:
                self.plant_retiree_in_workplace()
            else:
                person = self.identity(25, 55)
                company = rng.choice(list(self.workplace_branches))
                joined = self.date_between(add_years(date.fromisoformat(person["birth_date"]), 18), REFERENCE_DATE - timedelta(days=400))
                self.add_member({**person, "position": rng.choice(vocab.OPERATING_POSITIONS)},
                                rng.choice(self.workplace_branches[company]), "full", joined, "active", person["mobile"])
        for i in range(k):  # status_conflict, three ways
            s = self.take(pool)
            if i % 3 == 0:
                row = self.row_of[s["employee_no"]]
                row["category"], row["full_member_on"] = "probationary", None
            elif i % 3 == 1:
                s["political_status"] = "02"  # HR never recorded the full membership
            else:
                s["political_status"], s["party_joined_on"] = "13", None
        for i in range(k):  # join_date_conflict: one side typed the date wrong
            self.plant_join_date(self.take(pool), on_roster=i % 2 == 0)
        for i in range(max(4, self.n_staff // 500)):  # ambiguous_match: roster rows without keys
            s = self.take(pool)
            row = self.row_of[s["employee_no"]]
            row["id_number"] = row["employee_no"] = None
            if i % 2:
                twin = self.take(outsiders, lambda o: o["name"] != s["name"])
                twin["name"] = s["name"]
                row["birth_date"] = None
        self.add_noise(pool, outsiders)

    def plant_uncovered(self, count: int, pool: list[Record], outsiders: list[Record]) -> None:
        """Units holding party members that no branch covers: new departments after a
        reorganization, and departments dropped from a joint branch's coverage.

        New departments come first: their staff move in from elsewhere, and must not empty a
        department that is dropped afterwards.
        """
        subsidiaries = [u["code"] for u in self.units if u["kind"] == "company" and u["code"] != ROOT_CODE] or [ROOT_CODE]
        new_units = (count + 1) // 2
        for i in range(new_units):
            company = subsidiaries[i % len(subsidiaries)]
            unit = self.add_unit(company, vocab.NEW_UNIT_NAMES[i % len(vocab.NEW_UNIT_NAMES)], "department", "office")
            movers = [self.take(pool, lambda s: self.company[s["org_unit_code"]] == company)
                      for _ in range(self.rng.randint(2, 3))]
            movers.append(self.take(outsiders))
            for s in movers:
                s["org_unit_code"] = unit["code"]
        holding = {s["org_unit_code"] for s in self.staff
                   if s["employment_status"] in IN_SERVICE and s["political_status"] in HR_MEMBER}
        for _ in range(count - new_units):
            joint = [o for o in self.party_orgs if o["kind"] == "branch" and len(o["covers"]) >= 2
                     and o["covers"][-1] in holding]  # dropping it must leave members uncovered
            if not joint:
                self.plant_uncovered(1, pool, outsiders)
                continue
            org = self.rng.choice(joint)
            org["covers"] = org["covers"][:-1]

    def plant_retiree_in_workplace(self) -> None:
        """A retired member still registered in a workplace branch (transfer never done)."""
        for s in self.staff:
            row = self.row_of.get(s["employee_no"])
            if (s["employment_status"] == "retired" and row is not None and row["status"] == "active"
                    and s["employee_no"] not in self.protected):
                company = self.company[s["org_unit_code"]]
                row["party_org_code"] = self.expected[s["org_unit_code"]] or self.workplace_branches[company][0]
                self.protected.add(s["employee_no"])
                return
        raise ValueError("no retired member left to plant; use more staff")

    def plant_join_date(self, s: Record, on_roster: bool) -> None:
        row = self.row_of[s["employee_no"]]
        joined = date.fromisoformat(row["joined_on"])
        moved = joined - timedelta(days=self.rng.randint(30, 700))
        if moved < add_years(date.fromisoformat(s["birth_date"]), 18):
            moved = joined + timedelta(days=self.rng.randint(30, 300))
        if on_roster:
            row["joined_on"], row["full_member_on"] = moved.isoformat(), add_years(moved, 1).isoformat()
        else:
            s["party_joined_on"] = moved.isoformat()

    def add_noise(self, pool: list[Record], outsiders: list[Record]) -> None:
        """Records the engine must quarantine (never mismatches): a broken ID checksum, an unknown
        political status spelling, an impossible date, a roster row naming no existing branch."""
        rng = self.rng
        noisy = [self.take(outsiders) for _ in range(max(2, self.n_staff // 1000) + 2 * (1 + self.n_staff // 5000))]
        self.noisy.update(s["employee_no"] for s in noisy)
        for i, s in enumerate(noisy):
            if i < max(2, self.n_staff // 1000):
                s["id_number"] = s["id_number"][:17] + rng.choice([c for c in "0123456789X" if c != s["id_number"][17]])
            elif i % 2:
                s["political_status"] = vocab.UNKNOWN_POLITICAL_SPELLING
            else:
                s["hired_on"] = "2021-02-30"  # the OA accepted an impossible date
        for i in range(1 + self.n_staff // 5000):
            s = self.take(pool)
            company = self.company[s["org_unit_code"]]
            code = f"P{company}X{i + 1:02d}"
            self.phantoms[code] = f"{self.short[company]}筹建处{'第' + vocab.chinese_number(i + 1) if i else ''}党支部"
            self.row_of[s["employee_no"]]["party_org_code"] = code


def _manager_title(unit_name: str, role: str) -> str:
    if role == "leaders":
        return vocab.LEADER_POSITIONS[0]
    if role == "team":
        return "班长"
    for suffix, title in (("项目部", "项目经理"), ("矿井", "矿长"), ("厂", "厂长"), ("风电场", "场长"), ("站", "站长")):
        if unit_name.endswith(suffix):
            return title
    return "主任" if role == "operating" or unit_name.endswith(("办公室", "中心")) else "部长"


def generate(staff: int = 2000, departments: int | None = None, subsidiaries: int = 3,
             member_ratio: float = 0.35, seed: int = 1, plant: bool = True,
             branch_staff: tuple[int, int] = (25, 55)) -> Enterprise:
    """Build a synthetic enterprise; the same arguments always give the same records.

    `staff` counts staff records (in service, retired and leavers); `departments` defaults to one
    per 30 staff (at least four per company); a branch gathers consecutive departments until it
    covers `branch_staff` in-service staff (a random target in that range). With `plant` the
    records carry several of every mismatch rule (count grows with size) and some quarantine noise.
    """
    if staff < (300 if plant else 1):
        raise ValueError("plant=True needs at least 300 staff")
    n_departments = departments if departments is not None else max(4 * (subsidiaries + 1), staff // 30)
    builder = _Builder(random.Random(seed), staff, n_departments, subsidiaries, member_ratio, branch_staff)
    builder.build_units()
    builder.build_staff()
    builder.assign_managers()
    builder.build_party()
    builder.build_roster()
    if plant:
        builder.plant()
    builder.finish_party_orgs()
    members = [r for r in builder.members if id(r) not in builder.dropped]
    params = {"staff": staff, "departments": n_departments, "subsidiaries": subsidiaries,
              "branch_staff": list(branch_staff),
              "member_ratio": member_ratio, "seed": seed, "plant": plant,
              "reference_date": REFERENCE_DATE.isoformat()}
    return Enterprise(
        group_name=vocab.GROUP_NAME, org_units=builder.units, staff=builder.staff,
        party_orgs=builder.party_orgs, party_members=members, performance=builder.build_performance(),
        params=params, phantom_party_orgs=builder.phantoms, protected=builder.protected,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.enterprise``: write an enterprise's demo sources, config and key."""
    from benchmarks.writers import write_config, write_demo_sources

    parser = argparse.ArgumentParser(prog="python -m benchmarks.enterprise", description=main.__doc__)
    parser.add_argument("--staff", type=int, default=2000)
    parser.add_argument("--departments", type=int, default=None)
    parser.add_argument("--subsidiaries", type=int, default=3)
    parser.add_argument("--member-ratio", type=float, default=0.35)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-plant", action="store_true", help="consistent data, no planted mismatches or noise")
    parser.add_argument("--out", type=Path, required=True, help="folder to write (created if missing)")
    args = parser.parse_args(argv)
    enterprise = generate(staff=args.staff, departments=args.departments, subsidiaries=args.subsidiaries,
                          member_ratio=args.member_ratio, seed=args.seed, plant=not args.no_plant)
    key = write_demo_sources(enterprise, args.out)
    write_config(args.out)
    print(f"wrote {args.out}: {len(enterprise.org_units)} org units, {len(enterprise.staff)} staff, "
          f"{len(enterprise.party_orgs)} party orgs, {len(enterprise.party_members)} roster rows; "
          f"expected mismatches {key['counts']}, quarantined {len(key['quarantined'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
