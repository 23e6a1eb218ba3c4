"""Every standardization rule, by id. A new rule is a new module plus one line here."""
from __future__ import annotations

from sync.rules import (
    branch_too_large,
    branch_too_small,
    committee_required,
    dues_overdue,
    dues_underpaid,
    meetings_missing,
    org_kind_mismatch,
    probation_overdue,
    secretary_tenure,
    term_expired,
    transfer_stale,
)
from sync.rules.base import Rule

RULES: dict[str, Rule] = {
    module.RULE.id: module.RULE
    for module in (
        branch_too_small,
        branch_too_large,
        committee_required,
        org_kind_mismatch,
        term_expired,
        secretary_tenure,
        probation_overdue,
        meetings_missing,
        dues_underpaid,
        dues_overdue,
        transfer_stale,
    )
}
