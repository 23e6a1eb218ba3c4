"""REST API /api/v1: every endpoint × every scope, subtree limits, masking, paging, ETags, errors,
the change feed and the OpenAPI document.

One synced enterprise per module (a sync is the slow part); tests that write (resolutions) pick
mismatches no other test relies on.
"""
from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from records.db import session_factory
from records.models import AuditLog, Change, Coverage, Membership, Mismatch, OrgUnit, PartyOrg, Person
from tests.sync.conftest import Site, make_site
from web.tokens import create_token, revoke_token
from tests.conftest import app_for

LISTS = ["/api/v1/persons", "/api/v1/org-units", "/api/v1/party-orgs", "/api/v1/memberships",
         "/api/v1/performance", "/api/v1/mismatches", "/api/v1/runs"]
TOKENS = {"read": ["read"], "sensitive": ["read:sensitive"], "writer": ["write:resolutions"], "none": [],
          "admin": ["read", "write:resolutions"]}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    folder: Path = tmp_path_factory.mktemp("api")
    site = make_site(folder / "src", f"sqlite:///{folder / 'api.db'}", staff=300, seed=23)
    assert site.sync().status == "succeeded"
    return site


def _session(site: Site):
    return session_factory(site.runtime.engine)()


@pytest.fixture(scope="module")
def subtree_root(site: Site) -> str:
    """A party org below the top with children of its own (a real subtree, not everything)."""
    with _session(site) as s:
        parents = dict(s.execute(select(PartyOrg.code, PartyOrg.parent_code)).all())
        children: dict[str, int] = defaultdict(int)
        for parent in parents.values():
            if parent:
                children[parent] += 1
        candidates = sorted(code for code, parent in parents.items() if parent and children[code])
    assert candidates
    return candidates[0]


@pytest.fixture(scope="module")
def tokens(site: Site, subtree_root: str) -> dict[str, str]:
    with _session(site) as s, s.begin():
        out = {name: create_token(s, name, scopes).secret for name, scopes in TOKENS.items()}
        out["subtree"] = create_token(s, "subtree", ["read"], subtree_root).secret
        out["subtree_writer"] = create_token(s, "subtree_writer", ["read", "write:resolutions"], subtree_root).secret
        out["revoked"] = create_token(s, "revoked", ["read"]).secret
        revoke_token(s, "revoked")
    return out


def _make_app(site: Site, **config: Any):
    return app_for(site.runtime, **{"API_RATE_LIMIT_PER_SECOND": 0, **config})


@pytest.fixture(scope="module")
def client(site: Site):
    return _make_app(site).test_client()


class Api:
    """GET/POST as one token."""

    def __init__(self, client, token: str | None) -> None:
        self.client, self.token = client, token

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        out = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return out | (extra or {})

    def get(self, path: str, **kwargs: Any):
        return self.client.get(path, headers=self.headers(kwargs.pop("headers", None)), **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any):
        return self.client.post(path, json=body, headers=self.headers(kwargs.pop("headers", None)), **kwargs)

    def walk(self, path: str, limit: int = 50, **params: Any) -> Iterator[dict[str, Any]]:
        cursor = None
        while True:
            query = {"limit": limit, **params} | ({"cursor": cursor} if cursor else {})
            response = self.get(path, query_string=query)
            assert response.status_code == 200, response.get_data(as_text=True)
            page = response.get_json()
            assert set(page) == {"items", "next_cursor"}
            yield from page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return


@pytest.fixture(scope="module")
def api(client, tokens) -> dict[str, Api]:
    return {name: Api(client, token) for name, token in tokens.items()} | {"anonymous": Api(client, None)}


def _assert_error(response, status: int, code: str | None = None, field: str | None = "<any>") -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}
    assert body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    if field != "<any>":
        assert body["error"]["field"] == field
    return body["error"]


@pytest.fixture(scope="module")
def detail_paths(api) -> list[str]:
    """One detail (and tree) URL per kind, from the lists as an unrestricted reader sees them."""
    paths = []
    for path in LISTS:
        first = api["read"].get(path, query_string={"limit": 1}).get_json()["items"][0]
        paths.append(f"{path}/{first['id']}")
    org_unit = api["read"].get("/api/v1/org-units", query_string={"limit": 1}).get_json()["items"][0]
    party_org = api["read"].get("/api/v1/party-orgs", query_string={"limit": 1}).get_json()["items"][0]
    paths += [f"/api/v1/org-units/{org_unit['id']}/tree", f"/api/v1/party-orgs/{party_org['id']}/tree"]
    return paths


def _open_mismatch(site: Site, skip: int = 0, **where: Any) -> int:
    with _session(site) as s:
        query = select(Mismatch.id).where(Mismatch.state == "open", Mismatch.closed_at.is_(None))
        for column, value in where.items():
            query = query.where(getattr(Mismatch, column) == value)
        return s.scalars(query.order_by(Mismatch.id.desc())).all()[skip]


# --- authentication and scopes -----------------------------------------------------------------


def test_every_endpoint_by_every_scope(api, detail_paths) -> None:
    for path in [*LISTS, "/api/v1/changes", *detail_paths]:
        for who in ("read", "sensitive", "admin", "subtree"):
            response = api[who].get(path)
            assert response.status_code in (200, 404), (who, path)
            if who != "subtree":
                assert response.status_code == 200, (who, path)
        for who in ("writer", "none"):
            err = _assert_error(api[who].get(path), 403, "insufficient_scope")
            assert "read" in err["message"]
        anonymous = api["anonymous"].get(path)
        _assert_error(anonymous, 401, "unauthorized")
        assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
        revoked = api["revoked"].get(path)
        _assert_error(revoked, 401)
        assert 'error="invalid_token"' in revoked.headers["WWW-Authenticate"]


def test_bad_authorization_headers(client) -> None:
    for header in ("Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer dl_nothing_like_a_token", "token"):
        response = client.get("/api/v1/persons", headers={"Authorization": header})
        _assert_error(response, 401, "unauthorized")
        assert "WWW-Authenticate" in response.headers


def test_resolution_scopes(api, site: Site) -> None:
    path = f"/api/v1/mismatches/{_open_mismatch(site, skip=0)}/resolution"
    body = {"state": "ignored", "reason": "accepted: seconded staff"}
    _assert_error(api["anonymous"].post(path, body), 401)
    for who in ("read", "sensitive", "none"):
        _assert_error(api[who].post(path, body), 403, "insufficient_scope")
    response = api["writer"].post(path, body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["state"] == "ignored"


# --- masking and subtree -----------------------------------------------------------------------


def _all_bodies(api: Api, detail_paths: list[str]) -> Iterator[str]:
    for path in LISTS:
        cursor = None
        while True:
            response = api.get(path, query_string={"limit": 500} | ({"cursor": cursor} if cursor else {}))
            assert response.status_code == 200
            yield response.get_data(as_text=True)
            cursor = response.get_json()["next_cursor"]
            if cursor is None:
                break
    after = 0
    while True:
        response = api.get("/api/v1/changes", query_string={"after": after, "limit": 1000})
        yield response.get_data(as_text=True)
        page = response.get_json()
        if not page["items"]:
            break
        after = page["last_seq"]
    for path in detail_paths:
        yield api.get(path).get_data(as_text=True)


def _secrets(site: Site) -> set[str]:
    out = set()
    for row in [*site.enterprise.staff, *site.enterprise.party_members]:
        for key in ("id_number", "mobile"):
            if row.get(key) and len(str(row[key])) >= 11:
                out.add(str(row[key]))
    return out


def test_sensitive_fields_never_leak_without_read_sensitive(api, site: Site, detail_paths) -> None:
    secrets = _secrets(site)
    assert len(secrets) > 200
    with _session(site) as s:
        person_ids = s.scalars(select(Person.id).order_by(Person.id).limit(40)).all()
    paths = detail_paths + [f"/api/v1/persons/{pid}" for pid in person_ids]
    for who in ("read", "subtree", "admin"):
        for body in _all_bodies(api[who], paths):
            leaked = [v for v in secrets if v in body]
            assert not leaked, (who, leaked[:3])


def test_read_sensitive_sees_plaintext(api, site: Site) -> None:
    staff = {s["employee_no"]: s for s in site.enterprise.staff if s.get("employee_no")}
    persons = list(api["sensitive"].walk("/api/v1/persons", limit=500))
    checked = 0
    for p in persons:
        source = staff.get(p["employee_no"])
        if source and p["id_number"] and source.get("id_number") and "*" not in p["id_number"]:
            checked += p["id_number"].upper() == str(source["id_number"]).upper()
    assert checked > 100
    masked = {p["id"]: p for p in api["read"].walk("/api/v1/persons", limit=500)}
    assert all("*" in p["id_number"] for p in masked.values() if p["id_number"])
    assert all("*" in p["mobile"] for p in masked.values() if p["mobile"])


def _expected_subtree(site: Site, root: str) -> tuple[set[str], set[int], set[int]]:
    """Independently of the API: the subtree's party orgs, its persons and its memberships."""
    with _session(site) as s:
        parents = dict(s.execute(select(PartyOrg.code, PartyOrg.parent_code)).all())
        unit_parents = dict(s.execute(select(OrgUnit.code, OrgUnit.parent_code)).all())
        coverage = s.execute(select(Coverage.party_org_code, Coverage.org_unit_code, Coverage.include_descendants)).all()
        memberships = s.execute(select(Membership.id, Membership.person_id, Membership.party_org_code)).all()
        persons = s.execute(select(Person.id, Person.org_unit_code)).all()

    def under(code: str | None, tree: dict[str, str | None], top: str | set[str]) -> bool:
        tops = {top} if isinstance(top, str) else top
        for _ in range(40):
            if code is None:
                return False
            if code in tops:
                return True
            code = tree.get(code)
        return False

    orgs = {code for code in parents if under(code, parents, root)}
    deep = {u for p, u, d in coverage if p in orgs and d}
    shallow = {u for p, u, d in coverage if p in orgs and not d}
    units = {u for u in unit_parents if u in shallow or under(u, unit_parents, deep)}
    member_ids = {m for m, _, org in memberships if org in orgs}
    person_ids = {p for _, p, org in memberships if org in orgs} | {p for p, unit in persons if unit in units}
    return orgs, person_ids, member_ids


def test_subtree_token_never_sees_outside(api, site: Site, subtree_root: str) -> None:
    orgs, person_ids, member_ids = _expected_subtree(site, subtree_root)
    sub = api["subtree"]
    seen_persons = {p["id"] for p in sub.walk("/api/v1/persons")}
    assert seen_persons == person_ids and seen_persons
    with _session(site) as s:
        everyone = set(s.scalars(select(Person.id)))
    outside = sorted(everyone - person_ids)
    assert outside
    for pid in outside[:5]:
        _assert_error(sub.get(f"/api/v1/persons/{pid}"), 404, "not_found")

    assert {m["id"] for m in sub.walk("/api/v1/memberships")} == member_ids
    assert {o["code"] for o in sub.walk("/api/v1/party-orgs")} == orgs
    for m in sub.walk("/api/v1/mismatches"):
        assert m["party_org_code"] in orgs or m["other_party_org_code"] in orgs
    for p in sub.walk("/api/v1/performance"):
        assert p["person_id"] in person_ids

    with _session(site) as s:
        outside_org = s.scalar(select(PartyOrg.id).where(PartyOrg.code.not_in(orgs)))
        outside_member = s.scalar(select(Membership.id).where(Membership.id.not_in(member_ids)))
        outside_mismatch = s.scalar(select(Mismatch.id).where(
            (Mismatch.party_org_code.not_in(orgs) | Mismatch.party_org_code.is_(None))
            & (Mismatch.other_party_org_code.not_in(orgs) | Mismatch.other_party_org_code.is_(None))))
    assert None not in (outside_org, outside_member, outside_mismatch)
    for path in (f"/api/v1/party-orgs/{outside_org}", f"/api/v1/party-orgs/{outside_org}/tree",
                 f"/api/v1/memberships/{outside_member}", f"/api/v1/mismatches/{outside_mismatch}"):
        _assert_error(sub.get(path), 404)
    _assert_error(api["subtree_writer"].post(f"/api/v1/mismatches/{outside_mismatch}/resolution",
                                             {"state": "resolved", "reason": "x"}), 404)

    after, feed_entities = 0, defaultdict(set)
    while True:
        page = sub.get("/api/v1/changes", query_string={"after": after, "limit": 1000}).get_json()
        if not page["items"]:
            break
        for c in page["items"]:
            feed_entities[c["entity"]].add(c["entity_id"])
        after = page["last_seq"]
    assert feed_entities["person"] and feed_entities["person"] <= person_ids
    assert feed_entities["membership"] <= member_ids


def test_party_org_tree_counts(api, site: Site, subtree_root: str) -> None:
    with _session(site) as s:
        root_id = s.scalar(select(PartyOrg.id).where(PartyOrg.code == subtree_root))
        counts = dict(s.execute(select(Membership.party_org_code, func.count()).where(Membership.active.is_(True))
                                .group_by(Membership.party_org_code)).all())
    tree = api["subtree"].get(f"/api/v1/party-orgs/{root_id}/tree").get_json()
    assert tree["code"] == subtree_root and tree["children"]

    def check(node: dict) -> int:
        assert node["member_count"] == counts.get(node["code"], 0)
        total = node["member_count"] + sum(check(c) for c in node["children"])
        assert node["subtree_member_count"] == total
        return total

    assert check(tree) > 0
    assert any(node["covers"] for node in [tree, *tree["children"]])


# --- paging, filters, ETags --------------------------------------------------------------------


def test_keyset_pagination_walks_all_persons_exactly_once(api, site: Site) -> None:
    ids = [p["id"] for p in api["read"].walk("/api/v1/persons", limit=7)]
    with _session(site) as s:
        expected = s.scalars(select(Person.id).order_by(Person.id)).all()
    assert ids == expected and len(ids) == len(set(ids)) > 200
    first = api["read"].get("/api/v1/persons", query_string={"limit": 3}).get_json()
    cursor = first["next_cursor"]
    _assert_error(api["read"].get("/api/v1/persons", query_string={"cursor": "not-a-cursor"}), 400, "invalid_cursor", "cursor")
    _assert_error(api["read"].get("/api/v1/org-units", query_string={"cursor": cursor}), 400, field="cursor")


def test_person_filters(api, site: Site) -> None:
    read = api["read"]
    everyone = list(read.walk("/api/v1/persons", limit=500))
    one = next(p for p in everyone if p["employee_no"])
    [found] = read.get("/api/v1/persons", query_string={"employee_no": one["employee_no"]}).get_json()["items"]
    assert found == one
    assert read.get(f"/api/v1/persons/{one['id']}").get_json() == one

    members = {p["id"] for p in read.walk("/api/v1/persons", limit=500, is_member="true")}
    others = {p["id"] for p in read.walk("/api/v1/persons", limit=500, is_member="false")}
    assert members and others and not members & others and members | others == {p["id"] for p in everyone}
    assert members == {p["id"] for p in everyone if p["is_member"]}

    branch = next(p["party_org_codes"][0] for p in everyone if p["party_org_codes"])
    assert all(branch in p["party_org_codes"] for p in read.walk("/api/v1/persons", party_org=branch))
    unit = one["org_unit_code"]
    assert all(p["org_unit_code"] == unit for p in read.walk("/api/v1/persons", org_unit=unit))
    assert all(p["political_status"] == "01" for p in read.walk("/api/v1/persons", political_status="01"))
    assert read.get("/api/v1/persons", query_string={"updated_since": "2999-01-01T00:00:00Z"}).get_json()["items"] == []
    assert len(list(read.walk("/api/v1/persons", limit=500, updated_since="2000-01-01T00:00:00+08:00"))) == len(everyone)


def test_persons_on_every_backend(any_db_url: str, tmp_path: Path) -> None:
    """The persons views read columns and memberships in one statement, on PostgreSQL outside a
    transaction (web.api.security.read_session): the same records as PersonSchema publishes on
    every backend, a revocation still takes effect at once, and the pooled connection the reads
    used is transactional again afterwards."""
    from web.api import resources, schemas

    site = make_site(tmp_path / "src", any_db_url, staff=120, seed=5, plant=False)
    assert site.sync().status == "succeeded"
    with _session(site) as s, s.begin():
        secrets = {name: create_token(s, name, scopes).secret
                   for name, scopes in (("read", ["read"]), ("sensitive", ["read:sensitive"]))}
        branch = s.scalar(select(Membership.party_org_code).where(Membership.active.is_(True)).limit(1))
        secrets["subtree"] = create_token(s, "subtree", ["read"], branch).secret
    client = _make_app(site).test_client()
    api = {name: Api(client, secret) for name, secret in secrets.items()}
    try:
        with _session(site) as s:
            persons = s.scalars(select(Person).order_by(Person.id)).all()
            for name, schema in (("read", schemas.PersonSchema), ("sensitive", schemas.PersonSensitiveSchema)):
                with client.application.app_context():
                    expected = schema(many=True).dump(resources._person_views(s, persons))
                assert json.loads(json.dumps(expected)) == list(api[name].walk("/api/v1/persons", limit=7))
        everyone = {p["id"]: p for p in api["read"].walk("/api/v1/persons", limit=1000)}
        assert {p["id"] for p in api["read"].walk("/api/v1/persons", is_member="true")} == \
            {i for i, p in everyone.items() if p["is_member"]}
        assert {p["id"] for p in api["read"].walk("/api/v1/persons", limit=3, party_org=branch)} == \
            {i for i, p in everyone.items() if branch in p["party_org_codes"]}
        limited = {p["id"] for p in api["subtree"].walk("/api/v1/persons", limit=5)}
        assert limited and limited < set(everyone)
        some = next(iter(everyone.values()))
        assert api["read"].get(f"/api/v1/persons/{some['id']}").get_json() == some
        _assert_error(api["read"].get(f"/api/v1/persons/{max(everyone) + 1}"), 404, field="person_id")

        with _session(site) as s, s.begin():
            revoke_token(s, "read")
        _assert_error(api["read"].get("/api/v1/persons"), 401)

        with _session(site) as s:
            s.add(AuditLog(actor="test", action="rolled.back", target_type="none", target_id="0", details={}))
            s.flush()
            s.rollback()
        with _session(site) as s:
            assert s.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "rolled.back")) == 0
            # psycopg's automatic prepared statements are off on every connection (generic plans).
            driver = s.connection().connection.driver_connection
            assert getattr(driver, "prepare_threshold", None) is None
    finally:
        site.runtime.engine.dispose()


def test_etag_and_304(api) -> None:
    read = api["read"]
    for path in ("/api/v1/persons?limit=5", "/api/v1/party-orgs", "/api/v1/changes?limit=5"):
        first = read.get(path)
        etag = first.headers["ETag"]
        assert first.status_code == 200 and etag
        again = read.get(path, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.get_data() == b""
        assert read.get(path, headers={"If-None-Match": '"something-else"'}).status_code == 200
    person = read.get("/api/v1/persons?limit=1").get_json()["items"][0]
    detail = read.get(f"/api/v1/persons/{person['id']}")
    assert read.get(f"/api/v1/persons/{person['id']}", headers={"If-None-Match": detail.headers["ETag"]}).status_code == 304
    # The sensitive view is another representation: another ETag.
    assert api["sensitive"].get(f"/api/v1/persons/{person['id']}").headers["ETag"] != detail.headers["ETag"]
    assert "Authorization" in detail.headers["Vary"]


# --- errors ------------------------------------------------------------------------------------


def test_error_shapes_and_statuses(api, site: Site) -> None:
    read, admin = api["read"], api["admin"]
    _assert_error(read.get("/api/v1/no-such-thing"), 404, "not_found")
    _assert_error(read.get("/api/v1/persons/999999999"), 404, "not_found", "person_id")
    response = read.post("/api/v1/persons", {})
    _assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"] and "POST" not in response.headers["Allow"]
    response = admin.get(f"/api/v1/mismatches/{_open_mismatch(site)}/resolution")
    _assert_error(response, 405)
    assert "POST" in response.headers["Allow"]
    _assert_error(read.get("/api/v1/persons", query_string={"limit": 0}), 422, "invalid", "limit")
    _assert_error(read.get("/api/v1/persons", query_string={"limit": "many"}), 422, field="limit")
    _assert_error(read.get("/api/v1/changes", query_string={"after": -1}), 422, field="after")
    _assert_error(read.get("/api/v1/mismatches", query_string={"state": "weird"}), 422, field="state")

    mismatch = _open_mismatch(site, skip=1)
    path = f"/api/v1/mismatches/{mismatch}/resolution"
    _assert_error(admin.post(path, {"state": "done", "reason": "x"}), 422, field="state")
    _assert_error(admin.post(path, {"state": "resolved"}), 422, field="reason")
    bad_json = admin.client.post(path, data="{not json", content_type="application/json", headers=admin.headers())
    assert bad_json.status_code in (400, 422) and "error" in bad_json.get_json()


def test_resolution_audit_feed_conditional_and_conflict(api, site: Site) -> None:
    admin = api["admin"]
    mismatch = _open_mismatch(site, skip=2)
    path = f"/api/v1/mismatches/{mismatch}"
    etag = admin.get(path).headers["ETag"]
    last_seq = admin.get("/api/v1/changes", query_string={"after": 0, "limit": 1000000 // 1000}).get_json()
    with _session(site) as s:
        top = s.scalar(select(func.max(Change.seq)))

    _assert_error(admin.post(f"{path}/resolution", {"state": "resolved", "reason": "x"},
                             headers={"If-Match": '"stale"'}), 412, "precondition_failed")
    response = admin.post(f"{path}/resolution", {"state": "resolved", "reason": "moved to the right branch"},
                          headers={"If-Match": etag})
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["state"] == "resolved" and body["resolved_by"] == "token:admin"
    assert body["resolution_note"] == "moved to the right branch"
    assert admin.get(path).headers["ETag"] != etag

    feed = admin.get("/api/v1/changes", query_string={"after": top}).get_json()
    [change] = feed["items"]
    assert change["entity"] == "mismatch" and change["entity_id"] == mismatch and change["op"] == "update"
    assert change["changed"]["state"] == ["open", "resolved"] and feed["last_seq"] == change["seq"]
    with _session(site) as s:
        audit = s.scalars(select(AuditLog).where(AuditLog.action == "mismatch.resolve",
                                                 AuditLog.target_id == str(mismatch))).one()
        assert audit.actor == "token:admin" and audit.details["reason"] == "moved to the right branch"
    assert last_seq  # the feed answered before the write too

    # A mismatch the data has closed meanwhile cannot be resolved.
    closed = _open_mismatch(site, skip=3)
    with _session(site) as s, s.begin():
        s.get(Mismatch, closed).closed_at = s.get(Mismatch, closed).opened_at
        s.get(Mismatch, closed).state = "closed"
    _assert_error(admin.post(f"/api/v1/mismatches/{closed}/resolution", {"state": "resolved", "reason": "x"}),
                  409, "conflict")
    assert admin.get(f"/api/v1/mismatches/{closed}").get_json()["state"] == "closed"


def test_rate_limit_per_token(site: Site, tokens) -> None:
    client = _make_app(site, API_RATE_LIMIT_PER_SECOND=0.01, API_RATE_LIMIT_BURST=3).test_client()
    headers = {"Authorization": f"Bearer {tokens['read']}"}
    assert [client.get("/api/v1/runs", headers=headers).status_code for _ in range(3)] == [200] * 3
    limited = client.get("/api/v1/runs", headers=headers)
    _assert_error(limited, 429, "rate_limited")
    assert int(limited.headers["Retry-After"]) >= 1
    # Another token has its own bucket.
    assert client.get("/api/v1/runs", headers={"Authorization": f"Bearer {tokens['sensitive']}"}).status_code == 200


# --- change feed -------------------------------------------------------------------------------


def test_change_feed_from_zero_yields_every_change_once_in_order(api, site: Site) -> None:
    read = api["read"]
    seqs: list[int] = []
    after = 0
    while True:
        page = read.get("/api/v1/changes", query_string={"after": after, "limit": 97}).get_json()
        assert set(page) == {"items", "last_seq"}
        if not page["items"]:
            assert page["last_seq"] == after
            break
        for item in page["items"]:
            assert set(item) == {"seq", "entity", "entity_id", "op", "changed", "run_id", "at"}
            assert item["op"] in ("create", "update", "deactivate")
            seqs.append(item["seq"])
        after = page["last_seq"]
        assert after == page["items"][-1]["seq"]
    with _session(site) as s:
        expected = s.scalars(select(Change.seq).where(Change.entity != "payroll").order_by(Change.seq)).all()
    assert seqs == expected and len(seqs) == len(set(seqs)) > 500
    persons = [c for c in read.get("/api/v1/changes", query_string={"entity": "person", "limit": 5}).get_json()["items"]]
    assert persons and all(c["entity"] == "person" for c in persons)


# --- OpenAPI -----------------------------------------------------------------------------------


def test_openapi_document(client) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    assert spec["openapi"].startswith("3.")
    paths = set(spec["paths"])
    for path in ["/api/v1/persons", "/api/v1/persons/{person_id}", "/api/v1/changes", "/api/v1/org-units/{unit_id}/tree",
                 "/api/v1/party-orgs/{org_id}/tree", "/api/v1/mismatches/{mismatch_id}/resolution", "/api/v1/runs"]:
        assert path in paths
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    error = spec["components"]["schemas"]["Error"]
    assert "error" in error["properties"]
    person = spec["components"]["schemas"]["Person"]["properties"]
    assert {"id_number", "mobile", "employee_no", "is_member"} <= set(person)
    text = json.dumps(spec)
    assert "cdn" not in text.lower() and "unpkg" not in text.lower()
    assert client.get("/api/v1/swagger-ui").status_code == 404
