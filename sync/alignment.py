"""Alignment: compare the party line with the business line and open / close mismatches.

Detection is set-based SQL: one statement per rule over the whole database, never a Python loop
per person. Reconciliation then walks only the mismatches (found and already recorded):
  * a violation with no live mismatch opens one;
  * a live mismatch whose violation is gone closes by itself (state `closed` for open ones; a
    person's decision — resolved / ignored — keeps its state and gets `closed_at`);
  * an ignored or resolved one whose inputs changed (or whose accepted exception expired) reopens.
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

from sqlalchemy import bindparam, delete, event, insert, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.pool import Pool

from records.models import Change, ExpectedBranch, Mismatch, utcnow
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
SELECT unit_code, MIN(branch_code), MIN(via_unit_code) FROM expected GROUP BY unit_code
"""


def refresh_expected_branches(session: Session) -> int:
    """Recompute every org unit's expected branch: the branch covering its nearest covered
    ancestor-or-self (committee and general-branch coverage describe scope only)."""
    conn = session.connection()
    rows = [
        {"org_unit_code": u, "branch_code": b, "via_unit_code": v}
        for u, b, v in conn.execute(text(_EXPECTED_SQL), {"yes": True})
    ]
    conn.execute(delete(ExpectedBranch.__table__))
    for i in range(0, len(rows), 2000):
        conn.execute(insert(ExpectedBranch.__table__), rows[i : i + 2000])
    return len(rows)


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


def detect(session: Session) -> list[Violation]:
    conn = session.connection()
    yes = {"yes": True}
    found: list[Violation] = []

    for row in conn.execute(text(f"""
        SELECT {_PERSON_COLUMNS}, {_MEMBERSHIP_COLUMNS}, e.branch_code, e.via_unit_code,
               xb.name AS expected_name, u.name AS unit_name
        FROM persons p {_MEMBERSHIP_JOIN}
        JOIN expected_branches e ON e.org_unit_code = p.org_unit_code
        LEFT JOIN party_orgs xb ON xb.code = e.branch_code
        LEFT JOIN org_units u ON u.code = p.org_unit_code
        WHERE {_IN_SERVICE_SQL}
          AND (m.party_org_code IS NULL OR m.party_org_code <> e.branch_code)
    """), yes):
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

    for row in conn.execute(text(f"""
        SELECT p.org_unit_code AS code, u.id AS unit_id, u.name AS unit_name,
               COUNT(DISTINCT p.id) AS people
        FROM persons p
        LEFT JOIN expected_branches e ON e.org_unit_code = p.org_unit_code
        LEFT JOIN org_units u ON u.code = p.org_unit_code
        WHERE {_IN_SERVICE_SQL} AND p.org_unit_code IS NOT NULL AND e.org_unit_code IS NULL
          AND (p.political_status IN ('01', '02') OR EXISTS (
                SELECT 1 FROM memberships m WHERE m.person_id = p.id AND {_ACTIVE_MEMBERSHIP_SQL}))
        GROUP BY p.org_unit_code, u.id, u.name
    """), yes):
        found.append(Violation(
            rule="uncovered_unit", subject_key=f"org_unit:{row.code}", subject_type="org_unit",
            subject_id=row.unit_id, label=row.unit_name or row.code,
            details={"org_unit": {"code": row.code, "name": row.unit_name}, "party_members": row.people},
            org_unit_code=row.code,
        ))

    for row in conn.execute(text(f"""
        SELECT {_PERSON_COLUMNS}, e.branch_code, xb.name AS expected_name
        FROM persons p
        LEFT JOIN expected_branches e ON e.org_unit_code = p.org_unit_code
        LEFT JOIN party_orgs xb ON xb.code = e.branch_code
        WHERE {_IN_SERVICE_SQL} AND p.political_status IN ('01', '02')
          AND NOT EXISTS (SELECT 1 FROM memberships m WHERE m.person_id = p.id AND {_ACTIVE_MEMBERSHIP_SQL})
    """), yes):
        found.append(_person_violation(
            "missing_membership", row,
            {"expected": {"party_org_code": row.branch_code, "party_org_name": row.expected_name}},
            party_org_code=row.branch_code, org_unit_code=row.org_unit_code,
        ))

    for row in conn.execute(text(f"""
        SELECT {_PERSON_COLUMNS}, {_MEMBERSHIP_COLUMNS}, p.staff_active
        FROM persons p {_MEMBERSHIP_JOIN}
        WHERE NOT ({_IN_SERVICE_SQL})
          AND NOT (p.staff_active = :yes AND p.employment_status = 'retired' AND o.retirees = :yes)
    """), yes):
        why = "no_staff_record" if not row.staff_active else f"employment_status_{row.employment_status}"
        found.append(_person_violation(
            "orphan_membership", row, _membership_details(row) | {"why": why},
            party_org_code=row.party_org_code, org_unit_code=row.org_unit_code,
        ))

    for row in conn.execute(text(f"""
        SELECT {_PERSON_COLUMNS}, {_MEMBERSHIP_COLUMNS}
        FROM persons p {_MEMBERSHIP_JOIN}
        WHERE {_IN_SERVICE_SQL} AND p.political_status IS NOT NULL AND (
              (p.political_status = '01' AND m.category = 'probationary')
           OR (p.political_status = '02' AND m.category = 'full')
           OR p.political_status NOT IN ('01', '02'))
    """), yes):
        found.append(_person_violation(
            "status_conflict", row, _membership_details(row),
            party_org_code=row.party_org_code, org_unit_code=row.org_unit_code,
        ))

    for row in conn.execute(text(f"""
        SELECT {_PERSON_COLUMNS}, {_MEMBERSHIP_COLUMNS}, p.party_joined_on
        FROM persons p {_MEMBERSHIP_JOIN}
        WHERE p.party_joined_on IS NOT NULL AND m.joined_on IS NOT NULL
          AND p.party_joined_on <> m.joined_on
    """), yes):
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
                  scope_prefixes: Iterable[str] | None = None) -> None:
        """Reconcile `rules`; with `scope_prefixes`, only subjects whose key starts with one of
        them may close (an incremental pull only speaks for what it saw)."""
        rules = list(rules)
        table = Mismatch.__table__
        live = {
            (r.rule, r.subject_key): r
            for r in self.conn.execute(
                select(table).where(table.c.rule.in_(rules), table.c.closed_at.is_(None))
            )
        }
        wanted = {(v.rule, v.subject_key): v for v in violations if v.rule in rules}
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

        for batch_start in range(0, len(new_rows), 1000):
            batch = new_rows[batch_start : batch_start + 1000]
            result = self.conn.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), batch)
            for row, (new_id,) in zip(batch, result):
                self._change(new_id, "create", {"rule": [None, row["rule"]], "state": [None, "open"],
                                                "subject": [None, row["subject_key"]]})
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
        for i in range(0, len(self._changes), 1000):
            self.conn.execute(insert(Change.__table__), self._changes[i : i + 1000])
        self._changes = []
        counts = self.conn.execute(
            text("SELECT rule, COUNT(*) FROM mismatches WHERE state = 'open' GROUP BY rule")
        ).all()
        self.result.by_rule = {rule: n for rule, n in counts}
        self.result.open = sum(self.result.by_rule.values())
        return self.result


def _refresh_statistics(session: Session) -> None:
    """PostgreSQL plans the rule queries from table statistics; after a bulk load they are
    stale (autovacuum has not run yet) and a 100k-person anti-join took 12 s instead of 50 ms.
    ANALYZE samples, costs a fraction of a second, and is transactional there. (MariaDB's
    ANALYZE TABLE would commit the run half-way, and InnoDB refreshes its statistics itself.)"""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            "ANALYZE persons, memberships, org_units, party_orgs, coverage, expected_branches"
        )


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
          pulled: Iterable[tuple[str, str, bool]]) -> AlignmentResult:
    """Refresh expected branches, detect every dual-line rule, reconcile the mismatches.

    `pulled` lists (source, kind, full) of this run: ambiguities of a (source, kind) close only
    when a full pull of it no longer finds them.
    """
    _serialize_alignment(session)
    refresh_expected_branches(session)
    _refresh_statistics(session)
    reconciler = Reconciler(session, run_id, actor)
    reconciler.reconcile(detect(session), DUAL_LINE_RULES)
    full_scopes = [f"record:{s}:{k}:" for s, k, full in pulled if full]
    reconciler.reconcile(ambiguity_violations(ambiguities), ["ambiguous_match"], scope_prefixes=full_scopes)
    return reconciler.finish()
