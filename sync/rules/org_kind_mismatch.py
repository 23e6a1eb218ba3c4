"""`org_kind_mismatch`: the org's kind should fit the members of its subtree (国有企业基层组织工作条例 Art. 4).

Members are counted over the org and every active org below it (full and probationary, active
memberships). The size calls for a kind: fewer than `general_branch_from` (50) → branch;
`general_branch_from`..`committee_from - 1` (50–99) → general branch; `committee_from` (100) or
more → primary committee. A finding when the org's kind is *smaller* than the size calls for
(a branch of 50+, a general branch of 100+). A kind larger than needed is allowed by the
regulation with the higher org's approval, so it is reported only with `report_larger_kind`.
Severity `low` (a warning): approvals can override.
"""
from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from sync.alignment import Violation
from sync.rules.base import Rule, RuleContext, ThresholdSchema
from sync.rules.sql import org_subtree_counts

RANK = {"branch": 0, "general_branch": 1, "committee": 2}


class OrgKindMismatch(Rule):
    id = "org_kind_mismatch"
    reference = "国有企业基层组织工作条例 Art. 4"
    summary = "50–100 members → general branch (党总支); 100 or more → primary committee (基层党委)"
    severity = "low"

    class Thresholds(ThresholdSchema):
        general_branch_from = fields.Integer(strict=True, load_default=50, validate=validate.Range(min=1))
        committee_from = fields.Integer(strict=True, load_default=100, validate=validate.Range(min=1))
        report_larger_kind = fields.Boolean(load_default=False)

        @validates_schema
        def _ordered(self, data: dict[str, Any], **_: Any) -> None:
            if data["committee_from"] <= data["general_branch_from"]:
                raise ValidationError("must be greater than general_branch_from", "committee_from")

    def detect(self, ctx: RuleContext) -> list[Violation]:
        t = ctx.thresholds

        def expected(members: int) -> str:
            return ("committee" if members >= t["committee_from"]
                    else "general_branch" if members >= t["general_branch_from"] else "branch")

        def misfit(row: Any) -> bool:
            actual, wanted = RANK[row.kind], RANK[expected(row.members)]
            return actual != wanted if t["report_larger_kind"] else actual < wanted

        return [
            self.org_violation(ctx, row, {"subtree_members": row.members, "expected_kind": expected(row.members)})
            for row in org_subtree_counts(ctx, tuple(RANK), misfit)
        ]


RULE = OrgKindMismatch()
