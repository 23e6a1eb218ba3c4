"""SCIM 2.0 /scim/v2: discovery, filters (every operator, logic, grouping, sub-attributes,
extension attributes), paging, sorting, attribute projection, ETags, errors, refused writes,
masking and subtree limits.

One synced enterprise per module; expectations are computed from the database directly, so the
tests check the translation of filters rather than a hand-picked fixture.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from records.models import Membership, OrgUnit, PartyOrg, Person
from sync.alignment import IN_SERVICE
from tests.sync.conftest import Site, make_site
from tests.web.test_api import _session, subtree_root  # noqa: F401  (a fixture, over this module's site)
from web.scim import schema as sc
from web.scim.filter import And, Compare, FilterError, Not, Or, Present, ValuePath, parse_filter
from web.scim.resources import split_name
from web.tokens import create_token
from tests.conftest import app_for

SCIM = "application/scim+json"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    folder: Path = tmp_path_factory.mktemp("scim")
    site = make_site(folder / "src", f"sqlite:///{folder / 'scim.db'}", staff=300, seed=29)
    assert site.sync().status == "succeeded"
    return site


@pytest.fixture(scope="module")
def client(site: Site, subtree_root: str):
    app = app_for(site.runtime, API_RATE_LIMIT_PER_SECOND=0)
    with _session(site) as s, s.begin():
        secrets = {"read": create_token(s, "scim-read", ["read"]).secret,
                   "sensitive": create_token(s, "scim-sensitive", ["read:sensitive"]).secret,
                   "none": create_token(s, "scim-none", ["write:resolutions"]).secret,
                   "subtree": create_token(s, "scim-subtree", ["read"], subtree_root).secret}
    return app.test_client(), secrets


class Scim:
    def __init__(self, client: Any, token: str | None) -> None:
        self.client, self.token = client, token

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        return ({"Authorization": f"Bearer {self.token}"} if self.token else {}) | (extra or {})

    def get(self, path: str, headers: dict[str, str] | None = None, **params: Any):
        return self.client.get(f"/scim/v2{path}", query_string=params, headers=self._headers(headers))

    def send(self, method: str, path: str, body: Any = None):
        return self.client.open(f"/scim/v2{path}", method=method, json=body, headers=self._headers(None))

    def ids(self, path: str, **params: Any) -> list[int]:
        """Every id the list yields for these parameters (walking the pages)."""
        out: list[int] = []
        start = 1
        while True:
            response = self.get(path, startIndex=start, count=1000, **params)
            assert response.status_code == 200, response.get_data(as_text=True)
            page = response.get_json()
            out += [int(r["id"]) for r in page["Resources"]]
            start += page["itemsPerPage"]
            if start > page["totalResults"] or not page["itemsPerPage"]:
                assert len(out) == page["totalResults"]
                return out


@pytest.fixture(scope="module")
def scim(client) -> dict[str, Scim]:
    test_client, secrets = client
    return {name: Scim(test_client, secret) for name, secret in secrets.items()} | {"anonymous": Scim(test_client, None)}


def _error(response, status: int, scim_type: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == SCIM
    body = response.get_json()
    assert body["schemas"] == [sc.ERROR] and body["status"] == str(status) and body["detail"]
    if scim_type:
        assert body.get("scimType") == scim_type
    return body


@pytest.fixture(scope="module")
def people(site: Site) -> dict[int, dict[str, Any]]:
    """Every person as plain data, with the active membership and unit name, for expectations."""
    with _session(site) as s:
        units = dict(s.execute(select(OrgUnit.code, OrgUnit.name)).all())
        members: dict[int, Membership] = {}
        for m in s.scalars(select(Membership).where(Membership.active.is_(True)).order_by(Membership.id)):
            members[m.person_id] = m
        out = {}
        for p in s.scalars(select(Person)):
            m = members.get(p.id)
            out[p.id] = {"name": p.name, "employee_no": p.employee_no, "political_status": p.political_status,
                         "active": bool(p.staff_active and p.employment_status in IN_SERVICE),
                         "department": units.get(p.org_unit_code), "mobile_masked": p.mobile_masked,
                         "category": m.category if m else None, "joined_on": m.joined_on if m else None,
                         "branch": m.party_org_code if m else None, "updated_at": p.updated_at}
    return out


def _where(people: dict[int, dict[str, Any]], predicate) -> list[int]:
    return sorted(pid for pid, p in people.items() if predicate(p))


# --- the parser --------------------------------------------------------------------------------


def test_parser_builds_the_tree_with_precedence_and_grouping() -> None:
    tree = parse_filter('userName eq "a" or name.familyName sw "王" and not (active eq false)')
    assert isinstance(tree, Or) and isinstance(tree.right, And) and isinstance(tree.right.right, Not)
    grouped = parse_filter('(userName eq "a" or userName eq "b") and title pr')
    assert isinstance(grouped, And) and isinstance(grouped.left, Or) and isinstance(grouped.right, Present)
    urn = parse_filter('urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value EQ "3"')
    assert isinstance(urn, Compare) and urn.op == "eq"
    assert urn.path.schema == sc.ENTERPRISE and urn.path.attr == "manager" and urn.path.sub == "value"
    value_path = parse_filter('members[value eq "1" or display co "x"]')
    assert isinstance(value_path, ValuePath) and isinstance(value_path.expr, Or)
    escaped = parse_filter(r'displayName eq "say \"hi\""')
    assert isinstance(escaped, Compare) and escaped.value == 'say "hi"'
    for bad in ['userName eq', 'userName xx "a"', '(userName eq "a"', 'userName eq "a")', 'eq "a"',
                'userName eq "a" and', '"a" eq userName', 'members[value eq "1"', '']:
        with pytest.raises(FilterError):
            parse_filter(bad)


def test_split_name_knows_compound_surnames() -> None:
    assert split_name("王小明") == ("王", "小明")
    assert split_name("欧阳修") == ("欧阳", "修")
    assert split_name("John Smith") == (None, None)


# --- discovery ---------------------------------------------------------------------------------


def test_service_provider_config_is_truthful(scim) -> None:
    response = scim["read"].get("/ServiceProviderConfig")
    assert response.status_code == 200 and response.mimetype == SCIM
    spc = response.get_json()
    assert spc["patch"]["supported"] is True and spc["bulk"]["supported"] is False  # writes: test_scim_write
    assert spc["changePassword"]["supported"] is False
    assert spc["filter"]["supported"] is True and spc["filter"]["maxResults"] == sc.MAX_RESULTS
    assert spc["sort"]["supported"] is True and spc["etag"]["supported"] is True
    assert spc["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    _error(scim["read"].send("POST", "/ServiceProviderConfig", {}), 405)


def test_schemas_and_resource_types(scim) -> None:
    listed = scim["read"].get("/Schemas").get_json()
    ids = {s["id"] for s in listed["Resources"]}
    assert ids == {sc.CORE_USER, sc.CORE_GROUP, sc.ENTERPRISE, sc.PARTY, sc.PARTY_ORG}
    assert listed["totalResults"] == 5

    def walk(attributes):
        for a in attributes:
            yield a
            yield from walk(a.get("subAttributes", []))

    writable = {(schema["id"], a["name"]) for schema in listed["Resources"] for a in walk(schema["attributes"])
                if a["mutability"] != "readOnly"}
    # What SCIM may write (web.scim.writes); everything else is readOnly.
    assert writable == {(sc.CORE_USER, "userName"), (sc.CORE_USER, "name"), (sc.CORE_USER, "formatted"),
                        (sc.CORE_GROUP, "displayName"), (sc.CORE_GROUP, "members"), (sc.CORE_GROUP, "value"),
                        (sc.CORE_GROUP, "$ref"), (sc.CORE_GROUP, "type"),
                        *((sc.PARTY_ORG, name) for name in ("kind", "parent", "value", "$ref", "secretary"))}
    party = scim["read"].get(f"/Schemas/{sc.PARTY}").get_json()
    assert {a["name"] for a in party["attributes"]} >= {"branch", "category", "joinedOn", "fullMemberOn",
                                                         "membershipStatus", "politicalStatus"}
    types = {t["id"]: t for t in scim["read"].get("/ResourceTypes").get_json()["Resources"]}
    assert types["User"]["endpoint"] == "/Users" and types["Group"]["endpoint"] == "/Groups"
    assert types["User"]["schemaExtensions"] == [{"schema": sc.ENTERPRISE, "required": False},
                                                 {"schema": sc.PARTY, "required": False}]
    # Every Group carries the party org extension (its kind at least).
    assert types["Group"]["schemaExtensions"] == [{"schema": sc.PARTY_ORG, "required": True}]
    assert scim["read"].get("/ResourceTypes/Group").get_json()["schema"] == sc.CORE_GROUP
    _error(scim["read"].get("/Schemas/urn:nope"), 404)
    _error(scim["read"].get("/Schemas", filter='id eq "x"'), 403)


# --- Users and Groups --------------------------------------------------------------------------


def test_user_representation(scim, people, site: Site) -> None:
    member = next(pid for pid, p in sorted(people.items()) if p["branch"] and p["employee_no"] and p["department"])
    response = scim["read"].get(f"/Users/{member}")
    assert response.status_code == 200 and response.mimetype == SCIM
    user = response.get_json()
    p = people[member]
    assert user["schemas"] == [sc.CORE_USER, sc.ENTERPRISE, sc.PARTY]
    assert user["id"] == str(member) and user["userName"] == p["employee_no"] == user["externalId"]
    assert user["name"]["formatted"] == p["name"] == user["displayName"]
    assert user["active"] is p["active"]
    assert user[sc.ENTERPRISE]["employeeNumber"] == p["employee_no"]
    assert user[sc.ENTERPRISE]["department"] == p["department"]
    ext = user[sc.PARTY]
    assert ext["branch"]["code"] == p["branch"] and ext["category"] == p["category"]
    assert ext["joinedOn"].startswith(p["joined_on"].isoformat())
    assert user["meta"]["resourceType"] == "User" and user["meta"]["location"].endswith(f"/scim/v2/Users/{member}")
    assert response.headers["ETag"] == user["meta"]["version"]
    group = scim["read"].get(f"/Groups/{ext['branch']['value']}").get_json()
    assert group["displayName"] == ext["branch"]["display"]
    assert {"value": str(member), "display": p["name"], "$ref": user["meta"]["location"], "type": "User"} in group["members"]
    assert group[sc.PARTY_ORG]["code"] == p["branch"] and group[sc.PARTY_ORG]["kind"]


def test_mobile_masked_unless_sensitive(scim, people, site: Site) -> None:
    pid = next(pid for pid, p in sorted(people.items()) if p["mobile_masked"])
    masked = scim["read"].get(f"/Users/{pid}").get_json()["phoneNumbers"][0]
    assert masked["value"] == people[pid]["mobile_masked"] and masked["type"] == "mobile"
    with _session(site) as s:
        real = site.runtime.cipher.decrypt(s.get(Person, pid).mobile_enc)
    assert real != masked["value"]
    assert scim["sensitive"].get(f"/Users/{pid}").get_json()["phoneNumbers"][0]["value"] == real
    listed = scim["read"].get("/Users", count=1000).get_data(as_text=True)
    assert real not in listed
    # Not filterable: a masked reader could otherwise probe the real number.
    _error(scim["read"].get("/Users", filter=f'phoneNumbers.value eq "{real}"'), 400, "invalidFilter")


# --- filters -----------------------------------------------------------------------------------


def test_filter_operators(scim, people) -> None:
    read = scim["read"]
    names = sorted(p["name"] for p in people.values())
    name = names[len(names) // 2]
    first = name[0]
    last = name[-1]
    middle = name[1:2] or name
    numbers = sorted(p["employee_no"] for p in people.values() if p["employee_no"])
    pivot = numbers[len(numbers) // 2]
    cases = {
        f'displayName eq "{name}"': lambda p: p["name"] == name,
        f'displayName ne "{name}"': lambda p: p["name"] != name,
        f'displayName co "{middle}"': lambda p: middle in p["name"],
        f'displayName sw "{first}"': lambda p: p["name"].startswith(first),
        f'displayName ew "{last}"': lambda p: p["name"].endswith(last),
        'externalId pr': lambda p: bool(p["employee_no"]),
        f'externalId gt "{pivot}"': lambda p: bool(p["employee_no"]) and p["employee_no"] > pivot,
        f'externalId ge "{pivot}"': lambda p: bool(p["employee_no"]) and p["employee_no"] >= pivot,
        f'externalId lt "{pivot}"': lambda p: bool(p["employee_no"]) and p["employee_no"] < pivot,
        f'externalId le "{pivot}"': lambda p: bool(p["employee_no"]) and p["employee_no"] <= pivot,
        'active eq true': lambda p: p["active"],
        'active eq false': lambda p: not p["active"],
    }
    for expression, predicate in cases.items():
        expected = _where(people, predicate)
        assert expected, expression  # each case must select something to mean anything
        assert sorted(read.ids("/Users", filter=expression)) == expected, expression


def test_filter_logic_and_grouping(scim, people) -> None:
    read = scim["read"]
    some = sorted(people)[:3]
    a, b, c = (str(x) for x in some)
    cases = {
        f'id eq "{a}" or id eq "{b}"': lambda pid, p: pid in some[:2],
        f'(id eq "{a}" or id eq "{b}") and active eq true': lambda pid, p: pid in some[:2] and p["active"],
        f'id eq "{a}" or id eq "{b}" and id eq "{c}"': lambda pid, p: pid == some[0],  # and binds tighter
        f'(id eq "{a}" or id eq "{b}") and not (id eq "{a}")': lambda pid, p: pid == some[1],
        'not (active eq true) and externalId pr': lambda pid, p: not p["active"] and bool(p["employee_no"]),
    }
    for expression, predicate in cases.items():
        expected = sorted(pid for pid, p in people.items() if predicate(pid, p))
        assert sorted(read.ids("/Users", filter=expression)) == expected, expression


def test_filter_sub_attribute_and_extension(scim, people) -> None:
    read = scim["read"]
    family = split_name(next(p["name"] for p in people.values() if split_name(p["name"])[0]))[0]
    expected = _where(people, lambda p: split_name(p["name"])[0] == family)
    assert sorted(read.ids("/Users", filter=f'name.familyName eq "{family}"')) == expected
    # Extension attributes: fully qualified, and by short name.
    full = _where(people, lambda p: p["category"] == "full")
    assert full
    assert sorted(read.ids("/Users", filter=f'{sc.PARTY}:category eq "full"')) == full
    assert sorted(read.ids("/Users", filter='category eq "full"')) == full
    department = next(p["department"] for p in people.values() if p["department"])
    assert sorted(read.ids("/Users", filter=f'{sc.ENTERPRISE}:department eq "{department}"')) == \
        _where(people, lambda p: p["department"] == department)
    branch = next(p["branch"] for p in people.values() if p["branch"])
    assert sorted(read.ids("/Users", filter=f'{sc.PARTY}:branch.code eq "{branch}"')) == \
        _where(people, lambda p: p["branch"] == branch)
    joined = sorted(p["joined_on"] for p in people.values() if p["joined_on"])[len(full) // 2]
    assert sorted(read.ids("/Users", filter=f'joinedOn ge "{joined.isoformat()}T00:00:00Z"')) == \
        _where(people, lambda p: p["joined_on"] is not None and p["joined_on"] >= joined)
    # Groups: members by user id, via a value filter as well.
    member = next(pid for pid, p in sorted(people.items()) if p["branch"])
    groups = read.get("/Groups", filter=f'members[value eq "{member}"]').get_json()["Resources"]
    assert [g[sc.PARTY_ORG]["code"] for g in groups] == [people[member]["branch"]]
    kinds = read.get("/Groups", filter=f'{sc.PARTY_ORG}:kind eq "branch"', count=1000).get_json()
    assert kinds["totalResults"] and all(g[sc.PARTY_ORG]["kind"] == "branch" for g in kinds["Resources"])


def test_bad_filters_are_invalid_filter(scim) -> None:
    for expression in ['userName eq', 'nope eq "x"', 'title eq "x"', 'active eq "yes"', 'active gt true',
                       f'{sc.ENTERPRISE}:organization eq "x"', 'meta.lastModified co "2020"',
                       'meta.lastModified gt "yesterday"', '(userName eq "1"']:
        _error(scim["read"].get("/Users", filter=expression), 400, "invalidFilter")


# --- paging, sorting, projection ---------------------------------------------------------------


def test_paging_is_consistent(scim, people) -> None:
    read = scim["read"]
    total = read.get("/Users", count=0).get_json()
    assert total["totalResults"] == len(people) and total["Resources"] == [] and total["itemsPerPage"] == 0
    seen: list[str] = []
    start = 1
    while start <= len(people):
        page = read.get("/Users", startIndex=start, count=37, sortBy="userName").get_json()
        assert page["startIndex"] == start and page["totalResults"] == len(people)
        assert page["itemsPerPage"] == len(page["Resources"]) == min(37, len(people) - start + 1)
        seen += [r["id"] for r in page["Resources"]]
        start += 37
    assert len(seen) == len(set(seen)) == len(people)
    beyond = read.get("/Users", startIndex=len(people) + 5).get_json()
    assert beyond["Resources"] == [] and beyond["totalResults"] == len(people)
    assert read.get("/Users", startIndex=0, count=2).get_json()["startIndex"] == 1
    assert read.get("/Users", count=5000).get_json()["itemsPerPage"] == min(len(people), sc.MAX_RESULTS)
    _error(read.get("/Users", count="many"), 400, "invalidValue")


def test_sorting(scim, people) -> None:
    read = scim["read"]
    ascending = [r["userName"] for r in read.get("/Users", sortBy="userName", count=1000).get_json()["Resources"]]
    assert ascending == sorted(ascending, key=str.lower)
    descending = [r["userName"] for r in read.get("/Users", sortBy="userName", sortOrder="descending",
                                                    count=1000).get_json()["Resources"]]
    assert descending == ascending[::-1]
    modified = [r["meta"]["lastModified"] for r in read.get("/Users", sortBy="meta.lastModified",
                                                             count=1000).get_json()["Resources"]]
    assert modified == sorted(modified)
    _error(read.get("/Users", sortBy="phoneNumbers.value"), 400, "invalidValue")
    _error(read.get("/Users", sortBy="userName", sortOrder="sideways"), 400, "invalidValue")


def test_attributes_and_excluded_attributes(scim, people) -> None:
    read = scim["read"]
    pid = next(pid for pid, p in sorted(people.items()) if p["branch"])
    only = read.get(f"/Users/{pid}", attributes="userName,name.familyName").get_json()
    assert set(only) == {"schemas", "id", "userName", "name"} and set(only["name"]) <= {"familyName"}
    ext = read.get(f"/Users/{pid}", attributes=f"{sc.PARTY}:category,displayName").get_json()
    assert set(ext) == {"schemas", "id", "displayName", sc.PARTY} and set(ext[sc.PARTY]) == {"category"}
    assert ext["schemas"] == [sc.CORE_USER, sc.PARTY]
    whole = read.get(f"/Users/{pid}", attributes=sc.ENTERPRISE).get_json()
    assert set(whole) == {"schemas", "id", sc.ENTERPRISE}
    without = read.get(f"/Users/{pid}", excludedAttributes=f"name,meta,id,{sc.PARTY}:branch").get_json()
    assert "name" not in without and "meta" not in without and without["id"] == str(pid)
    assert "branch" not in without[sc.PARTY] and "displayName" in without
    listed = read.get("/Users", attributes="userName", count=3).get_json()["Resources"]
    assert all(set(r) == {"schemas", "id", "userName"} for r in listed)


def test_etag_and_if_none_match(scim, people) -> None:
    read = scim["read"]
    pid = sorted(people)[0]
    first = read.get(f"/Users/{pid}")
    etag = first.headers["ETag"]
    assert etag.startswith('W/"')
    again = read.get(f"/Users/{pid}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.headers["ETag"] == etag
    assert read.get(f"/Users/{pid}", headers={"If-None-Match": 'W/"other"'}).status_code == 200
    # Another view of the same person (unmasked) is another representation.
    assert scim["sensitive"].get(f"/Users/{pid}").headers["ETag"] != etag or not people[pid]["mobile_masked"]
    group = read.get("/Groups", count=1).get_json()["Resources"][0]
    assert read.get(f"/Groups/{group['id']}", headers={"If-None-Match": group["meta"]["version"]}).status_code == 304


# --- errors, writes, auth, subtree -------------------------------------------------------------


def test_errors_are_scim_errors(scim) -> None:
    _error(scim["read"].get("/Users/999999"), 404)
    _error(scim["read"].get("/Users/abc"), 404)
    _error(scim["read"].get("/Groups/999999"), 404)
    _error(scim["read"].get("/Nothing"), 404)
    _error(scim["anonymous"].get("/Users"), 401)
    assert "Bearer" in scim["anonymous"].get("/Users").headers["WWW-Authenticate"]
    _error(scim["none"].get("/Users"), 403)
    _error(scim["read"].send("POST", "/.search", {}), 501)


def test_writes_need_the_write_scope(scim, people) -> None:
    pid = sorted(people)[0]
    body = {"schemas": [sc.CORE_USER], "userName": "x"}
    for method, path in [("POST", "/Users"), ("PUT", f"/Users/{pid}"), ("DELETE", f"/Users/{pid}"),
                         ("PATCH", f"/Users/{pid}"), ("POST", "/Groups"), ("PUT", "/Groups/1"),
                         ("DELETE", "/Groups/1")]:
        assert "write:scim" in _error(scim["read"].send(method, path, body), 403)["detail"]
    _error(scim["read"].send("POST", "/Bulk", {}), 501)
    # Refused before anything else: an anonymous write is a 401, not a hint about writes.
    _error(scim["anonymous"].send("DELETE", f"/Users/{pid}"), 401)
    assert scim["read"].get(f"/Users/{pid}").status_code == 200


def test_search_via_post(scim, people) -> None:
    response = scim["read"].send("POST", "/Users/.search", {
        "schemas": [sc.SEARCH_REQUEST], "filter": "active eq true", "startIndex": 1, "count": 5,
        "sortBy": "userName", "attributes": ["userName"]})
    assert response.status_code == 200, response.get_data(as_text=True)
    page = response.get_json()
    assert page["totalResults"] == len(_where(people, lambda p: p["active"]))
    assert all(set(r) == {"schemas", "id", "userName"} for r in page["Resources"])


def test_subtree_token_sees_only_its_subtree(scim, site: Site, subtree_root: str) -> None:
    from records.queries import covered_unit_codes
    from records.queries import subtree_codes

    with _session(site) as s:
        codes = subtree_codes(s, subtree_root)
        covered = covered_unit_codes(s, codes)
        visible = sorted({m.person_id for m in s.scalars(select(Membership).where(Membership.party_org_code.in_(codes)))}
                         | set(s.scalars(select(Person.id).where(Person.org_unit_code.in_(covered)))))
        org_ids = sorted(s.scalars(select(PartyOrg.id).where(PartyOrg.code.in_(codes))))
        outside = s.scalar(select(Person.id).where(Person.id.not_in(visible)).limit(1))
        outside_org = s.scalar(select(PartyOrg.id).where(PartyOrg.code.not_in(codes)).limit(1))
    sub = scim["subtree"]
    assert sorted(sub.ids("/Users")) == visible and 0 < len(visible)
    assert sorted(sub.ids("/Groups")) == org_ids
    assert outside is not None and outside_org is not None
    _error(sub.get(f"/Users/{outside}"), 404)
    _error(sub.get(f"/Groups/{outside_org}"), 404)
    # Filters cannot reach outside either.
    assert sub.ids("/Users", filter=f'id eq "{outside}"') == []
    for group in sub.get("/Groups", count=1000).get_json()["Resources"]:
        assert {int(m["value"]) for m in group.get("members", [])} <= set(visible)
