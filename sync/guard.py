"""The guard against mass deactivation.

A source that suddenly returns nothing, or far less than before, is held, not believed: a run
that would deactivate more than `max_deactivate_ratio` of a source's records of one kind, or more
than `max_deactivate` records of one kind, applies nothing until a person approves it.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sync.plan import RunPlan


@dataclass
class GuardDecision:
    held: bool
    reasons: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"held": self.held, "reasons": self.reasons}


def check(plan: RunPlan, max_deactivate_ratio: float, max_deactivate: int) -> GuardDecision:
    reasons: list[str] = []
    per_kind: dict[str, int] = defaultdict(int)
    for stats in plan.stats:
        if not stats.deactivate:
            continue
        per_kind[stats.kind] += stats.deactivate
        ratio = stats.deactivate / stats.active_before if stats.active_before else 1.0
        if ratio > max_deactivate_ratio:
            reasons.append(
                f"{stats.source}/{stats.kind}: would deactivate {stats.deactivate} of "
                f"{stats.active_before} records ({ratio:.0%} > {max_deactivate_ratio:.0%}); "
                f"the source returned {stats.read}"
            )
    for kind, count in per_kind.items():
        if count > max_deactivate:
            reasons.append(f"{kind}: would deactivate {count} records (> {max_deactivate})")
    return GuardDecision(held=bool(reasons), reasons=reasons)
