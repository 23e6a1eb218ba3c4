"""`term_expired`: a committee's term has run out (党章 Art. 31: 3–5 years; current practice).

The term is the org's own `term_years`, else the default by kind (primary committee 5 years,
general branch and branch 3). It ends on the anniversary `elected_on + term` (29 February → 1
March): the new election is due *on* that date. So, with `today` the evaluation date:
  * stage `expired`  (severity medium) — today is after the anniversary;
  * stage `expiring` (severity low, a reminder) — the anniversary is within `warning_days`
    (default 90) from today, the anniversary itself included; `warning_days: 0` turns it off.
One rule id with `details.stage` rather than a second id: the reminder and the overdue finding
are one subject's one problem, so when the date passes the ignored reminder *reopens* as
expired (its inputs changed) instead of a second item appearing beside it. An org without
`elected_on` is not judged (nothing to count from); groups (党小组) are not elected bodies here.
"""
from __future__ import annotations

from typing import Any

from marshmallow import fields, validate

from sync.alignment import Violation
from sync.rules.base import Rule, RuleContext, ThresholdSchema, add_years, as_date, iso, last_start, report_until
from sync.rules.sql import select_where

KINDS = ("committee", "general_branch", "branch")
MAX_TERM = 50  # a stored term longer than this is bad data, not a term: not judged

_ORGS = """
SELECT o.id, o.code, o.name, o.kind, o.elected_on, o.term_years,
       COALESCE(o.term_years, CASE o.kind WHEN 'committee' THEN :y_committee
                                          WHEN 'general_branch' THEN :y_general_branch
                                          ELSE :y_branch END) AS years
FROM party_orgs o
WHERE o.active = :yes AND o.kind IN :kinds AND o.elected_on IS NOT NULL
"""


def _years(default: int) -> Any:
    return fields.Integer(strict=True, load_default=default, validate=validate.Range(min=1, max=MAX_TERM))


class TermExpired(Rule):
    id = "term_expired"
    reference = "党章 Art. 31"
    summary = ("committee term: primary committee 5 years, general branch and branch 3 years; "
               "extension ≤1 year")
    severity = "medium"

    class Thresholds(ThresholdSchema):
        committee_years = _years(5)
        general_branch_years = _years(3)
        branch_years = _years(3)
        warning_days = fields.Integer(strict=True, load_default=90, validate=validate.Range(min=0, max=3660))

    def detect(self, ctx: RuleContext) -> list[Violation]:
        t = ctx.thresholds
        defaults = {k: t[f"{k}_years"] for k in KINDS}
        stored = {y for (y,) in ctx.conn.exec_driver_sql(
            "SELECT DISTINCT term_years FROM party_orgs WHERE term_years IS NOT NULL")}
        years = sorted(y for y in stored | set(defaults.values()) if 0 <= y <= MAX_TERM)
        # The last reminder day: an anniversary up to this day is found (expired or expiring).
        until = report_until(ctx.today, t["warning_days"])
        bounds = {f"b{y}": last_start(until, y) for y in years}
        case = "CASE c.years " + " ".join(f"WHEN {y} THEN :b{y}" for y in years) + " END"
        rows = select_where(ctx, _ORGS, f"c.elected_on <= ({case})", dates=tuple(bounds), kinds=list(KINDS),
                            **{f"y_{k}": v for k, v in defaults.items()}, **bounds)
        found = []
        for row in rows:
            elected = as_date(row.elected_on)
            assert elected is not None  # filtered in SQL
            expires = add_years(elected, int(row.years))
            found.append(self.org_violation(ctx, row, {
                "stage": "expired" if expires < ctx.today else "expiring",
                "elected_on": iso(elected), "term_years": int(row.years),
                "term_years_from": "org" if row.term_years is not None else "default",
                "expires_on": iso(expires),
            }))
        return found

    def severity_of(self, violation: Violation) -> str:
        return "low" if violation.details.get("stage") == "expiring" else self.severity


RULE = TermExpired()
