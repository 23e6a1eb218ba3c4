"""Users (persons) and Groups (party orgs): how SCIM attributes map onto the unified records.

Each resource type has a table of *filterable* attributes: the SQL expression behind the attribute
and its SCIM type, which decides the operators it takes. Filters are translated to SQLAlchemy
conditions (never evaluated in Python), so a filtered page costs one indexed query whatever the
size of the table. Attributes served but not in the table (phoneNumbers, organization, manager)
are not filterable: a filter on them answers 400 invalidFilter. phoneNumbers is deliberately
among them — a filter on the real number would let a token without read:sensitive probe it.

Rendering loads what a page needs in a fixed number of queries (memberships, party orgs, org
units, managers), never one query per resource. It shows what sources and SCIM clients said, not
placeholders: employeeNumber only when a real source assigned the number, a party org's code,
retirees and active only when it comes from a source (a SCIM-created one has a generated code);
a User extension when it holds something or a client attached it (Person.scim_extensions).
"""
from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import ColumnElement, String, and_, case, cast, exists, false, func, not_, or_, select, true
from sqlalchemy.orm import Session

from records.models import Membership, OrgUnit, PartyOrg, Person
from sync.alignment import IN_SERVICE
from web.api.security import Viewer
from web.scim import schema as sc
from web.scim.filter import And, AttrPath, Compare, FilterError, Node, Not, Or, Present, ValuePath
from web.scim.writes import TREE_DEPTH, owned_by_source

# Compound (two-character) Chinese surnames: the family name is two characters, not one.
COMPOUND_SURNAMES = frozenset("""欧阳 司马 上官 诸葛 东方 皇甫 尉迟 公孙 慕容 长孙 令狐 夏侯 轩辕 宇文 司徒
    司空 端木 独孤 南宫 西门 万俟 闻人 赫连 澹台 公冶 宗政 濮阳 太叔 申屠 钟离 呼延 百里 东郭 拓跋""".split())


def split_name(name: str | None) -> tuple[str | None, str | None]:
    """(familyName, givenName) of a Chinese name; (None, None) for names written with spaces or
    with Latin letters (another naming order: a first character is no surname there), which keep
    only `formatted`. Mirrors `_family_sql`/`_given_sql`."""
    if not name or " " in name or len(name) < 2 or name.lower() != name.upper():
        return None, None
    size = 2 if name[:2] in COMPOUND_SURNAMES and len(name) > 2 else 1
    return name[:size], name[size:]


def _family_size() -> ColumnElement[Any]:
    return case((and_(func.substr(Person.name, 1, 2).in_(sorted(COMPOUND_SURNAMES)),
                      func.length(Person.name) > 2), 2), else_=1)


def _not_split() -> ColumnElement[bool]:
    # lower ≠ upper: the name holds cased (Latin) letters. (SQLite folds ASCII only: a name of
    # only non-ASCII cased letters, Greek say, is split there and not in Python — rare enough.)
    return or_(Person.name.contains(" "), func.length(Person.name) < 2, func.lower(Person.name) != func.upper(Person.name))


def _family_sql() -> ColumnElement[Any]:
    return case((_not_split(), None), else_=func.substr(Person.name, 1, _family_size()))


def _given_sql() -> ColumnElement[Any]:
    return case((_not_split(), None), else_=func.substr(Person.name, _family_size() + 1))


# --- filterable attributes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """A filterable attribute: `column` holds its value; `kind` is id | string | boolean |
    datetime | date. `related(cond)` wraps a condition on another table's row into an EXISTS on
    the resource (multi-valued or extension data); such fields cannot be sorted on."""

    kind: str
    column: Any
    case_exact: bool = False
    related: Callable[[ColumnElement[bool]], ColumnElement[bool]] | None = None
    # An equivalent, indexable condition for `eq "value"` (see _username_eq).
    equals: Callable[[str], ColumnElement[bool]] | None = None


def _instant(value: Any, path: AttrPath) -> dt.datetime:
    if not isinstance(value, str):
        raise FilterError(f"{path} takes a dateTime string")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise FilterError(f"{path}: {value!r} is not an xsd:dateTime") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return parsed


def _ordered(column: Any, op: str, value: Any) -> ColumnElement[bool]:
    return {"gt": column > value, "ge": column >= value, "lt": column < value, "le": column <= value}[op]


def _compare(field: Field, path: AttrPath, op: str, value: Any) -> ColumnElement[bool]:
    """The condition `path op value` on the field's own row (before any EXISTS wrapping)."""
    col = field.column
    if value is None:
        if op == "eq":
            return col.is_(None)
        if op == "ne":
            return col.is_not(None)
        raise FilterError(f"{op} null is not a comparison")
    if field.kind == "boolean":
        if op not in ("eq", "ne") or not isinstance(value, bool):
            raise FilterError(f"{path} is boolean: use eq or ne with true or false")
        return col if (op == "eq") == value else not_(col)
    if field.kind in ("datetime", "date"):
        if op in ("co", "sw", "ew"):
            raise FilterError(f"{op} does not apply to the dateTime attribute {path}")
        instant = _instant(value, path)
        bound: Any = instant.date() if field.kind == "date" else instant
        if op == "eq":
            return col == bound
        if op == "ne":
            return or_(col.is_(None), col != bound)
        return _ordered(col, op, bound)
    if field.kind == "id":
        # Ids are strings in SCIM and integers here: equality and order compare as numbers, the
        # substring operators on the decimal text.
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise FilterError(f"{path} takes a string")
        text = str(value)
        if op in ("co", "sw", "ew"):
            pattern = cast(col, String)
            return {"co": pattern.contains(text, autoescape=True), "sw": pattern.startswith(text, autoescape=True),
                    "ew": pattern.endswith(text, autoescape=True)}[op]
        if not text.isdigit():
            return false() if op != "ne" else true()
        number = int(text)
        if op == "eq":
            return col == number
        if op == "ne":
            return col != number
        return _ordered(col, op, number)
    # strings
    if not isinstance(value, str):
        raise FilterError(f"{path} is a string attribute: compare it with a string")
    left, right = (col, value) if field.case_exact else (func.lower(col), value.lower())
    if op == "eq":
        return left == right
    if op == "ne":
        return or_(col.is_(None), left != right)
    if op == "co":
        return left.contains(right, autoescape=True)
    if op == "sw":
        return left.startswith(right, autoescape=True)
    if op == "ew":
        return left.endswith(right, autoescape=True)
    return _ordered(left, op, right)


class ResourceKind:
    """One SCIM resource type over one model: its attribute table and path resolution."""

    def __init__(self, name: str, model: Any, core: str, extensions: Sequence[str],
                 fields: dict[tuple[str, str, str | None], Field],
                 defaults: dict[tuple[str, str], str] | None = None) -> None:
        self.name, self.model, self.core, self.extensions = name, model, core, tuple(extensions)
        self.schemas = (core, *extensions)
        self.fields = {(urn.lower(), a.lower(), s.lower() if s else None): f for (urn, a, s), f in fields.items()}
        # complex attribute → the sub-attribute a bare name means (sortBy=name → name.formatted)
        self.defaults = {(urn.lower(), a.lower()): s for (urn, a), s in (defaults or {}).items()}

    def resolve(self, path: AttrPath) -> tuple[str, str, str | None]:
        """(schema, attr, sub), lower-cased: a bare name is looked up in the core schema, then in
        the extensions (accepted when unambiguous, as most clients send short names)."""
        attr, sub = path.attr.lower(), path.sub.lower() if path.sub else None
        candidates = [path.schema.lower()] if path.schema else [s.lower() for s in self.schemas]
        for urn in candidates:
            if sub is None and (urn, attr) in self.defaults:
                sub = self.defaults[(urn, attr)].lower()
            if (urn, attr, sub) in self.fields:
                return urn, attr, sub
        raise FilterError(f"{path} is not a filterable attribute of {self.name} "
                          f"(filterable: {', '.join(self.filterable())})")

    def field(self, path: AttrPath) -> Field:
        return self.fields[self.resolve(path)]

    def filterable(self) -> list[str]:
        out = []
        for urn, attr, sub in self.fields:
            name = f"{attr}.{sub}" if sub else attr
            out.append(name if urn == self.core.lower() else f"{urn}:{name}")
        return out

    def condition(self, node: Node) -> ColumnElement[bool]:
        """The SQL condition for a parsed filter."""
        if isinstance(node, And):
            return and_(self.condition(node.left), self.condition(node.right))
        if isinstance(node, Or):
            return or_(self.condition(node.left), self.condition(node.right))
        if isinstance(node, Not):
            return not_(self.condition(node.expr))
        if isinstance(node, ValuePath):
            return self.condition(_within(node.path, node.expr))
        field = self.field(node.path)
        if isinstance(node, Present):
            present = field.column.is_not(None)
            if field.kind == "string":
                present = and_(present, field.column != "")
            return field.related(present) if field.related else present
        assert isinstance(node, Compare)
        if field.equals is not None and node.op == "eq" and isinstance(node.value, str):
            return field.equals(node.value)
        if field.related is None:
            return _compare(field, node.path, node.op, node.value)
        if node.op == "ne":
            # "no related row equals": a resource without any related row matches too.
            return not_(field.related(_compare(field, node.path, "eq", node.value)))
        return field.related(_compare(field, node.path, node.op, node.value))

    def sort_column(self, path: AttrPath) -> Any:
        try:
            field = self.field(path)
        except FilterError:
            field = None
        if field is None or field.related is not None:
            raise FilterError(f"cannot sort {self.name} by {path}")
        return field.column if field.case_exact or field.kind != "string" else func.lower(field.column)


def _within(outer: AttrPath, node: Node) -> Node:
    """`members[value eq "1" and display sw "张"]` → the same filter on members.value, …"""
    if isinstance(node, (And, Or)):
        return type(node)(_within(outer, node.left), _within(outer, node.right))
    if isinstance(node, Not):
        return Not(_within(outer, node.expr))
    if isinstance(node, ValuePath):
        raise FilterError("value filters do not nest")
    if node.path.schema or node.path.sub:
        raise FilterError(f"inside {outer}[…] name sub-attributes only, not {node.path}")
    path = AttrPath(outer.schema, outer.attr, node.path.attr)
    return Compare(path, node.op, node.value) if isinstance(node, Compare) else Present(path)


def _active_membership_of_person(cond: ColumnElement[bool]) -> ColumnElement[bool]:
    return exists().where(Membership.person_id == Person.id, Membership.active.is_(True), cond)


def _membership_org_of_person(cond: ColumnElement[bool]) -> ColumnElement[bool]:
    return exists().where(Membership.person_id == Person.id, Membership.active.is_(True),
                          PartyOrg.code == Membership.party_org_code, cond)


def _unit_of_person(cond: ColumnElement[bool]) -> ColumnElement[bool]:
    return exists().where(OrgUnit.code == Person.org_unit_code, cond)


def _member_of_group(cond: ColumnElement[bool]) -> ColumnElement[bool]:
    return exists().where(Membership.party_org_code == PartyOrg.code, Membership.active.is_(True), cond)


def _member_person_of_group(cond: ColumnElement[bool]) -> ColumnElement[bool]:
    return exists().where(Membership.party_org_code == PartyOrg.code, Membership.active.is_(True),
                          Person.id == Membership.person_id, cond)


MAX_CASE_VARIANTS = 256


def _case_variants(value: str) -> set[str] | None:
    """Every spelling of `value` that equals it case-insensitively, or None when there are too
    many to list (more than 8 letters)."""
    variants = [""]
    for ch in value:
        forms = {f for f in (ch, ch.lower(), ch.upper()) if len(f) == 1}
        variants = [v + f for v in variants for f in forms]
        if len(variants) > MAX_CASE_VARIANTS:
            return None
    return set(variants)


def _username_eq(value: str) -> ColumnElement[bool]:
    """`userName eq "…"` — case-insensitive (RFC 7643 §4.1.1) yet indexed: the employee number is
    one of the value's case variants (an IN over the unique index; employee numbers hold few
    letters), or, for persons without one, the id. lower(coalesce(…)) would read every row: at a
    million persons a lookup took a full scan, and MariaDB has no expression indexes."""
    variants = _case_variants(value)
    by_number = (Person.employee_no.in_(sorted(variants)) if variants is not None
                 else func.lower(Person.employee_no) == value.lower())
    if value.isdigit() and len(value) < 19 and value == str(int(value)):
        return or_(by_number, and_(Person.employee_no.is_(None), Person.id == int(value)))
    return by_number


def _user_external_id_eq(value: str) -> ColumnElement[bool]:
    """externalId is the employee number, or for persons created through SCIM the client's own
    value: either way an indexed equality."""
    by_number = and_(Person.employee_no == value, Person.scim_external_id.is_(None))
    return or_(by_number, Person.scim_external_id == value) if value else by_number


def _group_external_id_eq(value: str) -> ColumnElement[bool]:
    by_code = and_(PartyOrg.code == value, PartyOrg.scim_external_id.is_(None))
    return or_(by_code, PartyOrg.scim_external_id == value) if value else by_code


USER_IN_SERVICE = and_(Person.staff_active.is_(True), Person.employment_status.in_(IN_SERVICE))

USERS = ResourceKind("User", Person, sc.CORE_USER, (sc.ENTERPRISE, sc.PARTY), {
    (sc.CORE_USER, "id", None): Field("id", Person.id),
    (sc.CORE_USER, "externalId", None): Field("string", case((Person.scim_external_id.is_(None), Person.employee_no),
                                                             else_=func.nullif(Person.scim_external_id, "")),
                                              case_exact=True, equals=_user_external_id_eq),
    (sc.CORE_USER, "userName", None): Field("string", func.coalesce(Person.employee_no, cast(Person.id, String)),
                                            equals=_username_eq),
    (sc.CORE_USER, "name", "formatted"): Field("string", Person.name),
    (sc.CORE_USER, "name", "familyName"): Field("string", _family_sql()),
    (sc.CORE_USER, "name", "givenName"): Field("string", _given_sql()),
    (sc.CORE_USER, "displayName", None): Field("string", Person.name),
    (sc.CORE_USER, "active", None): Field("boolean", USER_IN_SERVICE),
    (sc.CORE_USER, "meta", "created"): Field("datetime", Person.created_at),
    (sc.CORE_USER, "meta", "lastModified"): Field("datetime", Person.updated_at),
    (sc.CORE_USER, "groups", "value"): Field("id", PartyOrg.id, related=_membership_org_of_person),
    (sc.CORE_USER, "groups", "display"): Field("string", PartyOrg.name, related=_membership_org_of_person),
    (sc.ENTERPRISE, "employeeNumber", None): Field("string", Person.employee_no, case_exact=True),
    (sc.ENTERPRISE, "department", None): Field("string", OrgUnit.name, related=_unit_of_person),
    (sc.PARTY, "branch", "code"): Field("string", Membership.party_org_code, case_exact=True,
                                        related=_active_membership_of_person),
    (sc.PARTY, "branch", "value"): Field("id", PartyOrg.id, related=_membership_org_of_person),
    (sc.PARTY, "branch", "display"): Field("string", PartyOrg.name, related=_membership_org_of_person),
    (sc.PARTY, "category", None): Field("string", Membership.category, related=_active_membership_of_person),
    (sc.PARTY, "joinedOn", None): Field("date", Membership.joined_on, related=_active_membership_of_person),
    (sc.PARTY, "fullMemberOn", None): Field("date", Membership.full_member_on, related=_active_membership_of_person),
    (sc.PARTY, "membershipStatus", None): Field("string", Membership.status, related=_active_membership_of_person),
    (sc.PARTY, "politicalStatus", None): Field("string", Person.political_status, case_exact=True),
}, defaults={(sc.CORE_USER, "name"): "formatted", (sc.CORE_USER, "groups"): "value",
             (sc.PARTY, "branch"): "code"})

GROUPS = ResourceKind("Group", PartyOrg, sc.CORE_GROUP, (sc.PARTY_ORG,), {
    (sc.CORE_GROUP, "id", None): Field("id", PartyOrg.id),
    (sc.CORE_GROUP, "externalId", None): Field("string", case((PartyOrg.scim_external_id.is_(None), PartyOrg.code),
                                                               else_=func.nullif(PartyOrg.scim_external_id, "")),
                                               case_exact=True, equals=_group_external_id_eq),
    (sc.CORE_GROUP, "displayName", None): Field("string", PartyOrg.name),
    (sc.CORE_GROUP, "meta", "created"): Field("datetime", PartyOrg.created_at),
    (sc.CORE_GROUP, "meta", "lastModified"): Field("datetime", PartyOrg.updated_at),
    (sc.CORE_GROUP, "members", "value"): Field("id", Membership.person_id, related=_member_of_group),
    (sc.CORE_GROUP, "members", "display"): Field("string", Person.name, related=_member_person_of_group),
    (sc.PARTY_ORG, "code", None): Field("string", PartyOrg.code, case_exact=True),
    (sc.PARTY_ORG, "kind", None): Field("string", PartyOrg.kind, case_exact=True),
    (sc.PARTY_ORG, "parent", "code"): Field("string", PartyOrg.parent_code, case_exact=True),
    (sc.PARTY_ORG, "active", None): Field("boolean", PartyOrg.active.is_(True)),
    (sc.PARTY_ORG, "retirees", None): Field("boolean", PartyOrg.retirees.is_(True)),
}, defaults={(sc.CORE_GROUP, "members"): "value", (sc.PARTY_ORG, "parent"): "code"})


# --- rendering ---------------------------------------------------------------------------------


def _stamp(value: dt.datetime | None) -> str | None:
    return value.replace(microsecond=0).isoformat() + "Z" if value else None


def _day(value: dt.date | None) -> str | None:
    return f"{value.isoformat()}T00:00:00Z" if value else None


def version_of(resource: dict[str, Any]) -> str:
    """A weak ETag over the representation (without meta.version itself): it changes whenever
    anything shown changes, including data from related rows, not only the row's updated_at."""
    body = {k: v for k, v in resource.items() if k != "meta"}
    digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
    return f'W/"{digest}"'


def _finish(resource: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    resource["meta"] = meta
    meta["version"] = version_of(resource)
    return resource


def _drop_empty(d: dict[str, Any]) -> dict[str, Any]:
    """SCIM leaves unassigned attributes out rather than sending null."""
    return {k: v for k, v in d.items() if v not in (None, [], {})}


def _from_source(org: PartyOrg) -> bool:
    """The party org comes from a real source, not from a SCIM POST (whose code is generated)."""
    return owned_by_source(org.provenance, "code") is not None


def _units_with_ancestors(s: Session, codes: set[str]) -> dict[str, Any]:
    """The org units of a page and their ancestors (for department, organization and manager):
    one query per level of the chart, never the whole chart (thousands of units at scale)."""
    units: dict[str, Any] = {}
    wanted = set(codes)
    for _ in range(TREE_DEPTH):
        wanted -= units.keys()
        if not wanted:
            break
        rows = s.execute(select(OrgUnit.code, OrgUnit.name, OrgUnit.parent_code, OrgUnit.kind,
                                OrgUnit.manager_employee_no).where(OrgUnit.code.in_(sorted(wanted)))).all()
        units.update((u.code, u) for u in rows)
        # Stop climbing at companies: organization is the nearest company above.
        wanted = {u.parent_code for u in rows if u.parent_code and u.kind != "company"}
    return units


def render_users(s: Session, viewer: Viewer, persons: Sequence[Person], base: str,
                 decrypt: Callable[[str | None], str | None]) -> list[dict[str, Any]]:
    ids = [p.id for p in persons]
    memberships: dict[int, list[Membership]] = defaultdict(list)
    orgs: dict[str, PartyOrg] = {}
    if ids:
        for m in s.scalars(select(Membership).where(Membership.person_id.in_(ids), Membership.active.is_(True))
                           .order_by(Membership.id)):
            memberships[m.person_id].append(m)
        codes = {m.party_org_code for ms in memberships.values() for m in ms if m.party_org_code}
        if codes:
            orgs = {o.code: o for o in s.scalars(select(PartyOrg).where(PartyOrg.code.in_(codes)))}
    units = _units_with_ancestors(s, {p.org_unit_code for p in persons if p.org_unit_code})
    manager_nos = {units[p.org_unit_code].manager_employee_no for p in persons
                   if p.org_unit_code in units and units[p.org_unit_code].manager_employee_no}
    managers: dict[str, tuple[int, str]] = {}
    if manager_nos:
        # Only managers this token may see: a subtree token must not learn names outside it.
        rows = s.execute(select(Person.employee_no, Person.id, Person.name).where(
            Person.employee_no.in_(manager_nos), viewer.persons_filter(s)))
        managers = {no: (pid, name) for no, pid, name in rows}

    def company(code: str | None) -> str | None:
        seen: set[str] = set()
        while code and code in units and code not in seen:
            seen.add(code)
            if units[code].kind == "company":
                return units[code].name
            code = units[code].parent_code
        return None

    out = []
    for p in persons:
        family, given = split_name(p.name)
        mobile = decrypt(p.mobile_enc) if viewer.sensitive else p.mobile_masked
        unit = units.get(p.org_unit_code) if p.org_unit_code else None
        ms = memberships.get(p.id, [])
        resource: dict[str, Any] = {
            "schemas": [sc.CORE_USER, sc.ENTERPRISE, sc.PARTY],
            "id": str(p.id),
            "externalId": p.employee_no if p.scim_external_id is None else (p.scim_external_id or None),
            "userName": p.employee_no or str(p.id),
            "name": _drop_empty({"formatted": p.name or None, "familyName": family, "givenName": given}),
            "displayName": p.name or None,
            "active": bool(p.staff_active and p.employment_status in IN_SERVICE),
            "phoneNumbers": [{"value": mobile, "type": "mobile", "primary": True}] if mobile else None,
            "groups": [_drop_empty({"value": str(orgs[m.party_org_code].id), "display": orgs[m.party_org_code].name,
                                    "$ref": f"{base}/Groups/{orgs[m.party_org_code].id}", "type": "direct"})
                       for m in ms if m.party_org_code in orgs] or None,
        }
        manager = managers.get(unit.manager_employee_no) if unit and unit.manager_employee_no else None
        resource[sc.ENTERPRISE] = _drop_empty({
            # The number a real source assigned: a person only SCIM created has none yet (their
            # number is the userName the client chose).
            "employeeNumber": p.employee_no if owned_by_source(p.provenance, "employee_no") else None,
            "organization": company(p.org_unit_code),
            "department": unit.name if unit else None,
            "manager": {"value": str(manager[0]), "$ref": f"{base}/Users/{manager[0]}", "displayName": manager[1]}
            if manager and manager[0] != p.id else None,
        })
        # The membership shown: the latest active one (a person normally holds exactly one).
        m = ms[-1] if ms else None
        org = orgs.get(m.party_org_code) if m and m.party_org_code else None
        resource[sc.PARTY] = _drop_empty({
            "branch": _drop_empty({"value": str(org.id) if org else None,
                                   "code": m.party_org_code if org is None or _from_source(org) else None,
                                   "display": org.name if org else None,
                                   "$ref": f"{base}/Groups/{org.id}" if org else None}) if m else None,
            "category": m.category if m else None,
            "joinedOn": _day(m.joined_on) if m else None,
            "fullMemberOn": _day(m.full_member_on) if m else None,
            "membershipStatus": m.status if m else None,
            "politicalStatus": p.political_status,
        })
        # An extension is listed when it holds something, or while a client has it attached.
        attached = set(p.scim_extensions or [])
        resource = {k: v for k, v in resource.items() if v not in (None, [], {}) or k in attached}
        resource["schemas"] = [urn for urn in (sc.CORE_USER, sc.ENTERPRISE, sc.PARTY)
                               if urn == sc.CORE_USER or urn in resource]
        out.append(_finish(resource, {"resourceType": "User", "created": _stamp(p.created_at),
                                      "lastModified": _stamp(p.updated_at), "location": f"{base}/Users/{p.id}"}))
    return out


def render_groups(s: Session, viewer: Viewer, orgs: Sequence[PartyOrg], base: str) -> list[dict[str, Any]]:
    codes = [o.code for o in orgs]
    members: dict[str, list[tuple[int, str]]] = defaultdict(list)
    parents: dict[str, PartyOrg] = {}
    if codes:
        # No person filter needed: a Group is only rendered when the token sees it, and whoever is
        # registered with a party org the token sees is a person it sees (web.api.security).
        rows = s.execute(select(Membership.party_org_code, Person.id, Person.name)
                         .join(Person, Person.id == Membership.person_id)
                         .where(Membership.party_org_code.in_(codes), Membership.active.is_(True))
                         .order_by(Person.id))
        for code, pid, name in rows:
            members[code].append((pid, name))
        parent_codes = {o.parent_code for o in orgs if o.parent_code}
        if parent_codes:
            visible = PartyOrg.code.in_(viewer.subtree(s)) if viewer.limited else true()
            parents = {o.code: o for o in s.scalars(select(PartyOrg).where(PartyOrg.code.in_(parent_codes), visible))}
    out = []
    for o in orgs:
        parent = parents.get(o.parent_code) if o.parent_code else None
        from_source = _from_source(o)
        resource = _drop_empty({
            "schemas": [sc.CORE_GROUP, sc.PARTY_ORG],
            "id": str(o.id),
            "externalId": o.code if o.scim_external_id is None else (o.scim_external_id or None),
            "displayName": o.name,
            "members": [_drop_empty({"value": str(pid), "display": name or None, "$ref": f"{base}/Users/{pid}",
                                     "type": "User"}) for pid, name in members.get(o.code, [])],
            sc.PARTY_ORG: _drop_empty({
                # A party org SCIM created has no code, retirees flag or listing from a source.
                "code": o.code if from_source else None, "kind": o.kind, "secretary": o.secretary,
                "retirees": bool(o.retirees) if from_source else None,
                "active": bool(o.active) if from_source else None,
                # A parent is referenced like any Group; one outside a subtree token's view by
                # its code only.
                "parent": ({"value": str(parent.id), "$ref": f"{base}/Groups/{parent.id}"} if parent
                           else {"code": o.parent_code}) if o.parent_code else None,
            }),
        })
        out.append(_finish(resource, {"resourceType": "Group", "created": _stamp(o.created_at),
                                      "lastModified": _stamp(o.updated_at), "location": f"{base}/Groups/{o.id}"}))
    return out


__all__ = ["GROUPS", "USERS", "Field", "ResourceKind", "render_groups", "render_users", "split_name", "version_of"]
