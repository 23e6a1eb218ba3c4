"""The mismatch queue and one mismatch's page: dual-line mismatches and standardization findings.

Queue (`/mismatches`): filter by rule, state, party org (with its subtree), source; sort; page;
bulk `exception` / `resolve` for admins and officers. Detail (`/mismatches/<id>`): the business
line and the party line side by side, the expected branch and which covered unit decided it, the
subject's history (change feed and audit rows), and the resolution forms that fit the rule — all
of which go through sync.resolutions, the same service the REST API uses.

Officers act only within their party-org subtree: on mismatches whose registered or expected
party org lies in it, and only towards target branches in it (a tampered form field answers 404
and changes nothing).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from flask import abort, current_app, g, redirect, render_template, request, session, url_for
from sqlalchemy import and_, exists, func, or_, select, text
from sqlalchemy.orm import Session

from mappings import codes
from records.models import (
    AuditLog, Change, ExpectedBranch, Membership, Mismatch, OrgUnit, PartyOrg, Person, SourceLink, Transfer,
)
from records.queries import MISMATCH_STATES, mismatch_state_filter, subtree_codes
from sync import resolutions
from sync.resolutions import BRANCH_ACTIONS, ResolutionError, default_target
from web.auth import db_session
from web.console import bp
from web.console.access import ACTORS, READERS, require_org_visible, roles, visible_org_codes
from web.console.i18n import RULE_LABELS, translate

PAGE_SIZE = 50
HISTORY_LIMIT = 60
BULK_LIMIT = 500
BULK_ACTIONS = ("exception", "resolve")
SORTS = {"opened": (Mismatch.opened_at.desc(), Mismatch.id.desc()),
         "rule": (Mismatch.rule, Mismatch.id),
         "org": (Mismatch.party_org_code, Mismatch.id)}
UNIT_PATH_DEPTH = 32


# --- the queue -----------------------------------------------------------------------------------


def _configured_sources() -> list[str]:
    return sorted(current_app.extensions["dualline"].config().sources)


def source_condition(source: str) -> Any:
    """Mismatches about a record that `source` feeds: the ambiguous record itself, or the subject
    person (staff or roster row), org unit or party org linked to that source.

    Correlated EXISTS, nested so that every step is an index lookup from the mismatch outwards
    (person → memberships → links): the cost follows the mismatches, not the enterprise. (One
    EXISTS over a join let SQLite start from the links and take seconds.)"""
    links = SourceLink.__table__

    def linked(kind: str, entity_id: Any) -> Any:
        return exists().where(links.c.kind == kind, links.c.entity_id == entity_id, links.c.source == source)

    roster = exists().where(Membership.person_id == Mismatch.subject_id, linked("party_members", Membership.id))
    return or_(
        Mismatch.subject_key.startswith(f"record:{source}:", autoescape=True),
        and_(Mismatch.subject_type == "person", or_(linked("staff", Mismatch.subject_id), roster)),
        and_(Mismatch.subject_type == "org_unit", linked("org_units", Mismatch.subject_id)),
        and_(Mismatch.subject_type == "party_org", linked("party_orgs", Mismatch.subject_id)),
    )


def _scope_condition(codes_: Iterable[str]) -> Any:
    codes_ = list(codes_)
    return or_(Mismatch.party_org_code.in_(codes_), Mismatch.other_party_org_code.in_(codes_))


@bp.get("/mismatches")
@roles(*READERS)
def mismatches():
    with db_session() as s:
        return render_template("console/mismatches.html", **_queue(s, request.args))


def _queue(s: Session, args: Any, error: str | None = None) -> dict[str, Any]:
    """The queue page's context for the query arguments `args`."""
    rule = args.get("rule") or None
    state = args.get("state") or "open"
    if state not in MISMATCH_STATES:
        state = "open"
    party_org = (args.get("party_org") or "").strip() or None
    source = args.get("source") or None
    sort = args.get("sort") if args.get("sort") in SORTS else "rule"
    page = max(args.get("page", 1, type=int) or 1, 1)
    sources = _configured_sources()
    query = select(Mismatch)
    visible = visible_org_codes(s)
    if visible is not None:
        query = query.where(_scope_condition(visible))
    if party_org:
        wanted = subtree_codes(s, party_org)
        if visible is not None:
            allowed = set(visible)
            wanted = [c for c in wanted if c in allowed]
        query = query.where(_scope_condition(wanted))
    if rule:
        query = query.where(Mismatch.rule == rule)
    if source:
        query = query.where(source_condition(source))
    query = query.where(mismatch_state_filter(state))
    total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = s.scalars(query.order_by(*SORTS[sort]).limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)).all()
    # names of the party orgs this page shows, not of every org in the enterprise
    shown = {c for m in items for c in (m.party_org_code, m.other_party_org_code) if c}
    if party_org:
        shown.add(party_org)
    org_names = dict(s.execute(select(PartyOrg.code, PartyOrg.name).where(PartyOrg.code.in_(shown))).all())
    # Suggestions for the party-org filter: the upper levels (a few), visible to this user.
    upper = select(PartyOrg.code, PartyOrg.name).where(PartyOrg.active.is_(True), PartyOrg.kind != "branch",
                                                        PartyOrg.kind != "group")
    if visible is not None:
        upper = upper.where(PartyOrg.code.in_(visible))
    org_choices = s.execute(upper.order_by(PartyOrg.code).limit(500)).all()
    filters = {"rule": rule, "state": state, "party_org": party_org, "source": source, "sort": sort}
    return {"items": items, "total": total, "page": page, "pages": max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1),
            "rules": list(RULE_LABELS), "org_names": org_names, "sources": sources, "sorts": list(SORTS),
            "filters": filters, "org_choices": org_choices, "can_act": g.user.role in ACTORS, "done": args.get("done", type=int),
            "error": error}


@bp.post("/mismatches/bulk")
@roles(*ACTORS)
def mismatches_bulk():
    """`exception` or `resolve` many mismatches at once; all or nothing."""
    action = request.form.get("action")
    if action not in BULK_ACTIONS:
        abort(400)
    try:
        ids = sorted({int(v) for v in request.form.getlist("ids")})
    except ValueError:
        abort(400)
    if not ids or len(ids) > BULK_LIMIT:
        abort(400)
    reason = request.form.get("reason", "")
    expires = _parse_date(request.form.get("expires_on")) if action == "exception" else None
    back = _local(request.form.get("back")) or url_for("console.mismatches")
    with db_session() as s:  # committed below only when every mismatch was resolved
        rows = s.scalars(select(Mismatch).where(Mismatch.id.in_(ids)).with_for_update()).all()
        if len(rows) != len(ids):
            abort(404)
        visible = visible_org_codes(s)
        if visible is not None:
            allowed = set(visible)
            if any(m.party_org_code not in allowed and m.other_party_org_code not in allowed for m in rows):
                abort(404)  # nothing applied: the transaction rolls back
        try:
            for m in rows:
                try:
                    resolutions.resolve(s, m, action, g.user.username, reason, expires_at=expires)
                except ResolutionError as exc:
                    exc.mismatch_id = m.id  # type: ignore[attr-defined]
                    raise
            s.commit()
        except ResolutionError as exc:
            s.rollback()
            message = f"#{exc.mismatch_id}: {_error_text(exc)}" if getattr(exc, "mismatch_id", None) else _error_text(exc)
            return render_template("console/mismatches.html", **_queue(s, request.args, error=message)), exc.status
    separator = "&" if "?" in back else "?"
    return redirect(f"{back}{separator}done={len(rows)}")


# --- one mismatch --------------------------------------------------------------------------------


def _load_visible(s: Session, mismatch_id: int) -> Mismatch:
    m = s.get(Mismatch, mismatch_id)
    if m is None:
        abort(404)
    require_org_visible(s, m.party_org_code, m.other_party_org_code)
    return m


def code_name(table: codes.CodeTable, value: Any) -> str:
    if value is None or value == "":
        return "—"
    name = table.display_name(value)
    return f"{name} ({value})" if name else str(value)


def unit_path(s: Session, code: str | None) -> list[tuple[str, str]]:
    """The org unit and its ancestors, root first: [(code, name)] (bounded: cycles in bad data end)."""
    if not code:
        return []
    rows = s.execute(text(f"""
        WITH RECURSIVE up(code, name, parent_code, depth) AS (
            SELECT code, name, parent_code, 0 FROM org_units WHERE code = :code
            UNION ALL
            SELECT u.code, u.name, u.parent_code, up.depth + 1 FROM org_units u JOIN up ON u.code = up.parent_code
            WHERE up.depth < {UNIT_PATH_DEPTH}
        ) SELECT code, name, depth FROM up ORDER BY depth DESC
    """), {"code": code}).all()
    return [(c, n) for c, n, _ in rows] or [(code, code)]


def _history(s: Session, m: Mismatch, person: Person | None, membership_ids: list[int]) -> list[dict[str, Any]]:
    """Change-feed and audit rows about the person, their memberships and this mismatch, newest first."""
    about = [and_(Change.entity == "mismatch", Change.entity_id == m.id)]
    if person is not None:
        about.append(and_(Change.entity == "person", Change.entity_id == person.id))
    elif m.subject_type in ("org_unit", "party_org") and m.subject_id is not None:
        about.append(and_(Change.entity == m.subject_type, Change.entity_id == m.subject_id))
    if membership_ids:
        about.append(and_(Change.entity == "membership", Change.entity_id.in_(membership_ids)))
    changes = s.scalars(select(Change).where(or_(*about)).order_by(Change.seq.desc()).limit(HISTORY_LIMIT)).all()
    targets = [and_(AuditLog.target_type == "mismatch", AuditLog.target_id == str(m.id))]
    if person is not None:
        targets.append(and_(AuditLog.target_type == "person", AuditLog.target_id == str(person.id)))
    audits = s.scalars(select(AuditLog).where(or_(*targets)).order_by(AuditLog.id.desc()).limit(HISTORY_LIMIT)).all()
    out = [{"at": c.at, "kind": "change", "actor": c.actor, "what": f"{c.entity} {c.op}", "run_id": c.run_id,
            "changed": c.changed or {}} for c in changes]
    out += [{"at": a.at, "kind": "audit", "actor": a.actor, "what": a.action, "run_id": None,
             "reason": (a.details or {}).get("reason"), "changed": (a.details or {}).get("changed") or {}}
            for a in audits]
    out.sort(key=lambda e: e["at"] or dt.datetime.min, reverse=True)
    return out[:HISTORY_LIMIT]


def _branch_options(s: Session, retirees: bool = False) -> list[tuple[str, str]]:
    query = select(PartyOrg.code, PartyOrg.name).where(PartyOrg.active.is_(True), PartyOrg.kind == "branch")
    if retirees:
        query = query.where(PartyOrg.retirees.is_(True))
    visible = visible_org_codes(s)
    if visible is not None:
        query = query.where(PartyOrg.code.in_(visible))
    return [tuple(r) for r in s.execute(query.order_by(PartyOrg.code)).all()]


def _detail_context(s: Session, m: Mismatch) -> dict[str, Any]:
    details = m.details or {}
    person = s.get(Person, m.subject_id) if m.subject_type == "person" and m.subject_id else None
    memberships = s.scalars(select(Membership).where(Membership.person_id == person.id)
                            .order_by(Membership.active.desc(), Membership.id)).all() if person else []
    unit_code = person.org_unit_code if person else m.org_unit_code
    expected = s.get(ExpectedBranch, unit_code) if unit_code else None
    candidates: list[Person] = []
    if m.rule == "ambiguous_match":
        ids = [c for c in details.get("candidates") or [] if isinstance(c, int)]
        candidates = s.scalars(select(Person).where(Person.id.in_(ids)).order_by(Person.id)).all() if ids else []
    transfers = s.scalars(select(Transfer).where(or_(Transfer.mismatch_id == m.id, Transfer.person_id == person.id)
                                                 if person else Transfer.mismatch_id == m.id)
                          .order_by(Transfer.id.desc()).limit(20)).all()
    codes_shown = {c for c in (m.party_org_code, m.other_party_org_code) if c}
    codes_shown |= {x.party_org_code for x in memberships if x.party_org_code}
    codes_shown |= {c for t in transfers for c in (t.from_party_org_code, t.to_party_org_code) if c}
    if expected is not None:
        codes_shown.add(expected.branch_code)
    org_names = dict(s.execute(select(PartyOrg.code, PartyOrg.name).where(PartyOrg.code.in_(codes_shown))).all())
    unit_codes = {c for c in (expected.via_unit_code if expected else None,) if c}
    unit_codes |= {p.org_unit_code for p in candidates if p.org_unit_code}
    unit_names = dict(s.execute(select(OrgUnit.code, OrgUnit.name).where(OrgUnit.code.in_(unit_codes))).all())
    actions = resolutions.actions_for(m.rule) if m.closed_at is None else ()
    if person is None or person.employment_status != "retired":
        actions = tuple(a for a in actions if a != "move_to_retirees")
    return {
        "m": m, "details": details, "person": person, "memberships": memberships,
        "active_membership": next((x for x in memberships if x.active and x.status == "active"), None),
        "path": unit_path(s, unit_code), "expected": expected, "candidates": candidates, "transfers": transfers,
        "org_names": org_names, "unit_names": unit_names, "history": _history(s, m, person, [x.id for x in memberships]),
        "actions": actions, "branches": _branch_options(s) if {"transfer", "create_membership"} & set(actions) else [],
        "retiree_branches": _branch_options(s, retirees=True) if "move_to_retirees" in actions else [],
        "political": code_name(codes.POLITICAL_STATUS, person.political_status) if person else "—",
        "employment": code_name(codes.EMPLOYMENT_STATUS, person.employment_status) if person else "—",
        "can_act": g.user.role in ACTORS and m.closed_at is None,
        "coverage_link": f"/coverage?unit={m.org_unit_code}" if m.rule == "uncovered_unit" and m.org_unit_code else None,
        "today": dt.date.today().isoformat(),
    }


@bp.get("/mismatches/<int:mismatch_id>")
@roles(*READERS)
def mismatch_detail(mismatch_id: int):
    with db_session() as s:
        m = _load_visible(s, mismatch_id)
        context = _detail_context(s, m)
        return render_template("console/mismatch.html", done=request.args.get("done"), error=None, **context)


def _parse_date(value: str | None) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        abort(400)


def _local(target: str | None) -> str | None:
    return target if target and target.startswith("/") and not target.startswith("//") else None


def _error_text(exc: ResolutionError) -> str:
    """The error in the user's language (the service's English message when there is no text)."""
    key = f"mm_err_{exc.code}"
    message = translate(key, session.get("lang", "zh"))
    return exc.message if message == key else message


@bp.post("/mismatches/<int:mismatch_id>/resolve")
@roles(*ACTORS)
def mismatch_resolve(mismatch_id: int):
    action = request.form.get("action", "")
    form = request.form
    person_id = form.get("person_id", type=int)
    with db_session() as s:  # committed only when the action succeeded (abort rolls back)
        m = s.scalars(select(Mismatch).where(Mismatch.id == mismatch_id).with_for_update()).one_or_none()
        if m is None:
            abort(404)
        require_org_visible(s, m.party_org_code, m.other_party_org_code)
        target = (form.get("target_party_org") or "").strip() or None
        if action in BRANCH_ACTIONS:
            target = target or default_target(m, action)
            if target:
                # The target branch must lie in the officer's subtree too (a tampered field → 404).
                require_org_visible(s, target)
        else:
            target = None
        if action == "link_person" and person_id is not None and g.user.role == "officer":
            # An officer links only to one of the candidates correlation found.
            if person_id not in [c for c in (m.details or {}).get("candidates") or [] if isinstance(c, int)]:
                abort(404)
        expires = _parse_date(form.get("expires_on")) if action == "exception" else None
        try:
            resolutions.resolve(
                s, m, action, g.user.username, form.get("reason", ""), expires_at=expires,
                target_party_org=target, person_id=person_id, to_org_name=form.get("to_org_name"),
                letter_no=(form.get("letter_no") or "").strip()[:64] or None,
                dues_paid_until=_parse_date(form.get("dues_paid_until")))
            s.commit()
        except ResolutionError as exc:
            s.rollback()
            context = _detail_context(s, s.get(Mismatch, mismatch_id))
            return render_template("console/mismatch.html", done=None, error=_error_text(exc),
                                   failed_action=action, **context), exc.status
    return redirect(url_for("console.mismatch_detail", mismatch_id=mismatch_id, done=action))
