"""A local DingTalk (钉钉) contacts API serving an `Enterprise`, for the DingTalk benchmark.

    with DingTalkFake(enterprise) as fake:
        token = requests.get(f"{fake.url}/gettoken", params={...}).json()["access_token"]
        requests.post(f"{fake.url}/topapi/v2/user/list", params={"access_token": token},
                      json={"dept_id": 1, "cursor": 0, "size": 100}).json()

It answers the endpoints the `dingtalk` preset calls, in DingTalk's envelope (`errcode` 0,
`errmsg` "ok", HTTP 200; errors also HTTP 200 with a non-zero errcode):

* ``GET /gettoken?appkey=&appsecret=`` → ``access_token``, ``expires_in: 7200``;
* ``POST /topapi/v2/department/get`` ``{dept_id}`` → the department itself;
* ``POST /topapi/v2/department/listsub`` ``{dept_id}`` → its direct children only;
* ``POST /topapi/v2/user/list`` ``{dept_id, cursor, size ≤ 100}`` → users directly in it, cursor
  paging with ``has_more`` / ``next_cursor`` (the cursor is an offset, as DingTalk's is).

Shape decisions, so the load resembles a real DingTalk org of the same size:

* Every org unit is a department; ``dept_id`` is a stable integer (root company = 1, the others
  numbered from 2 in the enterprise's unit order), ``parent_id`` the parent's dept_id.
* Every staff record is listed as a user (retirees and leavers too: a real contact list drops
  leavers, but then the source would not carry the 100 000 records the budget is about).
  ``job_number`` is the employee number, ``userid`` a separate id, ``hired_date`` epoch ms.
* About one user in 20 also belongs to a second department (its parent, or a sibling unit):
  ``dept_id_list`` has two entries, main department first, and the user is listed in both
  departments, as DingTalk does — so the connector must de-duplicate by ``userid``.

Every answer is serialized to bytes when the server starts (user pages for one `size`, built for
other sizes on first use), so the time measured is the client's, not this server's. `requests`
counts requests per path; `serve_seconds` sums the time spent serving (from the request line
read: parsing headers and body, looking up and writing the answer) over all requests.
"""
from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from benchmarks.enterprise import Enterprise
from benchmarks.local_server import LocalHttpServer

ROOT_DEPT_ID = 1
MAX_SIZE = 100  # DingTalk refuses user/list size > 100
TOKEN = "fake-dingtalk-token"
APP_KEY, APP_SECRET = "bench-app-key", "bench-app-secret"
SECOND_DEPARTMENT_EVERY = 20  # one user in 20 belongs to two departments
CHINA_TZ = timezone(timedelta(hours=8))


def _dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _ok(**fields: Any) -> bytes:
    return _dumps({"errcode": 0, "errmsg": "ok", **fields})


def _error(code: int, message: str) -> bytes:
    return _dumps({"errcode": code, "errmsg": message})


def _epoch_ms(iso: str | None) -> int | None:
    """An ISO date as DingTalk's hired_date: midnight Beijing time in epoch milliseconds."""
    try:
        day = date.fromisoformat(iso) if iso else None
    except ValueError:
        return None  # an impossible date in the HR data: DingTalk would have none
    if day is None:
        return None
    return int(datetime(day.year, day.month, day.day, tzinfo=CHINA_TZ).timestamp() * 1000)


class DingTalkData:
    """The enterprise in DingTalk's shape: departments, their children, their users."""

    def __init__(self, enterprise: Enterprise) -> None:
        units = enterprise.org_units
        root = next(u for u in units if u["parent_code"] is None)
        self.dept_id: dict[str, int] = {root["code"]: ROOT_DEPT_ID}
        for unit in units:
            if unit["code"] not in self.dept_id:
                self.dept_id[unit["code"]] = len(self.dept_id) + 1
        self.departments: dict[int, dict[str, Any]] = {}
        self.children: dict[int, list[int]] = defaultdict(list)
        for order, unit in enumerate(units):
            did = self.dept_id[unit["code"]]
            parent = self.dept_id.get(unit["parent_code"]) if unit["parent_code"] else None
            self.departments[did] = {"dept_id": did, "name": unit["name"], "parent_id": parent,
                                     "order": order, "create_dept_group": False,
                                     "auto_add_user": True}
            if parent is not None:
                self.children[parent].append(did)
        self.users: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self.user_count = 0
        self.listings = 0  # user entries over all departments (two-department users twice)
        for n, person in enumerate(enterprise.staff):
            main = self.dept_id.get(person["org_unit_code"], ROOT_DEPT_ID)
            depts = [main]
            second = (self._second_department(main, n)
                      if n % SECOND_DEPARTMENT_EVERY == SECOND_DEPARTMENT_EVERY - 1 else None)
            if second is not None:
                depts.append(second)
            user = {"userid": f"u{person['employee_no']}", "unionid": f"union{person['employee_no']}",
                    "name": person["name"], "mobile": person["mobile"] or "", "state_code": "86",
                    "job_number": person["employee_no"], "title": person["position"] or "",
                    "email": "", "dept_id_list": depts, "active": True, "admin": False,
                    "boss": False, "leader": False}
            hired = _epoch_ms(person["hired_on"])
            if hired is not None:
                user["hired_date"] = hired
            for did in depts:
                self.users[did].append(user)
            self.user_count += 1
            self.listings += len(depts)

    def _second_department(self, main: int, n: int) -> int | None:
        """A stable second department: a sibling of the main one, else its parent (for the
        root: one of its children), or None when the tree has no other department."""
        parent = self.departments[main]["parent_id"]
        if parent is None:
            kids = self.children.get(main)
            return kids[n % len(kids)] if kids else None
        siblings = [d for d in self.children[parent] if d != main]
        return siblings[n % len(siblings)] if siblings else parent


class _Answers:
    """Every answer pre-serialized: listsub and department/get per department, user pages per
    (department, cursor) for one page size."""

    def __init__(self, data: DingTalkData, size: int) -> None:
        self.size = size
        self.user_pages: dict[tuple[int, int], bytes] = {}
        for did in data.departments:
            members = data.users.get(did, [])
            for start in range(0, max(len(members), 1), size):
                more = start + size < len(members)
                result: dict[str, Any] = {"has_more": more, "list": members[start:start + size]}
                if more:
                    result["next_cursor"] = start + size
                self.user_pages[(did, start)] = _ok(result=result, request_id="bench")


class DingTalkFake(LocalHttpServer):
    """A threaded HTTP server on localhost answering as DingTalk for one enterprise.

    A context manager; `url` is the base URL once started (the preset's `base_url`).
    """

    thread_name = "dingtalk-fake"

    def __init__(self, enterprise: Enterprise, size: int = MAX_SIZE, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.data = DingTalkData(enterprise)
        self.requests: Counter[str] = Counter()
        self.serve_seconds = 0.0
        self._stats_lock = threading.Lock()
        self._answers: dict[int, _Answers] = {size: _Answers(self.data, size)}
        self._answers_lock = threading.Lock()
        self.department_get = {d: _ok(result=dict(r)) for d, r in self.data.departments.items()}
        self.listsub = {d: _ok(result=[self.data.departments[c] for c in self.data.children.get(d, [])])
                        for d in self.data.departments}
        self.token_body = _ok(access_token=TOKEN, expires_in=7200)
        super().__init__(host, port)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def reset_counters(self) -> None:
        with self._stats_lock:
            self.requests.clear()
            self.serve_seconds = 0.0

    def answers(self, size: int) -> _Answers:
        with self._answers_lock:
            if size not in self._answers:
                self._answers[size] = _Answers(self.data, size)
            return self._answers[size]

    # ------------------------------------------------------------------ lifecycle
    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _handler_for(self)

    # ------------------------------------------------------------------ answers
    def respond(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> bytes:
        """The answer body for one request (always HTTP 200, as DingTalk answers errors too)."""
        if path == "/gettoken" and method == "GET":
            if query.get("appkey") != [APP_KEY] or query.get("appsecret") != [APP_SECRET]:
                return _error(40089, "不合法的corpid或corpsecret")
            return self.token_body
        if method != "POST" or not path.startswith("/topapi/v2/"):
            return _error(404, f"no such API: {method} {path}")
        if query.get("access_token") != [TOKEN]:
            return _error(40014, "不合法的access_token")
        try:
            params = json.loads(body) if body else {}
            dept_id = int(params["dept_id"])
        except (ValueError, KeyError, TypeError):
            return _error(400002, "无效的参数 dept_id")
        if dept_id not in self.data.departments:
            return _error(60003, "部门不存在")
        if path == "/topapi/v2/department/listsub":
            return self.listsub[dept_id]
        if path == "/topapi/v2/department/get":
            return self.department_get[dept_id]
        if path == "/topapi/v2/user/list":
            try:
                cursor, size = int(params.get("cursor", 0)), int(params["size"])
            except (ValueError, KeyError, TypeError):
                return _error(400002, "无效的参数 cursor/size")
            if not 1 <= size <= MAX_SIZE or cursor < 0:
                return _error(400002, "size 须在 1 到 100 之间")
            page = self.answers(size).user_pages.get((dept_id, cursor))
            if page is None:  # a cursor past the end or not on a page boundary
                return _ok(result={"has_more": False, "list": []}, request_id="bench")
            return page
        return _error(404, f"no such API: {path}")


def _handler_for(fake: DingTalkFake) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the client reuses its connection
        # Headers and body go out in two writes; without this, Nagle + delayed ACK add ~40 ms.
        disable_nagle_algorithm = True

        def parse_request(self) -> bool:
            # Start the clock once the request line is in (before that the connection idles
            # between requests): header parsing is part of serving.
            self._started = time.perf_counter()
            return super().parse_request()

        def _handle(self, method: str) -> None:
            started = self._started
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            answer = fake.respond(method, parts.path, parse_qs(parts.query), body)
            self.send_response(200)
            self.send_header("Content-Type", "application/json;charset=utf-8")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            spent = time.perf_counter() - started
            with fake._stats_lock:
                fake.requests[parts.path] += 1
                fake.serve_seconds += spent

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

    return Handler
