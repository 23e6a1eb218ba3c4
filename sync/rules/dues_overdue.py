"""`dues_overdue`: dues unpaid for `months` (default 6) consecutive months or more (党章 Art. 9).

Back payment is generally limited to 6 months (reference/party-rules.md "Dues"), and six months
without paying, without good reason, is treated as self-withdrawal (党章 Art. 9). A month is
unpaid when no payment (or a zero amount) is recorded for it; only completed calendar months in
the last `lookback_months` (default 12), and only months from the member's `joined_on` on, are
looked at. A member whose longest run of consecutive unpaid months reaches `months` is a finding
(subject: the person); a shorter run is still inside the back-payment window. Details hold the
run (first and last unpaid month, its length): stable until a payment fills a gap.
Until any payment is stored (`only_if_tracked`, default true) nothing is judged.
"""
from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from sync.alignment import Violation, _person_violation
from sync.dues import DuesPolicy, completed_months, member_months, month_index, tracked
from sync.rules.base import Rule, RuleContext, ThresholdSchema
from sync.rules.dues_underpaid import _PersonRow, per_person


class DuesOverdue(Rule):
    id = "dues_overdue"
    reference = "党章 Art. 9; 关于中国共产党党费收缴、使用和管理的规定"
    summary = "6 months or more unpaid (back payment is limited to 6 months; 党章 Art. 9)"
    severity = "high"
    subject_type = "person"

    class Thresholds(ThresholdSchema):
        months = fields.Integer(strict=True, load_default=6, validate=validate.Range(min=1, max=60))
        lookback_months = fields.Integer(strict=True, load_default=12, validate=validate.Range(min=1, max=120))
        only_if_tracked = fields.Boolean(load_default=True)

        @validates_schema
        def _window(self, data: dict[str, Any], **_: Any) -> None:
            if data.get("months", 6) > data.get("lookback_months", 12):
                raise ValidationError("must not exceed lookback_months", "months")

    def detect(self, ctx: RuleContext) -> list[Violation]:
        if ctx.thresholds["only_if_tracked"] and not tracked(ctx.conn):
            return []
        need = ctx.thresholds["months"]
        # Whether a month is paid does not depend on the rates: the default policy will do.
        rows = member_months(ctx.conn, completed_months(ctx.today, ctx.thresholds["lookback_months"]),
                             DuesPolicy.from_thresholds())
        by_member = per_person(rows)
        found = []
        for _, months in sorted(by_member.items()):
            best: tuple[int, str, str] | None = None
            run_start = None
            previous = None
            length = 0
            for r in months:  # in month order
                if r.unpaid:
                    if previous is not None and month_index(r.month) == month_index(previous) + 1 and length:
                        length += 1
                    else:
                        run_start, length = r.month, 1
                    if best is None or length > best[0]:
                        best = (length, run_start, r.month)
                else:
                    length = 0
                previous = r.month
            if best is None or best[0] < need:
                continue
            first = months[0]
            found.append(_person_violation(
                self.id, _PersonRow(first),
                self.base_details(ctx) | {
                    "membership": {"id": first.membership_id, "party_org_code": first.party_org_code,
                                   "category": first.category, "dues_category": first.dues_category},
                    "unpaid_months": best[0], "first_unpaid": best[1], "last_unpaid": best[2],
                },
                party_org_code=first.party_org_code, org_unit_code=first.org_unit_code,
            ))
        return found


RULE = DuesOverdue()
