"""The `wecom` preset against a fake WeCom (qyapi.weixin.qq.com) at the HTTP boundary.

WeCom answers `{errcode, errmsg, …}` with HTTP 200 for errors too, takes the access token in the
query string, returns the whole department tree in one call and each department's users in one.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import responses
from marshmallow import ValidationError

from connectors.base import SourceError
from connectors.registry import get_connector_class
from connectors.vendors.wecom import WeComConnector, WeComSourceSchema
from mappings import MappingContext, load_mapping
from tests.connectors.test_dingtalk import Sleeps, VendorFake, build, read_all

BASE = "http://wecom.fake"


class FakeWeCom(VendorFake):
    """WeCom's contacts API: `departments` as department/list returns them, `users`:
    department id → userlist."""

    def __init__(self, departments: list[dict[str, Any]], users: dict[int, list[dict[str, Any]]]) -> None:
        super().__init__(BASE)
        self.departments = departments
        self.users = users

    def install(self, rsps: responses.RequestsMock) -> FakeWeCom:
        self.route(rsps, "GET", "/cgi-bin/gettoken", self._gettoken, authenticated=False)
        self.route(rsps, "GET", "/cgi-bin/department/list",
                   lambda _: {"errcode": 0, "errmsg": "ok", "department": self.departments})
        self.route(rsps, "GET", "/cgi-bin/user/list", lambda q: {
            "errcode": 0, "errmsg": "ok", "userlist": self.users.get(int(q["department_id"]), [])})
        return self

    def _gettoken(self, query: dict[str, Any]) -> dict[str, Any]:
        if (query.get("corpid"), query.get("corpsecret")) != ("ww01", "sync-secret"):
            return {"errcode": 40001, "errmsg": "invalid credential"}
        return {"errcode": 0, "errmsg": "ok", "access_token": self.issue_token(), "expires_in": 7200}


def department(id_: int, name: str, parent: int, leaders: list[str] | None = None) -> dict[str, Any]:
    return {"id": id_, "name": name, "name_en": "", "department_leader": leaders or [],
            "parentid": parent, "order": 100000000 - id_}


def member(userid: str, name: str, departments: list[int], main: int, **extra: Any) -> dict[str, Any]:
    """A user as /cgi-bin/user/list lists one (an app created after 2022-06-20: no mobile, email
    unless the employee consented)."""
    return {"userid": userid, "name": name, "department": departments, "order": [0] * len(departments),
            "position": "科员", "mobile": "", "gender": "1", "email": "", "is_leader_in_dept": [0],
            "avatar": "", "telephone": "", "enable": 1, "alias": "", "status": 1,
            "main_department": main, **extra}


DEPARTMENTS = [department(1, "示范集团", 0), department(2, "财务部", 1, ["zhangsan"]),
               department(3, "党群工作部", 1), department(4, "核算科", 2)]


def make_users() -> dict[int, list[dict[str, Any]]]:
    both = member("lisi", "李四", [2, 3], main=3, mobile="13912345678")
    return {1: [member("boss", "赵总", [1], main=1)],
            2: [member("zhangsan", "张三", [2], main=2), both],
            3: [both, member("wangwu", "王五", [3], main=3, status=5, gender="2")],
            4: [member("zhaoliu", "赵六", [4], main=4, status=4)]}


@pytest.fixture
def fake() -> Iterator[FakeWeCom]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeWeCom(DEPARTMENTS, make_users()).install(rsps)


def make_connector(**block: Any) -> tuple[WeComConnector, Sleeps]:
    return build(WeComConnector, {"connector": "wecom", "corp_id": "ww01", "secret": "sync-secret",
                                 "base_url": BASE, "provides": ["org_units", "staff"], **block})


def test_config_defaults_registry_and_secrets() -> None:
    loaded = WeComSourceSchema().load({"connector": "wecom", "corp_id": "c", "secret": "s",
                                       "provides": ["staff"]})
    assert loaded["base_url"] == "https://qyapi.weixin.qq.com"
    assert get_connector_class("wecom") is WeComConnector
    assert WeComConnector.default_mapping == "wecom" and "secret" in WeComConnector.secret_fields
    with pytest.raises(ValidationError) as error:
        WeComSourceSchema().load({"connector": "wecom", "provides": ["staff"], "app_key": "k"})
    assert set(error.value.messages) == {"corp_id", "secret", "app_key"}


def test_department_tree_in_one_call_mapped_to_org_units(fake: FakeWeCom) -> None:
    connector, _ = make_connector()
    records = read_all(connector, "org_units")
    assert fake.count("/cgi-bin/department/list") == 1
    mapping = load_mapping("wecom")
    mapped = {r["id"]: mapping.map("org_units", r, MappingContext()).data for r in records}
    assert mapped[1] == {"code": "1", "name": "示范集团", "parent_code": None, "kind": "company"}
    assert mapped[4] == {"code": "4", "name": "核算科", "parent_code": "2", "kind": "department"}
    assert mapped[2]["manager_employee_no"] == "zhangsan"


def test_users_per_department_deduplicated_and_mapped(fake: FakeWeCom) -> None:
    connector, _ = make_connector()
    read_all(connector, "org_units")
    staff = read_all(connector, "staff")
    assert [q["department_id"] for q in fake.params_of("/cgi-bin/user/list")] == ["1", "2", "3", "4"]
    assert fake.count("/cgi-bin/department/list") == 1  # the staff read reused the tree
    assert sorted(u["userid"] for u in staff) == ["boss", "lisi", "wangwu", "zhangsan", "zhaoliu"]
    mapping = load_mapping("wecom")
    by_id = {u["userid"]: mapping.map("staff", u, MappingContext()).data for u in staff}
    # Empty mobile (no consent) is normal: left empty, not a quarantine reason.
    assert by_id["zhangsan"] == {"employee_no": "zhangsan", "name": "张三", "gender": "1", "mobile": None,
                                 "org_unit_code": "2", "position": "科员", "employment_status": "active"}
    assert by_id["lisi"]["org_unit_code"] == "3" and by_id["lisi"]["mobile"] == "13912345678"
    assert by_id["wangwu"]["employment_status"] == "left" and by_id["wangwu"]["gender"] == "2"
    assert by_id["zhaoliu"]["employment_status"] == "active"  # 4: not activated yet, still employed


def test_staff_alone_reads_the_tree_itself(fake: FakeWeCom) -> None:
    connector, _ = make_connector(provides=["staff"])
    assert len(read_all(connector, "staff")) == 5
    assert fake.count("/cgi-bin/gettoken") == 1


def test_token_goes_in_the_query_and_is_refreshed_on_42001(fake: FakeWeCom) -> None:
    connector, _ = make_connector()
    read_all(connector, "org_units")
    fake.fail("/cgi-bin/user/list", {"errcode": 42001, "errmsg": "access_token expired"})
    fake.expire_tokens()
    assert len(read_all(connector, "staff")) == 5
    assert [q["corpsecret"] for q in fake.params_of("/cgi-bin/gettoken")] == ["sync-secret"] * 2
    assert [q["access_token"] for q in fake.params_of("/cgi-bin/user/list")][:2] == ["token-1", "token-2"]


def test_rate_limit_45009_backs_off(fake: FakeWeCom) -> None:
    connector, sleeps = make_connector()
    fake.fail("/cgi-bin/department/list", {"errcode": 45009, "errmsg": "api freq out of limit"}, times=3)
    assert len(read_all(connector, "org_units")) == 4
    assert sleeps == [1.0, 2.0, 4.0]


def test_no_privilege_says_use_the_contacts_sync_secret(fake: FakeWeCom) -> None:
    connector, _ = make_connector()
    fake.fail("/cgi-bin/user/list", {"errcode": 60011, "errmsg": "no privilege to access/modify contact"})
    with pytest.raises(SourceError) as error:
        read_all(connector, "staff")
    assert error.value.error_class == "auth" and "contacts-sync secret" in error.value.message
    assert (error.value.source, error.value.kind) == ("src", "staff")


def test_wrong_secret_is_an_auth_error(fake: FakeWeCom) -> None:
    connector, _ = make_connector(secret="app-secret")
    with pytest.raises(SourceError) as error:
        connector.check()
    assert error.value.error_class == "auth" and "errcode 40001" in error.value.message
    assert "app-secret" not in str(error.value)
