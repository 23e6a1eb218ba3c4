"""Planning: stream a source's pages through its mapping and diff them against stored state.

For every record: compute its fingerprint and compare it with the fingerprint its source link
last saw, map it (a MappingError quarantines it) — that first half is sync.read_ahead's
Recogniser, which may run a page ahead in a child process. Unchanged records cost one dict
lookup. Changed and new records are placed (correlated) and become plan items. After a full
pull, the active links that were not seen become deactivations.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from connectors import Connector, SourceError
from mappings import Mapping, MappingContext
from records.crypto import FieldCipher
from records.models import Activity, DuesPayment, Membership, OrgUnit, PartyOrg, Payroll, Performance, SourceLink
from sync.config import SourceConfig
from sync.correlate import PersonIndex
from sync.fields import SENSITIVE_FIELDS, Fingerprinter
from sync.plan import Ambiguity, Item, NewRow, QuarantinedRecord, Ref, RunPlan, SourceKindStats
from sync.read_ahead import DUPLICATE, RECORD, UNCHANGED, Recogniser, recognised_pages

# Kinds whose records are placed on persons (sync.correlate) when no link places them.
_CORRELATED = {"staff", "party_members"}

# Fields every record of a kind must have to be placed at all (last line of defence; mappings
# normally catch these first, with the source's own column names).
REQUIRED = {
    "org_units": ("code", "name"),
    "party_orgs": ("code", "name", "kind"),
    "staff": ("employee_no", "name"),
    "party_members": ("name",),
    "performance": ("employee_no", "period"),
    "payroll": ("employee_no", "month"),
    "activities": ("activity_key",),
    "dues_payments": ("employee_no", "month"),
}

# Kinds whose records merge across sources by their business key: model and key columns.
NATURAL_KEYS: dict[str, tuple[Any, tuple[str, ...]]] = {
    "org_units": (OrgUnit, ("code",)),
    "party_orgs": (PartyOrg, ("code",)),
    "performance": (Performance, ("employee_no", "period")),
    "payroll": (Payroll, ("employee_no", "month")),
    "activities": (Activity, ("activity_key",)),
    "dues_payments": (DuesPayment, ("employee_no", "month")),
}

# Fields of a roster row that describe the person rather than the membership.
MEMBER_PERSON_FIELDS = ("name", "gender", "birth_date", "ethnicity", "education", "id_number", "mobile", "position")


def _activity_data(data: dict[str, Any]) -> dict[str, Any]:
    """An activity as the `activities` table stores it: the source's `id` becomes
    `activity_key` (`id` is the table's surrogate key). Types and dates are the mapping's job."""
    if "id" not in data:
        return data
    out = dict(data)
    out["activity_key"] = out.pop("id")
    return out


def _same(data: dict[str, Any]) -> dict[str, Any]:
    return data


class Link(NamedTuple):
    id: int
    entity_id: int
    fingerprint: str
    active: bool


ProgressFn = Callable[[str, str, int], None]


class _OrgNames:
    """Party org name → code: stored active orgs (loaded on first use) and those planned now."""

    __slots__ = ("names", "_session")

    def __init__(self, session: Session) -> None:
        self._session = session
        self.names: dict[str, str] | None = None

    def resolve(self, name: str) -> str | None:
        if self.names is None:
            rows = self._session.execute(
                select(PartyOrg.name, PartyOrg.code).where(PartyOrg.active.is_(True))
            )
            self.names = {name: code for name, code in rows}
        return self.names.get(name)


class _EitherOf:
    """`key in` either of two sets, without making their union."""

    __slots__ = ("first", "second")

    def __init__(self, first: set[str], second: set[str]) -> None:
        self.first, self.second = first, second

    def __contains__(self, key: object) -> bool:
        return key in self.first or key in self.second


class Planner:
    def __init__(
        self,
        session: Session,
        cipher: FieldCipher,
        plan: RunPlan,
        party_org_names: dict[str, str],
        row_builder: Callable[[str, str], Callable[[dict[str, Any]], NewRow] | None] | None = None,
    ) -> None:
        """`row_builder(kind, source)`: how a create's row is built ahead (sync.apply.Applier.row_builder)."""
        self.session = session
        self.row_builder = row_builder
        self.cipher = cipher
        self.plan = plan
        self.fingerprint = Fingerprinter(cipher)
        self.persons = PersonIndex(session)
        self._natural: dict[str, dict[Any, Ref]] = {}
        self._orgs = _OrgNames(session)
        self._unlinked: dict[int, int] | None = None  # person id → membership no source feeds
        # The context must not refer back to the planner (a bound method would): that cycle kept
        # the whole planner — its person index, a million small objects — alive until the
        # engine's final gc.collect(), which then spent over a second traversing it.
        self.context = MappingContext(
            resolve_party_org=self._orgs.resolve, party_org_names=dict(party_org_names)
        )

    # -- lookups ------------------------------------------------------------------------------

    @property
    def _org_names(self) -> dict[str, str] | None:
        return self._orgs.names

    def _resolve_party_org(self, name: str) -> str | None:
        return self._orgs.resolve(name)

    def _natural_keys(self, kind: str) -> dict[Any, Ref]:
        """Business key → entity, for kinds whose records merge by their key."""
        if kind not in self._natural:
            model, columns = NATURAL_KEYS[kind]
            rows = self.session.execute(select(model.id, *(getattr(model, c) for c in columns)))
            if len(columns) == 1:
                self._natural[kind] = {key: Ref(eid) for eid, key in rows}
            else:
                self._natural[kind] = {tuple(key): Ref(eid) for eid, *key in rows}
        return self._natural[kind]

    def _links(self, source: str, kind: str, external_ids: list[str]) -> dict[str, Link]:
        """The source's links of `kind` for `external_ids` (that have one)."""
        query = select(
            SourceLink.external_id,
            SourceLink.id,
            SourceLink.entity_id,
            SourceLink.fingerprint,
            SourceLink.active,
        ).where(SourceLink.source == source, SourceLink.kind == kind)
        out: dict[str, Link] = {}
        for i in range(0, len(external_ids), 1000):
            rows = self.session.connection().execute(query.where(SourceLink.external_id.in_(external_ids[i:i + 1000])))
            out.update({ext: Link(lid, eid, fp, bool(active)) for ext, lid, eid, fp, active in rows})
        return out

    def _link_keys(self, source: str, kind: str) -> tuple[dict[str, str], set[str], set[str]]:
        """A full pull's view of the source's links of `kind`: fingerprint → key of the active
        ones, the keys of the active ones and the keys of the inactive ones. Keys and
        fingerprints only: with a row object per link (its ids, fingerprint and state) as
        well, a no-op re-sync of a million staff peaked at 671 MB instead of 534."""
        by_fingerprint: dict[str, str] = {}
        active: set[str] = set()
        inactive: set[str] = set()
        # Core, not the ORM's column loading: a million staff links in 1.9 s instead of 2.4.
        rows = self.session.connection().execute(
            select(SourceLink.external_id, SourceLink.fingerprint, SourceLink.active)
            .where(SourceLink.source == source, SourceLink.kind == kind)
        )
        for ext, fp, is_active in rows:
            if is_active:
                by_fingerprint[fp] = ext
                active.add(ext)
            else:
                inactive.add(ext)
        return by_fingerprint, active, inactive

    # -- one pull -----------------------------------------------------------------------------

    def plan_pull(
        self,
        source: SourceConfig,
        connector: Connector,
        mapping: Mapping,
        kind: str,
        since: str | None,
        progress: ProgressFn | None = None,
    ) -> SourceKindStats:
        full = since is None
        stats = SourceKindStats(source=source.name, kind=kind, full=full)
        self.plan.stats.append(stats)
        # A full pull recognises unchanged records by the fingerprints of the source's active
        # links, and deactivates the active links no record claimed; it holds their keys only
        # (`_link_keys`) and reads a link's row when a record changed or at the end. An
        # incremental pull looks up the links of the records it got, page by page.
        if full:
            by_fingerprint, unseen, inactive = self._link_keys(source.name, kind)
        else:
            by_fingerprint, unseen, inactive = {}, set(), set()
        stats.active_before = len(unseen)
        # Unchanged records are recognised by the fingerprint of their RAW form, before mapping:
        # a no-op re-sync costs a hash and a dict lookup per record. Recognising (fingerprint,
        # mapping, keys) may run a page ahead in a child process (sync.read_ahead); planning and
        # writing happen here, in the run's transaction.
        recogniser = Recogniser(
            kind=kind, mapping=mapping, context=self.context, salt=self._salt(mapping, kind),
            fingerprint=self.fingerprint.raw, by_fingerprint=by_fingerprint,
            required=REQUIRED.get(kind, ()), prepare=_activity_data if kind == "activities" else _same,
            stored_key=self._stored_key, best_effort_key=lambda raw: self._best_effort_key(mapping, kind, raw),
            # Rows are built ahead for a full pull's records that no link knows (creates, as
            # a rule); an incremental pull's records are mostly updates of linked ones.
            build_row=self.row_builder(kind, source.name) if full and self.row_builder else None,
            linked=_EitherOf(unseen, inactive),
        )
        # Each record takes its key out of `unseen` as it comes, so what is left at the end is
        # what the source no longer sends. The recogniser keeps its own `seen` for duplicates,
        # in whichever process recognises.
        protected, plan = recogniser.protected, self.plan
        try:
            for outcomes, read, cursor in recognised_pages(connector, kind, since, recogniser):
                stats.read += read
                # The links of the page's mapped records; a full pull knows which have one.
                keys = [o[1] for o in outcomes if o[0] == RECORD]
                if full:
                    keys = [ext for ext in keys if ext in unseen or ext in inactive]
                links = self._links(source.name, kind, keys) if keys else {}
                if kind in _CORRELATED and self.persons.wants_keys:
                    self.persons.prepare(self._correlation_keys(outcomes, links))
                for outcome in outcomes:
                    what, ext = outcome[0], outcome[1]
                    if what == UNCHANGED:
                        unseen.discard(ext)
                        plan.count(kind, "unchanged")
                    elif what == RECORD:
                        unseen.discard(ext)
                        _, _, data, key_field, fp, new_row = outcome
                        link = links.get(ext)
                        if link is not None and link.active and link.fingerprint == fp:
                            plan.count(kind, "unchanged")
                        else:
                            self._plan_record(source.name, kind, ext, data, key_field, link, fp, new_row)
                    else:
                        _, key, raw, field, reason = outcome
                        if key and reason != DUPLICATE:
                            protected.add(key)
                        self._quarantine(source.name, kind, key, raw, field, reason)
                if cursor is not None:
                    stats.cursor = cursor
                plan.flush()
                if progress:
                    progress(source.name, kind, stats.read)
        except SourceError as exc:
            stats.error = str(exc.message)
            stats.error_class = exc.error_class
            return stats
        plan.flush(force=True)
        gone = sorted(ext for ext in unseen if ext not in protected)
        found = self._links(source.name, kind, gone) if gone else {}
        for ext in gone:
            link = found.get(ext)
            if link is not None and link.active:
                stats.deactivate += 1
                plan.add(Item("deactivate", kind, source.name, ext, Ref(link.entity_id), ext, link_id=link.id))
        return stats

    def _correlation_keys(self, outcomes: list[Any], links: dict[str, Link]) -> Iterator[tuple[Any, ...]]:
        """(employee number, ID-number hash, name if matched by name only) of a page's records
        that no link places: those the person index must be ready to place (`_plan_record`)."""
        for outcome in outcomes:
            if outcome[0] != RECORD or outcome[1] in links:
                continue
            _, _, data, key_field, _, new_row = outcome
            id_hash = new_row[2] if new_row is not None else None
            if id_hash is None:
                id_hash = self.cipher.keyed_hash(data.get("id_number") or None)
            yield data.get("employee_no"), id_hash, data.get("name") if key_field == "name" else None

    def _salt(self, mapping: Mapping, kind: str) -> bytes:
        """What besides the raw record decides its mapped form: the mapping, and the context
        (party org names) when the mapping looks things up in it."""
        parts = [mapping.name, getattr(mapping, "version", ""), kind]
        if mapping.uses_context(kind):
            self._resolve_party_org("")
            parts.append(repr(sorted((self._org_names or {}).items())))
            parts.append(repr(sorted(self.context.party_org_names.items())))
        return "\x1f".join(parts).encode("utf-8")

    def _stored_key(self, external_id: str, key_field: str | None) -> str:
        """Keys made of sensitive values (an ID number) are stored as their keyed hash."""
        if key_field in SENSITIVE_FIELDS:
            return "h:" + (self.cipher.keyed_hash(external_id) or "")
        return str(external_id)

    def _best_effort_key(self, mapping: Mapping, kind: str, raw: dict[str, Any]) -> str | None:
        """The key of a record that failed to map, so that quarantining it never deactivates it."""
        key_of = getattr(mapping, "key_of", None)
        if key_of is None:
            return None
        try:
            found = key_of(kind, raw)
        except Exception:  # noqa: BLE001 - a broken record may break key extraction too
            return None
        if not found:
            return None
        value, key_field = found
        return self._stored_key(value, key_field)

    def _quarantine(
        self, source: str, kind: str, key: str | None, raw: dict[str, Any], field: str | None, reason: str
    ) -> None:
        row = raw.get("_row") if isinstance(raw, dict) else None
        self.plan.quarantined.append(
            QuarantinedRecord(source, kind, key, None if row is None else str(row), field, reason, raw)
        )
        self.plan.count(kind, "quarantined")

    # -- placing a new or changed record ------------------------------------------------------

    def _plan_record(
        self,
        source: str,
        kind: str,
        ext: str,
        data: dict[str, Any],
        key_field: str | None,
        link: Link | None,
        fp: str,
        new_row: NewRow | None = None,
    ) -> None:
        """Place a new or changed record. `new_row`: the row a create would insert, built ahead."""
        label = str(data.get("name") or data.get("code") or ext)
        link_id = link.id if link else None
        if link is not None:
            # Known record, changed (or back after a deactivation): update what it feeds.
            item = Item("update", kind, source, ext, Ref(link.entity_id), label, data, fp, link_id)
            if kind == "party_members":
                item.person_data = {f: data[f] for f in MEMBER_PERSON_FIELDS if f in data}
            self.plan.add(item)
            if kind == "party_orgs":
                self._learn_org_name(data)
            return
        if kind in NATURAL_KEYS:
            natural = self._natural_keys(kind)
            columns = NATURAL_KEYS[kind][1]
            key = data[columns[0]] if len(columns) == 1 else tuple(data[c] for c in columns)
            ref = natural.get(key)
            is_new = ref is None
            if is_new:
                ref = natural[key] = Ref()
            if kind == "party_orgs":
                self._learn_org_name(data)
            self.plan.add(
                Item("create" if is_new else "update", kind, source, ext, ref, label, data, fp,
                     entity_is_new=is_new, new_row=new_row if is_new else None)
            )
            return
        id_hash = new_row[2] if new_row is not None else None  # hashed where the row was built
        if id_hash is None:
            id_hash = self.cipher.keyed_hash(data.get("id_number") or None)
        if kind == "staff":
            placement = self.persons.place_staff(source, ext, data, id_hash)
        else:
            placement = self.persons.place_member(source, ext, data, id_hash, weak_key=key_field == "name")
        if placement.ambiguous:
            self.plan.ambiguities.append(
                Ambiguity(
                    source, kind, ext, label,
                    record={k: v for k, v in data.items() if k not in SENSITIVE_FIELDS},
                    candidates=[c.ref.id for c in placement.candidates],
                    reason=placement.reason,
                )
            )
            self.plan.count(kind, "ambiguous")
            return
        person = placement.person
        assert person is not None
        if kind == "staff":
            self.plan.add(
                Item("create" if placement.is_new else "update", kind, source, ext, person.ref, label,
                     data, fp, entity_is_new=placement.is_new, id_hash=id_hash,
                     new_row=new_row if placement.is_new else None)
            )
        else:
            # A membership a person created in the console (no source feeds it) is the one this
            # roster row describes: the row takes it over instead of adding a second one.
            adopted = None if placement.is_new or person.ref.id is None else self._unlinked_membership(person.ref.id)
            self.plan.add(
                Item("create", kind, source, ext, Ref(adopted), label, data, fp, person=person.ref,
                     person_data={f: data[f] for f in MEMBER_PERSON_FIELDS if f in data}
                     | ({"employee_no": data["employee_no"]} if data.get("employee_no") else {}),
                     creates_person=placement.is_new, person_has_staff=bool(person.staff_sources),
                     entity_is_new=adopted is None, id_hash=id_hash,
                     new_row=new_row if adopted is None else None)
            )

    def _unlinked_membership(self, person_id: int) -> int | None:
        """An active membership of the person that no source feeds (made in the console), taken
        at most once; all of them are loaded with one query on first use."""
        if self._unlinked is None:
            fed = exists().where(SourceLink.kind == "party_members", SourceLink.entity_id == Membership.id,
                                 SourceLink.active.is_(True))
            rows = self.session.execute(
                select(Membership.person_id, Membership.id).where(
                    Membership.active.is_(True), Membership.status == "active", ~fed)
                .order_by(Membership.id.desc())
            )
            self._unlinked = dict(rows.all())
        return self._unlinked.pop(person_id, None)

    def _learn_org_name(self, data: dict[str, Any]) -> None:
        self._resolve_party_org("")  # make sure stored names are loaded first
        assert self._org_names is not None
        self._org_names[data["name"]] = data["code"]
