"""Coverage editing: which org units each party org covers, changed by a person in the console.

Coverage rows (records.models.Coverage) come from a party-org source's `covers` field (origin
`source:<name>`) or from a person (origin `console`). This module edits them and re-runs the
dual-line alignment so that an officer sees what an edit does before it is saved:

* `preview(session, edits)` applies the edits, refreshes the expected branches, detects the
  dual-line rules and reconciles the mismatches — all inside the session's transaction — counts
  what would open, close and reopen (by rule), then rolls the whole transaction back;
* `save(session, edits, actor, reason)` does the same for real and adds an AuditLog row and a
  change-feed row per party org whose coverage changed (entity `party_org`, field `covers`, the
  same shape a sync writes); the mismatch events are the change rows the Reconciler writes.
  The caller commits.
* `CoverageEditor(runtime)` wraps both with the run locks of every configured source (and a
  `coverage` lock), so an edit never interleaves with a sync's or another edit's alignment.

Who wins against a later sync (sync.apply.Applier._write_coverage): a source's `covers` list only
replaces rows of its own origin and never touches a row that exists already. So
  * a console assignment survives every later sync, also when a source later lists the same pair
    (the row stays `console`: the person's decision wins, and it stays if the source drops it);
  * changing `include_descendants` of a source row makes it a console row (the person owns it now);
  * removing a source row deletes it; the source re-adds it when it next sends that party org with
    the unit in `covers` (a sync skips unchanged records by fingerprint, so that happens when the
    party org's record changes in the source). The preview warns about this: fix it at the source too.

Standardization rules (sync.rules) do not read coverage, so an edit re-runs only the dual-line
rules; `ambiguous_match` belongs to correlation and is untouched.

Suggestions (`suggest`, `uncovered_with_suggestions`): a branch named "生产技术部党支部" most
likely covers the unit "生产技术部". Party suffixes are stripped from the org's name and the
remainder matched against unit names, exact before contained before containing, with a bonus when
the unit lies in the scope of the org's parent org, each with a human-readable reason.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from records.db import session_factory
from records.models import AuditLog, Change, Coverage, ExpectedBranch, Mismatch, OrgUnit, PartyOrg, utcnow
from sync.alignment import DUAL_LINE_RULES, Reconciler, detect, refresh_expected_branches
from sync.locks import LockHeld, RunLocks, source_lock_name

OPS = ("assign", "remove", "set_descendants")
CONSOLE_ORIGIN = "console"
COVERAGE_LOCK = "coverage"
MAX_EDITS = 200


class CoverageEditError(ValueError):
    """An edit cannot be applied; `field` names the offending input."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class CoverageBusy(RuntimeError):
    """A sync or another coverage edit is going on; nothing was done."""


class CoverageEditSchema(Schema):
    op = fields.String(required=True, validate=validate.OneOf(OPS))
    party_org_code = fields.String(required=True, validate=validate.Length(min=1, max=64))
    org_unit_code = fields.String(required=True, validate=validate.Length(min=1, max=64))
    include_descendants = fields.Boolean(load_default=True)


@dataclass(frozen=True)
class CoverageEdit:
    op: str
    party_org_code: str
    org_unit_code: str
    include_descendants: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {"op": self.op, "party_org_code": self.party_org_code, "org_unit_code": self.org_unit_code,
                "include_descendants": self.include_descendants}


def parse_edits(raw: Iterable[dict[str, Any]]) -> list[CoverageEdit]:
    """Validate raw edits (form or JSON); CoverageEditError names the first bad field."""
    raw = list(raw)
    if not raw:
        raise CoverageEditError("no coverage edit given", field="edits")
    if len(raw) > MAX_EDITS:
        raise CoverageEditError(f"at most {MAX_EDITS} edits at once", field="edits")
    try:
        loaded = CoverageEditSchema(many=True).load(raw)
    except ValidationError as exc:
        first = _first_error(exc.messages)
        raise CoverageEditError(first[1], field=first[0]) from None
    return [CoverageEdit(**item) for item in loaded]


def _first_error(messages: Any, path: str = "") -> tuple[str, str]:
    if isinstance(messages, dict):
        key, value = next(iter(messages.items()))
        name = key if isinstance(key, str) else path
        return _first_error(value, name)
    if isinstance(messages, list) and messages:
        return (path or "edits", str(messages[0]))
    return (path or "edits", str(messages))


@dataclass
class CoverageOutcome:
    """What an edit does (preview) or did (save)."""

    applied: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    opened: dict[str, int] = field(default_factory=dict)
    closed: dict[str, int] = field(default_factory=dict)
    reopened: dict[str, int] = field(default_factory=dict)
    open: int = 0
    saved: bool = False
    audit_id: int | None = None  # the AuditLog row of a save

    @property
    def total_opened(self) -> int:
        return sum(self.opened.values()) + sum(self.reopened.values())

    @property
    def total_closed(self) -> int:
        return sum(self.closed.values())

    def by_rule(self) -> list[tuple[str, int, int]]:
        """(rule, would open or reopen, would close) for each rule that changes."""
        rules = sorted(set(self.opened) | set(self.closed) | set(self.reopened))
        return [(r, self.opened.get(r, 0) + self.reopened.get(r, 0), self.closed.get(r, 0)) for r in rules]

    def as_dict(self) -> dict[str, Any]:
        return {"applied": self.applied, "warnings": self.warnings, "opened": self.opened,
                "closed": self.closed, "reopened": self.reopened, "open": self.open, "saved": self.saved,
                "total_opened": self.total_opened, "total_closed": self.total_closed}


# --- applying edits ------------------------------------------------------------------------


def apply_edits(session: Session, edits: Sequence[CoverageEdit], actor: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Write the edits to `coverage` (in the session's transaction) and a change-feed row per
    party org whose coverage changed. Returns (applied, warnings)."""
    conn = session.connection()
    org_codes = sorted({e.party_org_code for e in edits})
    unit_codes = sorted({e.org_unit_code for e in edits})
    orgs = {o.code: o for o in session.execute(
        select(PartyOrg.id, PartyOrg.code, PartyOrg.name, PartyOrg.kind, PartyOrg.active)
        .where(PartyOrg.code.in_(org_codes)))}
    units = {u.code: u for u in session.execute(
        select(OrgUnit.code, OrgUnit.name, OrgUnit.active).where(OrgUnit.code.in_(unit_codes)))}
    table = Coverage.__table__
    # Every coverage row of the orgs edited (for the change feed's before/after) and every row
    # of the units edited (for warning about a unit covered twice).
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in conn.execute(select(table).where(
            (table.c.party_org_code.in_(org_codes)) | (table.c.org_unit_code.in_(unit_codes)))):
        rows[(r.party_org_code, r.org_unit_code)] = {"id": r.id, "include_descendants": bool(r.include_descendants),
                                                    "origin": r.origin}
    before = {code: _covers_of(rows, code) for code in org_codes}
    now = utcnow()
    applied: list[dict[str, Any]] = []
    warnings: list[dict[str, Any]] = []
    for index, edit in enumerate(edits):
        where = f"edits[{index}]"
        org = orgs.get(edit.party_org_code)
        if org is None or not org.active:
            raise CoverageEditError(f"no active party org {edit.party_org_code!r}", field=f"{where}.party_org_code")
        unit = units.get(edit.org_unit_code)
        if unit is None:
            raise CoverageEditError(f"no org unit {edit.org_unit_code!r}", field=f"{where}.org_unit_code")
        key = (edit.party_org_code, edit.org_unit_code)
        current = rows.get(key)
        entry = edit.as_dict() | {"party_org_name": org.name, "org_unit_name": unit.name,
                                  "before": _shown(current)}
        if edit.op == "assign":
            if not unit.active:
                raise CoverageEditError(f"org unit {edit.org_unit_code!r} is no longer active",
                                        field=f"{where}.org_unit_code")
            others = sorted(o for (o, u) in rows if u == edit.org_unit_code and o != edit.party_org_code)
            if others:
                warnings.append({"code": "covered_twice", "org_unit_code": edit.org_unit_code,
                                 "org_unit_name": unit.name, "others": others})
            if org.kind != "branch":
                warnings.append({"code": "scope_only", "party_org_code": org.code, "party_org_name": org.name})
            if current is None:
                new_id = conn.execute(insert(table).values(
                    party_org_code=edit.party_org_code, org_unit_code=edit.org_unit_code,
                    include_descendants=edit.include_descendants, origin=CONSOLE_ORIGIN,
                    created_at=now, updated_at=now)).inserted_primary_key[0]
                rows[key] = {"id": new_id, "include_descendants": edit.include_descendants, "origin": CONSOLE_ORIGIN}
            else:
                _update_row(conn, rows, key, edit.include_descendants, now)
        elif edit.op == "remove":
            if current is None:
                raise CoverageEditError(f"{edit.party_org_code} does not cover {edit.org_unit_code}",
                                        field=f"{where}.org_unit_code")
            if current["origin"] != CONSOLE_ORIGIN:
                warnings.append({"code": "source_may_restore", "origin": current["origin"],
                                 "party_org_code": org.code, "org_unit_code": edit.org_unit_code})
            conn.execute(delete(table).where(table.c.id == current["id"]))
            del rows[key]
        else:  # set_descendants
            if current is None:
                raise CoverageEditError(f"{edit.party_org_code} does not cover {edit.org_unit_code}",
                                        field=f"{where}.org_unit_code")
            _update_row(conn, rows, key, edit.include_descendants, now)
        entry["after"] = _shown(rows.get(key))
        applied.append(entry)

    changes = []
    for code in org_codes:
        old, new = before[code], _covers_of(rows, code)
        changed: dict[str, Any] = {}
        if old[0] != new[0]:
            changed["covers"] = [old[0], new[0]]
        if old[1] != new[1]:
            changed["covers_without_descendants"] = [old[1], new[1]]
        if changed:
            changes.append({"run_id": None, "actor": actor, "entity": "party_org", "entity_id": orgs[code].id,
                            "op": "update", "changed": changed, "at": now})
    if changes:
        conn.execute(insert(Change.__table__), changes)
    return applied, warnings


def _update_row(conn: Any, rows: dict[tuple[str, str], dict[str, Any]], key: tuple[str, str],
                include_descendants: bool, now: Any) -> None:
    """The person's decision on an existing row: its flag, and it becomes a console row (a
    source then no longer drops it when its `covers` changes)."""
    row = rows[key]
    conn.execute(update(Coverage.__table__).where(Coverage.__table__.c.id == row["id"]).values(
        include_descendants=include_descendants, origin=CONSOLE_ORIGIN, updated_at=now))
    row.update(include_descendants=include_descendants, origin=CONSOLE_ORIGIN)


def _shown(row: dict[str, Any] | None) -> dict[str, Any] | None:
    return {k: v for k, v in row.items() if k != "id"} if row else None


def _covers_of(rows: dict[tuple[str, str], dict[str, Any]], org: str) -> tuple[list[str], list[str]]:
    """(covered unit codes, those covered without descendants), sorted, for the change feed."""
    mine = sorted((u, r) for (o, u), r in rows.items() if o == org)
    return [u for u, _ in mine], [u for u, r in mine if not r["include_descendants"]]


# --- alignment around an edit -----------------------------------------------------------------


def _live_mismatches(session: Session) -> dict[int, tuple[str, str]]:
    table = Mismatch.__table__
    return {r.id: (r.rule, r.state) for r in session.execute(
        select(table.c.id, table.c.rule, table.c.state)
        .where(table.c.closed_at.is_(None), table.c.rule.in_(DUAL_LINE_RULES)))}


def _edit_and_align(session: Session, edits: Sequence[CoverageEdit], actor: str) -> CoverageOutcome:
    applied, warnings = apply_edits(session, edits, actor)
    before = _live_mismatches(session)
    refresh_expected_branches(session)
    reconciler = Reconciler(session, None, actor)
    reconciler.reconcile(detect(session), DUAL_LINE_RULES)
    result = reconciler.finish()
    after = _live_mismatches(session)
    opened = Counter(rule for mid, (rule, _) in after.items() if mid not in before)
    closed = Counter(rule for mid, (rule, _) in before.items() if mid not in after)
    reopened = Counter(rule for mid, (rule, state) in after.items()
                       if mid in before and before[mid][1] != "open" and state == "open")
    return CoverageOutcome(applied=applied, warnings=warnings, opened=dict(opened), closed=dict(closed),
                           reopened=dict(reopened), open=result.open)


def preview(session: Session, edits: Sequence[CoverageEdit], actor: str = "preview") -> CoverageOutcome:
    """What `save` would do, without keeping anything: the session's transaction is rolled back
    (call it on a session with nothing else pending)."""
    try:
        return _edit_and_align(session, edits, actor)
    finally:
        session.rollback()


def save(session: Session, edits: Sequence[CoverageEdit], actor: str, reason: str | None = None) -> CoverageOutcome:
    """Apply the edits, re-align, audit. The caller commits (or rolls back)."""
    outcome = _edit_and_align(session, edits, actor)
    outcome.saved = True
    orgs = sorted({e.party_org_code for e in edits})
    audit = AuditLog(
        actor=actor, action="coverage.edit", target_type="party_org", target_id=",".join(orgs)[:80],
        details={"edits": [e.as_dict() for e in edits], "reason": reason, "applied": outcome.applied,
                 "warnings": outcome.warnings, "mismatches": {"opened": outcome.opened, "closed": outcome.closed,
                                                              "reopened": outcome.reopened}})
    session.add(audit)
    session.flush()
    outcome.audit_id = audit.id
    return outcome


class CoverageEditor:
    """Preview and save under the run locks, so no sync (and no other edit) aligns meanwhile."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.sessions = session_factory(runtime.engine)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        names = [source_lock_name(name) for name in self.runtime.config.sources] + [COVERAGE_LOCK]
        locks = RunLocks(self.runtime.engine, names, ttl=self.runtime.config.scheduler["lock_ttl_seconds"])
        try:
            locks.acquire()
        except LockHeld as exc:
            raise CoverageBusy(str(exc)) from None
        except OperationalError as exc:  # SQLite: a running sync holds the database's write lock
            raise CoverageBusy(f"the database is busy ({exc.orig})") from None
        try:
            yield
        finally:
            locks.release()

    def preview(self, edits: Sequence[CoverageEdit]) -> CoverageOutcome:
        with self._locked(), self.sessions() as session:
            return preview(session, edits)

    def save(self, edits: Sequence[CoverageEdit], actor: str, reason: str | None = None) -> CoverageOutcome:
        with self._locked(), self.sessions() as session, session.begin():
            return save(session, edits, actor, reason)


# --- suggestions from names ------------------------------------------------------------------

_NUMBER = "一二三四五六七八九十百零〇两0123456789"
_PARTY_SUFFIXES = ("总支部委员会", "支部委员会", "委员会", "党总支部", "党总支", "党支部", "联合支部", "党小组",
                   "党委", "党组", "总支", "支部", "联合", "机关")
_ORDINAL = re.compile(f"第[{_NUMBER}]+$")
SINGLE_ORG_MIN_SCORE = 50


def name_stem(name: str) -> str:
    """The part of a party org's name that names its business unit:
    "中共北辰能源集团有限公司委员会" → "北辰能源集团有限公司", "生产技术部联合党支部" → "生产技术部",
    "机关第二党支部" → "" (nothing left to match)."""
    stem = (name or "").strip()
    if stem.startswith("中共"):
        stem = stem[2:]
    changed = True
    while changed and stem:
        changed = False
        for suffix in _PARTY_SUFFIXES:
            if stem.endswith(suffix):
                stem, changed = stem[: -len(suffix)], True
                break
        else:
            cut = _ORDINAL.sub("", stem)
            if cut != stem:
                stem, changed = cut, True
    return stem.strip(" ·-_（）()")


@dataclass
class Suggestion:
    party_org_code: str
    party_org_name: str
    org_unit_code: str
    org_unit_name: str
    score: int
    match: str  # exact | contained | containing | parent | sibling
    reason: dict[str, str]  # zh / en
    path: list[str] = field(default_factory=list)  # the unit's ancestors' names, top first
    covered_by: list[str] = field(default_factory=list)  # other orgs covering the unit directly

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass
class UnitTree:
    """Org units in memory (a few thousand rows): names, parents, and a name index."""

    name: dict[str, str]
    parent: dict[str, str | None]
    by_name: dict[str, list[str]]
    _containing: dict[str, list[str]] | None = None
    _above: dict[str, frozenset[str]] = field(default_factory=dict)
    _above_names: dict[str, frozenset[str]] = field(default_factory=dict)
    _below_named: dict[tuple[str, str], list[str]] | None = None

    @classmethod
    def load(cls, session: Session) -> UnitTree:
        name, parent, by_name = {}, {}, defaultdict(list)
        for code, unit_name, parent_code in session.connection().execute(
                select(OrgUnit.code, OrgUnit.name, OrgUnit.parent_code).where(OrgUnit.active.is_(True))):
            name[code], parent[code] = unit_name, parent_code
            by_name[unit_name].append(code)
        return cls(name, parent, dict(by_name))

    def above(self, code: str) -> frozenset[str]:
        """The unit's ancestors' codes (memoized along the walk up, so a whole tree costs one
        visit per unit; a cycle in bad data ends the walk)."""
        memo = self._above
        if code in memo:
            return memo[code]
        if code not in self.name:
            return frozenset()
        chain, seen = [], set()
        current: str | None = code
        while current is not None and current in self.name and current not in memo and current not in seen:
            seen.add(current)
            chain.append(current)
            current = self.parent.get(current)
        acc = memo[current] | {current} if current in memo else frozenset()
        for node in reversed(chain):
            memo[node] = acc
            acc = acc | {node}
        return memo[code]

    def named_below(self, unit_name: str, ancestor_names: Iterable[str]) -> list[str]:
        """Units called `unit_name` below a unit called one of `ancestor_names` (an index of
        (name, ancestor's name) pairs, built on first use: one entry per unit and level)."""
        if self._below_named is None:
            index: dict[tuple[str, str], list[str]] = defaultdict(list)
            for code, own in self.name.items():
                for above in self.above_names(code):
                    index[(own, above)].append(code)
            self._below_named = dict(index)
        found: list[str] = []
        for above in ancestor_names:
            found.extend(c for c in self._below_named.get((unit_name, above), []) if c not in found)
        return found

    def above_names(self, code: str) -> frozenset[str]:
        if code not in self._above_names:
            self._above_names[code] = frozenset(self.name[a] for a in self.above(code))
        return self._above_names[code]

    def ancestors(self, code: str) -> list[str]:
        out, seen = [], {code}
        current = self.parent.get(code)
        while current and current not in seen and current in self.name:
            out.append(current)
            seen.add(current)
            current = self.parent.get(current)
        return out

    def path(self, code: str) -> list[str]:
        return [self.name[c] for c in reversed(self.ancestors(code))]

    def names_within(self, text: str) -> Iterator[str]:
        """Unit names that occur in `text` (every substring of 2+ characters looked up)."""
        seen = set()
        for i in range(len(text)):
            for j in range(i + 2, len(text) + 1):
                piece = text[i:j]
                if piece in self.by_name and piece not in seen:
                    seen.add(piece)
                    yield piece

    def names_containing(self, text: str) -> list[str]:
        """Unit names that contain `text` (index of substrings built on first use)."""
        if self._containing is None:
            index: dict[str, set[str]] = defaultdict(set)
            for unit_name in self.by_name:
                for i in range(len(unit_name)):
                    for j in range(i + 2, min(len(unit_name), i + 12) + 1):
                        index[unit_name[i:j]].add(unit_name)
            self._containing = {k: sorted(v) for k, v in index.items()}
        return [n for n in self._containing.get(text, []) if n != text]


def _coverage_maps(session: Session) -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    by_org: dict[str, set[str]] = defaultdict(set)
    by_unit: dict[str, list[str]] = defaultdict(list)
    for org, unit in session.execute(select(Coverage.party_org_code, Coverage.org_unit_code)):
        by_org[org].add(unit)
        by_unit[unit].append(org)
    return by_org, by_unit


def _candidates(stem: str, tree: UnitTree, scope: set[str], exclude: set[str], needed: int,
                skip: Any = None) -> list[tuple[str, int, str]]:
    """The best `needed` (unit code, score, match) for one org's name stem.

    Unit names occurring in the stem are taken best-possible score first, and the walk stops when
    no remaining name can beat what was found: a stem holding a common name ("一班", hundreds of
    teams) does not score every team of the enterprise, only those below the unit the rest of the
    stem names. `skip(code)` leaves a unit out (the list view: units another org covers)."""
    found: dict[str, tuple[int, str]] = {}

    def consider(code: str, score: int, match: str) -> None:
        if code in exclude or (skip is not None and skip(code)):
            return
        if scope and (code in scope or not scope.isdisjoint(tree.above(code))):
            score += 8  # the parent org's scope holds the unit: the same company
        if score > found.get(code, (-1, ""))[0]:
            found[code] = (score, match)

    def settled(best_possible: int) -> bool:
        if len(found) < needed:
            return False
        return sorted((v[0] for v in found.values()), reverse=True)[needed - 1] >= best_possible

    groups = []
    for unit_name in tree.names_within(stem):
        if unit_name == stem:
            groups.append((108, 100, set(), unit_name, "exact"))
        else:
            base, rest = _contained_base(stem, unit_name, tree)
            groups.append((min(base + (6 if rest else 0), 96) + 8, base, rest, unit_name, "contained"))
    groups.sort(key=lambda group: -group[0])
    for best_possible, base, rest, unit_name, match in groups:
        if settled(best_possible):
            break
        codes = tree.by_name[unit_name]
        if not rest:
            for code in codes:
                consider(code, min(base, 100 if match == "exact" else 96), match)
            continue
        below = tree.named_below(unit_name, rest)
        for code in below:
            consider(code, min(base + 6, 96), match)
        if len(found) < needed:  # none below the named unit: the others, penalized (a few)
            for code in codes[:20]:
                consider(code, min(base - 25, 96), match)
    if not found and len(stem) >= 2:
        for unit_name in tree.names_containing(stem):
            for code in tree.by_name[unit_name][:20]:
                consider(code, 35 + round(30 * len(stem) / len(unit_name)), "containing")
    ranked = sorted(((c, s, m) for c, (s, m) in found.items()), key=lambda x: (-x[1], tree.name[x[0]], x[0]))
    return ranked[:needed]


def _contained_base(stem: str, unit_name: str, tree: UnitTree) -> tuple[int, set[str]]:
    """For a unit name inside a longer stem: the base score, and the other unit names the rest of
    the stem holds ("热工车间化验班": a team in a workshop, so the candidate should lie below a
    unit named 热工车间, not in another workshop)."""
    base = 55 + round(35 * len(unit_name) / len(stem))
    # "北辰生产技术部" ends with "生产技术部": a company prefix before the unit's name
    base += 4 if stem.endswith(unit_name) else 0
    return base, set(tree.names_within(stem.replace(unit_name, " ", 1)))


def _contained_score(base: int, rest: set[str], code: str, tree: UnitTree) -> int:
    """A contained match's score: lower when the rest of the stem names units not above it."""
    score = base
    if rest:
        score += 6 if not rest.isdisjoint(tree.above_names(code)) else -25
    return min(score, 96)


def _reason(org_name: str, unit_name: str, match: str) -> dict[str, str]:
    zh = {"exact": "名称匹配", "contained": "名称匹配", "containing": "名称部分匹配", "sibling": "同级部门"}[match]
    en = {"exact": "same name", "contained": "name match", "containing": "partial name match",
          "sibling": "sibling unit"}[match]
    return {"zh": f"{zh}：{org_name} → {unit_name}", "en": f"{en}: {org_name} → {unit_name}"}


def suggest(session: Session, party_org_code: str | None = None, *, visible: Iterable[str] | None = None,
            per_org: int = 3, min_score: int = 60, tree: UnitTree | None = None) -> list[Suggestion]:
    """Units each party org probably covers, from its name. With `party_org_code`, that org's
    candidates (up to `per_org`); without, the best candidate of every branch and general branch
    whose name points at a unit it does not cover yet. `visible` limits the orgs (an officer's
    subtree). Units the org covers already (directly or as its expected branch) are left out."""
    query = select(PartyOrg.code, PartyOrg.name, PartyOrg.kind, PartyOrg.parent_code, PartyOrg.retirees) \
        .where(PartyOrg.active.is_(True))
    if party_org_code is not None:
        query = query.where(PartyOrg.code == party_org_code)
    else:
        query = query.where(PartyOrg.kind.in_(("branch", "general_branch")), PartyOrg.retirees.is_not(True))
    if visible is not None:
        query = query.where(PartyOrg.code.in_(list(visible)))
    orgs = session.execute(query.order_by(PartyOrg.code)).all()
    if not orgs:
        return []
    tree = tree or UnitTree.load(session)
    by_org, by_unit = _coverage_maps(session)
    expected: dict[str, set[str]] = defaultdict(set)
    codes = [o.code for o in orgs]
    for unit, branch in session.execute(select(ExpectedBranch.org_unit_code, ExpectedBranch.branch_code)
                                        .where(ExpectedBranch.branch_code.in_(codes))):
        expected[branch].add(unit)
    out: list[Suggestion] = []
    for org in orgs:
        stem = name_stem(org.name)
        if len(stem) < 2:
            continue
        scope = by_org.get(org.parent_code or "", set())
        exclude = by_org.get(org.code, set()) | expected.get(org.code, set())
        if party_org_code is None:
            # the list view: the best confident one, not a unit another org covers directly
            ranked = [r for r in _candidates(stem, tree, scope, exclude, 1, skip=by_unit.__contains__)
                      if r[1] >= min_score]
        else:  # one org asked for: weaker candidates too, but not mere noise
            ranked = [r for r in _candidates(stem, tree, scope, exclude, per_org) if r[1] >= SINGLE_ORG_MIN_SCORE]
        for code, score, match in ranked:
            out.append(Suggestion(org.code, org.name, code, tree.name[code], score, match,
                                  _reason(org.name, tree.name[code], match), tree.path(code),
                                  sorted(o for o in by_unit.get(code, []) if o != org.code)))
    out.sort(key=lambda s: (-s.score, s.party_org_code))
    return out


def uncovered_with_suggestions(session: Session, *, visible: Iterable[str] | None = None,
                               limit: int = 200, tree: UnitTree | None = None) -> list[dict[str, Any]]:
    """Open `uncovered_unit` mismatches (units with party members no branch covers), each with
    its best suggestion: a branch whose name names the unit, else the branch covering a sibling
    unit. With `visible` (an officer's subtree) only units that have a suggestion there."""
    rows = session.execute(
        select(Mismatch.id, Mismatch.org_unit_code, Mismatch.subject_label, Mismatch.details)
        .where(Mismatch.rule == "uncovered_unit", Mismatch.state == "open", Mismatch.closed_at.is_(None))
        .order_by(Mismatch.id).limit(limit)).all()
    if not rows:
        return []
    visible_set = set(visible) if visible is not None else None
    tree = tree or UnitTree.load(session)
    _, by_unit = _coverage_maps(session)
    branches = session.execute(select(PartyOrg.code, PartyOrg.name, PartyOrg.kind).where(
        PartyOrg.active.is_(True), PartyOrg.kind.in_(("branch", "general_branch")),
        PartyOrg.retirees.is_not(True))).all()
    if visible_set is not None:
        branches = [b for b in branches if b.code in visible_set]
    names = {b.code: b.name for b in branches}
    stems = [(b, name_stem(b.name)) for b in branches]
    children: dict[str | None, list[str]] = defaultdict(list)
    for code, parent in tree.parent.items():
        children[parent].append(code)
    out = []
    for m in rows:
        unit = m.org_unit_code
        unit_name = tree.name.get(unit) or m.subject_label or unit
        best: Suggestion | None = None
        for b, stem in stems:
            if len(stem) < 2 or unit_name not in stem:
                continue
            score = 100 if stem == unit_name else _contained_score(*_contained_base(stem, unit_name, tree), unit, tree)
            if score >= 60 and (best is None or score > best.score):
                best = Suggestion(b.code, b.name, unit, unit_name, score, "exact" if score == 100 else "contained",
                                  _reason(b.name, unit_name, "exact" if score == 100 else "contained"), tree.path(unit))
        if best is None:
            best = _nearby_branch(unit, unit_name, tree, children, by_unit, names)
        if visible_set is not None and best is None:
            continue
        details = m.details or {}
        out.append({"mismatch_id": m.id, "org_unit_code": unit, "org_unit_name": unit_name,
                    "path": tree.path(unit) if unit in tree.name else [],
                    "party_members": details.get("party_members"), "suggestion": best})
    return out


def _nearby_branch(unit: str, unit_name: str, tree: UnitTree, children: dict[str | None, list[str]],
                   by_unit: dict[str, list[str]], names: dict[str, str]) -> Suggestion | None:
    """The branch next to an uncovered unit: nearest first, the one covering an ancestor (without
    its descendants) or a sibling of the unit or of an ancestor."""
    level = unit
    for ancestor in [unit, *tree.ancestors(unit)]:
        if ancestor != unit:
            owners = sorted(o for o in by_unit.get(ancestor, []) if o in names)
            if owners:
                return Suggestion(owners[0], names[owners[0]], unit, unit_name, 45, "parent",
                                  _reason_near("parent", tree.name[ancestor], names[owners[0]]), tree.path(unit))
        level = ancestor
        for sibling in sorted(c for c in children.get(tree.parent.get(level), []) if c != level):
            owners = sorted(o for o in by_unit.get(sibling, []) if o in names)
            if owners:
                return Suggestion(owners[0], names[owners[0]], unit, unit_name, 40, "sibling",
                                  _reason_near("sibling", tree.name[sibling], names[owners[0]]), tree.path(unit))
    return None


def _reason_near(kind: str, unit_name: str, org_name: str) -> dict[str, str]:
    if kind == "parent":
        return {"zh": f"上级部门 {unit_name} 由 {org_name} 覆盖", "en": f"parent unit {unit_name} is covered by {org_name}"}
    return {"zh": f"同级部门 {unit_name} 由 {org_name} 覆盖", "en": f"sibling unit {unit_name} is covered by {org_name}"}
