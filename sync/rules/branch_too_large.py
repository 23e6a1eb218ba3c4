"""`branch_too_large`: a branch generally has at most 50 members (支部工作条例 Art. 4).

Counted: full and probationary members with an active membership registered directly with the
branch. More than `max_members` (50 → 51 is the first finding) calls for splitting the branch or
forming a general branch; `org_kind_mismatch` says which kind the size calls for.
"""
from __future__ import annotations

from marshmallow import fields, validate

from sync.alignment import Violation
from sync.rules.base import Rule, RuleContext, ThresholdSchema
from sync.rules.sql import branch_counts


class BranchTooLarge(Rule):
    id = "branch_too_large"
    reference = "支部工作条例 Art. 4"
    summary = "a branch generally has at most 50 members → split or form a general branch"
    severity = "medium"

    class Thresholds(ThresholdSchema):
        max_members = fields.Integer(strict=True, load_default=50, validate=validate.Range(min=1))

    def detect(self, ctx: RuleContext) -> list[Violation]:
        maximum = ctx.thresholds["max_members"]
        rows = branch_counts(ctx, lambda c: c.members > maximum)
        return [
            self.org_violation(ctx, row, {"members": int(row.members), "full_members": int(row.full_members),
                                          "probationary_members": int(row.probationary_members)})
            for row in rows
        ]


RULE = BranchTooLarge()
