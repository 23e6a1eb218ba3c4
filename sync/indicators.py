"""Indicators per party org (its whole subtree): where a party organization stands.

`org_indicators(session, code)` returns, for the org and every org below it:

  * `standardization` — score 0–100 from the *open* standardization findings (rule ids of
    sync.rules.RULES) scoped to the subtree: `score = max(0, 100 − Σ weight / branches)` with
    weights high 10, medium 5, low 2 (a low is a reminder) and `branches` the number of active
    branches in the subtree (at least 1): the average penalty per branch, so a committee with 40
    branches and a single branch are on the same scale. Ignored, resolved and closed findings do
    not count (ignoring is a person's decision, audited in the queue).
  * `findings` — open findings by rule id, dual-line rules included.
  * `meetings` — organizational life held vs required over the last 12 completed months (12
    months, 4 quarters, 1 year by each type's `per`), with the requirements of `meetings_missing`
    (config included): required = Σ over judged orgs and periods of `min`; held = Σ of
    min(counted, min) — a period's surplus does not cover another's gap; member meetings that
    failed the quorum do not count. `rate` = held / required. The secretary's lecture is left out
    (it is a person's duty, not a meeting count).
  * `dues` — collection rate over the last `dues_months` (12) completed months: Σ paid (capped at
    expected per member-month) / Σ expected, over member-months with a known expected amount.
  * `integration` (党建与业务融合) — share of A/B grades (优秀, 良好) among the subtree's active
    members with a grade of `year` vs among all in-service staff with a grade in the units the
    subtree's orgs cover (coverage with descendants); `gap` = members − staff.
  * `cross_appointment` (双向进入、交叉任职) — share of the subtree's org secretaries who hold a
    management position in the business line: they manage an org unit
    (`org_units.manager_employee_no`) or their HR `position` names a management post
    (MANAGEMENT_WORDS). A secretary is a name (as in `secretary_tenure`): matched to an active
    member of that org of that name, else to a person of that name (the only one).
Everything is a handful of set-based queries over the subtree.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from sqlalchemy import Date, bindparam, text
from sqlalchemy.orm import Session

from records.queries import subtree_codes
from sync.dues import DuesPolicy, collection_rate, completed_months, member_months
from sync.points import year_grades
from sync.rules.meetings_missing import _MEMBER_QUORUM_FAILED, RULE as MEETINGS, completed_periods

SEVERITY_WEIGHTS = {"high": 10, "medium": 5, "low": 2}
GOOD_GRADES = ("优秀", "良好")
MANAGEMENT_WORDS = ("董事长", "总经理", "经理", "厂长", "主任", "部长", "处长", "科长", "所长", "院长",
                    "总监", "主管", "队长", "总工程师", "总会计师", "行长", "站长", "矿长")
PERIODS_IN_YEAR = {"month": 12, "quarter": 4, "year": 1}


def _in(sql: str, *names: str, dates: tuple[str, ...] = ()):
    return text(sql).bindparams(*(bindparam(n, expanding=True) for n in names),
                                *(bindparam(d, type_=Date) for d in dates))


def org_indicators(session: Session, code: str, *, today: dt.date | None = None, rule_set: Any = None,
                   year: int | None = None, dues_months: int = 12) -> dict[str, Any]:
    """The indicators of party org `code` and its subtree (see the module docstring)."""
    from sync.rules.engine import RuleSet

    rule_set = rule_set or RuleSet.from_config(None)
    today = rule_set.evaluation_date(today)
    year = year or today.year - 1
    codes = subtree_codes(session, code)
    conn = session.connection()
    orgs = list(conn.execute(_in("""
        SELECT code, name, kind, secretary, has_committee FROM party_orgs
        WHERE active = :yes AND code IN :codes
    """, "codes"), {"yes": True, "codes": codes}))
    branches = sum(1 for o in orgs if o.kind == "branch")

    # -- findings ---------------------------------------------------------------------------
    findings: dict[str, int] = {}
    penalty = 0
    for r in conn.execute(_in("""
        SELECT rule, severity, COUNT(*) AS n FROM mismatches
        WHERE state = 'open' AND closed_at IS NULL AND party_org_code IN :codes
        GROUP BY rule, severity
    """, "codes"), {"codes": codes}):
        findings[r.rule] = findings.get(r.rule, 0) + int(r.n)
        if r.rule in rule_set.rules:
            penalty += SEVERITY_WEIGHTS.get(r.severity, 5) * int(r.n)
    per_branch = penalty / max(branches, 1)
    standardization = {"score": round(max(0.0, 100.0 - per_branch), 1), "penalty": penalty,
                       "branches": branches, "weights": SEVERITY_WEIGHTS}

    return {
        "party_org_code": code, "today": today.isoformat(), "year": year, "subtree": sorted(codes),
        "standardization": standardization,
        "findings": dict(sorted(findings.items())),
        "meetings": _meetings(session, orgs, today, rule_set),
        "dues": _dues(session, codes, today, rule_set, dues_months),
        "integration": _integration(session, codes, year),
        "cross_appointment": _cross_appointment(session, orgs, codes),
    }


def _meetings(session: Session, orgs: list[Any], today: dt.date, rule_set: Any) -> dict[str, Any]:
    required = MEETINGS.requirements(rule_set.thresholds["meetings_missing"])
    required.pop("secretary_lecture", None)
    periods = {per: completed_periods(today, per, PERIODS_IN_YEAR[per]) for per in {r["per"] for r in required.values()}}
    if not periods or not orgs:
        return {"held": 0, "required": 0, "rate": None, "by_type": {}}
    start = min(p[1] for ps in periods.values() for p in ps)
    end = max(p[2] for ps in periods.values() for p in ps)
    counted: dict[tuple[str, str, str], int] = defaultdict(int)
    for a in session.connection().execute(_in(f"""
        SELECT a.party_org_code AS code, a.type, a.held_on FROM activities a
        WHERE a.active = :yes AND a.party_org_code IN :codes AND a.held_on >= :start AND a.held_on < :end
          AND NOT ({_MEMBER_QUORUM_FAILED})
    """, "codes", dates=("start", "end")), {"yes": True, "codes": [o.code for o in orgs], "start": start, "end": end}):
        if a.type not in required:
            continue
        day = a.held_on if isinstance(a.held_on, dt.date) else dt.date.fromisoformat(str(a.held_on)[:10])
        for label, p_start, p_end in periods[required[a.type]["per"]]:
            if p_start <= day < p_end:
                counted[(a.code, a.type, label)] += 1
    by_type: dict[str, dict[str, int]] = {}
    for org in orgs:
        for type_, req in required.items():
            if (type_ == "group_meeting") != (org.kind == "group"):
                continue
            if org.kind not in ("branch", "group") or (type_ == "committee_meeting" and not org.has_committee):
                continue
            entry = by_type.setdefault(type_, {"held": 0, "required": 0})
            for label, _, _ in periods[req["per"]]:
                entry["required"] += req["min"]
                entry["held"] += min(counted.get((org.code, type_, label), 0), req["min"])
    held = sum(e["held"] for e in by_type.values())
    needed = sum(e["required"] for e in by_type.values())
    return {"held": held, "required": needed, "rate": None if not needed else round(held / needed, 4),
            "by_type": by_type}


def _dues(session: Session, codes: list[str], today: dt.date, rule_set: Any, months: int) -> dict[str, Any]:
    policy = DuesPolicy.from_thresholds(rule_set.thresholds["dues_underpaid"])
    window = completed_months(today, months)
    out = collection_rate(member_months(session.connection(), window, policy, codes))
    return out | {"from": window[0], "to": window[-1]}


def covered_units(session: Session, codes: list[str]) -> list[str]:
    """Org units covered by `codes` (with their descendants where coverage says so)."""
    conn = session.connection()
    direct = list(conn.execute(_in("""
        SELECT org_unit_code, include_descendants FROM coverage WHERE party_org_code IN :codes
    """, "codes"), {"codes": codes}))
    units = {r.org_unit_code for r in direct}
    roots = [r.org_unit_code for r in direct if r.include_descendants]
    if roots:
        units |= {r[0] for r in conn.execute(_in("""
            WITH RECURSIVE below (code, depth) AS (
                SELECT code, 0 FROM org_units WHERE code IN :roots
                UNION ALL
                SELECT u.code, below.depth + 1 FROM org_units u JOIN below ON u.parent_code = below.code
                WHERE below.depth < 32
            ) SELECT DISTINCT code FROM below
        """, "roots"), {"roots": roots})}
    return sorted(units)


def _share(grades: dict[int, str]) -> dict[str, Any]:
    graded = len(grades)
    good = sum(1 for g in grades.values() if g in GOOD_GRADES)
    return {"graded": graded, "good": good, "share": None if not graded else round(good / graded, 4)}


def _integration(session: Session, codes: list[str], year: int) -> dict[str, Any]:
    conn = session.connection()
    member_ids = [r[0] for r in conn.execute(_in("""
        SELECT DISTINCT m.person_id FROM memberships m
        WHERE m.active = :yes AND m.status = 'active' AND m.party_org_code IN :codes
    """, "codes"), {"yes": True, "codes": codes})]
    units = covered_units(session, codes)
    staff_ids = [r[0] for r in conn.execute(_in("""
        SELECT p.id FROM persons p
        WHERE p.staff_active = :yes AND p.employment_status IN ('active', 'probation', 'temporary')
          AND p.org_unit_code IN :units
    """, "units"), {"yes": True, "units": units})] if units else []
    members = _share(year_grades(conn, member_ids, year))
    staff = _share(year_grades(conn, staff_ids, year))
    gap = (None if members["share"] is None or staff["share"] is None
           else round(members["share"] - staff["share"], 4))
    return {"year": year, "good_grades": list(GOOD_GRADES), "members": members, "staff": staff, "gap": gap,
            "covered_units": len(units)}


def _cross_appointment(session: Session, orgs: list[Any], codes: list[str]) -> dict[str, Any]:
    conn = session.connection()
    named = {o.code: o.secretary.strip() for o in orgs if o.secretary and o.secretary.strip()}
    if not named:
        return {"secretaries": 0, "matched": 0, "managing": 0, "share": None, "orgs": []}
    names = sorted(set(named.values()))
    people = list(conn.execute(_in("""
        SELECT p.id, TRIM(p.name) AS name, p.employee_no, p.position,
               (SELECT MAX(m.party_org_code) FROM memberships m
                WHERE m.person_id = p.id AND m.active = :yes AND m.status = 'active'
                  AND m.party_org_code IN :codes) AS member_of,
               (SELECT COUNT(*) FROM org_units u WHERE u.active = :yes AND u.manager_employee_no = p.employee_no
                  AND p.employee_no IS NOT NULL) AS manages
        FROM persons p WHERE TRIM(p.name) IN :names
    """, "codes", "names"), {"yes": True, "codes": codes, "names": names}))
    by_name: dict[str, list[Any]] = defaultdict(list)
    for p in people:
        by_name[p.name].append(p)
    out = []
    for code, name in sorted(named.items()):
        candidates = by_name.get(name, [])
        person = next((p for p in candidates if p.member_of == code), None)
        if person is None and len(candidates) == 1:
            person = candidates[0]
        managing = bool(person and (person.manages or any(w in (person.position or "") for w in MANAGEMENT_WORDS)))
        out.append({"party_org_code": code, "secretary": name, "person_id": person.id if person else None,
                    "position": person.position if person else None, "managing": managing})
    matched = sum(1 for o in out if o["person_id"] is not None)
    managing = sum(1 for o in out if o["managing"])
    return {"secretaries": len(out), "matched": matched, "managing": managing,
            "share": round(managing / len(out), 4), "orgs": out}
