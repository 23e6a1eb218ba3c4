"""The `successfactors` preset: SAP SuccessFactors OData v2 (sources.md "SAP SuccessFactors").

    sf:
      connector: successfactors
      base_url: https://api4.successfactors.com/odata/v2
      auth: {type: basic, username: "sfapi@ACMECORP", password: "${SF_PASSWORD}"}
      # or OAuth2: {type: token_endpoint, url: https://api4.successfactors.com/oauth/token,
      #             body: {company_id, client_id, grant_type, assertion}}
      provides: [org_units, staff]
      entities:                                # optional, per kind; defaults shown
        staff: {entity: User}
        org_units: {entity: FODepartment, effective_dated: true}
      as_of_date: 2024-06-30                   # effective-dated entities; default: today
      page_size: 1000                          # optional: customPageSize

Each kind reads one entity set with ``$format=json`` and follows ``d.__next`` (server-side
paging) to the end; each answer is one Page. Deltas: with a cursor the request adds
``$filter=lastModifiedDateTime ge datetime'…'`` and each Page's cursor is the greatest
``lastModifiedDateTime`` seen so far, as ISO 8601 UTC. ``ge``, not ``gt``: records saved in the
same millisecond as the newest one seen must not be skipped; reading that one record again costs
a fingerprint comparison.

`User` returns only active users unless told otherwise, which would make a leaver vanish
instead of showing as left: its default filter asks for every status. Effective-dated entities
(FODepartment) are read ``asOfDate`` the configured or current date, one version per record.

OData errors (``{"error": {"code", "message": {"value"}}}``) become a SourceError carrying the
server's message; ``__metadata`` is dropped from records (it holds URLs, not data).
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from connectors.base import BaseSourceSchema, Page, SourceError
from connectors.http import (
    AuthSchema,
    HttpOptionsSchema,
    body_snippet,
    extract_records,
    parse_json,
    safe_url,
)
from connectors.registry import register
from connectors.rest import DEFAULT_MAX_PAGES, PaginationSchema, RestConnector, make_paginator

KINDS_PROVIDED = ("org_units", "staff")
DEFAULT_ENTITIES: dict[str, dict[str, Any]] = {
    "staff": {"entity": "User",
              # Every status: t/f active/inactive, T/F the same for external users, e/d pending.
              "filter": "status in 't','f','T','F','e','d'"},
    "org_units": {"entity": "FODepartment", "effective_dated": True},
}
MODIFIED_FIELD = "lastModifiedDateTime"
_ODATA_DATE = re.compile(r"/Date\((-?\d+)(?:[+-]\d{4})?\)/")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_CURSOR = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,7})?")


class EntitySchema(Schema):
    """One kind's entity set and query options."""

    class Meta:
        unknown = RAISE

    entity = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z_][A-Za-z0-9_]*$"))
    select = fields.String(load_default=None)
    expand = fields.String(load_default=None)
    filter = fields.String(load_default=None)
    effective_dated = fields.Boolean(load_default=False)
    # Whether the entity has lastModifiedDateTime and so supports deltas.
    incremental = fields.Boolean(load_default=True)


class SuccessFactorsSourceSchema(BaseSourceSchema, HttpOptionsSchema):
    """The `successfactors` source block."""

    provided_kinds = KINDS_PROVIDED

    base_url = fields.Url(required=True, require_tld=False)
    auth = fields.Nested(AuthSchema, required=True)
    entities = fields.Dict(keys=fields.String(validate=validate.OneOf(KINDS_PROVIDED)),
                           values=fields.Dict(), load_default=dict)
    as_of_date = fields.Date(load_default=None)
    page_size = fields.Integer(load_default=None, validate=validate.Range(min=1, max=1000))
    max_pages = fields.Integer(load_default=DEFAULT_MAX_PAGES, validate=validate.Range(min=1))

    @validates_schema
    def _check(self, data: dict[str, Any], **_: Any) -> None:
        auth = data.get("auth") or {}
        if auth.get("type") == "basic" and "@" not in auth.get("username", ""):
            # SuccessFactors wants user@companyId; a bare user name fails with a bare 401.
            raise ValidationError({"auth": {"username": ["SuccessFactors basic auth needs "
                                                         "user@companyId"]}})

    @post_load
    def _entities(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        """Every provided kind's entity block, complete. A block naming no `entity` tunes the
        default entity (its default filter and effective dating stay); naming one starts from
        scratch."""
        entities, errors = {}, {}
        for kind in data["provides"]:
            block = (data.get("entities") or {}).get(kind) or {}
            try:
                entities[kind] = EntitySchema().load(
                    block if "entity" in block else {**DEFAULT_ENTITIES[kind], **block})
            except ValidationError as exc:
                errors[kind] = exc.messages
        if errors:
            raise ValidationError({"entities": errors})
        # The same blocks as `endpoints`, under which RestConnector.read looks a kind up.
        data["entities"] = data["endpoints"] = entities
        return data


def modified_at(value: Any) -> datetime | None:
    """`lastModifiedDateTime` ("/Date(1700000000000+0000)/": epoch ms, UTC) as a datetime."""
    match = _ODATA_DATE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    return _EPOCH + timedelta(milliseconds=int(match[1]))


def _cursor_text(moment: datetime) -> str:
    """An OData datetime literal's body: UTC, milliseconds kept (fits `datetime'…'`)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def odata_error(response: requests.Response, source: str | None) -> SourceError:
    """A SourceError with the OData error message of a 4xx answer."""
    where = safe_url(response.url or "")
    status = response.status_code
    try:
        error = response.json().get("error") or {}
        message = error.get("message")
        text = message.get("value") if isinstance(message, Mapping) else message
        code = error.get("code")
    except (ValueError, AttributeError):
        text, code = body_snippet(response.text or "", 120), None
    error_class = "auth" if status in (401, 403) else "http"
    reason = " ".join(str(part) for part in (code, text) if part) or "no reason given"
    return SourceError(f"HTTP {status} from {where}: {reason}", error_class=error_class,
                       source=source, detail={"status": status, "url": where, "code": code})


@register
class SuccessFactorsConnector(RestConnector):
    """Reads User and FODepartment (or configured entity sets) over OData v2. A REST source
    whose endpoints, paging and deltas are fixed by OData: the session, `check` and `close`
    are the generic connector's."""

    type_name: ClassVar[str] = "successfactors"
    config_schema: ClassVar[type[Schema]] = SuccessFactorsSourceSchema
    default_mapping: ClassVar[str] = "successfactors"

    def is_incremental(self, kind: str) -> bool:
        return bool(self.config["entities"].get(kind, {}).get("incremental"))

    def params(self, entity: Mapping[str, Any], since: str | None) -> dict[str, str]:
        """The query of the first request for `entity` (one `entities` block)."""
        params = {"$format": "json"}
        filters = [entity["filter"]] if entity.get("filter") else []
        if since is not None and entity["incremental"]:
            if not _CURSOR.fullmatch(since):
                # The cursor goes into the filter text: only our own ISO form may.
                raise SourceError(f"cursor {since[:40]!r} is not an ISO date-time; run with --full",
                                  error_class="config")
            filters.append(f"{MODIFIED_FIELD} ge datetime'{since}'")
        if filters:
            params["$filter"] = " and ".join(f"({f})" if len(filters) > 1 else f for f in filters)
        for option in ("select", "expand"):
            if entity.get(option):
                params[f"${option}"] = entity[option]
        if entity["effective_dated"]:
            as_of = self.config.get("as_of_date") or date.today()
            params["asOfDate"] = as_of.isoformat()
        if self.config.get("page_size"):
            params["customPageSize"] = str(self.config["page_size"])
        return params

    def _read(self, entity: Mapping[str, Any], since: str | None) -> Iterator[Page]:
        """One entity set (RestConnector.read picks it from `endpoints` and labels errors)."""
        base = self.config["base_url"].rstrip("/")
        host = urlsplit(base).netloc
        paginator = make_paginator(PaginationSchema().load(
            {"type": "next_link", "next_link_path": "d.__next"}))
        request = paginator.first(f"{base}/{entity['entity']}", self.params(entity, since))
        newest = None
        while request is not None:
            if paginator.pages >= self.config["max_pages"]:
                raise SourceError(f"stopped after {paginator.pages} pages (max_pages)",
                                  error_class="truncated")
            if urlsplit(request.url).netloc != host:
                # A __next pointing elsewhere would carry our credentials to another host.
                raise SourceError(f"__next leads to another host ({safe_url(request.url)})",
                                  error_class="protocol")
            response = self.session.request("GET", request.url, params=request.params or None,
                                            raise_for_status=False)
            if response.status_code >= 400:
                raise odata_error(response, self.name)
            where = safe_url(response.url or request.url)
            body = parse_json(response, source=self.name)
            records = extract_records(body, "d.results", where)
            for record in records:
                record.pop("__metadata", None)
                moment = modified_at(record.get(MODIFIED_FIELD))
                if moment is not None and (newest is None or moment > newest):
                    newest = moment
            request = paginator.advance(request, body, response, records)
            if records:
                cursor = _cursor_text(newest) if newest is not None else since
                yield Page(records, cursor, {"page": paginator.pages, "url": where})
