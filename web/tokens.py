"""API tokens: made, listed and revoked here (CLI now, console later); checked by web.api.security.

`dualline token create NAME --scope SCOPE… [--org PARTY_ORG_CODE]` prints the token alone on its
last line (DESIGN.md contract) and never again: only its SHA-256 is stored. Creation and
revocation are written to the audit log.
"""
from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

import click
from flask import Flask, current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from records.db import session_factory
from records.models import ApiToken, AuditLog, PartyOrg, utcnow

SCOPES = ("read", "read:sensitive", "write:resolutions", "write:scim")
# What each scope also grants: whoever may see unmasked data may obviously read the rest; a SCIM
# writer reads what it writes (every SCIM write answers with the resource).
IMPLIED = {"read:sensitive": {"read"}, "write:scim": {"read"}}
TOKEN_PREFIX = "dl_"


class TokenError(ValueError):
    """A token request that cannot be honoured (unknown scope, duplicate name, unknown org)."""


@dataclass(frozen=True)
class IssuedToken:
    """A freshly made token: `secret` is the only copy of the plaintext there will ever be."""

    name: str
    secret: str
    prefix: str
    scopes: tuple[str, ...]
    party_org_code: str | None


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def effective_scopes(scopes: Iterable[str]) -> frozenset[str]:
    out = set(scopes)
    for scope in list(out):
        out |= IMPLIED.get(scope, set())
    return frozenset(out)


def normalize_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Scopes given as repeated options or comma/space separated, checked, de-duplicated, ordered."""
    given = {part for scope in scopes for part in scope.replace(",", " ").split() if part}
    unknown = sorted(given - set(SCOPES))
    if unknown:
        raise TokenError(f"unknown scope {', '.join(unknown)} (choose from {', '.join(SCOPES)})")
    return tuple(s for s in SCOPES if s in given)


def create_token(session: Session, name: str, scopes: Iterable[str], party_org_code: str | None = None,
                 actor: str = "cli") -> IssuedToken:
    """Store a new token (hashed) and audit it; the caller commits and shows `secret` once."""
    name = name.strip()
    if not name or len(name) > 80:
        raise TokenError("a token name needs 1 to 80 characters")
    wanted = normalize_scopes(scopes)
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise TokenError(f"token {name!r} exists already (names stay taken after revocation, for the audit)")
    if party_org_code and session.scalar(select(PartyOrg.id).where(PartyOrg.code == party_org_code)) is None:
        # Strict on purpose: a typo would otherwise give a token that silently sees nothing.
        raise TokenError(f"no party org with code {party_org_code!r}")
    prefix = secrets.token_hex(4)
    # 32 random bytes: far beyond guessing, which is what makes a plain SHA-256 at rest safe.
    secret = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    session.add(ApiToken(name=name, token_hash=hash_token(secret), prefix=f"{TOKEN_PREFIX}{prefix}",
                         scopes=list(wanted), party_org_code=party_org_code or None, created_by=actor))
    session.add(AuditLog(actor=actor, action="token.create", target_type="api_token", target_id=name,
                         details={"scopes": list(wanted), "org": party_org_code or None,
                                  "prefix": f"{TOKEN_PREFIX}{prefix}"}))
    return IssuedToken(name, secret, f"{TOKEN_PREFIX}{prefix}", wanted, party_org_code or None)


def revoke_token(session: Session, name: str, actor: str = "cli") -> ApiToken:
    token = session.scalar(select(ApiToken).where(ApiToken.name == name))
    if token is None:
        raise TokenError(f"no token named {name!r}")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.add(AuditLog(actor=actor, action="token.revoke", target_type="api_token", target_id=name,
                             details={"prefix": token.prefix}))
    return token


def _session() -> Session:
    return session_factory(current_app.extensions["dualline"].runtime().engine)()


@click.group("token")
def token_group() -> None:
    """API tokens for /api/v1."""


@token_group.command("create")
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, required=True, metavar="SCOPE",
              help=f"Repeat or separate by commas: {', '.join(SCOPES)}.")
@click.option("--org", "org", default=None, metavar="PARTY_ORG_CODE", help="Limit the token to this party org's subtree.")
def token_create(name: str, scopes: tuple[str, ...], org: str | None) -> None:
    """Create an API token; it is printed once, alone on the last line, and stored hashed."""
    try:
        with _session() as s, s.begin():
            issued = create_token(s, name, scopes, org)
    except TokenError as exc:
        raise click.UsageError(str(exc)) from None
    where = f", subtree {issued.party_org_code}" if issued.party_org_code else ""
    click.echo(f"token {issued.name} created ({' '.join(issued.scopes)}{where}); "
               "copy it now, it is not shown again:")
    click.echo(issued.secret)


@token_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def token_list(as_json: bool) -> None:
    """List tokens (never the tokens themselves: only their public prefix)."""
    with _session() as s:
        tokens = s.scalars(select(ApiToken).order_by(ApiToken.id)).all()
    items = [{"name": t.name, "prefix": t.prefix, "scopes": t.scopes, "org": t.party_org_code,
              "created_at": t.created_at.isoformat() if t.created_at else None,
              "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
              "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None} for t in tokens]
    if as_json:
        click.echo(json.dumps({"items": items}, ensure_ascii=False))
        return
    if not items:
        click.echo("no tokens yet: try `dualline token create NAME --scope read`")
    for t in items:
        state = f"revoked {t['revoked_at'][:19]}" if t["revoked_at"] else (
            f"last used {t['last_used_at'][:19]}" if t["last_used_at"] else "never used")
        org = f" org={t['org']}" if t["org"] else ""
        click.echo(f"{t['name']:<20} {t['prefix']:<12} {','.join(t['scopes']):<35}{org}  {state}")


@token_group.command("revoke")
@click.argument("name")
def token_revoke(name: str) -> None:
    """Revoke a token: it stops working at once."""
    try:
        with _session() as s, s.begin():
            revoke_token(s, name)
    except TokenError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"token {name} revoked")


def init_app(app: Flask) -> None:
    app.cli.add_command(token_group)
