"""Notifications: a run failed or was held, and a digest of the mismatches a run opened.

Channels are configured in dualline.yaml and events are routed to them:

    notifications:
      channels:
        ops-mail: {type: smtp, host: mail.example.com, port: 587, starttls: true,
                   username: dualline, password: "${SMTP_PASSWORD}", from: dualline@example.com,
                   to: [it-ops@example.com]}
        wecom-bot: {type: wecom_robot, webhook: "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=${WECOM_KEY}"}
        ding-bot: {type: dingtalk_robot, webhook: "https://oapi.dingtalk.com/robot/send?access_token=…",
                   secret: "${DING_SECRET}"}
      on:
        run_failed: [ops-mail, wecom-bot]
        run_held: [ops-mail]
        mismatch_digest: [ops-mail, ding-bot]

Group robots get the messages as markdown in their vendors' formats (WeCom
`{"msgtype": "markdown", "markdown": {"content"}}`, at most 4096 bytes; DingTalk
`{"msgtype": "markdown", "markdown": {"title", "text"}}`, signed with `timestamp` and `sign` =
base64(HMAC-SHA256(secret, f"{timestamp}\\n{secret}")) when the robot has a secret). Both answer
`{"errcode": 0, "errmsg": "ok"}`; anything else is a failure. An smtp channel mails its `to` list;
for the digest it also mails each officer (console user with role officer and an email) the part
of the digest in their party-org subtree.

Everything is sent after the run has committed. A channel that fails is logged and never fails
the run, nor keeps the other channels from being tried.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import smtplib
import ssl
import time
import urllib.parse
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import requests
from sqlalchemy import select
from sqlalchemy.orm import Session

from records.db import session_factory
from records.models import Mismatch, PartyOrg, User
from records.queries import subtree_codes

log = logging.getLogger("dualline.notify")

WECOM_MAX_BYTES = 4096
DIGEST_SAMPLE = 5  # subjects named per party org and rule; the rest is counted
RULE_NAMES = {
    "branch_mismatch": "所在支部与应在支部不一致", "missing_membership": "党员无组织关系记录",
    "orphan_membership": "组织关系无在职人员", "status_conflict": "政治面貌与党员类别不符",
    "join_date_conflict": "入党日期不一致", "uncovered_unit": "单位未被党组织覆盖",
    "ambiguous_match": "记录无法唯一匹配人员",
}


class NotifyError(Exception):
    """A channel refused or could not be reached."""


@dataclass
class Message:
    """One notification, channel-neutral: a title and markdown lines (plain text for mail)."""

    event: str
    title: str
    lines: list[str] = field(default_factory=list)

    @property
    def markdown(self) -> str:
        return "\n".join([f"### {self.title}", *self.lines])

    @property
    def text(self) -> str:
        return "\n".join([self.title, "", *(line.replace("**", "").lstrip("#> ") for line in self.lines)])


# --------------------------------------------------------------------------- channels


def wecom_payload(message: Message) -> dict[str, Any]:
    content = message.markdown
    encoded = content.encode("utf-8")
    if len(encoded) > WECOM_MAX_BYTES:  # the robot refuses longer content: cut at a character boundary
        content = encoded[: WECOM_MAX_BYTES - 8].decode("utf-8", "ignore") + "\n…"
    return {"msgtype": "markdown", "markdown": {"content": content}}


def dingtalk_payload(message: Message) -> dict[str, Any]:
    return {"msgtype": "markdown", "markdown": {"title": message.title, "text": message.markdown}}


def dingtalk_signed_url(webhook: str, secret: str | None, now_ms: int | None = None) -> str:
    """The webhook with DingTalk's `timestamp` (ms) and `sign` parameters for a signed robot."""
    if not secret:
        return webhook
    timestamp = str(now_ms if now_ms is not None else int(time.time() * 1000))
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}\n{secret}".encode("utf-8"), hashlib.sha256).digest()
    sign = urllib.parse.quote_plus(base64.b64encode(digest))
    separator = "&" if "?" in webhook else "?"
    return f"{webhook}{separator}timestamp={timestamp}&sign={sign}"


def _post_robot(url: str, payload: dict[str, Any], timeout: float) -> None:
    try:
        response = requests.post(url, json=payload, timeout=timeout)
    except requests.RequestException as exc:
        raise NotifyError(f"{type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise NotifyError(f"HTTP {response.status_code}")
    try:
        body = response.json()
    except ValueError:
        raise NotifyError("the robot did not answer JSON") from None
    if body.get("errcode", 0) != 0:
        raise NotifyError(f"errcode {body.get('errcode')}: {body.get('errmsg')}")


def send_mail(channel: dict[str, Any], recipients: list[str], message: Message) -> None:
    mail = EmailMessage()
    mail["Subject"] = message.title
    mail["From"] = channel["from_"]
    mail["To"] = ", ".join(recipients)
    mail.set_content(message.text)
    port = channel.get("port") or (465 if channel.get("ssl") else 25)
    timeout = channel.get("timeout") or 10.0
    try:
        if channel.get("ssl"):
            client: smtplib.SMTP = smtplib.SMTP_SSL(channel["host"], port, timeout=timeout,
                                                    context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(channel["host"], port, timeout=timeout)
        with client:
            if channel.get("starttls"):
                client.starttls(context=ssl.create_default_context())
            if channel.get("username"):
                client.login(channel["username"], channel.get("password") or "")
            client.send_message(mail)
    except (OSError, smtplib.SMTPException) as exc:
        raise NotifyError(f"{type(exc).__name__}: {exc}") from None


def send(channel: dict[str, Any], message: Message, recipients: list[str] | None = None) -> None:
    """Send one message on one channel; NotifyError when it did not go out."""
    kind = channel["type"]
    timeout = channel.get("timeout") or 10.0
    if kind == "smtp":
        to = recipients if recipients is not None else list(channel.get("to") or [])
        if to:
            send_mail(channel, to, message)
    elif kind == "wecom_robot":
        _post_robot(channel["webhook"], wecom_payload(message), timeout)
    elif kind == "dingtalk_robot":
        _post_robot(dingtalk_signed_url(channel["webhook"], channel.get("secret")), dingtalk_payload(message), timeout)
    else:  # the config schema allows no other type
        raise NotifyError(f"unknown channel type {kind}")


# --------------------------------------------------------------------------- messages


def run_message(result: Any) -> Message | None:
    """The failed / held message of a finished run (None when it needs none)."""
    run = f"#{result.run_id}"
    if result.status == "failed":
        lines = [f"同步运行 {run} 失败，未写入任何数据。 / Sync run {run} failed; nothing was applied."]
        for err in result.errors[:10]:
            where = "/".join(x for x in (err.get("source"), err.get("kind")) if x)
            lines.append(f"> {where or 'run'} [{err.get('error_class')}]: {err.get('message')}")
        return Message("run_failed", f"dualline 同步失败 / sync failed: run {run}", lines)
    if result.status == "held":
        lines = [f"同步运行 {run} 被保护规则拦截，未写入任何数据；请在控制台审核批准或使用 --approve 重新运行。",
                 f"Sync run {run} was held by the guard; nothing was applied. Approve it in the console or "
                 f"rerun with --approve."]
        lines += [f"> {reason}" for reason in result.guard.get("reasons", [])]
        return Message("run_held", f"dualline 同步待审核 / sync held: run {run}", lines)
    return None


def new_mismatches(session: Session, run_id: int) -> list[Mismatch]:
    return list(session.scalars(
        select(Mismatch).where(Mismatch.opened_run_id == run_id, Mismatch.state == "open")
        .order_by(Mismatch.party_org_code, Mismatch.rule, Mismatch.id)))


def digest_message(run_id: int, mismatches: list[Mismatch], org_names: dict[str, str],
                   scope: str | None = None) -> Message:
    """New mismatches grouped by party org, then rule: counts and the first few subjects."""
    by_org: dict[str | None, list[Mismatch]] = defaultdict(list)
    for m in mismatches:
        by_org[m.party_org_code].append(m)
    where = f"（{org_names.get(scope, scope)}）" if scope else ""
    lines = [f"同步运行 #{run_id} 新发现 {len(mismatches)} 项双线不一致{where}。 / "
             f"Run #{run_id} opened {len(mismatches)} new mismatch(es)."]
    for org in sorted(by_org, key=lambda c: (c is None, c or "")):
        items = by_org[org]
        label = f"{org_names.get(org, org)} ({org})" if org else "未归属党组织 / no party org"
        lines.append(f"#### {label}: {len(items)}")
        rules = Counter(m.rule for m in items)
        for rule, count in sorted(rules.items()):
            subjects = [m.subject_label or m.subject_key for m in items if m.rule == rule][:DIGEST_SAMPLE]
            more = f" …+{count - len(subjects)}" if count > len(subjects) else ""
            lines.append(f"- **{RULE_NAMES.get(rule, rule)}** ({rule}) {count}: {', '.join(subjects)}{more}")
    return Message("mismatch_digest", f"dualline 新增不一致 / new mismatches: run #{run_id}", lines)


# --------------------------------------------------------------------------- routing


def notify_run(runtime: Any, result: Any) -> list[str]:
    """Send what a finished run calls for; returns 'channel:event' for each failure (logged)."""
    config = runtime.config.notifications or {}
    routes, channels = config.get("on") or {}, config.get("channels") or {}
    if not routes or result.run_id is None:
        return []
    failures: list[str] = []
    try:
        message = run_message(result)
        if message is not None:
            for name in routes.get(message.event, []):
                _try(name, channels[name], message, None, failures)
        opened = (result.mismatches or {}).get("opened", 0)
        if result.status == "succeeded" and opened and routes.get("mismatch_digest"):
            _send_digest(runtime, result.run_id, [(n, channels[n]) for n in routes["mismatch_digest"]], failures)
    except Exception as exc:  # noqa: BLE001 - notifying must never fail a run that has committed
        log.error("run %s: notifications failed: %s: %s", result.run_id, type(exc).__name__, exc,
                  extra={"run_id": result.run_id})
        failures.append(f"*:{type(exc).__name__}")
    return failures


def _send_digest(runtime: Any, run_id: int, targets: list[tuple[str, dict[str, Any]]], failures: list[str]) -> None:
    with session_factory(runtime.engine)() as session:
        mismatches = new_mismatches(session, run_id)
        if not mismatches:
            return
        org_names = dict(session.execute(select(PartyOrg.code, PartyOrg.name)).all())
        officers = session.execute(
            select(User.username, User.email, User.party_org_code)
            .where(User.role == "officer", User.active.is_(True), User.email.is_not(None),
                   User.party_org_code.is_not(None))).all()
        scoped: list[tuple[str, str, list[Mismatch]]] = []
        affected = {m.party_org_code for m in mismatches} | {m.other_party_org_code for m in mismatches}
        for username, email, root in officers:
            subtree = set(subtree_codes(session, root))
            if not subtree & affected:
                continue
            mine = [m for m in mismatches if m.party_org_code in subtree or m.other_party_org_code in subtree]
            scoped.append((email, root, mine))
    whole = digest_message(run_id, mismatches, org_names)
    for name, channel in targets:
        _try(name, channel, whole, None, failures)
        if channel["type"] != "smtp":
            continue
        for email, root, mine in scoped:
            _try(name, channel, digest_message(run_id, mine, org_names, scope=root), [email], failures)


def _try(name: str, channel: dict[str, Any], message: Message, recipients: list[str] | None,
         failures: list[str]) -> None:
    try:
        send(channel, message, recipients)
        log.info("notified %s: %s", name, message.title)
    except NotifyError as exc:
        failures.append(f"{name}:{message.event}")
        log.warning("notification channel %s (%s) failed: %s", name, message.event, exc)
