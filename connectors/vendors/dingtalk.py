"""The `dingtalk` preset: org units and staff from a DingTalk (钉钉) enterprise internal app.

    dingtalk:
      connector: dingtalk
      app_key: dingxxxxxxxx
      app_secret: "${DINGTALK_APP_SECRET}"
      provides: [org_units, staff]
      # base_url: https://oapi.dingtalk.com   (default; point it at a proxy or a fake)
      # page_size: 100                         (users per request, at most 100)

API (reference/sources.md "钉钉 DingTalk"): `GET /gettoken` for the access token (cached for its
two hours, fetched anew on errcode 40014/42001 and the call retried once); the org tree walked
breadth-first with `POST /topapi/v2/department/listsub` from the root department 1 (one level
per call; the root itself from `/topapi/v2/department/get`); users per department with
`POST /topapi/v2/user/list`, cursor paging (`cursor`, `size` ≤ 100, `has_more`, `next_cursor`).

Decisions (the builtin mapping `dingtalk` implements them):

* Codes are DingTalk's own `dept_id` (as text); department 1 is the company (`_kind: company`).
* employee_no ← `job_number` (工号), falling back to `userid` when the admin left 工号 empty,
  so every user gets a stable key. Mind that a source feeding the same people with real employee
  numbers will not correlate with the userid fallbacks.
* A user in several departments is read once (by `userid`); org_unit_code is the first entry of
  their `dept_id_list`.
* Everyone listed is employment_status active. DingTalk's `active: false` means the account was
  never activated (the person has not logged in yet), not that they left; people who leave are
  removed from the contacts, and the engine's full pull deactivates them.
* DingTalk's user list has no gender, birth date or ID number; those stay with other sources.

Errors: -1 (busy) and 90002/90018 (rate limited) back off and retry; 90020 (the free edition's
monthly API quota) stops with error_class "quota" saying when it resets; the page DingTalk serves
to an IP blocked for flooding (no errcode) is a protocol error saying so. A full sync costs about
one call per department for the walk, one per department and 100 users for the user lists, plus
one for the token: mind it on the free edition's 10 000 calls a month.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any

from marshmallow import fields

from connectors.base import SourceError
from connectors.registry import register
from connectors.vendors._common import (
    RawPage,
    VendorConnector,
    VendorSourceSchema,
    base_url_field,
    next_cursor,
    page_size_field,
    records_at,
)

ROOT_DEPT_ID = 1
QUOTA_CODE = 90020
CHINA_TZ = timezone(timedelta(hours=8))


class DingTalkSourceSchema(VendorSourceSchema):
    app_key = fields.String(required=True)
    app_secret = fields.String(required=True)
    base_url = base_url_field("https://oapi.dingtalk.com")
    page_size = page_size_field(100)


def _next_month(today: date) -> date:
    return date(today.year + today.month // 12, today.month % 12 + 1, 1)


@register
class DingTalkConnector(VendorConnector):
    """DingTalk contacts: BFS department walk, cursor-paged user lists (module docstring)."""

    type_name = "dingtalk"
    config_schema = DingTalkSourceSchema
    secret_fields = ("app_secret", "headers")
    default_mapping = "dingtalk"

    vendor = "DingTalk"
    token_codes = frozenset({40014, 42001})
    rate_codes = frozenset({-1, 90002, 90018})
    auth_hints = {
        60011: "grant the app the contacts read permissions (通讯录只读权限) in the developer console",
        60020: "add this server's public IP to the app's allow-list (服务器出口IP)",
    }
    block_hint = ("DingTalk blocks an IP for 5 minutes after 10 000 calls in 20 s; "
                  "wait and run again")

    def _fetch_token(self) -> tuple[str, float]:
        return self.token_call("GET", "/gettoken", "access_token", "expires_in",
                               params={"appkey": self.config["app_key"],
                                       "appsecret": self.config["app_secret"]})

    def _authorize(self, request: dict[str, Any], token: str) -> None:
        request["params"] = {**(request.get("params") or {}), "access_token": token}

    def _quota_message(self, code: Any) -> str:
        if code != QUOTA_CODE:
            return ""
        resets = _next_month(datetime.now(CHINA_TZ).date())
        return (f"DingTalk's monthly API call quota is used up (the free edition allows 10 000 "
                f"calls a month); it resets on {resets.isoformat()} (Beijing time). Upgrade the "
                f"DingTalk edition or sync less often")

    def _department_id(self, department: Mapping[str, Any]) -> str:
        return str(department["dept_id"])

    def _org_pages(self) -> Iterator[RawPage]:
        answer = self.call("POST", "/topapi/v2/department/get", what="department/get",
                           json={"dept_id": ROOT_DEPT_ID})
        root = dict(answer.get("result") or {})
        root.setdefault("dept_id", ROOT_DEPT_ID)
        # The root's parent (if DingTalk sends one) is outside the org: no parent_code.
        yield [{**root, "parent_id": None, "_kind": "company"}], {"department": ROOT_DEPT_ID}
        queue: deque[Any] = deque([ROOT_DEPT_ID])
        seen = {str(ROOT_DEPT_ID)}
        while queue:
            parent = queue.popleft()
            answer = self.call("POST", "/topapi/v2/department/listsub",
                               what=f"department/listsub of {parent}", json={"dept_id": parent})
            children = []
            for child in records_at(answer, "result", f"listsub of department {parent}"):
                if "dept_id" not in child:
                    raise SourceError(f"DingTalk listsub of department {parent}: a department "
                                      f"without dept_id", error_class="protocol")
                # A department listed twice (a cycle in bad data) would make the walk endless.
                if str(child["dept_id"]) in seen:
                    continue
                seen.add(str(child["dept_id"]))
                queue.append(child["dept_id"])
                children.append({**child, "_kind": "department"})
            yield children, {"department": parent}

    def _users_of(self, department_id: str) -> Iterator[RawPage]:
        what = f"user/list of department {department_id}"
        cursor: Any = 0
        seen: set[Any] = set()
        page = 0
        while cursor is not None:
            page += 1
            answer = self.call("POST", "/topapi/v2/user/list", what=what,
                               json={"dept_id": int(department_id), "cursor": cursor,
                                     "size": self.config["page_size"]})
            users = records_at(answer, "result.list", what)
            yield users, {"department": department_id, "page": page}
            cursor = next_cursor(answer, "result.has_more", "result.next_cursor", seen, what)
