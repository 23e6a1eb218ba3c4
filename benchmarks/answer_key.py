"""The answer key: an independent, deliberately plain evaluation of DESIGN.md's rules.

Given an enterprise's canonical source records this module says which records a correct engine
quarantines and which mismatches it opens. It reads only the data, never the generator's list of
what it planted, so a planting bug cannot hide an engine bug (or the other way round). It is
written for obviousness, not speed: dictionaries and loops, one rule at a time.

Semantics (DESIGN.md "Mismatch rule ids", made precise):
- Quarantine first: staff with an invalid ID number (checksum, embedded birth date or sex), an
  unknown code, or an invalid date; roster rows with an invalid ID number or date, an unknown
  category, or a party org code that does not exist. Quarantined records take part in nothing.
- Roster rows are matched to staff by ID number (exact), else by employee number. A row with
  neither is ``ambiguous_match`` when any staff member has the same name and the same birth date
  (or either birth date is empty); it is never merged, so it places no membership.
- Active membership = placed roster row with status active. In service = staff with status
  active, probation or temporary. "HR says member" = political status 01 or 02.
- The expected branch of a unit is the party org of kind branch whose covered unit is the nearest
  ancestor-or-self.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

Record = dict[str, Any]

RULES = (
    "branch_mismatch", "missing_membership", "orphan_membership", "status_conflict",
    "join_date_conflict", "uncovered_unit", "ambiguous_match",
)
IN_SERVICE = frozenset({"active", "probation", "temporary"})
HR_MEMBER = frozenset({"01", "02"})
POLITICAL_CODES = frozenset(f"{n:02d}" for n in range(1, 14))
EMPLOYMENT_STATUSES = IN_SERVICE | {"dismissed", "left", "retired", "invalid"}
MEMBER_CATEGORIES = frozenset({"full", "probationary"})
# Coded fields checked before a record is used: (field, allowed values). Empty political status
# is allowed (HR may not know it); employment status and member category are required.
_STAFF_CODES = (("political_status", POLITICAL_CODES | {None, ""}), ("employment_status", EMPLOYMENT_STATUSES))
_MEMBER_CODES = (("category", MEMBER_CATEGORIES),)

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def id_check_char(first17: str) -> str:
    """The GB 11643 check character (ISO 7064 MOD 11-2) for the first 17 digits."""
    return _ID_CHECK[sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS)) % 11]


def parse_iso_date(value: str) -> date | None:
    """The date of a canonical ``YYYY-MM-DD`` string, or None when it is not a real date."""
    if len(value) != 10 or value[4] != "-" or value[7] != "-":
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def id_number_problem(id_number: str, birth_date: str | None, gender: str | None) -> str | None:
    """Why an ID number is invalid (None when valid): shape, checksum, or disagreement with the
    record's birth date or sex."""
    if len(id_number) != 18 or not id_number[:17].isdigit() or id_number[17] not in "0123456789X":
        return "malformed"
    if id_check_char(id_number[:17]) != id_number[17]:
        return "checksum"
    embedded = f"{id_number[6:10]}-{id_number[10:12]}-{id_number[12:14]}"
    if parse_iso_date(embedded) is None or (birth_date and birth_date != embedded):
        return "birth date"
    if gender in ("1", "2") and int(id_number[16]) % 2 != (gender == "1"):
        return "sex"
    return None


def _quarantine_item(kind: str, source: str, key: Record, label: str, reason: str,
                     field: str, value: Any) -> Record:
    return {"kind": kind, "source": source, "key": key, "label": label, "reason": reason,
            "field": field, "value": value}


def _problem(row: Record, codes: Iterable[tuple[str, frozenset[Any]]], dates: Iterable[str],
             party_org_codes: set[str] | None = None) -> tuple[str, str] | None:
    """(reason category, field) that quarantines a record, or None; the first problem wins."""
    if row.get("id_number") and id_number_problem(row["id_number"], row.get("birth_date"), row.get("gender")):
        return "invalid_id_number", "id_number"
    for field, allowed in codes:
        if row.get(field) not in allowed:
            return "unknown_code", field
    for field in dates:
        if row.get(field) and parse_iso_date(row[field]) is None:
            return "invalid_date", field
    if party_org_codes is not None and row.get("party_org_code") not in party_org_codes:
        return "unknown_party_org", "party_org_code"
    return None


def staff_problem(row: Record) -> tuple[str, str] | None:
    """(reason category, field) that quarantines a staff record, or None."""
    return _problem(row, _STAFF_CODES, ("birth_date", "hired_on", "party_joined_on"))


def member_problem(row: Record, party_org_codes: set[str]) -> tuple[str, str] | None:
    """(reason category, field) that quarantines a roster row, or None."""
    return _problem(row, _MEMBER_CODES, ("birth_date", "joined_on", "full_member_on"), party_org_codes)


def expected_branches(org_units: Iterable[Record], party_orgs: Iterable[Record]) -> dict[str, str | None]:
    """Unit code → code of its expected branch (None when no branch covers it or an ancestor)."""
    parent = {u["code"]: u.get("parent_code") for u in org_units}
    covering: dict[str, str] = {}
    for org in party_orgs:
        if org["kind"] == "branch":
            for code in org.get("covers") or ():
                covering[code] = org["code"]
    expected: dict[str, str | None] = {}
    for code in parent:
        seen: set[str] = set()
        cursor: str | None = code
        while cursor is not None and cursor not in covering and cursor not in seen:
            seen.add(cursor)  # guards against a cycle in bad data
            cursor = parent.get(cursor)
        expected[code] = covering.get(cursor) if cursor is not None else None
    return expected


def _person(staff: Record | None, row: Record | None) -> Record:
    """A person subject: by employee number when there is a staff record, else by ID number,
    else (an unplaced row without either) by name and birth date."""
    if staff is not None:
        return {"type": "person", "employee_no": staff["employee_no"], "label": staff["name"]}
    assert row is not None
    if row.get("id_number"):
        return {"type": "person", "id_number": row["id_number"], "label": row["name"]}
    return {"type": "person", "label": row["name"], "birth_date": row.get("birth_date") or None}


def _subject_key(subject: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(subject.get(k) or "") for k in ("type", "employee_no", "id_number", "code", "label", "birth_date"))


def evaluate(org_units: list[Record], staff: list[Record], party_orgs: list[Record],
             party_members: list[Record]) -> Record:
    """The answer key for these canonical records: ``{"mismatches", "quarantined", "counts"}``.

    Mismatch items are ``{"rule", "subject"}``, unique and sorted by rule then subject.
    """
    quarantined: list[Record] = []
    good_staff: list[Record] = []
    for row in staff:
        problem = staff_problem(row)
        if problem:
            reason, field = problem
            quarantined.append(_quarantine_item("staff", "oa", {"employee_no": row["employee_no"]},
                                                row["name"], reason, field, row.get(field)))
        else:
            good_staff.append(row)
    party_org_codes = {o["code"] for o in party_orgs}
    good_rows: list[Record] = []
    for row in party_members:
        problem = member_problem(row, party_org_codes)
        if problem:
            reason, field = problem
            key = {"id_number": row.get("id_number"), "name": row["name"]}
            quarantined.append(_quarantine_item("party_members", "roster", key, row["name"], reason,
                                                field, row.get(field)))
        else:
            good_rows.append(row)

    items: dict[tuple[str, tuple[str, ...]], Record] = {}

    def add(rule: str, subject: Record) -> None:
        items[(rule, _subject_key(subject))] = {"rule": rule, "subject": subject}

    by_id = {s["id_number"]: s for s in good_staff if s.get("id_number")}
    by_emp = {s["employee_no"]: s for s in good_staff}
    birth_dates_by_name: dict[str, list[str | None]] = defaultdict(list)
    for s in good_staff:
        birth_dates_by_name[s["name"]].append(s.get("birth_date") or None)

    # Place roster rows on staff; collect active memberships per staff and party-only rows.
    active_rows: dict[str, list[Record]] = defaultdict(list)
    party_only: list[Record] = []
    for row in good_rows:
        id_number, employee_no = row.get("id_number") or None, row.get("employee_no") or None
        person = by_id.get(id_number) if id_number else None
        if person is None and employee_no:
            person = by_emp.get(employee_no)
        if person is None and not id_number and not employee_no:
            birth = row.get("birth_date") or None
            if any(b is None or birth is None or b == birth for b in birth_dates_by_name.get(row["name"], ())):
                add("ambiguous_match", _person(None, row))
                continue
        if row["status"] != "active":
            continue
        if person is None:
            party_only.append(row)
        else:
            active_rows[person["employee_no"]].append(row)

    expected = expected_branches(org_units, party_orgs)
    retirees = {o["code"] for o in party_orgs if o.get("retirees")}
    units = {u["code"]: u for u in org_units}
    for s in good_staff:
        rows = active_rows.get(s["employee_no"], [])
        subject = _person(s, None)
        hr_member = s.get("political_status") in HR_MEMBER
        in_service = s["employment_status"] in IN_SERVICE
        for row in rows:
            if s.get("party_joined_on") and row.get("joined_on") and s["party_joined_on"] != row["joined_on"]:
                add("join_date_conflict", subject)
        if not in_service:
            for row in rows:
                if not (s["employment_status"] == "retired" and row["party_org_code"] in retirees):
                    add("orphan_membership", subject)
            continue
        if hr_member and not rows:
            add("missing_membership", subject)
        unit = s.get("org_unit_code")
        branch = expected.get(unit) if unit else None
        if (hr_member or rows) and branch is None:
            unit_label = units[unit]["name"] if unit in units else str(unit)
            add("uncovered_unit", {"type": "org_unit", "code": unit, "label": unit_label})
        for row in rows:
            if branch is not None and row["party_org_code"] != branch:
                add("branch_mismatch", subject)
            status = s.get("political_status")
            if (status == "01" and row["category"] == "probationary") or (
                    status == "02" and row["category"] == "full") or (status and status not in HR_MEMBER):
                add("status_conflict", subject)
    for row in party_only:
        add("orphan_membership", _person(None, row))

    mismatches = [items[k] for k in sorted(items)]
    counts = {rule: 0 for rule in RULES}
    for item in mismatches:
        counts[item["rule"]] += 1
    quarantined.sort(key=lambda q: (q["kind"], q["reason"], str(q["key"])))
    return {"mismatches": mismatches, "quarantined": quarantined, "counts": counts}
