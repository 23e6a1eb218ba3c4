"""Membership transfers in the officers' console (issue 7, item 6): `/transfers` lists them
(officers: those touching their subtree), `/transfers/<id>` shows the letter (ID number masked),
and admins and officers record the receipt or cancel an issued letter (audited); an officer outside
the subtree gets 404, an auditor 403."""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from records.models import AuditLog, Membership, PartyOrg, Person, Transfer
from tests.web.console_sites import ConsoleSite, build_console_site, fingerprint, login, make_app

ISSUED = dt.date(2025, 3, 1)


@pytest.fixture(scope="module")
def cs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleSite]:
    folder = tmp_path_factory.mktemp("transfers")
    site = build_console_site(folder / "src", f"sqlite:///{folder / 'console.db'}", staff=300, seed=31)
    yield site
    site.engine.dispose()


@pytest.fixture(scope="module")
def app(cs: ConsoleSite):
    return make_app(cs)


def _add_transfer(cs: ConsoleSite, codes: list[str], letter_no: str) -> int:
    """An issued transfer of a member of `codes` to another branch of `codes`."""
    with cs.session() as s, s.begin():
        branches = list(s.scalars(select(PartyOrg.code).where(
            PartyOrg.code.in_(codes), PartyOrg.kind == "branch", PartyOrg.active.is_(True)).order_by(PartyOrg.code)))
        m = s.scalars(select(Membership).where(Membership.party_org_code.in_(branches),
                                               Membership.active.is_(True)).order_by(Membership.id)).first()
        to = next(b for b in branches if b != m.party_org_code)
        t = Transfer(person_id=m.person_id, membership_id=m.id, kind="internal", from_party_org_code=m.party_org_code,
                     to_party_org_code=to, category=m.category, letter_no=letter_no, issued_on=ISSUED,
                     valid_until=ISSUED + dt.timedelta(days=90), status="issued", created_by="test",
                     dues_paid_until=dt.date(2025, 2, 1))
        s.add(t)
        s.flush()
        return t.id


@pytest.fixture(scope="module")
def ids(cs: ConsoleSite) -> dict[str, int]:
    return {"in": _add_transfer(cs, cs.officer_codes, "2025第0101号"),
            "in2": _add_transfer(cs, cs.officer_codes, "2025第0102号"),
            "out": _add_transfer(cs, cs.other_codes, "2025第0103号")}


def _transfer(cs: ConsoleSite, tid: int) -> Transfer:
    with cs.session() as s:
        return s.get(Transfer, tid)


def _audits(cs: ConsoleSite, action: str, tid: int) -> list[AuditLog]:
    with cs.session() as s:
        return list(s.scalars(select(AuditLog).where(AuditLog.action == action, AuditLog.target_id == str(tid))))


def test_list_follows_the_subtree_and_filters_by_status(app, ids) -> None:
    admin, officer = app.test_client(), app.test_client()
    login(admin, "admin")
    login(officer, "officer")
    everything = admin.get("/transfers").get_data(as_text=True)
    assert all(no in everything for no in ("2025第0101号", "2025第0102号", "2025第0103号"))
    assert 'href="/transfers"' in everything  # the nav entry
    mine = officer.get("/transfers")
    assert mine.status_code == 200
    text = mine.get_data(as_text=True)
    assert "2025第0101号" in text and "2025第0103号" not in text
    assert "2025第0101号" not in admin.get("/transfers?status=cancelled").get_data(as_text=True)
    assert "2025第0101号" in admin.get("/transfers?status=issued&page=1").get_data(as_text=True)
    assert admin.get("/transfers?status=bogus&page=-3").status_code == 200


def test_letter_page_masks_the_id_number(app, cs: ConsoleSite, ids) -> None:
    client = app.test_client()
    login(client, "admin")
    response = client.get(f"/transfers/{ids['in']}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "中国共产党党员组织关系介绍信" in page and "2025第0101号" in page and "2025-02" in page
    with cs.session() as s:
        person = s.get(Person, _transfer(cs, ids["in"]).person_id)
        masked, full = person.id_number_masked, (cs.site.runtime.cipher.decrypt(person.id_number_enc)
                                                 if person.id_number_enc else None)
    if masked:
        assert masked in page
    if full:
        assert full not in page
    assert client.get("/transfers/987654").status_code == 404


def test_officer_outside_the_subtree_gets_404(app, cs: ConsoleSite, ids) -> None:
    client = app.test_client()
    token = login(client, "officer")
    assert client.get(f"/transfers/{ids['in']}").status_code == 200
    assert client.get(f"/transfers/{ids['out']}").status_code == 404
    before = fingerprint(cs.engine)
    assert client.post(f"/transfers/{ids['out']}/receive", data={"csrf_token": token}).status_code == 404
    assert client.post(f"/transfers/{ids['out']}/cancel",
                       data={"csrf_token": token, "reason": "x"}).status_code == 404
    assert fingerprint(cs.engine) == before and _transfer(cs, ids["out"]).status == "issued"


def test_auditor_may_read_but_not_act(app, cs: ConsoleSite, ids) -> None:
    client = app.test_client()
    token = login(client, "auditor")
    page = client.get(f"/transfers/{ids['out']}")
    assert page.status_code == 200 and 'name="reason"' not in page.get_data(as_text=True)
    before = fingerprint(cs.engine)
    assert client.post(f"/transfers/{ids['in']}/receive", data={"csrf_token": token}).status_code == 403
    assert client.post(f"/transfers/{ids['in']}/cancel", data={"csrf_token": token, "reason": "x"}).status_code == 403
    assert fingerprint(cs.engine) == before


def test_receive_and_cancel_through_the_console(app, cs: ConsoleSite, ids) -> None:
    client = app.test_client()
    token = login(client, "officer")
    page = client.get(f"/transfers/{ids['in']}").get_data(as_text=True)
    assert re.search(r'action="/transfers/\d+/receive"', page) and 'name="reason"' in page
    # without the CSRF token: refused, nothing changes
    assert client.post(f"/transfers/{ids['in']}/receive", data={"received_on": "2025-03-10"}).status_code == 400
    # a receipt dated before the letter, or not a date: refused with a message
    early = client.post(f"/transfers/{ids['in']}/receive", data={"csrf_token": token, "received_on": "2025-02-01"},
                        follow_redirects=True)
    assert early.status_code == 200 and "回执日期不能早于开具日期" in early.get_data(as_text=True)
    assert client.post(f"/transfers/{ids['in']}/receive", data={"csrf_token": token, "received_on": "soon"},
                       follow_redirects=True).status_code == 200
    assert _transfer(cs, ids["in"]).status == "issued"
    done = client.post(f"/transfers/{ids['in']}/receive", data={"csrf_token": token, "received_on": "2025-03-10"})
    assert done.status_code == 303
    t = _transfer(cs, ids["in"])
    assert (t.status, t.received_on) == ("received", dt.date(2025, 3, 10))
    (audit,) = _audits(cs, "transfer.receive", ids["in"])
    assert audit.actor == "officer"
    shown = client.get(f"/transfers/{ids['in']}").get_data(as_text=True)
    assert "已回执" in shown and 'name="reason"' not in shown  # no forms once received
    # a received letter cannot be cancelled
    again = client.post(f"/transfers/{ids['in']}/cancel", data={"csrf_token": token, "reason": "x"},
                        follow_redirects=True)
    assert "只有已开具的介绍信" in again.get_data(as_text=True) and _transfer(cs, ids["in"]).status == "received"
    # cancel: a reason is required
    blank = client.post(f"/transfers/{ids['in2']}/cancel", data={"csrf_token": token, "reason": " "},
                        follow_redirects=True)
    assert "请填写作废理由" in blank.get_data(as_text=True) and _transfer(cs, ids["in2"]).status == "issued"
    cancelled = client.post(f"/transfers/{ids['in2']}/cancel", data={"csrf_token": token, "reason": "人员未调动"})
    assert cancelled.status_code == 303 and _transfer(cs, ids["in2"]).status == "cancelled"
    (audit,) = _audits(cs, "transfer.cancel", ids["in2"])
    assert audit.actor == "officer" and audit.details["reason"] == "人员未调动"
    listed = client.get("/transfers?status=cancelled").get_data(as_text=True)
    assert "2025第0102号" in listed and "2025第0101号" not in listed
