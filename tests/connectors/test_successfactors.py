"""The `successfactors` preset against a faked OData v2 server (real-shaped answers)."""
from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from marshmallow import ValidationError

from connectors.base import SourceError
from connectors.registry import get_connector_class
from connectors.vendors.successfactors import (
    SuccessFactorsConnector,
    SuccessFactorsSourceSchema,
)
from mappings import MappingContext, MappingError, load_mapping

BASE = "https://api4.successfactors.com/odata/v2"
USERS = f"{BASE}/User"
DEPTS = f"{BASE}/FODepartment"


def user(n: int, modified_ms: int, **extra: Any) -> dict[str, Any]:
    return {"__metadata": {"uri": f"{BASE}/User('E{n}')", "type": "SFOData.User"},
            "userId": f"E{n}", "username": f"user{n}", "displayName": f"员工{n}",
            "gender": "M" if n % 2 else "F", "dateOfBirth": "/Date(631152000000)/",
            "hireDate": "/Date(1577836800000)/", "status": "t", "department": "D100",
            "title": "工程师", "cellPhone": "+86 138 1234 5678",
            "lastModifiedDateTime": f"/Date({modified_ms}+0000)/", **extra}


def make(**block: Any) -> SuccessFactorsConnector:
    config = {"connector": "successfactors", "base_url": BASE,
              "auth": {"type": "basic", "username": "sfapi@ACMECORP", "password": "pw"},
              "provides": ["org_units", "staff"], "retries": {"max_attempts": 1}, **block}
    return SuccessFactorsConnector("sf", SuccessFactorsSourceSchema().load(config))


def query(call: Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


def test_config() -> None:
    assert get_connector_class("successfactors") is SuccessFactorsConnector
    connector = make()
    assert connector.config["entities"]["staff"]["entity"] == "User"
    assert connector.config["entities"]["org_units"]["effective_dated"] is True
    assert connector.is_incremental("staff") and connector.is_incremental("org_units")
    with pytest.raises(ValidationError) as err:
        make(auth={"type": "basic", "username": "sfapi", "password": "pw"})
    assert "user@companyId" in str(err.value.messages)
    with pytest.raises(ValidationError):
        make(provides=["payroll"])
    # Tuning the default entity keeps its defaults; naming another entity starts afresh.
    tuned = make(entities={"staff": {"select": "userId,displayName"}}).config["entities"]["staff"]
    assert tuned["entity"] == "User" and "status in" in tuned["filter"]
    other = make(entities={"staff": {"entity": "PerPerson"}}).config["entities"]["staff"]
    assert other["filter"] is None
    with pytest.raises(ValidationError):
        make(entities={"staff": {"entity": "User; DROP"}})


@responses.activate
def test_full_pull_follows_next_and_tracks_the_newest_modification() -> None:
    responses.add("GET", USERS, json={"d": {
        "results": [user(1, 1700000000000), user(2, 1700000500000)],
        "__next": f"{USERS}?$format=json&$skiptoken=eyJzdGFydFJvdyI6Mn0"}})
    responses.add("GET", USERS, json={"d": {"results": [user(3, 1700000100000)]}})
    pages = list(make().read("staff"))
    assert [[r["userId"] for r in p.records] for p in pages] == [["E1", "E2"], ["E3"]]
    assert all("__metadata" not in r for p in pages for r in p.records)
    # 1700000500000 ms = 2023-11-14T22:21:40 UTC; the cursor never moves back.
    assert [p.cursor for p in pages] == ["2023-11-14T22:21:40.000"] * 2
    first, second = (query(c) for c in responses.calls)
    assert first["$format"] == "json" and first["$filter"].startswith("status in")
    assert second == {"$format": "json", "$skiptoken": "eyJzdGFydFJvdyI6Mn0"}
    assert responses.calls[0].request.headers["Authorization"].startswith("Basic ")


@responses.activate
def test_delta_filter_and_effective_date() -> None:
    responses.add("GET", DEPTS, json={"d": {"results": [
        {"__metadata": {"uri": "x"}, "externalCode": "D100", "name": "生产技术部",
         "parent": "D001", "status": "A", "headOfUnit": "E1",
         "startDate": "/Date(1577836800000)/", "lastModifiedDateTime": "/Date(1700000000000+0000)/"}]}})
    [page] = make(as_of_date="2024-06-30").read("org_units", since="2023-11-01T00:00:00.000")
    q = query(responses.calls[0])
    assert q["$filter"] == "lastModifiedDateTime ge datetime'2023-11-01T00:00:00.000'"
    assert q["asOfDate"] == "2024-06-30"
    assert page.cursor == "2023-11-14T22:13:20.000"
    data = load_mapping("successfactors").map("org_units", page.records[0], MappingContext()).data
    assert data == {"code": "D100", "name": "生产技术部", "parent_code": "D001", "status": "active",
                    "manager_employee_no": "E1"}


@responses.activate
def test_delta_filter_is_combined_with_the_status_filter_and_as_of_defaults_to_today() -> None:
    responses.add("GET", USERS, json={"d": {"results": []}})
    responses.add("GET", DEPTS, json={"d": {"results": []}})
    connector = make(page_size=500)
    assert list(connector.read("staff", since="2024-01-01T00:00:00.000")) == []
    assert list(connector.read("org_units")) == []
    staff_q, dept_q = (query(c) for c in responses.calls)
    assert staff_q["$filter"] == ("(status in 't','f','T','F','e','d') and "
                                  "(lastModifiedDateTime ge datetime'2024-01-01T00:00:00.000')")
    assert staff_q["customPageSize"] == "500" and "asOfDate" not in staff_q
    assert dept_q["asOfDate"] == date.today().isoformat() and "$filter" not in dept_q


@responses.activate
def test_odata_error_message_is_kept() -> None:
    responses.add("GET", USERS, status=400, json={"error": {
        "code": "COE_PROPERTY_NOT_FOUND",
        "message": {"lang": "en-US", "value": "[COE0021]Invalid property names: User/nickname."}}})
    with pytest.raises(SourceError) as err:
        list(make(entities={"staff": {"select": "nickname"}}).read("staff"))
    assert err.value.error_class == "http" and (err.value.source, err.value.kind) == ("sf", "staff")
    assert "Invalid property names: User/nickname" in err.value.message


@responses.activate
def test_refused_credentials_are_an_auth_error() -> None:
    responses.add("GET", USERS, status=401, json={"error": {
        "code": "LGN0022", "message": {"lang": "en-US", "value": "[LGN0022]Credentials are "
                                                                  "required for this operation."}}})
    with pytest.raises(SourceError) as err:
        list(make().read("staff"))
    assert err.value.error_class == "auth" and "LGN0022" in err.value.message
    assert "pw" not in err.value.message.split()


@responses.activate
def test_saml_login_page_is_a_protocol_error() -> None:
    responses.add("GET", USERS, body="<html><body>SAP SuccessFactors 登录</body></html>",
                  content_type="text/html")
    with pytest.raises(SourceError) as err:
        list(make().read("staff"))
    assert err.value.error_class == "protocol"


@responses.activate
def test_next_link_to_another_host_and_loops_are_refused() -> None:
    responses.add("GET", USERS, json={"d": {"results": [user(1, 1)],
                                            "__next": "https://evil.example.com/odata/v2/User"}})
    with pytest.raises(SourceError) as err:
        list(make().read("staff"))
    assert err.value.error_class == "protocol" and "another host" in err.value.message
    responses.reset()
    loop = f"{USERS}?$skiptoken=same"
    responses.add("GET", USERS, json={"d": {"results": [user(1, 1)], "__next": loop}})
    responses.add("GET", USERS, json={"d": {"results": [user(2, 1)], "__next": loop}})
    with pytest.raises(SourceError) as err:
        list(make().read("staff"))
    assert "loop" in err.value.message


@responses.activate
def test_oauth_token_endpoint() -> None:
    responses.add("POST", "https://api4.successfactors.com/oauth/token",
                  json={"access_token": "at-1", "token_type": "Bearer", "expires_in": 86400})
    responses.add("GET", USERS, json={"d": {"results": [user(1, 1)]}})
    connector = make(auth={"type": "token_endpoint",
                           "url": "https://api4.successfactors.com/oauth/token",
                           "body": {"company_id": "ACMECORP", "client_id": "cid",
                                    "grant_type": "urn:ietf:params:oauth:grant-type:saml2-bearer",
                                    "assertion": "PHNhbWw+"}})
    assert len(list(connector.read("staff"))) == 1
    assert responses.calls[1].request.headers["Authorization"] == "Bearer at-1"


def test_staff_mapping() -> None:
    mapping, ctx = load_mapping("successfactors"), MappingContext()
    raw = user(1, 1700000000000)
    raw.pop("__metadata")
    assert mapping.map("staff", raw, ctx).data == {
        "employee_no": "E1", "name": "员工1", "gender": "1", "birth_date": "1990-01-01",
        "mobile": "13812345678", "org_unit_code": "D100", "position": "工程师",
        "employment_status": "active", "hired_on": "2020-01-01"}
    # The EC job's department wins over User.department; inactive users are left.
    raw.update(status="f", empInfo={"jobInfoNav": {"results": [{"department": "D200"}]}})
    data = mapping.map("staff", raw, ctx).data
    assert data["org_unit_code"] == "D200" and data["employment_status"] == "left"
    with pytest.raises(MappingError, match="dateOfBirth"):
        mapping.map("staff", {**raw, "dateOfBirth": "/Date(253402214400000)/"}, ctx)


def test_a_cursor_that_is_not_our_iso_form_never_reaches_the_filter() -> None:
    with pytest.raises(SourceError) as err:
        list(make().read("staff", since="2024-01-01' or 1 eq 1 or '"))
    assert err.value.error_class == "config" and (err.value.source, err.value.kind) == ("sf", "staff")
