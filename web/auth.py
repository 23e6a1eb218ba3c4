"""Console authentication: argon2 password hashes, login sessions, CSRF, roles.

`dualline user create NAME --role admin|officer|auditor [--org CODE]` makes a user; the password
comes from the prompt or $DUALLINE_PASSWORD. Every POST carries the session's CSRF token. Failed
log-ins are audited and throttled per username and address; the session cookie is HttpOnly,
SameSite=Lax and Secure over HTTPS (DUALLINE_COOKIE_SECURE); idle sessions expire.
"""
from __future__ import annotations

import datetime as dt
import functools
import hmac
import os
import secrets
import time
from collections.abc import Callable
from typing import Any

import click
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Flask, abort, current_app, g, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import select
from sqlalchemy.orm import Session

from records.db import session_factory
from records.models import AuditLog, User, utcnow

ROLES = ("admin", "officer", "auditor")
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against when the user does not exist, so timing does not reveal
    usernames (made on first use: hashing costs a tenth of a second at import)."""
    return _hasher.hash("dualline-no-such-user")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def db_session():
    return session_factory(current_app.extensions["dualline"].runtime().engine)()


# Login throttling: after THROTTLE_FAILURES failed log-ins for one username from one address
# within THROTTLE_WINDOW, that pair is refused until the window has passed. The failures are
# counted from the audit log (action `login.failed`, actor `ip:<address>`, target the username),
# so the limit holds across worker processes and restarts, and every failure is on record.
THROTTLE_FAILURES = 5
THROTTLE_WINDOW = dt.timedelta(minutes=15)


class LoginThrottled(Exception):
    """Too many failed log-ins for this username from this address; `until` is when it lifts."""

    def __init__(self, until: dt.datetime) -> None:
        super().__init__(f"too many failed log-ins; try again after {until:%H:%M} UTC")
        self.until = until


def _client_address() -> str:
    return (request.remote_addr or "unknown")[:70]


def throttled_until(s: Session, username: str, address: str) -> dt.datetime | None:
    """When the lock on (username, address) lifts, or None when it is not locked."""
    since = utcnow() - THROTTLE_WINDOW
    recent = s.scalars(
        select(AuditLog.at)
        .where(AuditLog.action == "login.failed", AuditLog.actor == f"ip:{address}",
               AuditLog.target_id == username[:80], AuditLog.at >= since)
        .order_by(AuditLog.at.desc())
        .limit(THROTTLE_FAILURES)
    ).all()
    if len(recent) < THROTTLE_FAILURES:
        return None
    return recent[-1] + THROTTLE_WINDOW


def authenticate(username: str, password: str) -> User | None:
    """The active user with this password, or None; raises LoginThrottled while locked out."""
    address = _client_address()
    with db_session() as s:
        until = throttled_until(s, username, address)
        if until is not None:
            raise LoginThrottled(until)
        user = s.scalar(select(User).where(User.username == username, User.active.is_(True)))
        if user is None:
            check_password(_dummy_hash(), password)
        if user is None or not check_password(user.password_hash, password):
            s.add(AuditLog(actor=f"ip:{address}", action="login.failed", target_type="user",
                           target_id=username[:80]))
            s.commit()
            return None
        user.last_login_at = utcnow()
        s.add(AuditLog(actor=user.username, action="login", target_type="user", target_id=str(user.id),
                       details={"ip": address}))
        s.commit()
        return user


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


# Paths authenticated by bearer tokens only, never by the session cookie: a browser does not
# attach such a header by itself, so cross-site request forgery does not apply there.
TOKEN_AUTH_PATHS = ("/api/", "/scim/")


def _check_csrf() -> None:
    if request.method in ("POST", "PUT", "PATCH", "DELETE") and not request.path.startswith(TOKEN_AUTH_PATHS):
        sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
        expected = session.get("csrf", "")
        if not sent or not expected or not hmac.compare_digest(sent, expected):
            abort(400, description="CSRF token missing or wrong; reload the page and try again")


def _load_user() -> None:
    g.user = None
    user_id = session.get("user_id")
    if user_id is None:
        return
    if time.time() - session.get("seen", 0) > current_app.config["SESSION_IDLE_SECONDS"]:
        session.clear()
        return
    with db_session() as s:
        user = s.get(User, user_id)
    if user is None or not user.active:
        session.clear()
        return
    session["seen"] = time.time()
    g.user = user


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if g.get("user") is None:
            return redirect(url_for("console.login", next=request.path))
        return view(*args, **kwargs)

    return wrapped


def _security_headers(response):
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
    )
    return response


@click.group("user")
def user_group() -> None:
    """Console users."""


@user_group.command("create")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--org", "org", default=None, help="Party org code: an officer sees this subtree only.")
@click.option("--email", default=None, help="Where notifications (the new-mismatch digest) are mailed.")
def user_create(name: str, role: str, org: str | None, email: str | None) -> None:
    """Create a console user (password from the prompt or $DUALLINE_PASSWORD)."""
    if role == "officer" and not org:
        raise click.UsageError("an officer needs --org PARTY_ORG_CODE (the subtree they look after)")
    if email is not None and (email.count("@") != 1 or email.startswith("@") or email.endswith("@")):
        raise click.UsageError(f"--email {email!r} is not an email address")
    password = os.environ.get("DUALLINE_PASSWORD") or click.prompt(
        "password", hide_input=True, confirmation_prompt=True
    )
    if len(password) < 8:
        raise click.UsageError("the password needs at least 8 characters")
    with db_session() as s, s.begin():
        if s.scalar(select(User).where(User.username == name)):
            raise click.UsageError(f"user {name!r} exists already")
        s.add(User(username=name, password_hash=hash_password(password), role=role, party_org_code=org,
                   email=email))
        s.add(AuditLog(actor="cli", action="user.create", target_type="user", target_id=name,
                       details={"role": role, "org": org}))
    click.echo(f"user {name} created ({role}{', ' + org if org else ''})")


class _SessionInterface(SecureCookieSessionInterface):
    """The session cookie carries the Secure flag as DUALLINE_COOKIE_SECURE says: "true" always,
    "false" never, "auto" (the default) when the request came over HTTPS. Auto keeps a plain-HTTP
    intranet box usable while every HTTPS deployment gets the flag without configuration; behind
    a TLS-terminating proxy set it to "true" (or let the proxy set X-Forwarded-Proto with ProxyFix)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        setting = str(app.config.get("DUALLINE_COOKIE_SECURE", "auto")).strip().lower()
        if setting in ("1", "true", "yes", "on"):
            return True
        if setting in ("0", "false", "no", "off"):
            return False
        return bool(app.config.get("SESSION_COOKIE_SECURE")) or request.is_secure


def init_app(app: Flask) -> None:
    app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    if app.config.get("SESSION_COOKIE_SAMESITE") is None:  # Flask's own default is None: no setdefault
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config.setdefault("SESSION_IDLE_SECONDS", 8 * 3600)
    app.config.setdefault("DUALLINE_COOKIE_SECURE", os.environ.get("DUALLINE_COOKIE_SECURE", "auto"))
    app.session_interface = _SessionInterface()
    app.before_request(_load_user)
    app.before_request(_check_csrf)
    app.after_request(_security_headers)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.cli.add_command(user_group)
