"""People: search a person, and the unified record of one person with where each field came from.

Search (`/people?q=`) matches the name (prefix or contains), the employee number (exact) and — for
users allowed to see sensitive data (admins) — the ID number, through its keyed hash (the plain
number is never stored, so it cannot be matched any other way).

Which persons an officer sees (the same rule as a subtree-limited API token, web.api.security):
those with a membership registered in the officer's party-org subtree (any status, so people who
transferred out stay findable), and those whose org unit is covered by a party org of the subtree
(coverage with descendants, as alignment reads it). Anyone else answers 404.

ID numbers and mobiles show masked; an admin may reveal them for one person, which is a POST with
the CSRF token and is written to the audit log (who, whose, why).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from flask import abort, current_app, g, make_response, render_template, request
from sqlalchemy import ColumnElement, case, func, or_, select, true
from sqlalchemy.orm import Session

from mappings import codes
from records.models import (
    AuditLog, Change, Membership, Mismatch, OrgUnit, PartyOrg, Performance, Person, SourceLink,
)
from records.queries import covered_unit_codes
from web.auth import db_session
from web.console import bp
from web.console.access import READERS, roles, visible_org_codes

PAGE_SIZE = 50
SENSITIVE_ROLES = ("admin",)
PERSON_FIELDS = ("employee_no", "name", "gender", "birth_date", "ethnicity", "education", "id_number", "mobile",
                 "org_unit_code", "position", "employment_status", "hired_on", "political_status",
                 "party_joined_on")
CODED_FIELDS = {"gender": codes.GENDER, "ethnicity": codes.ETHNICITY, "education": codes.EDUCATION,
                "political_status": codes.POLITICAL_STATUS, "employment_status": codes.EMPLOYMENT_STATUS}


def can_see_sensitive() -> bool:
    return g.user.role in SENSITIVE_ROLES


def code_label(field: str, value: Any) -> str | None:
    table = CODED_FIELDS.get(field)
    return table.display_name(value) if table is not None and value is not None else None


def persons_scope(s: Session) -> ColumnElement[bool]:
    """Persons the current user may see (module docstring)."""
    party_orgs = visible_org_codes(s)
    if party_orgs is None:
        return true()
    if "visible_unit_codes" not in g:
        g.visible_unit_codes = covered_unit_codes(s, party_orgs)
    # An uncorrelated IN (one pass over memberships) rather than EXISTS per person: the engines
    # build the set once, which keeps a 100 000-person list fast.
    registered = select(Membership.person_id).where(Membership.party_org_code.in_(party_orgs))
    return or_(Person.id.in_(registered), Person.org_unit_code.in_(g.visible_unit_codes))


def looks_like_id_number(q: str) -> bool:
    """Resident ID numbers: 18 characters (17 digits and a digit or X), old ones 15 digits."""
    return (len(q) == 18 and q[:17].isdigit() and (q[17].isdigit() or q[17] in "xX")) or (len(q) == 15 and q.isdigit())


def search_condition(q: str) -> tuple[ColumnElement[bool], ColumnElement[int], bool]:
    """(where, rank, matched_id_number) for the query `q`; rank sorts exact hits first."""
    conditions = [Person.name.contains(q, autoescape=True), Person.employee_no == q]
    by_id = False
    if can_see_sensitive() and looks_like_id_number(q):
        conditions.append(Person.id_number_hash == current_app.extensions["dualline"].runtime().cipher.keyed_hash(q))
        by_id = True
    rank = case((Person.employee_no == q, 0), (Person.name == q, 1),
                (Person.name.startswith(q, autoescape=True), 2), else_=3)
    return or_(*conditions), rank, by_id


@bp.get("/people")
@roles(*READERS)
def people():
    q = (request.args.get("q") or "").strip()[:100]
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    id_search_refused = bool(q) and looks_like_id_number(q) and not can_see_sensitive()
    with db_session() as s:
        query = select(Person).where(persons_scope(s))
        order: list[Any] = [Person.name, Person.id]
        if q:
            where, rank, _ = search_condition(q)
            query = query.where(where)
            order.insert(0, rank)
        items = s.scalars(query.order_by(*order).limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)).all()
        # a search that fits on its first page needs no second pass to count
        total = len(items) if page == 1 and len(items) < PAGE_SIZE else (
            s.scalar(select(func.count()).select_from(query.subquery())) or 0)
        ids = [p.id for p in items]
        units = dict(s.execute(select(OrgUnit.code, OrgUnit.name)
                               .where(OrgUnit.code.in_({p.org_unit_code for p in items if p.org_unit_code}))).all())
        branches: dict[int, list[tuple[str, str]]] = {}
        for person_id, code, name in s.execute(
                select(Membership.person_id, Membership.party_org_code, PartyOrg.name)
                .outerjoin(PartyOrg, PartyOrg.code == Membership.party_org_code)
                .where(Membership.person_id.in_(ids), Membership.active.is_(True), Membership.status == "active")):
            branches.setdefault(person_id, []).append((code, name or code))
    return render_template("console/people.html", q=q, items=items, total=total, page=page,
                           pages=max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1), units=units, branches=branches,
                           id_search_refused=id_search_refused, code_label=code_label,
                           sensitive=can_see_sensitive())


def _visible_person(s: Session, person_id: int) -> Person:
    person = s.scalar(select(Person).where(Person.id == person_id, persons_scope(s)))
    if person is None:
        abort(404)
    return person


def _record(s: Session, person: Person) -> dict[str, Any]:
    """Everything the person page shows, in a fixed number of queries (no per-row lookups)."""
    memberships = s.execute(
        select(Membership, PartyOrg.name).outerjoin(PartyOrg, PartyOrg.code == Membership.party_org_code)
        .where(Membership.person_id == person.id).order_by(Membership.active.desc(), Membership.id)).all()
    performance = s.scalars(select(Performance).where(Performance.person_id == person.id)
                            .order_by(Performance.period.desc()).limit(40)).all()
    membership_ids = [m.id for m, _ in memberships]
    performance_ids = [p.id for p in performance]
    links = s.scalars(select(SourceLink).where(or_(
        (SourceLink.kind == "staff") & (SourceLink.entity_id == person.id),
        (SourceLink.kind == "party_members") & SourceLink.entity_id.in_(membership_ids),
        (SourceLink.kind == "performance") & SourceLink.entity_id.in_(performance_ids),
    )).order_by(SourceLink.source, SourceLink.kind, SourceLink.external_id).limit(200)).all()
    # live mismatches (open, resolved or ignored, not yet closed by agreeing data)
    mismatches = s.scalars(select(Mismatch).where(
        Mismatch.subject_type == "person", Mismatch.subject_id == person.id, Mismatch.closed_at.is_(None))
        .order_by(Mismatch.opened_at.desc()).limit(50)).all()
    history = s.scalars(select(Change).where(Change.entity == "person", Change.entity_id == person.id)
                        .order_by(Change.seq.desc()).limit(20)).all()
    unit = s.scalar(select(OrgUnit).where(OrgUnit.code == person.org_unit_code)) if person.org_unit_code else None
    return {"memberships": memberships, "performance": performance, "links": links, "mismatches": mismatches,
            "history": history, "unit": unit}


def _field_rows(person: Person, revealed: dict[str, str | None]) -> list[dict[str, Any]]:
    rows = []
    for field in PERSON_FIELDS:
        if field in ("id_number", "mobile"):
            value = revealed.get(field) if field in revealed else getattr(person, f"{field}_masked")
        else:
            value = getattr(person, field)
        if isinstance(value, dt.date):
            value = value.isoformat()
        rows.append({"field": field, "value": value, "label": code_label(field, value),
                     "source": (person.provenance or {}).get(field),
                     "masked": field in ("id_number", "mobile") and field not in revealed})
    return rows


def _render_person(s: Session, person: Person, revealed: dict[str, str | None]):
    return render_template("console/person.html", person=person, fields=_field_rows(person, revealed),
                           revealed=bool(revealed), sensitive=can_see_sensitive(), **_record(s, person))


@bp.get("/people/<int:person_id>")
@roles(*READERS)
def person_detail(person_id: int):
    with db_session() as s:
        person = _visible_person(s, person_id)
        return _render_person(s, person, {})


@bp.post("/people/<int:person_id>/reveal")
@roles(*SENSITIVE_ROLES)
def person_reveal(person_id: int):
    """Show the full ID number and mobile of one person to an admin, once, and audit it."""
    reason = (request.form.get("reason") or "").strip()[:500]
    cipher = current_app.extensions["dualline"].runtime().cipher
    with db_session() as s, s.begin():
        person = _visible_person(s, person_id)
        revealed = {"id_number": cipher.decrypt(person.id_number_enc), "mobile": cipher.decrypt(person.mobile_enc)}
        s.add(AuditLog(actor=g.user.username, action="person.reveal", target_type="person", target_id=str(person.id),
                       details={"fields": [k for k, v in revealed.items() if v], "reason": reason or None}))
        response = make_response(_render_person(s, person, revealed))
    # The page holds the plain values: no cache (browser or proxy) may keep it.
    response.headers["Cache-Control"] = "no-store"
    return response
