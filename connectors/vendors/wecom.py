"""The `wecom` preset: org units and staff from WeCom (企业微信) contacts.

    wecom:
      connector: wecom
      corp_id: ww0123456789abcdef
      secret: "${WECOM_CONTACTS_SECRET}"     # the 通讯录同步 (contacts sync) secret
      provides: [org_units, staff]
      # base_url: https://qyapi.weixin.qq.com  (default; point it at a proxy or a fake)

API (reference/sources.md "企业微信 WeCom"): `GET /cgi-bin/gettoken?corpid=&corpsecret=` for the
access token (cached for its two hours, fetched anew on errcode 40014/42001 and the call retried
once); `GET /cgi-bin/department/list` returns the whole department tree at once;
`GET /cgi-bin/user/list?department_id=` the users directly in one department (no paging).

Decisions (the builtin mapping `wecom` implements them):

* Codes are WeCom's department `id` (as text). The root — the department whose `parentid` is
  not in the list, id 1 normally — is the company (`_kind: company`) and has no parent_code.
* WeCom's basic contacts API has no employee number: employee_no ← `userid` (the account the
  admin assigns, often the employee number already). Department leaders (`department_leader`)
  are userids too, so manager_employee_no matches.
* A user in several departments is read once (by `userid`); org_unit_code is their
  `main_department`, else the first of `department`.
* employment_status from `status`: 1 (activated) and 4 (not yet activated) are active; 2
  (disabled — how admins park leavers before deleting them) and 5 (left the corp) are left.
* Empty mobile/email is normal, not an error: apps created after 2022-06-20 only see them for
  employees who consented. The fields stay empty.

Errors: 45009 (rate limited) and -1 (busy) back off and retry; 60011 (no privilege) is an auth
error pointing at the contacts-sync secret; 60020 (IP not trusted) an auth error pointing at the
trusted-IP list.
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
    records_at,
)


class WeComSourceSchema(VendorSourceSchema):
    corp_id = fields.String(required=True)
    # The contacts-sync secret: an ordinary app's secret sees only the app's visibility scope.
    secret = fields.String(required=True)
    base_url = base_url_field("https://qyapi.weixin.qq.com")


@register
class WeComConnector(VendorConnector):
    """WeCom contacts: the department list at once, then users department by department."""

    type_name = "wecom"
    config_schema = WeComSourceSchema
    secret_fields = ("secret", "headers")
    default_mapping = "wecom"

    vendor = "WeCom"
    token_codes = frozenset({40014, 42001})
    rate_codes = frozenset({-1, 45009})
    auth_hints = {
        60011: ("the secret may not read these contacts; use the contacts-sync secret "
                "(管理工具 → 通讯录同步), not an app's own secret"),
        60020: "add this server's IP to the trusted IPs (企业可信IP) of the contacts sync",
    }

    def _fetch_token(self) -> tuple[str, float]:
        return self.token_call("GET", "/cgi-bin/gettoken", "access_token", "expires_in",
                               params={"corpid": self.config["corp_id"],
                                       "corpsecret": self.config["secret"]})

    def _authorize(self, request: dict[str, Any], token: str) -> None:
        request["params"] = {**(request.get("params") or {}), "access_token": token}

    def _department_id(self, department: Mapping[str, Any]) -> str:
        return str(department["id"])

    def _org_pages(self) -> Iterator[RawPage]:
        answer = self.call("GET", "/cgi-bin/department/list", what="department/list")
        departments = records_at(answer, "department", "department/list")
        ids = {str(d.get("id")) for d in departments}
        roots, others = [], []
        for department in departments:
            if str(department.get("parentid")) in ids:
                others.append({**department, "_kind": "department"})
            else:
                # Its parent (0) is outside the org: no parent_code.
                roots.append({**department, "parentid": None, "_kind": "company"})
        yield roots + others, {"departments": len(departments)}

    def _users_of(self, department_id: str) -> Iterator[RawPage]:
        what = f"user/list of department {department_id}"
        answer = self.call("GET", "/cgi-bin/user/list", what=what,
                           params={"department_id": department_id})
        yield records_at(answer, "userlist", what), {"department": department_id}
