"""The `feishu` preset against a fake Feishu open platform (contact v3) at the HTTP boundary.

Feishu answers `{code, msg, data: {items, page_token, has_more}}`, sends errors with HTTP 400
(the JSON still says why), takes the tenant token as `Authorization: Bearer`, and pages every
listing with `page_size` / `page_token`.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import responses
from marshmallow import ValidationError

from connectors.base import SourceError
from connectors.registry import get_connector_class
from connectors.vendors.feishu import FeishuConnector, FeishuSourceSchema
from mappings import MappingContext, MappingError, load_mapping
from tests.connectors.test_dingtalk import Answer, Sleeps, VendorFake, build, read_all

BASE = "http://feishu.fake"
CHILDREN = "/open-apis/contact/v3/departments/0/children"
USERS = "/open-apis/contact/v3/users/find_by_department"
TOKEN = "/open-apis/auth/v3/tenant_access_token/internal"


def _error(status: int, code: int, msg: str) -> Answer:
    return status, {"Content-Type": "application/json"}, json.dumps({"code": code, "msg": msg})


class FakeFeishu(VendorFake):
    """Feishu contacts: `departments` as the children listing returns them (whole tree with
    fetch_child), `users`: open_department_id → users directly in it."""

    def __init__(self, departments: list[dict[str, Any]], users: dict[str, list[dict[str, Any]]]) -> None:
        super().__init__(BASE)
        self.departments = departments
        self.users = users

    def token_of(self, request: Any, params: dict[str, Any]) -> str | None:
        return request.headers.get("Authorization", "").removeprefix("Bearer ")

    def invalid_token(self) -> Answer:
        return _error(400, 99991663, "Invalid access token for authorization. Please make a request "
                                     "with token attached.")

    def install(self, rsps: responses.RequestsMock) -> FakeFeishu:
        self.route(rsps, "POST", TOKEN, self._token, authenticated=False)
        self.route(rsps, "GET", CHILDREN, lambda q: self._page(self.departments, q))
        self.route(rsps, "GET", USERS, lambda q: self._page(self.users.get(q["department_id"], []), q))
        return self

    def _token(self, body: dict[str, Any]) -> dict[str, Any] | Answer:
        if (body.get("app_id"), body.get("app_secret")) != ("cli_1", "fs-secret"):
            return _error(400, 10014, "app secret invalid")
        return {"code": 0, "msg": "ok", "tenant_access_token": self.issue_token(), "expire": 7200}

    @staticmethod
    def _page(items: list[dict[str, Any]], query: dict[str, Any]) -> dict[str, Any]:
        assert query["department_id_type"] == "open_department_id"
        size = int(query["page_size"])
        assert size <= 50, "Feishu refuses page_size > 50"
        start = int(query.get("page_token") or 0)
        more = start + size < len(items)
        data: dict[str, Any] = {"has_more": more, "items": items[start:start + size]}
        if more:
            data["page_token"] = str(start + size)
        return {"code": 0, "msg": "success", "data": data}


def dept(open_id: str, name: str, parent: str) -> dict[str, Any]:
    return {"name": name, "i18n_name": {"zh_cn": name}, "parent_department_id": parent,
            "department_id": f"D{open_id[3:]}", "open_department_id": open_id, "leader_user_id": "",
            "chat_id": "", "order": "0", "status": {"is_deleted": False}, "member_count": 1}


def person(open_id: str, name: str, departments: list[str], **extra: Any) -> dict[str, Any]:
    """A user as find_by_department returns one with user_id_type=user_id."""
    return {"union_id": f"on_{open_id}", "user_id": f"uid-{open_id}", "open_id": open_id, "name": name,
            "en_name": "", "email": "", "mobile": "+8613700001111", "mobile_visible": True, "gender": 1,
            "status": {"is_frozen": False, "is_resigned": False, "is_activated": True,
                       "is_exited": False, "is_unjoin": False},
            "department_ids": departments, "job_title": "经理", "join_time": 1609430400,
            "employee_type": 1, **extra}


DEPARTMENTS = [dept("od-sales", "销售部", "0"), dept("od-north", "华北区", "od-sales"),
               dept("od-party", "党委办公室", "0")]


def make_users() -> dict[str, list[dict[str, Any]]]:
    both = person("ou_both", "钱七", ["od-party", "od-sales"], employee_no="E0007")
    return {"0": [person("ou_ceo", "孙总", ["0"], employee_no="E0001")],
            "od-sales": [both] + [person(f"ou_s{n}", f"销售{n}", ["od-sales"]) for n in range(120)],
            "od-party": [both],
            "od-north": [person("ou_left", "周八", ["od-north"], gender=2, join_time=0,
                                status={"is_resigned": True})]}


@pytest.fixture
def fake() -> Iterator[FakeFeishu]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeFeishu(DEPARTMENTS, make_users()).install(rsps)


def make_connector(**block: Any) -> tuple[FeishuConnector, Sleeps]:
    return build(FeishuConnector, {"connector": "feishu", "app_id": "cli_1", "app_secret": "fs-secret",
                                   "base_url": BASE, "provides": ["org_units", "staff"],
                                   "root_name": "示范集团", **block})


def test_config_defaults_registry_and_secrets() -> None:
    loaded = FeishuSourceSchema().load({"connector": "feishu", "app_id": "a", "app_secret": "s",
                                        "provides": ["org_units"]})
    assert loaded["base_url"] == "https://open.feishu.cn" and loaded["page_size"] == 50
    assert get_connector_class("feishu") is FeishuConnector
    assert FeishuConnector.default_mapping == "feishu" and "app_secret" in FeishuConnector.secret_fields
    with pytest.raises(ValidationError) as error:
        FeishuSourceSchema().load({"connector": "feishu", "app_id": "a", "provides": ["org_units"],
                                   "page_size": 51})
    assert set(error.value.messages) == {"app_secret", "page_size"}


def test_token_is_posted_once_and_sent_as_bearer(fake: FakeFeishu) -> None:
    connector, _ = make_connector()
    read_all(connector, "org_units")
    read_all(connector, "staff")
    assert fake.params_of(TOKEN) == [{"app_id": "cli_1", "app_secret": "fs-secret"}]
    assert fake.count(USERS) > 4


def test_department_tree_paged_with_page_token(fake: FakeFeishu) -> None:
    connector, _ = make_connector(page_size=2)
    pages = list(connector.read("org_units"))
    queries = fake.params_of(CHILDREN)
    assert [(q["fetch_child"], q.get("page_token")) for q in queries] == [("true", None), ("true", "2")]
    assert [len(page.records) for page in pages] == [1, 2, 1]  # the root, then two pages
    mapping = load_mapping("feishu")
    mapped = [mapping.map("org_units", r, MappingContext()).data for p in pages for r in p.records]
    assert mapped[0] == {"code": "0", "name": "示范集团", "parent_code": None, "kind": "company"}
    assert mapped[2] == {"code": "od-north", "name": "华北区", "parent_code": "od-sales",
                         "kind": "department", "status": "active"}


def test_users_paged_deduplicated_and_mapped(fake: FakeFeishu) -> None:
    connector, _ = make_connector()
    staff = read_all(connector, "staff")
    sales = [q for q in fake.params_of(USERS) if q["department_id"] == "od-sales"]
    assert [q.get("page_token") for q in sales] == [None, "50", "100"]
    assert all(q["user_id_type"] == "user_id" for q in sales)
    open_ids = [u["open_id"] for u in staff]
    assert len(open_ids) == len(set(open_ids)) == 1 + 1 + 120 + 1
    mapping = load_mapping("feishu")
    by_id = {u["open_id"]: mapping.map("staff", u, MappingContext()).data for u in staff}
    assert by_id["ou_both"] == {"employee_no": "E0007", "name": "钱七", "gender": "1",
                                "mobile": "13700001111", "org_unit_code": "od-party", "position": "经理",
                                "employment_status": "active", "hired_on": "2021-01-01"}
    assert by_id["ou_s3"]["employee_no"] == "uid-ou_s3"  # no employee_no scope: the user_id
    left = by_id["ou_left"]
    assert (left["employment_status"], left["gender"], left["hired_on"]) == ("left", "2", None)


def test_user_without_any_id_scope_is_quarantined_not_keyed_by_open_id() -> None:
    raw = person("ou_x", "吴九", ["0"])
    del raw["user_id"]
    with pytest.raises(MappingError, match="required"):
        load_mapping("feishu").map("staff", raw, MappingContext())


def test_invalid_token_with_http_400_is_refreshed_once(fake: FakeFeishu) -> None:
    connector, _ = make_connector()
    connector.check()
    fake.expire_tokens()
    assert len(read_all(connector, "org_units")) == 4
    assert fake.count(TOKEN) == 2
    fake.fail(CHILDREN, _error(400, 99991663, "Invalid access token"), times=2)
    with pytest.raises(SourceError) as error:
        read_all(connector, "org_units")
    assert error.value.error_class == "auth" and "code 99991663" in error.value.message


def test_rate_limits_back_off_by_code_and_by_http_429(fake: FakeFeishu) -> None:
    connector, sleeps = make_connector()
    fake.fail(CHILDREN, _error(400, 99991400, "request trigger frequency limit"))
    fake.fail(USERS, (429, {"Retry-After": "3"}, ""))
    read_all(connector, "org_units")
    assert len(read_all(connector, "staff")) == 123
    assert sleeps == [1.0, 3.0]


def test_other_codes_are_errors_with_feishu_message(fake: FakeFeishu) -> None:
    connector, _ = make_connector()
    fake.fail(USERS, _error(400, 99991672, "Access denied. One of the following scopes is required"))
    with pytest.raises(SourceError) as error:
        read_all(connector, "staff")
    assert error.value.error_class == "auth" and "contacts scopes" in error.value.message
    fake.fail(CHILDREN, {"code": 1, "msg": "system error"})
    with pytest.raises(SourceError) as error:
        read_all(connector, "org_units")
    assert "code 1: system error" in error.value.message and error.value.kind == "org_units"


def test_wrong_secret_is_an_auth_error(fake: FakeFeishu) -> None:
    connector, _ = make_connector(app_secret="nope")
    with pytest.raises(SourceError) as error:
        connector.check()
    assert error.value.error_class == "auth" and "app secret invalid" in error.value.message


def test_has_more_without_page_token_is_refused(fake: FakeFeishu) -> None:
    connector, _ = make_connector()
    fake.fail(CHILDREN, {"code": 0, "msg": "success", "data": {"has_more": True, "items": []}})
    with pytest.raises(SourceError) as error:
        read_all(connector, "org_units")
    assert error.value.error_class == "protocol" and "more pages follow" in error.value.message
