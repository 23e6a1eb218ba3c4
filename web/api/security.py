"""Who is calling the API and what they may see: bearer tokens, scopes, subtree, rate limit.

Every request under /api/v1 presents `Authorization: Bearer <token>`. The token is found by its
SHA-256 (web.tokens); missing, unknown or revoked → 401 with `WWW-Authenticate`; a missing scope
→ 403. A token limited to a party-org subtree sees (decided here, documented in the README):

* party orgs: the root and every org below it;
* memberships: those registered with a party org of the subtree (any status);
* persons: those with a membership in the subtree, or whose org unit is covered by a party org of
  the subtree (coverage with descendants, as alignment reads it);
* performance: of the persons it sees; mismatches: those naming a party org of the subtree
  (registered or expected branch, as the console's officers see them);
* org units and runs: all of them — the business org chart and run counts hold no personal data,
  and a party platform needs the chart to place its people.

Visibility is judged by the current state, also for older rows of the change feed.
"""
from __future__ import annotations

import datetime as dt
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from flask import current_app, g, request
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from records.db import session_factory
from records.models import ApiToken, utcnow
from web.api.errors import fail
from records.feed import SubtreeRules
from records.queries import subtree_codes  # shared, so console, API and webhooks agree
from web.tokens import effective_scopes, hash_token

REALM = 'Bearer realm="dualline"'
# last_used_at is written at most this often per token: a write per request would cost every
# read a transaction (and serialise SQLite writers).
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)


def db_session() -> Session:
    """A session on the app's engine. The sessionmaker is made once per engine and kept: making
    one per request (a new Session subclass, its event dispatch built anew) cost about a
    millisecond on every call."""
    engine = current_app.extensions["dualline"].runtime().engine
    cache: dict[int, tuple[Any, sessionmaker[Session]]] = current_app.extensions.setdefault("dualline_api_sessions", {})
    held = cache.get(id(engine))
    if held is None or held[0] is not engine:
        held = cache[id(engine)] = (engine, session_factory(engine))
    return held[1]()


@contextmanager
def read_session() -> Iterator[Session]:
    """A session for reads that need no transaction around them (the token lookup, the persons
    views: each answer is one statement).

    On PostgreSQL in autocommit: its driver opens every transaction with a BEGIN round trip and
    the pool ends it with a ROLLBACK one, so a page took six (token and page, each between BEGIN
    and ROLLBACK) where two do. Readers see nothing different: under READ COMMITTED every
    statement takes its own snapshot anyway. (The driver's automatic prepared statements are
    off for the whole engine, records.db.make_engine: a generic plan does not know the page's
    LIMIT — is_member=true hash-joined every membership, 55 ms instead of 0.3.) SQLite's driver
    sends no BEGIN for reads, and switching a MariaDB connection to autocommit and back costs
    round trips of its own: both get the ordinary session.
    """
    engine = current_app.extensions["dualline"].runtime().engine
    if engine.dialect.name != "postgresql":
        with db_session() as s:
            yield s
        return
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        with Session(bind=conn, expire_on_commit=False) as s:
            yield s


@dataclass
class Viewer(SubtreeRules):
    """The authenticated token of this request, and its window onto the records (the subtree
    rules are records.feed.SubtreeRules, shared with webhooks)."""

    token_id: int
    name: str
    scopes: frozenset[str]
    party_org_code: str | None
    _subtree: list[str] | None = field(default=None, repr=False)
    _covered: list[str] | None = field(default=None, repr=False)

    @property
    def actor(self) -> str:
        return f"token:{self.name}"

    @property
    def sensitive(self) -> bool:
        return "read:sensitive" in self.scopes


# --- rate limiting -----------------------------------------------------------------------------


class TokenBucket:
    """In-process token buckets per API token: `rate` requests a second, bursts of `burst`.

    In-process on purpose (no Redis on an intranet box); with several worker processes each has
    its own buckets, so the effective limit is per process — documented, and enough to stop a
    runaway client from starving the others.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(burst, 1)
        self._state: dict[int, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: int) -> float:
        """0 if the request may go ahead, else the seconds until it could."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._state.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._state[key] = (tokens - 1.0, now)
                return 0.0
            self._state[key] = (tokens, now)
            return (1.0 - tokens) / self.rate if self.rate > 0 else 60.0


def _limiter() -> TokenBucket | None:
    rate = float(current_app.config.get("API_RATE_LIMIT_PER_SECOND", 0) or 0)
    if rate <= 0:
        return None
    ext = current_app.extensions
    bucket = ext.get("dualline_api_ratelimit")
    burst = int(current_app.config.get("API_RATE_LIMIT_BURST", 60))
    if bucket is None or bucket.rate != rate or bucket.burst != max(burst, 1):
        bucket = ext["dualline_api_ratelimit"] = TokenBucket(rate, burst)
    return bucket


# --- authentication ----------------------------------------------------------------------------


def _unauthorized(message: str, invalid: bool) -> None:
    challenge = REALM + (', error="invalid_token"' if invalid else "")
    fail(401, message, "unauthorized", headers={"WWW-Authenticate": challenge})


def authenticate() -> Viewer:
    """The request's token as a Viewer, or 401; then the rate limit (429)."""
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    if not header:
        _unauthorized("authentication required: send Authorization: Bearer <token>", invalid=False)
    if scheme.lower() != "bearer" or not secret:
        _unauthorized("the Authorization header must be: Bearer <token>", invalid=True)
    with read_session() as s:
        token = s.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(secret)))
        if token is None or token.revoked_at is not None:
            _unauthorized("the token is unknown or revoked", invalid=True)
        assert token is not None
        now = utcnow()
        if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
            s.execute(update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=now))
            s.commit()
        viewer = Viewer(token.id, token.name, effective_scopes(token.scopes or []), token.party_org_code)
    limiter = _limiter()
    if limiter is not None:
        wait = limiter.take(viewer.token_id)
        if wait > 0:
            fail(429, "too many requests for this token; slow down", "rate_limited",
                 headers={"Retry-After": str(max(1, math.ceil(wait)))})
    return viewer


def require(scope: str) -> Viewer:
    """The request's viewer if it holds `scope`, else 403 (authentication happened before)."""
    viewer: Viewer = g.api_viewer
    if scope not in viewer.scopes:
        fail(403, f"this token lacks the scope {scope!r}", "insufficient_scope",
             headers={"WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{scope}"'})
    return viewer


def current_viewer() -> Viewer:
    return g.api_viewer


__all__ = ["TokenBucket", "Viewer", "authenticate", "current_viewer", "require", "subtree_codes"]
