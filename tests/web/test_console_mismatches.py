"""The console's mismatch pages: detail with both lines, resolutions per rule (through the same
service as the API), queue filters and bulk actions, and who may do what (officers in their
subtree only, form tampering included; auditors read only)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import func, or_, select

from records.db import session_factory
from records.models import AuditLog, Membership, Mismatch, PartyOrg, Person, Transfer, User
from records.queries import subtree_codes
from tests.sync.conftest import Site, make_site
from web.auth import hash_password
from tests.conftest import app_for, csrf_token_in

PASSWORDS = {"admin": "admin-pass-1", "officer": "officer-pass-1", "auditor": "auditor-pass-1"}


@pytest.fixture(scope="module")
def synced(tmp_path_factory) -> Path:
    """One synced enterprise per module; each test works on its own copy of the database."""
    folder = tmp_path_factory.mktemp("console_mm")
    site = make_site(folder / "src", f"sqlite:///{folder / 'db.sqlite'}", staff=320, seed=37)
    assert site.sync().status == "succeeded"
    site.runtime.engine.dispose()
    return folder


@pytest.fixture
def site(synced: Path, tmp_path: Path) -> Site:
    import shutil

    shutil.copy(synced / "db.sqlite", tmp_path / "db.sqlite")
    site = make_site(tmp_path / "src", f"sqlite:///{tmp_path / 'db.sqlite'}", staff=320, seed=37)
    with session_factory(site.runtime.engine)() as s, s.begin():
        s.add(User(username="admin", password_hash=hash_password(PASSWORDS["admin"]), role="admin"))
        s.add(User(username="auditor", password_hash=hash_password(PASSWORDS["auditor"]), role="auditor"))
    return site


@pytest.fixture
def client(site: Site):
    app = app_for(site.runtime)
    return app.test_client()


def _session(site: Site):
    return session_factory(site.runtime.engine)()


def _login(client, username: str) -> None:
    page = client.get("/login").get_data(as_text=True)
    token = csrf_token_in(page)
    response = client.post("/login", data={"username": username, "password": PASSWORDS[username], "csrf_token": token})
    assert response.status_code == 302


def _csrf(client, path: str = "/mismatches") -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"|name="csrf_token" value="([^"]+)"',
                     client.get(path).get_data(as_text=True)).group(0).split('"')[-2]


def _officer(site: Site, branch: str) -> None:
    with _session(site) as s, s.begin():
        s.add(User(username="officer", password_hash=hash_password(PASSWORDS["officer"]), role="officer",
                   party_org_code=branch))


def _open(site: Site, rule: str | None, *where) -> Mismatch:
    with _session(site) as s:
        m = s.scalars(select(Mismatch).where(Mismatch.rule == rule if rule else Mismatch.rule.is_not(None),
                                             Mismatch.state == "open",
                                             Mismatch.closed_at.is_(None), *where).order_by(Mismatch.id)).first()
        assert m is not None, rule
        return m


def _post(client, mismatch_id: int, **form):
    return client.post(f"/mismatches/{mismatch_id}/resolve", data={"csrf_token": _csrf(client), **form})


def test_detail_shows_both_lines_expected_branch_and_forms(client, site: Site) -> None:
    m = _open(site, "branch_mismatch")
    with _session(site) as s:
        person = s.get(Person, m.subject_id)
        expected_name = s.scalar(select(PartyOrg.name).where(PartyOrg.code == m.other_party_org_code))
        registered_name = s.scalar(select(PartyOrg.name).where(PartyOrg.code == m.party_org_code))
    _login(client, "admin")
    response = client.get(f"/mismatches/{m.id}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "业务线" in html and "党务线" in html
    assert person.name in html and person.employee_no in html
    assert person.id_number_masked in html and "*" in person.id_number_masked  # masked, never the number
    assert expected_name in html and registered_name in html
    assert m.details["expected"]["because_covers"] in html  # which covered unit decided it
    assert 'value="transfer"' in html and 'value="exception"' in html and 'value="resolve"' in html
    assert 'value="create_membership"' not in html
    assert html.count('name="csrf_token"') >= 3
    # The queue links to it.
    assert f'href="/mismatches/{m.id}"' in client.get("/mismatches?rule=branch_mismatch&sort=opened").get_data(as_text=True)


def test_each_rule_action_through_the_console(client, site: Site) -> None:
    _login(client, "admin")
    # branch_mismatch → transfer (never without the CSRF token)
    m = _open(site, "branch_mismatch")
    assert client.post(f"/mismatches/{m.id}/resolve", data={"action": "transfer", "reason": "x"}).status_code == 400
    response = _post(client, m.id, action="transfer", target_party_org=m.other_party_org_code, reason="调整支部",
                     letter_no="L-1")
    assert response.status_code == 302, response.get_data(as_text=True)
    with _session(site) as s:
        assert s.get(Mismatch, m.id).state == "resolved"
        transfer = s.scalars(select(Transfer).where(Transfer.mismatch_id == m.id)).one()
        assert transfer.to_party_org_code == m.other_party_org_code and transfer.created_by == "admin"
        assert s.scalars(select(AuditLog).where(AuditLog.action == "mismatch.transfer")).one().actor == "admin"
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "L-1" in html and "调整支部" in html  # transfer and audit in the page's history

    # missing_membership → create_membership
    m = _open(site, "missing_membership", Mismatch.party_org_code.is_not(None))
    assert _post(client, m.id, action="create_membership", reason="补录").status_code == 302
    with _session(site) as s:
        assert s.scalar(select(func.count()).select_from(Membership).where(
            Membership.person_id == m.subject_id, Membership.status == "active")) == 1

    # orphan_membership → transfer_out (destination required)
    m = _open(site, "orphan_membership")
    assert _post(client, m.id, action="transfer_out", reason="调离").status_code == 400
    assert _post(client, m.id, action="transfer_out", reason="调离", to_org_name="外单位党委").status_code == 302
    with _session(site) as s:
        assert s.get(Mismatch, m.id).resolution == "transfer_out"

    # join_date_conflict → adopt_hr; status_conflict → exception with expiry
    m = _open(site, "join_date_conflict")
    assert _post(client, m.id, action="adopt_hr", reason="以人事为准").status_code == 302
    m = _open(site, "status_conflict")
    assert _post(client, m.id, action="exception", reason="待核实", expires_on="2099-01-01").status_code == 302
    with _session(site) as s:
        ignored = s.get(Mismatch, m.id)
        assert ignored.state == "ignored" and ignored.expires_at.year == 2099

    # uncovered_unit → a link to the coverage editor, plus resolve
    m = _open(site, "uncovered_unit")
    html = client.get(f"/mismatches/{m.id}").get_data(as_text=True)
    assert f'href="/coverage?unit={m.org_unit_code}"' in html
    assert _post(client, m.id, action="resolve", reason="已在覆盖编辑中处理").status_code == 302

    # ambiguous_match → link_person
    m = _open(site, "ambiguous_match")
    candidate = next(c for c in m.details["candidates"] if c)
    assert _post(client, m.id, action="link_person", person_id=candidate, reason="核对身份证").status_code == 302
    with _session(site) as s:
        assert s.get(Mismatch, m.id).resolution == "link_person"

    # an action that does not fit the rule changes nothing
    m = _open(site, "branch_mismatch")
    assert _post(client, m.id, action="mark_deceased", reason="x").status_code == 400
    assert _open(site, "branch_mismatch").id == m.id


def _outside_branch(site: Site, inside: set[str]) -> str:
    with _session(site) as s:
        return s.scalars(select(PartyOrg.code).where(PartyOrg.kind == "branch", PartyOrg.retirees.is_(False),
                                                     PartyOrg.code.not_in(inside)).order_by(PartyOrg.code)).first()


def test_officer_limited_to_subtree_including_form_tampering(client, site: Site) -> None:
    m = _open(site, "branch_mismatch")
    _officer(site, m.other_party_org_code)  # the expected branch is the officer's
    outside = _outside_branch(site, {m.party_org_code, m.other_party_org_code})
    with _session(site) as s:
        foreign = s.scalars(select(Mismatch).where(
            Mismatch.closed_at.is_(None), Mismatch.party_org_code.is_not(None),
            Mismatch.party_org_code != m.other_party_org_code,
            or_(Mismatch.other_party_org_code.is_(None), Mismatch.other_party_org_code != m.other_party_org_code))).first()
    _login(client, "officer")
    assert client.get(f"/mismatches/{m.id}").status_code == 200
    assert client.get(f"/mismatches/{foreign.id}").status_code == 404
    assert _post(client, foreign.id, action="resolve", reason="x").status_code == 404
    # Tampering the target branch to another subtree: refused, nothing changes.
    assert _post(client, m.id, action="transfer", target_party_org=outside, reason="x").status_code == 404
    with _session(site) as s:
        assert s.get(Mismatch, m.id).state == "open"
        assert s.scalars(select(Transfer)).all() == []
        assert s.scalars(select(AuditLog).where(AuditLog.action.like("mismatch.%"))).all() == []
    # Inside: fine.
    assert _post(client, m.id, action="transfer", target_party_org=m.other_party_org_code, reason="ok").status_code == 302
    # Bulk with one id outside the subtree: refused as a whole.
    mine = _open(site, None, or_(Mismatch.party_org_code == m.other_party_org_code,
                                              Mismatch.other_party_org_code == m.other_party_org_code))
    response = client.post("/mismatches/bulk", data={"csrf_token": _csrf(client), "action": "resolve", "reason": "批量",
                                                     "ids": [mine.id, foreign.id]})
    assert response.status_code == 404
    with _session(site) as s:
        assert s.get(Mismatch, mine.id).state == "open" and s.get(Mismatch, foreign.id).state == foreign.state


def test_bulk_actions_and_filters(client, site: Site) -> None:
    _login(client, "admin")
    with _session(site) as s:
        ids = s.scalars(select(Mismatch.id).where(Mismatch.rule == "branch_mismatch", Mismatch.state == "open",
                                                  Mismatch.closed_at.is_(None)).order_by(Mismatch.id).limit(3)).all()
        branch = s.scalar(select(Mismatch.party_org_code).where(Mismatch.id == ids[0]))
        parent = s.scalar(select(PartyOrg.parent_code).where(PartyOrg.code == branch))
        subtree = subtree_codes(s, parent)
        under_parent = s.scalar(select(func.count()).select_from(Mismatch).where(
            Mismatch.state == "open", Mismatch.closed_at.is_(None),
            or_(Mismatch.party_org_code.in_(subtree), Mismatch.other_party_org_code.in_(subtree))))
        assert 0 < under_parent < s.scalar(select(func.count()).select_from(Mismatch).where(Mismatch.state == "open"))
    assert len(ids) == 3
    # party_org filter includes the subtree
    html = client.get(f"/mismatches?party_org={parent}").get_data(as_text=True)
    assert f"共 {under_parent}" in html and html.count('<li class="item') == min(under_parent, 50)
    html = client.get("/mismatches?source=roster&rule=orphan_membership").get_data(as_text=True)
    assert html.count('<li class="item') >= 1
    assert client.get("/mismatches?source=no-such-source").get_data(as_text=True).count('<li class="item') == 0

    assert client.post("/mismatches/bulk", data={"csrf_token": _csrf(client), "action": "exception",
                                                 "ids": ids}).status_code == 400  # reason required
    response = client.post("/mismatches/bulk", data={"csrf_token": _csrf(client), "action": "exception",
                                                     "reason": "借调人员", "expires_on": "2099-06-30", "ids": ids})
    assert response.status_code == 302 and "done=3" in response.headers["Location"]
    with _session(site) as s:
        rows = s.scalars(select(Mismatch).where(Mismatch.id.in_(ids))).all()
        assert {m.state for m in rows} == {"ignored"} and {m.resolution_note for m in rows} == {"借调人员"}
        assert s.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "mismatch.resolve")) == 3
    assert client.post("/mismatches/bulk", data={"action": "resolve", "reason": "x", "ids": ids}).status_code == 400


def test_auditor_reads_but_cannot_post(client, site: Site) -> None:
    m = _open(site, "branch_mismatch")
    _login(client, "auditor")
    html = client.get(f"/mismatches/{m.id}").get_data(as_text=True)
    assert "业务线" in html and 'name="action"' not in html
    assert 'name="ids"' not in client.get("/mismatches").get_data(as_text=True)
    token = _csrf(client)
    assert client.post(f"/mismatches/{m.id}/resolve", data={"csrf_token": token, "action": "resolve",
                                                             "reason": "x"}).status_code == 403
    assert client.post("/mismatches/bulk", data={"csrf_token": token, "action": "resolve", "reason": "x",
                                                 "ids": [m.id]}).status_code == 403
    with _session(site) as s:
        assert s.get(Mismatch, m.id).state == "open"


def test_hostile_source_data_is_escaped_on_the_detail_page(client, site: Site) -> None:
    m = _open(site, "branch_mismatch")
    with _session(site) as s, s.begin():
        s.get(Person, m.subject_id).name = '<script>alert("x")</script>\u202e' + "长" * 300
        s.get(Person, m.subject_id).position = '"><img src=x onerror=alert(1)>'
    _login(client, "admin")
    html = client.get(f"/mismatches/{m.id}").get_data(as_text=True)
    assert "<script>alert" not in html and "&lt;script&gt;" in html and "<img src=x" not in html


def test_api_resolution_with_an_action_uses_the_same_service(client, site: Site) -> None:
    from web.tokens import create_token

    m = _open(site, "branch_mismatch")
    with _session(site) as s, s.begin():
        secret = create_token(s, "writer", ["read", "write:resolutions"]).secret
        scoped = create_token(s, "scoped", ["read", "write:resolutions"], m.other_party_org_code).secret
    path = f"/api/v1/mismatches/{m.id}/resolution"
    outside = _outside_branch(site, {m.party_org_code, m.other_party_org_code})
    # A subtree token cannot send the member to a branch outside its subtree.
    response = client.post(path, json={"state": "resolved", "reason": "x", "action": "transfer",
                                       "target_party_org": outside}, headers={"Authorization": f"Bearer {scoped}"})
    assert response.status_code == 404 and response.get_json()["error"]["field"] == "target_party_org"
    # exception goes with ignored, the other actions with resolved
    response = client.post(path, json={"state": "ignored", "reason": "x", "action": "transfer"},
                           headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 422 and response.get_json()["error"]["field"] == "action"
    response = client.post(path, json={"state": "resolved", "reason": "调整", "action": "transfer", "letter_no": "A-9"},
                           headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["state"] == "resolved" and body["resolution"] == "transfer" and body["resolved_by"] == "token:writer"
    with _session(site) as s:
        membership = s.scalars(select(Membership).where(Membership.person_id == m.subject_id,
                                                        Membership.status == "active")).one()
        assert membership.party_org_code == m.other_party_org_code
        assert s.scalars(select(Transfer.letter_no).where(Transfer.mismatch_id == m.id)).one() == "A-9"


def test_every_rule_has_a_working_detail_page(client, site: Site) -> None:
    with _session(site) as s:
        firsts = s.execute(select(Mismatch.rule, func.min(Mismatch.id)).group_by(Mismatch.rule)).all()
    assert {"branch_mismatch", "missing_membership", "orphan_membership", "ambiguous_match"} <= {r for r, _ in firsts}
    _login(client, "admin")
    client.get("/lang/en")
    for rule, mismatch_id in firsts:
        response = client.get(f"/mismatches/{mismatch_id}")
        assert response.status_code == 200, rule
        assert "Business line" in response.get_data(as_text=True) or rule not in (
            "branch_mismatch", "missing_membership", "orphan_membership", "status_conflict", "join_date_conflict")
    assert client.get("/mismatches/999999").status_code == 404
