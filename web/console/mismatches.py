"""The mismatch queue: dual-line mismatches and standardization findings in one list."""
from __future__ import annotations

from flask import render_template, request
from sqlalchemy import func, or_, select

from records.models import Mismatch, PartyOrg
from records.queries import mismatch_state_filter
from web.auth import db_session
from web.console import bp
from web.console.access import READERS, roles, visible_org_codes
from web.console.i18n import RULE_LABELS

PAGE_SIZE = 50


@bp.get("/mismatches")
@roles(*READERS)
def mismatches():
    rule = request.args.get("rule") or None
    state = request.args.get("state") or "open"
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    with db_session() as s:
        query = select(Mismatch)
        codes = visible_org_codes(s)
        if codes is not None:
            query = query.where(or_(Mismatch.party_org_code.in_(codes), Mismatch.other_party_org_code.in_(codes)))
        if rule:
            query = query.where(Mismatch.rule == rule)
        query = query.where(mismatch_state_filter(state))
        total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
        items = s.scalars(query.order_by(Mismatch.rule, Mismatch.id).limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)).all()
        # names of the party orgs this page shows, not of every org in the enterprise
        shown = {c for m in items for c in (m.party_org_code, m.other_party_org_code) if c}
        org_names = dict(s.execute(select(PartyOrg.code, PartyOrg.name).where(PartyOrg.code.in_(shown))).all())
    return render_template("console/mismatches.html", items=items, total=total, rule=rule, state=state,
                           page=page, pages=max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1),
                           rules=list(RULE_LABELS), org_names=org_names)
