"""`dues_underpaid`: a member paid less than the expected dues for a month (2008 dues regulation).

Expected amounts come from sync/dues.py (after-tax pay brackets, retirees' pension brackets,
0.2 yuan for students, the unemployed and members on subsistence allowance); the rates are this
rule's thresholds (`brackets`, `retiree_brackets`, `special_monthly`), so `rules.dues_underpaid`
in dualline.yaml changes them without code. Judged are the last `months` (default 12) completed
calendar months; a month counts as underpaid when a payment is recorded for it and its amount is
below the expected amount (a month with no payment at all is `dues_overdue`'s business, a month
whose pay is unknown is not judged). One finding per member (subject: the person) listing the
underpaid months with base, rate, expected and paid: stable until a payment or the pay changes.
Until any payment is stored (`only_if_tracked`, default true) nothing is judged.
"""
from __future__ import annotations

from collections import defaultdict

from marshmallow import fields, validate

from sync.alignment import Violation, _person_violation
from sync.dues import (
    REGULATION, DuesPolicy, DuesRatesSchema, MemberMonth, completed_months, member_months, tracked,
)
from sync.rules.base import Rule, RuleContext, ThresholdSchema


class DuesUnderpaid(Rule):
    id = "dues_underpaid"
    reference = REGULATION
    summary = ("monthly dues by after-tax pay: ≤3000 0.5 %, ≤5000 1 %, ≤10000 1.5 %, above 2 %; "
               "retirees ≤5000 0.5 %, above 1 %; students, unemployed, subsistence 0.2 yuan")
    severity = "medium"
    subject_type = "person"

    class Thresholds(ThresholdSchema, DuesRatesSchema):
        months = fields.Integer(strict=True, load_default=12, validate=validate.Range(min=1, max=60))
        only_if_tracked = fields.Boolean(load_default=True)

    def detect(self, ctx: RuleContext) -> list[Violation]:
        if ctx.thresholds["only_if_tracked"] and not tracked(ctx.conn):
            return []
        policy = DuesPolicy.from_thresholds(ctx.thresholds)
        rows = member_months(ctx.conn, completed_months(ctx.today, ctx.thresholds["months"]), policy)
        found = []
        for _, all_months in sorted(per_person(rows).items()):
            months = [r for r in all_months if r.underpaid]
            if not months:
                continue
            first = months[0]
            found.append(_person_violation(
                self.id, _PersonRow(first),
                self.base_details(ctx) | {
                    "membership": {"id": first.membership_id, "party_org_code": first.party_org_code,
                                   "category": first.category, "dues_category": first.dues_category},
                    "months": [{"month": r.month, "basis": r.basis,
                                "base": None if r.base is None else str(r.base),
                                "rate": None if r.rate is None else str(r.rate),
                                "expected": str(r.expected), "paid": str(r.paid)} for r in months],
                    "shortfall": str(sum(r.expected - r.paid for r in months)),  # type: ignore[operator]
                },
                party_org_code=first.party_org_code, org_unit_code=first.org_unit_code,
            ))
        return found


def per_person(rows: list[MemberMonth]) -> dict[int, list[MemberMonth]]:
    """Each person's months in order, once each: a person with two active memberships (bad data,
    which alignment reports) owes one due per month and gets one finding (the first membership's)."""
    out: dict[int, list[MemberMonth]] = defaultdict(list)
    seen: set[tuple[int, str]] = set()
    for r in rows:
        if (r.person_id, r.month) not in seen:
            seen.add((r.person_id, r.month))
            out[r.person_id].append(r)
    return out


class _PersonRow:
    """A MemberMonth under the column names alignment's person findings read."""

    def __init__(self, r: MemberMonth) -> None:
        self.id, self.name, self.employee_no = r.person_id, r.name, r.employee_no
        self.id_number_masked, self.org_unit_code = r.id_number_masked, r.org_unit_code
        self.employment_status, self.political_status = r.employment_status, r.political_status


RULE = DuesUnderpaid()
