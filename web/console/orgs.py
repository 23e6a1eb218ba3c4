"""Party orgs: the tree (loaded a level at a time), and one org's members, coverage and mismatches.

The tree starts at the roots (an officer: at their own org) and shows each node's direct
children; deeper levels come on demand (`/orgs/<code>/children`, fetched by htmx when a node is
unfolded, and a plain link to the org page without JavaScript), so a tree of thousands of branches
costs one level's worth of queries. Counts per node are one GROUP BY for the whole level.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from flask import abort, g, render_template, request
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from records.models import Coverage, ExpectedBranch, Membership, Mismatch, OrgUnit, PartyOrg, Person
from records.queries import mismatch_state_filter, subtree_codes
from web.auth import db_session
from web.console import bp
from web.console.access import READERS, require_org_visible, roles, visible_org_codes

MEMBERS_PAGE = 50
SEARCH_LIMIT = 50
# An org page lists at most this many sub-orgs and covered units (a general branch may have
# hundreds of each); the totals are shown, the tree and the coverage editor show them all.
LIST_LIMIT = 100


def _active_member(*extra: Any):
    return (Membership.active.is_(True), Membership.status == "active", *extra)


def nodes(s: Session, orgs: list[PartyOrg]) -> list[dict[str, Any]]:
    """The orgs with their number of children, active members and open mismatches (3 queries)."""
    codes = [o.code for o in orgs]
    children = dict(s.execute(select(PartyOrg.parent_code, func.count()).where(
        PartyOrg.parent_code.in_(codes), PartyOrg.active.is_(True)).group_by(PartyOrg.parent_code)).all())
    members = dict(s.execute(select(Membership.party_org_code, func.count()).where(
        *_active_member(Membership.party_org_code.in_(codes))).group_by(Membership.party_org_code)).all())
    mismatches = dict(s.execute(select(Mismatch.party_org_code, func.count()).where(
        mismatch_state_filter("open"), Mismatch.party_org_code.in_(codes)).group_by(Mismatch.party_org_code)).all())
    return [{"org": o, "children": children.get(o.code, 0), "members": members.get(o.code, 0),
             "mismatches": mismatches.get(o.code, 0)} for o in orgs]


def _roots(s: Session) -> list[PartyOrg]:
    visible = visible_org_codes(s)
    if visible is not None:
        return list(s.scalars(select(PartyOrg).where(PartyOrg.code == (g.user.party_org_code or ""))))
    parent = PartyOrg.__table__.alias("parent")
    orphan = ~select(parent.c.code).where(parent.c.code == PartyOrg.parent_code).exists()
    return list(s.scalars(select(PartyOrg).where(PartyOrg.active.is_(True), or_(PartyOrg.parent_code.is_(None), orphan))
                          .order_by(PartyOrg.code)))


def _children(s: Session, code: str, limit: int | None = None) -> list[PartyOrg]:
    return list(s.scalars(select(PartyOrg).where(PartyOrg.parent_code == code, PartyOrg.active.is_(True))
                          .order_by(PartyOrg.code).limit(limit)))


@bp.get("/orgs")
@roles(*READERS)
def orgs():
    q = (request.args.get("q") or "").strip()[:100]
    with db_session() as s:
        if q:
            query = select(PartyOrg).where(or_(PartyOrg.name.contains(q, autoescape=True), PartyOrg.code == q))
            visible = visible_org_codes(s)
            if visible is not None:
                query = query.where(PartyOrg.code.in_(visible))
            found = nodes(s, list(s.scalars(query.order_by(PartyOrg.code).limit(SEARCH_LIMIT))))
            return render_template("console/orgs.html", q=q, found=found, tree=[])
        roots = nodes(s, _roots(s))
        # The first level below each root is shown at once; deeper levels load on demand.
        tree = [{**root, "kids": nodes(s, _children(s, root["org"].code)) if root["children"] else []}
                for root in roots]
    return render_template("console/orgs.html", q=q, found=None, tree=tree)


@bp.get("/orgs/<code>/children")
@roles(*READERS)
def org_children(code: str):
    """One level of the tree (an htmx fragment)."""
    with db_session() as s:
        require_org_visible(s, code)
        kids = nodes(s, _children(s, code))
    return render_template("console/_org_nodes.html", kids=kids)


def term_end(org: PartyOrg) -> dt.date | None:
    if org.elected_on is None or not org.term_years:
        return None
    try:
        return org.elected_on.replace(year=org.elected_on.year + org.term_years)
    except ValueError:  # 29 February
        return org.elected_on.replace(year=org.elected_on.year + org.term_years, day=28)


@bp.get("/orgs/<code>")
@roles(*READERS)
def org_detail(code: str):
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    with db_session() as s:
        require_org_visible(s, code)
        org = s.scalar(select(PartyOrg).where(PartyOrg.code == code))
        if org is None:
            abort(404)
        parent = s.scalar(select(PartyOrg).where(PartyOrg.code == org.parent_code)) if org.parent_code else None
        if parent is not None and visible_org_codes(s) is not None and parent.code not in visible_org_codes(s):
            parent = None  # an officer's root: what is above it is not theirs to see
        kids = nodes(s, _children(s, code, LIST_LIMIT))
        kids_total = s.scalar(select(func.count()).select_from(PartyOrg).where(
            PartyOrg.parent_code == code, PartyOrg.active.is_(True))) or 0
        by_category = dict(s.execute(select(Membership.category, func.count()).where(
            *_active_member(Membership.party_org_code == code)).group_by(Membership.category)).all())
        member_total = sum(by_category.values())
        # committees and general branches hold few members themselves: count their whole subtree
        subtree_members = s.scalar(select(func.count()).select_from(Membership).where(
            *_active_member(Membership.party_org_code.in_(subtree_codes(s, code))))) if kids else member_total
        members = s.execute(
            select(Membership, Person.name, Person.employee_no, Person.org_unit_code)
            .join(Person, Person.id == Membership.person_id)
            .where(*_active_member(Membership.party_org_code == code))
            .order_by(Person.name, Membership.id).limit(MEMBERS_PAGE).offset((page - 1) * MEMBERS_PAGE)).all()
        coverage = s.execute(select(Coverage, OrgUnit.name).outerjoin(OrgUnit, OrgUnit.code == Coverage.org_unit_code)
                             .where(Coverage.party_org_code == code).order_by(Coverage.org_unit_code)
                             .limit(LIST_LIMIT)).all()
        coverage_total = s.scalar(select(func.count()).select_from(Coverage).where(Coverage.party_org_code == code)) or 0
        expected_units = s.scalar(select(func.count()).select_from(ExpectedBranch)
                                  .where(ExpectedBranch.branch_code == code)) or 0
        open_filter = mismatch_state_filter("open") & or_(Mismatch.party_org_code == code,
                                                          Mismatch.other_party_org_code == code)
        open_total = s.scalar(select(func.count()).select_from(Mismatch).where(open_filter)) or 0
        open_items = s.scalars(select(Mismatch).where(open_filter).order_by(Mismatch.rule, Mismatch.id).limit(50)).all()
        unit_names = dict(s.execute(select(OrgUnit.code, OrgUnit.name).where(
            OrgUnit.code.in_({m[3] for m in members if m[3]}))).all())
    return render_template("console/org.html", org=org, parent=parent, kids=kids, kids_total=kids_total,
                           coverage_total=coverage_total, by_category=by_category,
                           member_total=member_total, subtree_members=subtree_members, members=members, page=page,
                           pages=max((member_total + MEMBERS_PAGE - 1) // MEMBERS_PAGE, 1), coverage=coverage,
                           expected_units=expected_units, open_total=open_total, open_items=open_items,
                           unit_names=unit_names, term_end=term_end(org), today=dt.date.today())
