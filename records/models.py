"""SQLAlchemy 2.0 models of the unified records, runs, changes, mismatches and audit.

Business keys (org unit `code`, staff `employee_no`, party org `code`) are what the sync and the
alignment join on; surrogate ids are what the API and the change feed hand out. Nothing is ever
hard-deleted by a sync: `active=False` marks a record its source no longer lists.
Sensitive personal data (ID number, mobile) is stored encrypted with a keyed hash for matching and
a masked copy for display (see records.crypto).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy import DDL, event
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.functions import FunctionElement

from records.compact import ChangedJSON, ProvenanceJSON


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


# SQLite only auto-increments an INTEGER PRIMARY KEY; BigInteger elsewhere.
BigId = BigInteger().with_variant(Integer(), "sqlite")

CODE = 64  # business codes and employee numbers
NAME = 200


def machine_text(length: int) -> Any:
    """A column of machine-made text (keys, hashes, type names) that is only ever matched, never
    shown sorted: on PostgreSQL it compares byte by byte (COLLATE "C"), which lets the server
    sort it with abbreviated keys instead of calling the locale per comparison — a first load
    builds its indexes that way (migration 0017: 0.8 s of 7 at a million staff). Such a column
    must not be compared with a column of another collation (PostgreSQL refuses to choose)."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Timestamps:
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


# --- business line -------------------------------------------------------------------------


class OrgUnit(Timestamps, Base):
    """A company, department or team of the business line."""

    __tablename__ = "org_units"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(CODE), unique=True)
    name: Mapped[str] = mapped_column(String(NAME))
    parent_code: Mapped[str | None] = mapped_column(String(CODE), index=True)
    kind: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="active")
    manager_employee_no: Mapped[str | None] = mapped_column(String(CODE))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    provenance: Mapped[dict[str, Any]] = mapped_column(ProvenanceJSON, default=dict)


class Person(Timestamps, Base):
    """One human, correlated across sources; staff fields from HR, each with its provenance."""

    __tablename__ = "persons"

    id: Mapped[int] = mapped_column(primary_key=True)
    employee_no: Mapped[str | None] = mapped_column(String(CODE), unique=True)
    name: Mapped[str] = mapped_column(String(NAME))
    gender: Mapped[str | None] = mapped_column(String(2))
    birth_date: Mapped[dt.date | None] = mapped_column(Date)
    ethnicity: Mapped[str | None] = mapped_column(String(4))
    education: Mapped[str | None] = mapped_column(String(4))
    id_number_enc: Mapped[str | None] = mapped_column(Text)
    id_number_hash: Mapped[str | None] = mapped_column(machine_text(64), index=True)
    id_number_masked: Mapped[str | None] = mapped_column(String(32))
    mobile_enc: Mapped[str | None] = mapped_column(Text)
    mobile_hash: Mapped[str | None] = mapped_column(String(64))
    mobile_masked: Mapped[str | None] = mapped_column(String(32))
    # Indexed by ix_persons_org_unit_id (org_unit_code, id), which serves lookups by unit too.
    org_unit_code: Mapped[str | None] = mapped_column(String(CODE))
    position: Mapped[str | None] = mapped_column(String(NAME))
    employment_status: Mapped[str | None] = mapped_column(String(20))
    hired_on: Mapped[dt.date | None] = mapped_column(Date)
    political_status: Mapped[str | None] = mapped_column(String(4))
    party_joined_on: Mapped[dt.date | None] = mapped_column(Date)
    # True while some source lists this person as staff; False for party-only persons and for
    # staff whose record a full pull no longer returned.
    staff_active: Mapped[bool] = mapped_column(Boolean, default=False)
    # field → source name that last set it
    provenance: Mapped[dict[str, Any]] = mapped_column(ProvenanceJSON, default=dict)
    # SCIM externalId of a person created through SCIM ("" when the client gave none); NULL for
    # persons from the sync, whose externalId is their employee number (web.scim).
    scim_external_id: Mapped[str | None] = mapped_column(String(255))  # ix_persons_scim_external_id
    # Set by a SCIM DELETE: the record stays (deactivated), SCIM answers 404 for it.
    scim_deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # URNs of the SCIM User extensions a client attached (listed even while they hold nothing);
    # NULL when none (web.scim.writes).
    scim_extensions: Mapped[list[str] | None] = mapped_column(JSON)

    __table_args__ = (Index("ix_persons_name", "name"),)


class Performance(Timestamps, Base):
    """A performance appraisal result of one employee for one period."""

    __tablename__ = "performance"

    id: Mapped[int] = mapped_column(primary_key=True)
    employee_no: Mapped[str] = mapped_column(String(CODE))
    period: Mapped[str] = mapped_column(String(16))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"), index=True)
    grade: Mapped[str | None] = mapped_column(String(16))
    score: Mapped[float | None] = mapped_column(Float)
    score_max: Mapped[float | None] = mapped_column(Float)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    provenance: Mapped[dict[str, Any]] = mapped_column(ProvenanceJSON, default=dict)

    __table_args__ = (UniqueConstraint("employee_no", "period", name="uq_performance_key"),)


class Payroll(Timestamps, Base):
    """Monthly after-tax pay of one employee: the base for party dues."""

    __tablename__ = "payroll"

    id: Mapped[int] = mapped_column(primary_key=True)
    employee_no: Mapped[str] = mapped_column(String(CODE))
    month: Mapped[str] = mapped_column(String(7))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"), index=True)
    after_tax_pay: Mapped[float | None] = mapped_column(Numeric(12, 2, asdecimal=False))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    provenance: Mapped[dict[str, Any]] = mapped_column(ProvenanceJSON, default=dict)

    __table_args__ = (UniqueConstraint("employee_no", "month", name="uq_payroll_key"),)


class Activity(Timestamps, Base):
    """One organizational-life activity of a party org (三会一课, 主题党日, 组织生活会, 民主评议).

    `activity_key` is the source's own id of the activity (canonical field `id`; `id` here is the
    surrogate key). `type` is canonical (mappings.codes.ACTIVITY_TYPE); `expected` is how many
    members should attend, null when the source does not say.
    """

    __tablename__ = "activities"

    id: Mapped[int] = mapped_column(primary_key=True)
    activity_key: Mapped[str] = mapped_column(String(CODE))
    party_org_code: Mapped[str | None] = mapped_column(String(CODE), index=True)
    type: Mapped[str | None] = mapped_column(String(32))
    held_on: Mapped[dt.date | None] = mapped_column(Date, index=True)
    attendees: Mapped[int | None] = mapped_column(Integer)
    expected: Mapped[int | None] = mapped_column(Integer)
    # Who gave a party lecture (name or employee number; the secretary's yearly lecture) and the
    # employee numbers of those present (points for attendance), when the source records them.
    lecturer: Mapped[str | None] = mapped_column(String(NAME))
    attendee_nos: Mapped[list[Any] | None] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    provenance: Mapped[dict[str, Any]] = mapped_column(ProvenanceJSON, default=dict)

    __table_args__ = (UniqueConstraint("activity_key", name="uq_activities_key"),)


# --- party line ----------------------------------------------------------------------------


class PartyOrg(Timestamps, Base):
    """A party committee, general branch, branch or group."""

    __tablename__ = "party_orgs"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(CODE), unique=True)
    name: Mapped[str] = mapped_column(String(NAME), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    parent_code: Mapped[str | None] = mapped_column(String(CODE), index=True)
    secretary: Mapped[str | None] = mapped_column(String(NAME))
    elected_on: Mapped[dt.date | None] = mapped_column(Date)
    term_years: Mapped[int | None] = mapped_column(Integer)
    has_committee: Mapped[bool | None] = mapped_column(Boolean)
    retirees: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    provenance: Mapped[dict[str, Any]] = mapped_column(ProvenanceJSON, default=dict)
    # SCIM externalId of a party org created through SCIM ("" when none); NULL: its code is.
    scim_external_id: Mapped[str | None] = mapped_column(String(255), index=True)
    scim_deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)  # see Person


class Coverage(Timestamps, Base):
    """A party org covers an org unit (支部建在连上), with or without its descendants."""

    __tablename__ = "coverage"

    id: Mapped[int] = mapped_column(primary_key=True)
    party_org_code: Mapped[str] = mapped_column(String(CODE), index=True)
    org_unit_code: Mapped[str] = mapped_column(String(CODE), index=True)
    include_descendants: Mapped[bool] = mapped_column(Boolean, default=True)
    # "source:<name>" when it came from a source's `covers`, "console" when edited by a person.
    origin: Mapped[str] = mapped_column(String(80))

    __table_args__ = (UniqueConstraint("party_org_code", "org_unit_code", name="uq_coverage"),)


class Membership(Timestamps, Base):
    """A person's party membership, registered with a party org (normally a branch)."""

    __tablename__ = "memberships"

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    party_org_code: Mapped[str | None] = mapped_column(String(CODE), index=True)
    category: Mapped[str | None] = mapped_column(String(20))
    joined_on: Mapped[dt.date | None] = mapped_column(Date)
    full_member_on: Mapped[dt.date | None] = mapped_column(Date)
    # Dues category when not by pay: student | unemployed | subsistence (0.2 yuan a month) or
    # retiree (pension rates); null: by after-tax pay (sync/dues.py).
    dues_category: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="active")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    provenance: Mapped[dict[str, Any]] = mapped_column(ProvenanceJSON, default=dict)


# --- sync bookkeeping ----------------------------------------------------------------------


class SourceLink(Base):
    """(source, kind, external id) → the entity it feeds, with the fingerprint last seen."""

    __tablename__ = "source_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(machine_text(80))
    kind: Mapped[str] = mapped_column(machine_text(32))
    external_id: Mapped[str] = mapped_column(machine_text(255))
    entity_id: Mapped[int] = mapped_column(Integer)
    fingerprint: Mapped[str] = mapped_column(String(32))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_run_id: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        UniqueConstraint("source", "kind", "external_id", name="uq_source_link"),
        Index("ix_source_links_entity", "kind", "entity_id"),
        # Room on each page for a run's link updates to stay heap-only (migration 0016).
        {"postgresql_with": {"fillfactor": 90}},
    )


class SourceCursor(Base):
    """Incremental position per source and kind, committed with the data it covers."""

    __tablename__ = "source_cursors"

    source: Mapped[str] = mapped_column(String(80), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))
    run_id: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class SyncRun(Base):
    """One `dualline sync`: which sources, how it went, what it counted."""

    __tablename__ = "sync_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    sources: Mapped[list[Any]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(20), default="running")
    full: Mapped[bool] = mapped_column(Boolean, default=False)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    approved: Mapped[bool] = mapped_column(Boolean, default=False)
    actor: Mapped[str] = mapped_column(String(80), default="cli")
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    mismatches: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # What happened, for people: per-source errors, guard reasons, warnings.
    report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    # While the run goes on: phase and records fetched per source and kind, written every second
    # or two on a short connection of its own (sync.progress); the console polls it.
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The change feed's last `seq` this run's alignment had seen (its own changes aside): the
    # next incremental run re-aligns only what changed after it (sync.alignment.changed_scope).
    aligned_seq: Mapped[int | None] = mapped_column(BigInteger)


class WriterTransaction(FunctionElement[int]):
    """Server default of `changes.txn`: which transaction wrote the row (see Change).
    PostgreSQL: the transaction id; MariaDB/MySQL: the connection id (its transactions follow
    one another, and stamping leaves none of a committed one behind); SQLite: NULL (one writer)."""

    type = BigInteger()
    inherit_cache = True


@compiles(WriterTransaction)
def _writer_transaction_default(element: Any, compiler: Any, **kw: Any) -> str:
    return "NULL"


@compiles(WriterTransaction, "postgresql")
def _writer_transaction_postgresql(element: Any, compiler: Any, **kw: Any) -> str:
    return "txid_current()"


@compiles(WriterTransaction, "mysql")
@compiles(WriterTransaction, "mariadb")
def _writer_transaction_mysql(element: Any, compiler: Any, **kw: Any) -> str:
    return "(connection_id())"


class Change(Base):
    """One applied change: the change feed.

    `seq` is the feed's public position: it strictly increases in COMMIT order and is never
    reused, so a consumer passing `after=last_seq` resumes exactly. An autoincrement cannot promise
    that with concurrent writers (PostgreSQL and MariaDB number rows at INSERT: T1 takes 10, T2
    takes 11 and commits first, and a reader that saw 11 skips 10 forever). So a row is written
    with `seq` NULL (`id` is just its insertion order) and stamped as its transaction's very last
    statement by records.stamping: `UPDATE change_feed_counter SET last_seq = last_seq + n` (that one
    row lock serialises the stamping only, so long syncs run side by side until their commit),
    then ONE set-based UPDATE gives the transaction's rows `seq` in `id` order. Numbers may have
    gaps; they never go back. SQLite has one writer at a time, so there `seq` is simply the id
    (set at INSERT by the sync's bulk writer, by the same COMMIT hook for every other writer).

    Writers do nothing for it: every INSERT INTO changes marks the connection, and an Engine-level
    `commit` listener (records.stamping, registered when this module is imported) stamps before the
    COMMIT — for ORM sessions, `session.begin()` blocks and bare Connections alike. The rows of a
    transaction are found by `txn` (server default WriterTransaction). Readers serve only
    stamped rows (`seq IS NOT NULL`, which `seq > after` implies).
    """

    __tablename__ = "changes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    seq: Mapped[int | None] = mapped_column(BigInteger, unique=True, index=True)
    txn: Mapped[int | None] = mapped_column(BigInteger, server_default=WriterTransaction())
    run_id: Mapped[int | None] = mapped_column(Integer, index=True)
    actor: Mapped[str] = mapped_column(String(80))
    entity: Mapped[str] = mapped_column(machine_text(20))
    entity_id: Mapped[int] = mapped_column(Integer)
    op: Mapped[str] = mapped_column(String(20))
    changed: Mapped[dict[str, Any]] = mapped_column(ChangedJSON)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (
        Index("ix_changes_entity", "entity", "entity_id"),
        # A committing transaction finds exactly its own unstamped rows (on MariaDB a locking
        # read over other transactions' rows would wait for them). Partial where the database
        # can (migration 0014): stamped rows, all but a few, never enter it.
        Index("ix_changes_pending", "txn", "seq", postgresql_where=text("seq IS NULL"),
              sqlite_where=text("seq IS NULL")),
    )


class ChangeFeedCounter(Base):
    """The one row holding the change feed's last stamped `seq` (see Change)."""

    __tablename__ = "change_feed_counter"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)


# The counter's row exists from the start (the migration inserts it too).
event.listen(ChangeFeedCounter.__table__, "after_create",
             DDL("INSERT INTO change_feed_counter (id, last_seq) VALUES (1, 0)"))


class Quarantine(Base):
    """A raw record that could not be mapped or placed, with the reason. Nothing is dropped."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(Integer, index=True)
    source: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str | None] = mapped_column(String(255))
    row: Mapped[str | None] = mapped_column(String(40))
    field: Mapped[str | None] = mapped_column(String(80))
    reason: Mapped[str] = mapped_column(Text)
    # The raw record, encrypted whole (it may hold ID numbers); `preview` is masked for display.
    record_enc: Mapped[str | None] = mapped_column(Text)
    preview: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Mismatch(Base):
    """A disagreement between the business line and the party line (or a rule finding)."""

    __tablename__ = "mismatches"

    id: Mapped[int] = mapped_column(primary_key=True)
    rule: Mapped[str] = mapped_column(String(40), index=True)
    # Identity of what the mismatch is about: "person:12", "org_unit:D01", "record:roster:…".
    subject_key: Mapped[str] = mapped_column(String(255))
    subject_type: Mapped[str] = mapped_column(String(20))
    subject_id: Mapped[int | None] = mapped_column(Integer)
    subject_label: Mapped[str | None] = mapped_column(String(NAME))
    # Party orgs the mismatch concerns (registered and expected branch): officers' scope.
    party_org_code: Mapped[str | None] = mapped_column(String(CODE), index=True)
    other_party_org_code: Mapped[str | None] = mapped_column(String(CODE))
    org_unit_code: Mapped[str | None] = mapped_column(String(CODE))
    state: Mapped[str] = mapped_column(String(20), default="open", index=True)
    severity: Mapped[str] = mapped_column(String(10), default="medium")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Hash of the inputs that made the rule fire: an ignored mismatch wakes up when they change.
    inputs_hash: Mapped[str] = mapped_column(String(40))
    opened_run_id: Mapped[int | None] = mapped_column(Integer)
    opened_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    resolution: Mapped[str | None] = mapped_column(String(40))
    resolution_note: Mapped[str | None] = mapped_column(Text)
    resolved_by: Mapped[str | None] = mapped_column(String(80))
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    __table_args__ = (Index("ix_mismatches_subject", "rule", "subject_key"),)


class AuditLog(Base):
    """Who did what, when and why: resolutions, approvals, coverage edits, users, tokens."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(60))
    target_type: Mapped[str | None] = mapped_column(String(40))
    target_id: Mapped[str | None] = mapped_column(String(80))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


# The entity name used in the change feed for each table of unified records.
FEED_ENTITY = {
    OrgUnit: "org_unit",
    Person: "person",
    PartyOrg: "party_org",
    Membership: "membership",
    Performance: "performance",
    Payroll: "payroll",
    Activity: "activity",
    Mismatch: "mismatch",
}

__all__ = [
    "Activity",
    "ApiToken",
    "AuditLog",
    "Base",
    "Change",
    "ChangeFeedCounter",
    "Webhook",
    "WebhookDelivery",
    "Coverage",
    "ExpectedBranch",
    "FEED_ENTITY",
    "Membership",
    "Mismatch",
    "OrgUnit",
    "PartyOrg",
    "Payroll",
    "Performance",
    "Person",
    "Quarantine",
    "SourceCursor",
    "SourceLink",
    "SyncRun",
    "User",
    "stamp_changes",
    "utcnow",
]


class User(Base):
    """A console user. `role`: admin | officer | auditor; an officer sees `party_org_code`'s subtree."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20))
    party_org_code: Mapped[str | None] = mapped_column(String(CODE))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # Where notifications (the new-mismatch digest of an officer's subtree) are mailed.
    email: Mapped[str | None] = mapped_column(String(254))


class ExpectedBranch(Base):
    """Derived by alignment: each org unit's expected branch and the covered unit that decides it."""

    __tablename__ = "expected_branches"

    org_unit_code: Mapped[str] = mapped_column(String(CODE), primary_key=True)
    branch_code: Mapped[str] = mapped_column(String(CODE), index=True)
    via_unit_code: Mapped[str] = mapped_column(String(CODE))


class ApiToken(Base):
    """A bearer token for `/api/v1` (and later `/scim/v2`): scopes, an optional party-org subtree.

    Only the SHA-256 of the token is stored: the token is 256 random bits, so a fast unsalted hash
    cannot be reversed, and it lets a request find its token by an indexed equality lookup (a slow
    password hash would cost every API call a tenth of a second). `prefix` is the token's public
    beginning, shown in lists so a leaked token can be recognised without storing it.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # The token sees this party org's subtree only (None: everything).
    party_org_code: Mapped[str | None] = mapped_column(String(CODE))
    created_by: Mapped[str] = mapped_column(String(80), default="cli")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


LeaseTime = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


class RunLock(Base):
    """A lease held in the database, so that it works across processes and hosts.

    `name` is `source:<name>` for a sync (one row per source a run holds) or `scheduler:<host>`
    for a scheduler's heartbeat. The primary key makes taking a free lock atomic (INSERT);
    taking over an expired one is a conditional UPDATE whose row count says who won. A holder
    renews `expires_at` while it works; one that dies stops renewing and loses the lock after the
    TTL. Times are naive UTC from the holders' clocks (hosts are expected to run NTP).
    """

    __tablename__ = "run_locks"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))  # host:pid:uuid
    run_id: Mapped[int | None] = mapped_column(Integer)  # the sync run it protects, once started
    # Microseconds on MySQL/MariaDB too (plain DATETIME there keeps whole seconds, which would
    # cut up to a second off every lease and make short TTLs expire under a live holder).
    acquired_at: Mapped[dt.datetime] = mapped_column(LeaseTime)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(LeaseTime)
    expires_at: Mapped[dt.datetime] = mapped_column(LeaseTime)


# --- resolutions: transfers and manual overrides (issue 4 / issue 7) ---------------------------


class Transfer(Base):
    """A transfer of a member's organizational relation (组织关系转接), with its letter's data.

    `kind`: internal (between branches here), out (to another system: `to_org_name` holds the
    destination when it is not a party org here) or in. `status`: issued | received | cancelled;
    an issued transfer past `valid_until` without `received_on` is stale.
    """

    __tablename__ = "transfers"

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    membership_id: Mapped[int | None] = mapped_column(ForeignKey("memberships.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    from_party_org_code: Mapped[str | None] = mapped_column(String(CODE), index=True)
    to_party_org_code: Mapped[str | None] = mapped_column(String(CODE), index=True)
    to_org_name: Mapped[str | None] = mapped_column(String(NAME))
    category: Mapped[str | None] = mapped_column(String(20))
    dues_paid_until: Mapped[dt.date | None] = mapped_column(Date)
    letter_no: Mapped[str | None] = mapped_column(String(CODE))
    issued_on: Mapped[dt.date] = mapped_column(Date)
    valid_until: Mapped[dt.date | None] = mapped_column(Date)
    received_on: Mapped[dt.date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), default="issued", index=True)
    mismatch_id: Mapped[int | None] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    note: Mapped[str | None] = mapped_column(Text)


class FieldOverride(Base):
    """A person's decision about one field of one record, held against a source that disagrees.

    While the source keeps reporting `source_value` (what it reported when the officer decided),
    a sync leaves the field at `value`; once the source reports anything else it wins again and
    the override is released (`released_at`). `entity` is the change-feed name (membership, …).
    """

    __tablename__ = "field_overrides"

    id: Mapped[int] = mapped_column(primary_key=True)
    entity: Mapped[str] = mapped_column(String(20))
    entity_id: Mapped[int] = mapped_column(Integer)
    field: Mapped[str] = mapped_column(String(40))
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    source: Mapped[str | None] = mapped_column(String(80))
    source_value: Mapped[Any] = mapped_column(JSON, nullable=True)
    mismatch_id: Mapped[int | None] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    released_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    released_run_id: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (Index("ix_field_overrides_entity", "entity", "entity_id"),)


# --- standardization: dues and points (issue 7) ------------------------------------------------


class DuesPayment(Timestamps, Base):
    """Party dues paid by one member for one month (党费), from a `dues_payments` source.

    One row per (employee number, month): the amount credited to that month, back payments
    included; `paid_on` is when it was paid (a back payment has a later date than its month).
    """

    __tablename__ = "dues_payments"

    id: Mapped[int] = mapped_column(primary_key=True)
    employee_no: Mapped[str] = mapped_column(String(CODE))
    month: Mapped[str] = mapped_column(String(7))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"), index=True)
    amount: Mapped[float | None] = mapped_column(Numeric(12, 2, asdecimal=False))
    paid_on: Mapped[dt.date | None] = mapped_column(Date)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    provenance: Mapped[dict[str, Any]] = mapped_column(ProvenanceJSON, default=dict)

    __table_args__ = (UniqueConstraint("employee_no", "month", name="uq_dues_payments_key"),)


class PointsEntry(Base):
    """One line of the points ledger (积分制): manual additions and deductions, with the reason.

    Attendance and performance points are computed from activities and appraisals when a
    ranking is asked for (sync/points.py); the ledger holds what a person entered or imported.
    """

    __tablename__ = "points_ledger"

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    party_org_code: Mapped[str | None] = mapped_column(String(CODE), index=True)
    year: Mapped[int] = mapped_column(Integer)
    category: Mapped[str] = mapped_column(String(32))
    points: Mapped[float] = mapped_column(Numeric(8, 2, asdecimal=False))
    reason: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(80), default="manual")
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (Index("ix_points_ledger_year", "year", "party_org_code"),)


# --- distributed runs: staged pages between the fetch and the apply (sync.tasks) ------------------


class StagedRecord(Base):
    """One raw record fetched by a worker for a distributed run, waiting for the run's apply.

    Fetch tasks (one per partition: a stride of pages of one source's kind) write them; the one
    apply task replays them in source order (`page`, `position`) through the ordinary planner
    in ONE transaction and deletes them. Rows of a run that died are deleted by the next run.
    """

    __tablename__ = "staged_records"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(32))
    partition: Mapped[int] = mapped_column(Integer)
    page: Mapped[int] = mapped_column(Integer)  # the page's index in the source's own order
    position: Mapped[int] = mapped_column(Integer)  # the record's index in its page
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = (Index("ix_staged_records_order", "run_id", "source", "kind", "page", "position"),)


# --- webhooks: signed POSTs of the change feed (sync.webhooks) -----------------------------------


class Webhook(Base):
    """A receiver of signed POSTs of the change feed and of finished runs.

    Defined in the config (`webhooks:`, origin "config": the secret stays in the config) or in the
    console (origin "console": the secret is stored encrypted, records.crypto). Each webhook keeps
    its own cursors — `last_seq` into the change feed, `last_run_id` into finished runs — moved only
    after the receiver answered 2xx, so it gets every change once and in order (at least once: a
    lost answer repeats the batch with the same `X-Dualline-Delivery` id). The batch in flight is
    kept here (`pending_*`, the exact body) so a retry sends the same thing.
    """

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    origin: Mapped[str] = mapped_column(String(20), default="console")
    url: Mapped[str] = mapped_column(String(1000))
    secret_enc: Mapped[str | None] = mapped_column(Text)
    events: Mapped[list[Any]] = mapped_column(JSON, default=list)  # changes | mismatches | runs
    entities: Mapped[list[Any] | None] = mapped_column(JSON)  # feed entities; None: all of the events'
    party_org_code: Mapped[str | None] = mapped_column(String(CODE))  # subtree limit
    timeout_seconds: Mapped[float] = mapped_column(Float, default=10.0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=8)
    batch_size: Mapped[int] = mapped_column(Integer, default=500)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Why it is not active: "disabled" (a person, or gone from the config) or "failing" (a batch
    # failed max_attempts times; re-enabling retries that same batch — nothing is skipped).
    disabled_reason: Mapped[str | None] = mapped_column(String(40))
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    last_run_id: Mapped[int] = mapped_column(Integer, default=0)
    pending_delivery: Mapped[str | None] = mapped_column(String(36))
    pending_event: Mapped[str | None] = mapped_column(String(20))
    pending_last_seq: Mapped[int | None] = mapped_column(BigInteger)
    pending_run_id: Mapped[int | None] = mapped_column(Integer)
    pending_items: Mapped[int | None] = mapped_column(Integer)
    pending_body: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_by: Mapped[str] = mapped_column(String(80), default="cli")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class WebhookDelivery(Base):
    """The delivery log: one row per attempt to POST one batch (`delivery_id` is shared by the
    attempts of one batch and sent as `X-Dualline-Delivery`)."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id"))
    delivery_id: Mapped[str] = mapped_column(String(36), index=True)
    event: Mapped[str] = mapped_column(String(20))  # changes | runs | ping
    first_seq: Mapped[int | None] = mapped_column(BigInteger)  # the batch covers first_seq..last_seq
    last_seq: Mapped[int | None] = mapped_column(BigInteger)
    run_id: Mapped[int | None] = mapped_column(Integer)  # runs: the last run in the batch
    items: Mapped[int] = mapped_column(Integer, default=0)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(20))  # delivered | retrying | failed
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    attempted_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    __table_args__ = (Index("ix_webhook_deliveries_webhook", "webhook_id", "id"),)


# --- console read paths (migration 0011) --------------------------------------------------------
# The console counts open mismatches per party org (either side) and per rule on every dashboard,
# queue and party-org page; covering indexes keep that an index-only read at 20 000+ open ones.
Index("ix_mismatches_open_party_org", Mismatch.state, Mismatch.closed_at, Mismatch.party_org_code)
Index("ix_mismatches_open_other_org", Mismatch.state, Mismatch.closed_at, Mismatch.other_party_org_code)
Index("ix_mismatches_open_rule", Mismatch.state, Mismatch.closed_at, Mismatch.rule)

# --- API lookups (migration 0012) -------------------------------------------------------------

# `/api/v1/persons?org_unit=…` pages in id order: with (org_unit_code, id) the planner reads the
# unit's rows already in page order from the index, instead of walking the whole table by id.
Index("ix_persons_org_unit_id", Person.org_unit_code, Person.id)

# --- fewer index writes per synced row (migration 0014) ----------------------------------------

# Only persons written through SCIM have an externalId of their own: a partial index (where the
# database can) leaves the million synced persons out of it.
Index("ix_persons_scim_external_id", Person.scim_external_id,
      postgresql_where=Person.scim_external_id.is_not(None), sqlite_where=Person.scim_external_id.is_not(None))


# Importing records.stamping registers the commit listener that stamps the change feed (see
# Change). Re-exported for writers that stamp explicitly.
from records.stamping import stamp_changes as stamp_changes  # noqa: E402
