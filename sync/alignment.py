"""Alignment: compare the party line with the business line and open / close mismatches.

Detection is set-based SQL: one statement per rule over the whole database, never a Python loop
per person. Reconciliation then walks only the mismatches (found and already recorded):
  * a violation with no live mismatch opens one;
  * a live mismatch whose violation is gone closes by itself (state `closed` for open ones; a
    person's decision — resolved / ignored — keeps its state and gets `closed_at`);
  * an ignored or resolved one whose inputs changed (or whose accepted exception expired) reopens.
A run without `--full` re-aligns only what the changes since the last alignment can affect
(`changed_scope`, from the change feed): the persons and org units they touch, directly or
through the org trees and coverage; every other live mismatch stays as it is. A `--full` run, a
first run, or a change too wide to be worth it (`SCOPED_LIMIT`) re-aligns everything.
Rules (DESIGN.md "Mismatch rule ids"):
  branch_mismatch, missing_membership, orphan_membership, status_conflict, join_date_conflict,
  uncovered_unit — here; ambiguous_match — from correlation, reconciled per pulled source & kind.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, bindparam, delete, event, func, insert, or_, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.pool import Pool

from records.bulk import BulkInserter, allocate_ids
from records.compact import expand_changed
from records.models import Change, ExpectedBranch, Membership, Mismatch, OrgUnit, PartyOrg, Person, SyncRun, utcnow
from records.stamping import unstamped_change_tables
from sync.plan import Ambiguity

DUAL_LINE_RULES = (
    "branch_mismatch",
    "missing_membership",
    "orphan_membership",
    "status_conflict",
    "join_date_conflict",
    "uncovered_unit",
)
SEVERITY = {
    "branch_mismatch": "medium",
    "missing_membership": "high",
    "orphan_membership": "high",
    "status_conflict": "medium",
    "join_date_conflict": "low",
    "uncovered_unit": "medium",
    "ambiguous_match": "high",
}
IN_SERVICE = ("active", "probation", "temporary")
MAX_TREE_DEPTH = 64  # bounds the walk down the org tree, so a parent cycle in bad data ends

_IN_SERVICE_SQL = (
    "p.staff_active = :yes AND (p.employment_status IS NULL "
    "OR p.employment_status IN ('active', 'probation', 'temporary'))"
)
_ACTIVE_MEMBERSHIP_SQL = "m.active = :yes AND m.status = 'active'"


@dataclass
class Violation:
    rule: str
    subject_key: str
    subject_type: str
    subject_id: int | None
    label: str | None
    details: dict[str, Any]
    party_org_code: str | None = None
    other_party_org_code: str | None = None
    org_unit_code: str | None = None

    @property
    def inputs_hash(self) -> str:
        blob = json.dumps(self.details, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha1(blob.encode("utf-8")).hexdigest()


@dataclass
class AlignmentResult:
    opened: int = 0
    closed: int = 0
    reopened: int = 0
    open: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)
    # The change feed position this alignment accounted for (sync_runs.aligned_seq), and how
    # many subjects an incremental alignment re-examined (None: it examined everything).
    aligned_seq: int | None = None
    scoped_subjects: int | None = None

    def as_dict(self) -> dict[str, int]:
        return {"opened": self.opened, "closed": self.closed, "open": self.open}


# --- expected branches ---------------------------------------------------------------------

_EXPECTED_SQL = f"""
WITH RECURSIVE
branch_cover AS (
    SELECT c.org_unit_code AS unit_code, c.party_org_code AS branch_code,
           c.include_descendants AS inherit
    FROM coverage c JOIN party_orgs o ON o.code = c.party_org_code
    WHERE o.active = :yes AND o.kind = 'branch'
),
expected (unit_code, branch_code, via_unit_code, inherit, depth) AS (
    SELECT unit_code, branch_code, unit_code, inherit, 0 FROM branch_cover
    UNION ALL
    SELECT u.code, e.branch_code, e.via_unit_code, e.inherit, e.depth + 1
    FROM org_units u JOIN expected e ON u.parent_code = e.unit_code
    WHERE e.inherit = :yes AND e.depth < {MAX_TREE_DEPTH}
      -- NOT EXISTS, not NOT IN: with tens of thousands of covered units PostgreSQL judged the
      -- NOT IN list too big to hash and re-scanned it per row (minutes at 1 000 000 staff).
      AND NOT EXISTS (SELECT 1 FROM branch_cover b WHERE b.unit_code = u.code)
)
SELECT unit_code, MIN(branch_code) AS branch_code, MIN(via_unit_code) AS via_unit_code FROM expected GROUP BY unit_code
"""


def refresh_expected_branches(session: Session) -> set[str]:
    """Recompute every org unit's expected branch: the branch covering its nearest covered
    ancestor-or-self (committee and general-branch coverage describe scope only). Only the rows
    that differ are rewritten; returns the codes of the units whose expected branch changed."""
    conn = session.connection()
    table = ExpectedBranch.__table__
    if conn.execute(select(table.c.org_unit_code).limit(1)).first() is None:
        # None yet (a first load): written by the database from the query, without a round
        # trip through Python of every unit's row.
        conn.execute(text(f"INSERT INTO {table.name} (org_unit_code, branch_code, via_unit_code) "
                          f"SELECT unit_code, branch_code, via_unit_code FROM ({_EXPECTED_SQL}) expected"),
                     {"yes": True})
        return set(conn.execute(select(table.c.org_unit_code)).scalars())
    now = {u: (b, v) for u, b, v in conn.execute(text(_EXPECTED_SQL), {"yes": True})}
    before = {u: (b, v) for u, b, v in conn.execute(
        select(table.c.org_unit_code, table.c.branch_code, table.c.via_unit_code))}
    gone = [u for u, row in before.items() if now.get(u) != row]
    added = [{"org_unit_code": u, "branch_code": b, "via_unit_code": v}
             for u, (b, v) in now.items() if before.get(u) != (b, v)]
    for i in range(0, len(gone), _CHUNK):
        conn.execute(delete(table).where(table.c.org_unit_code.in_(gone[i : i + _CHUNK])))
    for i in range(0, len(added), 2000):
        conn.execute(insert(table), added[i : i + 2000])
    return set(gone) | {row["org_unit_code"] for row in added}


# --- what changed since the last alignment ---------------------------------------------------

# Entities whose changes can move a dual-line finding (coverage edits are recorded as party_org).
ALIGNMENT_ENTITIES = ("person", "membership", "org_unit", "party_org")
# Beyond this many persons to re-examine, the whole-enterprise statements cost less than looking
# them up by id (and a change that wide is a reorganisation: worth a complete look).
SCOPED_LIMIT = 50_000
_CHUNK = 5000


@dataclass
class AlignmentScope:
    """The subjects an incremental alignment re-examines."""

    persons: set[int]
    units: set[str]

    def subject_keys(self) -> set[str]:
        return {f"person:{p}" for p in self.persons} | {f"org_unit:{u}" for u in self.units}


def feed_position(session: Session) -> int:
    """The change feed's last stamped `seq` as this transaction sees it: every change at or below
    it is visible here (seq follows commit order), so an alignment now accounts for all of them."""
    return session.connection().execute(select(func.coalesce(func.max(Change.seq), 0))).scalar_one()


def last_aligned_seq(session: Session) -> int | None:
    """How far into the feed the alignments committed so far have looked (None: never)."""
    return session.connection().execute(
        select(func.max(SyncRun.aligned_seq)).where(SyncRun.status == "succeeded")).scalar()


def _in_chunks(conn: Connection, query: Any, column: Any, values: Iterable[Any]) -> list[Any]:
    values = list(values)
    out: list[Any] = []
    for i in range(0, len(values), _CHUNK):
        out.extend(conn.execute(query.where(column.in_(values[i : i + _CHUNK]))))
    return out


def _changed_rows(conn: Connection, since: int) -> list[tuple[str, int, Any]]:
    """(entity, entity_id, changed) of the alignment inputs changed after `since` (less those of
    runs that aligned them already) and of this transaction, stamped or not yet."""
    changes, runs = Change.__table__, SyncRun.__table__
    columns = (changes.c.entity, changes.c.entity_id, changes.c.changed)
    inputs = changes.c.entity.in_(ALIGNMENT_ENTITIES)
    aligned_runs = select(runs.c.id).where(runs.c.aligned_seq.is_not(None))
    not_aligned = or_(changes.c.run_id.is_(None), changes.c.run_id.not_in(aligned_runs))
    rows = list(conn.execute(select(*columns).where(changes.c.seq > since, inputs, not_aligned)))
    for table in unstamped_change_tables(conn):
        staged = text(f"SELECT entity, entity_id, changed FROM {table} "
                      "WHERE seq IS NULL AND entity IN :entities").bindparams(bindparam("entities", expanding=True))
        rows.extend(conn.execute(staged, {"entities": list(ALIGNMENT_ENTITIES)}))
    # The text queries read the stored form: expanded here as the column type would.
    return [(entity, entity_id, expand_changed(json.loads(changed) if isinstance(changed, str) else (changed or {})))
            for entity, entity_id, changed in rows]


def _before(changed: dict[str, Any], name: str) -> Any:
    pair = changed.get(name)
    return pair[0] if isinstance(pair, list) and pair else None


def changed_scope(session: Session, since: int) -> AlignmentScope | None:
    """What the changes after feed position `since` can affect, or None when re-aligning
    everything costs less. A person counts when they, one of their memberships, their org unit
    or a party org they belong to changed; an org unit when one of its people did, or its
    expected branch (org-unit or party-org tree, coverage) or name changed."""
    conn = session.connection()
    rows = _changed_rows(conn, since)
    if len(rows) > 2 * SCOPED_LIMIT:
        return None
    persons: set[int] = set()
    units: set[str] = set()
    ids: dict[str, set[int]] = {"membership": set(), "org_unit": set(), "party_org": set()}
    for entity, entity_id, changed in rows:
        if entity == "person":
            persons.add(entity_id)
            if _before(changed, "org_unit_code"):
                units.add(_before(changed, "org_unit_code"))  # the unit they left
        else:
            ids[entity].add(entity_id)
            if entity == "membership" and isinstance(_before(changed, "person_id"), int):
                persons.add(_before(changed, "person_id"))
    memberships, persons_table = Membership.__table__, Person.__table__
    persons.update(pid for (pid,) in _in_chunks(
        conn, select(memberships.c.person_id), memberships.c.id, ids["membership"]) if pid is not None)
    # Units whose every person is re-examined: their expected branch, or what findings say of
    # the unit or its branch (names), changed.
    whole_units: set[str] = set()
    if ids["org_unit"] or ids["party_org"]:
        whole_units.update(refresh_expected_branches(session))
        whole_units.update(code for (code,) in _in_chunks(
            conn, select(OrgUnit.__table__.c.code), OrgUnit.__table__.c.id, ids["org_unit"]))
        org_codes = [code for (code,) in _in_chunks(
            conn, select(PartyOrg.__table__.c.code), PartyOrg.__table__.c.id, ids["party_org"])]
        expected = ExpectedBranch.__table__
        whole_units.update(u for (u,) in _in_chunks(
            conn, select(expected.c.org_unit_code), expected.c.branch_code, org_codes))
        persons.update(p for (p,) in _in_chunks(
            conn, select(memberships.c.person_id), memberships.c.party_org_code, org_codes) if p is not None)
    # Live findings whose accepted exception has expired reopen, wherever they are.
    mismatches = Mismatch.__table__
    for (key,) in conn.execute(select(mismatches.c.subject_key).where(
            mismatches.c.rule.in_(DUAL_LINE_RULES), mismatches.c.closed_at.is_(None),
            mismatches.c.expires_at <= utcnow())):
        kind, _, value = key.partition(":")
        if kind == "person" and value.isdigit():
            persons.add(int(value))
        elif kind == "org_unit":
            units.add(value)
    if len(whole_units) > SCOPED_LIMIT:
        return None
    persons.update(p for (p,) in _in_chunks(
        conn, select(persons_table.c.id), persons_table.c.org_unit_code, whole_units))
    if len(persons) > SCOPED_LIMIT:
        return None
    # A unit's uncovered_unit finding counts its people: re-examined when one of them changed.
    units.update(whole_units)
    units.update(u for (u,) in _in_chunks(
        conn, select(persons_table.c.org_unit_code), persons_table.c.id, persons) if u is not None)
    return AlignmentScope(persons=persons, units=units)


# --- rule detection ------------------------------------------------------------------------

_PERSON_COLUMNS = "p.id, p.name, p.employee_no, p.id_number_masked, p.org_unit_code, p.employment_status, p.political_status"


def _person_details(row: Any) -> dict[str, Any]:
    return {
        "person": {
            "name": row.name,
            "employee_no": row.employee_no,
            "id_number": row.id_number_masked,
            "org_unit_code": row.org_unit_code,
            "employment_status": row.employment_status,
            "political_status": row.political_status,
        }
    }


def _person_violation(rule: str, row: Any, details: dict[str, Any], **scope: Any) -> Violation:
    return Violation(
        rule=rule,
        subject_key=f"person:{row.id}",
        subject_type="person",
        subject_id=row.id,
        label=row.name,
        details=_person_details(row) | details,
        **scope,
    )


def _membership_details(row: Any) -> dict[str, Any]:
    return {
        "membership": {
            "id": row.mid,
            "party_org_code": row.party_org_code,
            "party_org_name": row.party_org_name,
            "category": row.category,
            "joined_on": str(row.joined_on) if row.joined_on else None,
        }
    }


_MEMBERSHIP_JOIN = f"""
    JOIN memberships m ON m.person_id = p.id AND {_ACTIVE_MEMBERSHIP_SQL}
    LEFT JOIN party_orgs o ON o.code = m.party_org_code
"""
_MEMBERSHIP_COLUMNS = "m.id AS mid, m.party_org_code, o.name AS party_org_name, m.category, m.joined_on"


_ONLY = "/*only*/"  # where a scoped detection narrows a statement to its subjects


def _scoped_rows(conn: Connection, sql: str, scope: AlignmentScope | None, by_unit: bool = False) -> Iterable[Any]:
    """Rows of `sql` over the whole database, or with a scope only those of its persons (by
    `p.id`) or, `by_unit`, of its org units (by `p.org_unit_code`), a chunk of them at a time."""
    if scope is None:
        yield from conn.execute(text(sql.replace(_ONLY, "")), {"yes": True})
        return
    column, values = ("p.org_unit_code", sorted(scope.units)) if by_unit else ("p.id", sorted(scope.persons))
    stmt = text(sql.replace(_ONLY, f"AND {column} IN :only")).bindparams(bindparam("only", expanding=True))
    for i in range(0, len(values), _CHUNK):
        yield from conn.execute(stmt, {"yes": True, "only": values[i : i + _CHUNK]})


def _uncovered_units(conn: Connection) -> set[str]:
    """Codes of the units people work in that no branch covers (expected branch none), read
    from the persons' unit index: one pass over the distinct codes, no person row touched."""
    return set(conn.execute(text("""
        SELECT d.code FROM (SELECT DISTINCT org_unit_code AS code FROM persons
                            WHERE org_unit_code IS NOT NULL) d
        WHERE NOT EXISTS (SELECT 1 FROM expected_branches e WHERE e.org_unit_code = d.code)
    """)).scalars())


def detect(session: Session, scope: AlignmentScope | None = None) -> list[Violation]:
    """Every dual-line violation, or with `scope` those of its persons and org units."""
    conn = session.connection()
    found: list[Violation] = []

    for row in _scoped_rows(conn, f"""
        SELECT {_PERSON_COLUMNS}, {_MEMBERSHIP_COLUMNS}, e.branch_code, e.via_unit_code,
               xb.name AS expected_name, u.name AS unit_name
        FROM persons p {_MEMBERSHIP_JOIN}
        JOIN expected_branches e ON e.org_unit_code = p.org_unit_code
        LEFT JOIN party_orgs xb ON xb.code = e.branch_code
        LEFT JOIN org_units u ON u.code = p.org_unit_code
        WHERE {_IN_SERVICE_SQL}
          AND (m.party_org_code IS NULL OR m.party_org_code <> e.branch_code) {_ONLY}
    """, scope):
        found.append(_person_violation(
            "branch_mismatch", row,
            _membership_details(row) | {
                "expected": {"party_org_code": row.branch_code, "party_org_name": row.expected_name,
                             "because_covers": row.via_unit_code},
                "org_unit": {"code": row.org_unit_code, "name": row.unit_name},
            },
            party_org_code=row.party_org_code, other_party_org_code=row.branch_code,
            org_unit_code=row.org_unit_code,
        ))

    # Driven by the few units nobody covers, not by every person (the membership EXISTS would
    # run per person before the coverage test: 2.8 s instead of 0.2 s at 1 000 000 staff).
    uncovered = _uncovered_units(conn)
    if scope is not None:
        uncovered &= scope.units
    for row in _scoped_rows(conn, f"""
        SELECT p.org_unit_code AS code, u.id AS unit_id, u.name AS unit_name,
               COUNT(DISTINCT p.id) AS people
        FROM persons p
        LEFT JOIN org_units u ON u.code = p.org_unit_code
        WHERE {_IN_SERVICE_SQL}
          AND (p.political_status IN ('01', '02') OR EXISTS (
                SELECT 1 FROM memberships m WHERE m.person_id = p.id AND {_ACTIVE_MEMBERSHIP_SQL})) {_ONLY}
        GROUP BY p.org_unit_code, u.id, u.name
    """, AlignmentScope(persons=set(), units=uncovered), by_unit=True):
        found.append(Violation(
            rule="uncovered_unit", subject_key=f"org_unit:{row.code}", subject_type="org_unit",
            subject_id=row.unit_id, label=row.unit_name or row.code,
            details={"org_unit": {"code": row.code, "name": row.unit_name}, "party_members": row.people},
            org_unit_code=row.code,
        ))

    for row in _scoped_rows(conn, f"""
        SELECT {_PERSON_COLUMNS}, e.branch_code, xb.name AS expected_name
        FROM persons p
        LEFT JOIN expected_branches e ON e.org_unit_code = p.org_unit_code
        LEFT JOIN party_orgs xb ON xb.code = e.branch_code
        WHERE {_IN_SERVICE_SQL} AND p.political_status IN ('01', '02')
          AND NOT EXISTS (SELECT 1 FROM memberships m WHERE m.person_id = p.id AND {_ACTIVE_MEMBERSHIP_SQL}) {_ONLY}
    """, scope):
        found.append(_person_violation(
            "missing_membership", row,
            {"expected": {"party_org_code": row.branch_code, "party_org_name": row.expected_name}},
            party_org_code=row.branch_code, org_unit_code=row.org_unit_code,
        ))

    for row in _scoped_rows(conn, f"""
        SELECT {_PERSON_COLUMNS}, {_MEMBERSHIP_COLUMNS}, p.staff_active
        FROM persons p {_MEMBERSHIP_JOIN}
        WHERE NOT ({_IN_SERVICE_SQL})
          AND NOT (p.staff_active = :yes AND p.employment_status = 'retired' AND o.retirees = :yes) {_ONLY}
    """, scope):
        why = "no_staff_record" if not row.staff_active else f"employment_status_{row.employment_status}"
        found.append(_person_violation(
            "orphan_membership", row, _membership_details(row) | {"why": why},
            party_org_code=row.party_org_code, org_unit_code=row.org_unit_code,
        ))

    for row in _scoped_rows(conn, f"""
        SELECT {_PERSON_COLUMNS}, {_MEMBERSHIP_COLUMNS}
        FROM persons p {_MEMBERSHIP_JOIN}
        WHERE {_IN_SERVICE_SQL} AND p.political_status IS NOT NULL AND (
              (p.political_status = '01' AND m.category = 'probationary')
           OR (p.political_status = '02' AND m.category = 'full')
           OR p.political_status NOT IN ('01', '02')) {_ONLY}
    """, scope):
        found.append(_person_violation(
            "status_conflict", row, _membership_details(row),
            party_org_code=row.party_org_code, org_unit_code=row.org_unit_code,
        ))

    for row in _scoped_rows(conn, f"""
        SELECT {_PERSON_COLUMNS}, {_MEMBERSHIP_COLUMNS}, p.party_joined_on
        FROM persons p {_MEMBERSHIP_JOIN}
        WHERE p.party_joined_on IS NOT NULL AND m.joined_on IS NOT NULL
          AND p.party_joined_on <> m.joined_on {_ONLY}
    """, scope):
        found.append(_person_violation(
            "join_date_conflict", row,
            _membership_details(row) | {"hr_party_joined_on": str(row.party_joined_on)},
            party_org_code=row.party_org_code, org_unit_code=row.org_unit_code,
        ))
    return found


def ambiguity_violations(ambiguities: Iterable[Ambiguity]) -> list[Violation]:
    return [
        Violation(
            rule="ambiguous_match",
            subject_key=f"record:{a.source}:{a.kind}:{a.external_id}",
            subject_type="person",
            subject_id=None,
            label=a.label,
            details={"source": a.source, "kind": a.kind, "record": a.record,
                     "candidates": a.candidates, "reason": a.reason},
            party_org_code=a.record.get("party_org_code"),
        )
        for a in ambiguities
    ]


# --- reconciliation ------------------------------------------------------------------------


class Reconciler:
    """Turns the violations found now into mismatch rows: open, keep, reopen or close."""

    def __init__(self, session: Session, run_id: int | None, actor: str) -> None:
        self.session = session
        self.conn = session.connection()
        self.run_id = run_id
        self.actor = actor
        self.now = utcnow()
        self.result = AlignmentResult()
        self._changes: list[dict[str, Any]] = []

    def reconcile(self, violations: list[Violation], rules: Iterable[str],
                  scope_prefixes: Iterable[str] | None = None, subjects: set[str] | None = None) -> None:
        """Reconcile `rules`; with `scope_prefixes`, only subjects whose key starts with one of
        them may close (an incremental pull only speaks for what it saw); with `subjects`, only
        those subjects are looked at (an incremental alignment: the violations are theirs)."""
        rules = list(rules)
        table = Mismatch.__table__
        live_rows = select(table).where(table.c.rule.in_(rules), table.c.closed_at.is_(None))
        if subjects is None:
            found = self.conn.execute(live_rows)
        else:
            found = _in_chunks(self.conn, live_rows, table.c.subject_key, sorted(subjects))
        live = {(r.rule, r.subject_key): r for r in found}
        wanted = {(v.rule, v.subject_key): v for v in violations
                  if v.rule in rules and (subjects is None or v.subject_key in subjects)}
        prefixes = tuple(scope_prefixes) if scope_prefixes is not None else None

        new_rows = []
        for key, v in wanted.items():
            row = live.get(key)
            if row is None:
                new_rows.append(self._new_row(v))
                continue
            digest = v.inputs_hash
            expired = row.expires_at is not None and row.expires_at <= self.now
            if row.inputs_hash != digest or expired:
                values: dict[str, Any] = {"details": v.details, "inputs_hash": digest, "updated_at": self.now,
                                          "subject_label": v.label, "party_org_code": v.party_org_code,
                                          "other_party_org_code": v.other_party_org_code,
                                          "org_unit_code": v.org_unit_code}
                changed: dict[str, Any] = {"details": [row.details, v.details]}
                if row.state in ("ignored", "resolved"):
                    values.update(state="open", expires_at=None)
                    changed["state"] = [row.state, "open"]
                    self.result.reopened += 1
                self.conn.execute(update(table).where(table.c.id == row.id).values(**values))
                self._change(row.id, "update", changed)

        if new_rows:
            # Ids allocated up front and the rows written in bulk (COPY on PostgreSQL): a first
            # load opens tens of thousands, and INSERT … RETURNING cost a statement per 1 000.
            for row, new_id in zip(new_rows, allocate_ids(self.conn, table, len(new_rows))):
                row["id"] = new_id
                self._change(new_id, "create", {"rule": [None, row["rule"]], "state": [None, "open"],
                                                "subject": [None, row["subject_key"]]})
            BulkInserter(self.conn, table, tuple(new_rows[0])).insert(new_rows)
        self.result.opened += len(new_rows)

        closing = [
            row for key, row in live.items()
            if key not in wanted and (prefixes is None or row.subject_key.startswith(prefixes))
        ]
        for row in closing:
            new_state = "closed" if row.state == "open" else row.state
            self._change(row.id, "update", {"state": [row.state, new_state], "closed_at": [None, self.now.isoformat()]})
        stmt = update(table).where(table.c.id == bindparam("b_id")).values(
            state=bindparam("state"), closed_at=self.now, updated_at=self.now
        )
        params = [{"b_id": r.id, "state": "closed" if r.state == "open" else r.state} for r in closing]
        for i in range(0, len(params), 1000):
            self.conn.execute(stmt, params[i : i + 1000])
        self.result.closed += len(closing)

    def _new_row(self, v: Violation) -> dict[str, Any]:
        return {
            "rule": v.rule, "subject_key": v.subject_key, "subject_type": v.subject_type,
            "subject_id": v.subject_id, "subject_label": v.label, "party_org_code": v.party_org_code,
            "other_party_org_code": v.other_party_org_code, "org_unit_code": v.org_unit_code,
            "state": "open", "severity": SEVERITY.get(v.rule, "medium"), "details": v.details,
            "inputs_hash": v.inputs_hash, "opened_run_id": self.run_id, "opened_at": self.now,
            "updated_at": self.now, "closed_at": None, "resolution": None, "resolution_note": None,
            "resolved_by": None, "resolved_at": None, "expires_at": None,
        }

    def _change(self, mismatch_id: int, op: str, changed: dict[str, Any]) -> None:
        self._changes.append({"run_id": self.run_id, "actor": self.actor, "entity": "mismatch",
                              "entity_id": mismatch_id, "op": op, "changed": changed, "at": self.now})

    def finish(self) -> AlignmentResult:
        if self._changes:
            BulkInserter(self.conn, Change.__table__, tuple(self._changes[0])).insert(self._changes)
        self._changes = []
        counts = self.conn.execute(
            text("SELECT rule, COUNT(*) FROM mismatches WHERE state = 'open' GROUP BY rule")
        ).all()
        self.result.by_rule = {rule: n for rule, n in counts}
        self.result.open = sum(self.result.by_rule.values())
        return self.result


_ALIGNED_TABLES = ("persons", "memberships", "org_units", "party_orgs", "coverage", "expected_branches")
# As autovacuum's own threshold (autovacuum_analyze_scale_factor): a table whose rows this
# transaction changed by more than a tenth of its size is analysed before the rules read it.
_STALE_FRACTION = 0.1


def _refresh_statistics(session: Session) -> None:
    """PostgreSQL plans the rule queries from table statistics; after a bulk load they are
    stale (autovacuum has not run yet) and a 100k-person anti-join took 12 s instead of 50 ms.
    ANALYZE samples and is transactional there, but it is not free (1.5 s for these tables at a
    million staff), so only tables this transaction changed by more than `_STALE_FRACTION` of
    their size are analysed: a no-op `sync --full` analyses none, and what runs before this one
    changed is autovacuum's to analyse, by the same threshold. (The counts are the backend's not
    yet reported to the statistics: a pooled connection reused within seconds of a large run may
    still show that run's, and analyse once more.) MariaDB's ANALYZE TABLE would commit the run
    half-way, and InnoDB refreshes its statistics itself."""
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        return
    stale = conn.execute(text(
        "SELECT x.relname FROM pg_stat_xact_user_tables x JOIN pg_class c ON c.oid = x.relid "
        "WHERE x.schemaname = current_schema() AND x.relname IN :tables "
        "AND x.n_tup_ins + x.n_tup_upd + x.n_tup_del > :fraction * GREATEST(c.reltuples, 0) "
        "ORDER BY x.relname").bindparams(bindparam("tables", expanding=True)),
        {"tables": list(_ALIGNED_TABLES), "fraction": _STALE_FRACTION}).scalars().all()
    if stale:
        conn.exec_driver_sql(f"ANALYZE {', '.join(stale)}")


_MARIADB_ALIGNMENT_LOCK = "dualline.alignment"


def _serialize_alignment(session: Session) -> None:
    """Let one run at a time recompute alignment, until it commits.

    Runs of different sources may overlap; each rewrites `expected_branches` and reconciles the
    same mismatch rows, so two at once would collide on the expected-branch keys or open the same
    mismatch twice. The second run waits here (its fetch and apply already ran in parallel) and,
    under READ COMMITTED, then sees what the first committed. SQLite has one writer anyway.
    PostgreSQL: a self-conflicting table lock that plain readers do not notice. MariaDB: a named
    lock, released when the transaction ends (listeners below)."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE expected_branches IN SHARE ROW EXCLUSIVE MODE")
    elif conn.dialect.name in ("mysql", "mariadb"):
        got = conn.execute(text("SELECT GET_LOCK(:name, 3600)"), {"name": _MARIADB_ALIGNMENT_LOCK}).scalar()
        if got != 1:
            raise RuntimeError("timed out waiting for another run's alignment to finish")
        conn.info["dualline_alignment_lock"] = True


def _release_alignment_lock(dbapi_connection, record) -> None:
    # On the connection's return to the pool, so after its COMMIT or ROLLBACK: released before the
    # COMMIT, the next run could read the database before this run's data is in it.
    if record.info.pop("dualline_alignment_lock", False) and dbapi_connection is not None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"SELECT RELEASE_LOCK('{_MARIADB_ALIGNMENT_LOCK}')")
        finally:
            cursor.close()


event.listen(Pool, "checkin", _release_alignment_lock)


def align(session: Session, run_id: int | None, actor: str, ambiguities: list[Ambiguity],
          pulled: Iterable[tuple[str, str, bool]], *, everything: bool = True) -> AlignmentResult:
    """Refresh expected branches, detect the dual-line rules, reconcile the mismatches.

    `pulled` lists (source, kind, full) of this run: ambiguities of a (source, kind) close only
    when a full pull of it no longer finds them. Unless `everything` (a `sync --full`: the
    periodic complete look), only what changed since the last alignment is re-aligned
    (`changed_scope`), when there is one to start from.
    """
    _serialize_alignment(session)
    # Read after the lock: the alignment committed before this one is visible by now.
    position = feed_position(session)
    since = None if everything else last_aligned_seq(session)
    scope = changed_scope(session, since) if since is not None else None
    if scope is None:
        refresh_expected_branches(session)
        _refresh_statistics(session)
    reconciler = Reconciler(session, run_id, actor)
    subjects = scope.subject_keys() if scope is not None else None
    reconciler.reconcile(detect(session, scope), DUAL_LINE_RULES, subjects=subjects)
    full_scopes = [f"record:{s}:{k}:" for s, k, full in pulled if full]
    reconciler.reconcile(ambiguity_violations(ambiguities), ["ambiguous_match"], scope_prefixes=full_scopes)
    result = reconciler.finish()
    result.aligned_seq = position
    result.scoped_subjects = len(subjects) if subjects is not None else None
    return result
