"""`probation_overdue`: probation ended without the branch's decision (党章 Art. 7).

Probation is one year from the admitting branch meeting (`memberships.joined_on` of a
probationary member); at its end the branch converts, extends once (6–12 months) or cancels.
The due date is the anniversary `joined_on + probation_years` (29 February → 1 March), the day
the conversion takes effect, so a decision taken on that day is in time. With `today` the
evaluation date, for each active probationary membership (subject: the person):
  * stage `overdue` (medium) — today is *after* the due date: day 366 or later of a common year
    (admitted 2022-05-10 → due 2023-05-10 → overdue from 2023-05-11);
  * stage `reminder` (low) — the due date is within `reminder_days` (default 30) from today,
    the due date itself (day 365) included; `reminder_days: 0` turns reminders off.
When the roster shows the member as full (converted), the finding closes by itself. One rule id
with `details.stage`: an ignored reminder reopens as overdue when the date passes.
"""
from __future__ import annotations

from marshmallow import fields, validate

from sync.alignment import _PERSON_COLUMNS, Violation, _person_violation
from sync.rules.base import (
    ACTIVE_MEMBERSHIP_SQL,
    Rule,
    RuleContext,
    ThresholdSchema,
    add_years,
    as_date,
    iso,
    last_start,
    report_until,
)
from sync.rules.sql import select_where

_PROBATIONARY = f"""
SELECT {_PERSON_COLUMNS}, m.id AS membership_id, m.party_org_code,
       o.name AS party_org_name, m.joined_on
FROM memberships m
JOIN persons p ON p.id = m.person_id
LEFT JOIN party_orgs o ON o.code = m.party_org_code
WHERE {ACTIVE_MEMBERSHIP_SQL} AND m.category = 'probationary' AND m.joined_on IS NOT NULL
"""


class ProbationOverdue(Rule):
    id = "probation_overdue"
    reference = "党章 Art. 7"
    summary = ("probation is 1 year from the admitting branch meeting; then convert, extend once by "
               "6–12 months, or cancel")
    severity = "medium"
    subject_type = "person"

    class Thresholds(ThresholdSchema):
        probation_years = fields.Integer(strict=True, load_default=1, validate=validate.Range(min=1, max=5))
        reminder_days = fields.Integer(strict=True, load_default=30, validate=validate.Range(min=0, max=366))

    def detect(self, ctx: RuleContext) -> list[Violation]:
        years = ctx.thresholds["probation_years"]
        bound = last_start(report_until(ctx.today, ctx.thresholds["reminder_days"]), years)
        rows = select_where(ctx, _PROBATIONARY, "c.joined_on <= :bound", dates=("bound",),
                            order="c.id, c.membership_id", bound=bound)
        found = []
        for row in rows:
            joined = as_date(row.joined_on)
            assert joined is not None  # filtered in SQL
            due = add_years(joined, years)
            found.append(_person_violation(
                self.id, row,
                self.base_details(ctx) | {
                    "stage": "overdue" if due < ctx.today else "reminder",
                    "membership": {"id": row.membership_id, "party_org_code": row.party_org_code,
                                   "party_org_name": row.party_org_name, "category": "probationary",
                                   "joined_on": iso(joined)},
                    "due_on": iso(due),
                },
                party_org_code=row.party_org_code, org_unit_code=row.org_unit_code,
            ))
        return found

    def severity_of(self, violation: Violation) -> str:
        return "low" if violation.details.get("stage") == "reminder" else self.severity


RULE = ProbationOverdue()
