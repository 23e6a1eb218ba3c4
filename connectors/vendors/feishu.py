"""The `feishu` preset: org units and staff from Feishu (飞书) contacts, API v3.

    feishu:
      connector: feishu
      app_id: cli_a1b2c3d4e5f6
      app_secret: "${FEISHU_APP_SECRET}"
      provides: [org_units, staff]
      # base_url: https://open.feishu.cn   (default; Lark: https://open.larksuite.com)
      # root_name: 某某集团有限公司          (name of the root department "0", the company)
      # page_size: 50                      (items per request, at most 50)

API (reference/sources.md "飞书 Feishu"): `POST /open-apis/auth/v3/tenant_access_token/internal`
for the tenant token (cached for its two hours, fetched anew on code 99991663/99991664/99991668
and the call retried once), sent as `Authorization: Bearer`; departments from
`GET /open-apis/contact/v3/departments/0/children?fetch_child=true` (the whole tree below the root,
paged); users per department from `GET /open-apis/contact/v3/users/find_by_department`. Every
answer is `{code, msg, data: {items, page_token, has_more}}`; code 0 is success, anything else an
error (Feishu sends most with HTTP 400, the JSON still says why).

Decisions (the builtin mapping `feishu` implements them):

* Codes are `open_department_id` (`od-…`): always present and never changed by an admin, unlike
  the tenant's custom `department_id`. The root is "0", the company (`_kind: company`); Feishu
  lists no record for it, so its name is the `root_name` key.
* Users are requested with `user_id_type=user_id`. employee_no ← `employee_no` (工号), which
  Feishu only returns with the separate "employee number" field scope, falling back to `user_id`
  (needs the "user ID" scope). Without both the staff record has no key and is quarantined:
  grant a scope rather than keying people by the app-specific open_id.
* A user in several departments is read once (by `open_id`); org_unit_code is the first of their
  `department_ids`.
* employment_status: `status.is_resigned` → left, else active. hired_on from `join_time` (epoch
  seconds). gender: 1 male, 2 female, 0 (not set) unknown, 3 (other) "9" not stated.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from marshmallow import fields

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

ROOT_ID = "0"
ID_TYPES = {"department_id_type": "open_department_id", "user_id_type": "user_id"}


class FeishuSourceSchema(VendorSourceSchema):
    app_id = fields.String(required=True)
    app_secret = fields.String(required=True)
    base_url = base_url_field("https://open.feishu.cn")
    root_name = fields.String(load_default="飞书企业")
    page_size = page_size_field(50)


@register
class FeishuConnector(VendorConnector):
    """Feishu contacts v3: the paged department tree, then users department by department."""

    type_name = "feishu"
    config_schema = FeishuSourceSchema
    secret_fields = ("app_secret", "headers")
    default_mapping = "feishu"

    vendor = "Feishu"
    code_key = "code"
    message_key = "msg"
    token_codes = frozenset({99991663, 99991664, 99991668})
    # 99991400: the frequency limit (about 50 calls/s), when not already answered with HTTP 429.
    rate_codes = frozenset({99991400})
    auth_hints = {
        99991672: "enable the contacts scopes for the app in the developer console and publish it",
        40004: "widen the app's contacts range (通讯录权限范围) to the whole organization",
        41050: "widen the app's contacts range (通讯录权限范围) to the whole organization",
    }
    user_id_key = "open_id"

    def _fetch_token(self) -> tuple[str, float]:
        return self.token_call("POST", "/open-apis/auth/v3/tenant_access_token/internal",
                               "tenant_access_token", "expire",
                               json={"app_id": self.config["app_id"],
                                     "app_secret": self.config["app_secret"]})

    def _authorize(self, request: dict[str, Any], token: str) -> None:
        request["headers"] = {**(request.get("headers") or {}), "Authorization": f"Bearer {token}"}

    def _department_id(self, department: Mapping[str, Any]) -> str:
        return str(department["open_department_id"])

    def _paged(self, path: str, params: dict[str, Any], what: str,
               info: dict[str, Any]) -> Iterator[RawPage]:
        """The items of a page_token-paged listing, page by page."""
        seen: set[Any] = set()
        token: Any = None
        page = 0
        while True:
            page += 1
            query = {**ID_TYPES, **params, "page_size": self.config["page_size"]}
            if token is not None:
                query["page_token"] = token
            answer = self.call("GET", path, what=what, params=query)
            yield records_at(answer, "data.items", what), {**info, "page": page}
            token = next_cursor(answer, "data.has_more", "data.page_token", seen, what)
            if token is None:
                return

    def _org_pages(self) -> Iterator[RawPage]:
        root = {"open_department_id": ROOT_ID, "department_id": ROOT_ID,
                "name": self.config["root_name"], "parent_department_id": None, "_kind": "company"}
        yield [root], {"department": ROOT_ID}
        for departments, info in self._paged(
                f"/open-apis/contact/v3/departments/{ROOT_ID}/children", {"fetch_child": "true"},
                "departments/0/children", {"department": ROOT_ID}):
            yield [{**d, "_kind": "department"} for d in departments], info

    def _users_of(self, department_id: str) -> Iterator[RawPage]:
        yield from self._paged("/open-apis/contact/v3/users/find_by_department",
                               {"department_id": department_id},
                               f"users/find_by_department {department_id}",
                               {"department": department_id})
