"""The plan of a run: what would be created, updated, moved and deactivated, kind by kind.

Planning writes nothing. The guard reads the plan; apply executes it; `--dry-run` prints it.
Entities are referred to by `Ref`s: an existing row's id, or a row this run will create (its id
is filled in when it is inserted), so that a roster row can point at a person created by the
staff pull of the same run.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

# Order in which kinds are planned and applied: what later kinds refer to comes first.
KIND_ORDER = ("org_units", "party_orgs", "staff", "party_members", "performance")


class Ref:
    """A reference to a unified record: `id` is None until a planned create is inserted."""

    __slots__ = ("id",)

    def __init__(self, id: int | None = None) -> None:
        self.id = id

    def __repr__(self) -> str:
        return f"Ref({self.id})"


@dataclass(slots=True)
class Item:
    """One planned operation on one source record."""

    op: str  # create | update | deactivate
    kind: str
    source: str
    external_id: str
    ref: Ref
    label: str
    data: dict[str, Any] | None = None
    fingerprint: str | None = None
    link_id: int | None = None  # existing source link to update; None → a new link
    # party_members: the person the membership belongs to, and whether it is created here
    person: Ref | None = None
    person_data: dict[str, Any] | None = None
    creates_person: bool = False
    entity_is_new: bool = False  # create: a new unified record (else: a new link to an existing one)


@dataclass
class Ambiguity:
    """A record that could be more than one person: never merged by guess."""

    source: str
    kind: str
    external_id: str
    label: str
    record: dict[str, Any]
    candidates: list[int | None]
    reason: str


@dataclass
class QuarantinedRecord:
    source: str
    kind: str
    external_id: str | None
    row: str | None
    field: str | None
    reason: str
    raw: dict[str, Any]


@dataclass
class SourceKindStats:
    """What one source's pull of one kind amounted to (the guard reasons on these)."""

    source: str
    kind: str
    full: bool
    read: int = 0
    active_before: int = 0
    deactivate: int = 0
    cursor: str | None = None
    error: str | None = None
    error_class: str | None = None


@dataclass
class RunPlan:
    items: dict[str, list[Item]] = field(default_factory=lambda: defaultdict(list))
    counts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    stats: list[SourceKindStats] = field(default_factory=list)
    ambiguities: list[Ambiguity] = field(default_factory=list)
    quarantined: list[QuarantinedRecord] = field(default_factory=list)

    def add(self, item: Item) -> None:
        self.items[item.kind].append(item)
        bucket = {"create": "created", "update": "updated", "deactivate": "deactivated"}[item.op]
        self.counts[item.kind][bucket] += 1

    def count(self, kind: str, outcome: str, n: int = 1) -> None:
        self.counts[kind][outcome] += n

    def summary_counts(self) -> dict[str, dict[str, int]]:
        outcomes = ("created", "updated", "deactivated", "unchanged", "quarantined", "ambiguous")
        return {
            kind: {o: int(self.counts[kind][o]) for o in outcomes}
            for kind in KIND_ORDER
            if kind in self.counts
        }

    @property
    def failed(self) -> list[SourceKindStats]:
        return [s for s in self.stats if s.error]

    def describe(self, limit: int = 20) -> list[dict[str, Any]]:
        """A readable, JSON-safe preview of the plan: per kind and op, the first `limit` items."""
        out = []
        for kind in KIND_ORDER:
            for op in ("create", "update", "deactivate"):
                items = [i for i in self.items.get(kind, []) if i.op == op]
                if not items:
                    continue
                out.append(
                    {
                        "kind": kind,
                        "op": op,
                        "total": len(items),
                        "sample": [
                            {"source": i.source, "label": i.label} for i in items[:limit]
                        ],
                    }
                )
        return out

