"""`transfer_stale`: a transfer letter past its validity with no receipt (组织关系转接).

The letter (党员组织关系介绍信) is valid commonly ≤3 months, ≤6 across provinces, and the receiving
primary committee returns the receipt within a month (reference/party-rules.md "Membership
transfer"). A transfer (table `transfers`, written by the console's transfer resolution) is
stale when its `status` is still `issued`, it has no `received_on`, and today is *after* its
validity end: `valid_until` when recorded, otherwise `issued_on` + `validity_months` (default 3;
the same calendar day, or the month's last day when it has fewer days). `grace_days` (default 0)
waits that many more days for the receipt. The last valid day itself is not stale.
Subject: the member (one finding per transfer); scope: the issuing and the receiving org.
"""
from __future__ import annotations

import datetime as dt

from marshmallow import fields, validate

from sync.alignment import _PERSON_COLUMNS, Violation, _person_violation
from sync.rules.base import Rule, RuleContext, ThresholdSchema, as_date, iso
from sync.rules.sql import select_where

_OPEN_TRANSFERS = f"""
SELECT {_PERSON_COLUMNS}, t.id AS transfer_id, t.kind AS transfer_kind, t.letter_no,
       t.from_party_org_code, t.to_party_org_code, t.to_org_name, t.issued_on, t.valid_until
FROM transfers t JOIN persons p ON p.id = t.person_id
WHERE t.status = 'issued' AND t.received_on IS NULL AND t.issued_on IS NOT NULL
"""


def add_months(day: dt.date, months: int) -> dt.date:
    """The same day `months` later, or that month's last day when it is shorter (31 Jan + 1 → 28/29 Feb)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    for last in (31, 30, 29, 28):
        try:
            return dt.date(year, month + 1, min(day.day, last))
        except ValueError:
            continue
    raise AssertionError("unreachable")


class TransferStale(Rule):
    id = "transfer_stale"
    reference = "组织关系转接"  # validity commonly ≤3 months, ≤6 across provinces
    summary = "a transfer letter past its validity with no receipt"
    severity = "medium"
    subject_type = "person"

    class Thresholds(ThresholdSchema):
        validity_months = fields.Integer(strict=True, load_default=3, validate=validate.Range(min=1, max=24))
        grace_days = fields.Integer(strict=True, load_default=0, validate=validate.Range(min=0, max=366))

    def detect(self, ctx: RuleContext) -> list[Violation]:
        found = []
        for row in select_where(ctx, _OPEN_TRANSFERS, "1 = 1", order="c.transfer_id"):
            issued = as_date(row.issued_on)
            assert issued is not None  # filtered in SQL
            valid_until = as_date(row.valid_until) or add_months(issued, ctx.thresholds["validity_months"])
            if ctx.today <= valid_until + dt.timedelta(days=ctx.thresholds["grace_days"]):
                continue
            v = _person_violation(
                self.id, row,
                self.base_details(ctx) | {
                    "transfer": {"id": row.transfer_id, "kind": row.transfer_kind, "letter_no": row.letter_no,
                                 "from_party_org_code": row.from_party_org_code,
                                 "to_party_org_code": row.to_party_org_code, "to_org_name": row.to_org_name,
                                 "issued_on": iso(issued), "valid_until": iso(valid_until)},
                },
                party_org_code=row.from_party_org_code, other_party_org_code=row.to_party_org_code,
                org_unit_code=row.org_unit_code,
            )
            found.append(Violation(rule=v.rule, subject_key=f"{v.subject_key}|transfer:{row.transfer_id}",
                                   subject_type=v.subject_type, subject_id=v.subject_id, label=v.label,
                                   details=v.details, party_org_code=v.party_org_code,
                                   other_party_org_code=v.other_party_org_code, org_unit_code=v.org_unit_code))
        return found


RULE = TransferStale()
