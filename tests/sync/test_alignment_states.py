"""Mismatch life cycle: closes by itself when the data agrees; an ignored one stays ignored
until its inputs change; a person's resolution survives later syncs."""
from __future__ import annotations

from sqlalchemy import select, update

from records.db import session_factory
from records.models import Change, Mismatch, Person
from tests.sync.conftest import Site


def _mismatch(site: Site, rule: str) -> tuple[Mismatch, str]:
    with session_factory(site.runtime.engine)() as s:
        m, emp = s.execute(
            select(Mismatch, Person.employee_no)
            .join(Person, Person.id == Mismatch.subject_id)
            .where(Mismatch.rule == rule, Mismatch.closed_at.is_(None))
            .order_by(Mismatch.id)
        ).first()
        return m, emp


def _set_state(site: Site, mismatch_id: int, state: str) -> None:
    with session_factory(site.runtime.engine)() as s, s.begin():
        s.execute(update(Mismatch).where(Mismatch.id == mismatch_id).values(state=state))


def _get(site: Site, mismatch_id: int) -> Mismatch:
    with session_factory(site.runtime.engine)() as s:
        return s.get(Mismatch, mismatch_id)


def _roster_row(site: Site, employee_no: str) -> dict:
    staff = next(p for p in site.enterprise.staff if p["employee_no"] == employee_no)
    return next(m for m in site.enterprise.party_members if m["id_number"] == staff["id_number"])


def test_ignored_stays_ignored_until_inputs_change_then_closes_when_data_agrees(site: Site) -> None:
    site.sync()
    m, emp = _mismatch(site, "join_date_conflict")
    _set_state(site, m.id, "ignored")

    site.sync()
    assert _get(site, m.id).state == "ignored"

    row = _roster_row(site, emp)
    row["joined_on"] = "2001-07-01"  # still different from HR, but a different disagreement
    site.rewrite()
    result = site.sync()
    assert result.status == "succeeded"
    again = _get(site, m.id)
    assert again.state == "open" and again.closed_at is None
    assert again.details["membership"]["joined_on"] == "2001-07-01"

    staff = next(p for p in site.enterprise.staff if p["employee_no"] == emp)
    row["joined_on"] = staff["party_joined_on"]
    site.rewrite()
    result = site.sync()
    closed = _get(site, m.id)
    assert closed.state == "closed" and closed.closed_at is not None
    assert result.mismatches["closed"] >= 1
    with session_factory(site.runtime.engine)() as s:
        feed = s.scalars(select(Change).where(Change.entity == "mismatch", Change.entity_id == m.id)
                         .order_by(Change.seq)).all()
    assert [c.op for c in feed] == ["create", "update", "update"]
    assert feed[-1].changed["state"] == ["open", "closed"]


def test_resolution_survives_later_syncs(site: Site) -> None:
    site.sync()
    m, _ = _mismatch(site, "branch_mismatch")
    _set_state(site, m.id, "resolved")
    site.sync()
    site.sync()
    assert _get(site, m.id).state == "resolved"
    with session_factory(site.runtime.engine)() as s:
        live = s.scalars(select(Mismatch).where(Mismatch.subject_key == m.subject_key,
                                                Mismatch.rule == "branch_mismatch",
                                                Mismatch.closed_at.is_(None))).all()
    assert [x.id for x in live] == [m.id]  # never a duplicate beside the resolved one
