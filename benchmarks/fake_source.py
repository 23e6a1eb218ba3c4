"""A local paginated REST source serving an `Enterprise` in canonical field names.

    with FakeSource(enterprise) as source:
        requests.get(f"{source.url}/staff", params={"page": 1, "page_size": 500}).json()
        # {"data": [...], "page": 1, "total_pages": 4, "total": 2000}

Routes: ``GET /org_units``, ``/staff``, ``/party_orgs`` (``covers`` as a ';'-joined string),
``/party_members``, ``/performance`` with ``page`` (from 1) and ``page_size`` (default 1000).
With ``incremental=True`` every record carries ``modified`` (when it last changed: records that
`Enterprise.mutate` left alone keep their stamp) and ``modified_since=…`` lists only the records
modified after that stamp, as a source with a delta API does. The
pages are serialized to bytes up front (and again after `Enterprise.mutate`), so a benchmark
measures the engine, not this server. `fail()` injects the faults real sources show: an HTML
error page with status 200, a body cut off mid-JSON, a short page, an empty answer, a 500.
"""
from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from benchmarks.answer_key import Record
from benchmarks.enterprise import KINDS, Enterprise
from benchmarks.local_server import LocalHttpServer

FAILURE_MODES = ("html", "truncate", "short", "empty", "error")
MAX_PAGE_SIZE = 10_000
HTML_ERROR = (b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
              b"<body><h1>502 Bad Gateway</h1><p>The upstream server is unavailable.</p></body></html>")


def _wire(kind: str, record: Record) -> Record:
    """A record as the REST source sends it: canonical, with list fields ';'-joined."""
    if kind == "party_orgs":
        return {**record, "covers": ";".join(record["covers"])}
    return record


def _digest(kind: str, record: Record) -> str:
    """What identifies a record's content (for its `modified` stamp)."""
    return kind + hashlib.blake2b(json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8"),
                                  digest_size=16).hexdigest()


def _body(data: list[Record], page: int, total_pages: int, total: int) -> bytes:
    return json.dumps({"data": data, "page": page, "total_pages": total_pages, "total": total},
                      ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class _Pages:
    """Pre-serialized pages of every kind for one page size (`stamp`: the `modified` stamp of
    each wire record, for an incremental source)."""

    def __init__(self, enterprise: Enterprise, page_size: int,
                 stamp: Callable[[str, Record], str] | None = None) -> None:
        self.page_size = page_size
        self.bodies: dict[str, list[bytes]] = {}
        self.records: dict[str, list[list[Record]]] = {}
        self.totals: dict[str, int] = {}
        for kind in KINDS:
            records = [_wire(kind, r) for r in enterprise.records(kind)]
            if stamp is not None:
                records = [{**r, "modified": stamp(kind, r)} for r in records]
            chunks = [records[i:i + page_size] for i in range(0, len(records), page_size)]
            self.records[kind] = chunks
            self.totals[kind] = len(records)
            self.bodies[kind] = [_body(c, n, len(chunks), len(records)) for n, c in enumerate(chunks, 1)]

    def body(self, kind: str, page: int) -> bytes:
        bodies = self.bodies[kind]
        if 1 <= page <= len(bodies):
            return bodies[page - 1]
        return _body([], page, len(bodies), self.totals[kind])  # past the end: an empty page


class FakeSource(LocalHttpServer):
    """A threaded HTTP server on localhost serving one enterprise; a context manager.

    `url` is the base URL once started. `hits` counts requests per kind. The server notices
    `Enterprise.mutate` (the enterprise's `version`) and re-serializes on the next request.
    """

    thread_name = "fake-source"

    def __init__(self, enterprise: Enterprise, page_size: int = 1000, host: str = "127.0.0.1", port: int = 0,
                 incremental: bool = False) -> None:
        self.enterprise = enterprise
        self.default_page_size = page_size
        self.incremental = incremental
        self.hits: Counter[str] = Counter()
        super().__init__(host, port)
        self._lock = threading.Lock()
        self._pages: dict[int, _Pages] = {}
        self._version = -1
        self._failures: dict[tuple[str, int | None], list[Any]] = {}
        # Incremental: each record's `modified` stamp, by the digest of its content, so that a
        # record mutate() left alone keeps it; and the delta pages served per (kind, since, size).
        self._stamps: dict[str, str] = {}
        self._deltas: dict[tuple[str, str, int], tuple[list[bytes], int]] = {}

    # ------------------------------------------------------------------ lifecycle
    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _handler_for(self)

    def before_start(self) -> None:
        self.pages(self.default_page_size)  # serialize before the first request arrives

    # ------------------------------------------------------------------ data and faults
    def pages(self, page_size: int) -> _Pages:
        """The serialized pages for `page_size`, rebuilt when the enterprise has changed."""
        with self._lock:
            if self._version != self.enterprise.version:
                self._pages.clear()
                self._deltas.clear()
                self._version = self.enterprise.version
                if self.incremental:
                    self._restamp()
            if page_size not in self._pages:
                self._pages[page_size] = _Pages(self.enterprise, page_size,
                                                self._stamp_of if self.incremental else None)
            return self._pages[page_size]

    def _restamp(self) -> None:
        """Records whose content is new in this version of the enterprise get its stamp."""
        now = f"2026-01-01T00:{self._version // 60 % 60:02d}:{self._version % 60:02d}"
        stamps: dict[str, str] = {}
        for kind in KINDS:
            for record in self.enterprise.records(kind):
                digest = _digest(kind, _wire(kind, record))
                stamps[digest] = self._stamps.get(digest, now)
        self._stamps = stamps

    def _stamp_of(self, kind: str, record: Record) -> str:
        return self._stamps[_digest(kind, record)]

    def delta(self, kind: str, since: str, page: int, page_size: int) -> bytes:
        """A page of the records of `kind` modified after `since`."""
        pages = self.pages(page_size)
        with self._lock:
            key = (kind, since, page_size)
            if key not in self._deltas:
                changed = [r for chunk in pages.records[kind] for r in chunk if r["modified"] > since]
                chunks = [changed[i:i + page_size] for i in range(0, len(changed), page_size)]
                self._deltas[key] = ([_body(c, n, len(chunks), len(changed)) for n, c in enumerate(chunks, 1)],
                                     len(changed))
            bodies, total = self._deltas[key]
        if 1 <= page <= len(bodies):
            return bodies[page - 1]
        return _body([], page, len(bodies), total)  # past the end (or nothing changed): an empty page

    def fail(self, kind: str, mode: str, page: int | None = None, times: int | None = None) -> None:
        """Make `kind` misbehave on `page` (every page when None), `times` times (forever when None).

        Modes: ``html`` an HTML error page with status 200; ``truncate`` the JSON body cut in half;
        ``short`` half the page's records with the totals unchanged; ``empty`` no records (with
        page None the whole kind answers total 0, like a source that lost its data); ``error``
        status 500 with a JSON error body.
        """
        if kind not in KINDS or mode not in FAILURE_MODES:
            raise ValueError(f"unknown kind or mode: {kind!r}, {mode!r}")
        with self._lock:
            self._failures[(kind, page)] = [mode, times]

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def _failure(self, kind: str, page: int) -> tuple[str, bool] | None:
        """The fault to inject for this request, and whether it applies to the whole kind."""
        with self._lock:
            for key in ((kind, page), (kind, None)):
                entry = self._failures.get(key)
                if entry is not None:
                    mode, times = entry
                    if times is not None:
                        entry[1] = times - 1
                        if entry[1] <= 0:
                            del self._failures[key]
                    return mode, key[1] is None
        return None

    def respond(self, kind: str, page: int, page_size: int, since: str | None = None) -> tuple[int, str, bytes]:
        """(status, content type, body) for one page request (`since`: `modified_since`)."""
        self.hits[kind] += 1
        if since is not None and self.incremental:
            return 200, "application/json", self.delta(kind, since, page, page_size)
        pages = self.pages(page_size)
        fault = self._failure(kind, page)
        mode, whole_kind = fault if fault else (None, False)
        body = pages.body(kind, page)
        if mode == "html":
            return 200, "text/html; charset=utf-8", HTML_ERROR
        if mode == "error":
            return 500, "application/json", b'{"error": "internal server error"}'
        if mode == "truncate":
            return 200, "application/json", body[: len(body) // 2]
        if mode in ("short", "empty"):
            total_pages, total = len(pages.bodies[kind]), pages.totals[kind]
            chunk = pages.records[kind][page - 1] if 1 <= page <= total_pages else []
            if mode == "empty" and whole_kind:
                total_pages = total = 0
            data = chunk[: len(chunk) // 2] if mode == "short" else []
            return 200, "application/json", _body(data, page, total_pages, total)
        return 200, "application/json", body


def _handler_for(source: FakeSource) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: benchmarks reuse connections
        # Headers and body go out in two writes; without this, Nagle + delayed ACK add ~40 ms a page.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            parts = urlsplit(self.path)
            kind = parts.path.strip("/")
            query = parse_qs(parts.query)
            if kind not in KINDS:
                self._send(404, "application/json", b'{"error": "not found"}')
                return
            try:
                page = int(query.get("page", ["1"])[0])
                page_size = int(query.get("page_size", [str(source.default_page_size)])[0])
                if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
                    raise ValueError
            except ValueError:
                self._send(400, "application/json", b'{"error": "page and page_size must be positive integers"}')
                return
            since = query.get("modified_since", [None])[0]
            # Only a delta request passes `since`: tests wrap respond(kind, page, page_size).
            self._send(*(source.respond(kind, page, page_size) if since is None
                         else source.respond(kind, page, page_size, since)))

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet in tests
            pass

    return Handler
