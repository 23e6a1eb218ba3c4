"""Webhooks: signed POSTs of the change feed and of finished runs, each webhook with its own cursor.

What a receiver gets (README "Webhooks"):

* `POST <url>` with a JSON body `{"delivery", "event", "webhook", "items": [...], ...}`:
  - `event: "changes"` — items of the change feed, exactly the shape of `GET /api/v1/changes`
    (`seq, entity, entity_id, op, changed, run_id, at`), sensitive values masked, payroll never;
    the body says which range it covers: `after` (exclusive) and `last_seq` (inclusive);
  - `event: "runs"` — finished sync runs (`run_id, status, sources, counts, mismatches, …`);
  - `event: "ping"` — a test from the console.
* Headers: `X-Dualline-Delivery` (one id per batch, the same on every retry of it: dedupe on it),
  `X-Dualline-Event`, `X-Dualline-Timestamp` (Unix seconds of this attempt) and
  `X-Dualline-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`. Verify the
  signature over the raw body and reject old timestamps to stop replays (`verify_signature`).

Order and completeness: a webhook's cursors (`last_seq`, `last_run_id`) move only after a 2xx, so
batches arrive in feed order and none is skipped; a lost answer repeats the batch with the same
delivery id (at least once). A failed attempt is retried with exponential back-off and jitter;
after `max_attempts` the webhook stops as "failing" and keeps the batch — re-enabling it in the
console retries that very batch. Nothing here ever runs inside a sync's transaction: delivery
reads committed, stamped changes (records.feed) after a run and from `dualline webhooks deliver`
(cron, scheduler), and its failures are logged, never a run's failure. One deliverer at a time
(a database lease, sync.locks), so two cron jobs do not send a batch twice.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import click
import orjson
import requests
from flask import Flask, current_app
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from records.crypto import FieldCipher
from records.db import session_factory
from records.feed import SubtreeWindow, feed_item, last_stamped_seq, read_feed
from records.models import AuditLog, PartyOrg, SyncRun, Webhook, WebhookDelivery, utcnow
from sync.config import WEBHOOK_ENTITIES, WEBHOOK_EVENTS, Config
from sync.locks import LockHeld, RunLocks

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Dualline-Signature"
TIMESTAMP_HEADER = "X-Dualline-Timestamp"
DELIVERY_HEADER = "X-Dualline-Delivery"
EVENT_HEADER = "X-Dualline-Event"
LOCK_NAME = "webhooks"
BACKOFF_BASE_SECONDS = 10.0
BACKOFF_CAP_SECONDS = 3600.0
# Batches one webhook may send per pass, so one busy receiver cannot hold the others up for long.
MAX_BATCHES_PER_PASS = 50
MISMATCH_ENTITY = "mismatch"


class WebhookError(ValueError):
    """A webhook definition that cannot be accepted (the message names the field)."""


# --- signing -----------------------------------------------------------------------------------


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify_signature(secret: str, timestamp: str, body: bytes, header: str, *, tolerance: float = 300.0,
                     now: float | None = None) -> bool:
    """What a receiver does: the HMAC matches (constant-time) and the timestamp is recent."""
    try:
        age = abs((now if now is not None else time.time()) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance and hmac.compare_digest(signature(secret, timestamp, body), header or "")


def backoff_seconds(failed_attempts: int, rng: random.Random | None = None) -> float:
    """Wait before the next attempt after `failed_attempts` failures: exponential from 10 s
    (10, 20, 40 … capped at an hour) with "equal jitter" — between half and all of it, so that
    receivers coming back are not hit by every sender at the same second."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(failed_attempts - 1, 0))
    return ceiling / 2 + (rng or random).random() * ceiling / 2


# --- definitions -------------------------------------------------------------------------------


def feed_entities(events: Iterable[str], entities: Iterable[str] | None) -> list[str]:
    """The feed entities a webhook receives: `changes` → the records, `mismatches` → mismatches,
    narrowed by its `entities` filter. Payroll is never sent (pay is sensitive)."""
    events = set(events)
    wanted = [e for e in WEBHOOK_ENTITIES
              if (e == MISMATCH_ENTITY and "mismatches" in events) or (e != MISMATCH_ENTITY and "changes" in events)]
    if entities:
        wanted = [e for e in wanted if e in set(entities)]
    return wanted


def _check(s: Session, url: str, events: Iterable[str], entities: Iterable[str] | None,
           party_org_code: str | None) -> None:
    if not url.startswith(("http://", "https://")) or len(url) > 1000:
        raise WebhookError("url: an http:// or https:// address (at most 1000 characters)")
    unknown = set(events) - set(WEBHOOK_EVENTS)
    if unknown or not list(events):
        raise WebhookError(f"events: choose from {', '.join(WEBHOOK_EVENTS)}")
    if entities and set(entities) - set(WEBHOOK_ENTITIES):
        raise WebhookError(f"entities: choose from {', '.join(WEBHOOK_ENTITIES)}")
    if party_org_code and s.scalar(select(PartyOrg.id).where(PartyOrg.code == party_org_code)) is None:
        raise WebhookError(f"party_org: no party org with code {party_org_code!r}")


def _start_cursors(s: Session, hook: Webhook) -> None:
    """A new webhook starts at the end of the feed: the state so far is in the API."""
    hook.last_seq = last_stamped_seq(s)
    hook.last_run_id = s.scalar(select(func.max(SyncRun.id))) or 0


def create_webhook(s: Session, cipher: FieldCipher, *, name: str, url: str, secret: str, events: Iterable[str],
                   entities: Iterable[str] | None = None, party_org_code: str | None = None,
                   timeout_seconds: float = 10.0, max_attempts: int = 8, actor: str = "cli") -> Webhook:
    """A console webhook (secret stored encrypted); audited. The caller commits."""
    name, url, events = name.strip(), url.strip(), list(events)
    entities = list(entities) if entities else None
    if not name or len(name) > 80:
        raise WebhookError("name: 1 to 80 characters")
    if len(secret) < 16:
        raise WebhookError("secret: at least 16 characters")
    _check(s, url, events, entities, party_org_code)
    if s.scalar(select(Webhook.id).where(Webhook.name == name)) is not None:
        raise WebhookError(f"name: a webhook named {name!r} exists already")
    hook = Webhook(name=name, origin="console", url=url, secret_enc=cipher.encrypt(secret), events=events,
                   entities=entities, party_org_code=party_org_code or None, timeout_seconds=timeout_seconds,
                   max_attempts=max_attempts, batch_size=500, active=True, attempts=0, created_by=actor)
    _start_cursors(s, hook)
    s.add(hook)
    s.add(AuditLog(actor=actor, action="webhook.create", target_type="webhook", target_id=name,
                   details={"url": url, "events": events, "entities": entities, "org": party_org_code or None}))
    return hook


def set_webhook_active(s: Session, hook: Webhook, active: bool, actor: str) -> None:
    """Disable, or (re-)enable: a failing webhook retries its kept batch at once."""
    hook.active = active
    hook.disabled_reason = None if active else "disabled"
    if active:
        hook.attempts, hook.next_attempt_at = 0, None
    s.add(AuditLog(actor=actor, action="webhook.enable" if active else "webhook.disable",
                   target_type="webhook", target_id=hook.name, details={}))


def apply_config_webhooks(s: Session, hooks: list[dict[str, Any]]) -> None:
    """Make the `webhooks:` of the config rows (origin "config"), keeping their cursors; a hook
    gone from the config is disabled, not deleted (its log stays)."""
    existing = {h.name: h for h in s.scalars(select(Webhook))}
    for block in hooks:
        hook = existing.get(block["name"])
        if hook is None:
            hook = Webhook(name=block["name"], origin="config", created_by="config", attempts=0, active=True)
            _start_cursors(s, hook)
            s.add(hook)
        elif hook.origin != "config":
            log.warning("webhook %s is defined in the console and in the config; the console one is kept",
                        block["name"])
            continue
        hook.url, hook.events, hook.entities = block["url"], list(block["events"]), block["entities"]
        hook.party_org_code = block["party_org"]
        hook.timeout_seconds, hook.max_attempts = block["timeout_seconds"], block["max_attempts"]
        hook.batch_size = block["batch_size"]
        if hook.disabled_reason == "removed":
            hook.active, hook.disabled_reason = True, None
    named = {b["name"] for b in hooks}
    for hook in existing.values():
        if hook.origin == "config" and hook.name not in named and hook.disabled_reason != "removed":
            hook.active, hook.disabled_reason = False, "removed"


# --- delivery ----------------------------------------------------------------------------------


@dataclass
class DeliveryReport:
    delivered: int = 0  # batches answered 2xx
    failed: int = 0  # attempts that failed
    items: int = 0  # items delivered
    skipped: str | None = None  # why nothing was tried (another deliverer holds the lease)
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"delivered": self.delivered, "failed": self.failed, "items": self.items,
                "skipped": self.skipped, "errors": self.errors}


@dataclass
class _Attempt:
    hook_id: int
    url: str
    secret: str
    timeout: float
    delivery: str
    event: str
    body: bytes
    attempt: int


def _iso(value: Any) -> Any:
    """Naive UTC as stored → RFC 3339 with its offset, as the API publishes timestamps."""
    if isinstance(value, dt.datetime):
        return (value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value).isoformat()
    return value.isoformat() if hasattr(value, "isoformat") else value


def _run_item(run: SyncRun) -> dict[str, Any]:
    return {"run_id": run.id, "status": run.status, "sources": run.sources, "full": run.full, "actor": run.actor,
            "started_at": _iso(run.started_at), "finished_at": _iso(run.finished_at), "counts": run.counts,
            "mismatches": run.mismatches, "error": run.error}


class Deliverer:
    """Sends what each active webhook has not received yet. `post` and `now` are replaceable
    (tests); `sleep` is never used: a retry waits for the next pass, it does not block one."""

    def __init__(self, engine: Any, config: Config, cipher: FieldCipher, *,
                 http: requests.Session | None = None, now: Callable[[], Any] = utcnow,
                 rng: random.Random | None = None) -> None:
        self.engine, self.config, self.cipher = engine, config, cipher
        self.sessions = session_factory(engine)
        self.http = http or requests.Session()
        self.now = now
        self.rng = rng or random.Random()
        self._config_secrets = {h["name"]: h["secret"] for h in config.webhooks}

    # -- passes -------------------------------------------------------------------------------

    def deliver_all(self) -> DeliveryReport:
        """One pass over every active webhook (config ones first brought up to date)."""
        report = DeliveryReport()
        locks = RunLocks(self.engine, [LOCK_NAME], ttl=max(60.0, self.config.scheduler["lock_ttl_seconds"]))
        try:
            locks.acquire()
        except LockHeld as exc:
            report.skipped = str(exc)
            return report
        try:
            with self.sessions() as s, s.begin():
                apply_config_webhooks(s, self.config.webhooks)
            with self.sessions() as s:
                ids = list(s.scalars(select(Webhook.id).where(Webhook.active.is_(True)).order_by(Webhook.id)))
            for hook_id in ids:
                try:
                    self._deliver_hook(hook_id, report)
                except Exception as exc:  # noqa: BLE001 — one broken hook must not stop the others
                    log.exception("webhook %s: delivery pass failed", hook_id)
                    report.errors.append(f"webhook {hook_id}: {type(exc).__name__}: {exc}")
        finally:
            locks.release()
        return report

    def _deliver_hook(self, hook_id: int, report: DeliveryReport) -> None:
        for _ in range(MAX_BATCHES_PER_PASS):
            with self.sessions() as s, s.begin():
                hook = s.get(Webhook, hook_id)
                if hook is None or not hook.active:
                    return
                if hook.pending_delivery is None and not self._prepare(s, hook):
                    return  # nothing new
                if hook.next_attempt_at is not None and hook.next_attempt_at > self.now():
                    return  # backing off
                attempt = _Attempt(hook.id, hook.url, self._secret(hook), hook.timeout_seconds,
                                   hook.pending_delivery, hook.pending_event, hook.pending_body.encode("utf-8"),
                                   hook.attempts + 1)
            ok = self._send(attempt, report)
            if not ok:
                return

    def _secret(self, hook: Webhook) -> str:
        if hook.origin == "config":
            secret = self._config_secrets.get(hook.name)
            if secret is None:
                raise WebhookError(f"webhook {hook.name}: not in the config any more")
            return secret
        return self.cipher.decrypt(hook.secret_enc) or ""

    def _prepare(self, s: Session, hook: Webhook) -> bool:
        """Take the next batch (changes first, then runs) into `pending_*`; False when none."""
        entities = feed_entities(hook.events or [], hook.entities)
        if entities:
            through = last_stamped_seq(s)
            if through > hook.last_seq:
                rows = read_feed(s, SubtreeWindow(hook.party_org_code), hook.last_seq, hook.batch_size,
                                 entities, through=through)
                # A short page covers everything up to `through`: rows it does not show are not this
                # webhook's, and the cursor may pass them.
                last = rows[-1].seq if len(rows) == hook.batch_size else through
                if rows:
                    items = [{**feed_item(c), "at": _iso(c.at)} for c in rows]
                    self._pend(hook, "changes", items, {"after": hook.last_seq, "last_seq": last},
                               last_seq=last)
                    return True
                hook.last_seq = last
        if "runs" in (hook.events or []):
            runs = []
            for run in s.scalars(select(SyncRun).where(SyncRun.id > hook.last_run_id)
                                 .order_by(SyncRun.id).limit(hook.batch_size)):
                if run.status == "running":
                    break  # runs are sent in id order: wait for this one to finish
                runs.append(run)
            if runs:
                self._pend(hook, "runs", [_run_item(r) for r in runs], {}, run_id=runs[-1].id)
                return True
        return False

    def _pend(self, hook: Webhook, event: str, items: list[dict[str, Any]], extra: dict[str, Any], *,
              last_seq: int | None = None, run_id: int | None = None) -> None:
        delivery = str(uuid.uuid4())
        body = {"delivery": delivery, "event": event, "webhook": hook.name, **extra, "items": items}
        hook.pending_delivery, hook.pending_event = delivery, event
        hook.pending_last_seq, hook.pending_run_id = last_seq, run_id
        hook.pending_items = len(items)
        hook.pending_body = orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS).decode("utf-8")
        hook.attempts, hook.next_attempt_at = 0, None

    def _post(self, attempt: _Attempt) -> tuple[int | None, str | None, int]:
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "User-Agent": "dualline-webhooks/1",
                   DELIVERY_HEADER: attempt.delivery, EVENT_HEADER: attempt.event, TIMESTAMP_HEADER: timestamp,
                   SIGNATURE_HEADER: signature(attempt.secret, timestamp, attempt.body)}
        started = time.perf_counter()
        try:
            response = self.http.post(attempt.url, data=attempt.body, headers=headers, timeout=attempt.timeout,
                                      allow_redirects=False)
        except requests.RequestException as exc:
            return None, f"{type(exc).__name__}: {exc}"[:1000], round((time.perf_counter() - started) * 1000)
        duration = round((time.perf_counter() - started) * 1000)
        if 200 <= response.status_code < 300:
            return response.status_code, None, duration
        return response.status_code, f"HTTP {response.status_code}: {response.text[:300]}", duration

    def _send(self, attempt: _Attempt, report: DeliveryReport) -> bool:
        status_code, error, duration = self._post(attempt)
        now = self.now()
        with self.sessions() as s, s.begin():
            hook = s.get(Webhook, attempt.hook_id)
            if hook is None or hook.pending_delivery != attempt.delivery:
                return False  # changed meanwhile (disabled, edited): leave it to the next pass
            row = WebhookDelivery(webhook_id=hook.id, delivery_id=attempt.delivery, event=attempt.event,
                                  first_seq=hook.last_seq + 1 if hook.pending_event == "changes" else None,
                                  last_seq=hook.pending_last_seq, run_id=hook.pending_run_id,
                                  items=hook.pending_items or 0, attempt=attempt.attempt, status_code=status_code,
                                  error=error, duration_ms=duration, attempted_at=now)
            if error is None:
                row.status, row.delivered_at = "delivered", now
                if hook.pending_event == "changes":
                    hook.last_seq = hook.pending_last_seq
                else:
                    hook.last_run_id = hook.pending_run_id
                report.delivered += 1
                report.items += hook.pending_items or 0
                hook.pending_delivery = hook.pending_event = hook.pending_body = None
                hook.pending_last_seq = hook.pending_run_id = hook.pending_items = None
                hook.attempts, hook.next_attempt_at = 0, None
            else:
                report.failed += 1
                hook.attempts = attempt.attempt
                if hook.attempts >= hook.max_attempts:
                    row.status = "failed"
                    hook.active, hook.disabled_reason, hook.next_attempt_at = False, "failing", None
                    log.warning("webhook %s: gave up after %d attempts (%s); it stops until re-enabled",
                                hook.name, hook.attempts, error)
                else:
                    row.status = "retrying"
                    hook.next_attempt_at = row.next_attempt_at = now + dt.timedelta(
                        seconds=backoff_seconds(hook.attempts, self.rng))
            s.add(row)
        return error is None

    def ping(self, hook_id: int) -> WebhookDelivery:
        """A signed test POST (event "ping"), logged; cursors are not touched."""
        with self.sessions() as s:
            hook = s.get(Webhook, hook_id)
            if hook is None:
                raise WebhookError("no such webhook")
            delivery = str(uuid.uuid4())
            body = orjson.dumps({"delivery": delivery, "event": "ping", "webhook": hook.name,
                                 "at": _iso(self.now()), "items": []})
            attempt = _Attempt(hook.id, hook.url, self._secret(hook), hook.timeout_seconds, delivery, "ping",
                               body, 1)
        status_code, error, duration = self._post(attempt)
        now = self.now()
        with self.sessions() as s, s.begin():
            row = WebhookDelivery(webhook_id=hook_id, delivery_id=delivery, event="ping", items=0, attempt=1,
                                  status="delivered" if error is None else "failed", status_code=status_code,
                                  error=error, duration_ms=duration, attempted_at=now,
                                  delivered_at=now if error is None else None)
            s.add(row)
        return row


def register_config_webhooks(runtime: Any) -> None:
    """Bring the config's webhooks into the database now (a new one starts at the current end of
    the feed), so that the run about to start is delivered to it. Never raises."""
    try:
        with session_factory(runtime.engine)() as s, s.begin():
            apply_config_webhooks(s, runtime.config.webhooks)
    except Exception:  # noqa: BLE001
        log.exception("could not register the config's webhooks (the run goes on)")


def deliver_after_run(runtime: Any) -> DeliveryReport | None:
    """After a sync committed: one delivery pass if any webhook exists. Never raises — a
    receiver's trouble is the webhook's, not the run's."""
    try:
        with session_factory(runtime.engine)() as s:
            if not runtime.config.webhooks and s.scalar(select(Webhook.id).where(Webhook.active.is_(True)).limit(1)) is None:
                return None
        return Deliverer(runtime.engine, runtime.config, runtime.cipher).deliver_all()
    except Exception:  # noqa: BLE001
        log.exception("webhook delivery after the run failed (the run itself is not affected)")
        return None


# --- CLI ---------------------------------------------------------------------------------------


@click.group("webhooks")
def webhooks_group() -> None:
    """Webhooks: signed POSTs of the change feed (config `webhooks:` or the console)."""


@webhooks_group.command("deliver")
@click.option("--json", "as_json", is_flag=True)
def webhooks_deliver(as_json: bool) -> None:
    """Send what every active webhook has not received yet (for cron or the scheduler)."""
    runtime = current_app.extensions["dualline"].runtime()
    report = Deliverer(runtime.engine, runtime.config, runtime.cipher).deliver_all()
    if as_json:
        click.echo(json.dumps(report.as_json(), ensure_ascii=False))
    elif report.skipped:
        click.echo(f"skipped: {report.skipped}")
    else:
        click.echo(f"{report.delivered} batches ({report.items} items) delivered, {report.failed} attempts failed")


@webhooks_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def webhooks_list(as_json: bool) -> None:
    """Webhooks with their cursors and state (never their secrets)."""
    runtime = current_app.extensions["dualline"].runtime()
    with session_factory(runtime.engine)() as s:
        hooks = s.scalars(select(Webhook).order_by(Webhook.id)).all()
        items = [{"name": h.name, "origin": h.origin, "url": h.url, "events": h.events, "entities": h.entities,
                  "org": h.party_org_code, "active": h.active, "disabled_reason": h.disabled_reason,
                  "last_seq": h.last_seq, "last_run_id": h.last_run_id, "attempts": h.attempts,
                  "next_attempt_at": _iso(h.next_attempt_at)} for h in hooks]
    if as_json:
        click.echo(json.dumps({"items": items}, ensure_ascii=False))
        return
    for h in items:
        state = "active" if h["active"] else h["disabled_reason"] or "disabled"
        click.echo(f"{h['name']:<20} {state:<9} seq {h['last_seq']:<8} {h['url']}")


def init_app(app: Flask) -> None:
    app.cli.add_command(webhooks_group)
