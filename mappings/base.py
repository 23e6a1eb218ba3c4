"""The mapping interface the sync engine relies on.

`Mapping.map(kind, raw, ctx)` returns a `MappedRecord` (the source's key for the record and the
canonical fields) or raises `MappingError` naming the field and the reason; the engine
quarantines the raw record with that reason and the run goes on.

Canonical values (DESIGN.md): dates are ISO strings ``YYYY-MM-DD``; codes are the national codes
as strings (gender "1", ethnicity "01", education "20", political_status "01"); enumerations are
the lower-case English words of DESIGN.md; `covers` is a list of org unit codes; numbers are
int/float; booleans are bool. Fields a source does not provide are absent from `data` (not None),
so that a source never blanks a field it does not own; a field the source provides but leaves
empty is present with value None.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class MappingError(Exception):
    """A raw record cannot be mapped. The record is quarantined with this reason.

    `field` is the canonical field; `source_field` the source's own column it came from (set by
    spec mappings), which is what the text shows: users know their export's columns.
    """

    def __init__(
        self,
        reason: str,
        field: str | None = None,
        value: Any = None,
        source_field: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field
        self.value = value
        self.source_field = source_field

    def __str__(self) -> str:
        where = self.source_field or self.field
        return f"{where}: {self.reason}" if where else self.reason


class MappingSpecError(Exception):
    """A mapping spec is invalid. The message names the spec file and the key path."""


@dataclass
class MappingContext:
    """What a mapping may ask of the world outside the record.

    `resolve_party_org(name)` returns the code of the party org with exactly that name (or None);
    the engine supplies it from stored party orgs and those planned in the same run.
    `party_org_names` is an optional configured name → code map that wins over the lookup.
    """

    resolve_party_org: Callable[[str], str | None] = lambda name: None
    party_org_names: dict[str, str] = field(default_factory=dict)


@dataclass
class MappedRecord:
    """A canonical record and the source's own key for it.

    `external_id` identifies the record within (source, kind) across runs; `key_field` names the
    canonical field it came from (the engine stores a keyed hash instead of the value when that
    field is sensitive, e.g. id_number).
    """

    external_id: str
    data: dict[str, Any]
    key_field: str | None = None


class Mapping:
    """A loaded mapping: one spec, several kinds."""

    name: str = ""
    # Changes whenever the mapping's behaviour does; part of every record fingerprint.
    version: str = ""

    def kinds(self) -> set[str]:
        raise NotImplementedError

    def uses_context(self, kind: str) -> bool:
        """Whether mapping `kind` depends on MappingContext (then the engine salts fingerprints
        with the context, so a renamed party org re-maps the rows that name it)."""
        return True

    def key_of(self, kind: str, raw: dict[str, Any]) -> tuple[str, str] | None:
        """Best-effort (key value, key field) of a raw record that may not map; None if unknown."""
        return None

    def map(self, kind: str, raw: dict[str, Any], ctx: MappingContext) -> MappedRecord:
        raise NotImplementedError
