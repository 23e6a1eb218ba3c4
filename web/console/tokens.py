"""API tokens in the console (admins): create one (shown once), see when each was last used, revoke.

The same functions as `dualline token create|revoke` (web.tokens), so both audit alike. The plain
token is rendered into the answer to the POST itself — never flashed, since Flask keeps flashed
messages in the session cookie — with `Cache-Control: no-store`.
"""
from __future__ import annotations

from typing import Any

from flask import abort, flash, g, make_response, redirect, render_template, request, url_for
from sqlalchemy import select

from records.models import ApiToken, PartyOrg
from web.auth import db_session
from web.console import bp
from web.console.access import roles
from web.tokens import SCOPES, IssuedToken, TokenError, create_token, revoke_token


def _page(issued: IssuedToken | None = None, error: str | None = None, form: dict[str, Any] | None = None,
          status: int = 200):
    with db_session() as s:
        items = s.scalars(select(ApiToken).order_by(ApiToken.revoked_at.is_not(None), ApiToken.name)).all()
        orgs = dict(s.execute(select(PartyOrg.code, PartyOrg.name).where(
            PartyOrg.code.in_({t.party_org_code for t in items if t.party_org_code}))).all())
    response = make_response(render_template("console/tokens.html", items=items, orgs=orgs, scopes=SCOPES,
                                             issued=issued, error=error, form=form or {}), status)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/tokens")
@roles("admin")
def tokens():
    return _page()


@bp.post("/tokens")
@roles("admin")
def token_create():
    name = (request.form.get("name") or "").strip()
    scopes = [s for s in request.form.getlist("scope") if s in SCOPES]
    org = (request.form.get("party_org_code") or "").strip() or None
    form = {"name": name, "scopes": scopes, "party_org_code": org or ""}
    if not scopes:
        return _page(error="scope: choose at least one", form=form, status=400)
    try:
        with db_session() as s, s.begin():
            issued = create_token(s, name, scopes, org, actor=g.user.username)
    except TokenError as exc:
        return _page(error=str(exc), form=form, status=400)
    return _page(issued=issued, status=201)


@bp.post("/tokens/<int:token_id>/revoke")
@roles("admin")
def token_revoke(token_id: int):
    with db_session() as s, s.begin():
        token = s.get(ApiToken, token_id)
        if token is None:
            abort(404)
        revoke_token(s, token.name, actor=g.user.username)
    flash("tok_done", "ok")
    return redirect(url_for("console.tokens"))
