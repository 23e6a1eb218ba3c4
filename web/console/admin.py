"""Administration: the audit log (admins and auditors read it) and console users (admins only).

Every change to a user is written to the audit log with who did it. An admin cannot deactivate
or demote themselves (nor can the last active admin be removed), so the console is never left
without anyone able to manage it. Passwords: at least 8 characters, stored as argon2 hashes.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any

from flask import abort, flash, g, redirect, render_template, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from records.models import AuditLog, PartyOrg, User
from web.auth import ROLES, hash_password
from web.auth import db_session
from web.console import bp
from web.console.access import roles

AUDIT_PAGE = 50
MIN_PASSWORD = 8
USERNAME = re.compile(r"^[\w.@-]{1,80}$")


def _date(value: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if value else None
    except ValueError:
        return None


@bp.get("/audit")
@roles("admin", "auditor")
def audit():
    actor = (request.args.get("actor") or "").strip()[:80]
    action = (request.args.get("action") or "").strip()[:60]
    since, until = _date(request.args.get("from")), _date(request.args.get("to"))
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    query = select(AuditLog)
    if actor:
        query = query.where(AuditLog.actor == actor)
    if action:
        # "mismatch." finds every mismatch action; a full name finds that one
        query = query.where(AuditLog.action.startswith(action, autoescape=True) if action.endswith(".")
                            else AuditLog.action == action)
    if since:
        query = query.where(AuditLog.at >= dt.datetime.combine(since, dt.time()))
    if until:
        query = query.where(AuditLog.at < dt.datetime.combine(until + dt.timedelta(days=1), dt.time()))
    with db_session() as s:
        total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
        items = s.scalars(query.order_by(AuditLog.at.desc(), AuditLog.id.desc())
                          .limit(AUDIT_PAGE).offset((page - 1) * AUDIT_PAGE)).all()
        actions = s.scalars(select(AuditLog.action).distinct().order_by(AuditLog.action).limit(200)).all()
    filters = {"actor": actor or None, "action": action or None, "from": since.isoformat() if since else None,
               "to": until.isoformat() if until else None}
    return render_template("console/audit.html", items=items, total=total, page=page,
                           pages=max((total + AUDIT_PAGE - 1) // AUDIT_PAGE, 1), filters=filters, actions=actions)


# --- users -----------------------------------------------------------------------------------


def _audit(s: Session, action: str, user: User, **details: Any) -> None:
    s.add(AuditLog(actor=g.user.username, action=action, target_type="user", target_id=user.username,
                   details=details))


def _user(s: Session, user_id: int) -> User:
    user = s.get(User, user_id, with_for_update=True)
    if user is None:
        abort(404)
    return user


def _org_error(s: Session, role: str, org: str | None) -> str | None:
    if role != "officer":
        return None
    if not org:
        return "user_org_required"
    if s.scalar(select(PartyOrg.id).where(PartyOrg.code == org)) is None:
        return "user_org_unknown"
    return None


def _other_active_admins(s: Session, user: User) -> int:
    return s.scalar(select(func.count()).select_from(User).where(
        User.role == "admin", User.active.is_(True), User.id != user.id)) or 0


@bp.get("/users")
@roles("admin")
def users():
    with db_session() as s:
        items = s.scalars(select(User).order_by(User.active.desc(), User.username)).all()
        orgs = dict(s.execute(select(PartyOrg.code, PartyOrg.name).where(
            PartyOrg.code.in_({u.party_org_code for u in items if u.party_org_code}))).all())
    return render_template("console/users.html", items=items, orgs=orgs, roles_=ROLES)


@bp.post("/users")
@roles("admin")
def user_create():
    username = (request.form.get("username") or "").strip()
    role = request.form.get("role") or ""
    org = (request.form.get("party_org_code") or "").strip() or None
    password = request.form.get("password") or ""
    with db_session() as s, s.begin():
        error = None
        if not USERNAME.match(username):
            error = "user_name_invalid"
        elif role not in ROLES:
            error = "user_role_invalid"
        elif len(password) < MIN_PASSWORD:
            error = "password_too_short"
        elif s.scalar(select(User.id).where(User.username == username)) is not None:
            error = "user_exists"
        else:
            error = _org_error(s, role, org)
        if error:
            flash(error, "error")
            return redirect(url_for("console.users"))
        user = User(username=username, password_hash=hash_password(password), role=role,
                    party_org_code=org if role == "officer" else None)
        s.add(user)
        _audit(s, "user.create", user, role=role, org=user.party_org_code)
    flash("user_created", "ok")
    return redirect(url_for("console.users"))


@bp.post("/users/<int:user_id>/active")
@roles("admin")
def user_set_active(user_id: int):
    active = request.form.get("active") == "1"
    with db_session() as s, s.begin():
        user = _user(s, user_id)
        if not active and user.id == g.user.id:
            flash("cannot_deactivate_self", "error")
            return redirect(url_for("console.users"))
        if not active and user.role == "admin" and not _other_active_admins(s, user):
            flash("last_admin", "error")
            return redirect(url_for("console.users"))
        if user.active != active:
            user.active = active
            _audit(s, "user.reactivate" if active else "user.deactivate", user)
    flash("user_saved", "ok")
    return redirect(url_for("console.users"))


@bp.post("/users/<int:user_id>/password")
@roles("admin")
def user_reset_password(user_id: int):
    password = request.form.get("password") or ""
    if len(password) < MIN_PASSWORD:
        flash("password_too_short", "error")
        return redirect(url_for("console.users"))
    with db_session() as s, s.begin():
        user = _user(s, user_id)
        user.password_hash = hash_password(password)
        _audit(s, "user.password_reset", user)
    flash("user_saved", "ok")
    return redirect(url_for("console.users"))


@bp.post("/users/<int:user_id>/role")
@roles("admin")
def user_change_role(user_id: int):
    role = request.form.get("role") or ""
    org = (request.form.get("party_org_code") or "").strip() or None
    with db_session() as s, s.begin():
        user = _user(s, user_id)
        error = "user_role_invalid" if role not in ROLES else _org_error(s, role, org)
        if not error and user.id == g.user.id and role != "admin":
            error = "cannot_demote_self"
        if error:
            flash(error, "error")
            return redirect(url_for("console.users"))
        before = {"role": user.role, "org": user.party_org_code}
        user.role, user.party_org_code = role, (org if role == "officer" else None)
        after = {"role": user.role, "org": user.party_org_code}
        if before != after:
            _audit(s, "user.role", user, before=before, after=after)
    flash("user_saved", "ok")
    return redirect(url_for("console.users"))
