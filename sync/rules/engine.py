"""The standardization rule engine: validate thresholds, detect findings, reconcile them.

Findings are `sync.alignment.Violation`s reconciled by the same `Reconciler` into the same
`mismatches` table as the dual-line rules, so they share the states (open / resolved / ignored /
closed), the resolution and audit, the change feed and the officers' one queue. What differs is
severity: a rule with stages grades each finding (`Rule.severity_of`), so a reminder that turns
overdue is raised from `low` to `medium` in place.

Config (`dualline.yaml`): `rules: {<rule id>: {<threshold>: value, enabled: bool}}`, plus the
reserved block `rules.settings`: `today: YYYY-MM-DD` pins the evaluation date (tests, demos,
re-evaluating as of a date), otherwise it is the local date when the rules run — for a sync, the
run's date; `after_sync: false` leaves evaluation to `dualline rules run` alone.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from records.models import Mismatch
from sync.alignment import AlignmentResult, Reconciler, Violation
from sync.config import Config, ConfigError, _flatten
from sync.rules.base import Rule, RuleContext
from sync.rules.registry import RULES

SETTINGS = "settings"  # reserved key in `rules:`; never a rule id


class SettingsSchema(Schema):
    class Meta:
        unknown = RAISE

    today = fields.Date(load_default=None, allow_none=True)
    # false: a sync leaves the findings alone; `dualline rules run` (e.g. scheduled nightly) evaluates
    after_sync = fields.Boolean(load_default=True)


@dataclass
class RuleOutcome:
    today: dt.date
    found: dict[str, int]  # rule id → findings detected now (disabled rules: absent)
    result: AlignmentResult


class RuleReconciler(Reconciler):
    """The alignment `Reconciler`, with each finding's severity from its rule."""

    def __init__(self, session: Session, run_id: int | None, actor: str, severities: dict[tuple[str, str], str]) -> None:
        super().__init__(session, run_id, actor)
        self.severities = severities

    def _new_row(self, v: Violation) -> dict[str, Any]:
        return super()._new_row(v) | {"severity": self.severities[(v.rule, v.subject_key)]}

    def reconcile(self, violations: list[Violation], rules: Iterable[str],
                  scope_prefixes: Iterable[str] | None = None) -> None:
        rules = list(rules)
        super().reconcile(violations, rules, scope_prefixes)
        table = Mismatch.__table__
        regrade = [
            (row.id, row.severity, self.severities[(row.rule, row.subject_key)])
            for row in self.conn.execute(
                select(table.c.id, table.c.rule, table.c.subject_key, table.c.severity)
                .where(table.c.rule.in_(rules), table.c.closed_at.is_(None)))
            if self.severities.get((row.rule, row.subject_key), row.severity) != row.severity
        ]
        if not regrade:
            return
        self.conn.execute(update(table).where(table.c.id == bindparam("b_id"))
                          .values(severity=bindparam("b_severity"), updated_at=self.now),
                          [{"b_id": i, "b_severity": new} for i, _, new in regrade])
        # The stage change that moved the severity already queued this mismatch's feed row: say it there.
        queued = {c["entity_id"]: c for c in self._changes if c["op"] == "update"}
        for mismatch_id, old, new in regrade:
            if mismatch_id in queued:
                queued[mismatch_id]["changed"]["severity"] = [old, new]
            else:
                self._change(mismatch_id, "update", {"severity": [old, new]})


@dataclass
class RuleSet:
    """The rules with their validated thresholds, as configured."""

    thresholds: dict[str, dict[str, Any]]
    today: dt.date | None = None
    after_sync: bool = True
    rules: dict[str, Rule] = field(default_factory=lambda: dict(RULES))

    @classmethod
    def from_config(cls, config: Config | Mapping[str, Any] | None) -> RuleSet:
        """Validate `rules:`; a bad block is a ConfigError naming `rules.<id>.<key>`."""
        if isinstance(config, Config):
            where, raw = str(config.path) if config.path else "config", config.rules
        else:
            where, raw = "config", dict(config or {})
        unknown = sorted(k for k in raw if k != SETTINGS and k not in RULES)
        if unknown:
            raise ConfigError(f"{where}: rules.{unknown[0]}: unknown rule (known: {', '.join(RULES)}, {SETTINGS})")
        settings = _load(SettingsSchema(), raw.get(SETTINGS), f"rules.{SETTINGS}", where)
        thresholds = {rid: _load(rule.Thresholds(), raw.get(rid), f"rules.{rid}", where) for rid, rule in RULES.items()}
        return cls(thresholds=thresholds, today=settings["today"], after_sync=settings["after_sync"])

    def evaluation_date(self, today: dt.date | None = None) -> dt.date:
        return today or self.today or dt.date.today()

    def detect(self, session: Session, today: dt.date | None = None) -> dict[str, list[Violation]]:
        """Findings per enabled rule, as of `today` (default: configured, else the local date)."""
        day = self.evaluation_date(today)
        conn = session.connection()
        shared: dict[str, Any] = {}
        return {
            rid: rule.detect(RuleContext(conn=conn, today=day, thresholds=self.thresholds[rid], shared=shared))
            for rid, rule in self.rules.items() if self.thresholds[rid]["enabled"]
        }

    def evaluate(self, session: Session, run_id: int | None, actor: str, *, today: dt.date | None = None,
                 merge_into: AlignmentResult | None = None) -> RuleOutcome:
        """Detect and reconcile every rule in `session`'s transaction (the caller commits).
        A disabled rule is reconciled with no findings, so its open ones close.
        With `merge_into` (the run's alignment result) the counts are added to it."""
        found = self.detect(session, today)
        violations = [v for vs in found.values() for v in vs]
        severities = {(v.rule, v.subject_key): self.rules[v.rule].severity_of(v) for v in violations}
        reconciler = RuleReconciler(session, run_id, actor, severities)
        reconciler.reconcile(violations, list(self.rules))
        result = reconciler.finish()  # counts every open mismatch, dual-line ones too
        if merge_into is not None:
            result.opened += merge_into.opened
            result.closed += merge_into.closed
            result.reopened += merge_into.reopened
        return RuleOutcome(today=self.evaluation_date(today), found={r: len(v) for r, v in found.items()}, result=result)


    def after_alignment(self, session: Session, run_id: int | None, actor: str,
                        alignment: AlignmentResult) -> AlignmentResult:
        """The sync's hook: the run's alignment result with the findings' counts added."""
        if not self.after_sync:
            return alignment
        return self.evaluate(session, run_id, actor, merge_into=alignment).result


def _load(schema: Schema, raw: Any, key: str, where: str) -> dict[str, Any]:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: {key}: must be a mapping of thresholds")
    try:
        return schema.load(dict(raw))
    except ValidationError as exc:
        raise ConfigError(f"{where}: " + "; ".join(_flatten(exc.messages, key))) from None
