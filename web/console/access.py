"""Who may see and do what in the console.

Roles: `admin` (everything), `officer` (read and act within one party-org subtree), `auditor`
(read everything, change nothing). Views declare their rule with `@roles(...)`; queries narrow to
the officer's subtree with `visible_org_codes()` / `require_org_visible()`.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import abort, g, redirect, request, url_for
from sqlalchemy.orm import Session

from records.queries import subtree_codes

READERS = ("admin", "officer", "auditor")
ACTORS = ("admin", "officer")


def roles(*allowed: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Log-in required, and the user's role must be one of `allowed` (403 otherwise)."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if g.get("user") is None:
                return redirect(url_for("console.login", next=request.full_path.rstrip("?")))
            if g.user.role not in allowed:
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorate


def visible_org_codes(s: Session) -> list[str] | None:
    """Party-org codes the current user may see, or None for all (admin, auditor)."""
    if g.user.role != "officer":
        return None
    if "visible_org_codes" not in g:
        g.visible_org_codes = subtree_codes(s, g.user.party_org_code or "")
    return g.visible_org_codes


def require_org_visible(s: Session, *codes: str | None) -> None:
    """404 unless at least one of `codes` lies in the user's subtree (officers only).

    404 rather than 403: an officer must not learn what exists outside their subtree."""
    visible = visible_org_codes(s)
    if visible is None:
        return
    if not any(c in visible for c in codes if c):
        abort(404)
