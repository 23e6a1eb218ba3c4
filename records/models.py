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

)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


# SQLite only auto-increments an INTEGER PRIMARY KEY; BigInteger elsewhere.
BigId = BigInteger().with_variant(Integer(), "sqlite")

CODE = 64  # business codes and employee numbers
NAME = 200


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
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


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
    id_number_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    id_number_masked: Mapped[str | None] = mapped_column(String(32))
    mobile_enc: Mapped[str | None] = mapped_column(Text)
    mobile_hash: Mapped[str | None] = mapped_column(String(64))
    mobile_masked: Mapped[str | None] = mapped_column(String(32))
    org_unit_code: Mapped[str | None] = mapped_column(String(CODE), index=True)
    position: Mapped[str | None] = mapped_column(String(NAME))
    employment_status: Mapped[str | None] = mapped_column(String(20))
    hired_on: Mapped[dt.date | None] = mapped_column(Date)
    political_status: Mapped[str | None] = mapped_column(String(4))
    party_joined_on: Mapped[dt.date | None] = mapped_column(Date)
    # True while some source lists this person as staff; False for party-only persons and for
    # staff whose record a full pull no longer returned.
    staff_active: Mapped[bool] = mapped_column(Boolean, default=False)
    # field → source name that last set it
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

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
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

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
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

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
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

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
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


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
    status: Mapped[str] = mapped_column(String(20), default="active")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


# --- sync bookkeeping ----------------------------------------------------------------------


class SourceLink(Base):
    """(source, kind, external id) → the entity it feeds, with the fingerprint last seen."""

    __tablename__ = "source_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(255))
    entity_id: Mapped[int] = mapped_column(Integer)
    fingerprint: Mapped[str] = mapped_column(String(32))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_run_id: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        UniqueConstraint("source", "kind", "external_id", name="uq_source_link"),
        Index("ix_source_links_entity", "kind", "entity_id"),
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


class Change(Base):
    """One applied change: the change feed. `seq` strictly increases and is never reused."""

    __tablename__ = "changes"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int | None] = mapped_column(Integer, index=True)
    actor: Mapped[str] = mapped_column(String(80))
    entity: Mapped[str] = mapped_column(String(20))
    entity_id: Mapped[int] = mapped_column(Integer)
    op: Mapped[str] = mapped_column(String(20))
    changed: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (Index("ix_changes_entity", "entity", "entity_id"),)


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
