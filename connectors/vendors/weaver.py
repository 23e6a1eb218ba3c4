"""Weaver (泛微) e-cology presets: `weaver-soap` (HrmService, E8/E9) and `weaver-rest` (E9 REST).

    oa:
      connector: weaver-soap
      url: http://oa.example.com/services/HrmService?wsdl
      provides: [org_units, staff]
      subcompany_ids: [1, 2]        # optional filters: positive integers only
      department_ids: [11, 21]
      education_levels: {"6": 本科, "7": 硕士}   # optional: this OA's educationlevel ids

    oa-rest:
      connector: weaver-rest
      base_url: http://oa.example.com
      config_key: "${WEAVER_KEY}"   # the OA's REST config key; token = MD5/SM3(key + ts)
      token_algorithm: md5          # md5 | sm3
      pagesize: 100
      provides: [org_units, staff]

Both yield the vendor's records with their own field names plus computed helper fields that the
builtin mapping `weaver` reads (the same mapping serves both, so both give the same canonical
records):

* org units: Weaver has two id spaces. Departments keep the bare `departmentid` as code;
  subcompanies get the prefix `S` (`S<subcompanyid>`). `_code`, `_parent_code` (the parent
  department, else the department's subcompany; a subcompany's parent subcompany) and `_kind`
  (company | department) put both into one tree.
* staff: `_gender` as the national code — Weaver's SOAP `sex` is "1" for female and "0" for
  male, unlike GB/T 2261.1 ("1" male, "2" female); the REST API says 男/女. `_education`: the
  `educationlevel` translated through `education_levels` when configured (many builds send the
  id of the OA's own education table, not a name).

Security: HrmService builds SQL from its id-list parameters (a public exploit exists), so the
filters are validated as positive integers and only ever sent as digits joined by commas.

An empty answer from HrmService usually means the OA's IP allow-list refused us (it answers
null rather than an error): it raises SourceError(error_class="empty"), never "everyone left".
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from connectors.base import BaseSourceSchema, Connector, Page, SourceError
from connectors.http import (
    HttpOptionsSchema,
    HttpSession,
    build_session,
    error_hint,
    extract_records,
    parse_json,
    safe_url,
)
from connectors.registry import register
from connectors.rest import PageNumberPaginator, PaginationSchema, _latest
from connectors.soap import (
    SoapClient,
    SoapOptionsSchema,
    attributed,
    looks_like_auth_refusal,
    read_first_page,
    records_at,
)

WEAVER_KINDS = ("org_units", "staff")
SUBCOMPANY_PREFIX = "S"
DEFAULT_REST_PATHS = {
    "users": "/api/hrm/resful/getHrmUserInfoWithPage",
    "departments": "/api/hrm/resful/getHrmdepartmentWithPage",
    "subcompanies": "/api/hrm/resful/getHrmsubcompanyWithPage",
}


# --------------------------------------------------------------------------- config


class IdListField(fields.Field):
    """A list of positive integer ids (ints, or digit strings as `${VAR}` substitution gives).

    Loaded as ints, so what reaches the OA's SQL can only be digits and commas."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[int]:
        if not isinstance(value, list):
            raise ValidationError("a list of positive integer ids, e.g. [1, 2]")
        ids: list[int] = []
        for index, item in enumerate(value):
            if isinstance(item, str) and item.strip().isascii() and item.strip().isdigit():
                item = int(item.strip())
            if isinstance(item, bool) or not isinstance(item, int) or item < 1:
                raise ValidationError({index: [f"{str(item)[:20]!r} is not a positive integer id"]})
            ids.append(item)
        return ids


def _optional_ip(value: str) -> None:
    if not value:
        return
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValidationError("an IPv4 or IPv6 address") from None


class WeaverFiltersSchema(Schema):
    """Keys both presets share."""

    subcompany_ids = IdListField(load_default=None)
    department_ids = IdListField(load_default=None)
    # This OA's educationlevel id → an education name or national code.
    education_levels = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)


class WeaverSoapSchema(BaseSourceSchema, SoapOptionsSchema, WeaverFiltersSchema):
    provided_kinds = WEAVER_KINDS
    # The HrmService WSDL: http://<oa>/services/HrmService?wsdl, or a saved copy (file path).
    url = fields.String(required=True, validate=validate.Length(min=1))
    # in0 of every call; the OA overwrites it with the caller's address, so it rarely matters.
    client_ip = fields.String(load_default="", validate=_optional_ip)


class RestPathsSchema(Schema):
    class Meta:
        unknown = RAISE

    users = fields.String(load_default=DEFAULT_REST_PATHS["users"])
    departments = fields.String(load_default=DEFAULT_REST_PATHS["departments"])
    subcompanies = fields.String(load_default=DEFAULT_REST_PATHS["subcompanies"])


class WeaverRestSchema(BaseSourceSchema, HttpOptionsSchema, WeaverFiltersSchema):
    provided_kinds = WEAVER_KINDS
    base_url = fields.Url(required=True, require_tld=False)
    config_key = fields.String(required=True, validate=validate.Length(min=1))
    token_algorithm = fields.String(load_default="md5", validate=validate.OneOf(("md5", "sm3")))
    pagesize = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    paths = fields.Nested(RestPathsSchema, load_default=lambda: RestPathsSchema().load({}))


# --------------------------------------------------------------------------- helpers


def weaver_id(value: Any) -> str | None:
    """A Weaver id as text, or None for "none" (Weaver writes 0, -1 or nothing)."""
    text = "" if value is None else str(value).strip()
    if text.endswith(".0"):
        text = text[:-2]
    return text if text and text.lstrip("-").isdigit() and int(text) > 0 else None


def subcompany_helpers(record: dict[str, Any], own: Any, parent: Any) -> dict[str, Any]:
    parent_id = weaver_id(parent)
    record["_code"] = f"{SUBCOMPANY_PREFIX}{weaver_id(own) or ''}"
    record["_parent_code"] = f"{SUBCOMPANY_PREFIX}{parent_id}" if parent_id else None
    record["_kind"] = "company"
    return record


def department_helpers(record: dict[str, Any], own: Any, subcompany: Any, parent: Any) -> dict[str, Any]:
    parent_id, subcompany_id = weaver_id(parent), weaver_id(subcompany)
    record["_code"] = weaver_id(own)
    record["_parent_code"] = parent_id or (f"{SUBCOMPANY_PREFIX}{subcompany_id}" if subcompany_id else None)
    record["_kind"] = "department"
    return record


def weaver_gender(sex: Any) -> str | None:
    """Weaver's sex as the national code: "1" (SOAP) or 女 (REST) is female ("2"), anything
    else male ("1"). Absent stays absent: no value is not a claim about anyone."""
    text = "" if sex is None else str(sex).strip()
    if not text:
        return None
    return "2" if text in ("1", "女") else "1"


def user_helpers(record: dict[str, Any], education_levels: Mapping[str, str]) -> dict[str, Any]:
    record["_gender"] = weaver_gender(record.get("sex"))
    level = record.get("educationlevel")
    level = "" if level is None else str(level).strip()
    record["_education"] = education_levels.get(level, level) or None
    return record


def _in_filter(value: Any, ids: list[int] | None) -> bool:
    return ids is None or weaver_id(value) in {str(i) for i in ids}


def _id_csv(ids: list[int] | None) -> str:
    # Re-checked here because this string goes into the OA's SQL: digits and commas only.
    return ",".join(str(int(i)) for i in ids or () if int(i) > 0)


def _empty_answer(operation: str, where: str) -> SourceError:
    return SourceError(
        f"the OA returned nothing for {operation} ({where}): check that this server's IP address "
        f"is on the OA's HrmService IP allow-list; an empty answer is never taken to mean that "
        f"everyone left", error_class="empty", detail={"where": where, "operation": operation})


def _max_cursor(since: str | None, records: Iterable[Mapping[str, Any]], field: str) -> str | None:
    cursor = _latest(since, [value for record in records if (value := record.get(field)) not in (None, "")])
    return None if cursor is None else str(cursor)


class _WeaverConnector(Connector):
    """What the presets share: kinds, incremental staff, error attribution."""

    default_mapping: ClassVar[str] = "weaver"
    supports_incremental: ClassVar[bool] = True

    def is_incremental(self, kind: str) -> bool:
        return kind == "staff"

    def read(self, kind: str, *, since: str | None = None) -> Iterator[Page]:
        readers = {"org_units": self._org_units, "staff": self._staff}
        if kind not in readers:
            raise SourceError(f"Weaver provides {' and '.join(WEAVER_KINDS)}, not {kind}",
                              error_class="config", source=self.name, kind=kind)
        yield from attributed(readers[kind](since if kind == "staff" else None), self.name, kind)

    def _org_units(self, since: str | None) -> Iterator[Page]:
        raise NotImplementedError

    def _staff(self, since: str | None) -> Iterator[Page]:
        raise NotImplementedError

    def check(self) -> None:
        read_first_page(self)


# --------------------------------------------------------------------------- weaver-soap


@register
class WeaverSoapConnector(_WeaverConnector):
    """e-cology HrmService over SOAP (module docstring)."""

    type_name: ClassVar[str] = "weaver-soap"
    config_schema: ClassVar[type[Schema]] = WeaverSoapSchema
    secret_fields: ClassVar[tuple[str, ...]] = ("headers",)

    def __init__(self, name: str, config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(name, config, **kwargs)
        self.soap = SoapClient(config["url"], config, source=name, base_dir=self.base_dir)

    def _beans(self, operation: str, *args: str) -> list[dict[str, Any]]:
        """The beans an operation returns ([] for null / an empty array)."""
        result = self.soap.call(operation, [self.config.get("client_ip") or "", *args])
        if isinstance(result, Mapping) and len(result) == 1:
            # ArrayOfXBean that zeep did not flatten: {"XBean": [...]}.
            result = next(iter(result.values()))
        return records_at(result, "", f"{self.soap.where} {operation}")

    def _subcompanies(self) -> list[dict[str, Any]]:
        subcompanies = self._beans("getHrmSubcompanyInfo")
        if not subcompanies:
            # Every OA has at least one subcompany: nothing means we were refused.
            raise _empty_answer("getHrmSubcompanyInfo", self.soap.where)
        return subcompanies

    def _org_units(self, since: str | None) -> Iterator[Page]:
        cfg = self.config
        records = [subcompany_helpers(s, s.get("subcompanyid"), s.get("supsubcompanyid"))
                   for s in self._subcompanies() if _in_filter(s.get("subcompanyid"), cfg["subcompany_ids"])]
        departments = self._beans("getHrmDepartmentInfo", _id_csv(cfg["subcompany_ids"]))
        records += [department_helpers(d, d.get("departmentid"), d.get("subcompanyid"), d.get("supdepartmentid"))
                    for d in departments if _in_filter(d.get("departmentid"), cfg["department_ids"])]
        yield Page(records, None, {"operation": "getHrmSubcompanyInfo+getHrmDepartmentInfo"})

    def _staff(self, since: str | None) -> Iterator[Page]:
        cfg = self.config
        # lastmoddate is a date on the OA side and compared as text: send the date alone so
        # changes later on the cursor's own day are not skipped (re-reading them is harmless).
        lastmoddate = since[:10] if since else ""
        users = self._beans("getHrmUserInfo", "", _id_csv(cfg["subcompany_ids"]),
                            _id_csv(cfg["department_ids"]), "", lastmoddate)
        if not users:
            if since is None:
                raise _empty_answer("getHrmUserInfo", self.soap.where)
            # "Nothing changed" and "refused" look alike; a refused caller gets no subcompanies.
            self._subcompanies()
            return
        records = [user_helpers(u, cfg["education_levels"]) for u in users]
        yield Page(records, _max_cursor(since, records, "lastChangdate"), {"operation": "getHrmUserInfo"})

    def close(self) -> None:
        self.soap.close()


# --------------------------------------------------------------------------- weaver-rest


def _hex_digest(algorithm: str, data: bytes) -> str:
    """MD5 or SM3 hex digest. SM3 comes from OpenSSL (hashlib) where it is built in, else from
    the `gmssl` package."""
    if algorithm == "md5":
        return hashlib.md5(data).hexdigest()  # noqa: S324 - the vendor's token scheme, not ours
    try:
        return hashlib.new("sm3", data).hexdigest()
    except ValueError:
        pass
    try:
        from gmssl import func, sm3  # type: ignore[import-not-found]
    except ImportError:
        raise SourceError("token_algorithm sm3 needs an OpenSSL with SM3 or the gmssl package "
                          "(pip install gmssl)", error_class="config") from None
    return str(sm3.sm3_hash(func.bytes_to_list(data)))


@register
class WeaverRestConnector(_WeaverConnector):
    """e-cology E9 REST `/api/hrm/resful/*WithPage` (module docstring)."""

    type_name: ClassVar[str] = "weaver-rest"
    config_schema: ClassVar[type[Schema]] = WeaverRestSchema
    secret_fields: ClassVar[tuple[str, ...]] = ("config_key", "headers")

    def __init__(self, name: str, config: dict[str, Any], *, clock: Callable[[], float] = time.time,
                 **kwargs: Any) -> None:
        super().__init__(name, config, **kwargs)
        self._clock = clock
        # Building a session opens nothing, so it can be made up front.
        self.session: HttpSession = build_session(self.config, source=self.name)

    def token_headers(self) -> dict[str, str]:
        """`ts` (ms) and `key` = upper-case hex digest of config_key + ts. Made anew for every
        request: a token is valid for 5 minutes and a large pull takes longer."""
        ts = str(int(self._clock() * 1000))
        data = (self.config["config_key"] + ts).encode("utf-8")
        return {"key": _hex_digest(self.config["token_algorithm"], data).upper(), "ts": ts}

    def _pages(self, which: str, filters: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
        """The dataList of every page of one endpoint, checked against totalSize."""
        url = self.config["base_url"].rstrip("/") + "/" + self.config["paths"][which].lstrip("/")
        where = safe_url(url)
        paginator = PageNumberPaginator(PaginationSchema().load({
            "type": "page_number", "page_param": "curpage", "size_param": "pagesize",
            "page_size": self.config["pagesize"], "start": 1, "total_records_path": "data.totalSize"}))
        request = paginator.first(url, filters)
        while request is not None:
            if paginator.pages >= paginator.cfg["max_pages"]:
                raise SourceError(f"{where}: stopped after {paginator.pages} pages",
                                  error_class="truncated")
            response = self.session.request(
                "POST", request.url, headers=self.token_headers(),
                data={"params": json.dumps(request.params, ensure_ascii=False)})
            body = parse_json(response, source=self.name)
            code = body.get("code") if isinstance(body, Mapping) else None
            if str(code) != "1":
                reason = error_hint(body) or (str(body.get("errMsg") or "")[:120]
                                              if isinstance(body, Mapping) else "")
                raise SourceError(
                    f"Weaver REST {where} answered code {code!r}: {reason or 'no reason given'}",
                    error_class="auth" if looks_like_auth_refusal(reason, code) else "protocol",
                    detail={"where": where, "code": code})
            records = extract_records(body, "data.dataList", where)
            request = paginator.advance(request, body, response, records)
            yield records

    def _org_units(self, since: str | None) -> Iterator[Page]:
        cfg = self.config
        page_no = 0
        for page in self._pages("subcompanies", {}):
            page_no += 1
            if page_no == 1 and not page:
                raise _empty_answer("getHrmsubcompanyWithPage", safe_url(cfg["base_url"]))
            records = [subcompany_helpers(s, s.get("id"), s.get("supsubcomid"))
                       for s in page if _in_filter(s.get("id"), cfg["subcompany_ids"])]
            if records:
                yield Page(records, None, {"endpoint": "subcompanies", "page": page_no})
        for page_no, page in enumerate(self._pages("departments", {}), 1):
            records = [department_helpers(d, d.get("id"), d.get("subcompanyid1"), d.get("supdepid"))
                       for d in page if _in_filter(d.get("subcompanyid1"), cfg["subcompany_ids"])
                       and _in_filter(d.get("id"), cfg["department_ids"])]
            if records:
                yield Page(records, None, {"endpoint": "departments", "page": page_no})

    def _staff(self, since: str | None) -> Iterator[Page]:
        cfg = self.config
        cursor = since
        for page_no, page in enumerate(self._pages("users", {"modified": since} if since else {}), 1):
            if page_no == 1 and not page and since is None:
                raise _empty_answer("getHrmUserInfoWithPage", safe_url(cfg["base_url"]))
            cursor = _max_cursor(cursor, page, "modified")
            records = [user_helpers(u, cfg["education_levels"]) for u in page
                       if _in_filter(u.get("subcompanyid1"), cfg["subcompany_ids"])
                       and _in_filter(u.get("departmentid"), cfg["department_ids"])]
            # The cursor rides on every page, even one the filters emptied, so it can advance.
            yield Page(records, cursor, {"endpoint": "users", "page": page_no})

    def close(self) -> None:
        self.session.close()
