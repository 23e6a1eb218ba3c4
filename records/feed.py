"""The change feed: reading it through a visibility window (stamping `seq` at commit is
records.stamping's).

Stamping: records.stamping.

Reading: `feed_condition(window, s)` says which rows a token (or a webhook) may see: by entity and
through the same subtree rules as the API's lists (web.api.security.Viewer is such a window;
`SubtreeWindow` is the same rules for callers outside a request). `feed_item` is the one shape of
an item, with sensitive values masked.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Select, exists, or_, select, true
from sqlalchemy.orm import Session

from records.crypto import mask_id_number, mask_mobile
from records.models import Activity, Change, Membership, Mismatch, PartyOrg, Payroll, Performance, Person
from records.queries import covered_unit_codes, subtree_codes


# Entities the feed carries (the API documents them, webhooks may choose among them).
FEED_ENTITIES = ("person", "org_unit", "party_org", "membership", "performance", "payroll", "activity", "mismatch")
# Pay is sensitive: only windows with read:sensitive see payroll changes.
SENSITIVE_ENTITIES = frozenset({"payroll"})


# --- reading -----------------------------------------------------------------------------------


class FeedWindow(Protocol):
    """What a reader of the feed may see (web.api.security.Viewer and SubtreeWindow are ones)."""

    @property
    def sensitive(self) -> bool: ...

    @property
    def limited(self) -> bool: ...

    def subtree(self, s: Session) -> list[str]: ...

    def visible_person_ids(self, s: Session) -> Select[Any]: ...

    def memberships_filter(self, s: Session) -> ColumnElement[bool]: ...

    def mismatches_filter(self, s: Session) -> ColumnElement[bool]: ...


def feed_condition(window: FeedWindow, s: Session, entities: Iterable[str] | None = None) -> ColumnElement[bool]:
    """Which change rows `window` may see (optionally only these entities); stamped rows only."""
    wanted = [e for e in (entities or FEED_ENTITIES)
              if e in FEED_ENTITIES and (e not in SENSITIVE_ENTITIES or window.sensitive)]
    condition = Change.seq.is_not(None) & Change.entity.in_(wanted)
    if not window.limited:
        return condition
    persons = window.visible_person_ids(s)
    return condition & or_(
        Change.entity == "org_unit",
        (Change.entity == "person") & Change.entity_id.in_(persons),
        (Change.entity == "membership") & Change.entity_id.in_(
            select(Membership.id).where(window.memberships_filter(s))),
        (Change.entity == "party_org") & Change.entity_id.in_(
            select(PartyOrg.id).where(PartyOrg.code.in_(window.subtree(s)))),
        (Change.entity == "mismatch") & Change.entity_id.in_(
            select(Mismatch.id).where(window.mismatches_filter(s))),
        (Change.entity == "performance") & Change.entity_id.in_(
            select(Performance.id).where(Performance.person_id.in_(persons))),
        (Change.entity == "payroll") & Change.entity_id.in_(
            select(Payroll.id).where(Payroll.person_id.in_(persons))),
        (Change.entity == "activity") & Change.entity_id.in_(
            select(Activity.id).where(Activity.party_org_code.in_(window.subtree(s)))),
    )


_MASKS = {"id_number": mask_id_number, "mobile": mask_mobile}


def masked_changed(changed: dict[str, Any] | None) -> dict[str, Any]:
    """The feed stores sensitive values masked already; masking again guards against any writer
    that ever forgets (masking a masked value changes nothing)."""
    out = {}
    for name, pair in (changed or {}).items():
        mask = _MASKS.get(name)
        if mask is not None and isinstance(pair, list):
            pair = [mask(v) if isinstance(v, str) else v for v in pair]
        out[name] = pair
    return out


def feed_item(change: Change) -> dict[str, Any]:
    """One item of the feed, as `/api/v1/changes` and webhooks send it (`at` still a datetime)."""
    return {"seq": change.seq, "entity": change.entity, "entity_id": change.entity_id, "op": change.op,
            "changed": masked_changed(change.changed), "run_id": change.run_id, "at": change.at}


def read_feed(s: Session, window: FeedWindow, after: int, limit: int, entities: Iterable[str] | None = None,
              through: int | None = None) -> list[Change]:
    """Stamped changes after `after` (and up to `through`) that `window` sees, in `seq` order."""
    query = select(Change).where(Change.seq > after, feed_condition(window, s, entities))
    if through is not None:
        query = query.where(Change.seq <= through)
    return list(s.scalars(query.order_by(Change.seq).limit(limit)))


def last_stamped_seq(s: Session) -> int:
    return s.scalar(select(Change.seq).where(Change.seq.is_not(None)).order_by(Change.seq.desc()).limit(1)) or 0


# --- a window outside a request (webhooks) ---------------------------------------------------


class SubtreeRules:
    """The visibility rules of a party-org subtree, or everything when `party_org_code` is None:
    the API's tokens (web.api.security.Viewer) and webhooks (SubtreeWindow) share them. A class
    using it provides `party_org_code`, `_subtree` and `_covered` (caches, None at first)."""

    party_org_code: str | None
    _subtree: list[str] | None
    _covered: list[str] | None

    @property
    def limited(self) -> bool:
        return self.party_org_code is not None

    def subtree(self, s: Session) -> list[str]:
        """Codes of the party orgs visible here (only meaningful when `limited`)."""
        if self._subtree is None:
            self._subtree = subtree_codes(s, self.party_org_code or "")
        return self._subtree

    def covered_units(self, s: Session) -> list[str]:
        if self._covered is None:
            self._covered = covered_unit_codes(s, self.subtree(s))
        return self._covered

    # -- visibility conditions (SQL), `true()` when not limited ---------------------------------

    def persons_filter(self, s: Session) -> ColumnElement[bool]:
        if not self.limited:
            return true()
        registered = exists().where(Membership.person_id == Person.id,
                                    Membership.party_org_code.in_(self.subtree(s)))
        return or_(registered, Person.org_unit_code.in_(self.covered_units(s)))

    def visible_person_ids(self, s: Session) -> Select[Any]:
        return select(Person.id).where(self.persons_filter(s))

    def memberships_filter(self, s: Session) -> ColumnElement[bool]:
        return true() if not self.limited else Membership.party_org_code.in_(self.subtree(s))

    def mismatches_filter(self, s: Session) -> ColumnElement[bool]:
        if not self.limited:
            return true()
        codes = self.subtree(s)
        return or_(Mismatch.party_org_code.in_(codes), Mismatch.other_party_org_code.in_(codes))


@dataclass
class SubtreeWindow(SubtreeRules):
    """A feed window outside a request (webhooks): a subtree's rules, never sensitive."""

    party_org_code: str | None
    sensitive: bool = False
    _subtree: list[str] | None = field(default=None, repr=False)
    _covered: list[str] | None = field(default=None, repr=False)
