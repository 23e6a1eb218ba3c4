"""Webhooks in the console (admins): list, create (the signing secret shown once), disable or
enable, send a signed test ping, and read each webhook's delivery log.

Delivery itself is sync.webhooks (after every run and from `dualline webhooks deliver`); this page
only defines webhooks and shows how delivering went. Webhooks from the config are shown too (they
can be disabled here; their URL and secret live in the config).
"""
from __future__ import annotations

import secrets
from typing import Any

from flask import abort, current_app, flash, g, make_response, redirect, render_template, request, url_for
from sqlalchemy import select

from records.models import AuditLog, Webhook, WebhookDelivery
from sync.config import WEBHOOK_ENTITIES, WEBHOOK_EVENTS
from sync.webhooks import Deliverer, WebhookError, create_webhook, set_webhook_active
from web.auth import db_session
from web.console import bp
from web.console.access import roles

LOG_ROWS = 100


def _runtime() -> Any:
    return current_app.extensions["dualline"].runtime()


def _page(issued: dict[str, str] | None = None, error: str | None = None, form: dict[str, Any] | None = None,
          status: int = 200):
    with db_session() as s:
        items = s.scalars(select(Webhook).order_by(Webhook.name)).all()
    response = make_response(render_template(
        "console/webhooks.html", items=items, events=WEBHOOK_EVENTS, entities=WEBHOOK_ENTITIES, issued=issued,
        error=error, form=form or {}), status)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/webhooks")
@roles("admin")
def webhooks():
    return _page()


@bp.post("/webhooks")
@roles("admin")
def webhook_create():
    form = {"name": (request.form.get("name") or "").strip(), "url": (request.form.get("url") or "").strip(),
            "events": [e for e in request.form.getlist("event") if e in WEBHOOK_EVENTS],
            "entities": [e for e in request.form.getlist("entity") if e in WEBHOOK_ENTITIES],
            "party_org_code": (request.form.get("party_org_code") or "").strip()}
    secret = request.form.get("secret") or secrets.token_urlsafe(32)
    try:
        with db_session() as s, s.begin():
            create_webhook(s, _runtime().cipher, name=form["name"], url=form["url"], secret=secret,
                           events=form["events"], entities=form["entities"] or None,
                           party_org_code=form["party_org_code"] or None, actor=g.user.username)
    except WebhookError as exc:
        return _page(error=str(exc), form=form, status=400)
    return _page(issued={"name": form["name"], "secret": secret}, status=201)


def _hook(s: Any, webhook_id: int) -> Webhook:
    hook = s.get(Webhook, webhook_id)
    if hook is None:
        abort(404)
    return hook


@bp.post("/webhooks/<int:webhook_id>/active")
@roles("admin")
def webhook_set_active(webhook_id: int):
    with db_session() as s, s.begin():
        set_webhook_active(s, _hook(s, webhook_id), request.form.get("active") == "1", g.user.username)
    flash("wh_saved", "ok")
    return redirect(url_for("console.webhooks"))


@bp.post("/webhooks/<int:webhook_id>/ping")
@roles("admin")
def webhook_ping(webhook_id: int):
    with db_session() as s, s.begin():
        hook = _hook(s, webhook_id)
        s.add(AuditLog(actor=g.user.username, action="webhook.ping", target_type="webhook", target_id=hook.name,
                       details={"url": hook.url}))
    runtime = _runtime()
    try:
        row = Deliverer(runtime.engine, runtime.config, runtime.cipher).ping(webhook_id)
        ok = row.status == "delivered"
    except WebhookError:
        ok = False
    flash("wh_ping_ok" if ok else "wh_ping_failed", "ok" if ok else "error")
    return redirect(url_for("console.webhook_log", webhook_id=webhook_id))


@bp.get("/webhooks/<int:webhook_id>")
@roles("admin")
def webhook_log(webhook_id: int):
    with db_session() as s:
        hook = _hook(s, webhook_id)
        rows = s.scalars(select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
                         .order_by(WebhookDelivery.id.desc()).limit(LOG_ROWS)).all()
    return render_template("console/webhook.html", hook=hook, rows=rows)
