"""dualline.yaml: finding, reading and validating the configuration.

The file is found by `--config PATH`, else `$DUALLINE_CONFIG`, else `./dualline.yaml`. `${VAR}` is
replaced from the environment. A bad file fails with the key path and what is wrong, before
anything runs. Each source block is validated by its connector's own schema.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from marshmallow import RAISE, Schema, ValidationError, fields, validate

from connectors import get_connector_class
from connectors.base import SOURCE_NAME_PATTERN
from records.feed import FEED_ENTITIES, SENSITIVE_ENTITIES

DEFAULT_DATABASE = "sqlite:///dualline.db"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file and the key path."""


class GuardSchema(Schema):
    class Meta:
        unknown = RAISE

    max_deactivate_ratio = fields.Float(load_default=0.2, validate=validate.Range(min=0, max=1))
    max_deactivate = fields.Integer(load_default=200, validate=validate.Range(min=0))


class SchedulerSchema(Schema):
    """`scheduler:` — how `dualline scheduler` runs the sources' `schedule:` crons."""

    class Meta:
        unknown = RAISE

    # A run still going after this long is killed (its transaction never commits).
    run_timeout_seconds = fields.Float(load_default=3600.0, validate=validate.Range(min=1))
    # A run lock whose holder stopped renewing it (killed, hung) is free after this long.
    lock_ttl_seconds = fields.Float(load_default=60.0, validate=validate.Range(min=0.5))
    # A fire time missed by at most this much (downtime) still runs — once, however many were missed.
    misfire_grace_seconds = fields.Integer(load_default=3600, validate=validate.Range(min=1))


class WorkersSchema(Schema):
    """`workers:` — Celery workers for distributed runs (`dualline worker`, `sync --distributed`)."""

    class Meta:
        unknown = RAISE

    broker = fields.String(required=True, validate=validate.Regexp(
        r"^(redis|rediss|amqp|amqps|pyamqp)://", error="a redis://… or amqp://… URL"))
    # Default: the Redis broker itself; with RabbitMQ the rpc:// backend (the client's replies).
    result_backend = fields.String(load_default=None)
    # Fetch tasks per paginated pull (page strides); pulls that cannot be split get one.
    partitions = fields.Integer(load_default=4, validate=validate.Range(min=1, max=256))
    queue = fields.String(load_default="dualline", validate=validate.Regexp(r"^[A-Za-z0-9_.:-]+$"))
    # A distributed run's lease on its sources: renewed by whichever task works on the run;
    # a run nobody works on (its worker killed) frees its sources after this long.
    lock_ttl_seconds = fields.Float(load_default=300.0, validate=validate.Range(min=1))


class ChannelSchema(Schema):
    """One notification channel; which keys apply depends on `type` (checked in sync.notify)."""

    class Meta:
        unknown = RAISE

    type = fields.String(required=True, validate=validate.OneOf(("smtp", "wecom_robot", "dingtalk_robot")))
    # smtp
    host = fields.String(load_default=None)
    port = fields.Integer(load_default=None, validate=validate.Range(min=1, max=65535))
    starttls = fields.Boolean(load_default=False)
    ssl = fields.Boolean(load_default=False)
    username = fields.String(load_default=None)
    password = fields.String(load_default=None)
    from_ = fields.String(data_key="from", load_default=None)
    to = fields.List(fields.String(), load_default=list)
    timeout = fields.Float(load_default=10.0, validate=validate.Range(min=0.1))
    # group robots
    webhook = fields.Url(load_default=None, require_tld=False)
    secret = fields.String(load_default=None)


class NotificationsSchema(Schema):
    """`notifications:` — channels, and which events go to which channels."""

    class Meta:
        unknown = RAISE

    channels = fields.Dict(keys=fields.String(), values=fields.Nested(ChannelSchema), load_default=dict)
    on = fields.Dict(keys=fields.String(validate=validate.OneOf(("run_failed", "run_held", "mismatch_digest"))),
                     values=fields.List(fields.String()), load_default=dict)


WEBHOOK_EVENTS = ("changes", "mismatches", "runs")
# Feed entities a webhook may ask for (payroll is never sent: pay is sensitive).
WEBHOOK_ENTITIES = tuple(e for e in FEED_ENTITIES if e not in SENSITIVE_ENTITIES)


class WebhookConfigSchema(Schema):
    """One entry of `webhooks:` — signed POSTs of the change feed and finished runs (sync.webhooks)."""

    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_.-]{1,80}$"))
    url = fields.Url(required=True, schemes={"http", "https"}, require_tld=False)
    secret = fields.String(required=True, validate=validate.Length(min=16))  # ${VAR} keeps it out of the file
    events = fields.List(fields.String(validate=validate.OneOf(WEBHOOK_EVENTS)),
                         load_default=lambda: ["changes", "mismatches"], validate=validate.Length(min=1))
    entities = fields.List(fields.String(validate=validate.OneOf(WEBHOOK_ENTITIES)), load_default=None)
    party_org = fields.String(load_default=None)  # only this party org's subtree
    timeout_seconds = fields.Float(load_default=10.0, validate=validate.Range(min=0.1, max=300))
    max_attempts = fields.Integer(load_default=8, validate=validate.Range(min=1, max=100))
    batch_size = fields.Integer(load_default=500, validate=validate.Range(min=1, max=5000))


class ConfigSchema(Schema):
    class Meta:
        unknown = RAISE

    database = fields.String(load_default=None)
    secret_key = fields.String(load_default=None)
    sources = fields.Dict(keys=fields.String(), values=fields.Dict(), load_default=dict)
    guard = fields.Nested(GuardSchema, load_default=lambda: GuardSchema().load({}))
    # Optional exact party-org name → code map, for rosters that spell a branch differently.
    party_org_names = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    batch_size = fields.Integer(load_default=2000, validate=validate.Range(min=1))
    # Standardization rule thresholds by rule id (defaults from reference/party-rules.md),
    # validated by the rules themselves.
    rules = fields.Dict(keys=fields.String(), values=fields.Dict(), load_default=dict)
    # Points (积分制) schemes and indices, validated by sync.points.PointsSettings.
    points = fields.Dict(load_default=dict)
    scheduler = fields.Nested(SchedulerSchema, load_default=lambda: SchedulerSchema().load({}))
    workers = fields.Nested(WorkersSchema, load_default=None)
    notifications = fields.Nested(NotificationsSchema, load_default=lambda: NotificationsSchema().load({}))
    webhooks = fields.List(fields.Nested(WebhookConfigSchema), load_default=list)


@dataclass
class SourceConfig:
    name: str
    connector: str
    block: dict[str, Any]
    priority: int

    @property
    def provides(self) -> list[str]:
        return list(self.block["provides"])

    @property
    def mapping(self) -> str | None:
        return self.block.get("mapping")


@dataclass
class Config:
    path: Path | None
    database: str
    secret_key: str | None
    sources: dict[str, SourceConfig]
    guard: dict[str, Any]
    party_org_names: dict[str, str] = field(default_factory=dict)
    batch_size: int = 2000
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    points: dict[str, Any] = field(default_factory=dict)
    scheduler: dict[str, Any] = field(default_factory=lambda: SchedulerSchema().load({}))
    workers: dict[str, Any] | None = None
    notifications: dict[str, Any] = field(default_factory=lambda: NotificationsSchema().load({}))
    webhooks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()


def _substitute(value: Any, path: str, where: str) -> Any:
    """Replace ${VAR} (or ${VAR:-default}) in every string of the parsed YAML."""
    if isinstance(value, dict):
        return {k: _substitute(v, f"{path}.{k}" if path else str(k), where) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, f"{path}[{i}]", where) for i, v in enumerate(value)]
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"{where}: {path}: environment variable ${{{name}}} is not set")

        return _VAR.sub(repl, value)
    return value


def _flatten(messages: Any, prefix: str = "") -> list[str]:
    """marshmallow's nested error dict → ["sources.oa.url: Missing data for required field."]."""
    out: list[str] = []
    if isinstance(messages, dict):
        for key, sub in messages.items():
            if isinstance(key, int):
                child = f"{prefix}[{key}]"
            elif key == "_schema":
                child = prefix
            else:
                child = f"{prefix}.{key}" if prefix else str(key)
            out.extend(_flatten(sub, child))
    elif isinstance(messages, list):
        if all(isinstance(m, str) for m in messages):
            out.append(f"{prefix}: {' '.join(messages)}" if prefix else " ".join(messages))
        else:
            for i, sub in enumerate(messages):
                out.extend(_flatten(sub, f"{prefix}[{i}]"))
    else:
        out.append(f"{prefix}: {messages}")
    return out


def find_config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit)
    if os.environ.get("DUALLINE_CONFIG"):
        return Path(os.environ["DUALLINE_CONFIG"])
    return Path("dualline.yaml")


def load_config(explicit: str | os.PathLike[str] | None = None, *, required: bool = True) -> Config:
    """Read, substitute and validate the config file. Raises ConfigError naming the key path."""
    path = find_config_path(explicit)
    if not path.exists():
        if required:
            raise ConfigError(f"{path}: config file not found (use --config PATH or $DUALLINE_CONFIG)")
        return parse_config({}, path=None)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}:{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    return parse_config(raw, path=path)


def parse_config(raw: Any, *, path: Path | None) -> Config:
    where = str(path) if path else "config"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of keys")
    raw = _substitute(raw, "", where)
    try:
        data = ConfigSchema().load(raw)
    except ValidationError as exc:
        raise ConfigError(f"{where}: " + "; ".join(_flatten(exc.messages))) from None

    sources: dict[str, SourceConfig] = {}
    for priority, (name, block) in enumerate(data["sources"].items()):
        key = f"sources.{name}"
        if not re.match(SOURCE_NAME_PATTERN, name):
            raise ConfigError(f"{where}: {key}: source names use letters, digits, - and _ only")
        if not isinstance(block, dict) or "connector" not in block:
            raise ConfigError(f"{where}: {key}.connector: missing (e.g. rest, file)")
        try:
            cls = get_connector_class(str(block["connector"]))
        except KeyError as exc:
            raise ConfigError(f"{where}: {key}.connector: {exc.args[0]}") from None
        try:
            loaded = cls.config_schema().load(block)
        except ValidationError as exc:
            raise ConfigError(f"{where}: " + "; ".join(_flatten(exc.messages, key))) from None
        sources[name] = SourceConfig(name=name, connector=cls.type_name, block=loaded, priority=priority)

    database = os.environ.get("DUALLINE_DATABASE_URL") or data["database"] or DEFAULT_DATABASE
    database = _anchor_sqlite(database, path.parent if path else Path.cwd())
    secret = os.environ.get("DUALLINE_SECRET_KEY") or data["secret_key"]
    return Config(
        path=path,
        database=database,
        secret_key=secret,
        sources=sources,
        guard=data["guard"],
        party_org_names=data["party_org_names"],
        batch_size=data["batch_size"],
        rules=data["rules"],
        points=_valid_points(data["points"], where),
        scheduler=data["scheduler"],
        workers=data["workers"],
        notifications=_checked_notifications(data["notifications"], where),
        webhooks=_unique_webhook_names(data["webhooks"], where),
    )


def _unique_webhook_names(hooks: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    seen: set[str] = set()
    for i, hook in enumerate(hooks):
        if hook["name"] in seen:
            raise ConfigError(f"{where}: webhooks[{i}].name: {hook['name']!r} is used twice")
        seen.add(hook["name"])
    return hooks


def _checked_notifications(block: dict[str, Any], where: str) -> dict[str, Any]:
    """Each channel has the keys its type needs; events name configured channels only."""
    needs = {"smtp": ("host", "from_", "to"), "wecom_robot": ("webhook",), "dingtalk_robot": ("webhook",)}
    for name, channel in block["channels"].items():
        for key in needs[channel["type"]]:
            if not channel.get(key):
                shown = "from" if key == "from_" else key
                raise ConfigError(f"{where}: notifications.channels.{name}.{shown}: required for type {channel['type']}")
    for event, names in block["on"].items():
        unknown = [n for n in names if n not in block["channels"]]
        if unknown:
            raise ConfigError(f"{where}: notifications.on.{event}: unknown channel {', '.join(unknown)}; "
                              f"configured: {', '.join(block['channels']) or 'none'}")
    return block


def _valid_points(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """Fail on a bad `points:` block now, before anything runs (the raw block is kept)."""
    if raw:
        from sync.points import PointsSettings  # sync.points imports this module

        PointsSettings.load(raw, where)
    return raw


def _anchor_sqlite(url: str, base: Path) -> str:
    """A relative SQLite path in the config is relative to the config file, not to the cwd."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////"):
        rel = url[len(prefix):]
        if rel and rel != ":memory:" and not rel.startswith("file:"):
            return prefix + str((base / rel).resolve())
    return url
