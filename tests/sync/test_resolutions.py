"""Resolving mismatches (sync.resolutions): each action changes the records it should, is audited,
and survives later syncs of a source that still reports the old value — until the source changes."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select, update

from records.db import session_factory
from records.models import (
    AuditLog, Change, FieldOverride, Membership, Mismatch, PartyOrg, Person, SourceLink, Transfer,
)
from sync.resolutions import ResolutionError, resolve
from tests.sync.conftest import Site, make_site


@pytest.fixture
def small_site(tmp_path: Path, sqlite_url: str) -> Site:
    site = make_site(tmp_path / "src", sqlite_url, staff=300, seed=23)
    assert site.sync().status == "succeeded"
    return site


def _open(site: Site, rule: str, where=None) -> Mismatch:
    with session_factory(site.runtime.engine)() as s:
        query = select(Mismatch).where(Mismatch.rule == rule, Mismatch.state == "open",
                                       Mismatch.closed_at.is_(None)).order_by(Mismatch.id)
        if where is not None:
            query = query.where(where)
        m = s.scalars(query).first()
        assert m is not None, f"the generated enterprise has no open {rule}"
        return m


def _act(site: Site, mismatch_id: int, action: str, reason: str = "checked with the branch", **params):
    with session_factory(site.runtime.engine)() as s, s.begin():
        outcome = resolve(s, mismatch_id, action, "officer1", reason, **params)
        return outcome.transfer.id if outcome.transfer else None, outcome.membership.id if outcome.membership else None


def _roster_row(site: Site, person_id: int) -> dict:
    with session_factory(site.runtime.engine)() as s:
        emp = s.get(Person, person_id).employee_no
    staff = next(p for p in site.enterprise.staff if p["employee_no"] == emp)
    return next(m for m in site.enterprise.party_members if m["id_number"] == staff["id_number"])


def test_transfer_survives_resyncs_until_the_source_changes(tmp_path: Path, any_db_url: str) -> None:
    site = make_site(tmp_path / "src", any_db_url, staff=300, seed=31)
    assert site.sync().status == "succeeded"
    m = _open(site, "branch_mismatch")
    registered, expected = m.party_org_code, m.other_party_org_code
    transfer_id, membership_id = _act(site, m.id, "transfer", letter_no="2026-017")

    with session_factory(site.runtime.engine)() as s:
        membership = s.get(Membership, membership_id)
        assert membership.party_org_code == expected and membership.provenance["party_org_code"] == "console"
        transfer = s.get(Transfer, transfer_id)
        assert (transfer.kind, transfer.from_party_org_code, transfer.to_party_org_code, transfer.status) == \
            ("internal", registered, expected, "issued")
        assert transfer.letter_no == "2026-017" and transfer.mismatch_id == m.id and transfer.valid_until > transfer.issued_on
        resolved = s.get(Mismatch, m.id)
        assert (resolved.state, resolved.resolution, resolved.resolved_by) == ("resolved", "transfer", "officer1")
        audit = s.scalars(select(AuditLog).where(AuditLog.action == "mismatch.transfer")).one()
        assert audit.details["changed"]["party_org_code"] == [registered, expected]
        assert audit.details["reason"] == "checked with the branch" and audit.details["transfer_id"] == transfer_id
        feed = s.scalars(select(Change).where(Change.entity == "membership", Change.entity_id == membership_id,
                                              Change.actor == "officer1")).all()
        assert [c.changed for c in feed] == [{"party_org_code": [registered, expected]}]
        override = s.scalars(select(FieldOverride)).one()
        assert (override.source, override.source_value, override.value) == ("roster", registered, expected)

    # The roster still lists the old branch, unchanged: nothing moves back, nothing reopens.
    assert site.sync().status == "succeeded"
    # The roster row changes elsewhere (so it is re-read and applied) but still names the old branch.
    row = _roster_row(site, m.subject_id)
    row["full_member_on"] = "2020-02-02"
    site.rewrite()
    assert site.sync().status == "succeeded"
    with session_factory(site.runtime.engine)() as s:
        assert s.get(Membership, membership_id).party_org_code == expected
        assert s.get(Membership, membership_id).full_member_on == dt.date(2020, 2, 2)  # the row was applied
        after = s.get(Mismatch, m.id)
        assert after.state == "resolved" and after.closed_at is not None  # the data agrees now
        assert s.scalars(select(Mismatch).where(Mismatch.subject_key == m.subject_key,
                                                Mismatch.rule == "branch_mismatch",
                                                Mismatch.closed_at.is_(None))).all() == []
        assert s.scalars(select(FieldOverride.released_at)).one() is None

    # The source reports something new: it wins again and the override is released.
    with session_factory(site.runtime.engine)() as s:
        third = s.scalars(select(PartyOrg.code).where(PartyOrg.kind == "branch", PartyOrg.retirees.is_(False),
                                                      PartyOrg.code.not_in([registered, expected]))
                          .order_by(PartyOrg.code)).first()
    row["party_org_code"] = third
    site.rewrite()
    assert site.sync().status == "succeeded"
    with session_factory(site.runtime.engine)() as s:
        membership = s.get(Membership, membership_id)
        assert membership.party_org_code == third and membership.provenance["party_org_code"] == "roster"
        override = s.scalars(select(FieldOverride)).one()
        assert override.released_at is not None and override.released_run_id is not None


def test_transfer_validates_the_target(small_site: Site) -> None:
    site = small_site
    m = _open(site, "branch_mismatch")
    with session_factory(site.runtime.engine)() as s:
        committee = s.scalars(select(PartyOrg.code).where(PartyOrg.kind != "branch")).first()
    for target, status in ((committee, 400), ("NO-SUCH-ORG", 404), (m.party_org_code, 409)):
        with pytest.raises(ResolutionError) as caught:
            _act(site, m.id, "transfer", target_party_org=target)
        assert caught.value.status == status and caught.value.field == "target_party_org"
    with pytest.raises(ResolutionError) as caught:
        _act(site, m.id, "create_membership")
    assert caught.value.code == "action_unfit"
    with pytest.raises(ResolutionError) as caught:
        _act(site, m.id, "resolve", reason="  ")
    assert caught.value.field == "reason"
    with session_factory(site.runtime.engine)() as s:
        assert s.get(Mismatch, m.id).state == "open"
        assert s.scalars(select(Transfer)).all() == [] and s.scalars(select(AuditLog)).all() == []


def test_create_membership_from_hr(small_site: Site) -> None:
    site = small_site
    m = _open(site, "missing_membership", Mismatch.party_org_code.is_not(None))
    _, membership_id = _act(site, m.id, "create_membership")
    with session_factory(site.runtime.engine)() as s:
        person = s.get(Person, m.subject_id)
        membership = s.get(Membership, membership_id)
        assert membership.person_id == person.id and membership.status == "active" and membership.active
        assert membership.party_org_code == m.party_org_code
        assert membership.category == {"01": "full", "02": "probationary"}[person.political_status]
        assert membership.joined_on == person.party_joined_on
        create = s.scalars(select(Change).where(Change.entity == "membership", Change.entity_id == membership_id)).one()
        assert create.op == "create" and create.changed["party_org_code"] == [None, m.party_org_code]
    assert site.sync().status == "succeeded"
    with session_factory(site.runtime.engine)() as s:
        after = s.get(Mismatch, m.id)
        assert after.state == "resolved" and after.closed_at is not None
    with pytest.raises(ResolutionError) as caught:
        _act(site, m.id, "resolve")
    assert caught.value.status == 409  # closed: the data agrees now

    # The member then appears in the roster: the row takes over the console's membership
    # (no second one), and the roster's values win from now on.
    with session_factory(site.runtime.engine)() as s:
        emp = s.get(Person, m.subject_id).employee_no
    staff = next(p for p in site.enterprise.staff if p["employee_no"] == emp)
    site.enterprise.party_members.append({
        "id_number": staff["id_number"], "employee_no": emp, "name": staff["name"],
        "party_org_code": m.party_org_code, "category": "full", "joined_on": "2003-07-01",
        "full_member_on": "2004-07-01", "status": "active", "gender": staff["gender"],
        "birth_date": staff["birth_date"], "ethnicity": staff["ethnicity"], "education": staff["education"],
        "mobile": staff["mobile"], "position": staff["position"]})
    site.rewrite()
    assert site.sync().status == "succeeded"
    with session_factory(site.runtime.engine)() as s:
        memberships = s.scalars(select(Membership).where(Membership.person_id == m.subject_id)).all()
        assert [x.id for x in memberships] == [membership_id]
        assert memberships[0].joined_on == dt.date(2003, 7, 1) and memberships[0].provenance["joined_on"] == "roster"
        assert s.scalars(select(SourceLink.entity_id).where(SourceLink.kind == "party_members",
                                                            SourceLink.entity_id == membership_id)).one()


def test_orphan_transfer_out_and_deceased(small_site: Site) -> None:
    site = small_site
    m = _open(site, "orphan_membership")
    with pytest.raises(ResolutionError) as caught:
        _act(site, m.id, "transfer_out")
    assert caught.value.field == "to_org_name"
    transfer_id, membership_id = _act(site, m.id, "transfer_out", to_org_name="某市某区委组织部",
                                      dues_paid_until=dt.date(2026, 6, 30))
    with session_factory(site.runtime.engine)() as s:
        assert s.get(Membership, membership_id).status == "transferred_out"
        transfer = s.get(Transfer, transfer_id)
        assert (transfer.kind, transfer.to_party_org_code, transfer.to_org_name) == ("out", None, "某市某区委组织部")
        assert transfer.dues_paid_until == dt.date(2026, 6, 30)
    assert site.sync().status == "succeeded"
    with session_factory(site.runtime.engine)() as s:
        assert s.get(Membership, membership_id).status == "transferred_out"
        assert s.get(Mismatch, m.id).closed_at is not None

    second = _open(site, "orphan_membership")
    _, membership_id = _act(site, second.id, "mark_deceased")
    with session_factory(site.runtime.engine)() as s:
        assert s.get(Membership, membership_id).status == "deceased"
        assert s.get(Mismatch, second.id).resolution == "mark_deceased"


def test_move_retired_member_to_retirees_branch(small_site: Site) -> None:
    site = small_site
    with session_factory(site.runtime.engine)() as s:
        retirees = s.scalars(select(PartyOrg.code).where(PartyOrg.retirees.is_(True))).first()
        ordinary = s.scalars(select(PartyOrg.code).where(PartyOrg.kind == "branch", PartyOrg.retirees.is_(False))).first()
        m = s.scalars(select(Mismatch).join(Person, Person.id == Mismatch.subject_id).where(
            Mismatch.rule == "orphan_membership", Person.employment_status == "retired",
            Person.staff_active.is_(True), Mismatch.closed_at.is_(None))).first()
        not_retired = s.scalars(select(Mismatch).join(Person, Person.id == Mismatch.subject_id).where(
            Mismatch.rule == "orphan_membership", Person.employment_status != "retired",
            Mismatch.closed_at.is_(None))).first()
    assert retirees and m is not None and not_retired is not None
    with pytest.raises(ResolutionError) as caught:
        _act(site, m.id, "move_to_retirees", target_party_org=ordinary)
    assert caught.value.code == "target_not_retirees"
    with pytest.raises(ResolutionError) as caught:
        _act(site, not_retired.id, "move_to_retirees", target_party_org=retirees)
    assert caught.value.code == "not_retired"
    transfer_id, membership_id = _act(site, m.id, "move_to_retirees", target_party_org=retirees)
    assert site.sync().status == "succeeded"
    with session_factory(site.runtime.engine)() as s:
        assert s.get(Membership, membership_id).party_org_code == retirees
        assert s.get(Transfer, transfer_id).to_party_org_code == retirees
        assert s.get(Mismatch, m.id).closed_at is not None  # a retiree in a retirees' branch is fine


def test_adopt_hr_values(small_site: Site) -> None:
    site = small_site
    m = _open(site, "join_date_conflict")
    _, membership_id = _act(site, m.id, "adopt_hr")
    with session_factory(site.runtime.engine)() as s:
        assert s.get(Membership, membership_id).joined_on == s.get(Person, m.subject_id).party_joined_on
    status = _open(site, "status_conflict", Mismatch.details["person"]["political_status"].as_string().in_(("01", "02")))
    _, membership_id = _act(site, status.id, "adopt_hr")
    assert site.sync().status == "succeeded"
    with session_factory(site.runtime.engine)() as s:
        assert s.get(Mismatch, m.id).closed_at is not None
        assert s.get(Mismatch, status.id).closed_at is not None


def test_exception_expires_and_reopens(small_site: Site) -> None:
    site = small_site
    m = _open(site, "branch_mismatch")
    with pytest.raises(ResolutionError) as caught:
        _act(site, m.id, "exception", expires_at=dt.date(2000, 1, 1))
    assert caught.value.field == "expires_at"
    _act(site, m.id, "exception", reason="seconded for a year", expires_at=dt.date.today() + dt.timedelta(days=30))
    assert site.sync().status == "succeeded"
    with session_factory(site.runtime.engine)() as s:
        ignored = s.get(Mismatch, m.id)
        assert ignored.state == "ignored" and ignored.expires_at is not None and ignored.closed_at is None
        s.execute(update(Mismatch).where(Mismatch.id == m.id).values(expires_at=dt.datetime(2001, 1, 1)))
        s.commit()
    assert site.sync().status == "succeeded"
    with session_factory(site.runtime.engine)() as s:
        reopened = s.get(Mismatch, m.id)
        assert reopened.state == "open" and reopened.expires_at is None


def test_link_ambiguous_record_to_a_person(small_site: Site) -> None:
    site = small_site
    m = _open(site, "ambiguous_match")
    candidates = [c for c in m.details["candidates"] if c]
    assert candidates
    with pytest.raises(ResolutionError) as caught:
        _act(site, m.id, "link_person")
    assert caught.value.field == "person_id"
    _act(site, m.id, "link_person", person_id=candidates[0])
    prefix = f"record:{m.details['source']}:{m.details['kind']}:"
    with session_factory(site.runtime.engine)() as s:
        link = s.scalars(select(SourceLink).where(SourceLink.source == m.details["source"],
                                                  SourceLink.external_id == m.subject_key[len(prefix):])).one()
    assert site.sync().status == "succeeded"
    with session_factory(site.runtime.engine)() as s:
        after = s.get(Mismatch, m.id)
        assert after.state == "resolved" and after.closed_at is not None  # correlated now
        link = s.get(SourceLink, link.id)
        assert link.fingerprint != "" and link.active
        if m.details["kind"] == "staff":
            assert link.entity_id == candidates[0]
        else:
            assert s.get(Membership, link.entity_id).person_id == candidates[0]
