"""Webhooks against a real local HTTP receiver: signatures, retries and back-off, the delivery log,
cursors that never skip, subtree limits, masking, and a failing receiver never failing a sync."""
from __future__ import annotations

import datetime as dt
import json
import random
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import select, update

from records.db import session_factory
from records.feed import SubtreeWindow, read_feed
from records.models import PartyOrg, Webhook, WebhookDelivery, utcnow
from sync.webhooks import (
    BACKOFF_CAP_SECONDS, Deliverer, backoff_seconds, create_webhook, feed_entities, verify_signature,
)
from tests.conftest import TEST_SECRET, app_for
from tests.sync.conftest import Site, make_site

SECRET = "receiver-shared-secret-0123"


class Receiver:
    """A local HTTP endpoint that records every POST and answers with scripted status codes."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                status = receiver.script.pop(0) if receiver.script else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def bodies(self, event: str = "changes") -> list[dict[str, Any]]:
        """What a receiver that dedupes on the delivery id keeps (a retried batch counts once)."""
        seen: dict[str, dict[str, Any]] = {}
        for r in self.requests:
            if r["headers"]["X-Dualline-Event"] == event:
                seen.setdefault(r["headers"]["X-Dualline-Delivery"], json.loads(r["body"]))
        return list(seen.values())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def site(tmp_path: Path, sqlite_url: str, monkeypatch) -> Site:
    # These tests drive the deliverer themselves (with their own clock); the engine's own pass
    # after each run is what test_a_failing_receiver_never_fails_the_sync exercises.
    monkeypatch.setattr("sync.webhooks.deliver_after_run", lambda runtime: None)
    return make_site(tmp_path / "src", sqlite_url, staff=300, seed=23)


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> dt.datetime:
        return self.now


def _hook(site: Site, url: str, **kwargs: Any) -> int:
    with session_factory(site.runtime.engine)() as s, s.begin():
        hook = create_webhook(s, site.runtime.cipher, name=kwargs.pop("name", "platform"), url=url, secret=SECRET,
                              events=kwargs.pop("events", ["changes", "mismatches", "runs"]), **kwargs)
        s.flush()
        return hook.id


def _deliverer(site: Site, clock: Clock | None = None) -> Deliverer:
    return Deliverer(site.runtime.engine, site.runtime.config, site.runtime.cipher, now=clock or utcnow,
                     rng=random.Random(7))


def _log(site: Site, hook_id: int) -> list[WebhookDelivery]:
    with session_factory(site.runtime.engine)() as s:
        return list(s.scalars(select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook_id)
                              .order_by(WebhookDelivery.id)))


def _feed_seqs(site: Site, window: SubtreeWindow, entities: list[str]) -> list[int]:
    with session_factory(site.runtime.engine)() as s:
        return [c.seq for c in read_feed(s, window, 0, 10**6, entities)]


def _api_feed(site: Site, org: str | None) -> list[dict[str, Any]]:
    from web.tokens import create_token

    app = app_for(site.runtime, API_RATE_LIMIT_PER_SECOND=0)
    with session_factory(site.runtime.engine)() as s, s.begin():
        secret = create_token(s, f"feed-{org or 'all'}", ["read"], org).secret
    items, after, client = [], 0, app.test_client()
    while True:
        page = client.get("/api/v1/changes", query_string={"after": after, "limit": 1000},
                          headers={"Authorization": f"Bearer {secret}"}).get_json()
        if not page["items"]:
            return items
        items += page["items"]
        after = page["last_seq"]


def test_signed_batches_in_feed_shape_and_cursor_never_skips(site: Site, receiver: Receiver) -> None:
    hook_id = _hook(site, receiver.url)
    with session_factory(site.runtime.engine)() as s, s.begin():  # small batches: many POSTs
        s.execute(update(Webhook).where(Webhook.id == hook_id).values(batch_size=97))
    assert site.sync().status == "succeeded"
    report = _deliverer(site).deliver_all()
    site.enterprise.mutate(fraction=0.05, seed=3)
    site.rewrite()
    assert site.sync().status == "succeeded"
    report2 = _deliverer(site).deliver_all()
    assert report.failed == report2.failed == 0 and report.delivered > 3

    for request in receiver.requests:
        headers = request["headers"]
        assert verify_signature(SECRET, headers["X-Dualline-Timestamp"], request["body"],
                                headers["X-Dualline-Signature"])
        assert not verify_signature("another-secret-0000000", headers["X-Dualline-Timestamp"], request["body"],
                                    headers["X-Dualline-Signature"])
        assert not verify_signature(SECRET, headers["X-Dualline-Timestamp"], request["body"] + b" ",
                                    headers["X-Dualline-Signature"])
        assert json.loads(request["body"])["delivery"] == headers["X-Dualline-Delivery"]

    changes = receiver.bodies("changes")
    seqs = [item["seq"] for body in changes for item in body["items"]]
    entities = feed_entities(["changes", "mismatches"], None)
    assert seqs == _feed_seqs(site, SubtreeWindow(None), entities)  # every change, once, in order
    for before, after in zip(changes, changes[1:]):
        assert after["after"] == before["last_seq"]  # contiguous ranges
    item = changes[0]["items"][0]
    assert set(item) == {"seq", "entity", "entity_id", "op", "changed", "run_id", "at"}
    runs = receiver.bodies("runs")
    assert [r["run_id"] for body in runs for r in body["items"]] == [1, 2]
    assert {r["status"] for body in runs for r in body["items"]} == {"succeeded"}

    log = _log(site, hook_id)
    assert len(log) == report.delivered + report2.delivered
    assert all(row.status == "delivered" and row.attempt == 1 and row.status_code == 200 and row.delivered_at
               and row.duration_ms is not None for row in log)
    assert _deliverer(site).deliver_all().delivered == 0  # nothing new: nothing sent


def test_retries_on_500_with_backoff_then_delivers_the_same_batch(site: Site, receiver: Receiver) -> None:
    hook_id = _hook(site, receiver.url, events=["changes"])
    assert site.sync().status == "succeeded"
    clock = Clock()
    receiver.script = [500, 503]
    deliverer = _deliverer(site, clock)
    assert deliverer.deliver_all().failed == 1
    first = _log(site, hook_id)[-1]
    assert first.status == "retrying" and first.status_code == 500 and first.attempt == 1
    wait = (first.next_attempt_at - clock.now).total_seconds()
    assert 5 <= wait <= 10
    assert deliverer.deliver_all().failed == 0 and len(receiver.requests) == 1  # backing off: not yet
    clock.now = first.next_attempt_at + dt.timedelta(seconds=1)
    assert deliverer.deliver_all().failed == 1
    second = _log(site, hook_id)[-1]
    assert second.attempt == 2 and 10 <= (second.next_attempt_at - clock.now).total_seconds() <= 20
    clock.now = second.next_attempt_at + dt.timedelta(seconds=1)
    report = deliverer.deliver_all()
    assert report.delivered >= 1 and report.failed == 0
    log = _log(site, hook_id)
    assert [r.status for r in log[:3]] == ["retrying", "retrying", "delivered"]
    assert len({r.delivery_id for r in log[:3]}) == 1  # one batch, three attempts
    first_three = receiver.requests[:3]
    assert len({r["body"] for r in first_three}) == 1  # byte-identical body on every retry
    assert len({r["headers"]["X-Dualline-Delivery"] for r in first_three}) == 1


def test_backoff_is_exponential_capped_and_jittered() -> None:
    rng = random.Random(1)
    for failures in range(1, 16):
        ceiling = min(BACKOFF_CAP_SECONDS, 10 * 2 ** (failures - 1))
        values = [backoff_seconds(failures, rng) for _ in range(50)]
        assert all(ceiling / 2 <= v <= ceiling for v in values)
        assert len(set(values)) > 1  # jitter


def test_gives_up_after_max_attempts_and_reenabling_resends_the_kept_batch(site: Site, receiver: Receiver) -> None:
    hook_id = _hook(site, receiver.url, events=["changes"], max_attempts=2)
    assert site.sync().status == "succeeded"
    clock = Clock()
    receiver.script = [500, 500]
    deliverer = _deliverer(site, clock)
    deliverer.deliver_all()
    clock.now += dt.timedelta(hours=2)
    deliverer.deliver_all()
    with session_factory(site.runtime.engine)() as s:
        hook = s.get(Webhook, hook_id)
        assert not hook.active and hook.disabled_reason == "failing" and hook.last_seq == 0
        assert _log(site, hook_id)[-1].status == "failed"
    from sync.webhooks import set_webhook_active

    with session_factory(site.runtime.engine)() as s, s.begin():
        set_webhook_active(s, s.get(Webhook, hook_id), True, "admin")
    assert deliverer.deliver_all().delivered >= 1
    assert receiver.requests[2]["body"] == receiver.requests[0]["body"]
    assert _feed_seqs(site, SubtreeWindow(None), feed_entities(["changes"], None)) == [
        item["seq"] for body in receiver.bodies() for item in body["items"]]


def test_subtree_webhook_sees_only_its_subtree_and_never_plain_sensitive_values(site: Site, receiver: Receiver) -> None:
    assert site.sync().status == "succeeded"
    with session_factory(site.runtime.engine)() as s:
        branch = s.scalars(select(PartyOrg).where(PartyOrg.kind == "branch").order_by(PartyOrg.code)).first()
    everything = Receiver()
    try:
        limited_id = _hook(site, receiver.url, name="branch-only", party_org_code=branch.code)
        _hook(site, everything.url, name="everything")
        with session_factory(site.runtime.engine)() as s, s.begin():  # replay the history to both
            s.execute(update(Webhook).values(last_seq=0))
        _deliverer(site).deliver_all()
        limited = [item for body in receiver.bodies() for item in body["items"]]
        full = [item for body in everything.bodies() for item in body["items"]]
    finally:
        everything.close()
    entities = feed_entities(["changes", "mismatches"], None)
    assert [i["seq"] for i in limited] == _feed_seqs(site, SubtreeWindow(branch.code), entities)
    # Item for item what the API's feed gives a token with the same subtree (and one without).
    assert limited == _api_feed(site, branch.code)
    assert full == _api_feed(site, None)
    assert 0 < len(limited) < len(full)
    assert {i["seq"] for i in limited} < {i["seq"] for i in full}
    assert _log(site, limited_id)
    with session_factory(site.runtime.engine)() as s:
        from records.models import Membership

        outside = set(s.scalars(select(Membership.id).where(Membership.party_org_code != branch.code)))
    assert not [i for i in limited if i["entity"] == "membership" and i["entity_id"] in outside]

    # Sensitive values: masked in every body, payroll never sent.
    raw = b"".join(r["body"] for r in receiver.requests).decode("utf-8") + json.dumps(full, ensure_ascii=False)
    plain = [s["id_number"] for s in site.enterprise.staff if s.get("id_number")]
    plain += [s["mobile"] for s in site.enterprise.staff if s.get("mobile")]
    assert plain and not [v for v in plain if v in raw]
    people = [i for i in full if i["entity"] == "person" and "id_number" in i["changed"]]
    assert people and all(re.search(r"\*{4,}", i["changed"]["id_number"][1]) for i in people
                          if i["changed"]["id_number"][1])
    assert not [i for i in full if i["entity"] == "payroll"]


def test_a_failing_receiver_never_fails_the_sync(tmp_path: Path, sqlite_url: str, monkeypatch) -> None:
    site = make_site(tmp_path / "src", sqlite_url, staff=300, seed=5)
    config_path = site.folder / "dualline.yaml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    dead = Receiver()
    dead.close()  # nothing listens there any more: connection refused
    config["webhooks"] = [{"name": "dead", "url": dead.url, "secret": "${HOOK_SECRET}", "events": ["changes", "runs"],
                           "timeout_seconds": 2}]
    config_path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    monkeypatch.setenv("DUALLINE_CONFIG", str(config_path))
    monkeypatch.setenv("DUALLINE_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("DUALLINE_DATABASE_URL", sqlite_url)
    from web.cli import cli

    result = CliRunner().invoke(cli, ["sync", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["status"] == "succeeded"
    with session_factory(site.runtime.engine)() as s:
        hook = s.scalar(select(Webhook).where(Webhook.name == "dead"))
        assert hook.origin == "config" and hook.secret_enc is None and hook.attempts == 1
        row = s.scalar(select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id))
        assert row.status == "retrying" and row.status_code is None and "Connection" in row.error
    listed = CliRunner().invoke(cli, ["webhooks", "list", "--json"], catch_exceptions=False)
    assert json.loads(listed.output)["items"][0]["name"] == "dead"
    again = CliRunner().invoke(cli, ["webhooks", "deliver", "--json"], catch_exceptions=False)
    assert again.exit_code == 0 and json.loads(again.output)["failed"] == 0  # still backing off


def test_config_webhooks_are_validated(tmp_path: Path) -> None:
    from sync.config import ConfigError, parse_config

    good = {"name": "p", "url": "https://party.example/hook", "secret": "x" * 16}
    assert parse_config({"webhooks": [good]}, path=None).webhooks[0]["events"] == ["changes", "mismatches"]
    for bad, field in (({**good, "events": ["everything"]}, "webhooks[0].events"),
                       ({**good, "secret": "short"}, "webhooks[0].secret"),
                       ({**good, "url": "ftp://x"}, "webhooks[0].url")):
        with pytest.raises(ConfigError, match=re.escape(field)):
            parse_config({"webhooks": [bad]}, path=None)
    with pytest.raises(ConfigError, match="used twice"):
        parse_config({"webhooks": [good, good]}, path=None)
