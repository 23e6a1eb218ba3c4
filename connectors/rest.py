"""The generic `rest` connector: any JSON-over-HTTP source described in dualline.yaml.

Declarative, in the manner of the Singer SDK: a stream (one kind) is an endpoint `path`, a
`records_path` into each answer and a paginator. Paginators are small classes that compute the
next request from the answer and check the answer is whole; a page that would make the pull
incomplete raises SourceError(error_class="truncated") *before* it is yielded, so the engine
never commits a partial pull as if it were the whole source.

    hr:
      connector: rest
      url: http://hr.example.com/api
      auth: {type: bearer, token: "${HR_TOKEN}"}
      provides: [org_units, staff]
      endpoints:
        org_units: {path: /org_units, records_path: data}
        staff: {path: /staff, records_path: data, incremental_param: modified_since,
                cursor_field: modified}
      pagination: {type: page_number, page_param: page, size_param: page_size, page_size: 500,
                   start: 1, total_pages_path: total_pages}
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urljoin

import requests
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from connectors.base import KINDS, BaseSourceSchema, Connector, Page, SourceError
from connectors.http import (
    MISSING,
    AuthSchema,
    HttpOptionsSchema,
    HttpSession,
    build_session,
    extract_records,
    get_path,
    parse_json,
    safe_url,
)
from connectors.registry import register

PAGINATION_TYPES = ("none", "page_number", "offset", "cursor", "next_link")
LINK_HEADER = "link-header"
DEFAULT_MAX_PAGES = 100_000


# --------------------------------------------------------------------------- config schema


class PaginationSchema(Schema):
    """`pagination:` at source level or per endpoint (the endpoint's wins)."""

    class Meta:
        unknown = RAISE

    type = fields.String(load_default="none", validate=validate.OneOf(PAGINATION_TYPES))
    page_param = fields.String(load_default="page")
    # page_number sends "page_size" unless told otherwise; cursor sends a size only if set.
    size_param = fields.String(load_default=None)
    page_size = fields.Integer(load_default=100, validate=validate.Range(min=1))
    # First page number (page_number, default 1), first offset (offset, default 0) or first
    # cursor value (cursor, e.g. DingTalk's 0; default: no cursor on the first request).
    start = fields.Raw(load_default=None)
    total_pages_path = fields.String(load_default=None)
    total_records_path = fields.String(load_default=None)
    offset_param = fields.String(load_default="offset")
    limit_param = fields.String(load_default="limit")
    cursor_param = fields.String(load_default="cursor")
    cursor_path = fields.String(load_default=None)
    # Optional stop flag for cursor paging (DingTalk result.has_more, Feishu data.has_more).
    has_more_path = fields.String(load_default=None)
    next_link_path = fields.String(load_default=None)
    max_pages = fields.Integer(load_default=DEFAULT_MAX_PAGES, validate=validate.Range(min=1))

    @validates_schema
    def _required_per_type(self, data: dict[str, Any], **_: Any) -> None:
        needs = {"cursor": "cursor_path", "next_link": "next_link_path"}.get(data["type"])
        if needs and not data.get(needs):
            raise ValidationError({needs: [f"required for pagination type {data['type']}"]})


class EndpointSchema(Schema):
    """One stream: `endpoints: {kind: {path, records_path, …}}`."""

    class Meta:
        unknown = RAISE

    path = fields.String(required=True)
    # Dotted path to the record list in each answer; empty means the answer is the list.
    records_path = fields.String(load_default="")
    incremental_param = fields.String(load_default=None)
    # Record field whose maximum becomes the page cursor (e.g. "modified").
    cursor_field = fields.String(load_default=None)
    params = fields.Dict(keys=fields.String(), load_default=dict)
    method = fields.String(load_default="GET", validate=validate.OneOf(("GET", "POST")))
    # Where params go: the query string (default for GET) or a JSON / form body (POST).
    param_location = fields.String(load_default=None,
                                   validate=validate.OneOf(("query", "json", "form")))
    pagination = fields.Nested(PaginationSchema, load_default=None)


class RestSourceSchema(BaseSourceSchema, HttpOptionsSchema):
    """The `rest` source block (DESIGN.md "The generic rest source")."""

    url = fields.Url(required=True, require_tld=False)
    auth = fields.Nested(AuthSchema, load_default=None)
    endpoints = fields.Dict(keys=fields.String(validate=validate.OneOf(KINDS)),
                            values=fields.Nested(EndpointSchema), required=True)
    pagination = fields.Nested(PaginationSchema, load_default=None)

    @validates_schema
    def _endpoint_per_kind(self, data: dict[str, Any], **_: Any) -> None:
        missing = [k for k in data.get("provides", ()) if k not in data.get("endpoints", {})]
        if missing:
            raise ValidationError({"endpoints": [f"no endpoint for {', '.join(missing)}"]})


# --------------------------------------------------------------------------- paginators


@dataclass
class PageRequest:
    url: str
    params: dict[str, Any] = field(default_factory=dict)


def _truncated(message: str, **detail: Any) -> SourceError:
    return SourceError(message, error_class="truncated", detail=detail)


def _protocol(message: str, **detail: Any) -> SourceError:
    return SourceError(message, error_class="protocol", detail=detail)


class Paginator:
    """No pagination: one request. Subclasses add the paging parameters and checks.

    `first` builds the first request; `advance` inspects an answer and returns the next request
    or None when the stream is complete, raising SourceError when the answer shows the stream
    cannot be read whole.
    """

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        self.cfg = cfg
        self.pages = 0
        self.received = 0

    def first(self, url: str, params: dict[str, Any]) -> PageRequest:
        return PageRequest(url, dict(params))

    def advance(self, request: PageRequest, body: Any, response: requests.Response,
                records: list[dict[str, Any]]) -> PageRequest | None:
        self.pages += 1
        self.received += len(records)
        return self._next(request, body, response, records)

    def _next(self, request: PageRequest, body: Any, response: requests.Response,
              records: list[dict[str, Any]]) -> PageRequest | None:
        return None


class _CountingPaginator(Paginator):
    """Shared by page_number and offset: fixed-size pages, optional announced totals.

    With a total (pages or records) the paginator knows how many pages to expect, so an empty or
    short page before the last one, or a record count that differs from the announced total,
    means the pull is incomplete. Without a total, a short page ends the stream.
    """

    position_param = ""
    default_start = 0

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        super().__init__(cfg)
        self.page_size: int = cfg["page_size"]
        self.start: int = int(cfg["start"]) if cfg.get("start") is not None else self.default_start
        self.total_pages: int | None = None
        self.total_records: int | None = None

    def first(self, url: str, params: dict[str, Any]) -> PageRequest:
        return PageRequest(url, {**params, **self._params(0)})

    def _params(self, page_index: int) -> dict[str, Any]:
        raise NotImplementedError

    def _total(self, body: Any, key: str) -> int | None:
        path = self.cfg.get(key)
        if not path:
            return None
        value = get_path(body, path)
        try:
            return int(value)
        except (TypeError, ValueError):
            raise _protocol(f"{key} {path!r} is not a number in the answer "
                            f"({'absent' if value is MISSING else repr(value)[:40]})") from None

    def _next(self, request: PageRequest, body: Any, response: requests.Response,
              records: list[dict[str, Any]]) -> PageRequest | None:
        if self.pages == 1:
            # Totals of the first answer: a source that grows during the pull must not move the
            # goalposts; a changed count then shows as a mismatch at the end.
            self.total_pages = self._total(body, "total_pages_path")
            self.total_records = self._total(body, "total_records_path")
        expected = self.total_pages
        if expected is None and self.total_records is not None:
            expected = math.ceil(self.total_records / self.page_size)
        short = len(records) < self.page_size
        if expected is None:
            return None if short else PageRequest(request.url, {**request.params,
                                                                **self._params(self.pages)})
        if self.pages < expected:
            if short:
                raise _truncated(
                    f"page {self.pages} of {expected} has {len(records)} records, expected "
                    f"{self.page_size}; the server may cap page_size (lower it) or the source "
                    f"changed during the pull", page=self.pages, expected_pages=expected)
            return PageRequest(request.url, {**request.params, **self._params(self.pages)})
        if self.total_records is not None and self.received != self.total_records:
            raise _truncated(
                f"received {self.received} records, the source announced {self.total_records}",
                received=self.received, announced=self.total_records)
        return None


class PageNumberPaginator(_CountingPaginator):
    default_start = 1

    def _params(self, page_index: int) -> dict[str, Any]:
        return {self.cfg.get("page_param") or "page": self.start + page_index,
                self.cfg.get("size_param") or "page_size": self.page_size}


class OffsetPaginator(_CountingPaginator):
    def _params(self, page_index: int) -> dict[str, Any]:
        return {self.cfg.get("offset_param") or "offset": self.start + page_index * self.page_size,
                self.cfg.get("limit_param") or "limit": self.page_size}


class _TokenPaginator(Paginator):
    """Shared by cursor and next_link: the answer names the next page; the same name twice
    would loop forever."""

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        super().__init__(cfg)
        self.seen: set[str] = set()

    def _remember(self, token: str, what: str) -> None:
        if token in self.seen:
            raise _protocol(f"the source returned the same {what} twice after page {self.pages}; "
                            f"it would loop forever", page=self.pages)
        self.seen.add(token)


class CursorPaginator(_TokenPaginator):
    def first(self, url: str, params: dict[str, Any]) -> PageRequest:
        params = dict(params)
        if self.cfg.get("size_param"):
            params[self.cfg["size_param"]] = self.cfg["page_size"]
        if self.cfg.get("start") is not None:
            params[self.cfg["cursor_param"]] = self.cfg["start"]
        return PageRequest(url, params)

    def _next(self, request: PageRequest, body: Any, response: requests.Response,
              records: list[dict[str, Any]]) -> PageRequest | None:
        cursor = get_path(body, self.cfg["cursor_path"], None)
        has_more_path = self.cfg.get("has_more_path")
        if has_more_path:
            has_more = get_path(body, has_more_path, False)
            if not has_more:
                return None
            if cursor in (None, ""):
                raise _protocol(f"{has_more_path!r} says more pages follow but "
                                f"{self.cfg['cursor_path']!r} holds no cursor")
        elif cursor in (None, "") or not records:
            return None
        self._remember(str(cursor), "cursor")
        return PageRequest(request.url, {**request.params, self.cfg["cursor_param"]: cursor})


class NextLinkPaginator(_TokenPaginator):
    def _next(self, request: PageRequest, body: Any, response: requests.Response,
              records: list[dict[str, Any]]) -> PageRequest | None:
        path = self.cfg["next_link_path"]
        if path == LINK_HEADER:
            link = response.links.get("next", {}).get("url")
        else:
            link = get_path(body, path, None)
        if not link:
            return None
        if not isinstance(link, str):
            raise _protocol(f"next_link_path {path!r} is a {type(link).__name__}, not a URL")
        # The link carries the query of the next page itself: send no params of our own.
        link = urljoin(response.url or request.url, link)
        self._remember(link, "next link")
        return PageRequest(link, {})


PAGINATORS: dict[str, type[Paginator]] = {
    "none": Paginator,
    "page_number": PageNumberPaginator,
    "offset": OffsetPaginator,
    "cursor": CursorPaginator,
    "next_link": NextLinkPaginator,
}


def make_paginator(cfg: Mapping[str, Any] | None) -> Paginator:
    """The paginator for a loaded `pagination` block (None → one request)."""
    cfg = cfg or PaginationSchema().load({})
    return PAGINATORS[cfg["type"]](cfg)


# --------------------------------------------------------------------------- the connector


def _later(a: Any, b: Any) -> Any:
    """The later of two cursor values: numbers numerically (epoch ms), else as strings (ISO
    dates and "YYYY-MM-DD HH:MM:SS" sort correctly as text)."""
    if a is None:
        return b
    if b is None:
        return a
    try:
        return a if float(a) >= float(b) else b
    except (TypeError, ValueError):
        return a if str(a) >= str(b) else b


def _latest(cursor: Any, values: Iterable[Any]) -> Any:
    """`_later` folded over `values` from `cursor`, with the same answer, at a fraction of the cost.

    The fold tries `float()` on every record's value, and on a date-time that fails with an
    exception: ~1 CPU-second over a million staff. A page's values are nearly always all
    numbers or all text no number can be read from (a ':', or a '-' past the first character
    without an exponent: an ISO date or date-time). Either way one rule compares every pair,
    so one max() gives the fold's answer (the first of equal values, as the fold keeps it).
    Anything else (a mix, a NaN) takes the fold itself."""
    present = [value for value in values if value is not None]
    if cursor is not None:
        present.insert(0, cursor)
    if len(present) < 2:
        return present[0] if present else None
    if all(value.__class__ is str and (":" in value or ("-" in value.lstrip()[1:] and "e" not in value
                                                          and "E" not in value)) for value in present):
        return max(present)
    try:
        numbers = [float(value) for value in present]
    except (TypeError, ValueError):
        numbers = []
    if numbers and not any(number != number for number in numbers):  # NaN: compares false both ways
        return present[numbers.index(max(numbers))]
    latest = None
    for value in present:
        latest = _later(latest, value)
    return latest


def _digest(records: list[dict[str, Any]]) -> str:
    """Identity of a page for the repeated-page check: its size and its first and last records
    (hashing every record would cost as much as the sync's own fingerprinting)."""
    return hashlib.sha1(repr((len(records), records[0], records[-1])).encode()).hexdigest()


@register
class RestConnector(Connector):
    """Reads JSON records from a REST API, one Page per HTTP page."""

    type_name: ClassVar[str] = "rest"
    config_schema: ClassVar[type[Schema]] = RestSourceSchema
    secret_fields: ClassVar[tuple[str, ...]] = (
        "auth.token", "auth.password", "auth.client_secret", "auth.body", "auth.params",
        "headers",
    )
    supports_incremental: ClassVar[bool] = True
    read_ahead: ClassVar[bool] = True

    def __init__(self, name: str, config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(name, config, **kwargs)
        self._session: HttpSession | None = None

    @property
    def session(self) -> HttpSession:
        if self._session is None:
            self._session = build_session(self.config, source=self.name)
        return self._session

    def is_incremental(self, kind: str) -> bool:
        endpoint = self.config["endpoints"].get(kind) or {}
        return bool(endpoint.get("incremental_param"))

    def read(self, kind: str, *, since: str | None = None) -> Iterator[Page]:
        endpoint = self.config["endpoints"].get(kind)
        if endpoint is None:
            raise SourceError(f"no endpoint configured for {kind}", error_class="config",
                              source=self.name, kind=kind)
        try:
            yield from self._read(endpoint, since)
        except SourceError as exc:
            exc.source = exc.source or self.name
            exc.kind = exc.kind or kind
            raise

    def _read(self, endpoint: Mapping[str, Any], since: str | None) -> Iterator[Page]:
        pagination = endpoint.get("pagination") or self.config.get("pagination")
        paginator = make_paginator(pagination)
        max_pages = paginator.cfg["max_pages"]
        params = dict(endpoint.get("params") or {})
        if since is not None and endpoint.get("incremental_param"):
            params[endpoint["incremental_param"]] = since
        url = self.config["url"].rstrip("/") + "/" + endpoint["path"].lstrip("/")
        request: PageRequest | None = paginator.first(url, params)
        cursor_field = endpoint.get("cursor_field")
        cursor = since if cursor_field else None
        previous = None
        while request is not None:
            if paginator.pages >= max_pages:
                raise _truncated(f"stopped after {max_pages} pages (pagination.max_pages); raise "
                                 f"it if the source really is that large", pages=paginator.pages)
            response = self.session.request(endpoint["method"], request.url,
                                            **self._payload(endpoint, request.params))
            where = safe_url(response.url or request.url)
            body = parse_json(response, source=self.name)
            records = extract_records(body, endpoint.get("records_path") or "", where)
            if records:
                # A server that ignores the page parameter serves page 1 forever.
                digest = _digest(records)
                if digest == previous:
                    raise _protocol(f"page {paginator.pages + 1} from {where} repeats the previous "
                                    f"page; does the server honour the paging parameters?")
                previous = digest
            request = paginator.advance(request, body, response, records)
            if cursor_field:
                cursor = _latest(cursor, [record.get(cursor_field) for record in records])
            if records:
                yield Page(records, None if cursor is None else str(cursor),
                           {"page": paginator.pages, "url": where})

    @staticmethod
    def _payload(endpoint: Mapping[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        location = endpoint.get("param_location") or (
            "query" if endpoint["method"] == "GET" else "json")
        if location == "query":
            return {"params": params or None}
        return {"json" if location == "json" else "data": params}

    def check(self) -> None:
        pages = self.read(self.kinds[0])
        try:
            next(pages, None)
        finally:
            pages.close()

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
