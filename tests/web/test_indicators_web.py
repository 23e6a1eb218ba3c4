"""Indicators over HTTP (issue 7): `GET /api/v1/party-orgs/<id>/indicators` (scope `read`, subtree
tokens only inside their subtree, documented in the OpenAPI) and the console page
`/orgs/<code>/indicators` (readers; an officer only inside their subtree)."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from records.db import session_factory
from records.models import PartyOrg, User
from sync.indicators import org_indicators
from tests.sync.conftest import Site, make_site
from web.auth import hash_password
from web.tokens import create_token
from tests.conftest import app_for, csrf_token_in


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    folder: Path = tmp_path_factory.mktemp("ind")
    site = make_site(folder / "src", f"sqlite:///{folder / 'ind.db'}", staff=320, seed=43)
    site.runtime.config.rules = {"settings": {"today": "2026-11-16"}}
    assert site.sync().status == "succeeded"
    return site


@pytest.fixture(scope="module")
def orgs(site: Site) -> dict[str, PartyOrg]:
    """`inside`: a branch under `root_child`; `outside`: a branch of another top-level subtree."""
    with session_factory(site.runtime.engine)() as s:
        all_orgs = {o.code: o for o in s.scalars(select(PartyOrg))}
    root = next(o for o in all_orgs.values() if o.parent_code is None)
    tops = sorted(o.code for o in all_orgs.values() if o.parent_code == root.code and o.kind != "branch"
                  and any(c.parent_code == o.code and c.kind == "branch" for c in all_orgs.values()))

    def branch_under(top: str) -> PartyOrg:
        return next(o for o in sorted(all_orgs.values(), key=lambda o: o.code)
                    if o.kind == "branch" and o.parent_code == top)

    return {"root": root, "top": all_orgs[tops[0]], "inside": branch_under(tops[0]), "outside": branch_under(tops[1])}


@pytest.fixture(scope="module")
def app(site: Site, orgs: dict[str, PartyOrg]):
    with session_factory(site.runtime.engine)() as s, s.begin():
        s.add(User(username="admin", password_hash=hash_password("admin-pass-1"), role="admin"))
        s.add(User(username="officer", password_hash=hash_password("officer-pass-1"), role="officer",
                   party_org_code=orgs["top"].code))
    return app_for(site.runtime, API_RATE_LIMIT_PER_SECOND=0)


@pytest.fixture(scope="module")
def tokens(site: Site, orgs: dict[str, PartyOrg]) -> dict[str, str]:
    with session_factory(site.runtime.engine)() as s, s.begin():
        return {"read": create_token(s, "ind-read", ["read"]).secret,
                "subtree": create_token(s, "ind-sub", ["read"], orgs["top"].code).secret,
                "none": create_token(s, "ind-none", ["write:resolutions"]).secret}


def _get(client, path: str, token: str):
    return client.get(path, headers={"Authorization": f"Bearer {token}"})


def test_api_indicators(app, site: Site, orgs: dict[str, PartyOrg], tokens: dict[str, str]) -> None:
    client = app.test_client()
    top = orgs["top"]
    response = _get(client, f"/api/v1/party-orgs/{top.id}/indicators", tokens["read"])
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    with session_factory(site.runtime.engine)() as s:
        from sync.rules.engine import RuleSet
        expected = org_indicators(s, top.code, rule_set=RuleSet.from_config(site.runtime.config))
    assert body["party_org_id"] == top.id and body["party_org_code"] == top.code
    assert body["standardization"]["score"] == expected["standardization"]["score"]
    assert body["findings"] == expected["findings"] and body["findings"]  # the generator plants mismatches
    assert body["meetings"]["required"] == expected["meetings"]["required"]
    assert body["dues"]["from"] == expected["dues"]["from"] and "rate" in body["dues"]
    assert body["integration"]["members"] == expected["integration"]["members"]
    assert body["integration"]["staff"]["graded"] > 0
    assert body["cross_appointment"]["secretaries"] == expected["cross_appointment"]["secretaries"]
    assert body["today"] == "2026-11-16"

    # Subtree tokens: inside yes, outside 404; scope `read` required; unknown ids 404.
    assert _get(client, f"/api/v1/party-orgs/{orgs['inside'].id}/indicators", tokens["subtree"]).status_code == 200
    assert _get(client, f"/api/v1/party-orgs/{orgs['outside'].id}/indicators", tokens["subtree"]).status_code == 404
    assert _get(client, f"/api/v1/party-orgs/{orgs['root'].id}/indicators", tokens["subtree"]).status_code == 404
    assert _get(client, f"/api/v1/party-orgs/{top.id}/indicators", tokens["none"]).status_code == 403
    assert client.get(f"/api/v1/party-orgs/{top.id}/indicators").status_code == 401
    assert _get(client, "/api/v1/party-orgs/999999/indicators", tokens["read"]).status_code == 404
    assert _get(client, f"/api/v1/party-orgs/{top.id}/indicators?year=2025", tokens["read"]).get_json()["year"] == 2025
    assert _get(client, f"/api/v1/party-orgs/{top.id}/indicators?year=nope", tokens["read"]).status_code in (400, 422)

    spec = client.get("/api/v1/openapi.json").get_json()
    assert "/api/v1/party-orgs/{org_id}/indicators" in spec["paths"]
    assert "Indicators" in spec["components"]["schemas"]


def _login(client, username: str, password: str) -> None:
    page = client.get("/login").get_data(as_text=True)
    token = csrf_token_in(page)
    assert client.post("/login", data={"username": username, "password": password, "csrf_token": token}).status_code == 302


def test_console_indicators_page(app, orgs: dict[str, PartyOrg]) -> None:
    client = app.test_client()
    path = f"/orgs/{orgs['top'].code}/indicators"
    assert client.get(path).status_code == 302  # log in first
    _login(client, "admin", "admin-pass-1")
    html = client.get(path).get_data(as_text=True)
    assert "规范化指标" in html and "规范化得分" in html and "党费收缴率" in html and "双向进入、交叉任职" in html
    assert orgs["top"].name in html
    assert client.get("/orgs/NOPE/indicators").status_code == 404
    branch = orgs["inside"].code
    sheet = client.get(f"/orgs/{branch}/dues.xlsx?month=2026-10")
    assert sheet.status_code == 200 and sheet.data[:2] == b"PK"  # a zip: XLSX
    assert f"dues-{branch}-2026-10.xlsx" in sheet.headers["Content-Disposition"]
    assert client.get(f"/orgs/{branch}/dues.xlsx?month=2026-13").status_code == 400
    ranked = client.get(f"/orgs/{branch}/points?year=2025").get_data(as_text=True)
    assert "党员积分排名" in ranked and "堡垒指数" in ranked and "先锋指数" in ranked
    assert client.get(f"/orgs/{branch}/points?year=1").status_code == 400

    officer = app.test_client()
    _login(officer, "officer", "officer-pass-1")
    assert officer.get(f"/orgs/{orgs['inside'].code}/indicators").status_code == 200
    assert officer.get(f"/orgs/{orgs['outside'].code}/indicators").status_code == 404
    assert officer.get(f"/orgs/{orgs['outside'].code}/dues.xlsx").status_code == 404
    assert officer.get(f"/orgs/{orgs['outside'].code}/points").status_code == 404
    assert officer.get(f"/orgs/{orgs['inside'].code}/points").status_code == 200
    english = officer.get("/lang/en")
    assert english.status_code == 302
    assert "Standardization score" in officer.get(f"/orgs/{orgs['inside'].code}/indicators").get_data(as_text=True)
