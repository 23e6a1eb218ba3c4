"""Correlation: which person is this record about?

Strong keys first — the source link (handled by the planner), then the employee number, then the
keyed hash of the ID number. A record with neither is matched only by weak keys (name and birth
date), and any weak candidate needs a human. Whenever more than one person could be meant, the
answer is an ambiguity, never a guess.

The index holds the stored persons that the records needing correlation could be about, loaded
page by page (`PersonIndex.prepare`; a no-op re-sync loads none), and grows with the persons
planned in the same run, so that a roster row can find a person the staff pull is about to
create. A first load holds all of its million persons, so the index is kept compact: a key maps to one
person, or to a list only when several share it; the sources a person is linked from are a tuple
(a set costs 216 bytes even when empty), one shared by every person linked from the same
sources (a tuple each: 78 MB at a million staff); repeated names and birth dates are interned.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from collections.abc import Iterable
from typing import Any, Union

from sqlalchemy import select
from sqlalchemy.orm import Session

from records.models import Membership, Person, SourceLink
from sync.plan import Ref


class PersonFacts(Ref):
    """What correlation knows of one person. It is itself the person's `Ref` (the id its insert
    assigns, shared by every plan item about the person): with a Ref of its own, an index of a
    million staff took 381 MB instead of 335."""

    __slots__ = ("name", "employee_no", "birth_date", "id_hash", "staff_sources", "member_sources")

    def __init__(self, id: int | None, name: str | None, employee_no: str | None, birth_date: str | None,
                 id_hash: str | None) -> None:
        self.id = id
        self.name = name
        self.employee_no = employee_no
        self.birth_date = birth_date
        self.id_hash = id_hash
        # Sources with an active staff / roster record of this person: to see two records of
        # one source claim one person.
        self.staff_sources: tuple[str, ...] = ()
        self.member_sources: tuple[str, ...] = ()

    @property
    def ref(self) -> Ref:
        return self

    def __repr__(self) -> str:
        return f"PersonFacts({self.id}, {self.name!r})"


@dataclass
class Placement:
    """Where a record goes: an existing or new person, or nowhere (ambiguous, with why)."""

    person: PersonFacts | None
    is_new: bool = False
    candidates: list[PersonFacts] = field(default_factory=list)
    reason: str = ""

    @property
    def ambiguous(self) -> bool:
        return self.person is None


# One person, or the list of persons sharing a key (rare: a duplicated ID number, a common name).
_Entry = Union[PersonFacts, list[PersonFacts]]


def _add(index: dict[str, _Entry], key: str, facts: PersonFacts) -> None:
    found = index.get(key)
    if found is None:
        index[key] = facts
    elif isinstance(found, list):
        found.append(facts)
    else:
        index[key] = [found, facts]


def _all(index: dict[str, _Entry], key: str) -> list[PersonFacts] | tuple[PersonFacts, ...]:
    found = index.get(key)
    if found is None:
        return ()
    return found if isinstance(found, list) else (found,)


def _text(value: Any) -> Any:
    """The interned string (one copy of each repeated name or date); anything else as it is."""
    return sys.intern(value) if value and value.__class__ is str else value


class PersonIndex:
    """The persons records may be about, by employee number, ID-number hash and name.

    A first load (no person stored yet) holds the persons it plans and nothing else. Otherwise
    `prepare` loads, before a page's records are placed, the stored persons those records could
    be about — those with one of their employee numbers or ID-number hashes, or for a record
    with neither one of their names — rather than every stored person: an incremental run with
    a new hire at a million persons read them all (~10 s, 335 MB) to place one record."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._stored: bool | None = None  # whether the database held any person; None: not asked yet
        self._asked: dict[str, set[str]] = {"employee_no": set(), "id_number_hash": set(), "name": set()}
        self.by_id: dict[int, PersonFacts] = {}
        self.by_emp: dict[str, PersonFacts] = {}
        self.by_idh: dict[str, _Entry] = {}
        self.by_name: dict[str, _Entry] = {}
        self._source_tuples: dict[tuple[str, ...], dict[str, tuple[str, ...]]] = {}

    # -- loading ------------------------------------------------------------------------------

    @property
    def wants_keys(self) -> bool:
        """Whether `prepare` may load anything (not in a first load)."""
        return self._stored is not False

    def prepare(self, keys: Iterable[tuple[str | None, str | None, str | None]]) -> None:
        """Load the stored persons that records with these (employee number, ID-number hash,
        name) could be about; the name is given for records matched by name only. Each value
        is looked up once per run."""
        if self._stored is None:
            self._stored = self._session.connection().execute(select(Person.id).limit(1)).first() is not None
        if not self._stored:
            return
        wanted: dict[str, set[str]] = {column: set() for column in self._asked}
        for emp, id_hash, name in keys:
            for column, value in (("employee_no", emp), ("id_number_hash", id_hash), ("name", name)):
                if value and value not in self._asked[column]:
                    wanted[column].add(value)
        for column, values in wanted.items():
            if values:
                self._asked[column] |= values
                self._load(getattr(Person, column), sorted(values))

    def _load(self, column: Any, values: list[str]) -> None:
        # Core, not the ORM's column loading; IN lists of 500 (SQLite allows 32 766 variables).
        conn = self._session.connection()
        for i in range(0, len(values), 500):
            rows = conn.execute(
                select(Person.id, Person.name, Person.employee_no, Person.birth_date, Person.id_number_hash)
                .where(column.in_(values[i:i + 500]))
            )
            loaded = []
            for pid, name, emp, birth, idh in rows:
                if pid in self.by_id or self._planned(pid, emp, idh, name):
                    continue  # known already: what this run learnt about it stands
                self._register(PersonFacts(pid, _text(name), emp, _text(birth.isoformat()) if birth else None, idh))
                loaded.append(pid)
            if loaded:
                self._load_sources(loaded)

    def _planned(self, pid: int, emp: str | None, idh: str | None, name: str | None) -> bool:
        """Whether the stored person `pid` is one this run planned (and has written since): it
        is in the index under each of its stored keys, with the id its insert assigned."""
        for facts in (*_all(self.by_emp, emp or ""), *_all(self.by_idh, idh or ""), *_all(self.by_name, name or "")):
            if facts.id == pid:
                self.by_id[pid] = facts
                return True
        return False

    def _load_sources(self, person_ids: list[int]) -> None:
        """The sources with an active staff record or roster row of each of these persons (IN
        lists of 500: a common name can stand for thousands of stored persons)."""
        conn = self._session.connection()
        for i in range(0, len(person_ids), 500):
            chunk = person_ids[i:i + 500]
            links = conn.execute(
                select(SourceLink.entity_id, SourceLink.source).where(
                    SourceLink.kind == "staff", SourceLink.active.is_(True), SourceLink.entity_id.in_(chunk)
                )
            )
            for pid, source in links:
                facts = self.by_id[pid]
                if source not in facts.staff_sources:
                    facts.staff_sources = self._plus(facts.staff_sources, source)
            members = conn.execute(
                select(Membership.person_id, SourceLink.source)
                .join(SourceLink, (SourceLink.entity_id == Membership.id) & (SourceLink.kind == "party_members"))
                .where(SourceLink.active.is_(True), Membership.active.is_(True), Membership.person_id.in_(chunk))
            )
            for pid, source in members:
                facts = self.by_id[pid]
                if source not in facts.member_sources:
                    facts.member_sources = self._plus(facts.member_sources, source)

    def _register(self, facts: PersonFacts) -> None:
        if facts.id is not None:
            self.by_id[facts.id] = facts
        if facts.employee_no:
            self.by_emp[facts.employee_no] = facts
        if facts.id_hash:
            _add(self.by_idh, facts.id_hash, facts)
        if facts.name:
            _add(self.by_name, facts.name, facts)

    def _plus(self, sources: tuple[str, ...], source: str) -> tuple[str, ...]:
        """`sources` and `source`, as the one tuple every person with those sources shares."""
        by_source = self._source_tuples.get(sources)
        if by_source is None:
            by_source = self._source_tuples[sources] = {}
        found = by_source.get(source)
        if found is None:
            found = by_source[source] = (*sources, sys.intern(source))
        return found

    def _learn(self, facts: PersonFacts, employee_no: str | None, id_hash: str | None) -> None:
        """A matched record taught us more keys for this person."""
        if employee_no and not facts.employee_no:
            facts.employee_no = employee_no
            self.by_emp[employee_no] = facts
        if id_hash and not facts.id_hash:
            facts.id_hash = id_hash
            _add(self.by_idh, id_hash, facts)

    # -- matching -----------------------------------------------------------------------------

    def _strong_candidates(self, employee_no: str | None, id_hash: str | None) -> list[PersonFacts]:
        found: list[PersonFacts] = []
        if employee_no and employee_no in self.by_emp:
            found.append(self.by_emp[employee_no])
        if id_hash:
            for facts in _all(self.by_idh, id_hash):
                if facts not in found:
                    found.append(facts)
        return found

    def _new(self, name: str | None, employee_no: str | None, birth: str | None, id_hash: str | None) -> PersonFacts:
        facts = PersonFacts(None, _text(name), employee_no, _text(birth), id_hash)
        self._register(facts)
        return facts

    def place_staff(self, source: str, external_id: str, data: dict, id_hash: str | None) -> Placement:
        """Which person a staff record is about (`prepare` first)."""
        emp = data.get("employee_no")
        found = self._strong_candidates(emp, id_hash)
        if not found:
            facts = self._new(data.get("name"), emp, data.get("birth_date"), id_hash)
            facts.staff_sources = self._plus((), source)
            return Placement(facts, is_new=True)
        if len(found) > 1:
            return Placement(None, candidates=found, reason="employee number and ID number point to different persons")
        facts = found[0]
        if source in facts.staff_sources:
            return Placement(None, candidates=found, reason="another record of this source is already this person (same ID number)")
        if emp and facts.employee_no and facts.employee_no != emp:
            return Placement(None, candidates=found, reason="same ID number as a person with another employee number")
        self._learn(facts, emp, id_hash)
        facts.staff_sources = self._plus(facts.staff_sources, source)
        return Placement(facts)

    def place_member(
        self, source: str, external_id: str, data: dict, id_hash: str | None, weak_key: bool
    ) -> Placement:
        """Which person a roster row is about (`prepare` first)."""
        name, birth, emp = data.get("name"), data.get("birth_date"), data.get("employee_no")
        if weak_key:
            found = [
                f
                for f in _all(self.by_name, name or "")
                if not birth or not f.birth_date or f.birth_date == birth
            ]
            if found:
                return Placement(
                    None, candidates=found, reason="no ID number or employee number; matched by name only"
                )
            facts = self._new(name, None, birth, None)
            facts.member_sources = self._plus((), source)
            return Placement(facts, is_new=True)
        found = self._strong_candidates(emp, id_hash)
        if len(found) > 1:
            return Placement(None, candidates=found, reason="employee number and ID number point to different persons")
        if not found:
            facts = self._new(name, emp, birth, id_hash)
            facts.member_sources = self._plus((), source)
            return Placement(facts, is_new=True)
        facts = found[0]
        if source in facts.member_sources:
            return Placement(None, candidates=found, reason="another row of this roster is already this person")
        self._learn(facts, emp, id_hash)
        facts.member_sources = self._plus(facts.member_sources, source)
        return Placement(facts)
