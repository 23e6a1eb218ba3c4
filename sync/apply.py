"""Apply: execute a run's plan against the unified records, inside the caller's transaction.

Writes are batched (ids allocated up front and one DBAPI executemany INSERT per batch, see
records.bulk; one executemany UPDATE per set of changed columns), every applied change leaves a before/after row in `changes` with the run id and actor,
and nothing is ever deleted: deactivation flips `active` and keeps the history.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Table, bindparam, delete, or_, select, update
from sqlalchemy.orm import Session

from records.bulk import BulkInserter, allocate_ids
from records.compact import created_entry
from records.crypto import FieldCipher
from records.stamping import held_feed_offset, stage_changes
from records.models import (
    Activity,
    Change,
    Coverage,
    DuesPayment,
    FieldOverride,
    Membership,
    OrgUnit,
    PartyOrg,
    Payroll,
    Performance,
    Person,
    SourceLink,
    utcnow,
)
from records.queries import among
from sync.fields import SENSITIVE_FIELDS, columns_of, comparable, shown, stored_comparable, stored_shown, to_columns
from sync.new_rows import NewRowBuilder
from sync.plan import KIND_ORDER, NOT_HASHED, Item, NewRow

# Canonical fields each kind writes to its table (anything else a mapping returns is ignored).
COLUMNS: dict[str, tuple[str, ...]] = {
    "org_units": ("code", "name", "parent_code", "kind", "status", "manager_employee_no"),
    "party_orgs": ("code", "name", "kind", "parent_code", "secretary", "elected_on", "term_years",
                   "has_committee", "retirees"),
    "staff": ("employee_no", "name", "gender", "birth_date", "ethnicity", "education", "id_number",
              "mobile", "org_unit_code", "position", "employment_status", "hired_on",
              "political_status", "party_joined_on"),
    "party_members": ("party_org_code", "category", "joined_on", "full_member_on", "status", "dues_category"),
    "performance": ("employee_no", "period", "grade", "score", "score_max"),
    "payroll": ("employee_no", "month", "after_tax_pay"),
    "activities": ("activity_key", "party_org_code", "type", "held_on", "attendees", "expected",
                   "lecturer", "attendee_nos"),
    "dues_payments": ("employee_no", "month", "amount", "paid_on"),
}
PERSON_FROM_ROSTER = ("employee_no", "name", "gender", "birth_date", "ethnicity", "education",
                      "id_number", "mobile", "position")
MODEL = {"org_units": OrgUnit, "party_orgs": PartyOrg, "staff": Person,
         "party_members": Membership, "performance": Performance, "payroll": Payroll,
         "activities": Activity, "dues_payments": DuesPayment}
FEED = {"org_units": "org_unit", "party_orgs": "party_org", "staff": "person",
        "party_members": "membership", "performance": "performance", "payroll": "payroll",
        "activities": "activity", "dues_payments": "dues_payment"}
MOVE_FIELDS = {"org_unit_code", "parent_code", "party_org_code"}
# Person columns a roster row can fill in (sensitive ones by their hash).
_GAP_COLUMNS = ("employee_no", "name", "gender", "birth_date", "ethnicity", "education",
                "id_number_hash", "mobile_hash", "position")
BATCH = 1000
_ABSENT: Any = object()
_LINK_COLUMNS = ("source", "kind", "external_id", "entity_id", "fingerprint", "active", "last_run_id")
_CHANGE_COLUMNS = ("run_id", "actor", "entity", "entity_id", "op", "changed", "at")
_NEW_LINK_COLUMNS = ("external_id", "entity_id", "fingerprint")
# Kinds whose rows carry the person they belong to; for rows built ahead the run fills it in.
_PERSON_ID_FIRST = {"party_members"}
# Kinds whose records are correlated to persons by their ID number's keyed hash.
_HASHES_ID_NUMBER = {"staff", "party_members"}


def chunks(seq: Sequence[Any], size: int = BATCH) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


class Applier:
    """Applies one RunPlan. `ranks` orders sources by authority (lower wins) for shared fields."""

    def __init__(self, session: Session, cipher: FieldCipher, run_id: int | None, actor: str,
                 ranks: dict[str, int]) -> None:
        self.session = session
        self.conn = session.connection()
        self.cipher = cipher
        self.run_id = run_id
        self.actor = actor
        self.ranks = ranks
        self.now = utcnow()
        self.moves: Counter[str] = Counter()
        self._changes: list[tuple[str, int, str, Any]] = []  # (entity, entity_id, op, changed)
        self._inserters: dict[str, BulkInserter] = {}
        self._creating: dict[str, BulkInserter] = {}
        self._provenance: dict[tuple[str, tuple[str, ...]], dict[str, str]] = {}
        self._row_builders: dict[tuple[str, str], NewRowBuilder] = {}
        # Manual overrides (sync.resolutions): whether an entity has any, and those to release.
        self._any_overrides: dict[str, bool] = {}
        self._released: list[int] = []
        # Change rows are written once, with their `seq` where it is known at INSERT: SQLite
        # numbers the feed by id, and a PostgreSQL run holding the feed (a first load,
        # records.stamping.hold_feed) by id + offset — which saves rewriting every change row at
        # COMMIT (3 s and 100 MB at 100 000 staff). Other PostgreSQL runs put the rows in a
        # temporary table that moves into `changes` with their `seq` at COMMIT
        # (records.stamping.stage_changes).
        dialect = self.conn.dialect.name
        self._seq_offset = 0 if dialect == "sqlite" else held_feed_offset(self.conn)
        self._seq_at_insert = self._seq_offset is not None
        staged = stage_changes(self.conn) if dialect == "postgresql" and not self._seq_at_insert else None
        self._change_inserter = BulkInserter(self.conn, Change.__table__, _CHANGE_COLUMNS, into=staged)
        if self._seq_at_insert:
            self._numbered_change_inserter = BulkInserter(self.conn, Change.__table__, ("id", "seq", *_CHANGE_COLUMNS))
        # Feed entries are serialised where they are made (in the read-ahead child for creates),
        # on PostgreSQL straight into their COPY text; each row then ends with the run's time.
        self._changed_json = self._change_inserter.field_converter("changed")
        at = self._change_inserter.field_converter("at")(self.now)
        self._copying_changes = self._change_inserter.copy_sql is not None
        self._row_end: Any = b"\t" + at + b"\n" if self._copying_changes else (at,)
        # On PostgreSQL a feed row is one bytes formatting: the run's columns and each entity
        # type's and operation's text are made once (a loop over the leading values of each of
        # a first load's 1.5 million rows cost the run ~1.3 s, py-spy).
        self._feed_texts: dict[tuple[str, str], tuple[bytes, bytes]] = {}
        self._link_inserter = BulkInserter(self.conn, SourceLink.__table__, _LINK_COLUMNS)
        # SQLite binds each value of each row: a run's new links and feed rows are written by
        # inserters with the values a group of rows shares in their statement (`_shared_inserter`):
        # a million-staff first load's 1.5 million links and 1.6 million feed rows ~1.5 s sooner.
        self._inline = BulkInserter.inlines_constants(self.conn) and self._seq_at_insert
        self._inserters_sharing: dict[tuple[Any, ...], BulkInserter] = {}
        self._link_active = self._link_inserter.processor("active")(True)

    # -- entry points -------------------------------------------------------------------------

    def apply_batch(self, kind: str, items: list[Item]) -> None:
        """Creates and updates of one kind, as the planner streams them."""
        creates = [i for i in items if i.op == "create"]
        updates = [i for i in items if i.op == "update"]
        if kind == "party_members":
            self._create_roster_persons(creates)
        self._insert_entities(kind, [i for i in creates if i.entity_is_new])
        if kind == "party_members":
            # A new roster row for a known person may fill what HR left empty.
            matched = [(i.person.id, i) for i in creates if not i.creates_person and i.person_data]  # type: ignore[union-attr]
            self._update_roster_persons([m for m in matched if not m[1].person_has_staff])
            self._update_roster_persons([m for m in matched if m[1].person_has_staff], gaps_only=True)
        # A create that merged into an existing record is an update of that record.
        self._update_entities(kind, [i for i in creates if not i.entity_is_new] + updates)
        self._write_links(kind, creates + updates)
        if kind == "party_orgs":
            self._write_coverage(creates + updates)
        self._flush_changes()

    def apply_deactivations(self, deactivations: dict[str, list[Item]]) -> None:
        for kind in KIND_ORDER:
            if deactivations.get(kind):
                self._deactivate(kind, deactivations[kind])
        self._flush_changes()

    def finish(self) -> None:
        self._link_persons()
        self._flush_changes()

    # -- creates ------------------------------------------------------------------------------

    def _new_row(self, kind: str, source: str, data: dict[str, Any], columns: Sequence[str],
                 id_hash: Any = NOT_HASHED) -> tuple[dict[str, Any], dict[str, Any]]:
        """A new record's row (the given canonical fields present in `data`, as columns, with
        their provenance) and its change-feed entry, in one pass over the fields.

        Dates stay ISO text (the bulk inserter parses them); each sensitive value is hashed
        (unless the planner already did: `id_hash`) and masked once for both row and feed."""
        row: dict[str, Any] = {}
        created: dict[str, Any] = {}  # after-values: the feed entry is records.compact's create form
        present: list[str] = []
        cipher = self.cipher
        for name in columns:
            value = data.get(name, _ABSENT)
            if value is _ABSENT:
                continue
            present.append(name)
            mask = SENSITIVE_FIELDS.get(name)
            if mask is None:
                row[name] = value
                if value is not None:
                    created[name] = value
                continue
            value = value or None
            masked = mask(value)
            if value is not None:
                created[name] = masked
            row[f"{name}_enc"] = cipher.encrypt(value)
            row[f"{name}_hash"] = id_hash if name == "id_number" and id_hash is not NOT_HASHED else cipher.keyed_hash(value)
            row[f"{name}_masked"] = masked
        # One shared provenance map per field set: the inserter serialises it once.
        key = (source, tuple(present))
        provenance = self._provenance.get(key)
        if provenance is None:
            provenance = self._provenance[key] = {f: source for f in present}
        row["provenance"] = provenance
        row["created_at"] = row["updated_at"] = self.now
        if kind == "staff":
            row["staff_active"] = True
        else:
            row["active"] = True
        return row, created_entry(created)

    def row_builder(self, kind: str, source: str) -> Callable[..., NewRow] | None:
        """How a mapped record of `kind` from `source` becomes the row its create inserts —
        encrypted, hashed, masked, with provenance and change-feed entry — so that it can be
        built before the run knows it is a create: in the read-ahead child (sync.read_ahead),
        beside the run, instead of here at insert time. None where rows cannot be built ahead.
        `build(data, id_hash=NOT_HASHED)` raises for a record it leaves to `_new_row`."""
        builder = self._row_builders.get((kind, source))
        if builder is None:
            inserter = self._creation_inserter(kind)
            if inserter is None:
                return None
            builder = self._row_builders[(kind, source)] = NewRowBuilder(
                inserter=inserter, start=2 if kind in _PERSON_ID_FIRST else 1, fields=COLUMNS[kind],
                source=source, cipher=self.cipher, hashes_id_number=kind in _HASHES_ID_NUMBER, now=self.now,
                active_column="staff_active" if kind == "staff" else "active", provenance=self._provenance,
                serialise=self._changed_json)
        return builder.build

    def _creation_inserter(self, kind: str) -> BulkInserter | None:
        """Inserts rows built ahead: the id first (and the person's id for memberships), then
        every other column of the table."""
        if kind not in self._creating:
            table = MODEL[kind].__table__
            first = ("id", "person_id") if kind in _PERSON_ID_FIRST else ("id",)
            shared = self._shared_by_creates(kind, table) if BulkInserter.inlines_constants(self.conn) else {}
            rest = (c.name for c in table.c if c.name not in first and c.name not in shared)
            self._creating[kind] = BulkInserter(self.conn, table, (*first, *rest), constants=shared)
        inserter = self._creating[kind]
        return inserter if inserter.sql is not None else None

    def _shared_by_creates(self, kind: str, table: Table) -> dict[str, Any]:
        """The columns every create of `kind` this run inserts gives the same value: the run's
        time, the active flag, and those no field writes (their scalar default, or NULL)."""
        written = {c for f in COLUMNS[kind] for c in columns_of(f)}
        shared: dict[str, Any] = {"created_at": self.now, "updated_at": self.now,
                                  "staff_active" if kind == "staff" else "active": True}
        for column in table.c:
            default = column.default
            if (column.name in shared or column.name in written or column.primary_key
                    or column.name in ("person_id", "provenance") or (default is not None and not default.is_scalar)):
                continue
            shared[column.name] = default.arg if default is not None else None
        return {name: value for name, value in shared.items() if name in table.c}

    def _insert(self, table: Table, rows: list[dict[str, Any]]) -> Sequence[int]:
        """Insert rows with ids allocated up front; the ids, in the order of the rows."""
        if not rows:
            return ()
        ids = allocate_ids(self.conn, table, len(rows))
        for row, new_id in zip(rows, ids):
            row["id"] = new_id
        self._inserter(table, with_id=True).insert(rows)
        return ids

    def _inserter(self, table: Table, with_id: bool = False) -> BulkInserter:
        """Rows of entity tables come with allocated ids; the rest let the database number them."""
        inserter = self._inserters.get(table.name)
        if inserter is None:
            columns = [c.name for c in table.c if with_id or not c.primary_key]
            inserter = self._inserters[table.name] = BulkInserter(self.conn, table, columns)
        return inserter

    def _insert_entities(self, kind: str, items: list[Item]) -> None:
        """Insert creates, their rows built ahead (sync.read_ahead) or built here, and record
        them in the feed. Ids and feed entries follow the records' order either way, so what a
        run writes does not depend on how it shared the work with the read-ahead child."""
        if not items:
            return
        table = MODEL[kind].__table__
        ids = allocate_ids(self.conn, table, len(items))
        person_first = kind in _PERSON_ID_FIRST
        built: list[tuple[tuple[Any, ...], Any]] = []
        rows: list[dict[str, Any]] = []
        feed: list[Any] = []
        for item, new_id in zip(items, ids):
            item.ref.id = new_id
            new_row = item.new_row
            if new_row is None and (build := self.row_builder(kind, item.source)) is not None:
                # Not built ahead (the read-ahead child was behind, or none ran): built here the
                # same way; `_new_row` below takes what the builder leaves.
                try:
                    new_row = build(item.data or {}, item.id_hash)
                except Exception:  # noqa: BLE001 - the general path builds it or reports what fails
                    new_row = None
            if new_row is not None:
                lead = (new_id, item.person.id) if person_first else (new_id,)  # type: ignore[union-attr]
                values, created, _ = new_row
                built.append((lead, values))
                feed.append(created)
                item.new_row = None
                continue
            row, created = self._new_row(kind, item.source, item.data or {}, COLUMNS[kind], item.id_hash)
            row["id"] = new_id
            if person_first:
                row["person_id"] = item.person.id  # type: ignore[union-attr]
            rows.append(row)
            feed.append(self._changed_json(created))
        if built:
            self._creating[kind].insert_ahead(built)
        if rows:
            self._inserter(table, with_id=True).insert(rows)
        for new_id, created in zip(ids, feed):
            self._record_serialised(kind, new_id, "create", created)

    def _create_roster_persons(self, creates: list[Item]) -> None:
        """Persons known only from the party roster (no staff record, at least not yet)."""
        items = [i for i in creates if i.creates_person]
        rows, feed = [], []
        for item in items:
            row, created = self._new_row("staff", item.source, item.person_data or {},
                                         PERSON_FROM_ROSTER, item.id_hash)
            row["staff_active"] = False
            rows.append(row)
            feed.append(created)
        for item, new_id, created in zip(items, self._insert(Person.__table__, rows), feed):
            item.person.id = new_id  # type: ignore[union-attr]
            self._record_change("staff", new_id, "create", created)

    # -- updates ------------------------------------------------------------------------------

    def _load(self, model: Any, ids: Iterable[int], only_if_any_null: Sequence[str] = ()) -> dict[int, dict[str, Any]]:
        table = model.__table__
        out: dict[int, dict[str, Any]] = {}
        gap = or_(*(table.c[c].is_(None) for c in only_if_any_null)) if only_if_any_null else None
        for batch in chunks(sorted(set(ids))):
            query = select(table).where(among(table.c.id, batch, self.conn.dialect.name))
            if gap is not None:
                query = query.where(gap)
            for row in self.conn.execute(query):
                out[row.id] = dict(row._mapping)
        return out

    def _merge(self, kind: str, item: Item, row: dict[str, Any], data: dict[str, Any],
               fields: Sequence[str], overrides: dict[str, _Held] | None = None) -> dict[str, list[Any]]:
        """Write the item's values into `row` where its source may; return what changed.

        `overrides`: fields a person decided (sync.resolutions), held while the source repeats
        what it reported when they decided; a new value from the source releases the hold."""
        changed: dict[str, list[Any]] = {}
        provenance = dict(row.get("provenance") or {})
        my_rank = self.ranks.get(item.source, 1 << 20)
        view = _RowView(row)
        for name in fields:
            if name not in data:
                continue
            value = data[name]
            held = overrides.get(name) if overrides else None
            if held is not None:
                if _same_report(shown(name, value), held.source_value):
                    continue  # the source still says what it said then: the decision stands
                self._released.append(held.id)  # the source says something new: it wins again
            owner = provenance.get(name)
            current = stored_comparable(name, view)
            if owner and owner != item.source and self.ranks.get(owner, 1 << 20) < my_rank and current is not None:
                continue  # a more authoritative source owns this field
            if name == "employee_no" and kind == "party_members" and current is not None:
                continue  # a roster never renumbers staff
            if comparable(name, value, self.cipher) == current:
                provenance[name] = provenance.get(name) or item.source
                continue
            changed[name] = [stored_shown(name, view), shown(name, value)]
            row.update(to_columns({name: value}, self.cipher))
            provenance[name] = item.source
        row["provenance"] = provenance
        return changed

    def _update_entities(self, kind: str, items: list[Item]) -> None:
        if not items:
            return
        model = MODEL[kind]
        rows = self._load(model, (i.ref.id for i in items))  # type: ignore[misc]
        overrides = self._held_overrides(kind, rows)
        dirty: dict[int, set[str]] = defaultdict(set)
        person_items: list[tuple[int, Item]] = []
        active_col = "staff_active" if kind == "staff" else "active"
        for item in items:
            row = rows[item.ref.id]  # type: ignore[index]
            changed = self._merge(kind, item, row, item.data or {}, COLUMNS[kind], overrides.get(row["id"]))
            if not row[active_col]:
                row[active_col] = True
                changed["active"] = [False, True]
                dirty[row["id"]].add(active_col)
            if changed:
                dirty[row["id"]].update(c for c in changed if c != "active")
                dirty[row["id"]].add("provenance")
                if MOVE_FIELDS & changed.keys():
                    self.moves[kind] += 1
                self._record_change(kind, row["id"], "update", changed)
            if kind == "party_members" and item.person_data:
                person_items.append((row["person_id"], item))
        self._write_rows(model, rows, dirty)
        self._release_overrides()
        if person_items:
            self._update_roster_persons(person_items)

    def _held_overrides(self, kind: str, rows: dict[int, dict[str, Any]]) -> dict[int, dict[str, _Held]]:
        """Overrides still held on these rows: entity id → field → override. One cheap probe
        per kind and run first, so kinds nobody ever overrode cost no further query."""
        entity = FEED[kind]
        table = FieldOverride.__table__
        live = (table.c.entity == entity) & table.c.released_at.is_(None)
        if entity not in self._any_overrides:
            self._any_overrides[entity] = self.conn.execute(select(table.c.id).where(live).limit(1)).first() is not None
        out: dict[int, dict[str, _Held]] = defaultdict(dict)
        if not self._any_overrides[entity]:
            return out
        for batch in chunks(sorted(rows)):
            query = select(table.c.id, table.c.entity_id, table.c.field, table.c.source_value).where(
                live, table.c.entity_id.in_(batch)).order_by(table.c.id)
            for override_id, entity_id, name, source_value in self.conn.execute(query):
                out[entity_id][name] = _Held(override_id, source_value)
        return out

    def _release_overrides(self) -> None:
        if not self._released:
            return
        table = FieldOverride.__table__
        for batch in chunks(sorted(set(self._released))):
            self.conn.execute(update(table).where(table.c.id.in_(batch)).values(
                released_at=self.now, released_run_id=self.run_id))
        self._released = []

    def _update_roster_persons(self, person_items: list[tuple[int, Item]], gaps_only: bool = False) -> None:
        """Person fields from roster rows, where the roster may write them. With `gaps_only`
        (persons HR already describes, who outrank the roster) only persons with an empty
        field are even loaded: on a first sync that skips nearly every row."""
        if not person_items:
            return
        rows = self._load(Person, (pid for pid, _ in person_items), only_if_any_null=_GAP_COLUMNS if gaps_only else ())
        person_items = [(pid, item) for pid, item in person_items if pid in rows]
        dirty: dict[int, set[str]] = defaultdict(set)
        for pid, item in person_items:
            changed = self._merge("party_members", item, rows[pid], item.person_data or {}, PERSON_FROM_ROSTER)
            if changed:
                dirty[pid].update(changed)
                dirty[pid].add("provenance")
                self._record_change("staff", pid, "update", changed)
        self._write_rows(Person, rows, dirty)

    def _write_rows(self, model: Any, rows: dict[int, dict[str, Any]], dirty: dict[int, set[str]]) -> None:
        """One executemany UPDATE per set of changed columns."""
        by_columns: dict[frozenset[str], list[dict[str, Any]]] = defaultdict(list)
        for row_id, names in dirty.items():
            columns: set[str] = set()
            for name in names:
                columns.update(columns_of(name))
            row = rows[row_id]
            params = {c: row[c] for c in columns}
            params["updated_at"] = self.now
            params["b_id"] = row_id
            by_columns[frozenset(params)].append(params)
        table = model.__table__
        for keys, params in by_columns.items():
            stmt = update(table).where(table.c.id == bindparam("b_id")).values(
                {k: bindparam(k) for k in keys if k != "b_id"}
            )
            for batch in chunks(params):
                self.conn.execute(stmt, list(batch))

    # -- links and coverage -------------------------------------------------------------------

    def _write_links(self, kind: str, items: list[Item]) -> None:
        run_id, active = self.run_id, self._link_active
        if self._inline:
            by_source: dict[str, list[tuple[Any, ...]]] = {}
            for i in items:
                if i.link_id is None:
                    by_source.setdefault(i.source, []).append((i.external_id, i.ref.id, i.fingerprint))
            for source, rows in by_source.items():
                self._shared_inserter(SourceLink.__table__, _NEW_LINK_COLUMNS, source=source, kind=kind,
                                      active=True, last_run_id=run_id).insert_tuples(rows)
        else:
            self._link_inserter.insert_tuples([
                (i.source, kind, i.external_id, i.ref.id, i.fingerprint, active, run_id)
                for i in items if i.link_id is None
            ])
        known = [
            {"b_id": i.link_id, "fingerprint": i.fingerprint, "last_run_id": self.run_id}
            for i in items if i.link_id is not None
        ]
        table = SourceLink.__table__
        stmt = update(table).where(table.c.id == bindparam("b_id")).values(
            fingerprint=bindparam("fingerprint"), last_run_id=bindparam("last_run_id"), active=True
        )
        for batch in chunks(known):
            self.conn.execute(stmt, list(batch))

    def _write_coverage(self, items: list[Item]) -> None:
        """A source's `covers` list replaces that source's coverage rows for the org."""
        items = [i for i in items if i.data and "covers" in i.data]
        if not items:
            return
        table = Coverage.__table__
        codes = [i.data["code"] for i in items]  # type: ignore[index]
        existing: dict[str, dict[str, str]] = defaultdict(dict)
        for batch in chunks(codes):
            for org, unit, origin in self.conn.execute(
                select(table.c.party_org_code, table.c.org_unit_code, table.c.origin).where(
                    table.c.party_org_code.in_(batch)
                )
            ):
                existing[org][unit] = origin
        inserts, removals = [], []
        for item in items:
            data = item.data or {}
            origin = f"source:{item.source}"
            org = data["code"]
            wanted = list(dict.fromkeys(data.get("covers") or []))
            before = sorted(existing[org])
            dropped = {u for u, o in existing[org].items() if o == origin} - set(wanted)
            removals.extend((org, u) for u in dropped)
            inserts.extend(
                {"party_org_code": org, "org_unit_code": u, "include_descendants": True, "origin": origin,
                 "created_at": self.now, "updated_at": self.now}
                for u in wanted if u not in existing[org]
            )
            after = sorted((set(existing[org]) - dropped) | set(wanted))
            if after != before and item.ref.id is not None:
                self._record_change("party_orgs", item.ref.id, "update", {"covers": [before, after]})
        for org, unit in removals:
            self.conn.execute(
                delete(table).where(table.c.party_org_code == org, table.c.org_unit_code == unit)
            )
        self._inserter(table).insert(inserts)

    # -- deactivation -------------------------------------------------------------------------

    def _deactivate(self, kind: str, items: list[Item]) -> None:
        """Links not seen in a full pull go inactive; an entity goes inactive with its last link."""
        if not items:
            return
        links = SourceLink.__table__
        stmt = update(links).where(links.c.id == bindparam("b_id")).values(
            active=False, last_run_id=self.run_id
        )
        for batch in chunks(items):
            self.conn.execute(stmt, [{"b_id": i.link_id} for i in batch])
        ids = sorted({i.ref.id for i in items})  # type: ignore[type-var]
        still_linked: set[int] = set()
        for batch in chunks(ids):
            still_linked.update(
                r[0] for r in self.conn.execute(
                    select(links.c.entity_id).where(
                        links.c.kind == kind, links.c.active.is_(True), links.c.entity_id.in_(batch)
                    )
                )
            )
        gone = [i for i in ids if i not in still_linked]
        model = MODEL[kind]
        table = model.__table__
        column = table.c.staff_active if kind == "staff" else table.c.active
        for batch in chunks(gone):
            self.conn.execute(
                update(table).where(table.c.id.in_(batch)).values({column: False, "updated_at": self.now})
            )
        for entity_id in gone:
            self._record_change(kind, entity_id, "deactivate", {"active": [True, False]})

    def _link_persons(self) -> None:
        """Performance, payroll and dues rows point at their person by employee number, set-based."""
        persons = Person.__table__
        for table in (Performance.__table__, Payroll.__table__, DuesPayment.__table__):
            self.conn.execute(
                update(table)
                .where(table.c.person_id.is_(None))
                .values(
                    person_id=select(persons.c.id)
                    .where(persons.c.employee_no == table.c.employee_no)
                    .scalar_subquery()
                )
            )

    # -- change feed --------------------------------------------------------------------------

    def _record_change(self, kind: str, entity_id: int, op: str, changed: dict[str, Any]) -> None:
        # The JSON is serialised here, so `changed` is freed at once.
        self._record_serialised(kind, entity_id, op, self._changed_json(changed))

    def _record_serialised(self, kind: str, entity_id: int, op: str, changed: Any) -> None:
        # Rows of the change feed go straight to the driver (no dict per row).
        self._changes.append((FEED[kind], entity_id, op, changed))
        if len(self._changes) >= BATCH * 5:
            self._flush_changes()

    def _flush_changes(self) -> None:
        if not self._changes:
            return
        changes, self._changes = self._changes, []
        end = self._row_end
        numbered = self._seq_at_insert
        ids = allocate_ids(self.conn, Change.__table__, len(changes)) if numbered else ()
        offset = self._seq_offset
        inserter = self._numbered_change_inserter if numbered else self._change_inserter
        if self._copying_changes:  # COPY text: the entries come escaped, the end is ready
            pieces = self._feed_pieces
            rows = [(pieces(entity, op), entity_id, changed) for entity, entity_id, op, changed in changes]
            if numbered:
                lines = [b"%d\t%d\t%s%d\t%s%s%s" % (i, i + offset, head, entity_id, op_text, changed, end)
                         for i, ((head, op_text), entity_id, changed) in zip(ids, rows)]
            else:
                lines = [b"%s%d\t%s%s%s" % (head, entity_id, op_text, changed, end)
                         for (head, op_text), entity_id, changed in rows]
            inserter.insert_text(b"".join(lines))
            return
        run_id, actor = self.run_id, self.actor
        if self._inline:  # SQLite: numbered, and the columns a group of rows shares are in the SQL
            groups: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
            for i, (entity, entity_id, op, changed) in zip(ids, changes):
                rows = groups.get((entity, op))
                if rows is None:
                    rows = groups[(entity, op)] = []
                rows.append((i, i + offset, entity_id, changed))
            for (entity, op), rows in groups.items():
                self._shared_inserter(Change.__table__, ("id", "seq", "entity_id", "changed"), run_id=run_id,
                                      actor=actor, entity=entity, op=op, at=self.now).insert_tuples(rows)
        elif numbered:
            inserter.insert_tuples([(i, i + offset, run_id, actor, entity, entity_id, op, changed, *end)
                                    for i, (entity, entity_id, op, changed) in zip(ids, changes)])
        else:
            inserter.insert_tuples([(run_id, actor, entity, entity_id, op, changed, *end)
                                    for entity, entity_id, op, changed in changes])

    def _shared_inserter(self, table: Table, columns: tuple[str, ...], **shared: Any) -> BulkInserter:
        """An inserter of `columns` whose rows all give the other columns the values `shared`
        (SQLite: written into its statement, not bound row by row), one per set of values."""
        key = (table.name, columns, *shared.values())
        inserter = self._inserters_sharing.get(key)
        if inserter is None:
            inserter = self._inserters_sharing[key] = BulkInserter(self.conn, table, columns, constants=shared)
        return inserter

    def _feed_pieces(self, entity: str, op: str) -> tuple[bytes, bytes]:
        """COPY text around a feed row's entity id: the run's id, actor and the entity type
        before it, the operation after it (each with its tab)."""
        pieces = self._feed_texts.get((entity, op))
        if pieces is None:
            text = {c: self._change_inserter.field_converter(c) for c in ("run_id", "actor", "entity", "op")}
            head = b"\t".join([text["run_id"](self.run_id), text["actor"](self.actor), text["entity"](entity)])
            pieces = self._feed_texts[(entity, op)] = (head + b"\t", text["op"](op) + b"\t")
        return pieces


class _Held(NamedTuple):
    """A held override: its id and what the source reported when the person decided."""

    id: int
    source_value: Any


def _same_report(reported: Any, then: Any) -> bool:
    """Whether a source repeats its earlier report (an empty string and nothing are alike)."""
    return (None if reported == "" else reported) == (None if then == "" else then)


class _RowView:
    """Attribute access over a row dict, for the field helpers."""

    __slots__ = ("_row",)

    def __init__(self, row: dict[str, Any]) -> None:
        self._row = row

    def __getattr__(self, name: str) -> Any:
        return self._row.get(name)

