"""The connector protocol: what every source connector offers the sync engine.

A connector is built from one source's config block in dualline.yaml (already validated by the
connector's own `config_schema`) and streams raw records kind by kind. It never holds a whole
source in memory: `read` yields pages as they arrive.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import requests
import requests.adapters
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

# Canonical entity kinds a source can provide (DESIGN.md "Canonical entity kinds").
KINDS = ("org_units", "staff", "performance", "party_orgs", "party_members", "activities", "payroll",
         "dues_payments")

SOURCE_NAME_PATTERN = r"^[A-Za-z0-9_-]+$"


@dataclass
class Page:
    """One page of raw source records.

    `cursor` is the incremental position reached after this page (a modified-since value or a
    vendor cursor); the engine commits it in the same transaction as the data it covers.
    """

    records: list[dict[str, Any]]
    cursor: str | None = None
    # Free-form facts about the page for progress and error reports (page number, URL, …).
    info: dict[str, Any] = field(default_factory=dict)


class SourceError(Exception):
    """A source could not be read as it should.

    `error_class` classifies the failure for retries, metrics and the run report:
      transport  – connection refused, DNS, timeout, reset (retryable)
      http       – an HTTP error status (5xx and 429 retryable, other 4xx not)
      auth       – credentials refused or token could not be obtained
      protocol   – the answer is not what the source promises (HTML with 200, invalid JSON,
                   records path missing, wrong type)
      truncated  – pagination inconsistent: fewer pages/records than announced, a short page
                   in the middle, a body cut off
      empty      – the source answered with nothing where records were expected and the
                   connector knows that means trouble (e.g. an IP allow-list)
      quota      – a vendor quota is exhausted; retrying will not help today
      config     – the source config cannot work (file missing, unknown kind)
    """

    def __init__(
        self,
        message: str,
        *,
        error_class: str = "transport",
        retryable: bool = False,
        source: str | None = None,
        kind: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_class = error_class
        self.retryable = retryable
        self.source = source
        self.kind = kind
        self.detail = detail or {}

    def __str__(self) -> str:
        where = ":".join(p for p in (self.source, self.kind) if p)
        return f"{where}: {self.message}" if where else self.message


class BaseSourceSchema(Schema):
    """Keys every source block has; connector schemas subclass this and add their own.

    A connector that can only read some kinds (a contacts API has no party rosters) names them
    in `provided_kinds`; `provides` is then checked against it."""

    class Meta:
        unknown = RAISE

    provided_kinds: ClassVar[tuple[str, ...] | None] = None

    connector = fields.String(required=True)
    provides = fields.List(
        fields.String(validate=validate.OneOf(KINDS)), required=True, validate=validate.Length(min=1)
    )
    mapping = fields.String(load_default=None)
    schedule = fields.String(load_default=None)

    @validates_schema
    def _provides_what_the_connector_reads(self, data: dict[str, Any], **_: Any) -> None:
        allowed = self.provided_kinds
        other = [k for k in data.get("provides", ()) if allowed is not None and k not in allowed]
        if other:
            raise ValidationError({"provides": [
                f"{data.get('connector')} provides {' and '.join(allowed or ())} only, not {', '.join(other)}"]})


class Connector:
    """Base class of all connectors.

    Subclasses set `type_name`, `config_schema` and `secret_fields` (dotted key paths into the
    source block whose values must never be printed, e.g. ``"auth.token"``) and implement `read`.
    """

    type_name: ClassVar[str] = ""
    config_schema: ClassVar[type[Schema]] = BaseSourceSchema
    secret_fields: ClassVar[tuple[str, ...]] = ()
    # Builtin mapping used when the source block names none.
    default_mapping: ClassVar[str] = "canonical"
    # Whether `read(kind, since=...)` can pull only what changed since a cursor.
    supports_incremental: ClassVar[bool] = False
    # Whether a large pull's page generator may be continued in a forked child process
    # (sync.read_ahead): true for connectors whose only connections are HTTP sessions, which
    # `forget_connections` replaces in the child.
    read_ahead: ClassVar[bool] = False

    def __init__(self, name: str, config: dict[str, Any], *, base_dir: Path | None = None) -> None:
        self.name = name
        self.config = config
        # Relative paths in the config are relative to the config file's folder.
        self.base_dir = base_dir or Path.cwd()

    @property
    def kinds(self) -> list[str]:
        return list(self.config["provides"])

    def is_incremental(self, kind: str) -> bool:
        """Whether `read(kind, since=…)` really pulls only changes (else `since` is ignored and
        every read is full, which is what lets the engine detect deletions)."""
        return self.supports_incremental

    def read(self, kind: str, *, since: str | None = None) -> Iterator[Page]:
        """Yield pages of raw records of `kind`.

        `since=None` is a full pull: everything the source has, which is what lets the engine
        detect deletions. Otherwise only what changed since that cursor.
        Raise `SourceError` on any failure; never yield a partial page as if it were whole.
        """
        raise NotImplementedError

    def forget_connections(self) -> None:
        """In a forked child: stop sharing the parent's pooled HTTP connections, so the child's
        requests open their own and the parent's stay as they were (dropping a copied socket in
        the child does not close the parent's connection)."""
        for value in vars(self).values():
            if isinstance(value, requests.Session):
                for prefix in list(value.adapters):
                    value.mount(prefix, requests.adapters.HTTPAdapter())

    def check(self) -> None:
        """Test connectivity and auth cheaply; raise SourceError when it fails."""

    def close(self) -> None:
        """Release sessions, files, connections."""

    def __enter__(self) -> "Connector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
