"""SCIM writes (web.scim.writes): SCIM as a source named `scim` — provenance rules, deactivate then
404, audit and change-feed rows, scopes, subtree limits, masking in write responses, If-Match;
party orgs placed in the tree (kind, parent, secretary), and User extensions attached and
detached."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from records.db import session_factory
from records.models import AuditLog, Change, Membership, PartyOrg, Person
from tests.sync.conftest import Site, make_site
from web.scim import schema as sc
from web.tokens import create_token
from tests.conftest import app_for

SCIM = "application/scim+json"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    folder: Path = tmp_path_factory.mktemp("scim-write")
    site = make_site(folder / "src", f"sqlite:///{folder / 'w.db'}", staff=300, seed=37)
    assert site.sync().status == "succeeded"
    return site


def _session(site: Site):
    return session_factory(site.runtime.engine)()


@pytest.fixture(scope="module")
def tokens(site: Site) -> dict[str, str]:
    with _session(site) as s, s.begin():
        branch = s.scalar(select(PartyOrg.code).where(PartyOrg.kind == "branch").order_by(PartyOrg.code))
        return {"writer": create_token(s, "w", ["write:scim"]).secret,
                "reader": create_token(s, "r", ["read"]).secret,
                "subtree": create_token(s, "sub", ["write:scim"], branch).secret,
                "branch": branch}


@pytest.fixture(scope="module")
def client(site: Site):
    app = app_for(site.runtime, API_RATE_LIMIT_PER_SECOND=0)
    return app.test_client()


def _call(client, tokens, method: str, path: str, body: Any = None, who: str = "writer", **headers: str):
    return client.open(f"/scim/v2{path}", method=method, json=body,
                       headers={"Authorization": f"Bearer {tokens[who]}", "Content-Type": SCIM, **headers})


def _patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [sc.PATCH_OP], "Operations": list(operations)}


def _sync_person(site: Site) -> Person:
    with _session(site) as s:
        return s.scalar(select(Person).where(Person.employee_no.is_not(None), Person.mobile_masked.is_not(None),
                                             Person.staff_active.is_(True)).order_by(Person.id))


def test_create_user_is_a_scim_sourced_person_with_audit_and_feed(client, tokens, site) -> None:
    created = _call(client, tokens, "POST", "/Users", {"schemas": [sc.CORE_USER], "userName": "SCIM-0001",
                                                      "externalId": "idp-1", "name": {"formatted": "Ada Lovelace"}})
    assert created.status_code == 201, created.get_data(as_text=True)
    user = created.get_json()
    assert created.headers["Location"].endswith(f"/Users/{user['id']}") and created.headers["ETag"]
    assert user["userName"] == "SCIM-0001" and user["externalId"] == "idp-1"
    assert user["name"] == {"formatted": "Ada Lovelace"}  # a Latin name is not split into family/given
    with _session(site) as s:
        person = s.get(Person, int(user["id"]))
        assert person.provenance == {"employee_no": "scim", "name": "scim"} and not person.staff_active
        assert s.scalar(select(AuditLog).where(AuditLog.action == "scim.user.create",
                                               AuditLog.target_id == user["id"])).actor == "token:w"
        change = s.scalar(select(Change).where(Change.entity == "person", Change.entity_id == person.id))
        assert change.op == "create" and change.actor == "token:w"
    again = _call(client, tokens, "POST", "/Users", {"schemas": [sc.CORE_USER], "userName": "SCIM-0001"})
    assert again.status_code == 409 and again.get_json()["scimType"] == "uniqueness"


def test_fields_owned_by_a_source_are_read_only(client, tokens, site) -> None:
    person = _sync_person(site)
    renamed = _call(client, tokens, "PATCH", f"/Users/{person.id}",
                    _patch({"op": "replace", "path": "name.formatted", "value": "改名"}))
    assert renamed.status_code == 400 and renamed.get_json()["scimType"] == "mutability"
    assert "owned by the source" in renamed.get_json()["detail"]
    put = _call(client, tokens, "PUT", f"/Users/{person.id}", {"schemas": [sc.CORE_USER], "userName": "OTHER-1"})
    assert put.status_code == 400 and put.get_json()["scimType"] == "mutability"
    read_only = _call(client, tokens, "PATCH", f"/Users/{person.id}",
                      _patch({"op": "replace", "path": "active", "value": False}))
    assert read_only.status_code == 400 and read_only.get_json()["scimType"] == "mutability"
    with _session(site) as s:
        assert s.get(Person, person.id).name == person.name  # nothing written
    # The same value (an identity tool re-sending what it read) is fine.
    same = _call(client, tokens, "PUT", f"/Users/{person.id}", {"schemas": [sc.CORE_USER], "userName": person.employee_no,
                                                               "name": {"formatted": person.name}})
    assert same.status_code == 200, same.get_data(as_text=True)


def test_write_responses_mask_the_mobile_without_read_sensitive(client, tokens, site) -> None:
    person = _sync_person(site)
    response = _call(client, tokens, "PATCH", f"/Users/{person.id}",
                     _patch({"op": "replace", "path": "userName", "value": person.employee_no}))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["phoneNumbers"][0]["value"] == person.mobile_masked
    refused = _call(client, tokens, "PATCH", f"/Users/{person.id}",
                    _patch({"op": "replace", "path": "phoneNumbers", "value": [{"value": "13800000000"}]}))
    assert refused.status_code == 400 and refused.get_json()["scimType"] == "mutability"


def test_patch_and_delete_a_scim_user_then_404(client, tokens, site) -> None:
    user = _call(client, tokens, "POST", "/Users", {"schemas": [sc.CORE_USER], "userName": "SCIM-0002"}).get_json()
    patched = _call(client, tokens, "PATCH", f"/Users/{user['id']}",
                    _patch({"op": "add", "path": "name", "value": {"formatted": "王小明"}},
                           {"op": "remove", "path": "externalId"}))
    assert patched.status_code == 200, patched.get_data(as_text=True)
    body = patched.get_json()
    assert body["name"] == {"formatted": "王小明", "familyName": "王", "givenName": "小明"} and "externalId" not in body
    stale = _call(client, tokens, "DELETE", f"/Users/{user['id']}", **{"If-Match": user["meta"]["version"]})
    assert stale.status_code == 412  # the PATCH changed it since
    assert _call(client, tokens, "DELETE", f"/Users/{user['id']}").status_code == 204
    assert _call(client, tokens, "GET", f"/Users/{user['id']}").status_code == 404
    listed = _call(client, tokens, "GET", '/Users?filter=userName eq "SCIM-0002"').get_json()
    assert listed["totalResults"] == 0
    with _session(site) as s:
        person = s.get(Person, int(user["id"]))
        assert person is not None and person.scim_deleted_at is not None and not person.staff_active  # never deleted
        assert s.scalar(select(Change).where(Change.entity == "person", Change.entity_id == person.id,
                                             Change.op == "deactivate")) is not None
        assert s.scalar(select(AuditLog).where(AuditLog.action == "scim.user.delete")) is not None
    person = _sync_person(site)
    refused = _call(client, tokens, "DELETE", f"/Users/{person.id}")
    assert refused.status_code == 400 and refused.get_json()["scimType"] == "mutability"


def test_groups_register_and_end_memberships(client, tokens, site) -> None:
    user = _call(client, tokens, "POST", "/Users", {"schemas": [sc.CORE_USER], "userName": "SCIM-0003"}).get_json()
    group = _call(client, tokens, "POST", "/Groups", {"schemas": [sc.CORE_GROUP], "displayName": "第九支部"})
    assert group.status_code == 201, group.get_data(as_text=True)
    group = group.get_json()
    # Left out, the party org extension defaults: a branch; its generated code is no source's.
    assert group[sc.PARTY_ORG] == {"kind": "branch"} and group["schemas"] == [sc.CORE_GROUP, sc.PARTY_ORG]
    added = _call(client, tokens, "PATCH", f"/Groups/{group['id']}",
                  _patch({"op": "add", "path": "members", "value": [{"value": user["id"]}]}))
    assert added.status_code == 200, added.get_data(as_text=True)
    assert [m["value"] for m in added.get_json()["members"]] == [user["id"]]
    member = _call(client, tokens, "GET", f"/Users/{user['id']}").get_json()
    assert member[sc.PARTY]["branch"]["value"] == group["id"] and "code" not in member[sc.PARTY]["branch"]
    removed = _call(client, tokens, "PATCH", f"/Groups/{group['id']}",
                    _patch({"op": "remove", "path": f'members[value eq "{user["id"]}"]'}))
    assert removed.status_code == 200 and "members" not in removed.get_json()
    with _session(site) as s:
        membership = s.scalar(select(Membership).where(Membership.person_id == int(user["id"])))
        assert not membership.active and membership.status == "transferred_out"
        assert membership.provenance.get("party_org_code") == "scim"
        ops = [c.op for c in s.scalars(select(Change).where(Change.entity == "membership",
                                                            Change.entity_id == membership.id).order_by(Change.id))]
        assert ops == ["create", "deactivate"]
    # A party org from the roster: its name is the source's.
    with _session(site) as s:
        synced = s.scalar(select(PartyOrg).where(PartyOrg.scim_external_id.is_(None)).order_by(PartyOrg.id))
    renamed = _call(client, tokens, "PATCH", f"/Groups/{synced.id}",
                    _patch({"op": "replace", "path": "displayName", "value": "x"}))
    assert renamed.status_code == 400 and renamed.get_json()["scimType"] == "mutability"
    assert _call(client, tokens, "DELETE", f"/Groups/{group['id']}").status_code == 204
    assert _call(client, tokens, "GET", f"/Groups/{group['id']}").status_code == 404


def test_scope_and_subtree_limits(client, tokens, site) -> None:
    body = {"schemas": [sc.CORE_USER], "userName": "SCIM-0004"}
    assert _call(client, tokens, "POST", "/Users", body, who="reader").status_code == 403
    assert _call(client, tokens, "POST", "/Users", body, who="subtree").status_code == 403
    with _session(site) as s:
        outside = s.scalar(select(PartyOrg).where(PartyOrg.code != tokens["branch"], PartyOrg.kind == "branch")
                           .order_by(PartyOrg.id))
        outsider = s.scalar(select(Membership.person_id).join(PartyOrg, PartyOrg.code == Membership.party_org_code)
                            .where(PartyOrg.kind == "branch", PartyOrg.code != tokens["branch"],
                                   Membership.active.is_(True)).order_by(Membership.id))
    assert outsider is not None
    patch = _patch({"op": "replace", "path": "displayName", "value": "x"})
    assert _call(client, tokens, "PATCH", f"/Groups/{outside.id}", patch, who="subtree").status_code == 404
    assert _call(client, tokens, "DELETE", f"/Users/{outsider}", who="subtree").status_code == 404
    assert _call(client, tokens, "PUT", f"/Users/{outsider}", body, who="subtree").status_code == 404


# --- party orgs in the tree -------------------------------------------------------------------


def _source_org(site: Site, kind: str) -> PartyOrg:
    with _session(site) as s:
        return s.scalar(select(PartyOrg).where(PartyOrg.kind == kind, PartyOrg.scim_external_id.is_(None),
                                               PartyOrg.parent_code.is_not(None)).order_by(PartyOrg.id))


def test_create_a_group_with_kind_parent_and_secretary(client, tokens, site) -> None:
    parent = _source_org(site, "committee")
    created = _call(client, tokens, "POST", "/Groups", {
        "schemas": [sc.CORE_GROUP, sc.PARTY_ORG], "displayName": "新能源第二党小组",
        sc.PARTY_ORG: {"kind": "group", "parent": {"value": str(parent.id)}, "secretary": "李梅",
                       "code": "IGNORED", "retirees": True}})  # readOnly ones are ignored
    assert created.status_code == 201, created.get_data(as_text=True)
    group = created.get_json()
    base = created.headers["Location"].rsplit("/Groups/", 1)[0]
    assert group[sc.PARTY_ORG] == {"kind": "group", "secretary": "李梅",
                                   "parent": {"value": str(parent.id), "$ref": f"{base}/Groups/{parent.id}"}}
    with _session(site) as s:
        org = s.get(PartyOrg, int(group["id"]))
        assert (org.kind, org.parent_code, org.secretary, org.retirees) == ("group", parent.code, "李梅", False)
        assert org.provenance == {"code": "scim", "name": "scim", "kind": "scim", "parent_code": "scim",
                                  "secretary": "scim"}
        change = s.scalar(select(Change).where(Change.entity == "party_org", Change.entity_id == org.id))
        assert change.op == "create" and change.changed["parent_code"] == [None, parent.code]
        assert s.scalar(select(AuditLog).where(AuditLog.action == "scim.group.create",
                                               AuditLog.target_id == group["id"])) is not None
    # Moved by $ref (a party group sits in a branch), the secretary cleared, then to the top level.
    other = _source_org(site, "branch")
    moved = _call(client, tokens, "PATCH", f"/Groups/{group['id']}",
                  _patch({"op": "replace", "path": f"{sc.PARTY_ORG}:parent",
                          "value": {"$ref": f"{base}/Groups/{other.id}"}},
                         {"op": "remove", "path": f"{sc.PARTY_ORG}:secretary"}))
    assert moved.status_code == 200, moved.get_data(as_text=True)
    assert moved.get_json()[sc.PARTY_ORG]["parent"]["value"] == str(other.id)
    assert "secretary" not in moved.get_json()[sc.PARTY_ORG]
    top = _call(client, tokens, "PATCH", f"/Groups/{group['id']}",
                _patch({"op": "remove", "path": f"{sc.PARTY_ORG}:parent"}))
    assert top.status_code == 200 and "parent" not in top.get_json()[sc.PARTY_ORG]
    with _session(site) as s:
        updates = [c.changed for c in s.scalars(select(Change).where(
            Change.entity == "party_org", Change.entity_id == int(group["id"]), Change.op == "update")
            .order_by(Change.id))]
    assert updates == [{"parent_code": [parent.code, other.code], "secretary": ["李梅", None]},
                       {"parent_code": [other.code, None]}]
    bad_kind = _call(client, tokens, "PATCH", f"/Groups/{group['id']}",
                     _patch({"op": "replace", "path": f"{sc.PARTY_ORG}:kind", "value": "cell"}))
    assert bad_kind.status_code == 400 and bad_kind.get_json()["scimType"] == "invalidValue"
    assert "'cell'" in bad_kind.get_json()["detail"]
    nowhere = _call(client, tokens, "PATCH", f"/Groups/{group['id']}",
                    _patch({"op": "add", "path": f"{sc.PARTY_ORG}:parent", "value": {"value": "999999"}}))
    assert nowhere.status_code == 400 and nowhere.get_json()["scimType"] == "invalidValue"
    whole = _call(client, tokens, "PATCH", f"/Groups/{group['id']}", _patch({"op": "remove", "path": sc.PARTY_ORG}))
    assert whole.status_code == 400 and whole.get_json()["scimType"] == "mutability"  # every Group has one


def test_a_party_org_cannot_sit_below_itself(client, tokens, site) -> None:
    top = _call(client, tokens, "POST", "/Groups", {"schemas": [sc.CORE_GROUP], "displayName": "上级党委",
                                                   sc.PARTY_ORG: {"kind": "committee"}}).get_json()
    middle = _call(client, tokens, "POST", "/Groups", {"schemas": [sc.CORE_GROUP], "displayName": "中间总支",
                                                      sc.PARTY_ORG: {"kind": "general_branch",
                                                                     "parent": {"value": top["id"]}}}).get_json()
    low = _call(client, tokens, "POST", "/Groups", {"schemas": [sc.CORE_GROUP], "displayName": "下级支部",
                                                   sc.PARTY_ORG: {"parent": {"value": middle["id"]}}}).get_json()
    for below in (low["id"], top["id"]):
        cycle = _call(client, tokens, "PATCH", f"/Groups/{top['id']}",
                      _patch({"op": "replace", "path": f"{sc.PARTY_ORG}:parent", "value": {"value": below}}))
        assert cycle.status_code == 400 and cycle.get_json()["scimType"] == "invalidValue", below
    with _session(site) as s:
        assert s.get(PartyOrg, int(top["id"])).parent_code is None  # nothing written
    # A PUT is checked the same way.
    put = _call(client, tokens, "PUT", f"/Groups/{middle['id']}", {
        "schemas": [sc.CORE_GROUP], "displayName": "中间总支", sc.PARTY_ORG: {"parent": {"value": low["id"]}}})
    assert put.status_code == 400 and put.get_json()["scimType"] == "invalidValue"


def test_placement_of_a_source_owned_party_org_is_read_only(client, tokens, site) -> None:
    org = _source_org(site, "branch")
    other_kind = next(k for k in sc.PARTY_ORG_KINDS if k != org.kind)
    refused = _call(client, tokens, "PATCH", f"/Groups/{org.id}",
                    _patch({"op": "replace", "path": f"{sc.PARTY_ORG}:kind", "value": other_kind}))
    assert refused.status_code == 400 and refused.get_json()["scimType"] == "mutability"
    detached = _call(client, tokens, "PATCH", f"/Groups/{org.id}",
                     _patch({"op": "remove", "path": f"{sc.PARTY_ORG}:parent"}))
    assert detached.status_code == 400 and detached.get_json()["scimType"] == "mutability"
    current = _call(client, tokens, "GET", f"/Groups/{org.id}").get_json()
    assert current[sc.PARTY_ORG]["code"] == org.code and current[sc.PARTY_ORG]["active"] is True
    # Sending what it already holds is fine, and so is a PUT that leaves the extension out.
    same = _call(client, tokens, "PUT", f"/Groups/{org.id}", {
        "schemas": [sc.CORE_GROUP, sc.PARTY_ORG], "displayName": org.name,
        "members": current.get("members", []), sc.PARTY_ORG: current[sc.PARTY_ORG]})
    assert same.status_code == 200, same.get_data(as_text=True)
    plain = _call(client, tokens, "PUT", f"/Groups/{org.id}", {
        "schemas": [sc.CORE_GROUP], "displayName": org.name, "members": current.get("members", [])})
    assert plain.status_code == 200, plain.get_data(as_text=True)
    with _session(site) as s:
        after = s.get(PartyOrg, org.id)
        assert (after.kind, after.parent_code) == (org.kind, org.parent_code)
        root = s.scalar(select(PartyOrg).where(PartyOrg.code == tokens["branch"]))
    # A subtree token sees its root's parent by code only, and may send that back as it was.
    seen = _call(client, tokens, "GET", f"/Groups/{root.id}", who="subtree").get_json()
    assert seen[sc.PARTY_ORG]["parent"] == {"code": root.parent_code}
    echoed = _call(client, tokens, "PUT", f"/Groups/{root.id}", {k: v for k, v in seen.items() if k != "meta"},
                   who="subtree")
    assert echoed.status_code == 200, echoed.get_data(as_text=True)
    assert echoed.get_json()[sc.PARTY_ORG]["parent"] == {"code": root.parent_code}


# --- User extensions ----------------------------------------------------------------------------


def test_employee_number_is_the_one_a_real_source_assigned(client, tokens, site) -> None:
    scim_only = _call(client, tokens, "POST", "/Users", {"schemas": [sc.CORE_USER], "userName": "SCIM-0005"}).get_json()
    assert scim_only["userName"] == "SCIM-0005" and sc.ENTERPRISE not in scim_only
    assert scim_only["schemas"] == [sc.CORE_USER]
    hr = _sync_person(site)
    assert hr.provenance["employee_no"] not in (None, "scim")
    shown = _call(client, tokens, "GET", f"/Users/{hr.id}").get_json()
    assert shown[sc.ENTERPRISE]["employeeNumber"] == hr.employee_no == shown["userName"]


def test_attach_and_detach_an_empty_extension(client, tokens, site) -> None:
    user = _call(client, tokens, "POST", "/Users", {"schemas": [sc.CORE_USER, sc.ENTERPRISE], "userName": "SCIM-0006",
                                                   sc.ENTERPRISE: {}}).get_json()
    assert user[sc.ENTERPRISE] == {} and user["schemas"] == [sc.CORE_USER, sc.ENTERPRISE]
    attached = _call(client, tokens, "PATCH", f"/Users/{user['id']}",
                     _patch({"op": "add", "path": sc.PARTY, "value": {}}))
    assert attached.status_code == 200, attached.get_data(as_text=True)
    assert attached.get_json()[sc.PARTY] == {}
    assert attached.get_json()["schemas"] == [sc.CORE_USER, sc.ENTERPRISE, sc.PARTY]
    detached = _call(client, tokens, "PATCH", f"/Users/{user['id']}", _patch({"op": "remove", "path": sc.ENTERPRISE}))
    assert detached.status_code == 200, detached.get_data(as_text=True)
    assert sc.ENTERPRISE not in detached.get_json() and detached.get_json()["schemas"] == [sc.CORE_USER, sc.PARTY]
    # A PUT says which extensions the User carries: those it leaves out are detached.
    put = _call(client, tokens, "PUT", f"/Users/{user['id']}", {"schemas": [sc.CORE_USER], "userName": "SCIM-0006"})
    assert put.status_code == 200 and put.get_json()["schemas"] == [sc.CORE_USER]
    with _session(site) as s:
        assert s.get(Person, int(user["id"])).scim_extensions is None
        changes = [c.changed.get("scim_extensions") for c in s.scalars(select(Change).where(
            Change.entity == "person", Change.entity_id == int(user["id"])).order_by(Change.id))]
    both = sorted([sc.ENTERPRISE, sc.PARTY])
    assert changes == [[None, [sc.ENTERPRISE]], [[sc.ENTERPRISE], both], [both, [sc.PARTY]], [[sc.PARTY], None]]


def test_an_extension_holding_hr_data_cannot_be_removed(client, tokens, site) -> None:
    hr = _sync_person(site)
    refused = _call(client, tokens, "PATCH", f"/Users/{hr.id}", _patch({"op": "remove", "path": sc.ENTERPRISE}))
    assert refused.status_code == 400 and refused.get_json()["scimType"] == "mutability"
    assert "employeeNumber" in refused.get_json()["detail"]
    assert sc.ENTERPRISE in _call(client, tokens, "GET", f"/Users/{hr.id}").get_json()
