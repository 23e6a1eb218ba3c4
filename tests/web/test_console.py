"""The console (flaskr-style fixtures): login with CSRF, the mismatch queue, escaping, scope."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update

from records.db import session_factory
from records.models import Mismatch, PartyOrg, User
from tests.sync.conftest import Site, make_site
from web.auth import hash_password
from tests.conftest import app_for, csrf_token_in


@pytest.fixture
def site(tmp_path: Path, sqlite_url: str) -> Site:
    site = make_site(tmp_path / "src", sqlite_url, staff=350, seed=29)
    assert site.sync().status == "succeeded"
    with session_factory(site.runtime.engine)() as s, s.begin():
        s.add(User(username="admin", password_hash=hash_password("admin-pass-1"), role="admin"))
        branch = s.query(PartyOrg).filter(PartyOrg.kind == "branch").order_by(PartyOrg.code).first()
        s.add(User(username="officer", password_hash=hash_password("officer-pass-1"), role="officer",
                   party_org_code=branch.code))
    return site


@pytest.fixture
def app(site: Site):
    return app_for(site.runtime)


@pytest.fixture
def client(app):
    return app.test_client()


class AuthActions:
    def __init__(self, client) -> None:
        self._client = client

    def login(self, username: str = "admin", password: str = "admin-pass-1"):
        page = self._client.get("/login").get_data(as_text=True)
        token = csrf_token_in(page)
        return self._client.post("/login", data={"username": username, "password": password, "csrf_token": token})


@pytest.fixture
def auth(client) -> AuthActions:
    return AuthActions(client)


def test_login_form_and_redirect(client, auth) -> None:
    page = client.get("/login")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'name="username"' in html and 'name="password"' in html and "登录" in html
    assert client.get("/mismatches").status_code == 302
    assert auth.login(password="wrong").status_code == 401
    response = auth.login()
    assert response.status_code == 302 and response.headers["Location"] == "/"


def test_post_without_csrf_is_refused(client) -> None:
    response = client.post("/login", data={"username": "admin", "password": "admin-pass-1"})
    assert response.status_code == 400


def test_queue_shows_names_and_rules_filtered(client, auth, site: Site) -> None:
    auth.login()
    html = client.get("/mismatches?rule=branch_mismatch").get_data(as_text=True)
    assert "所在支部与业务部门不一致" in html and "branch_mismatch" in html
    assert "missing_membership</code>" not in html
    expected = [m for m in site.enterprise.expected_mismatches() if m["rule"] == "branch_mismatch"]
    for m in expected:
        assert m["subject"]["label"] in html
    assert client.get("/lang/en").status_code == 302
    assert "Branch" in client.get("/mismatches?rule=branch_mismatch").get_data(as_text=True)


def test_hostile_names_are_escaped(client, auth, site: Site) -> None:
    with session_factory(site.runtime.engine)() as s, s.begin():
        s.execute(update(Mismatch).values(subject_label='<script>alert("x")</script>\u202eevil'))
    auth.login()
    html = client.get("/mismatches").get_data(as_text=True)
    assert "<script>alert" not in html and "&lt;script&gt;" in html


def test_officer_sees_only_own_subtree(client, auth, site: Site) -> None:
    with session_factory(site.runtime.engine)() as s, s.begin():
        branch = s.query(Mismatch.party_org_code).filter(Mismatch.rule == "branch_mismatch").first()[0]
        s.query(User).filter_by(username="officer").update({"party_org_code": branch})
        inside = s.query(Mismatch).filter((Mismatch.party_org_code == branch)
                                          | (Mismatch.other_party_org_code == branch)).count()
        everything = s.query(Mismatch).count()
    assert 0 < inside < everything
    auth.login("officer", "officer-pass-1")
    html = client.get("/mismatches?state=all").get_data(as_text=True)
    assert html.count('<li class="item') == inside
    assert f"共 {inside}" in html


def test_security_headers(client) -> None:
    response = client.get("/login")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
