"""A fake paged JSON API for connector and sync tests, plugged into `responses`.

`PagedApi(records, style=…)` is a `responses` callback that serves `records` the way real HR APIs
page them, so tests exercise the connector against the wire shapes it will meet:

* page_number — Weaver E9 REST style envelope `{"code": "1", "data": {"dataList", "totalSize",
  "page", "pageSize"}}`, params `page` / `page_size`;
* offset — `{"items": [...], "total": N}`, params `offset` / `limit`;
* cursor — Feishu style `{"code": 0, "msg": "success", "data": {"items", "page_token",
  "has_more"}}`, params `page_token` / `page_size`;
* next_link — SuccessFactors OData v2 style `{"d": {"results", "__next"}}` with a `$skiptoken`;
* link_header — the RFC 8288 `Link: <…>; rel="next"` header, bare list bodies.

Faults for truncation tests: `drop_from_page=N` serves page N and later as if records were
missing (short/empty pages), `announce_extra=K` announces K more records than exist, and
`ignore_paging=True` serves the first page forever.
"""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

STYLES = ("page_number", "offset", "cursor", "next_link", "link_header")


def make_people(count: int, *, start: int = 1) -> list[dict[str, Any]]:
    """Staff records shaped like an HR export (strings everywhere, as vendors send them)."""
    return [
        {"workcode": f"E{n:05d}", "lastname": f"员工{n}", "departmentid": str(100 + n % 7),
         "certificatenum": f"1101051990{n:08d}"[:18], "modified": f"2024-05-{1 + n % 28:02d} 10:00:00"}
        for n in range(start, start + count)
    ]


class PagedApi:
    """A `responses` callback: `rsps.add_callback("GET", url, callback=PagedApi(records, …))`."""

    def __init__(self, records: list[dict[str, Any]], *, style: str = "page_number",
                 default_page_size: int = 20, drop_from_page: int | None = None,
                 announce_extra: int = 0, ignore_paging: bool = False) -> None:
        assert style in STYLES, style
        self.records = records
        self.style = style
        self.default_page_size = default_page_size
        self.drop_from_page = drop_from_page
        self.announce_extra = announce_extra
        self.ignore_paging = ignore_paging
        # Query parameters of every request served, for assertions on what the client sent.
        self.calls: list[dict[str, str]] = []

    def __call__(self, request: Any) -> tuple[int, dict[str, str], str]:
        parts = urlsplit(request.url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.calls.append(query)
        base = f"{parts.scheme}://{parts.netloc}{parts.path}"
        size = int(query.get("page_size") or query.get("limit") or query.get("$top")
                   or self.default_page_size)
        start = 0 if self.ignore_paging else self._start(query, size)
        page_no = start // size + 1
        chunk = self.records[start:start + size]
        if self.drop_from_page is not None and page_no >= self.drop_from_page:
            chunk = chunk[: size // 2] if page_no == self.drop_from_page else []
        more = start + size < len(self.records)
        total = len(self.records) + self.announce_extra
        headers = {"Content-Type": "application/json;charset=UTF-8"}
        if self.style == "page_number":
            body: Any = {"code": "1", "data": {"dataList": chunk, "totalSize": total,
                                               "page": page_no, "pageSize": size}}
        elif self.style == "offset":
            body = {"items": chunk, "total": total}
        elif self.style == "cursor":
            body = {"code": 0, "msg": "success",
                    "data": {"items": chunk, "has_more": more,
                             "page_token": f"tok{start + size}" if more else ""}}
        elif self.style == "next_link":
            body = {"d": {"results": chunk}}
            if more:
                body["d"]["__next"] = f"{base}?$top={size}&$skiptoken={start + size}"
        else:
            body = chunk
            if more:
                headers["Link"] = f'<{base}?page_size={size}&after={start + size}>; rel="next"'
        return 200, headers, json.dumps(body, ensure_ascii=False)

    def _start(self, query: dict[str, str], size: int) -> int:
        if "page" in query:
            return (int(query["page"]) - 1) * size
        for key, prefix in (("offset", ""), ("page_token", "tok"), ("$skiptoken", ""), ("after", "")):
            if query.get(key):
                return int(query[key].removeprefix(prefix))
        return 0
