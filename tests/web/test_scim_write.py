"""SCIM writes (web.scim.writes): SCIM as a source named `scim` — provenance rules, deactivate then
404, audit and change-feed rows, scopes, subtree limits, masking in write responses, If-Match."""
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
    assert group[sc.PARTY_ORG]["kind"] == "branch" and group[sc.PARTY_ORG]["code"].startswith("SCIM-")
    added = _call(client, tokens, "PATCH", f"/Groups/{group['id']}",
                  _patch({"op": "add", "path": "members", "value": [{"value": user["id"]}]}))
    assert added.status_code == 200, added.get_data(as_text=True)
    assert [m["value"] for m in added.get_json()["members"]] == [user["id"]]
    member = _call(client, tokens, "GET", f"/Users/{user['id']}").get_json()
    assert member[sc.PARTY]["branch"]["code"] == group[sc.PARTY_ORG]["code"]
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
