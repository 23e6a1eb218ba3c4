"""Resolving mismatches: the actions a person takes on one, shared by the console and the REST API.

Each action fits a rule (`ACTIONS`): record a transfer to the expected branch, create the missing
membership, transfer a member out, move a retired member to a retirees' branch, mark a member
deceased, take HR's value into the party record, link an ambiguous source record to a person —
and, for every rule, `exception` (an accepted, documented exception with an optional expiry, after
which the next alignment reopens the mismatch) and `resolve` (resolved with a note).

Who may act where (an officer's party-org subtree) is the caller's job; this module checks that
the action fits the rule and that its target is valid (a target branch exists, is active and of
kind branch), changes the data, and records everything: an AuditLog row (who, when, what, why,
before/after) and Change rows for the change feed (membership and mismatch).

A decision about a field a source also reports (a membership's branch after a transfer) is kept
as a FieldOverride: while the source keeps reporting what it reported when the person decided,
syncs leave the field alone (sync.apply); once the source reports something new, the source wins
again. So a transfer survives the next sync of a roster that still lists the old branch.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from records.models import (
    AuditLog, Change, FieldOverride, Membership, Mismatch, PartyOrg, Person, SourceLink, Transfer, utcnow,
)
from records.bulk import to_date
from sync.fields import shown

# Who set a field when a person did it in the console or through the API (provenance).
MANUAL = "console"
GENERIC_ACTIONS = ("exception", "resolve")
ACTIONS: dict[str, tuple[str, ...]] = {
    "branch_mismatch": ("transfer",),
    "missing_membership": ("create_membership",),
    "orphan_membership": ("transfer_out", "move_to_retirees", "mark_deceased"),
    "status_conflict": ("adopt_hr",),
    "join_date_conflict": ("adopt_hr",),
    "uncovered_unit": (),  # fixed in the coverage editor
    "ambiguous_match": ("link_person",),
}
# Actions that register the member with a branch (the target a caller's scope must include).
BRANCH_ACTIONS = ("transfer", "create_membership", "move_to_retirees")
# Actions that change the records (besides the mismatch itself).
DATA_ACTIONS = frozenset(a for actions in ACTIONS.values() for a in actions)
ALL_ACTIONS = (*sorted(DATA_ACTIONS), *GENERIC_ACTIONS)
# How long a transfer letter is valid (party-rules.md: commonly up to three months).
LETTER_VALIDITY_DAYS = 90
HR_CATEGORY = {"01": "full", "02": "probationary"}
REASON_MAX = 2000


class ResolutionError(Exception):
    """The action cannot be taken: `status` as HTTP would say it, `code` for translated messages,
    `field` the request field at fault."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


@dataclass
class Outcome:
    """What an action did: the mismatch after it, and what it created or changed."""

    mismatch: Mismatch
    action: str
    membership: Membership | None = None
    transfer: Transfer | None = None
    link: SourceLink | None = None
    changed: dict[str, Any] = field(default_factory=dict)


def actions_for(rule: str) -> tuple[str, ...]:
    """The actions that fit a rule, data-changing ones first (standardization findings: generic)."""
    return (*ACTIONS.get(rule, ()), *GENERIC_ACTIONS)


def action_for_state(state: str) -> str:
    """The API's `state` (resolved | ignored) as an action."""
    return "exception" if state == "ignored" else "resolve"


def state_for_action(action: str) -> str:
    return "ignored" if action == "exception" else "resolved"


def resolve(
    session: Session,
    mismatch: int | Mismatch,
    action: str,
    actor: str,
    reason: str,
    *,
    expires_at: dt.datetime | dt.date | None = None,
    target_party_org: str | None = None,
    person_id: int | None = None,
    to_org_name: str | None = None,
    letter_no: str | None = None,
    dues_paid_until: dt.date | None = None,
    today: dt.date | None = None,
) -> Outcome:
    """Take `action` on a mismatch inside the caller's transaction (it commits).

    Raises ResolutionError when the mismatch is closed (409), the action does not fit its rule
    (400), the reason is missing (400) or a target is invalid (400/404/409)."""
    m = _load(session, mismatch)
    reason = (reason or "").strip()
    if not reason:
        raise ResolutionError(400, "reason_required", "a reason is required", "reason")
    if len(reason) > REASON_MAX:
        raise ResolutionError(400, "reason_too_long", f"the reason is longer than {REASON_MAX} characters", "reason")
    if action not in actions_for(m.rule):
        raise ResolutionError(400, "action_unfit", f"action {action!r} does not fit rule {m.rule!r}", "action")
    if m.closed_at is not None:
        raise ResolutionError(409, "closed", "the mismatch is closed: the data agrees now, there is nothing to resolve",
                              "state")
    now = utcnow()
    context = _Context(session, m, actor, reason, now, today or now.date())
    outcome = Outcome(mismatch=m, action=action)
    target_party_org = target_party_org or default_target(m, action)
    if action == "transfer":
        context.transfer(outcome, target_party_org, letter_no, dues_paid_until)
    elif action == "move_to_retirees":
        context.move_to_retirees(outcome, target_party_org, letter_no, dues_paid_until)
    elif action == "create_membership":
        context.create_membership(outcome, target_party_org)
    elif action == "transfer_out":
        context.transfer_out(outcome, to_org_name, letter_no, dues_paid_until)
    elif action == "mark_deceased":
        context.set_status(outcome, "deceased")
    elif action == "adopt_hr":
        context.adopt_hr(outcome)
    elif action == "link_person":
        context.link_person(outcome, person_id)
    context.finish(outcome, expires_at if action == "exception" else None)
    return outcome


def _load(session: Session, mismatch: int | Mismatch) -> Mismatch:
    if isinstance(mismatch, Mismatch):
        return mismatch
    m = session.scalars(select(Mismatch).where(Mismatch.id == mismatch).with_for_update()).one_or_none()
    if m is None:
        raise ResolutionError(404, "not_found", "no such mismatch", "mismatch_id")
    return m


def default_target(m: Mismatch, action: str) -> str | None:
    """The branch an action moves to when none is chosen: the expected branch (a retirees'
    branch is always chosen by the person). Callers check their scope against this too."""
    if action == "transfer":
        return m.other_party_org_code
    if action == "create_membership":
        expected = (m.details or {}).get("expected") or {}
        return expected.get("party_org_code") or m.party_org_code
    return None


def _as_datetime(value: dt.datetime | dt.date | None) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value.replace(tzinfo=None) if value is not None and value.tzinfo else value  # type: ignore[union-attr]
    return dt.datetime.combine(value, dt.time())


class _Context:
    """One action on one mismatch: the records it touches and the audit it leaves."""

    def __init__(self, session: Session, m: Mismatch, actor: str, reason: str, now: dt.datetime,
                 today: dt.date) -> None:
        self.s = session
        self.m = m
        self.actor = actor
        self.reason = reason
        self.now = now
        self.today = today
        self.audit: dict[str, Any] = {}

    # -- lookups ------------------------------------------------------------------------------

    def person(self) -> Person:
        if self.m.subject_type != "person" or self.m.subject_id is None:
            raise ResolutionError(409, "no_person", "the mismatch is not about a known person")
        person = self.s.get(Person, self.m.subject_id)
        if person is None:
            raise ResolutionError(409, "no_person", "the person of this mismatch no longer exists")
        return person

    def membership(self) -> Membership:
        """The person's active membership, preferably the one the mismatch names."""
        person = self.person()
        wanted = ((self.m.details or {}).get("membership") or {}).get("id")
        rows = self.s.scalars(
            select(Membership).where(Membership.person_id == person.id, Membership.active.is_(True),
                                     Membership.status == "active").order_by(Membership.id).with_for_update()
        ).all()
        for row in rows:
            if row.id == wanted:
                return row
        if rows:
            return rows[0]
        raise ResolutionError(409, "no_membership", "the person has no active membership (any more)")

    def branch(self, code: str | None, retirees: bool = False) -> PartyOrg:
        if not code:
            raise ResolutionError(400, "target_required", "choose the branch", "target_party_org")
        org = self.s.scalars(select(PartyOrg).where(PartyOrg.code == code)).one_or_none()
        if org is None or not org.active:
            raise ResolutionError(404, "target_unknown", f"no active party org {code!r}", "target_party_org")
        if org.kind != "branch":
            raise ResolutionError(400, "target_not_branch", "members are registered with a branch (支部)",
                                  "target_party_org")
        if retirees and not org.retirees:
            raise ResolutionError(400, "target_not_retirees", "that branch is not a retirees' branch",
                                  "target_party_org")
        return org

    # -- writing ------------------------------------------------------------------------------

    def set_fields(self, membership: Membership, values: dict[str, Any]) -> dict[str, list[Any]]:
        """Set membership fields as a person's decision: provenance, change feed, and an override
        held against the source that reported the field (so that the next sync keeps it)."""
        provenance = dict(membership.provenance or {})
        changed: dict[str, list[Any]] = {}
        for name, value in values.items():
            before = shown(name, getattr(membership, name))
            after = shown(name, value)
            if before == after:
                continue
            changed[name] = [before, after]
            owner = provenance.get(name)
            held = self.s.scalars(select(FieldOverride).where(
                FieldOverride.entity == "membership", FieldOverride.entity_id == membership.id,
                FieldOverride.field == name, FieldOverride.released_at.is_(None))).all()
            if held:
                # Decided before: the source still reports what it reported then.
                source, source_value = held[0].source, held[0].source_value
                for old in held:
                    old.released_at = self.now
            elif owner and owner != MANUAL:
                source, source_value = owner, before
            else:
                source = source_value = None
            if source is not None:
                self.s.add(FieldOverride(entity="membership", entity_id=membership.id, field=name, value=after,
                                         source=source, source_value=source_value, mismatch_id=self.m.id,
                                         created_by=self.actor, created_at=self.now))
            setattr(membership, name, value)
            provenance[name] = MANUAL
        if changed:
            membership.provenance = provenance
            membership.updated_at = self.now
            self.s.add(Change(run_id=None, actor=self.actor, entity="membership", entity_id=membership.id,
                              op="update", changed=changed, at=self.now))
        return changed

    def new_transfer(self, membership: Membership, kind: str, to_code: str | None, to_name: str | None,
                     letter_no: str | None, dues_paid_until: dt.date | None, from_code: str | None) -> Transfer:
        transfer = Transfer(
            person_id=membership.person_id, membership_id=membership.id, kind=kind,
            from_party_org_code=from_code, to_party_org_code=to_code, to_org_name=to_name,
            category=membership.category, dues_paid_until=dues_paid_until, letter_no=letter_no or None,
            issued_on=self.today, valid_until=self.today + dt.timedelta(days=LETTER_VALIDITY_DAYS),
            status="issued", mismatch_id=self.m.id, created_by=self.actor, created_at=self.now, note=self.reason,
        )
        self.s.add(transfer)
        self.s.flush()
        return transfer

    # -- actions ------------------------------------------------------------------------------

    def transfer(self, outcome: Outcome, target: str | None, letter_no: str | None,
                 dues_paid_until: dt.date | None) -> None:
        org = self.branch(target)
        membership = self.membership()
        if membership.party_org_code == org.code:
            raise ResolutionError(409, "already_there", "the member is already registered with that branch",
                                  "target_party_org")
        self._move(outcome, membership, org, letter_no, dues_paid_until)

    def move_to_retirees(self, outcome: Outcome, target: str | None, letter_no: str | None,
                         dues_paid_until: dt.date | None) -> None:
        person = self.person()
        if person.employment_status != "retired":
            raise ResolutionError(409, "not_retired", "HR does not list this person as retired")
        org = self.branch(target, retirees=True)
        membership = self.membership()
        if membership.party_org_code == org.code:
            raise ResolutionError(409, "already_there", "the member is already registered with that branch",
                                  "target_party_org")
        self._move(outcome, membership, org, letter_no, dues_paid_until)

    def _move(self, outcome: Outcome, membership: Membership, org: PartyOrg, letter_no: str | None,
              dues_paid_until: dt.date | None) -> None:
        from_code = membership.party_org_code
        outcome.changed = self.set_fields(membership, {"party_org_code": org.code})
        outcome.membership = membership
        outcome.transfer = self.new_transfer(membership, "internal", org.code, org.name, letter_no,
                                             dues_paid_until, from_code)

    def transfer_out(self, outcome: Outcome, to_org_name: str | None, letter_no: str | None,
                     dues_paid_until: dt.date | None) -> None:
        to_org_name = (to_org_name or "").strip()
        if not to_org_name:
            raise ResolutionError(400, "destination_required", "name the party organization the member goes to",
                                  "to_org_name")
        membership = self.membership()
        from_code = membership.party_org_code
        outcome.changed = self.set_fields(membership, {"status": "transferred_out"})
        outcome.membership = membership
        outcome.transfer = self.new_transfer(membership, "out", None, to_org_name[:200], letter_no,
                                             dues_paid_until, from_code)

    def set_status(self, outcome: Outcome, status: str) -> None:
        membership = self.membership()
        outcome.changed = self.set_fields(membership, {"status": status})
        outcome.membership = membership

    def adopt_hr(self, outcome: Outcome) -> None:
        """Take HR's value into the party record (which line is right is the person's call)."""
        person = self.person()
        membership = self.membership()
        if self.m.rule == "status_conflict":
            category = HR_CATEGORY.get(person.political_status or "")
            if category is None:
                raise ResolutionError(409, "hr_not_member",
                                      "HR does not list this person as a party member; record an exception instead")
            values: dict[str, Any] = {"category": category}
        else:
            if person.party_joined_on is None:
                raise ResolutionError(409, "hr_no_date", "HR has no party join date for this person")
            values = {"joined_on": person.party_joined_on}
        outcome.changed = self.set_fields(membership, values)
        if not outcome.changed:
            raise ResolutionError(409, "nothing_to_change", "the party record already has HR's value")
        outcome.membership = membership

    def create_membership(self, outcome: Outcome, target: str | None) -> None:
        person = self.person()
        org = self.branch(target)
        exists = self.s.scalar(select(Membership.id).where(
            Membership.person_id == person.id, Membership.active.is_(True), Membership.status == "active").limit(1))
        if exists is not None:
            raise ResolutionError(409, "has_membership", "the person already has an active membership")
        values = {"party_org_code": org.code, "category": HR_CATEGORY.get(person.political_status or ""),
                  "joined_on": person.party_joined_on, "status": "active"}
        membership = Membership(person_id=person.id, active=True, created_at=self.now, updated_at=self.now,
                                provenance={k: MANUAL for k, v in values.items() if v is not None}, **values)
        self.s.add(membership)
        self.s.flush()
        outcome.membership = membership
        outcome.changed = {k: [None, shown(k, v)] for k, v in values.items() if v is not None}
        self.s.add(Change(run_id=None, actor=self.actor, entity="membership", entity_id=membership.id,
                          op="create", changed=outcome.changed, at=self.now))

    def link_person(self, outcome: Outcome, person_id: int | None) -> None:
        """Attach the ambiguous record to a person with a source link, so that the next sync
        correlates it to them (the planner follows a record's link before any matching)."""
        if person_id is None:
            raise ResolutionError(400, "person_required", "choose the person", "person_id")
        person = self.s.get(Person, person_id)
        if person is None:
            raise ResolutionError(404, "person_unknown", "no such person", "person_id")
        details = self.m.details or {}
        source, kind = details.get("source"), details.get("kind")
        prefix = f"record:{source}:{kind}:"
        if not source or kind not in ("staff", "party_members") or not self.m.subject_key.startswith(prefix):
            raise ResolutionError(409, "not_a_record", "the mismatch does not name a source record")
        external_id = self.m.subject_key[len(prefix):]
        if kind == "staff":
            clash = self.s.scalar(select(SourceLink.id).where(
                SourceLink.source == source, SourceLink.kind == "staff", SourceLink.entity_id == person.id,
                SourceLink.active.is_(True), SourceLink.external_id != external_id).limit(1))
            if clash is not None:
                raise ResolutionError(409, "person_has_record", "that person already has a record from this source",
                                      "person_id")
            entity_id = person.id
        else:
            entity_id = self._membership_for_record(outcome, person, source, details.get("record") or {})
        link = self.s.scalars(select(SourceLink).where(
            SourceLink.source == source, SourceLink.kind == kind, SourceLink.external_id == external_id)).one_or_none()
        if link is None:
            link = SourceLink(source=source, kind=kind, external_id=external_id, entity_id=entity_id)
            self.s.add(link)
        link.entity_id = entity_id
        # No fingerprint the record can have: the next sync re-reads it and applies it as an
        # update of the linked entity.
        link.fingerprint = ""
        link.active = True
        self.s.flush()
        outcome.link = link
        outcome.changed = {"link": [None, {"source": source, "kind": kind, "person_id": person.id}]}

    def _membership_for_record(self, outcome: Outcome, person: Person, source: str, record: dict[str, Any]) -> int:
        """The person's membership the roster row feeds: their active one not fed by this source
        yet, or a new one made from the row's party fields."""
        linked = select(SourceLink.entity_id).where(SourceLink.source == source, SourceLink.kind == "party_members",
                                                    SourceLink.active.is_(True))
        existing = self.s.scalar(select(Membership.id).where(
            Membership.person_id == person.id, Membership.active.is_(True), Membership.status == "active",
            Membership.id.not_in(linked)).order_by(Membership.id).limit(1))
        if existing is not None:
            return existing
        taken = self.s.scalar(select(Membership.id).where(
            Membership.person_id == person.id, Membership.active.is_(True), Membership.id.in_(linked)).limit(1))
        if taken is not None:
            raise ResolutionError(409, "person_has_record", "that person already has a row in this roster",
                                  "person_id")
        values = {
            "party_org_code": record.get("party_org_code"), "category": record.get("category"),
            "joined_on": to_date(record.get("joined_on")), "full_member_on": to_date(record.get("full_member_on")),
            "status": record.get("status") or "active",
        }
        membership = Membership(person_id=person.id, active=True, created_at=self.now, updated_at=self.now,
                                provenance={k: source for k, v in values.items() if v is not None}, **values)
        self.s.add(membership)
        self.s.flush()
        outcome.membership = membership
        self.s.add(Change(run_id=None, actor=self.actor, entity="membership", entity_id=membership.id, op="create",
                          changed={k: [None, shown(k, v)] for k, v in values.items() if v is not None}, at=self.now))
        return membership.id

    # -- the mismatch and the audit -----------------------------------------------------------

    def finish(self, outcome: Outcome, expires_at: dt.datetime | dt.date | None) -> None:
        m = self.m
        before = {"state": m.state, "resolution_note": m.resolution_note}
        new_state = state_for_action(outcome.action)
        expires = _as_datetime(expires_at)
        if expires is not None and expires <= self.now:
            raise ResolutionError(400, "expiry_past", "the exception's expiry must lie in the future", "expires_at")
        m.state = new_state
        # The generic actions keep the state as their resolution (the API's contract); the
        # data-changing ones name what was done.
        m.resolution = new_state if outcome.action in GENERIC_ACTIONS else outcome.action
        m.resolution_note = self.reason
        m.resolved_by, m.resolved_at, m.updated_at = self.actor, self.now, self.now
        m.expires_at = expires
        changed = {k: [v, getattr(m, k)] for k, v in before.items() if v != getattr(m, k)}
        self.s.add(Change(run_id=None, actor=self.actor, entity="mismatch", entity_id=m.id, op="update",
                          changed=changed or {"state": [before["state"], m.state]}, at=self.now))
        details: dict[str, Any] = {
            "rule": m.rule, "action": outcome.action, "from": before["state"], "state": m.state,
            "reason": self.reason, "expires_at": expires.isoformat() if expires else None,
        }
        if outcome.changed:
            details["changed"] = outcome.changed
        if outcome.membership is not None:
            details["membership_id"] = outcome.membership.id
        if outcome.transfer is not None:
            details["transfer_id"] = outcome.transfer.id
        action = "mismatch.resolve" if outcome.action in GENERIC_ACTIONS else f"mismatch.{outcome.action}"
        self.s.add(AuditLog(actor=self.actor, action=action, target_type="mismatch", target_id=str(m.id),
                            at=self.now, details=details))
        self.s.flush()

