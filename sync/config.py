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
    scheduler = fields.Nested(SchedulerSchema, load_default=lambda: SchedulerSchema().load({}))


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
    scheduler: dict[str, Any] = field(default_factory=lambda: SchedulerSchema().load({}))

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
        scheduler=data["scheduler"],
    )


def _anchor_sqlite(url: str, base: Path) -> str:
    """A relative SQLite path in the config is relative to the config file, not to the cwd."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////"):
        rel = url[len(prefix):]
        if rel and rel != ":memory:" and not rel.startswith("file:"):
            return prefix + str((base / rel).resolve())
    return url
