"""The `/scim/v2` endpoints: discovery, Users and Groups, list queries, and writes (web.scim.writes).

Authentication and visibility are the API's (web.api.security): the same bearer tokens, scope
`read`, subtree limits and masking. Errors of any kind leave as SCIM error bodies with
`application/scim+json`; the app-wide JSON error handler of /api/v1 is bypassed by this
blueprint's own handler (blueprint handlers win in Flask).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

import orjson
from flask import Blueprint, Response, current_app, g, request
from sqlalchemy import and_, func, select, true
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from records.models import PartyOrg, Person
from web.api.errors import ApiError
from web.api.security import Viewer, authenticate, db_session, require
from web.scim import schema as sc
from web.scim.filter import FilterError, parse_filter, parse_path
from web.scim import writes as wr
from web.scim.resources import GROUPS, USERS, ResourceKind, render_groups, render_users

SCIM_JSON = "application/scim+json"
WRITES = ["POST", "PUT", "PATCH", "DELETE"]

bp = Blueprint("scim", __name__, url_prefix="/scim/v2")


class ScimError(HTTPException):
    """An error answered as `urn:ietf:params:scim:api:messages:2.0:Error`."""

    def __init__(self, status: int, detail: str, scim_type: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(description=detail)
        self.code = status
        self.scim_type = scim_type
        self.extra_headers = headers or {}


def scim_fail(status: int, detail: str, scim_type: str | None = None,
              headers: dict[str, str] | None = None) -> NoReturn:
    raise ScimError(status, detail, scim_type, headers)


def _body(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status=status, mimetype=SCIM_JSON)


@bp.errorhandler(HTTPException)
def _scim_error(error: HTTPException) -> Response:
    status = error.code or 500
    detail = error.description or error.name
    scim_type = None
    headers: dict[str, str] = {}
    if isinstance(error, ScimError):
        scim_type, headers = error.scim_type, error.extra_headers
    elif isinstance(error, ApiError):
        # Raised by the shared authentication (401, 403, 429): same status, SCIM body.
        detail = error.data.get("message") or detail
        headers = dict(error.data.get("headers") or {})
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        headers["Allow"] = ", ".join(sorted(error.valid_methods))
    if status >= 500:
        detail = "internal error; the operators can find it in the server log"
    body: dict[str, Any] = {"schemas": [sc.ERROR], "status": str(status), "detail": detail}
    if scim_type:
        body["scimType"] = scim_type
    response = _body(body, status)
    for name in ("Allow", "WWW-Authenticate", "Retry-After"):
        if name in headers:
            response.headers[name] = headers[name]
    return response


@bp.errorhandler(Exception)
def _unexpected(error: Exception) -> Response:
    if isinstance(error, HTTPException):
        return _scim_error(error)
    current_app.logger.exception("SCIM request failed")
    return _scim_error(ScimError(500, "internal error"))


@bp.before_request
def _authenticate() -> None:
    g.api_viewer = authenticate()
    require("read")


@bp.after_request
def _headers(response: Response) -> Response:
    # Bodies depend on the token (subtree, masking): no shared cache may reuse them.
    response.headers["Cache-Control"] = "private, no-cache"
    response.vary.add("Authorization")
    return response


def _base() -> str:
    return request.host_url.rstrip("/") + bp.url_prefix  # type: ignore[operator]


def _only_get() -> None:
    if request.method not in ("GET", "HEAD"):
        scim_fail(405, f"{request.method} is not allowed here; only GET", headers={"Allow": "GET, HEAD"})


def _list_response(resources: list[dict[str, Any]], total: int, start: int) -> Response:
    return _body({"schemas": [sc.LIST_RESPONSE], "totalResults": total, "startIndex": start,
                  "itemsPerPage": len(resources), "Resources": resources})


def _no_filter_on_discovery() -> None:
    # RFC 7644 §4: a filter on discovery endpoints SHOULD be answered 403, so that a client
    # never assumes its conditions were applied.
    if request.args.get("filter"):
        scim_fail(403, "discovery endpoints do not take a filter")


# --- discovery ---------------------------------------------------------------------------------

ALL = ["GET", "HEAD", *WRITES]


@bp.route("/ServiceProviderConfig", methods=ALL)
def service_provider_config() -> Response:
    _only_get()
    return _body(sc.service_provider_config(_base()))


def _discovery(endpoint: str, label: str, keys: Any, render: Callable[[str, str], dict[str, Any]]) -> None:
    """`/{endpoint}` lists every item, `/{endpoint}/<key>` gives one (both GET only)."""

    def listing() -> Response:
        _only_get()
        _no_filter_on_discovery()
        items = [render(key, _base()) for key in keys]
        return _list_response(items, len(items), 1)

    def one(key: str) -> Response:
        _only_get()
        if key not in keys:
            scim_fail(404, f"no {label} {key}")
        return _body(render(key, _base()))

    bp.add_url_rule(f"/{endpoint}", endpoint, listing, methods=ALL)
    # Schema ids are URNs: a path converter, so that nothing in them is taken for a separator.
    bp.add_url_rule(f"/{endpoint}/<path:key>", f"{endpoint}_one", one, methods=ALL)


_discovery("Schemas", "schema", sc.SCHEMAS, sc.schema_resource)
_discovery("ResourceTypes", "resource type", sc.RESOURCE_TYPES, sc.resource_type_resource)


# --- query parameters --------------------------------------------------------------------------


def _int(params: dict[str, Any], name: str, default: int) -> int:
    value = params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        scim_fail(400, f"{name} must be an integer", "invalidValue")


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(v).strip() for v in items if str(v).strip()]


Spec = tuple[str | None, str, str | None]  # (schema urn, attribute, sub-attribute), lower-case


def _specs(kind: ResourceKind, names: list[str]) -> list[Spec]:
    out: list[Spec] = []
    extensions = {urn.lower() for urn in kind.extensions}
    for name in names:
        if name.lower() in extensions:
            out.append((name.lower(), "*", None))  # the whole extension
            continue
        try:
            path = parse_path(name)
        except FilterError as exc:
            scim_fail(400, f"attributes: {exc}", "invalidValue")
        out.append((path.schema.lower() if path.schema else None, path.attr.lower(),
                    path.sub.lower() if path.sub else None))
    return out


def _subset(value: Any, subs: set[str], keep: bool) -> Any:
    if isinstance(value, list):
        return [v for v in (_subset(item, subs, keep) for item in value) if v]
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if (k.lower() in subs) == keep}
    return value


def _select(urn: str, attr: str, value: Any, include: list[Spec], exclude: list[Spec]) -> Any:
    if include:
        specs = [s for s in include if s[0] in (None, urn) and s[1] in ("*", attr)]
        if not specs:
            return None
        if all(s[2] is not None for s in specs):
            value = _subset(value, {s[2] for s in specs if s[2]}, keep=True)
    specs = [s for s in exclude if s[0] in (None, urn) and s[1] in ("*", attr)]
    if specs:
        if any(s[2] is None for s in specs):
            return None
        value = _subset(value, {s[2] for s in specs if s[2]}, keep=False)
    return None if value in (None, [], {}) else value


def project(resource: dict[str, Any], kind: ResourceKind, include: list[Spec], exclude: list[Spec]) -> dict[str, Any]:
    """`attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5); `id` and `schemas` are returned
    always. With `attributes`, `meta` only when asked for."""
    if not include and not exclude:
        return resource
    core = kind.core.lower()
    out: dict[str, Any] = {}
    for key, value in resource.items():
        if key in ("id", "schemas"):
            out[key] = value
        elif key.lower().startswith("urn:"):
            urn = key.lower()
            kept = {a: v for a, v in ((a, _select(urn, a.lower(), v, include, exclude)) for a, v in value.items())
                    if v is not None}
            if kept:
                out[key] = kept
        else:
            selected = _select(core, key.lower(), value, include, exclude)
            if selected is not None:
                out[key] = selected
    out["schemas"] = [urn for urn in resource["schemas"] if urn == kind.core or urn in out]
    return out


# --- Users and Groups --------------------------------------------------------------------------


def _visibility(kind: ResourceKind, viewer: Viewer, s: Any) -> Any:
    """What the token sees, without the records a SCIM DELETE deactivated (SCIM answers 404)."""
    if kind is USERS:
        return and_(viewer.persons_filter(s), Person.scim_deleted_at.is_(None))
    seen = PartyOrg.code.in_(viewer.subtree(s)) if viewer.limited else true()
    return and_(seen, PartyOrg.scim_deleted_at.is_(None))


def _render(kind: ResourceKind, s: Any, viewer: Viewer, rows: list[Any]) -> list[dict[str, Any]]:
    if kind is USERS:
        cipher = current_app.extensions["dualline"].runtime().cipher
        return render_users(s, viewer, rows, _base(), cipher.decrypt)
    return render_groups(s, viewer, rows, _base())


def _query(kind: ResourceKind, params: dict[str, Any]) -> Response:
    viewer: Viewer = g.api_viewer
    start = max(_int(params, "startIndex", 1), 1)  # RFC: less than 1 is read as 1
    count = min(max(_int(params, "count", sc.DEFAULT_COUNT), 0), sc.MAX_RESULTS)
    order = str(params.get("sortOrder") or "ascending").lower()
    if order not in ("ascending", "descending"):
        scim_fail(400, "sortOrder must be ascending or descending", "invalidValue")
    include = _specs(kind, _names(params.get("attributes")))
    exclude = _specs(kind, _names(params.get("excludedAttributes")))
    with db_session() as s:
        query = select(kind.model).where(_visibility(kind, viewer, s))
        if params.get("filter"):
            try:
                query = query.where(kind.condition(parse_filter(str(params["filter"]))))
            except FilterError as exc:
                scim_fail(400, str(exc), "invalidFilter")
        total = s.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
        order_by: list[Any] = []
        if params.get("sortBy"):
            try:
                column = kind.sort_column(parse_path(str(params["sortBy"])))
            except FilterError as exc:
                scim_fail(400, f"sortBy: {exc}", "invalidValue")
            # Missing values last either way, then the id: a total order, so pages never overlap.
            order_by += [column.is_(None), column.desc() if order == "descending" else column.asc()]
        order_by.append(kind.model.id.desc() if order == "descending" and not order_by else kind.model.id)
        rows = list(s.scalars(query.order_by(*order_by).offset(start - 1).limit(count))) if count else []
        resources = [project(r, kind, include, exclude) for r in _render(kind, s, viewer, rows)]
    return _list_response(resources, total, start)


def _get_one(kind: ResourceKind, record_id: str) -> Response:
    viewer: Viewer = g.api_viewer
    with db_session() as s:
        row = None
        if record_id.isdigit():
            row = s.scalar(select(kind.model).where(kind.model.id == int(record_id), _visibility(kind, viewer, s)))
        if row is None:
            # 404 also for records outside the token's subtree: it must not learn they exist.
            scim_fail(404, f"{kind.name} {record_id} not found")
        resource = _render(kind, s, viewer, [row])[0]
    digest = resource["meta"]["version"][3:-1]  # W/"…"
    if request.if_none_match and request.if_none_match.contains_weak(digest):
        response = Response(status=304)
        response.set_etag(digest, weak=True)
        return response
    include = _specs(kind, _names(request.args.get("attributes")))
    exclude = _specs(kind, _names(request.args.get("excludedAttributes")))
    response = _body(project(resource, kind, include, exclude))
    response.set_etag(digest, weak=True)
    response.headers["Location"] = resource["meta"]["location"]
    return response


WRITABLE = {  # the readWrite attributes of /Schemas, as (extension or None, attribute)
    "User": {(None, "username"), (None, "name"), (None, "externalid")},
    "Group": {(None, "displayname"), (None, "externalid"), (None, "members"),
              *((sc.PARTY_ORG.lower(), name) for name in ("kind", "parent", "secretary"))},
}
READ_ONLY_SUBS = {("name", "familyname"), ("name", "givenname"), ("members", "display"), ("parent", "code")}


def _check_patch_targets(kind: ResourceKind, operations: Any) -> None:
    """A PATCH may only aim at readWrite attributes (RFC 7644 §3.5.2: else 400 mutability)."""
    writable = WRITABLE[kind.name]
    extensions = {urn.lower() for urn in kind.extensions}
    for operation in operations if isinstance(operations, list) else []:
        path = operation.get("path") if isinstance(operation, dict) else None
        if isinstance(path, str) and path:
            target = wr._target(path, kind.core, kind.extensions)
            urn = target.urn.lower() if target.urn else None
            if target.attr is None:
                continue  # a whole extension: its keys are checked as the state is read
            pair = (urn, target.attr.lower())
            if pair not in writable or (target.sub and (target.attr.lower(), target.sub.lower()) in READ_ONLY_SUBS):
                scim_fail(400, f"{path} is readOnly", "mutability")
        elif isinstance(operation, dict) and isinstance(operation.get("value"), dict):
            for key, value in operation["value"].items():
                if key.lower() in extensions:
                    bad = [k for k in (value or {}) if (key.lower(), k.lower()) not in writable and k != "schemas"]
                elif key.lower() == "schemas":
                    continue
                else:
                    bad = [key] if (None, key.lower()) not in writable else []
                if bad:
                    scim_fail(400, f"{bad[0]} is readOnly", "mutability")


def _locked(kind: ResourceKind, s: Any, viewer: Viewer, record_id: str) -> Any:
    row = None
    if record_id.isdigit() and len(record_id) < 19:
        row = s.scalar(select(kind.model).where(kind.model.id == int(record_id), _visibility(kind, viewer, s))
                       .with_for_update())
    if row is None:
        scim_fail(404, f"{kind.name} {record_id} not found")
    return row


def _write_body() -> dict[str, Any]:
    body = request.get_json(silent=True, force=True)
    if not isinstance(body, dict):
        scim_fail(400, "the body must be a JSON object", "invalidSyntax")
    return body


def _write(kind: ResourceKind, record_id: str | None) -> Response:
    """POST, PUT, PATCH or DELETE (web.scim.writes), in one transaction."""
    viewer = require("write:scim")
    users = kind is USERS
    method = request.method
    body = _write_body() if method != "DELETE" else {}
    with db_session() as s:
        try:
            with s.begin():
                writer = wr.Writer(s, viewer)
                if record_id is None:
                    row = writer.create_user(wr.user_state(body)) if users else writer.create_group(wr.group_state(body))
                else:
                    row = _locked(kind, s, viewer, record_id)
                    current = _render(kind, s, viewer, [row])[0]
                    if request.if_match and not request.if_match.star_tag \
                            and not request.if_match.contains_weak(current["meta"]["version"][3:-1]):
                        scim_fail(412, "the resource changed since you read it (If-Match)")
                    if method == "DELETE":
                        writer.delete_user(row) if users else writer.delete_group(row)
                    else:
                        partial = method == "PATCH"
                        extensions = None
                        if partial:
                            if sc.PATCH_OP not in (body.get("schemas") or []):
                                scim_fail(400, f"a PATCH body is a {sc.PATCH_OP}", "invalidSyntax")
                            operations = body.get("Operations")
                            _check_patch_targets(kind, operations)
                            body = wr.apply_patch(current, operations, kind.core, kind.extensions)
                            extensions = wr.touched_extensions(operations, kind.core, kind.extensions)
                        if users:
                            writer.replace_user(row, wr.user_state(body, extensions), partial)
                        else:
                            writer.replace_group(row, wr.group_state(body), partial)
                s.flush()
                if method == "DELETE":
                    return Response(status=204)
                resource = _render(kind, s, viewer, [row])[0]
        except wr.WriteError as exc:
            scim_fail(exc.status, exc.detail, exc.scim_type)
        except IntegrityError:
            scim_fail(409, "the write conflicts with another record (a unique value is taken)", "uniqueness")
    response = _body(resource, 201 if record_id is None else 200)
    response.set_etag(resource["meta"]["version"][3:-1], weak=True)
    response.headers["Location"] = resource["meta"]["location"]
    return response


def _search_params() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        scim_fail(400, "the body must be a SearchRequest JSON object", "invalidSyntax")
    return body


def _collection(kind: ResourceKind) -> Callable[[], Response]:
    def view() -> Response:
        if request.method == "POST":
            return _write(kind, None)
        return _query(kind, request.args.to_dict())
    return view


def _search(kind: ResourceKind) -> Callable[[], Response]:
    def view() -> Response:
        return _query(kind, _search_params())
    return view


def _item(kind: ResourceKind) -> Callable[[str], Response]:
    def view(record_id: str) -> Response:
        if request.method in ("PUT", "PATCH", "DELETE"):
            return _write(kind, record_id)
        if request.method not in ("GET", "HEAD"):
            scim_fail(405, f"{request.method} is not allowed on a {kind.name}",
                      headers={"Allow": "DELETE, GET, HEAD, PATCH, PUT"})
        return _get_one(kind, record_id)
    return view


for _kind, _endpoint in ((USERS, "Users"), (GROUPS, "Groups")):
    bp.add_url_rule(f"/{_endpoint}", f"{_endpoint}_list", _collection(_kind), methods=["GET", "HEAD", "POST"])
    bp.add_url_rule(f"/{_endpoint}/.search", f"{_endpoint}_search", _search(_kind), methods=["POST"])
    bp.add_url_rule(f"/{_endpoint}/<record_id>", f"{_endpoint}_item", _item(_kind), methods=ALL)


@bp.route("/.search", methods=["POST"])
def search_all() -> Response:
    scim_fail(501, "searching several resource types at once is not supported; POST /Users/.search or /Groups/.search")


@bp.route("/Bulk", methods=ALL)
def bulk() -> Response:
    scim_fail(501, "bulk is not supported (ServiceProviderConfig: bulk.supported=false)")


@bp.route("/Me", methods=ALL)
def me() -> Response:
    scim_fail(501, "/Me is not supported: a token stands for a system, not a person")


@bp.route("/", defaults={"rest": ""}, methods=ALL)
@bp.route("/<path:rest>", methods=ALL)
def unknown(rest: str) -> Response:
    raise NotFound(f"no SCIM endpoint /{rest}")


__all__ = ["SCIM_JSON", "ScimError", "bp", "project", "scim_fail"]
