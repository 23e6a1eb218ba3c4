"""The officers' console (server-rendered, Chinese first): login and the mismatch queue.

Templates autoescape everything they show; assets are served from this package (no CDN).
"""
from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Flask, g, redirect, render_template, request, session, url_for
from sqlalchemy import func, or_, select, text

from records.models import Mismatch, PartyOrg
from records.queries import mismatch_state_filter
from web.auth import authenticate, db_session, login_required
from web.console.i18n import RULE_LABELS, STATE_LABELS, translate

bp = Blueprint("console", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static/console")
PAGE_SIZE = 50


@bp.app_context_processor
def _helpers() -> dict[str, Any]:
    lang = session.get("lang", "zh")
    return {"t": lambda key: translate(key, lang), "lang": lang,
            "rule_label": lambda r: RULE_LABELS.get(r, {}).get(lang, r),
            "state_label": lambda s: STATE_LABELS.get(s, {}).get(lang, s)}


@bp.get("/lang/<code>")
def set_language(code: str):
    session["lang"] = "en" if code == "en" else "zh"
    return redirect(request.referrer if request.referrer and request.referrer.startswith(request.host_url) else url_for("console.mismatches"))


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        user = authenticate(request.form.get("username", "").strip(), request.form.get("password", ""))
        if user is None:
            error = "login_failed"
        else:
            lang = session.get("lang")
            session.clear()
            session.update(user_id=user.id, lang=lang or "zh", seen=time.time())
            target = request.args.get("next", "")
            return redirect(target if target.startswith("/") and not target.startswith("//") else url_for("console.mismatches"))
    return render_template("console/login.html", error=error), (401 if error else 200)


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("console.login"))


@bp.get("/")
@login_required
def index():
    return redirect(url_for("console.mismatches"))


def subtree_codes(s, root: str) -> list[str]:
    """The party org `root` and every org below it (recursive, set-based)."""
    rows = s.execute(text("""
        WITH RECURSIVE sub(code, depth) AS (
            SELECT code, 0 FROM party_orgs WHERE code = :root
            UNION ALL
            SELECT o.code, sub.depth + 1 FROM party_orgs o JOIN sub ON o.parent_code = sub.code
            WHERE sub.depth < 32
        ) SELECT DISTINCT code FROM sub
    """), {"root": root})
    return [r[0] for r in rows] or [root]


@bp.get("/mismatches")
@login_required
def mismatches():
    rule = request.args.get("rule") or None
    state = request.args.get("state") or "open"
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    with db_session() as s:
        query = select(Mismatch)
        if g.user.role == "officer":
            codes = subtree_codes(s, g.user.party_org_code or "")
            query = query.where(or_(Mismatch.party_org_code.in_(codes), Mismatch.other_party_org_code.in_(codes)))
        if rule:
            query = query.where(Mismatch.rule == rule)
        query = query.where(mismatch_state_filter(state))
        total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
        items = s.scalars(query.order_by(Mismatch.rule, Mismatch.id).limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)).all()
        # names of the party orgs this page shows, not of every org in the enterprise
        codes = {c for m in items for c in (m.party_org_code, m.other_party_org_code) if c}
        org_names = dict(s.execute(select(PartyOrg.code, PartyOrg.name).where(PartyOrg.code.in_(codes))).all())
    return render_template("console/mismatches.html", items=items, total=total, rule=rule, state=state,
                           page=page, pages=max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1),
                           rules=list(RULE_LABELS), org_names=org_names)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
