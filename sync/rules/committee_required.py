"""`committee_required`: 7 or more full members → a branch committee (支部工作条例 Art. 20).

A branch with at least `min_full_members` full members (active memberships, registered directly)
whose `has_committee` is false or unknown (null) is a finding: it should elect a committee of
3–5 (at most 7) members. Below that a secretary alone is the norm; a committee there is not
flagged (approvals differ in practice).
"""
from __future__ import annotations

from marshmallow import fields, validate

from sync.alignment import Violation
from sync.rules.base import Rule, RuleContext, ThresholdSchema
from sync.rules.sql import branch_counts


class CommitteeRequired(Rule):
    id = "committee_required"
    reference = "支部工作条例 Art. 20"
    summary = "7 or more full members → a branch committee (3–5 members, ≤7); fewer → a secretary"
    severity = "medium"

    class Thresholds(ThresholdSchema):
        min_full_members = fields.Integer(strict=True, load_default=7, validate=validate.Range(min=1))

    def detect(self, ctx: RuleContext) -> list[Violation]:
        minimum = ctx.thresholds["min_full_members"]
        rows = branch_counts(ctx, lambda c: c.full_members >= minimum and not c.has_committee)
        return [
            self.org_violation(ctx, row, {"full_members": int(row.full_members),
                                          "has_committee": None if row.has_committee is None else bool(row.has_committee)})
            for row in rows
        ]


RULE = CommitteeRequired()
