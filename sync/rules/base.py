"""What every standardization rule is made of, and the date arithmetic they share.

A rule is one module holding one `Rule` subclass: its id (reference/party-rules.md), the
regulation it enforces, a severity, a marshmallow schema of its thresholds (defaults from
party-rules.md) and a set-based `detect` that returns `sync.alignment.Violation`s. The engine
(sync.rules.engine) validates the thresholds, runs `detect` and reconciles the findings into the
same mismatches table as the dual-line rules.

Details must be *stable*: they feed `Violation.inputs_hash`, and an ignored or resolved finding
reopens when its inputs change. So details hold counts, thresholds, due dates and stages, never
"days overdue" or today's date, which would reopen every ignored finding every day.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, ClassVar

from marshmallow import RAISE, Schema, fields
from sqlalchemy import Connection

from sync.alignment import Violation

SEVERITIES = ("high", "medium", "low")  # the console's vocabulary; a "warning" is `low`
ORG_KINDS = ("committee", "general_branch", "branch", "group")
# An active membership as alignment counts it (sync/alignment.py `_ACTIVE_MEMBERSHIP_SQL`).
ACTIVE_MEMBERSHIP_SQL = "m.active = :yes AND m.status = 'active'"


class ThresholdSchema(Schema):
    """Base schema of a rule's thresholds: unknown keys are errors, every rule can be switched off."""

    class Meta:
        unknown = RAISE

    enabled = fields.Boolean(load_default=True)


@dataclass(frozen=True)
class RuleContext:
    """What `detect` gets: the run's connection, the evaluation date and the validated thresholds."""

    conn: Connection
    today: dt.date
    thresholds: dict[str, Any]
    # Results one evaluation's rules share (sync.rules.sql: the branches' member counts, which
    # three rules read), so each is queried once per evaluation.
    shared: dict[str, Any] = field(default_factory=dict, compare=False)

    def sql_params(self, **extra: Any) -> dict[str, Any]:
        return {"yes": True} | extra


class Rule:
    """One standardization rule. Subclasses set the class attributes and implement `detect`."""

    id: ClassVar[str]
    reference: ClassVar[str]  # the regulation, as reference/party-rules.md cites it
    summary: ClassVar[str]
    severity: ClassVar[str] = "medium"
    subject_type: ClassVar[str] = "party_org"
    Thresholds: ClassVar[type[ThresholdSchema]] = ThresholdSchema

    def detect(self, ctx: RuleContext) -> list[Violation]:
        raise NotImplementedError

    def severity_of(self, violation: Violation) -> str:
        """A rule with stages (reminder before the date, overdue after) grades them here."""
        return self.severity

    def defaults(self) -> dict[str, Any]:
        return self.Thresholds().load({})

    def base_details(self, ctx: RuleContext) -> dict[str, Any]:
        """What every finding carries: the regulation to cite and the thresholds it was judged by."""
        thresholds = {k: v for k, v in ctx.thresholds.items() if k != "enabled"}
        return {"regulation": self.reference, "thresholds": thresholds}

    def org_violation(self, ctx: RuleContext, row: Any, details: dict[str, Any]) -> Violation:
        """A finding about a party org (row has id, code, name, kind): scoped to that org so an
        officer of its subtree sees it."""
        return Violation(
            rule=self.id,
            subject_key=f"party_org:{row.code}",
            subject_type="party_org",
            subject_id=row.id,
            label=row.name,
            details=self.base_details(ctx) | {"party_org": {"code": row.code, "name": row.name, "kind": row.kind}}
            | details,
            party_org_code=row.code,
        )


# --- dates -----------------------------------------------------------------------------------


def add_years(day: dt.date, years: int) -> dt.date:
    """The same calendar day `years` later; 29 February becomes 1 March in common years (as the
    roster generator and most registers do: a full year has not passed on 28 February)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, month=3, day=1)


def last_start(end: dt.date, years: int) -> dt.date:
    """The latest start date whose `years`-anniversary falls on or before `end`.

    Lets SQL compare a stored date with one bound (`start <= :bound`) instead of doing calendar
    arithmetic per row, portably across SQLite, PostgreSQL and MariaDB; the anniversary is
    monotonic in the start date, so the set of starts is exactly the half-line below the bound.
    """
    try:
        start = end.replace(year=end.year - years)
    except ValueError:  # end is 29 February: the day before has the same anniversary or earlier
        start = end.replace(year=end.year - years, day=28)
    while add_years(start + dt.timedelta(days=1), years) <= end:
        start += dt.timedelta(days=1)
    return start


def iso(day: dt.date | str | None) -> str | None:
    """Dates in details as `YYYY-MM-DD` (SQLite hands back strings, the servers dates)."""
    if day is None:
        return None
    return day if isinstance(day, str) else day.isoformat()


def as_date(day: dt.date | str | None) -> dt.date | None:
    if day is None or isinstance(day, dt.date):
        return day
    return dt.date.fromisoformat(str(day)[:10])


def report_until(today: dt.date, window_days: int) -> dt.date:
    """The latest due date a staged rule reports: due dates up to `window_days` ahead (the
    reminder window, the due date itself included), or with no window only those already past."""
    return today + dt.timedelta(days=window_days) if window_days > 0 else today - dt.timedelta(days=1)
