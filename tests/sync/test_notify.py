"""Notifications: run failed / held and the new-mismatch digest, by SMTP and group robots.

Mail goes to a real local SMTP server (aiosmtpd); the WeCom and DingTalk robots are mocked at
the HTTP boundary (`responses`), checked for the vendors' payload formats and DingTalk's signature.
"""
from __future__ import annotations

import base64
import email
import hashlib
import hmac
import socket
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
from aiosmtpd.controller import Controller
from sqlalchemy import select

from benchmarks.enterprise import generate
from benchmarks.fake_source import FakeSource
from benchmarks.sync_bench import write_config
from records.db import session_factory, upgrade
from records.models import Mismatch, PartyOrg, User
from sync.config import NotificationsSchema, _checked_notifications
from sync.engine import SyncEngine
from sync.notify import dingtalk_signed_url, notify_run
from sync.runtime import Runtime
from sync.config import load_config
from tests.conftest import TEST_SECRET

WECOM = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=test-key"
DING = "https://oapi.dingtalk.com/robot/send?access_token=test-token"
DING_SECRET = "SECtest0123456789"


class Inbox:
    """aiosmtpd handler: keeps every message it is sent."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Any]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 OK"

    def to(self, address: str) -> list[Any]:
        return [m for rcpt, m in self.messages if address in rcpt]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def source() -> Iterator[FakeSource]:
    with FakeSource(generate(staff=300, seed=4), page_size=100) as fake:
        yield fake


def make_runtime(tmp_path: Path, sqlite_url: str, source: FakeSource, smtp_port: int,
                 on: dict[str, list[str]]) -> Runtime:
    config = load_config(write_config(tmp_path, source.url, sqlite_url, page_size=100))
    config.secret_key = TEST_SECRET
    config.guard = {"max_deactivate_ratio": 0.2, "max_deactivate": 200}
    raw = {"channels": {
        "ops-mail": {"type": "smtp", "host": "127.0.0.1", "port": smtp_port, "from": "dualline@example.com",
                     "to": ["it-ops@example.com"]},
        "wecom-bot": {"type": "wecom_robot", "webhook": WECOM},
        "ding-bot": {"type": "dingtalk_robot", "webhook": DING, "secret": DING_SECRET},
    }, "on": on}
    config.notifications = _checked_notifications(NotificationsSchema().load(raw), "test")
    runtime = Runtime(config)
    upgrade(runtime.engine)
    return runtime


def robots_ok(rsps: responses.RequestsMock, wecom_answer: dict[str, Any] | None = None) -> None:
    rsps.add(responses.POST, WECOM, json=wecom_answer or {"errcode": 0, "errmsg": "ok"},
             match=[responses.matchers.query_param_matcher({"key": "test-key"})])
    rsps.add(responses.POST, "https://oapi.dingtalk.com/robot/send", json={"errcode": 0, "errmsg": "ok"})


def _verify_ding_signature(url: str) -> None:
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["access_token"] == ["test-token"]
    timestamp, sign = query["timestamp"][0], query["sign"][0]
    assert timestamp.isdigit() and len(timestamp) == 13  # milliseconds
    expected = hmac.new(DING_SECRET.encode(), f"{timestamp}\n{DING_SECRET}".encode(), hashlib.sha256).digest()
    assert base64.b64decode(sign) == expected


def test_dingtalk_signature_matches_the_documented_example_shape() -> None:
    url = dingtalk_signed_url(DING, "this is secret", now_ms=1_700_000_000_000)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["timestamp"] == ["1700000000000"]
    digest = hmac.new(b"this is secret", b"1700000000000\nthis is secret", hashlib.sha256).digest()
    assert query["sign"] == [base64.b64encode(digest).decode()]
    # The sign is URL-encoded in the URL itself (base64 has + / =).
    assert "sign=" + urllib.parse.quote_plus(base64.b64encode(digest)) in url
    assert dingtalk_signed_url(DING, None) == DING


def test_a_failed_run_is_announced_on_every_channel(tmp_path: Path, sqlite_url: str, source: FakeSource, smtp) -> None:
    inbox, port = smtp
    runtime = make_runtime(tmp_path, sqlite_url, source, port, {"run_failed": ["ops-mail", "wecom-bot", "ding-bot"]})
    source.fail("staff", "error")
    with responses.RequestsMock(assert_all_requests_are_fired=True, passthru_prefixes=(source.url,)) as rsps:
        robots_ok(rsps)
        result = SyncEngine(runtime).run()
        assert result.status == "failed"
        calls = {c.request.url.split("?")[0]: c.request for c in rsps.calls}
    wecom = responses_json(calls["https://qyapi.weixin.qq.com/cgi-bin/webhook/send"])
    assert wecom["msgtype"] == "markdown" and set(wecom["markdown"]) == {"content"}
    assert f"run #{result.run_id}" in wecom["markdown"]["content"] and "staff" in wecom["markdown"]["content"]
    ding_request = calls["https://oapi.dingtalk.com/robot/send"]
    ding = responses_json(ding_request)
    assert ding["msgtype"] == "markdown" and set(ding["markdown"]) == {"title", "text"}
    assert "sync failed" in ding["markdown"]["title"]
    _verify_ding_signature(ding_request.url)
    [mail] = inbox.to("it-ops@example.com")
    assert "sync failed" in mail["Subject"] and mail["From"] == "dualline@example.com"
    assert "[http]" in mail.get_payload(decode=True).decode("utf-8")


def responses_json(request: Any) -> dict[str, Any]:
    import json

    return json.loads(request.body)


def test_a_held_run_is_announced_with_the_guards_reasons(tmp_path: Path, sqlite_url: str, source: FakeSource,
                                                        smtp) -> None:
    inbox, port = smtp
    runtime = make_runtime(tmp_path, sqlite_url, source, port, {"run_held": ["ops-mail"]})
    assert SyncEngine(runtime).run().status == "succeeded"
    source.fail("staff", "empty")  # the whole kind: a source that lost its data
    result = SyncEngine(runtime).run()
    assert result.status == "held"
    [mail] = inbox.to("it-ops@example.com")
    body = mail.get_payload(decode=True).decode("utf-8")
    assert "held" in mail["Subject"] and "--approve" in body
    assert result.guard["reasons"][0] in body


def test_the_digest_reaches_officers_of_the_affected_orgs_only(tmp_path: Path, sqlite_url: str,
                                                              source: FakeSource, smtp) -> None:
    inbox, port = smtp
    runtime = make_runtime(tmp_path, sqlite_url, source, port, {"mismatch_digest": ["ops-mail", "wecom-bot"]})
    # Officers need the party orgs to exist: a first sync (no digest routed to it yet) stores them.
    quiet = runtime.config.notifications
    runtime.config.notifications = {"channels": quiet["channels"], "on": {}}
    first = SyncEngine(runtime).run()
    assert first.status == "succeeded" and first.mismatches["opened"] > 0
    with session_factory(runtime.engine)() as s, s.begin():
        affected = s.scalars(select(Mismatch.party_org_code).where(Mismatch.party_org_code.is_not(None))).first()
        orgs = dict(s.execute(select(PartyOrg.code, PartyOrg.parent_code)).all())
        mismatch_orgs = set(s.scalars(select(Mismatch.party_org_code)).all()) | set(
            s.scalars(select(Mismatch.other_party_org_code)).all())
        quiet_branch = next(c for c in orgs if c not in mismatch_orgs and c not in orgs.values())
        # Forget every mismatch, so the next run opens them again as new (a `--full` run: it
        # looks at everything; an incremental one re-examines only what changed).
        s.execute(Mismatch.__table__.delete())
        s.add_all([
            User(username="o-affected", password_hash="x", role="officer", party_org_code=affected,
                 email="affected@example.com"),
            User(username="o-quiet", password_hash="x", role="officer", party_org_code=quiet_branch,
                 email="quiet@example.com"),
            User(username="o-nomail", password_hash="x", role="officer", party_org_code=affected),
        ])
    runtime.config.notifications = quiet
    with responses.RequestsMock(assert_all_requests_are_fired=False, passthru_prefixes=(source.url,)) as rsps:
        robots_ok(rsps)
        second = SyncEngine(runtime).run(full=True)
        robot = responses_json(rsps.calls[0].request)
    assert second.status == "succeeded" and second.mismatches["opened"] == first.mismatches["opened"]
    assert "new mismatches" in robot["markdown"]["content"]
    [ops] = inbox.to("it-ops@example.com")
    assert f"opened {second.mismatches['opened']} new" in ops.get_payload(decode=True).decode("utf-8")
    [mine] = inbox.to("affected@example.com")
    text = mine.get_payload(decode=True).decode("utf-8")
    assert f"({affected})" in text
    assert inbox.to("quiet@example.com") == []


def test_a_failing_channel_never_fails_the_run(tmp_path: Path, sqlite_url: str, source: FakeSource) -> None:
    closed_port = _free_port()  # nothing listens there: the mail channel fails to connect
    runtime = make_runtime(tmp_path, sqlite_url, source, closed_port,
                           {"run_failed": ["ops-mail", "wecom-bot", "ding-bot"]})
    source.fail("staff", "error")
    with responses.RequestsMock(assert_all_requests_are_fired=False, passthru_prefixes=(source.url,)) as rsps:
        robots_ok(rsps, wecom_answer={"errcode": 93000, "errmsg": "invalid webhook url"})
        result = SyncEngine(runtime).run()
        assert result.status == "failed"  # the run's own outcome, not the notifications'
        failures = notify_run(runtime, result)
        # The DingTalk robot was still tried after the two failures before it, both times.
        assert sum("oapi.dingtalk.com" in c.request.url for c in rsps.calls) == 2
    assert failures == ["ops-mail:run_failed", "wecom-bot:run_failed"]
