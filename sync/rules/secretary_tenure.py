"""`secretary_tenure`: a branch secretary generally has ≥1 year of full membership (支部工作条例 Art. 23).

The branch's `secretary` is a name; it is matched (trimmed, exactly) to the persons holding an
active membership *in that branch*. Findings, by `details.stage`:
  * `not_a_member` (medium) — nobody of that name is an active member of the branch;
  * `not_full_member` (medium) — only probationary members of that name;
  * `short_tenure` (low) — a full member, but less than `min_years` since `full_member_on`.
Exactly `min_years` on the anniversary of `full_member_on` is enough (29 February → 1 March).
When `full_member_on` is unknown, full membership is counted from `joined_on` plus the one-year
probation (党章 Art. 7); when both are unknown the tenure is not judged. If several members
share the name, one with enough tenure is enough (the benefit of the doubt: a name is weak).
Branches without a secretary are not judged here.
"""
from __future__ import annotations

from marshmallow import fields, validate

from sync.alignment import Violation
from sync.rules.base import ACTIVE_MEMBERSHIP_SQL, Rule, RuleContext, ThresholdSchema, iso, last_start
from sync.rules.sql import select_where

# Only persons named like some branch's secretary are joined to their memberships: about half
# the roster at a million staff (names repeat), where joining every active membership to its
# person read the person table at random 400 000 times (1.7 s against 0.6 s on SQLite).
_SECRETARIES = f"""
WITH named (name) AS (
    SELECT TRIM(secretary) FROM party_orgs
    WHERE active = :yes AND kind = 'branch' AND secretary IS NOT NULL AND TRIM(secretary) <> ''
),
candidates (id, name) AS (
    SELECT p.id, TRIM(p.name) FROM persons p WHERE TRIM(p.name) IN (SELECT name FROM named)
)
SELECT o.id, o.code, o.name, o.kind, o.secretary,
       COUNT(s.person_id) AS matches,
       SUM(CASE WHEN s.category = 'full' THEN 1 ELSE 0 END) AS full_matches,
       SUM(CASE WHEN s.category = 'full' AND (s.full_member_on <= :full_by
                OR (s.full_member_on IS NULL AND (s.joined_on IS NULL OR s.joined_on <= :joined_by)))
           THEN 1 ELSE 0 END) AS tenured,
       MAX(CASE WHEN s.category = 'full' THEN s.full_member_on END) AS full_member_on
FROM party_orgs o
LEFT JOIN (SELECT m.party_org_code, m.person_id, m.category, m.full_member_on, m.joined_on, c.name
           FROM candidates c JOIN memberships m ON m.person_id = c.id
           WHERE {ACTIVE_MEMBERSHIP_SQL}) s
       ON s.party_org_code = o.code AND s.name = TRIM(o.secretary)
WHERE o.active = :yes AND o.kind = 'branch' AND o.secretary IS NOT NULL AND TRIM(o.secretary) <> ''
GROUP BY o.id, o.code, o.name, o.kind, o.secretary
"""


class SecretaryTenure(Rule):
    id = "secretary_tenure"
    reference = "支部工作条例 Art. 23"
    summary = "a branch secretary generally has ≥1 year of full membership"
    severity = "medium"

    class Thresholds(ThresholdSchema):
        min_years = fields.Integer(strict=True, load_default=1, validate=validate.Range(min=0, max=50))

    def detect(self, ctx: RuleContext) -> list[Violation]:
        full_by = last_start(ctx.today, ctx.thresholds["min_years"])  # full since then → enough
        joined_by = last_start(full_by, 1)  # admitted by then → full (after probation) by full_by
        rows = select_where(ctx, _SECRETARIES, "c.tenured = 0", dates=("full_by", "joined_by"),
                            full_by=full_by, joined_by=joined_by)
        found = []
        for row in rows:
            stage = ("not_a_member" if not row.matches
                     else "not_full_member" if not row.full_matches else "short_tenure")
            found.append(self.org_violation(ctx, row, {
                "stage": stage, "secretary": row.secretary.strip(),
                "full_member_on": iso(row.full_member_on) if stage == "short_tenure" else None,
            }))
        return found

    def severity_of(self, violation: Violation) -> str:
        return "low" if violation.details.get("stage") == "short_tenure" else self.severity


RULE = SecretaryTenure()
