"""The `/api/v1` endpoints: unified records for other systems (DESIGN.md, Contract → HTTP).

Lists page by keyset on the surrogate id (`limit` + opaque `cursor`, `next_cursor` null on the last
page), so a page costs the same at the millionth row as at the first and rows inserted meanwhile are
neither skipped nor repeated. Views return ready `Response`s (flask-smorest passes them through):
the schema is chosen per token (masked or sensitive view) while `@bp.response` documents the shape.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from flask import Response, current_app, g, request
from flask_smorest import Blueprint
from marshmallow import RAISE, Schema
from webargs.flaskparser import FlaskParser
from sqlalchemy import Select, exists, func, or_, select
from sqlalchemy.orm import Session
from werkzeug.http import generate_etag

from records.models import (
    Coverage, Membership, Mismatch, OrgUnit, PartyOrg, Performance, Person,
    SyncRun,
)
from records.queries import mismatch_state_filter
from records.feed import feed_item, read_feed
from sync.cli import mismatch_item
from sync import resolutions
from web.api import schemas as sc
from web.api.errors import fail
from web.api.security import Viewer, authenticate, db_session, read_session, require



class StrictQueryParser(FlaskParser):
    """Unknown query parameters are an error (422 naming the parameter), not ignored: a misspelt
    filter (`?org_unti=…`) must not silently widen a list to everything."""

    DEFAULT_UNKNOWN_BY_LOCATION = {**FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION, "query": RAISE}


class ApiBlueprint(Blueprint):
    ARGUMENTS_PARSER = StrictQueryParser()


bp = ApiBlueprint("api", __name__, url_prefix="/api/v1",
                  description="Unified person, org and party records; mismatches; the change feed.")
TREE_DEPTH = 32  # source data may hold cycles; trees stop here instead of recursing forever
COMMON_ERRORS = (401, 403, 429)
# Ids in paths are capped at the largest 64-bit integer (werkzeug's `max`): a larger one is no
# id of ours, answered 404 by the router instead of overflowing the database driver.


@bp.before_request
def _authenticate() -> None:
    g.api_viewer = authenticate()


@bp.after_request
def _conditional(response: Response) -> Response:
    """Strong ETag over the body on successful reads; If-None-Match → 304 (werkzeug)."""
    if request.method in ("GET", "HEAD") and response.status_code == 200:
        response.add_etag()
        response.make_conditional(request)
    # Bodies depend on the token (subtree, masking): no shared cache may reuse them.
    response.headers["Cache-Control"] = "private, no-cache"
    response.vary.add("Authorization")
    return response


def documented(*statuses: int):
    """Document the error responses a view may give, with the API's error schema."""
    def wrap(view):
        for status in (*COMMON_ERRORS, *statuses):
            view = bp.alt_response(status, schema=sc.ErrorSchema, description=_REASONS.get(status, ""))(view)
        return view
    return wrap


_REASONS = {400: "Bad request (e.g. a malformed cursor)", 401: "No, unknown or revoked token",
            403: "The token lacks the scope", 404: "Not found (or outside the token's subtree)",
            409: "Conflict with the record's state", 412: "If-Match does not match",
            429: "Rate limit exceeded (see Retry-After)"}


def _json(data: Any, status: int = 200) -> Response:
    # orjson: pages of up to 1000 records; also serialises dates and datetimes as ISO 8601.
    return Response(orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS), status=status,
                    mimetype="application/json")


# --- paging ------------------------------------------------------------------------------------


def encode_cursor(endpoint: str, last_id: int) -> str:
    raw = orjson.dumps([endpoint, last_id])
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(endpoint: str, cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        where, last_id = orjson.loads(raw)
        if where != endpoint or not isinstance(last_id, int) or isinstance(last_id, bool) or last_id < 0:
            raise ValueError(where)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        fail(400, "cursor is not one this list handed out; start again without it", "invalid_cursor", "cursor")
    return last_id


def keyset(s: Session, query: Select, id_column: Any, args: dict[str, Any], endpoint: str) -> tuple[list[Any], str | None]:
    after = decode_cursor(endpoint, args.get("cursor"))
    limit = args["limit"]
    rows = list(s.scalars(query.where(id_column > after).order_by(id_column).limit(limit + 1)))
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor(endpoint, rows[-1].id)
    return rows, None


def _since(value: dt.datetime | None) -> dt.datetime | None:
    """Timestamps are stored as naive UTC."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def requested(model: Any, args: dict[str, Any], filters: Iterable[tuple[str, Any]]) -> list[Any]:
    """Each (argument, column) filter the request gave, then `updated_since` where the model
    keeps `updated_at`."""
    conditions = [column == args[arg] for arg, column in filters if args.get(arg) is not None]
    if args.get("updated_since") is not None and hasattr(model, "updated_at"):
        conditions.append(model.updated_at >= _since(args["updated_since"]))
    return conditions


def listing(s: Session, model: Any, args: dict[str, Any], endpoint: str,
            filters: Iterable[tuple[str, Any]], *conditions: Any) -> tuple[list[Any], str | None]:
    """One keyset page of `model`: visibility and other `conditions`, then the request's filters."""
    query = select(model).where(*conditions, *requested(model, args, filters))
    return keyset(s, query, model.id, args, endpoint)


def _page(items: Sequence[Any], schema: Schema, next_cursor: str | None) -> Response:
    return _json({"items": schema.dump(items), "next_cursor": next_cursor})


def _one(s: Session, model: Any, record_id: int, label: str, field: str, *visible: Any,
         lock: bool = False) -> Any:
    """The record by surrogate id if this token may see it, else 404 (never 403: a subtree token
    must not learn that a record outside exists)."""
    query = select(model).where(model.id == record_id, *visible)
    row = s.scalar(query.with_for_update() if lock else query)
    if row is None:
        fail(404, f"no {label} {record_id}", field=field)
    return row


class _View:
    """A record with extra computed attributes for its schema (the model stays untouched)."""

    def __init__(self, obj: Any, **extra: Any) -> None:
        self._obj = obj
        self.__dict__.update(extra)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._obj, name)


# --- persons -----------------------------------------------------------------------------------


def _person_views(s: Session, persons: Sequence[Person]) -> list[_View]:
    orgs: dict[int, list[str]] = defaultdict(list)
    if persons:
        rows = s.execute(select(Membership.person_id, Membership.party_org_code).where(
            Membership.person_id.in_([p.id for p in persons]), Membership.active.is_(True)))
        for person_id, code in rows:
            if code:
                orgs[person_id].append(code)
    return [_View(p, is_member=p.id in orgs, party_org_codes=sorted(orgs.get(p.id, []))) for p in persons]


# Persons are the big lists (pages of up to 1000, a lookup per call from other systems): they are
# written straight from the rows to orjson instead of through marshmallow, which cost ~70 % of a
# page of 100. Same fields, names and formats as sc.PersonSchema (which documents them and stays
# the reference: tests compare both); naive UTC timestamps get "+00:00" from OPT_NAIVE_UTC.
_PERSON_COMPUTED = ("id_number", "mobile", "is_member", "party_org_codes")
_PERSON_PLAIN = tuple((name, field.attribute or name) for name, field in sc.PersonSchema._declared_fields.items()
                      if name not in _PERSON_COMPUTED)
_PERSON_PLAIN_NAMES = tuple(name for name, _ in _PERSON_PLAIN)
# The published columns (ID number and mobile masked, or encrypted for read:sensitive) and the
# party org of each active membership, keyed by `sensitive`: built once, as building a select of
# twenty columns costs more on SQLite than running it.
_PERSON_ROWS = {sensitive: select(*(getattr(Person, attr) for _, attr in _PERSON_PLAIN),
                                  *secret, Membership.party_org_code)
                for sensitive, secret in ((False, (Person.id_number_masked, Person.mobile_masked)),
                                          (True, (Person.id_number_enc, Person.mobile_enc)))}
_ACTIVE_MEMBERSHIPS = (Membership.person_id == Person.id) & Membership.active.is_(True)


def _person_page(s: Session, viewer: Viewer, conditions: Sequence[Any], limit: int) -> tuple[list[dict[str, Any]], int | None]:
    """Up to `limit` persons meeting `conditions` in id order, ready for orjson, and the last id
    when more follow (for the cursor).

    One statement: the page's ids (the LIMIT counts persons, not a person's memberships; an
    index-only scan where an index covers the filter), joined back to the published columns
    only (not Person objects with their JSON provenance) and left-joined to the active
    memberships. Whole objects and a second query for the memberships were a third of a page's
    time on PostgreSQL: ORM rows, and a round trip more.
    """
    page = select(Person.id).where(*conditions).order_by(Person.id).limit(limit + 1).subquery("page")
    rows = s.execute(_PERSON_ROWS[viewer.sensitive].select_from(page).join(Person, Person.id == page.c.id)
                     .outerjoin(Membership, _ACTIVE_MEMBERSHIPS).order_by(Person.id)).all()
    cipher = current_app.extensions["dualline"].runtime().cipher if viewer.sensitive else None
    plain = len(_PERSON_PLAIN_NAMES)
    items: dict[int, dict[str, Any]] = {}
    for row in rows:
        item = items.get(row.id)
        if item is None:
            item = items[row.id] = dict(zip(_PERSON_PLAIN_NAMES, row))
            id_number, mobile = row[plain], row[plain + 1]
            item["id_number"] = cipher.decrypt(id_number) if cipher else id_number
            item["mobile"] = cipher.decrypt(mobile) if cipher else mobile
            item["is_member"] = False
            item["party_org_codes"] = []
        code = row[-1]
        if code:
            item["is_member"] = True
            item["party_org_codes"].append(code)
    page_items = list(items.values())[:limit]
    for item in page_items:
        item["party_org_codes"].sort()  # in Python, as PersonSchema's reference: not by the database's collation
    return page_items, (page_items[-1]["id"] if len(items) > limit else None)


def _fast_json(data: Any) -> Response:
    return Response(orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_NAIVE_UTC),
                    mimetype="application/json")


def _active_membership(*conditions: Any):
    return exists().where(Membership.person_id == Person.id, Membership.active.is_(True), *conditions)


@bp.route("/persons")
@bp.arguments(sc.PersonQuerySchema, location="query")
@bp.response(200, sc.PersonPageSchema)
@documented(400)
def list_persons(args: dict[str, Any]) -> Response:
    """Persons, filtered; ID number and mobile masked unless the token holds read:sensitive."""
    viewer = require("read")
    after = decode_cursor("persons", args.get("cursor"))
    with read_session() as s:
        conditions = [viewer.persons_filter(s)]
        if args.get("party_org"):
            # IN over the branch's memberships (index on party_org_code), not EXISTS per person: the
            # planner would otherwise walk persons in id order probing each one (a full scan for a
            # small branch at a million persons).
            conditions.append(Person.id.in_(select(Membership.person_id).where(
                Membership.party_org_code == args["party_org"], Membership.active.is_(True))))
        if args.get("is_member") is not None:
            # The page's lower bound repeated inside: PostgreSQL merge-joins on person_id, and
            # without it walks the memberships from the first one (175 000 rows at a million).
            member = _active_membership(Membership.person_id > after)
            conditions.append(member if args["is_member"] else ~member)
        conditions += requested(Person, args, [
            ("employee_no", Person.employee_no), ("org_unit", Person.org_unit_code),
            ("political_status", Person.political_status)])
        items, last_id = _person_page(s, viewer, [*conditions, Person.id > after], args["limit"])
        next_cursor = None if last_id is None else encode_cursor("persons", last_id)
        return _fast_json({"items": items, "next_cursor": next_cursor})


@bp.route("/persons/<int(max=9223372036854775807):person_id>")
@bp.response(200, sc.PersonSchema)
@documented(404)
def get_person(person_id: int) -> Response:
    """One person by id (the id the change feed names)."""
    viewer = require("read")
    with read_session() as s:
        items, _ = _person_page(s, viewer, [Person.id == person_id, viewer.persons_filter(s)], 1)
    if not items:
        fail(404, f"no person {person_id}", field="person_id")
    return _fast_json(items[0])


# --- org units ---------------------------------------------------------------------------------


@bp.route("/org-units")
@bp.arguments(sc.OrgUnitQuerySchema, location="query")
@bp.response(200, sc.OrgUnitPageSchema)
@documented(400)
def list_org_units(args: dict[str, Any]) -> Response:
    """Org units of the business line (every token sees the whole chart: no personal data)."""
    require("read")
    with db_session() as s:
        rows, next_cursor = listing(s, OrgUnit, args, "org-units", [
            ("parent_code", OrgUnit.parent_code), ("kind", OrgUnit.kind), ("status", OrgUnit.status),
            ("active", OrgUnit.active)])
        return _page(rows, sc.OrgUnitSchema(many=True), next_cursor)


@bp.route("/org-units/<int(max=9223372036854775807):unit_id>")
@bp.response(200, sc.OrgUnitSchema)
@documented(404)
def get_org_unit(unit_id: int) -> Response:
    require("read")
    with db_session() as s:
        return _json(sc.OrgUnitSchema().dump(_one(s, OrgUnit, unit_id, "org unit", "unit_id")))


def _tree(root: Any, nodes: Sequence[Any], key: str, extra=None) -> _View:
    """Nest `nodes` under `root` by parent_code → `key`, depth-capped and cycle-safe."""
    children: dict[str, list[Any]] = defaultdict(list)
    for node in nodes:
        if node.parent_code:
            children[node.parent_code].append(node)

    def build(node: Any, depth: int, seen: frozenset[str]) -> _View:
        code = getattr(node, key)
        kids = [] if depth >= TREE_DEPTH else [
            build(c, depth + 1, seen | {code}) for c in sorted(children.get(code, []), key=lambda n: n.code)
            if getattr(c, key) not in seen and getattr(c, key) != code
        ]
        view = _View(node, children=kids, **(extra(node) if extra else {}))
        return view

    return build(root, 0, frozenset())


@bp.route("/org-units/<int(max=9223372036854775807):unit_id>/tree")
@bp.response(200, sc.OrgUnitTreeSchema)
@documented(404)
def org_unit_tree(unit_id: int) -> Response:
    """The unit and its active descendants, nested."""
    require("read")
    with db_session() as s:
        root = _one(s, OrgUnit, unit_id, "org unit", "unit_id")
        units = s.scalars(select(OrgUnit).where(OrgUnit.active.is_(True))).all()
        return _json(sc.OrgUnitTreeSchema().dump(_tree(root, units, "code")))


# --- party orgs --------------------------------------------------------------------------------


def _party_org_views(s: Session, orgs: Sequence[PartyOrg]) -> list[_View]:
    codes = [o.code for o in orgs]
    covers: dict[str, list[dict[str, Any]]] = defaultdict(list)
    counts: dict[str, int] = {}
    if codes:
        for c in s.scalars(select(Coverage).where(Coverage.party_org_code.in_(codes)).order_by(Coverage.org_unit_code)):
            covers[c.party_org_code].append({"org_unit_code": c.org_unit_code,
                                             "include_descendants": c.include_descendants, "origin": c.origin})
        counts = dict(s.execute(select(Membership.party_org_code, func.count(Membership.id)).where(
            Membership.party_org_code.in_(codes), Membership.active.is_(True)).group_by(Membership.party_org_code)).all())
    return [_View(o, covers=covers.get(o.code, []), member_count=counts.get(o.code, 0)) for o in orgs]


def _party_org_filter(viewer: Viewer, s: Session):
    return PartyOrg.code.in_(viewer.subtree(s)) if viewer.limited else PartyOrg.id.is_not(None)


@bp.route("/party-orgs")
@bp.arguments(sc.PartyOrgQuerySchema, location="query")
@bp.response(200, sc.PartyOrgPageSchema)
@documented(400)
def list_party_orgs(args: dict[str, Any]) -> Response:
    """Party orgs with the org units they cover and their active member counts."""
    viewer = require("read")
    with db_session() as s:
        rows, next_cursor = listing(s, PartyOrg, args, "party-orgs", [
            ("parent_code", PartyOrg.parent_code), ("kind", PartyOrg.kind), ("active", PartyOrg.active)],
            _party_org_filter(viewer, s))
        return _page(_party_org_views(s, rows), sc.PartyOrgSchema(many=True), next_cursor)


def _visible_party_org(s: Session, viewer: Viewer, org_id: int) -> PartyOrg:
    return _one(s, PartyOrg, org_id, "party org", "org_id", _party_org_filter(viewer, s))


@bp.route("/party-orgs/<int(max=9223372036854775807):org_id>")
@bp.response(200, sc.PartyOrgSchema)
@documented(404)
def get_party_org(org_id: int) -> Response:
    viewer = require("read")
    with db_session() as s:
        org = _visible_party_org(s, viewer, org_id)
        return _json(sc.PartyOrgSchema().dump(_party_org_views(s, [org])[0]))


@bp.route("/party-orgs/<int(max=9223372036854775807):org_id>/tree")
@bp.response(200, sc.PartyOrgTreeSchema)
@documented(404)
def party_org_tree(org_id: int) -> Response:
    """The party org and its active descendants, nested, with coverage and member counts."""
    viewer = require("read")
    with db_session() as s:
        root = _visible_party_org(s, viewer, org_id)
        orgs = _party_org_views(s, s.scalars(select(PartyOrg).where(PartyOrg.active.is_(True))).all())
        by_code = {o.code: o for o in orgs}
        tree = _tree(by_code.get(root.code) or _party_org_views(s, [root])[0], orgs, "code")

        def total(node: _View) -> int:
            node.subtree_member_count = node.member_count + sum(total(c) for c in node.children)
            return node.subtree_member_count

        total(tree)
        return _json(sc.PartyOrgTreeSchema().dump(tree))


# --- memberships, performance --------------------------------------------------------------------


@bp.route("/memberships")
@bp.arguments(sc.MembershipQuerySchema, location="query")
@bp.response(200, sc.MembershipPageSchema)
@documented(400)
def list_memberships(args: dict[str, Any]) -> Response:
    viewer = require("read")
    with db_session() as s:
        rows, next_cursor = listing(s, Membership, args, "memberships", [
            ("person_id", Membership.person_id), ("party_org", Membership.party_org_code),
            ("category", Membership.category), ("status", Membership.status), ("active", Membership.active)],
            viewer.memberships_filter(s))
        return _page(rows, sc.MembershipSchema(many=True), next_cursor)


@bp.route("/memberships/<int(max=9223372036854775807):membership_id>")
@bp.response(200, sc.MembershipSchema)
@documented(404)
def get_membership(membership_id: int) -> Response:
    viewer = require("read")
    with db_session() as s:
        row = _one(s, Membership, membership_id, "membership", "membership_id", viewer.memberships_filter(s))
        return _json(sc.MembershipSchema().dump(row))


def _performance_filter(viewer: Viewer, s: Session):
    if not viewer.limited:
        return Performance.id.is_not(None)
    return Performance.person_id.in_(viewer.visible_person_ids(s))


@bp.route("/performance")
@bp.arguments(sc.PerformanceQuerySchema, location="query")
@bp.response(200, sc.PerformancePageSchema)
@documented(400)
def list_performance(args: dict[str, Any]) -> Response:
    viewer = require("read")
    with db_session() as s:
        rows, next_cursor = listing(s, Performance, args, "performance", [
            ("employee_no", Performance.employee_no), ("person_id", Performance.person_id),
            ("period", Performance.period)], _performance_filter(viewer, s))
        return _page(rows, sc.PerformanceSchema(many=True), next_cursor)


@bp.route("/performance/<int(max=9223372036854775807):performance_id>")
@bp.response(200, sc.PerformanceSchema)
@documented(404)
def get_performance(performance_id: int) -> Response:
    viewer = require("read")
    with db_session() as s:
        row = _one(s, Performance, performance_id, "performance record", "performance_id",
                   _performance_filter(viewer, s))
        return _json(sc.PerformanceSchema().dump(row))


# --- mismatches --------------------------------------------------------------------------------


def _mismatch_views(s: Session, viewer: Viewer, rows: Sequence[Mismatch]) -> list[dict[str, Any]]:
    person_ids = [m.subject_id for m in rows if m.subject_type == "person" and m.subject_id]
    persons = {p.id: p for p in s.scalars(select(Person).where(Person.id.in_(person_ids)))} if person_ids else {}
    cipher = current_app.extensions["dualline"].runtime().cipher if viewer.sensitive else None
    out = []
    for m in rows:
        person = persons.get(m.subject_id) if m.subject_type == "person" else None
        item = mismatch_item(m, person, viewer.sensitive, cipher)
        item.update(opened_at=m.opened_at, updated_at=m.updated_at, closed_at=m.closed_at,
                    party_org_code=m.party_org_code, other_party_org_code=m.other_party_org_code,
                    org_unit_code=m.org_unit_code, resolution=m.resolution, resolution_note=m.resolution_note,
                    resolved_by=m.resolved_by, resolved_at=m.resolved_at, expires_at=m.expires_at)
        out.append(item)
    return out


@bp.route("/mismatches")
@bp.arguments(sc.MismatchQuerySchema, location="query")
@bp.response(200, sc.MismatchPageSchema)
@documented(400)
def list_mismatches(args: dict[str, Any]) -> Response:
    """Mismatches between the business line and the party line."""
    viewer = require("read")
    with db_session() as s:
        conditions = [viewer.mismatches_filter(s)]
        if args.get("party_org"):
            conditions.append(or_(Mismatch.party_org_code == args["party_org"],
                                  Mismatch.other_party_org_code == args["party_org"]))
        conditions.append(mismatch_state_filter(args["state"]))
        rows, next_cursor = listing(s, Mismatch, args, "mismatches", [
            ("rule", Mismatch.rule), ("subject_type", Mismatch.subject_type)], *conditions)
        return _page(_mismatch_views(s, viewer, rows), sc.MismatchSchema(many=True), next_cursor)


def _mismatch_body(s: Session, viewer: Viewer, m: Mismatch) -> bytes:
    return orjson.dumps(sc.MismatchSchema().dump(_mismatch_views(s, viewer, [m])[0]))


@bp.route("/mismatches/<int(max=9223372036854775807):mismatch_id>")
@bp.response(200, sc.MismatchSchema)
@documented(404)
def get_mismatch(mismatch_id: int) -> Response:
    viewer = require("read")
    with db_session() as s:
        m = _one(s, Mismatch, mismatch_id, "mismatch", "mismatch_id", viewer.mismatches_filter(s))
        return Response(_mismatch_body(s, viewer, m), mimetype="application/json")


@bp.route("/mismatches/<int(max=9223372036854775807):mismatch_id>/resolution", methods=["POST"])
@bp.arguments(sc.ResolutionSchema)
@bp.response(200, sc.MismatchSchema)
@documented(400, 404, 409, 412)
def resolve_mismatch(data: dict[str, Any], mismatch_id: int) -> Response:
    """Resolve or ignore a mismatch (scope write:resolutions); audited and in the change feed.

    `action` (optional) also changes the records the way the rule calls for — e.g. `transfer`
    moves a `branch_mismatch`'s membership to the expected branch and records the transfer
    (sync.resolutions); a subtree token's target branch must lie in its subtree.

    `If-Match` with the ETag of `GET /mismatches/{id}` makes it conditional (412 when the mismatch
    changed meanwhile). A closed mismatch (the data agrees now) cannot be resolved: 409.
    """
    viewer = require("write:resolutions")
    with db_session() as s, s.begin():
        m = _one(s, Mismatch, mismatch_id, "mismatch", "mismatch_id", viewer.mismatches_filter(s), lock=True)
        # The same ETag `GET /mismatches/{id}` gave this token (werkzeug's, over the same body).
        if request.if_match and not request.if_match.star_tag \
                and not request.if_match.contains(generate_etag(_mismatch_body(s, viewer, m))):
            fail(412, "the mismatch changed since you read it; fetch it again", field="If-Match")
        action = data.get("action") or resolutions.action_for_state(data["state"])
        if resolutions.state_for_action(action) != data["state"]:
            fail(422, f"action {action!r} goes with state {resolutions.state_for_action(action)!r}", field="action")
        target = data.get("target_party_org")
        # A subtree token registers members only with branches of its subtree (the default
        # target, the expected branch, included).
        effective = (target or resolutions.default_target(m, action)) if action in resolutions.BRANCH_ACTIONS else None
        if effective and viewer.limited and effective not in viewer.subtree(s):
            fail(404, f"no party org {effective}", field="target_party_org")
        try:
            resolutions.resolve(
                s, m, action, viewer.actor, data["reason"], expires_at=_since(data.get("expires_at")),
                target_party_org=target, person_id=data.get("person_id"), to_org_name=data.get("to_org_name"),
                letter_no=data.get("letter_no"), dues_paid_until=data.get("dues_paid_until"))
        except resolutions.ResolutionError as exc:
            fail(exc.status, exc.message, field=exc.field)
        s.flush()
        body = _mismatch_body(s, viewer, m)
    return Response(body, mimetype="application/json")


# --- runs --------------------------------------------------------------------------------------


@bp.route("/runs")
@bp.arguments(sc.RunQuerySchema, location="query")
@bp.response(200, sc.RunPageSchema)
@documented(400)
def list_runs(args: dict[str, Any]) -> Response:
    """Sync runs, oldest first (page to the end, or keep the last cursor, for the newest)."""
    require("read")
    with db_session() as s:
        rows, next_cursor = listing(s, SyncRun, args, "runs", [("status", SyncRun.status)])
        return _page(rows, sc.RunSchema(many=True), next_cursor)


@bp.route("/runs/<int(max=9223372036854775807):run_id>")
@bp.response(200, sc.RunSchema)
@documented(404)
def get_run(run_id: int) -> Response:
    require("read")
    with db_session() as s:
        return _json(sc.RunSchema().dump(_one(s, SyncRun, run_id, "run", "run_id")))


# --- change feed -------------------------------------------------------------------------------


@bp.route("/changes")
@bp.arguments(sc.ChangeQuerySchema, location="query")
@bp.response(200, sc.ChangeFeedSchema)
@documented()
def list_changes(args: dict[str, Any]) -> Response:
    """The change feed: every committed change with seq > `after`, in order.

    Follow it by passing the answer's `last_seq` as the next `after`; an empty page returns
    `last_seq` = `after`. Sensitive values in `changed` are always masked (only masked copies are
    kept in the history); fetch the record with read:sensitive for the current value.
    """
    viewer = require("read")
    after, limit = args["after"], args["limit"]
    with db_session() as s:
        # Only rows stamped at their commit, in commit order (records.feed): a page never shows
        # a seq while a smaller one is still to come.
        entities = [args["entity"]] if args.get("entity") else sc.FEED_ENTITIES
        rows = read_feed(s, viewer, after, limit, entities)
        items = [feed_item(c) for c in rows]
    last_seq = rows[-1].seq if rows else after
    return _json(sc.ChangeFeedSchema().dump({"items": items, "last_seq": last_seq}))
