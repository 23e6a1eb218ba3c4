"""The coverage editor: the business tree and the party tree side by side, and which party org
covers which org unit (支部建在连上).

Both trees load a level at a time (`?unit=` / `?org=` focus a node; `?fragment=units|orgs` returns
one level for htmx to unfold in place), so 7 800 units and thousands of branches cost one level's
queries per request. Edits go through `POST /coverage/preview` (re-runs alignment, shows how many
mismatches would open and close by rule, keeps nothing) and then `POST /coverage/save`
(sync.coverage does the work, under the run locks; audited, in the change feed).

Who: everyone reads; admins and officers edit, an officer only party orgs of their own subtree
(a form naming another org is refused with 404 and nothing changes). Org units are not scoped: an
officer maps any department to their branches; the preview warns when another org covers it too.
Officers see the coverage and expected branches of their subtree only.
"""
from __future__ import annotations

import threading
from typing import Any

from flask import abort, g, redirect, render_template, request, session, url_for
from sqlalchemy import func, or_, select, text
from sqlalchemy.orm import Session

from records.models import AuditLog, Change, Coverage, ExpectedBranch, OrgUnit, PartyOrg
from sync.coverage import CoverageBusy, CoverageEditError, CoverageEditor, UnitTree, parse_edits, suggest, \
    uncovered_with_suggestions
from web.auth import db_session
from web.console import bp
from web.console.access import ACTORS, READERS, require_org_visible, roles, visible_org_codes
from web.console.i18n import translate

LEVEL_LIMIT = 300  # nodes shown per tree level; a bigger level says how many more there are
SEARCH_LIMIT = 30
SUGGESTION_LIMIT = 20
TRUE_WORDS = ("1", "true", "on", "yes")
# Suggestions read every org unit and party org (about a second at 7 800 units and 1 700 orgs):
# they are kept per database, user scope and change-feed position. Every change to units, orgs,
# coverage or mismatches writes a change row, so a new `max(seq)` means "compute again".
_SUGGESTIONS: dict[tuple[Any, ...], tuple[list[Any], list[Any]]] = {}
_SUGGESTIONS_LOCK = threading.Lock()
_SUGGESTIONS_KEPT = 32


def _runtime():
    from flask import current_app

    return current_app.extensions["dualline"].runtime()


# --- tree levels -----------------------------------------------------------------------------


def _path(s: Session, table: str, code: str | None) -> list[dict[str, str]]:
    """A node and its ancestors, top first (one recursive query; depth-bounded against cycles)."""
    if not code:
        return []
    rows = s.execute(text(f"""
        WITH RECURSIVE up(code, parent_code, name, depth) AS (
            SELECT code, parent_code, name, 0 FROM {table} WHERE code = :code
            UNION ALL
            SELECT t.code, t.parent_code, t.name, up.depth + 1 FROM {table} t JOIN up ON t.code = up.parent_code
            WHERE up.depth < 32
        ) SELECT code, name FROM up ORDER BY depth DESC
    """), {"code": code}).all()
    return [{"code": c, "name": n} for c, n in rows]


def _level(s: Session, model: Any, parent: str | None, only: list[str] | None = None) -> tuple[list[Any], int]:
    """One level of a tree: the children of `parent`, or the roots (no parent, or a parent that is
    not there). Returns (nodes, how many in all)."""
    query = select(model).where(model.active.is_(True))
    if only is not None:
        query = query.where(model.code.in_(only))
    elif parent is None:
        table = model.__table__.alias("parent")
        orphan = ~select(table.c.code).where(table.c.code == model.parent_code).exists()
        query = query.where(or_(model.parent_code.is_(None), orphan))
    else:
        query = query.where(model.parent_code == parent)
    total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
    return list(s.scalars(query.order_by(model.code).limit(LEVEL_LIMIT))), total


def _child_counts(s: Session, model: Any, codes: list[str]) -> dict[str, int]:
    if not codes:
        return {}
    return dict(s.execute(select(model.parent_code, func.count()).where(
        model.parent_code.in_(codes), model.active.is_(True)).group_by(model.parent_code)).all())


def _org_names(s: Session, codes: set[str]) -> dict[str, dict[str, str]]:
    if not codes:
        return {}
    return {c: {"name": n, "kind": k} for c, n, k in s.execute(
        select(PartyOrg.code, PartyOrg.name, PartyOrg.kind).where(PartyOrg.code.in_(codes)))}


def unit_nodes(s: Session, units: list[OrgUnit]) -> list[dict[str, Any]]:
    """Units with their number of children, the orgs covering each directly and its expected
    branch (officers: only orgs of their subtree are named). Four queries for the whole level."""
    codes = [u.code for u in units]
    visible = visible_org_codes(s)
    counts = _child_counts(s, OrgUnit, codes)
    covers: dict[str, list[dict[str, Any]]] = {}
    expected: dict[str, str] = {}
    if codes:
        cov_query = select(Coverage).where(Coverage.org_unit_code.in_(codes))
        exp_query = select(ExpectedBranch).where(ExpectedBranch.org_unit_code.in_(codes))
        if visible is not None:
            cov_query = cov_query.where(Coverage.party_org_code.in_(visible))
            exp_query = exp_query.where(ExpectedBranch.branch_code.in_(visible))
        for c in s.scalars(cov_query.order_by(Coverage.party_org_code)):
            covers.setdefault(c.org_unit_code, []).append(
                {"org": c.party_org_code, "deep": c.include_descendants, "origin": c.origin})
        expected = {e.org_unit_code: e.branch_code for e in s.scalars(exp_query)}
    names = _org_names(s, {c["org"] for rows in covers.values() for c in rows} | set(expected.values()))
    # An officer is not told "not covered" about a unit another subtree may cover.
    return [{"unit": u, "children": counts.get(u.code, 0), "covers": covers.get(u.code, []),
             "expected": expected.get(u.code), "names": names, "scoped": visible is not None} for u in units]


def org_nodes(s: Session, orgs: list[PartyOrg]) -> list[dict[str, Any]]:
    """Party orgs with their number of children and the units each covers (three queries)."""
    codes = [o.code for o in orgs]
    counts = _child_counts(s, PartyOrg, codes)
    covered: dict[str, list[dict[str, Any]]] = {}
    if codes:
        for c, name in s.execute(select(Coverage, OrgUnit.name).outerjoin(OrgUnit, OrgUnit.code == Coverage.org_unit_code)
                                 .where(Coverage.party_org_code.in_(codes)).order_by(Coverage.org_unit_code)):
            covered.setdefault(c.party_org_code, []).append(
                {"code": c.org_unit_code, "name": name or c.org_unit_code, "deep": c.include_descendants,
                 "origin": c.origin})
    return [{"org": o, "children": counts.get(o.code, 0), "covers": covered.get(o.code, [])} for o in orgs]


def _org_roots(s: Session) -> tuple[list[PartyOrg], int]:
    visible = visible_org_codes(s)
    if visible is not None:
        return _level(s, PartyOrg, None, only=[g.user.party_org_code or ""])
    return _level(s, PartyOrg, None)


# --- pages -----------------------------------------------------------------------------------


def _page_context(s: Session, unit: str | None, org: str | None) -> dict[str, Any]:
    q = (request.args.get("q") or "").strip()[:100]
    visible = visible_org_codes(s)
    unit_row = s.scalar(select(OrgUnit).where(OrgUnit.code == unit)) if unit else None
    org_row = s.scalar(select(PartyOrg).where(PartyOrg.code == org)) if org else None
    if org and org_row is None:
        abort(404)
    unit_path = _path(s, "org_units", unit_row.code) if unit_row else []
    org_path = _path(s, "party_orgs", org_row.code) if org_row else []
    if visible is not None:  # an officer's breadcrumb starts at their own org
        org_path = [p for p in org_path if p["code"] in visible]
    units, units_total = _level(s, OrgUnit, unit_row.code if unit_row else None)
    if org_row is not None:
        orgs, orgs_total = _level(s, PartyOrg, org_row.code)
        focus_org = org_nodes(s, [org_row])[0]
    else:
        orgs, orgs_total = _org_roots(s)
        focus_org = None
    found_units: list[dict[str, Any]] | None = None
    found_orgs: list[dict[str, Any]] | None = None
    if q:
        found_units = unit_nodes(s, list(s.scalars(
            select(OrgUnit).where(OrgUnit.active.is_(True), or_(OrgUnit.name.contains(q, autoescape=True),
                                                                OrgUnit.code == q))
            .order_by(OrgUnit.code).limit(SEARCH_LIMIT))))
        org_query = select(PartyOrg).where(PartyOrg.active.is_(True), or_(
            PartyOrg.name.contains(q, autoescape=True), PartyOrg.code == q))
        if visible is not None:
            org_query = org_query.where(PartyOrg.code.in_(visible))
        found_orgs = org_nodes(s, list(s.scalars(org_query.order_by(PartyOrg.code).limit(SEARCH_LIMIT))))
    focus_unit = unit_nodes(s, [unit_row])[0] if unit_row else None
    suggestions, uncovered = _suggestions(s, org_row.code if org_row else None, visible)
    return {
        "q": q, "unit": unit_row, "org": org_row, "unit_path": unit_path, "org_path": org_path,
        "focus_unit": focus_unit, "focus_org": focus_org,
        "units": unit_nodes(s, units), "units_more": max(units_total - len(units), 0),
        "orgs": org_nodes(s, orgs), "orgs_more": max(orgs_total - len(orgs), 0),
        "found_units": found_units, "found_orgs": found_orgs,
        "suggestions": suggestions, "uncovered": uncovered,
        "can_edit": g.user.role in ACTORS,
    }


def _suggestions(s: Session, org_code: str | None, visible: list[str] | None) -> tuple[list[Any], list[Any]]:
    """(name suggestions, uncovered units with their best suggestion), cached (see above)."""
    key = (s.get_bind().url.render_as_string(hide_password=True), s.scalar(select(func.max(Change.seq))),
           org_code, tuple(sorted(visible)) if visible is not None else None)
    with _SUGGESTIONS_LOCK:
        if key in _SUGGESTIONS:
            return _SUGGESTIONS[key]
    tree = UnitTree.load(s)  # one read of the org units for both lists
    value = (suggest(s, org_code, visible=visible, tree=tree)[:SUGGESTION_LIMIT],
             uncovered_with_suggestions(s, visible=visible, limit=SUGGESTION_LIMIT, tree=tree))
    with _SUGGESTIONS_LOCK:
        while len(_SUGGESTIONS) >= _SUGGESTIONS_KEPT:
            _SUGGESTIONS.pop(next(iter(_SUGGESTIONS)))
        _SUGGESTIONS[key] = value
    return value


@bp.get("/coverage")
@roles(*READERS)
def coverage():
    unit = (request.args.get("unit") or "").strip()[:64] or None
    org = (request.args.get("org") or "").strip()[:64] or None
    fragment = request.args.get("fragment")
    with db_session() as s:
        if org:
            require_org_visible(s, org)
        if fragment == "units":
            units, total = _level(s, OrgUnit, unit)
            return render_template("console/_coverage_units.html", nodes=unit_nodes(s, units),
                                   more=max(total - len(units), 0), can_edit=g.user.role in ACTORS,
                                   selected_org=org)
        if fragment == "orgs":
            if not org:
                abort(404)
            orgs, total = _level(s, PartyOrg, org)
            return render_template("console/_coverage_orgs.html", nodes=org_nodes(s, orgs),
                                   more=max(total - len(orgs), 0), can_edit=g.user.role in ACTORS,
                                   selected_unit=unit)
        context = _page_context(s, unit, org)
        context["saved"] = _saved_outcome(s, request.args.get("saved", type=int))
    return render_template("console/coverage.html", **context)


def _saved_outcome(s: Session, audit_id: int | None) -> dict[str, Any] | None:
    """The outcome of the user's own save just made (redirect after POST shows it once)."""
    if not audit_id:
        return None
    row = s.get(AuditLog, audit_id)
    if row is None or row.action != "coverage.edit" or row.actor != g.user.username:
        return None
    mismatches = (row.details or {}).get("mismatches") or {}
    opened = sum((mismatches.get("opened") or {}).values()) + sum((mismatches.get("reopened") or {}).values())
    return {"opened": opened, "closed": sum((mismatches.get("closed") or {}).values()),
            "applied": (row.details or {}).get("applied") or []}


def _form_edits() -> list[dict[str, Any]]:
    """The edits a form posts: parallel lists op / party_org_code / org_unit_code /
    include_descendants (the last as "1" / "0", so that lists stay aligned)."""
    ops = request.form.getlist("op")
    orgs = request.form.getlist("party_org_code")
    units = request.form.getlist("org_unit_code")
    deep = request.form.getlist("include_descendants")
    if not (len(ops) == len(orgs) == len(units)) or len(deep) > len(ops):
        raise CoverageEditError("the form's edits do not line up; reload the page", field="edits")
    deep += ["1"] * (len(ops) - len(deep))
    return [{"op": o.strip(), "party_org_code": p.strip(), "org_unit_code": u.strip(),
             "include_descendants": d.strip().lower() in TRUE_WORDS} for o, p, u, d in zip(ops, orgs, units, deep)]


def _checked_edits(s: Session):
    """Parsed edits, every party org inside the user's subtree (404 otherwise: an officer does not
    learn what exists outside it)."""
    edits = parse_edits(_form_edits())
    visible = visible_org_codes(s)
    if visible is not None and any(e.party_org_code not in visible for e in edits):
        abort(404)
    return edits


def _edit_error(message: str, status: int, field: str | None = None):
    first_unit = (request.form.getlist("org_unit_code") or [None])[0] or None
    first_org = (request.form.getlist("party_org_code") or [None])[0] or None
    with db_session() as fresh:
        visible = visible_org_codes(fresh)
        if first_org and (fresh.scalar(select(PartyOrg.code).where(PartyOrg.code == first_org)) is None
                          or (visible is not None and first_org not in visible)):
            first_org = None
        if first_unit and fresh.scalar(select(OrgUnit.code).where(OrgUnit.code == first_unit)) is None:
            first_unit = None
        context = _page_context(fresh, first_unit, first_org)
    context.update(error=message, error_field=field, saved=None)
    return render_template("console/coverage.html", **context), status


@bp.post("/coverage/preview")
@roles(*ACTORS)
def coverage_preview():
    reason = (request.form.get("reason") or "").strip()[:500]
    with db_session() as s:
        try:
            edits = _checked_edits(s)
        except CoverageEditError as exc:
            return _edit_error(exc.message, 400, exc.field)
    try:
        outcome = CoverageEditor(_runtime()).preview(edits)
    except CoverageEditError as exc:
        return _edit_error(exc.message, 400, exc.field)
    except CoverageBusy as exc:
        return _edit_error(f"{translate('cov_busy', session.get('lang', 'zh'))} ({exc})", 409)
    with db_session() as s:
        context = _page_context(s, edits[0].org_unit_code, edits[0].party_org_code)
    context.update(preview=outcome, edits=edits, reason=reason, saved=None)
    return render_template("console/coverage.html", **context)


@bp.post("/coverage/save")
@roles(*ACTORS)
def coverage_save():
    reason = (request.form.get("reason") or "").strip()[:500] or None
    with db_session() as s:
        try:
            edits = _checked_edits(s)
        except CoverageEditError as exc:
            return _edit_error(exc.message, 400, exc.field)
    try:
        outcome = CoverageEditor(_runtime()).save(edits, g.user.username, reason)
    except CoverageEditError as exc:
        return _edit_error(exc.message, 400, exc.field)
    except CoverageBusy as exc:
        return _edit_error(f"{translate('cov_busy', session.get('lang', 'zh'))} ({exc})", 409)
    return redirect(url_for("console.coverage", org=edits[0].party_org_code, unit=edits[0].org_unit_code,
                            saved=outcome.audit_id), code=303)
