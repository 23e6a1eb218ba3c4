"""`branch_too_small`: a branch needs at least 3 full members (党章 Art. 30; 支部工作条例 Art. 4).

Counted: full members with an active membership registered directly with the branch;
probationary members do not count (they cannot vote or form the branch). A branch with
fewer than `min_full_members` is a finding: the remedy is a joint branch (联合支部, ≤5 units).
"""
from __future__ import annotations

from marshmallow import fields, validate

from sync.alignment import Violation
from sync.rules.base import Rule, RuleContext, ThresholdSchema
from sync.rules.sql import branch_counts


class BranchTooSmall(Rule):
    id = "branch_too_small"
    reference = "党章 Art. 30; 支部工作条例 Art. 4"
    summary = "a branch needs at least 3 full members; fewer → joint branch (联合支部, ≤5 units)"
    severity = "medium"

    class Thresholds(ThresholdSchema):
        min_full_members = fields.Integer(strict=True, load_default=3, validate=validate.Range(min=1))

    def detect(self, ctx: RuleContext) -> list[Violation]:
        minimum = ctx.thresholds["min_full_members"]
        rows = branch_counts(ctx, lambda c: c.full_members < minimum)
        return [
            self.org_violation(ctx, row, {"full_members": int(row.full_members),
                                          "probationary_members": int(row.probationary_members)})
            for row in rows
        ]


RULE = BranchTooSmall()
