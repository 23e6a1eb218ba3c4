"""The `seeyon` preset against a faked A8 REST server (real-shaped answers, at the HTTP boundary)."""
from __future__ import annotations

import json
from typing import Any

import pytest
import responses
from marshmallow import ValidationError
from responses import matchers

from connectors.base import SourceError
from connectors.registry import get_connector_class
from connectors.vendors.seeyon import SeeyonConnector, SeeyonSourceSchema
from mappings import MappingContext, load_mapping

BASE = "http://oa.example.com/seeyon/rest"
ACCOUNT = "670869647114347"
DEPTS = f"{BASE}/orgDepartments/all/{ACCOUNT}"
MEMBERS = f"{BASE}/orgMembers/all/{ACCOUNT}"

# As A8 answers orgDepartments/all: top-level departments' superior is the account id; one
# version sends no superior, only the path (4 digits per level).
DEPARTMENTS = [
    {"id": "-4967440401452692263", "name": "综合办公室", "code": "ZH", "orgAccountId": ACCOUNT,
     "superior": ACCOUNT, "path": "000000010001", "enabled": True, "isDeleted": False,
     "sortId": 1},
    {"id": "2210960413870835651", "name": "生产技术部", "code": "SC", "orgAccountId": ACCOUNT,
     "superior": ACCOUNT, "path": "000000010002", "enabled": True, "isDeleted": False,
     "sortId": 2},
    {"id": "8312297720123375467", "name": "一车间", "code": "SC01", "orgAccountId": ACCOUNT,
     "path": "0000000100020001", "enabled": "true", "sortId": 3},
    {"id": "5566778899001122334", "name": "原质检科", "code": "ZJ", "orgAccountId": ACCOUNT,
     "superior": "2210960413870835651", "path": "0000000100020002", "enabled": False,
     "isDeleted": False, "sortId": 4},
]
MEMBERS_BODY = [
    {"id": "-7036011113826547034", "name": "张伟", "loginName": "zhangwei", "code": "10023",
     "orgAccountId": ACCOUNT, "orgDepartmentId": "8312297720123375467",
     "orgPostId": "-1519893478627769120", "orgLevelId": "-2416148429491058944", "sortId": 1,
     "enabled": True, "isDeleted": False, "state": 1, "gender": 1, "telNumber": "13812345678",
     "emailAddress": "zw@example.com", "birthday": "1990-01-01"},
    {"id": "1234567890123456789", "name": "李娜", "loginName": "lina", "code": "10024",
     "orgAccountId": ACCOUNT, "orgDepartmentId": "-4967440401452692263", "sortId": 2,
     "enabled": False, "gender": 2},
    {"id": "9876543210987654321", "name": "王强", "loginName": "wangq", "code": "10025",
     "orgAccountId": ACCOUNT, "orgDepartmentId": "2210960413870835651", "sortId": 3,
     "enabled": True, "state": 2, "gender": -1},
]
ACCOUNT_BODY = {"id": ACCOUNT, "name": "某某能源集团有限公司", "code": "NY", "superior": "-1",
                "enabled": True}


def make(**block: Any) -> SeeyonConnector:
    config = {"connector": "seeyon", "base_url": BASE, "user_name": "rest", "password": "s3cret",
              "account_id": int(ACCOUNT), "provides": ["org_units", "staff"],
              "retries": {"max_attempts": 1}, **block}
    return SeeyonConnector("oa", SeeyonSourceSchema().load(config))


def token(body: dict[str, Any] | None = None, status: int = 200, value: str = "tok-1") -> Any:
    return responses.add(
        "POST", f"{BASE}/token", status=status,
        json=body if body is not None else {"id": value, "bindingUser": {"name": "rest"}},
        match=[matchers.json_params_matcher({"userName": "rest", "password": "s3cret"})])


def get(url: str, body: Any, *, tok: str = "tok-1", status: int = 200, **kwargs: Any) -> Any:
    return responses.add("GET", url, status=status, json=body,
                         match=[matchers.header_matcher({"token": tok})], **kwargs)


def records(connector: SeeyonConnector, kind: str) -> list[dict[str, Any]]:
    return [r for page in connector.read(kind) for r in page.records]


def test_config() -> None:
    assert get_connector_class("seeyon") is SeeyonConnector
    assert SeeyonConnector.default_mapping == "seeyon"
    assert "password" in SeeyonConnector.secret_fields
    assert make().config["account_id"] == ACCOUNT  # YAML's int id kept as text
    with pytest.raises(ValidationError) as err:
        make(provides=["performance"])
    assert "provides" in err.value.messages
    with pytest.raises(ValidationError) as err:
        SeeyonSourceSchema().load({"connector": "seeyon", "base_url": BASE, "provides": ["staff"]})
    assert {"user_name", "password", "account_id"} <= set(err.value.messages)


@responses.activate
def test_org_units_with_account_root_and_parents() -> None:
    token()
    get(DEPTS, DEPARTMENTS)
    get(f"{BASE}/orgAccount/{ACCOUNT}", ACCOUNT_BODY)
    mapping, ctx = load_mapping("seeyon"), MappingContext()
    units = {r.data["code"]: r.data for r in
             (mapping.map("org_units", raw, ctx) for raw in records(make(), "org_units"))}
    assert units[ACCOUNT] == {"code": ACCOUNT, "name": "某某能源集团有限公司", "parent_code": None,
                              "kind": "company", "status": "active"}
    assert units["-4967440401452692263"]["parent_code"] == ACCOUNT
    # No superior: the parent comes from the path.
    assert units["8312297720123375467"]["parent_code"] == "2210960413870835651"
    assert units["5566778899001122334"]["status"] == "dissolved"
    assert units["2210960413870835651"] == {"code": "2210960413870835651", "name": "生产技术部",
                                            "parent_code": ACCOUNT, "kind": "department",
                                            "status": "active"}
    # One token for the whole read.
    assert sum(c.request.url.endswith("/token") for c in responses.calls) == 1


@responses.activate
def test_account_name_from_config_skips_the_account_call() -> None:
    token()
    get(DEPTS, [])
    [root] = records(make(account_name="能源集团"), "org_units")
    assert root["name"] == "能源集团" and root["dl_kind"] == "company"
    assert not any("orgAccount" in c.request.url for c in responses.calls)


@responses.activate
def test_staff_mapping() -> None:
    token()
    get(MEMBERS, MEMBERS_BODY)
    mapping, ctx = load_mapping("seeyon"), MappingContext()
    staff = {r.data["employee_no"]: r.data for r in
             (mapping.map("staff", raw, ctx) for raw in records(make(), "staff"))}
    assert staff["10023"] == {"employee_no": "10023", "name": "张伟", "gender": "1",
                              "birth_date": "1990-01-01", "mobile": "13812345678",
                              "org_unit_code": "8312297720123375467",
                              "employment_status": "active"}
    assert staff["10024"]["employment_status"] == "left"  # enabled false
    assert staff["10025"]["employment_status"] == "left"  # state 2 离职
    assert staff["10025"]["gender"] == "0" and staff["10024"]["gender"] == "2"


@responses.activate
def test_whole_array_is_yielded_in_chunks() -> None:
    token()
    get(MEMBERS, MEMBERS_BODY)
    pages = list(make(chunk_size=2).read("staff"))
    assert [len(p.records) for p in pages] == [2, 1]
    assert [p.info["page"] for p in pages] == [1, 2]


@responses.activate
def test_invalid_token_is_renewed_once() -> None:
    token(value="old")
    token(value="new")
    get(MEMBERS, {"code": "1010", "message": "token invalid"}, tok="old", status=401)
    get(MEMBERS, MEMBERS_BODY, tok="new")
    assert len(records(make(), "staff")) == 3
    assert sum(c.request.url.endswith("/token") for c in responses.calls) == 2


@responses.activate
def test_invalid_token_twice_is_an_auth_error() -> None:
    token()
    get(MEMBERS, {"code": "1010"}, status=401)
    with pytest.raises(SourceError) as err:
        records(make(), "staff")
    assert (err.value.error_class, err.value.source, err.value.kind) == ("auth", "oa", "staff")


@responses.activate
def test_invalid_token_code_with_status_200_is_renewed_then_refused() -> None:
    token()
    get(MEMBERS, {"code": "1010", "message": "token 无效"})
    with pytest.raises(SourceError) as err:
        records(make(), "staff")
    assert err.value.error_class == "auth" and "1010" in err.value.message
    assert sum(c.request.url.endswith("/token") for c in responses.calls) == 2


@responses.activate
def test_refused_login_is_an_auth_error_without_the_password() -> None:
    token(body={"code": "1001", "message": "用户名或密码错误"}, status=401)
    with pytest.raises(SourceError) as err:
        records(make(), "staff")
    assert err.value.error_class == "auth"
    assert "s3cret" not in str(err.value) and "s3cret" not in json.dumps(err.value.detail)


@responses.activate
def test_waf_page_is_a_protocol_error() -> None:
    token()
    responses.add("GET", MEMBERS, status=200, content_type="text/html; charset=utf-8",
                  body="<html><head><title>访问被拦截</title></head><body>您的访问请求可能对网站造成"
                       "安全威胁，已被 Web 应用防火墙拦截</body></html>")
    with pytest.raises(SourceError) as err:
        records(make(), "staff")
    assert err.value.error_class == "protocol" and "HTML" in err.value.message


@responses.activate
def test_an_object_instead_of_the_array_is_a_protocol_error() -> None:
    token()
    get(MEMBERS, {"success": False, "message": "单位不存在"})
    with pytest.raises(SourceError) as err:
        records(make(), "staff")
    assert err.value.error_class == "protocol"
