"""Console authentication: argon2 password hashes, login sessions, CSRF, roles.

`dualline user create NAME --role admin|officer|auditor [--org CODE]` makes a user; the password
comes from the prompt or $DUALLINE_PASSWORD. Every POST carries the session's CSRF token.
"""
from __future__ import annotations

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
from sqlalchemy import select

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


def authenticate(username: str, password: str) -> User | None:
    with db_session() as s:
        user = s.scalar(select(User).where(User.username == username, User.active.is_(True)))
        if user is None:
            check_password(_dummy_hash(), password)
            return None
        if not check_password(user.password_hash, password):
            return None
        user.last_login_at = utcnow()
        s.add(AuditLog(actor=user.username, action="login", target_type="user", target_id=str(user.id)))
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
def user_create(name: str, role: str, org: str | None) -> None:
    """Create a console user (password from the prompt or $DUALLINE_PASSWORD)."""
    if role == "officer" and not org:
        raise click.UsageError("an officer needs --org PARTY_ORG_CODE (the subtree they look after)")
    password = os.environ.get("DUALLINE_PASSWORD") or click.prompt(
        "password", hide_input=True, confirmation_prompt=True
    )
    if len(password) < 8:
        raise click.UsageError("the password needs at least 8 characters")
    with db_session() as s, s.begin():
        if s.scalar(select(User).where(User.username == name)):
            raise click.UsageError(f"user {name!r} exists already")
        s.add(User(username=name, password_hash=hash_password(password), role=role, party_org_code=org))
        s.add(AuditLog(actor="cli", action="user.create", target_type="user", target_id=name,
                       details={"role": role, "org": org}))
    click.echo(f"user {name} created ({role}{', ' + org if org else ''})")


def init_app(app: Flask) -> None:
    app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    app.config.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    app.config.setdefault("SESSION_IDLE_SECONDS", 8 * 3600)
    app.before_request(_load_user)
    app.before_request(_check_csrf)
    app.after_request(_security_headers)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.cli.add_command(user_group)
