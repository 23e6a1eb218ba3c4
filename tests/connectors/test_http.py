"""The shared HTTP session: retries, auth, error classification and JSON parsing."""
from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest
import requests
import responses
from marshmallow import ValidationError

from connectors.base import SourceError
from connectors.http import (
    MISSING,
    AuthSchema,
    HttpOptionsSchema,
    HttpSession,
    HttpSettings,
    body_snippet,
    build_session,
    get_path,
)

API = "http://oa.example.com/api/staff"
TOKEN_URL = "http://oa.example.com/oauth/token"


def make_session(auth: dict | None = None, **settings) -> tuple[HttpSession, list[float]]:
    sleeps: list[float] = []
    loaded = AuthSchema().load(auth) if auth else None
    session = HttpSession(HttpSettings(**settings), loaded, source="hr", sleep=sleeps.append,
                          rng=lambda: 1.0)
    return session, sleeps


# --------------------------------------------------------------------------- retries


@responses.activate
def test_retries_503_with_exponential_backoff_then_succeeds():
    responses.get(API, status=503, body="Service Unavailable")
    responses.get(API, status=503, body="Service Unavailable")
    responses.get(API, json={"data": [{"workcode": "E1"}]})
    session, sleeps = make_session(backoff=0.5)

    assert session.get_json(API) == {"data": [{"workcode": "E1"}]}
    assert len(responses.calls) == 3
    # rng pinned to 1.0: full delay, doubling each attempt.
    assert sleeps == [0.5, 1.0]


@responses.activate
def test_gives_up_after_max_attempts_with_retryable_http_error():
    responses.get(API, status=502, body="<html><body><h1>502 Bad Gateway</h1></body></html>")
    session, sleeps = make_session(max_attempts=3)

    with pytest.raises(SourceError) as caught:
        session.get(API)
    err = caught.value
    assert (err.error_class, err.retryable, err.source) == ("http", True, "hr")
    assert "HTTP 502" in err.message and "after 3 attempts" in err.message
    assert err.detail["body"] == "502 Bad Gateway"
    assert len(responses.calls) == 3 and len(sleeps) == 2


@responses.activate
def test_429_waits_as_long_as_retry_after_says():
    responses.get(API, status=429, headers={"Retry-After": "7"}, json={"errcode": 90018})
    responses.get(API, json=[])
    session, sleeps = make_session()

    assert session.get_json(API) == []
    assert sleeps == [7.0]


@responses.activate
def test_retry_after_beyond_the_limit_fails_at_once():
    responses.get(API, status=429, headers={"Retry-After": "3600"})
    session, sleeps = make_session(retry_after_max=60)

    with pytest.raises(SourceError) as caught:
        session.get(API)
    assert caught.value.retryable and "wait 3600s" in caught.value.message
    assert sleeps == [] and len(responses.calls) == 1


@responses.activate
def test_connection_error_is_transport_and_retried():
    responses.get(API, body=requests.exceptions.ConnectionError("Connection refused"))
    session, sleeps = make_session(max_attempts=2)

    with pytest.raises(SourceError) as caught:
        session.get(API)
    err = caught.value
    assert (err.error_class, err.retryable) == ("transport", True)
    assert "cannot connect to oa.example.com" in err.message
    assert len(responses.calls) == 2 and len(sleeps) == 1


@responses.activate
def test_timeout_then_success_and_default_timeout_is_sent():
    responses.get(API, body=requests.exceptions.ReadTimeout("read timed out"))
    responses.get(API, json={"ok": True})
    session, sleeps = make_session(connect_timeout=3, read_timeout=9)

    assert session.get_json(API) == {"ok": True}
    assert len(sleeps) == 1
    assert responses.calls[1].request.req_kwargs["timeout"] == (3, 9)


@responses.activate
def test_404_is_not_retried_and_says_what_to_check():
    responses.get(API, status=404, body="Not Found")
    session, sleeps = make_session()

    with pytest.raises(SourceError) as caught:
        session.get(API)
    assert (caught.value.error_class, caught.value.retryable) == ("http", False)
    assert "check url and path" in caught.value.message
    assert len(responses.calls) == 1 and sleeps == []


@responses.activate
def test_raise_for_status_false_returns_4xx_for_vendor_error_bodies():
    responses.get(API, status=400, json={"code": "1010", "message": "bad param"})
    session, _ = make_session()

    response = session.get(API, raise_for_status=False)
    assert response.status_code == 400 and response.json()["code"] == "1010"


@responses.activate
def test_query_string_secrets_never_reach_the_message():
    responses.get(API, status=500)
    session, _ = make_session(max_attempts=1)

    with pytest.raises(SourceError) as caught:
        session.get(API, params={"access_token": "s3cr3t-token"})
    assert "s3cr3t-token" not in str(caught.value)
    assert "s3cr3t-token" not in json.dumps(caught.value.detail)


# --------------------------------------------------------------------------- auth


@responses.activate
def test_bearer_and_basic_headers():
    responses.get(API, json=[])
    bearer, _ = make_session({"type": "bearer", "token": "abc"})
    bearer.get(API)
    basic, _ = make_session({"type": "basic", "username": "张三", "password": "pw"})
    basic.get(API)

    assert responses.calls[0].request.headers["Authorization"] == "Bearer abc"
    # base64("张三:pw") in UTF-8
    assert responses.calls[1].request.headers["Authorization"] == "Basic 5byg5LiJOnB3"


@responses.activate
def test_bearer_401_is_an_auth_error_without_retry():
    responses.get(API, status=401, json={"code": "1010", "message": "token invalid"})
    session, sleeps = make_session({"type": "bearer", "token": "stale"})

    with pytest.raises(SourceError) as caught:
        session.get(API)
    assert (caught.value.error_class, caught.value.retryable) == ("auth", False)
    assert "stale" not in str(caught.value)
    assert len(responses.calls) == 1


TOKEN_AUTH = {"type": "token_endpoint", "url": TOKEN_URL, "client_id": "dualline",
              "client_secret": "very-secret"}


@responses.activate
def test_token_endpoint_client_credentials_cached_until_expiry():
    token_calls = []

    def issue(request):
        token_calls.append(parse_qs(request.body))
        return 200, {}, json.dumps({"access_token": f"t{len(token_calls)}", "expires_in": 7200,
                                    "token_type": "Bearer"})

    responses.add_callback("POST", TOKEN_URL, callback=issue)
    responses.get(API, json=[])
    session, _ = make_session(TOKEN_AUTH)
    now = [1000.0]
    session.authenticator.clock = lambda: now[0]

    session.get(API)
    session.get(API)
    assert len(token_calls) == 1
    assert token_calls[0] == {"grant_type": ["client_credentials"], "client_id": ["dualline"],
                              "client_secret": ["very-secret"]}
    assert [c.request.headers.get("Authorization") for c in responses.calls
            if c.request.url.startswith(API)] == ["Bearer t1", "Bearer t1"]

    now[0] += 7200 - 30  # within the renewal margin (60 s before expiry)
    session.get(API)
    assert len(token_calls) == 2
    assert responses.calls[-1].request.headers["Authorization"] == "Bearer t2"


@responses.activate
def test_token_endpoint_refreshes_once_on_401():
    tokens = iter(["old", "new"])
    responses.add_callback("POST", TOKEN_URL, callback=lambda r: (
        200, {}, json.dumps({"access_token": next(tokens), "expires_in": 7200})))
    responses.get(API, status=401, json={"code": 401, "msg": "token expired"})
    responses.get(API, json={"data": []})
    session, sleeps = make_session(TOKEN_AUTH)

    assert session.get_json(API) == {"data": []}
    api_calls = [c.request.headers["Authorization"] for c in responses.calls if c.request.url == API]
    assert api_calls == ["Bearer old", "Bearer new"]
    assert sleeps == []


@responses.activate
def test_token_endpoint_second_401_is_auth_error():
    responses.post(TOKEN_URL, json={"access_token": "t", "expires_in": 7200})
    responses.get(API, status=401)
    session, _ = make_session(TOKEN_AUTH)

    with pytest.raises(SourceError) as caught:
        session.get(API)
    assert caught.value.error_class == "auth"
    assert len([c for c in responses.calls if c.request.url == API]) == 2


@responses.activate
def test_token_endpoint_refusal_is_auth_error_without_secrets():
    responses.post(TOKEN_URL, status=401, json={"error": "invalid_client"})
    session, _ = make_session(TOKEN_AUTH)

    with pytest.raises(SourceError) as caught:
        session.get(API)
    err = caught.value
    assert err.error_class == "auth" and "refused the credentials (HTTP 401)" in err.message
    assert "very-secret" not in str(err) and "very-secret" not in json.dumps(err.detail)


@responses.activate
def test_vendor_token_login_with_json_body_custom_header_and_errmsg():
    # DingTalk answers bad credentials with 200 and an errcode; the token path is then absent.
    seeyon = {"type": "token_endpoint", "url": "http://oa.example.com/seeyon/rest/token",
              "body": {"userName": "rest", "password": "pw"}, "body_format": "json",
              "token_path": "id", "header": "token"}
    responses.post("http://oa.example.com/seeyon/rest/token", json={"id": "tok-42"})
    responses.get(API, json=[])
    session, _ = make_session(seeyon)
    session.get(API)
    assert json.loads(responses.calls[0].request.body) == {"userName": "rest", "password": "pw"}
    assert responses.calls[1].request.headers["token"] == "tok-42"

    ding = {"type": "token_endpoint", "url": "http://oa.example.com/gettoken", "method": "GET",
            "params": {"appkey": "k", "appsecret": "s"}}
    responses.get("http://oa.example.com/gettoken",
                  json={"errcode": 40089, "errmsg": "不合法的corpid或corpsecret"})
    session, _ = make_session(ding)
    with pytest.raises(SourceError) as caught:
        session.get(API)
    assert caught.value.error_class == "auth"
    assert "不合法的corpid或corpsecret" in caught.value.message


# --------------------------------------------------------------------------- JSON answers

WAF_PAGE = """<!DOCTYPE html><html><head><title>访问被拦截</title>
<style>body{color:red}</style><script>var x = 1;</script></head>
<body><h1>您的访问被安全策略拦截</h1><p>事件ID: 8f2a &amp; 请联系管理员</p></body></html>"""


@responses.activate
def test_html_page_with_200_is_a_protocol_error_with_readable_snippet():
    responses.get(API, body=WAF_PAGE, content_type="text/html; charset=utf-8")
    session, _ = make_session()

    with pytest.raises(SourceError) as caught:
        session.get_json(API)
    err = caught.value
    assert err.error_class == "protocol" and "HTML page instead of JSON" in err.message
    assert err.detail["body"] == "访问被拦截 您的访问被安全策略拦截 事件ID: 8f2a & 请联系管理员"


@responses.activate
def test_html_login_page_served_as_json_content_type_is_still_caught():
    responses.get(API, body="<html><body>统一身份认证 用户名 密码</body></html>",
                  content_type="application/json")
    session, _ = make_session()

    with pytest.raises(SourceError) as caught:
        session.get_json(API)
    assert caught.value.error_class == "protocol"
    assert caught.value.detail["body"] == "统一身份认证 用户名 密码"


@responses.activate
def test_truncated_invalid_and_empty_json_are_protocol_errors():
    responses.get(API, body='{"data": [{"workcode": "E1"}, {"workcode": "E')
    responses.get(API, body='{"data": [1, 2,, 3]}')
    responses.get(API, body="")
    session, _ = make_session()

    messages = []
    for _ in range(3):
        with pytest.raises(SourceError) as caught:
            session.get_json(API)
        assert caught.value.error_class == "protocol"
        messages.append(caught.value.message)
    assert "cut off after 45 bytes" in messages[0]
    assert messages[1].startswith("invalid JSON from http://oa.example.com/api/staff")
    assert messages[2].startswith("empty body")


@responses.activate
def test_declared_gbk_json_is_decoded():
    responses.get(API, body='{"name": "党支部"}'.encode("gbk"),
                  content_type="application/json; charset=GBK")
    session, _ = make_session()
    assert session.get_json(API) == {"name": "党支部"}


# --------------------------------------------------------------------------- schemas, helpers


def test_http_options_schema_and_settings():
    loaded = HttpOptionsSchema().load({"timeout": 30, "retries": {"max_attempts": 6},
                                       "headers": {"X-Tenant": "hq"}})
    settings = HttpSettings.from_config(loaded)
    assert (settings.connect_timeout, settings.read_timeout) == (30, 30)
    assert (settings.max_attempts, settings.backoff, settings.verify_tls) == (6, 0.5, True)
    split = HttpOptionsSchema().load({"timeout": {"connect": 2}})
    assert split["timeout"] == {"connect": 2.0, "read": 60.0}
    with pytest.raises(ValidationError) as caught:
        HttpOptionsSchema().load({"timeout": "soon", "retries": {"max_attempts": 0}})
    assert set(caught.value.messages) == {"timeout", "retries"}

    session = build_session({**loaded, "auth": {"type": "bearer", "token": "x"}})
    assert session.headers["X-Tenant"] == "hq" and session.settings.max_attempts == 6


def test_auth_schema_names_missing_keys():
    with pytest.raises(ValidationError) as caught:
        AuthSchema().load({"type": "token_endpoint", "client_id": "a"})
    assert set(caught.value.messages) == {"url"}
    with pytest.raises(ValidationError) as caught:
        AuthSchema().load({"type": "bearer", "tokn": "x"})
    assert caught.value.messages == {"tokn": ["Unknown field."]}


def test_get_path_and_snippet():
    body = {"data": {"items": [{"id": 1}], "total": None}}
    assert get_path(body, "data.items.0.id") == 1
    assert get_path(body, "data.total") is None
    assert get_path(body, "data.missing") is MISSING
    assert get_path(body, "") is body
    assert body_snippet("<p>a</p>" + "x" * 300, 10) == "a " + "x" * 7 + "…"
