"""SCIM writes: the service is a write door that behaves like one more source, named `scim`.

The unified records belong to the sync: each field remembers the source that set it
(provenance). A SCIM client is such a source. It may create Users (persons) and Groups (party
orgs), and change or clear the fields that no real source owns — those it created itself, or
that no source ever set. A field a real source owns (HR's employee number, the roster's category)
is read-only through SCIM: a request that would change it is refused with 400 `mutability`
(leaving it out of a PUT, or sending the value it already has, is fine). So a SCIM write never
fights the next sync run, and nothing a source said is silently overwritten.

What can be written (the attributes `/Schemas` marks readWrite):

* Users: `userName` (the employee number), `name.formatted` (the name), `externalId`. The
  extensions' attributes are read-only (category and dates are the party roster's, department
  HR's): a person's membership is made through the Group — adding a User to a Group's `members`
  registers their membership there (their active membership moves there when SCIM owns it),
  removing them ends it. A client may attach an extension (POST/PUT carrying it, PATCH add or
  replace on it) so that the User lists it while it holds nothing, and detach it (PATCH remove;
  a PUT leaving it out); removing one that holds data from the records answers 400 `mutability`.
* Groups: `displayName`, `externalId`, `members` (value / $ref), and in the party org extension
  (every Group carries it) `kind`, `parent` (value / $ref) and `secretary`: so a party platform
  can create a branch where it belongs in the tree. kind must be a canonical value, the parent a
  Group the token sees, neither the org itself nor one below it (else 400 `invalidValue`);
  removing the parent makes the org top-level. A Group made through SCIM gets a generated code
  (`SCIM-…`, not shown: no source assigned it) and, without the extension, kind `branch`.
* DELETE never deletes: it deactivates (a person leaves staff and their SCIM memberships end; a
  party org becomes inactive and its SCIM memberships end) and marks the record, after which SCIM
  answers 404 for it (RFC 7644 §3.6); the REST API keeps listing it as inactive. Only records the
  SCIM client created can be deleted — a person from HR leaves when HR stops listing them.

Every write needs the token scope `write:scim` (it implies `read`); a subtree-limited token may
change only what it sees and cannot create. Each write is one transaction with an AuditLog row
(who, what) and a Change row per changed record (the change feed), actor `token:<name>`.
"""
from __future__ import annotations

import copy
import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from records.models import AuditLog, Change, Membership, PartyOrg, Person, utcnow
from web.api.security import Viewer
from web.scim import schema as sc
from web.scim.filter import And, Compare, FilterError, Node, Not, Or, Present, parse_filter

SOURCE = "scim"
MEMBERSHIP_ENDED = "transferred_out"
USER_EXTENSIONS = (sc.ENTERPRISE, sc.PARTY)
TREE_DEPTH = 32  # org charts and party org trees from sources may hold cycles: climbing stops here


class WriteError(Exception):
    """A write the service refuses: HTTP status, SCIM scimType and a message for people."""

    def __init__(self, status: int, detail: str, scim_type: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.scim_type = status, detail, scim_type


def owned_by_source(provenance: dict[str, Any] | None, field: str) -> str | None:
    """The real source that owns `field`, or None when SCIM may write it."""
    owner = (provenance or {}).get(field)
    return owner if owner and owner != SOURCE else None


# --- the writable state of a resource ---------------------------------------------------------


@dataclass
class UserState:
    user_name: str | None
    external_id: str | None
    name: str | None
    # extension URN → attached (True) or detached (False) by the request; those it leaves alone
    # are not keys
    extensions: dict[str, bool]


@dataclass
class Placement:
    """The writable attributes of the party org extension: where the org sits in the tree.
    `parent` is a Group id, a code (the parent a token cannot see, echoed back), or None."""

    kind: str | None
    parent: int | str | None
    secretary: str | None


@dataclass
class GroupState:
    display_name: str | None
    external_id: str | None
    members: list[int]
    placement: Placement | None  # None: the request carries no party org extension


def _get(d: Any, name: str) -> Any:
    """A key of a SCIM JSON object, case-insensitively (attribute names are)."""
    if not isinstance(d, dict):
        return None
    for key, value in d.items():
        if key.lower() == name.lower():
            return value
    return None


def _text(value: Any, label: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise WriteError(400, f"{label} must be a string", "invalidValue")
    return value


def user_state(doc: dict[str, Any], extensions: dict[str, bool] | None = None) -> UserState:
    """The writable attributes of a User representation (readOnly ones are ignored, RFC 7644 §3.3).
    A whole representation (POST, PUT) attaches the extensions it carries and detaches the others;
    a PATCH passes the `extensions` its operations touched (touched_extensions)."""
    if extensions is None:
        extensions = {urn: isinstance(_get(doc, urn), dict) for urn in USER_EXTENSIONS}
    return UserState(
        user_name=_text(_get(doc, "userName"), "userName"),
        external_id=_text(_get(doc, "externalId"), "externalId"),
        name=_text(_get(_get(doc, "name"), "formatted"), "name.formatted"),
        extensions=extensions,
    )


def _member_id(item: Any) -> int:
    value = _get(item, "value")
    if value is None and isinstance(_get(item, "$ref"), str):
        value = _get(item, "$ref").rstrip("/").rsplit("/", 1)[-1]
    if not isinstance(value, str) or not value.isdigit() or len(value) > 18:
        raise WriteError(400, f"members: {value!r} is not a User id", "invalidValue")
    return int(value)


def _group_id(value: Any, label: str) -> int:
    if not isinstance(value, str) or not value.isdigit() or len(value) > 18:
        raise WriteError(400, f"{label}: {value!r} is not a Group id", "invalidValue")
    return int(value)


def _parent(value: Any) -> int | str | None:
    """The parent named by `value` (its id, from value or else the last segment of $ref), the
    code of a parent the token cannot see (as it was shown), or None for no parent."""
    if value is None or value == {}:
        return None
    if not isinstance(value, dict):
        raise WriteError(400, "parent must be an object with value or $ref", "invalidValue")
    ref = _get(value, "$ref")
    by_ref = _group_id(ref.rstrip("/").rsplit("/", 1)[-1], "parent.$ref") if isinstance(ref, str) and ref else None
    if _get(value, "value") is not None:
        by_value = _group_id(_get(value, "value"), "parent.value")
        if by_ref is not None and by_ref != by_value:
            # A PATCH of one of the two leaves the other naming the old parent: say which is meant.
            raise WriteError(400, "parent.value and parent.$ref name different Groups", "invalidValue")
        return by_value
    if by_ref is not None:
        return by_ref
    code = _get(value, "code")
    if isinstance(code, str) and code:
        return code
    raise WriteError(400, "parent needs value or $ref (the parent Group)", "invalidValue")


def group_state(doc: dict[str, Any]) -> GroupState:
    members = _get(doc, "members") or []
    if not isinstance(members, list):
        raise WriteError(400, "members must be a list", "invalidValue")
    extension = _get(doc, sc.PARTY_ORG)
    if extension is not None and not isinstance(extension, dict):
        raise WriteError(400, f"{sc.PARTY_ORG} must be an object", "invalidValue")
    placement = None
    if extension is not None:
        kind = _text(_get(extension, "kind"), "kind")
        if kind is not None and kind not in sc.PARTY_ORG_KINDS:
            raise WriteError(400, f"kind {kind!r} is not one of {', '.join(sc.PARTY_ORG_KINDS)}", "invalidValue")
        placement = Placement(kind=kind, parent=_parent(_get(extension, "parent")),
                              secretary=_text(_get(extension, "secretary"), "secretary"))
    return GroupState(
        display_name=_text(_get(doc, "displayName"), "displayName"),
        external_id=_text(_get(doc, "externalId"), "externalId"),
        members=sorted({_member_id(m) for m in members}),
        placement=placement,
    )


# --- PATCH (RFC 7644 §3.5.2) on the JSON representation ----------------------------------------


def _key(d: dict[str, Any], name: str) -> str:
    return next((k for k in d if k.lower() == name.lower()), name)


def _matches(item: Any, node: Node) -> bool:
    """A value filter (`members[value eq "12"]`) on one item of a multi-valued attribute."""
    if isinstance(node, And):
        return _matches(item, node.left) and _matches(item, node.right)
    if isinstance(node, Or):
        return _matches(item, node.left) or _matches(item, node.right)
    if isinstance(node, Not):
        return not _matches(item, node.expr)
    value = _get(item, node.path.attr) if node.path.sub is None else _get(_get(item, node.path.attr), node.path.sub)
    if isinstance(node, Present):
        return value not in (None, "", [], {})
    if not isinstance(node, Compare):
        raise WriteError(400, "unsupported value filter", "invalidFilter")
    left, right = value, node.value
    if isinstance(left, str) and isinstance(right, str):
        left, right = left.lower(), right.lower()
    if node.op == "eq":
        return left == right
    if node.op == "ne":
        return left != right
    if isinstance(left, str) and isinstance(right, str):
        return {"co": right in left, "sw": left.startswith(right), "ew": left.endswith(right)}.get(node.op, False)
    raise WriteError(400, f"{node.op} is not supported in a PATCH value filter", "invalidFilter")


@dataclass
class Target:
    urn: str | None  # the extension whose object holds the attribute; None: the core
    attr: str | None  # None: the whole extension (a bare URN path)
    value_filter: Node | None
    sub: str | None


def _target(path: str, core: str, extensions: tuple[str, ...]) -> Target:
    rest, urn = path.strip(), None
    lowered = rest.lower()
    for ext in sorted(extensions, key=len, reverse=True):
        if lowered == ext.lower():
            return Target(ext, None, None, None)
        if lowered.startswith(ext.lower() + ":"):
            urn, rest = ext, rest[len(ext) + 1:]
            break
    else:
        if lowered.startswith(core.lower() + ":"):
            rest = rest[len(core) + 1:]
    value_filter, sub = None, None
    if "[" in rest:
        attr, _, tail = rest.partition("[")
        text, close, after = tail.rpartition("]")
        if not close:
            raise WriteError(400, f"path {path!r}: unbalanced [", "invalidPath")
        try:
            value_filter = parse_filter(text)
        except FilterError as exc:
            raise WriteError(400, f"path {path!r}: {exc}", "invalidPath") from None
        if after:
            if not after.startswith("."):
                raise WriteError(400, f"path {path!r} is not an attribute path", "invalidPath")
            sub = after[1:]
    else:
        attr, _, sub_text = rest.partition(".")
        sub = sub_text or None
    if not attr or not attr.replace("$", "").replace("_", "").replace("-", "").isalnum():
        raise WriteError(400, f"path {path!r} is not an attribute path", "invalidPath")
    return Target(urn, attr, value_filter, sub)


def _merge(old: Any, new: Any, replace: bool) -> Any:
    if isinstance(old, dict) and isinstance(new, dict):
        out = dict(old)
        for k, v in new.items():
            out[_key(out, k)] = v
        return out
    if isinstance(old, list) and not replace:
        items = list(old)
        for v in new if isinstance(new, list) else [new]:
            if v not in items:
                items.append(v)
        return items
    return new


def apply_patch(doc: dict[str, Any], operations: Any, core: str, extensions: tuple[str, ...]) -> dict[str, Any]:
    """The representation after the PatchOp's operations, applied in order (all or nothing: the
    caller writes only the result)."""
    if not isinstance(operations, list) or not operations:
        raise WriteError(400, "Operations must be a non-empty list", "invalidSyntax")
    doc = copy.deepcopy(doc)
    for operation in operations:
        if not isinstance(operation, dict):
            raise WriteError(400, "each operation must be an object", "invalidSyntax")
        op = str(_get(operation, "op") or "").lower()
        path = _get(operation, "path")
        value = _get(operation, "value")
        if op not in ("add", "replace", "remove"):
            raise WriteError(400, f"op must be add, replace or remove, not {op!r}", "invalidSyntax")
        if path is None or path == "":
            if op == "remove":
                raise WriteError(400, "remove needs a path", "noTarget")
            if not isinstance(value, dict):
                raise WriteError(400, f"{op} without a path needs an object value", "invalidValue")
            for name, item in value.items():
                key = _key(doc, name)
                doc[key] = _merge(doc.get(key), item, replace=(op == "replace")) if key in doc else item
            continue
        if not isinstance(path, str):
            raise WriteError(400, "path must be a string", "invalidPath")
        target = _target(path, core, extensions)
        holder = doc
        if target.urn is not None:
            holder = doc.setdefault(_key(doc, target.urn), {})
            if target.attr is None:
                key = _key(doc, target.urn)
                if op == "remove":
                    if doc.get(key):
                        # What it holds comes from the records (a source, a membership), not
                        # from the client: removing it would not make it untrue.
                        raise WriteError(400, f"{target.urn} holds data from the records "
                                              f"({', '.join(sorted(doc[key]))}): it cannot be removed", "mutability")
                    doc.pop(key, None)
                elif not isinstance(value, dict):
                    raise WriteError(400, f"{path} takes an object", "invalidValue")
                else:
                    doc[key] = _merge(doc.get(key) or {}, value, replace=False)
                continue
        assert target.attr is not None
        key = _key(holder, target.attr)
        current = holder.get(key)
        if target.value_filter is not None:
            if not isinstance(current, list):
                if op == "remove" or op == "replace":
                    raise WriteError(400, f"{path}: no value matches", "noTarget")
                current = []
            matched = [i for i, item in enumerate(current) if _matches(item, target.value_filter)]
            if not matched and op in ("replace", "remove"):
                raise WriteError(400, f"{path}: no value matches", "noTarget")
            if op == "remove":
                if target.sub:
                    for i in matched:
                        current[i] = {k: v for k, v in current[i].items() if k.lower() != target.sub.lower()}
                else:
                    current = [item for i, item in enumerate(current) if i not in matched]
            else:
                for i in matched:
                    if target.sub:
                        current[i] = {**current[i], _key(current[i], target.sub): value}
                    else:
                        current[i] = _merge(current[i], value, replace=False)
            holder[key] = current
            continue
        if target.sub:
            inner = dict(current) if isinstance(current, dict) else {}
            if op == "remove":
                inner.pop(_key(inner, target.sub), None)
            else:
                inner[_key(inner, target.sub)] = value
            holder[key] = inner
            continue
        if op == "remove":
            holder.pop(key, None)
        elif op == "add" and current is not None:
            holder[key] = _merge(current, value, replace=False)
        else:
            holder[key] = value
    return doc


def touched_extensions(operations: Any, core: str, extensions: tuple[str, ...]) -> dict[str, bool]:
    """The extensions a PatchOp attaches (add or replace on the extension or inside it) or
    detaches (remove of the whole extension), the last operation on each winning."""
    touched: dict[str, bool] = {}
    for operation in operations if isinstance(operations, list) else []:
        op = str(_get(operation, "op") or "").lower()
        path = _get(operation, "path")
        if isinstance(path, str) and path:
            target = _target(path, core, extensions)
            if target.urn is not None and (op != "remove" or target.attr is None):
                touched[target.urn] = op != "remove"
        elif isinstance(_get(operation, "value"), dict):
            for urn in extensions:
                if isinstance(_get(_get(operation, "value"), urn), dict):
                    touched[urn] = True
    return touched


# --- applying a state to the records -----------------------------------------------------------


class Writer:
    """One SCIM write: checks ownership, changes the records, records audit and change rows."""

    def __init__(self, s: Session, viewer: Viewer) -> None:
        self.s, self.viewer, self.now = s, viewer, utcnow()

    def _change(self, entity: str, entity_id: int, op: str, changed: dict[str, list[Any]]) -> None:
        if changed:
            self.s.add(Change(run_id=None, actor=self.viewer.actor, entity=entity, entity_id=entity_id, op=op,
                              changed=_jsonable(changed), at=self.now))

    def audit(self, action: str, target_type: str, target_id: int, details: dict[str, Any]) -> None:
        self.s.add(AuditLog(actor=self.viewer.actor, action=action, target_type=target_type,
                            target_id=str(target_id), details=_jsonable(details)))

    def _set(self, row: Any, label: str, field: str, value: Any, changed: dict[str, list[Any]],
             source_field: str | None = None) -> None:
        """Set one field if it differs, unless a real source owns it (400 mutability)."""
        before = getattr(row, field)
        if before == value:
            return
        owner = owned_by_source(row.provenance, source_field or field)
        if owner:
            raise WriteError(400, f"{label} is owned by the source {owner!r}: it is read-only through SCIM "
                                  "(change it in that source)", "mutability")
        setattr(row, field, value)
        row.provenance = {**(row.provenance or {}), (source_field or field): SOURCE}
        changed[field] = [before, value]

    # Users ------------------------------------------------------------------------------------

    def _unique_user_name(self, user_name: str, person_id: int | None) -> None:
        other = self.s.scalar(select(Person.id).where(Person.employee_no == user_name))
        if other is not None and other != person_id:
            raise WriteError(409, f"userName {user_name!r} is taken", "uniqueness")

    def create_user(self, state: UserState) -> Person:
        if self.viewer.limited:
            raise WriteError(403, "a token limited to a party-org subtree cannot create Users (the new "
                                  "person would be outside its subtree)")
        if not state.user_name:
            raise WriteError(400, "userName is required", "invalidValue")
        self._unique_user_name(state.user_name, None)
        person = Person(employee_no=state.user_name, name=state.name or "", staff_active=False,
                        scim_external_id=state.external_id or "",
                        scim_extensions=sorted(urn for urn, on in state.extensions.items() if on) or None,
                        provenance={"employee_no": SOURCE, "name": SOURCE})
        self.s.add(person)
        self.s.flush()
        created = {"employee_no": [None, person.employee_no], "name": [None, person.name]}
        if person.scim_extensions:
            created["scim_extensions"] = [None, person.scim_extensions]
        self._change("person", person.id, "create", created)
        self.audit("scim.user.create", "person", person.id, {"userName": state.user_name})
        return person

    def replace_user(self, person: Person, state: UserState, partial: bool = False) -> None:
        """PUT (and PATCH, through the patched representation): fields owned by a source keep their
        value when the request leaves them out."""
        changed: dict[str, list[Any]] = {}
        if state.user_name is None:
            if not owned_by_source(person.provenance, "employee_no"):
                raise WriteError(400, "userName is required", "invalidValue")
        elif state.user_name != person.employee_no:
            self._unique_user_name(state.user_name, person.id)
            self._set(person, "userName", "employee_no", state.user_name, changed)
        if state.name is not None or not owned_by_source(person.provenance, "name"):
            self._set(person, "name.formatted", "name", state.name or "", changed)
        if person.scim_external_id is None:
            # A person from the sync: externalId is its employee number, not separately writable.
            if state.external_id is not None and state.external_id != person.employee_no:
                raise WriteError(400, "externalId of a person from a source is its employee number: read-only",
                                 "mutability")
        elif (state.external_id or "") != person.scim_external_id:
            changed["externalId"] = [person.scim_external_id or None, state.external_id]
            person.scim_external_id = state.external_id or ""
        attached = set(person.scim_extensions or [])
        attached |= {urn for urn, on in state.extensions.items() if on}
        attached -= {urn for urn, on in state.extensions.items() if not on}
        if sorted(attached) != sorted(person.scim_extensions or []):
            changed["scim_extensions"] = [person.scim_extensions, sorted(attached) or None]
            person.scim_extensions = sorted(attached) or None
        if changed:
            person.updated_at = self.now
            self._change("person", person.id, "update", changed)
        self.audit("scim.user.replace" if not partial else "scim.user.patch", "person", person.id,
                   {"changed": sorted(changed)})

    def _active_membership(self, person_id: int) -> Membership | None:
        return self.s.scalar(select(Membership).where(Membership.person_id == person_id,
                                                      Membership.active.is_(True)).order_by(Membership.id.desc()))

    def delete_user(self, person: Person) -> None:
        owner = next((owned_by_source(person.provenance, f) for f in ("employee_no", "name")
                      if owned_by_source(person.provenance, f)), None)
        if owner:
            raise WriteError(400, f"this person comes from the source {owner!r}; only that source can "
                                  "deactivate them", "mutability")
        changed = {"staff_active": [person.staff_active, False]} if person.staff_active else {}
        person.staff_active, person.scim_deleted_at, person.updated_at = False, self.now, self.now
        self._change("person", person.id, "deactivate", changed or {"scim_deleted": [False, True]})
        for membership in self.s.scalars(select(Membership).where(Membership.person_id == person.id,
                                                                   Membership.active.is_(True))):
            self._end_membership(membership)
        self.audit("scim.user.delete", "person", person.id, {"deactivated": True})

    def _end_membership(self, membership: Membership) -> None:
        owner = owned_by_source(membership.provenance, "party_org_code") or owned_by_source(
            membership.provenance, "status")
        if owner:
            raise WriteError(400, f"the membership comes from the source {owner!r}; it is read-only through "
                                  "SCIM", "mutability")
        before = membership.status
        membership.active, membership.status, membership.updated_at = False, MEMBERSHIP_ENDED, self.now
        membership.provenance = {**(membership.provenance or {}), "status": SOURCE}
        self._change("membership", membership.id, "deactivate", {"status": [before, MEMBERSHIP_ENDED],
                                                                 "active": [True, False]})

    # Groups -----------------------------------------------------------------------------------

    def create_group(self, state: GroupState) -> PartyOrg:
        if self.viewer.limited:
            raise WriteError(403, "a token limited to a party-org subtree cannot create Groups")
        if not state.display_name:
            raise WriteError(400, "displayName is required", "invalidValue")
        placement = state.placement or Placement(kind=None, parent=None, secretary=None)
        org = PartyOrg(code=f"SCIM-{secrets.token_hex(5).upper()}", name=state.display_name,
                       kind=placement.kind or "branch", retirees=False, active=True,
                       scim_external_id=state.external_id or "",
                       provenance={"code": SOURCE, "name": SOURCE, "kind": SOURCE})
        if placement.parent is not None:
            org.parent_code = self._parent_code(org, placement.parent)
            org.provenance = {**org.provenance, "parent_code": SOURCE}
        if placement.secretary is not None:
            org.secretary = placement.secretary
            org.provenance = {**org.provenance, "secretary": SOURCE}
        self.s.add(org)
        self.s.flush()
        self._change("party_org", org.id, "create", {
            field: [None, getattr(org, field)] for field in ("code", "name", "kind", "parent_code", "secretary")
            if getattr(org, field) is not None})
        self._members(org, state.members)
        self.audit("scim.group.create", "party_org", org.id, {"displayName": org.name, "code": org.code})
        return org

    def replace_group(self, org: PartyOrg, state: GroupState, partial: bool = False) -> None:
        changed: dict[str, list[Any]] = {}
        if state.display_name is None:
            raise WriteError(400, "displayName is required", "invalidValue")
        self._set(org, "displayName", "name", state.display_name, changed)
        if org.scim_external_id is None:
            if state.external_id is not None and state.external_id != org.code:
                raise WriteError(400, "externalId of a party org from a source is its code: read-only", "mutability")
        elif (state.external_id or "") != org.scim_external_id:
            changed["externalId"] = [org.scim_external_id or None, state.external_id]
            org.scim_external_id = state.external_id or ""
        if state.placement is not None:
            self._place(org, state.placement, partial, changed)
        if changed:
            org.updated_at = self.now
            self._change("party_org", org.id, "update", changed)
        self._members(org, state.members)
        self.audit("scim.group.replace" if not partial else "scim.group.patch", "party_org", org.id,
                   {"changed": sorted(changed)})

    def _place(self, org: PartyOrg, placement: Placement, partial: bool, changed: dict[str, list[Any]]) -> None:
        """kind, parent and secretary. A PUT that leaves out a field a source owns keeps it (as
        for the core attributes); in a PATCH the field is absent only when an operation removed it."""
        if placement.kind is not None:  # required: a Group always has one, leaving it out keeps it
            self._set(org, "kind", "kind", placement.kind, changed)
        keep_omitted = not partial
        if placement.parent is not None:
            self._set(org, "parent", "parent_code", self._parent_code(org, placement.parent), changed)
        elif not (keep_omitted and owned_by_source(org.provenance, "parent_code")):
            self._set(org, "parent", "parent_code", None, changed)
        if placement.secretary is not None or not (keep_omitted and owned_by_source(org.provenance, "secretary")):
            self._set(org, "secretary", "secretary", placement.secretary, changed)

    def _parent_code(self, org: PartyOrg, parent: int | str) -> str:
        """The code of the parent named: a Group the token sees, not `org` itself nor one below it."""
        if isinstance(parent, str):
            # A code stands only for the current parent a token cannot see, as it was shown to it.
            if parent == org.parent_code:
                return parent
            raise WriteError(400, "parent: name the parent Group by value or $ref", "invalidValue")
        query = select(PartyOrg).where(PartyOrg.id == parent, PartyOrg.scim_deleted_at.is_(None))
        if self.viewer.limited:
            query = query.where(PartyOrg.code.in_(self.viewer.subtree(self.s)))
        found = self.s.scalar(query)
        if found is None:
            raise WriteError(400, f"parent: no Group {parent}", "invalidValue")
        if found.code == org.parent_code:
            return found.code  # unchanged: nothing to check
        if found.code == org.code:
            raise WriteError(400, f"parent: Group {parent} is this party org itself", "invalidValue")
        code = found.parent_code
        for _ in range(TREE_DEPTH):
            if code is None:
                break
            if code == org.code:
                raise WriteError(400, f"parent: Group {parent} is below this party org (a party org cannot "
                                      "sit below itself)", "invalidValue")
            code = self.s.scalar(select(PartyOrg.parent_code).where(PartyOrg.code == code))
        return found.code

    def _members(self, org: PartyOrg, wanted: list[int]) -> None:
        current = {m.person_id: m for m in self.s.scalars(select(Membership).where(
            Membership.party_org_code == org.code, Membership.active.is_(True)))}
        for person_id in sorted(set(current) - set(wanted)):
            self._end_membership(current[person_id])
        joining = sorted(set(wanted) - set(current))
        if not joining:
            return
        visible = set(self.s.scalars(select(Person.id).where(
            Person.id.in_(joining), Person.scim_deleted_at.is_(None), self.viewer.persons_filter(self.s))))
        missing = [pid for pid in joining if pid not in visible]
        if missing:
            raise WriteError(400, f"members: no User {missing[0]}", "invalidValue")
        for person_id in joining:
            membership = self._active_membership(person_id)
            if membership is None:
                membership = Membership(person_id=person_id, party_org_code=org.code, status="active", active=True,
                                        provenance={"party_org_code": SOURCE})
                self.s.add(membership)
                self.s.flush()
                self._change("membership", membership.id, "create",
                             {"person_id": [None, person_id], "party_org_code": [None, org.code]})
                continue
            changed: dict[str, list[Any]] = {}
            self._set(membership, f"the party org of User {person_id}'s membership", "party_org_code", org.code,
                      changed)
            membership.updated_at = self.now
            self._change("membership", membership.id, "update", changed)

    def delete_group(self, org: PartyOrg) -> None:
        owner = owned_by_source(org.provenance, "code")
        if owner:
            raise WriteError(400, f"this party org comes from the source {owner!r}; only that source can "
                                  "deactivate it", "mutability")
        for membership in self.s.scalars(select(Membership).where(Membership.party_org_code == org.code,
                                                                   Membership.active.is_(True))):
            self._end_membership(membership)
        org.active, org.scim_deleted_at, org.updated_at = False, self.now, self.now
        self._change("party_org", org.id, "deactivate", {"active": [True, False]})
        self.audit("scim.group.delete", "party_org", org.id, {"code": org.code})


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


__all__ = ["SOURCE", "GroupState", "UserState", "WriteError", "Writer", "apply_patch", "group_state",
           "owned_by_source", "user_state"]
