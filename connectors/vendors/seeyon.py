"""The `seeyon` preset: 致远 Seeyon A8 REST (`…/seeyon/rest/…`, sources.md "致远 Seeyon A8 REST").

    oa:
      connector: seeyon
      base_url: http://oa.example.com/seeyon/rest
      user_name: dualline                # a REST user created in the A8 back office
      password: "${SEEYON_PASSWORD}"
      account_id: "670869647114347"      # 单位 id (orgAccountId); the company root
      provides: [org_units, staff]

A token comes from ``POST {base_url}/token {"userName", "password"}`` (the answer's ``id``) and
rides in the ``token`` header; an invalid or expired token (401 ``{"code": "1010"}``) is fetched
anew once. ``GET orgDepartments/all/{account_id}`` and ``GET orgMembers/all/{account_id}`` answer
whole arrays (no paging); they are yielded in pages of `chunk_size` so the engine's batching and
progress work as for paged sources.

Records keep the vendor's fields and gain a few derived ones, prefixed ``dl_`` so they never
collide with Seeyon's: org units ``dl_parent_code`` (from ``superior``, else from the ``path``
code of the parent), ``dl_kind`` and ``dl_status``; staff ``dl_employment_status``. The account
itself (``GET orgAccount/{account_id}``, or `account_name` without the call) is the company
root, code = its id: Seeyon ids are one id space, so department ids stay bare (DESIGN.md) and
top-level departments, whose ``superior`` is the account id, hang below it.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from marshmallow import Schema, ValidationError, fields, validate

from connectors.base import BaseSourceSchema, Page, SourceError
from connectors.http import (
    AuthSchema,
    HttpOptionsSchema,
    HttpSession,
    build_session,
    extract_records,
    safe_url,
)
from connectors.registry import register
from connectors.rest import RestConnector

KINDS_PROVIDED = ("org_units", "staff")
# The error code A8 answers for a missing, invalid or expired token.
INVALID_TOKEN_CODE = "1010"
# A8 paths are 4-digit segments per level ("0000" + "0001" + …): the parent's path is the
# child's without its last segment.
PATH_SEGMENT = 4
# V3xOrgMember.state: 1 在职, 2 离职.
MEMBER_STATE_LEFT = ("2",)


class IdField(fields.Field):
    """A Seeyon id: YAML reads a bare 19-digit id as an int, the API sends it as text."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip():
            raise ValidationError("an id (digits), e.g. \"670869647114347\"")
        return str(value).strip()


class SeeyonSourceSchema(BaseSourceSchema, HttpOptionsSchema):
    """The `seeyon` source block."""

    provided_kinds = KINDS_PROVIDED

    base_url = fields.Url(required=True, require_tld=False)
    user_name = fields.String(required=True, validate=validate.Length(min=1))
    password = fields.String(required=True, validate=validate.Length(min=1))
    account_id = IdField(required=True)
    # Name of the company root; when given, orgAccount/{id} is not asked (a REST user may lack
    # the right to read accounts).
    account_name = fields.String(load_default=None)
    chunk_size = fields.Integer(load_default=1000, validate=validate.Range(min=1))


def _enabled(value: Any) -> bool:
    """Seeyon's booleans come as true/false, "true"/"false" or 1/0 depending on the version."""
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "")
    return value is None or bool(value)


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def department_records(departments: list[dict[str, Any]], account_id: str) -> None:
    """Add the derived fields to department records in place (module docstring)."""
    by_path = {str(d["path"]): str(d["id"]) for d in departments if d.get("path") and d.get("id")}
    for dept in departments:
        parent = _text(dept.get("superior"))
        if parent is None or parent == "-1":
            path = str(dept.get("path") or "")
            parent = by_path.get(path[:-PATH_SEGMENT]) if len(path) > PATH_SEGMENT else None
        dept["dl_parent_code"] = parent or account_id
        dept["dl_kind"] = "department"
        alive = _enabled(dept.get("enabled")) and not _deleted(dept)
        dept["dl_status"] = "active" if alive else "dissolved"


def _deleted(record: Mapping[str, Any]) -> bool:
    value = record.get("isDeleted")
    return value is not None and _enabled(value)


def member_record(member: dict[str, Any]) -> dict[str, Any]:
    """Add `dl_employment_status` to a member in place: left when disabled, deleted or 离职.

    `orgMembers/all` includes disabled members in some versions and not in others; either way a
    member who is gone ends as left (or is deactivated by the engine when no longer listed).
    """
    gone = (not _enabled(member.get("enabled")) or _deleted(member)
            or str(member.get("state") or "") in MEMBER_STATE_LEFT)
    member["dl_employment_status"] = "left" if gone else "active"
    return member


@register
class SeeyonConnector(RestConnector):
    """Reads departments and members of one Seeyon A8 account. A REST source with a fixed
    login and fixed endpoints: `check` and `close` are the generic connector's."""

    type_name: ClassVar[str] = "seeyon"
    config_schema: ClassVar[type[Schema]] = SeeyonSourceSchema
    secret_fields: ClassVar[tuple[str, ...]] = ("password", "headers")
    default_mapping: ClassVar[str] = "seeyon"
    supports_incremental: ClassVar[bool] = False

    def is_incremental(self, kind: str) -> bool:
        return False  # whole arrays, no modified-since: every read is full

    @property
    def base(self) -> str:
        return self.config["base_url"].rstrip("/")

    @property
    def session(self) -> HttpSession:  # the login is fixed by A8, not configured
        if self._session is None:
            cfg = self.config
            # Seeyon's login is a token endpoint like any other: the shared session fetches,
            # caches and (on 401) renews it.
            auth = AuthSchema().load({
                "type": "token_endpoint", "url": f"{self.base}/token", "body_format": "json",
                "body": {"userName": cfg["user_name"], "password": cfg["password"]},
                "token_path": "id", "header": "token",
            })
            self._session = build_session({**cfg, "auth": auth}, source=self.name)
        return self._session

    def _get(self, path: str) -> Any:
        """GET `path` below base_url as JSON, renewing the token once when A8 says 1010 with
        status 200 (some gateways rewrite the 401)."""
        url = f"{self.base}/{path}"
        body = self.session.get_json(url)
        if self._invalid_token(body):
            self.session.authenticator.refresh()
            body = self.session.get_json(url)
            if self._invalid_token(body):
                raise SourceError(f"{safe_url(url)} refused the token twice (code "
                                  f"{INVALID_TOKEN_CODE}); check user_name, password and the "
                                  f"REST user's rights", error_class="auth", source=self.name)
        return body

    @staticmethod
    def _invalid_token(body: Any) -> bool:
        return isinstance(body, Mapping) and str(body.get("code")) == INVALID_TOKEN_CODE

    def _list(self, path: str) -> list[dict[str, Any]]:
        return extract_records(self._get(path), "", safe_url(f"{self.base}/{path}"))

    def _account_root(self) -> dict[str, Any]:
        account_id = self.config["account_id"]
        record: dict[str, Any] = {"id": account_id, "name": self.config.get("account_name")}
        if not record["name"]:
            account = self._get(f"orgAccount/{account_id}")
            if not isinstance(account, Mapping) or not account.get("name"):
                raise SourceError(f"orgAccount/{account_id} answered no account name; check "
                                  f"account_id or set account_name", error_class="protocol",
                                  source=self.name)
            record.update(account)
        record.update(dl_parent_code=None, dl_kind="company", dl_status="active")
        return record

    def read(self, kind: str, *, since: str | None = None) -> Iterator[Page]:
        account_id = self.config["account_id"]
        try:
            if kind == "org_units":
                departments = self._list(f"orgDepartments/all/{account_id}")
                department_records(departments, account_id)
                records = [self._account_root(), *departments]
                path = "orgDepartments/all"
            elif kind == "staff":
                records = [member_record(m) for m in self._list(f"orgMembers/all/{account_id}")]
                path = "orgMembers/all"
            else:
                raise SourceError(f"seeyon does not provide {kind}", error_class="config")
        except SourceError as exc:
            exc.source = exc.source or self.name
            exc.kind = exc.kind or kind
            raise
        size = self.config["chunk_size"]
        for start in range(0, len(records), size):
            yield Page(records[start:start + size], None,
                       {"page": start // size + 1, "url": path})
