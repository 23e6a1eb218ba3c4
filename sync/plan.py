"""The plan of a run: what would be created, updated, moved and deactivated, kind by kind.

Planning writes nothing. The guard reads the plan; apply executes it; `--dry-run` prints it.
Entities are referred to by `Ref`s: an existing row's id, or a row this run will create (its id
is filled in when it is inserted), so that a roster row can point at a person created by the
staff pull of the same run.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Order in which kinds are planned and applied: what later kinds refer to comes first.
KIND_ORDER = ("org_units", "party_orgs", "staff", "party_members", "performance", "payroll", "activities",
              "dues_payments")


# Item.id_hash when the planner did not hash the record's ID number (None is a valid hash: none).
NOT_HASHED: Any = object()


class Ref:
    """A reference to a unified record: `id` is None until a planned create is inserted."""

    __slots__ = ("id",)

    def __init__(self, id: int | None = None) -> None:
        self.id = id

    def __repr__(self) -> str:
        return f"Ref({self.id})"


# A record's row as a create would insert it, built ahead (sync.apply.Applier.row_builder):
# (values, created, id_hash) — its values in the kind's insert order without the ids the run
# assigns (on PostgreSQL already as their line of COPY data: records.bulk.ahead_converter), its
# change-feed entry serialised, and the keyed hash of its ID number (for correlation). A plain
# tuple rather than a NamedTuple: the read-ahead child pickles one per record of a first load,
# and a NamedTuple pickles by way of its class (a page of staff took 3.0 ms to pickle and 2.4 ms
# to load that way, 2.2 and 2.0 ms as plain tuples).
NewRow = tuple[Any, Any, Any]


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
    # The person already has an HR record: a roster row can only fill what HR left empty.
    person_has_staff: bool = False
    entity_is_new: bool = False  # create: a new unified record (else: a new link to an existing one)
    id_hash: Any = NOT_HASHED  # keyed hash of data["id_number"], when the planner computed it
    new_row: NewRow | None = None  # create of a new record: its row, built ahead


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


class RunPlan:
    """The plan of a run, streamed: creates and updates flow to `sink` in batches as they are
    planned (into the run's still-uncommitted transaction), deactivations wait for the guard.

    Only what the guard and the report need is kept: counts, a few labels per kind and op,
    the deactivations, ambiguities and quarantined records. Memory stays flat in the source size.
    """

    SAMPLE = 20

    def __init__(self, sink: Callable[[str, list[Item]], None] | None = None, batch_size: int = 2000) -> None:
        self.sink = sink
        self.batch_size = batch_size
        self.pending: list[Item] = []
        self.deactivations: dict[str, list[Item]] = defaultdict(list)
        self.counts: dict[str, Counter[str]] = defaultdict(Counter)
        self.totals: Counter[tuple[str, str]] = Counter()
        self.samples: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
        self.stats: list[SourceKindStats] = []
        self.ambiguities: list[Ambiguity] = []
        self.quarantined: list[QuarantinedRecord] = []

    def add(self, item: Item) -> None:
        self.counts[item.kind][_OUTCOME[item.op]] += 1
        key = (item.kind, item.op)
        self.totals[key] += 1
        if len(self.samples[key]) < self.SAMPLE:
            self.samples[key].append({"source": item.source, "label": item.label})
        if item.op == "deactivate":
            self.deactivations[item.kind].append(item)
        else:
            self.pending.append(item)

    def flush(self, force: bool = False) -> None:
        """Hand pending creates/updates to the sink (all of one kind: a pull is one kind)."""
        if self.pending and (force or len(self.pending) >= self.batch_size):
            batch, self.pending = self.pending, []
            if self.sink is not None:
                self.sink(batch[0].kind, batch)

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

    def describe(self) -> list[dict[str, Any]]:
        """A readable, JSON-safe preview: per kind and op, the total and the first few labels."""
        return [
            {"kind": kind, "op": op, "total": self.totals[(kind, op)], "sample": self.samples[(kind, op)]}
            for kind in KIND_ORDER
            for op in ("create", "update", "deactivate")
            if self.totals[(kind, op)]
        ]


_OUTCOME = {"create": "created", "update": "updated", "deactivate": "deactivated"}
