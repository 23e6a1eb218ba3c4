"""The `dingtalk` preset against a fake DingTalk at the HTTP boundary (`responses`).

`FakeDingTalk` answers like oapi.dingtalk.com: `{errcode, errmsg, …}` bodies with HTTP 200 for
errors too, access tokens in the query string, one level of departments per listsub call,
cursor-paged user lists. Tests queue vendor errors in front of any endpoint with `fail`.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from marshmallow import ValidationError

from connectors.base import SourceError
from connectors.registry import get_connector_class
from connectors.vendors._common import VendorConnector
from connectors.vendors.dingtalk import DingTalkConnector, DingTalkSourceSchema
from mappings import MappingContext, load_mapping

BASE = "http://dingtalk.fake"
Answer = tuple[int, dict[str, str], str]


def _json(body: dict[str, Any]) -> Answer:
    return 200, {"Content-Type": "application/json"}, json.dumps(body, ensure_ascii=False)


class VendorFake:
    """What the fakes of DingTalk, WeCom and Feishu share: issued tokens, a log of API calls
    (path, query + JSON body) and failures queued in front of an endpoint. Subclasses say where
    the token travels (`token_of`) and what a bad token gets (`invalid_token`)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.tokens_issued = 0
        self.valid_tokens: set[str] = set()
        self._failures: dict[str, list[Answer]] = {}

    def fail(self, path: str, answer: dict[str, Any] | Answer, times: int = 1) -> None:
        """Serve `answer` (a JSON body, or a raw (status, headers, text)) for the next `times`
        calls of `path` instead of the real answer."""
        raw = answer if isinstance(answer, tuple) else _json(answer)
        self._failures.setdefault(path, []).extend([raw] * times)

    def expire_tokens(self) -> None:
        self.valid_tokens.clear()

    def count(self, path: str) -> int:
        return sum(1 for called, _ in self.calls if called == path)

    def params_of(self, path: str) -> list[dict[str, Any]]:
        return [params for called, params in self.calls if called == path]

    def issue_token(self) -> str:
        self.tokens_issued += 1
        token = f"token-{self.tokens_issued}"
        self.valid_tokens.add(token)
        return token

    def token_of(self, request: Any, params: dict[str, Any]) -> str | None:
        return params.get("access_token")

    def invalid_token(self) -> Answer:
        return _json({"errcode": 40014, "errmsg": "不合法的access_token"})

    def route(self, rsps: responses.RequestsMock, method: str, path: str, handler: Any,
              authenticated: bool = True) -> None:
        def callback(request: Any) -> Answer:
            params: dict[str, Any] = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
            if request.body:
                params.update(json.loads(request.body))
            self.calls.append((path, params))
            if (failure := self._failures.get(path)):
                return failure.pop(0)
            if authenticated and self.token_of(request, params) not in self.valid_tokens:
                return self.invalid_token()
            answer = handler(params)
            return answer if isinstance(answer, tuple) else _json(answer)

        rsps.add_callback(method, self.base + path, callback=callback)


class FakeDingTalk(VendorFake):
    """DingTalk's contacts API for one org. `departments`: dept_id → (name, parent_id);
    `users`: dept_id → user dicts as user/list returns them."""

    def __init__(self, departments: dict[int, tuple[str, int | None]],
                 users: dict[int, list[dict[str, Any]]], base: str = BASE) -> None:
        super().__init__(base)
        self.departments = departments
        self.users = users

    def install(self, rsps: responses.RequestsMock) -> FakeDingTalk:
        self.route(rsps, "GET", "/gettoken", self._gettoken, authenticated=False)
        self.route(rsps, "POST", "/topapi/v2/department/get", self._department_get)
        self.route(rsps, "POST", "/topapi/v2/department/listsub", self._listsub)
        self.route(rsps, "POST", "/topapi/v2/user/list", self._user_list)
        return self

    def _gettoken(self, query: dict[str, Any]) -> dict[str, Any]:
        if (query.get("appkey"), query.get("appsecret")) != ("key1", "s3cret"):
            return {"errcode": 40089, "errmsg": "不合法的corpid或corpsecret"}
        return {"errcode": 0, "errmsg": "ok", "access_token": self.issue_token(), "expires_in": 7200}

    def _department_get(self, body: dict[str, Any]) -> dict[str, Any]:
        name, _ = self.departments[body["dept_id"]]
        return {"errcode": 0, "errmsg": "ok", "result": {
            "dept_id": body["dept_id"], "name": name, "order": 0, "dept_manager_userid_list": []}}

    def _listsub(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"errcode": 0, "errmsg": "ok", "result": [
            {"dept_id": d, "name": name, "parent_id": parent, "create_dept_group": False,
             "auto_add_user": True}
            for d, (name, parent) in self.departments.items() if parent == body["dept_id"]]}

    def _user_list(self, body: dict[str, Any]) -> dict[str, Any]:
        assert body["size"] <= 100, "DingTalk refuses size > 100"
        members = self.users.get(body["dept_id"], [])
        start = body["cursor"]
        more = start + body["size"] < len(members)
        result: dict[str, Any] = {"has_more": more, "list": members[start:start + body["size"]]}
        if more:
            result["next_cursor"] = start + body["size"]
        return {"errcode": 0, "errmsg": "ok", "request_id": "r1", "result": result}


def user(userid: str, name: str, depts: list[int], **extra: Any) -> dict[str, Any]:
    """A user as /topapi/v2/user/list lists one."""
    return {"userid": userid, "unionid": f"union-{userid}", "name": name, "mobile": "13800001111",
            "state_code": "86", "job_number": extra.pop("job_number", userid.upper()),
            "title": "工程师", "email": "", "dept_id_list": depts, "hired_date": 1609430400000,
            "active": True, "admin": False, "boss": False, "leader": False, **extra}


ORG = {1: ("示范集团", None), 2: ("生产部", 1), 3: ("技术部", 1), 4: ("一车间", 2), 5: ("研发组", 3)}


def make_users() -> dict[int, list[dict[str, Any]]]:
    both = user("u-both", "王五", [3, 2])
    return {1: [user("u-boss", "赵总", [1])],
            2: [user("u-a", "张三", [2], job_number=""), both],
            3: [both, user("u-b", "李四", [3], active=False)],
            4: [user(f"u-w{n}", f"工人{n}", [4]) for n in range(250)],
            5: []}


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def fake(rsps: responses.RequestsMock) -> FakeDingTalk:
    return FakeDingTalk(ORG, make_users()).install(rsps)


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def build(cls: type[VendorConnector], config: dict[str, Any]) -> tuple[Any, Sleeps]:
    """A preset from a source block, with its back-off sleep recorded instead of slept."""
    connector = cls("src", cls.config_schema().load(config))
    connector.sleep = sleeps = Sleeps()
    return connector, sleeps


def read_all(connector: VendorConnector, kind: str) -> list[dict[str, Any]]:
    return [record for page in connector.read(kind) for record in page.records]


def make_connector(**block: Any) -> tuple[DingTalkConnector, Sleeps]:
    return build(DingTalkConnector, {"connector": "dingtalk", "app_key": "key1", "app_secret": "s3cret",
                                     "base_url": BASE, "provides": ["org_units", "staff"], **block})


def test_config_defaults_registry_and_secrets() -> None:
    loaded = DingTalkSourceSchema().load({"connector": "dingtalk", "app_key": "k", "app_secret": "s",
                                          "provides": ["org_units", "staff"]})
    assert loaded["base_url"] == "https://oapi.dingtalk.com" and loaded["page_size"] == 100
    assert get_connector_class("dingtalk") is DingTalkConnector
    assert DingTalkConnector.default_mapping == "dingtalk"
    assert "app_secret" in DingTalkConnector.secret_fields
    with pytest.raises(ValidationError) as error:
        DingTalkSourceSchema().load({"connector": "dingtalk", "app_key": "k", "provides": ["staff"],
                                     "page_size": 500})
    assert set(error.value.messages) == {"app_secret", "page_size"}
    with pytest.raises(ValidationError, match="provides org_units and staff only"):
        DingTalkSourceSchema().load({"connector": "dingtalk", "app_key": "k", "app_secret": "s",
                                     "provides": ["staff", "party_orgs"]})


def test_breadth_first_walk_yields_one_page_per_level_call(fake: FakeDingTalk) -> None:
    connector, _ = make_connector()
    pages = list(connector.read("org_units"))
    listsub = [params["dept_id"] for path, params in fake.calls if path.endswith("listsub")]
    assert listsub == [1, 2, 3, 4, 5]  # breadth first: both children of 1 before any grandchild
    assert [[r["dept_id"] for r in page.records] for page in pages] == [[1], [2, 3], [4], [5]]
    mapping = load_mapping("dingtalk")
    mapped = {r["dept_id"]: mapping.map("org_units", r, MappingContext()).data
              for page in pages for r in page.records}
    assert mapped[1] == {"code": "1", "name": "示范集团", "parent_code": None, "kind": "company"}
    assert mapped[4] == {"code": "4", "name": "一车间", "parent_code": "2", "kind": "department"}


def test_pages_stream_as_they_arrive(fake: FakeDingTalk) -> None:
    connector, _ = make_connector()
    pages = connector.read("org_units")
    next(pages)
    # The root page is out before any listsub call was made.
    assert [path for path, _ in fake.calls] == ["/gettoken", "/topapi/v2/department/get"]
    pages.close()


def test_token_is_fetched_once_and_sent_on_every_call(fake: FakeDingTalk) -> None:
    connector, _ = make_connector()
    read_all(connector, "org_units")
    read_all(connector, "staff")
    assert fake.count("/gettoken") == 1
    api_calls = [params for path, params in fake.calls if path != "/gettoken"]
    assert api_calls and all(params["access_token"] == "token-1" for params in api_calls)
    # The staff read reuses the department list of the org_units read: no second walk.
    assert fake.count("/topapi/v2/department/listsub") == 5


@pytest.mark.parametrize("how", ["revoked", "expired"])
def test_invalid_token_is_refreshed_and_the_call_retried_once(fake: FakeDingTalk, how: str) -> None:
    connector, _ = make_connector()
    pages = connector.read("staff")
    first = next(pages)
    if how == "revoked":
        fake.expire_tokens()  # dropped early (another process fetched a new one): 40014
    else:
        fake.fail("/topapi/v2/department/listsub", {"errcode": 42001, "errmsg": "access_token超时"})
    rest = [r for page in pages for r in page.records]
    assert fake.count("/gettoken") == 2
    assert len(first.records) + len(rest) == 254
    retried = [p for path, p in fake.calls if path.endswith("listsub") and p["dept_id"] == 1]
    assert [p["access_token"] for p in retried] == ["token-1", "token-2"]


def test_token_refused_twice_is_an_auth_error(fake: FakeDingTalk) -> None:
    connector, _ = make_connector()
    fake.fail("/topapi/v2/department/get", {"errcode": 40014, "errmsg": "不合法的access_token"}, times=2)
    with pytest.raises(SourceError) as error:
        read_all(connector, "org_units")
    assert error.value.error_class == "auth" and "freshly fetched token" in error.value.message
    assert (error.value.source, error.value.kind) == ("src", "org_units")


def test_token_is_renewed_before_it_expires(fake: FakeDingTalk) -> None:
    connector, _ = make_connector()
    now = [1000.0]
    connector.clock = lambda: now[0]
    connector.check()
    now[0] += 7200 - 30  # inside the last minute of the two hours
    connector.check()
    assert fake.count("/gettoken") == 2


def test_bad_credentials_are_an_auth_error_without_the_secret(fake: FakeDingTalk) -> None:
    connector, _ = make_connector(app_secret="wrong-secret")
    with pytest.raises(SourceError) as error:
        connector.check()
    assert error.value.error_class == "auth" and "40089" in error.value.message
    assert "wrong-secret" not in str(error.value) and "wrong-secret" not in repr(error.value.detail)


def test_cursor_paging_dedupe_and_mapping(fake: FakeDingTalk) -> None:
    connector, _ = make_connector()
    staff = read_all(connector, "staff")
    pages = [params for path, params in fake.calls if path == "/topapi/v2/user/list"
             and params["dept_id"] == 4]
    assert [(p["cursor"], p["size"]) for p in pages] == [(0, 100), (100, 100), (200, 100)]
    ids = [u["userid"] for u in staff]
    assert len(ids) == len(set(ids)) == 1 + 2 + 1 + 250  # u-both listed twice, kept once
    mapping = load_mapping("dingtalk")
    by_id = {u["userid"]: mapping.map("staff", u, MappingContext()).data for u in staff}
    assert by_id["u-both"]["org_unit_code"] == "3"  # first of dept_id_list, not where first seen
    assert by_id["u-a"]["employee_no"] == "u-a"  # empty job_number: the userid
    assert by_id["u-b"] == {"employee_no": "U-B", "name": "李四", "mobile": "13800001111",
                            "org_unit_code": "3", "position": "工程师", "employment_status": "active",
                            "hired_on": "2021-01-01"}


def test_smaller_page_size_is_sent(fake: FakeDingTalk) -> None:
    connector, _ = make_connector(page_size=40)
    assert len(read_all(connector, "staff")) == 254
    assert {p["size"] for path, p in fake.calls if path == "/topapi/v2/user/list"} == {40}


@pytest.mark.parametrize("code", [-1, 90002, 90018])
def test_rate_limits_back_off_and_retry(fake: FakeDingTalk, code: int) -> None:
    connector, sleeps = make_connector()
    fake.fail("/topapi/v2/department/listsub", {"errcode": code, "errmsg": "请求过于频繁"}, times=2)
    assert len(read_all(connector, "org_units")) == 5
    assert sleeps == [1.0, 2.0]


def test_rate_limit_that_does_not_end_fails_the_read(fake: FakeDingTalk) -> None:
    connector, sleeps = make_connector(retries={"max_attempts": 3})
    fake.fail("/topapi/v2/department/listsub", {"errcode": 90018, "errmsg": "请求过于频繁"}, times=9)
    with pytest.raises(SourceError) as error:
        read_all(connector, "org_units")
    assert error.value.retryable and "after 3 attempts" in error.value.message
    assert len(sleeps) == 2


def test_monthly_quota_stops_at_once(fake: FakeDingTalk) -> None:
    connector, sleeps = make_connector()
    fake.fail("/topapi/v2/user/list", {"errcode": 90020, "errmsg": "api调用次数超过限制"})
    with pytest.raises(SourceError) as error:
        read_all(connector, "staff")
    assert error.value.error_class == "quota" and not error.value.retryable
    assert "monthly API call quota" in error.value.message and "free edition" in error.value.message
    assert "resets on 20" in error.value.message
    assert fake.count("/topapi/v2/user/list") == 1 and sleeps == []


def test_ip_block_page_is_a_protocol_error(fake: FakeDingTalk) -> None:
    connector, _ = make_connector()
    fake.fail("/topapi/v2/department/get",
              (200, {"Content-Type": "text/html"}, "<html><body>访问被拒绝</body></html>"))
    with pytest.raises(SourceError) as error:
        read_all(connector, "org_units")
    assert error.value.error_class == "protocol" and "blocks an IP" in error.value.message
    fake.fail("/topapi/v2/department/get", {"status": "denied"})
    with pytest.raises(SourceError) as error:
        read_all(connector, "org_units")
    assert error.value.error_class == "protocol" and "'errcode'" in error.value.message


def test_other_errcode_names_code_and_message(fake: FakeDingTalk) -> None:
    connector, _ = make_connector()
    fake.fail("/topapi/v2/department/listsub", {"errcode": 60003, "errmsg": "部门不存在"})
    with pytest.raises(SourceError) as error:
        read_all(connector, "org_units")
    assert "errcode 60003: 部门不存在" in error.value.message
    assert "access_token" not in error.value.message and "token-1" not in error.value.message


def test_repeated_cursor_is_refused(fake: FakeDingTalk) -> None:
    connector, _ = make_connector()
    stuck = {"errcode": 0, "result": {"has_more": True, "next_cursor": 7, "list": []}}
    fake.fail("/topapi/v2/user/list", stuck, times=2)
    with pytest.raises(SourceError) as error:
        read_all(connector, "staff")
    assert error.value.error_class == "protocol" and "loop forever" in error.value.message
