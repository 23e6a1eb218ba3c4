"""Console pages for API tokens and webhooks: admins only, CSRF on every POST, secrets shown once,
everything audited; a console-made token works against the API at once and stops when revoked."""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from records.db import session_factory
from records.models import ApiToken, AuditLog, PartyOrg, User, Webhook, WebhookDelivery
from sync.webhooks import verify_signature
from tests.sync.conftest import Site, make_site
from web.auth import hash_password
from web.tokens import hash_token
from tests.conftest import app_for, csrf_token_in

PASSWORDS = {"admin": "admin-pass-1", "officer": "officer-pass-1", "auditor": "auditor-pass-1"}


@pytest.fixture
def site(tmp_path: Path, sqlite_url: str) -> Site:
    site = make_site(tmp_path / "src", sqlite_url, staff=300, seed=31)
    assert site.sync().status == "succeeded"
    with session_factory(site.runtime.engine)() as s, s.begin():
        branch = s.scalars(select(PartyOrg.code).where(PartyOrg.kind == "branch").order_by(PartyOrg.code)).first()
        for name, password in PASSWORDS.items():
            s.add(User(username=name, password_hash=hash_password(password), role=name,
                       party_org_code=branch if name == "officer" else None))
    return site


@pytest.fixture
def app(site: Site):
    return app_for(site.runtime)


def _csrf(html: str) -> str:
    return csrf_token_in(html)


def _login(app, role: str):
    client = app.test_client()
    token = _csrf(client.get("/login").get_data(as_text=True))
    answer = client.post("/login", data={"username": role, "password": PASSWORDS[role], "csrf_token": token})
    assert answer.status_code == 302
    return client, _csrf(client.get("/").get_data(as_text=True))


def _audit_actions(site: Site) -> list[str]:
    with session_factory(site.runtime.engine)() as s:
        return list(s.scalars(select(AuditLog.action).order_by(AuditLog.id)))


@pytest.mark.parametrize("role", ["officer", "auditor"])
def test_only_admins_reach_the_pages(app, site: Site, role: str) -> None:
    client, csrf = _login(app, role)
    for path in ("/tokens", "/webhooks", "/webhooks/1"):
        assert client.get(path).status_code == 403
    for path, data in (("/tokens", {"name": "x", "scope": "read"}), ("/tokens/1/revoke", {}),
                       ("/webhooks", {"name": "x", "url": "http://x.example/h", "event": "changes"}),
                       ("/webhooks/1/active", {"active": "0"}), ("/webhooks/1/ping", {})):
        assert client.post(path, data={**data, "csrf_token": csrf}).status_code == 403
    with session_factory(site.runtime.engine)() as s:
        assert s.scalar(select(ApiToken.id)) is None and s.scalar(select(Webhook.id)) is None
    anonymous = app.test_client()
    assert anonymous.get("/tokens").status_code == 302 and anonymous.get("/webhooks").status_code == 302


def test_token_created_once_listed_used_and_revoked(app, site: Site) -> None:
    client, csrf = _login(app, "admin")
    assert client.post("/tokens", data={"name": "portal", "scope": "read"}).status_code == 400  # no CSRF
    with session_factory(site.runtime.engine)() as s:
        branch = s.scalars(select(PartyOrg.code).where(PartyOrg.kind == "branch").order_by(PartyOrg.code)).first()
    answer = client.post("/tokens", data={"name": "portal", "scope": ["read", "write:resolutions"],
                                          "party_org_code": branch, "csrf_token": csrf})
    assert answer.status_code == 201 and answer.headers["Cache-Control"] == "no-store"
    secret = re.search(r'id="token-secret">([^<]+)<', answer.get_data(as_text=True)).group(1)
    with session_factory(site.runtime.engine)() as s:
        token = s.scalar(select(ApiToken).where(ApiToken.name == "portal"))
        assert token.token_hash == hash_token(secret) and token.scopes == ["read", "write:resolutions"]
        assert token.party_org_code == branch and token.created_by == "admin"
    listing = client.get("/tokens").get_data(as_text=True)
    assert secret not in listing and token.prefix in listing and "从未使用" in listing  # shown once only

    api = app.test_client()
    assert api.get("/api/v1/persons", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    assert secret not in client.get("/tokens").get_data(as_text=True)
    with session_factory(site.runtime.engine)() as s:
        assert s.scalar(select(ApiToken.last_used_at).where(ApiToken.name == "portal")) is not None

    duplicate = client.post("/tokens", data={"name": "portal", "scope": "read", "csrf_token": csrf})
    assert duplicate.status_code == 400 and "exists already" in duplicate.get_data(as_text=True)
    unknown_org = client.post("/tokens", data={"name": "p2", "scope": "read", "party_org_code": "NOPE",
                                               "csrf_token": csrf})
    assert unknown_org.status_code == 400

    assert client.post(f"/tokens/{token.id}/revoke", data={"csrf_token": csrf}).status_code == 302
    assert api.get("/api/v1/persons", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    assert "已吊销" in client.get("/tokens").get_data(as_text=True)
    assert _audit_actions(site)[-2:] == ["token.create", "token.revoke"]


class _Receiver:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                outer.requests.append({"headers": dict(self.headers),
                                       "body": self.rfile.read(int(self.headers["Content-Length"]))})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_webhook_created_pinged_disabled_with_its_log(app, site: Site) -> None:
    receiver = _Receiver()
    try:
        client, csrf = _login(app, "admin")
        bad = client.post("/webhooks", data={"name": "p", "url": "ftp://x", "event": "changes", "csrf_token": csrf})
        assert bad.status_code == 400
        answer = client.post("/webhooks", data={"name": "platform", "url": receiver.url, "event": ["changes", "runs"],
                                                "entity": ["person"], "csrf_token": csrf})
        assert answer.status_code == 201 and answer.headers["Cache-Control"] == "no-store"
        secret = re.search(r'id="webhook-secret">([^<]+)<', answer.get_data(as_text=True)).group(1)
        with session_factory(site.runtime.engine)() as s:
            hook = s.scalar(select(Webhook).where(Webhook.name == "platform"))
            assert hook.events == ["changes", "runs"] and hook.entities == ["person"]
            assert hook.secret_enc and secret not in hook.secret_enc  # encrypted at rest
            assert hook.last_seq > 0  # starts at the end of the feed
        listing = client.get("/webhooks").get_data(as_text=True)
        assert "platform" in listing and secret not in listing

        assert client.post(f"/webhooks/{hook.id}/ping", data={"csrf_token": csrf}).status_code == 302
        request = receiver.requests[-1]
        assert request["headers"]["X-Dualline-Event"] == "ping"
        assert verify_signature(secret, request["headers"]["X-Dualline-Timestamp"], request["body"],
                                request["headers"]["X-Dualline-Signature"])
        assert json.loads(request["body"])["webhook"] == "platform"
        page = client.get(f"/webhooks/{hook.id}").get_data(as_text=True)
        assert "ping" in page and "204" in page
        with session_factory(site.runtime.engine)() as s:
            row = s.scalar(select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id))
            assert row.status == "delivered" and row.status_code == 204 and row.event == "ping"
            assert s.get(Webhook, hook.id).last_seq == hook.last_seq  # a ping moves no cursor

        assert client.post(f"/webhooks/{hook.id}/active", data={"active": "0", "csrf_token": csrf}).status_code == 302
        with session_factory(site.runtime.engine)() as s:
            assert not s.get(Webhook, hook.id).active
        assert client.post(f"/webhooks/{hook.id}/active", data={"active": "0"}).status_code == 400  # no CSRF
        assert client.get("/webhooks/999").status_code == 404
        assert _audit_actions(site)[-3:] == ["webhook.create", "webhook.ping", "webhook.disable"]
        english = client.get("/lang/en") and client.get("/webhooks").get_data(as_text=True)
        assert "Webhooks" in english
    finally:
        receiver.close()
