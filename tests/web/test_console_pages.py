"""The console's read and admin pages: dashboard, people, party orgs, exports, audit, users,
language and log-in throttling — numbers checked against SQL, officers held to their subtree."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, or_, select, true, update

from records.db import session_factory
from records.models import (
    AuditLog, ExpectedBranch, Membership, Mismatch, OrgUnit, PartyOrg, Person, Transfer, User, utcnow,
)
from records.queries import mismatch_state_filter, subtree_codes
from tests.sync.conftest import Site, make_site
from records.queries import covered_unit_codes
from web.auth import hash_password
from tests.conftest import app_for, csrf_token_in

OFFICER_ROOT = "P1001"  # a company committee of the generated enterprise (seed 29)


@pytest.fixture(scope="module")
def synced(tmp_path_factory) -> Site:
    """One synced enterprise for the read-only tests of this module (a sync costs seconds)."""
    folder = tmp_path_factory.mktemp("pages")
    site = make_site(folder / "src", f"sqlite:///{folder / 'dualline.db'}", staff=350, seed=29)
    assert site.sync().status == "succeeded"
    with session_factory(site.runtime.engine)() as s, s.begin():
        s.add(User(username="admin", password_hash=hash_password("admin-pass-1"), role="admin"))
        s.add(User(username="auditor", password_hash=hash_password("auditor-pass-1"), role="auditor"))
        s.add(User(username="officer", password_hash=hash_password("officer-pass-1"), role="officer",
                   party_org_code=OFFICER_ROOT))
        # history for the trend: one mismatch opened 5 days ago, one closed today
        first, second = s.scalars(select(Mismatch).order_by(Mismatch.id).limit(2)).all()
        first.opened_at = utcnow() - dt.timedelta(days=5)
        second.closed_at = utcnow()
    return site


def _app(site: Site, **config):
    return app_for(site.runtime, **config)


@pytest.fixture(scope="module")
def app(synced: Site):
    return _app(synced)


def _token(client) -> str:
    page = client.get("/login").get_data(as_text=True)
    return csrf_token_in(page)


def login(client, username: str, password: str | None = None, **kwargs):
    return client.post("/login", data={"username": username, "password": password or f"{username}-pass-1",
                                       "csrf_token": _token(client)}, **kwargs)


def logged_in(app, username: str):
    client = app.test_client()
    assert login(client, username).status_code == 302
    return client


def csrf(client) -> str:
    """The session's CSRF token (made when a page with a form is first rendered)."""
    client.get("/login")
    with client.session_transaction() as session:
        return session["csrf"]


def session_for(site: Site):
    return session_factory(site.runtime.engine)()


def officer_codes(site: Site) -> list[str]:
    with session_for(site) as s:
        return subtree_codes(s, OFFICER_ROOT)


def visible_mismatch(codes: list[str] | None):
    """The queue's officer rule: mismatches naming an org of the subtree (None: all)."""
    if codes is None:
        return true()
    return or_(Mismatch.party_org_code.in_(codes), Mismatch.other_party_org_code.in_(codes))


# --- dashboard -----------------------------------------------------------------------------


def _by_rule(html: str) -> dict[str, int]:
    return {rule: int(n) for rule, n in re.findall(
        r'href="/mismatches\?rule=(\w+)">[^<]*</a></td>\s*<td class="num"[^>]*>(\d+)</td>', html)}


@pytest.mark.parametrize("who", ["admin", "officer"])
def test_dashboard_numbers_equal_sql_counts(who: str, app, synced: Site) -> None:
    codes = officer_codes(synced) if who == "officer" else None
    html = logged_in(app, who).get("/").get_data(as_text=True)
    with session_for(synced) as s:
        expected = dict(s.execute(select(Mismatch.rule, func.count()).where(
            mismatch_state_filter("open"), visible_mismatch(codes)).group_by(Mismatch.rule)).all())
        unclosed = s.scalar(select(func.count()).select_from(Mismatch).where(
            Mismatch.closed_at.is_(None), visible_mismatch(codes)))
        start = dt.datetime.combine(utcnow().date() - dt.timedelta(days=29), dt.time())
        opened = s.scalar(select(func.count()).select_from(Mismatch).where(
            Mismatch.opened_at >= start, visible_mismatch(codes)))
        closed = s.scalar(select(func.count()).select_from(Mismatch).where(
            Mismatch.closed_at >= start, visible_mismatch(codes)))
        first_day_end = start + dt.timedelta(days=1)
        unclosed_first_day = s.scalar(select(func.count()).select_from(Mismatch).where(
            visible_mismatch(codes), Mismatch.opened_at < first_day_end,
            Mismatch.closed_at.is_(None) | (Mismatch.closed_at >= first_day_end)))
        units = s.scalar(select(func.count()).select_from(OrgUnit).where(OrgUnit.active.is_(True)))
        covered = s.scalar(select(func.count()).select_from(ExpectedBranch).join(
            OrgUnit, OrgUnit.code == ExpectedBranch.org_unit_code).where(OrgUnit.active.is_(True)))
    assert expected and _by_rule(html) == expected
    assert f"<b>{sum(expected.values())}</b>" in html
    option = json.loads(re.search(r'<script type="application/json" id="trend-option">(.*?)</script>', html, re.S).group(1))
    opened_series, closed_series, unclosed_series = (series["data"] for series in option["series"])
    assert len(opened_series) == 30
    assert sum(opened_series) == opened and sum(closed_series) == closed
    assert closed >= 1 or who == "officer"  # the fixture closed one (outside the officer's subtree)
    assert unclosed_series[-1] == unclosed and unclosed_series[0] == unclosed_first_day
    if who == "admin":
        assert f"<b>{covered}</b>" in html and f"<b>{units - covered}</b>" in html
        assert 0 < covered < units


def test_dashboard_runs_and_top_orgs(app, synced: Site) -> None:
    html = logged_in(app, "admin").get("/?days=90").get_data(as_text=True)
    for source in synced.runtime.config.sources:
        assert f"<bdi>{source}</bdi>" in html
    assert 'href="/runs/1">#1</a>' in html and "成功" in html
    option = re.search(r'id="trend-option">(.*?)</script>', html, re.S).group(1)
    assert len(json.loads(option)["xAxis"]["data"]) == 90
    officer = logged_in(app, "officer").get("/").get_data(as_text=True)
    listed = re.findall(r'<a href="/orgs/([^"]+)"><bdi>', officer.split('id="by-org"')[1].split("</table>")[0])
    assert listed and set(listed) <= set(officer_codes(synced))


# --- people --------------------------------------------------------------------------------


def test_people_search_by_name_employee_no_and_id_number(app, synced: Site) -> None:
    with session_for(synced) as s:
        person = s.scalar(select(Person).where(Person.id_number_enc.is_not(None), Person.employee_no.is_not(None),
                                               Person.org_unit_code.in_(
                                                   covered_unit_codes(s, subtree_codes(s, OFFICER_ROOT))))
                          .order_by(Person.id))
        id_number = synced.runtime.cipher.decrypt(person.id_number_enc)
        same_name = s.scalar(select(func.count()).select_from(Person).where(Person.name.contains(person.name[1:])))
    admin = logged_in(app, "admin")
    link = f'href="/people/{person.id}"'
    by_name = admin.get(f"/people?q={person.name[1:]}").get_data(as_text=True)
    assert link in by_name and f"共 {same_name}" in by_name
    by_number = admin.get(f"/people?q={person.employee_no}").get_data(as_text=True)
    assert link in by_number
    assert link in admin.get(f"/people?q={id_number}").get_data(as_text=True)
    assert link not in admin.get("/people?q=999999190001010000").get_data(as_text=True)
    officer = logged_in(app, "officer")
    assert link in officer.get(f"/people?q={person.employee_no}").get_data(as_text=True)
    refused = officer.get(f"/people?q={id_number}").get_data(as_text=True)
    assert link not in refused and "按身份证号查询需要查看敏感信息的权限" in refused


def test_officer_sees_only_people_of_the_subtree(app, synced: Site) -> None:
    with session_for(synced) as s:
        codes = subtree_codes(s, OFFICER_ROOT)
        units = covered_unit_codes(s, codes)
        registered = select(Membership.person_id).where(Membership.party_org_code.in_(codes))
        visible = s.scalar(select(func.count()).select_from(Person).where(
            or_(Person.id.in_(registered), Person.org_unit_code.in_(units))))
        outside = s.scalar(select(Person.id).where(Person.id.not_in(registered), Person.org_unit_code.not_in(units))
                           .order_by(Person.id))
        everyone = s.scalar(select(func.count()).select_from(Person))
    assert 0 < visible < everyone
    officer = logged_in(app, "officer")
    assert f"共 {visible}" in officer.get("/people").get_data(as_text=True)
    assert officer.get(f"/people/{outside}").status_code == 404
    assert logged_in(app, "auditor").get(f"/people/{outside}").status_code == 200


def test_person_page_shows_provenance_masked_and_audited_reveal(app, synced: Site) -> None:
    with session_for(synced) as s:
        person = s.scalar(select(Person).join(Membership, Membership.person_id == Person.id)
                          .where(Person.id_number_enc.is_not(None), Membership.active.is_(True)).order_by(Person.id))
        branch = s.scalar(select(PartyOrg.name).join(Membership, Membership.party_org_code == PartyOrg.code)
                          .where(Membership.person_id == person.id))
        id_number = synced.runtime.cipher.decrypt(person.id_number_enc)
    admin = logged_in(app, "admin")
    html = admin.get(f"/people/{person.id}").get_data(as_text=True)
    assert person.name in html and branch in html
    assert re.search(r'data-field="name">.*?<span class="prov"[^>]*>oa</span>', html, re.S)
    assert person.id_number_masked in html and id_number not in html
    assert admin.post(f"/people/{person.id}/reveal", data={"reason": "核对"}).status_code == 400  # no CSRF
    revealed = admin.post(f"/people/{person.id}/reveal", data={"reason": "核对", "csrf_token": csrf(admin)})
    assert revealed.status_code == 200 and id_number in revealed.get_data(as_text=True)
    assert revealed.headers["Cache-Control"] == "no-store"
    with session_for(synced) as s:
        audit = s.scalars(select(AuditLog).where(AuditLog.action == "person.reveal",
                                                 AuditLog.target_id == str(person.id))).all()
    assert len(audit) == 1 and audit[0].actor == "admin" and audit[0].details["reason"] == "核对"
    auditor = logged_in(app, "auditor")
    assert auditor.post(f"/people/{person.id}/reveal", data={"csrf_token": csrf(auditor)}).status_code == 403


# --- party orgs ----------------------------------------------------------------------------


def test_org_page_members_coverage_and_mismatches(app, synced: Site) -> None:
    with session_for(synced) as s:
        code = s.scalar(select(Membership.party_org_code).where(Membership.active.is_(True))
                        .group_by(Membership.party_org_code).order_by(func.count().desc()))
        members = s.scalar(select(func.count()).select_from(Membership).where(
            Membership.party_org_code == code, Membership.active.is_(True), Membership.status == "active"))
        open_count = s.scalar(select(func.count()).select_from(Mismatch).where(
            mismatch_state_filter("open"), or_(Mismatch.party_org_code == code, Mismatch.other_party_org_code == code)))
        covered = s.execute(select(OrgUnit.code, OrgUnit.name).join(
            ExpectedBranch, ExpectedBranch.via_unit_code == OrgUnit.code).where(ExpectedBranch.branch_code == code)).first()
        org = s.scalar(select(PartyOrg).where(PartyOrg.code == code))
    html = logged_in(app, "admin").get(f"/orgs/{code}").get_data(as_text=True)
    assert org.name in html and f"共 {members}" in html and f"<b>{open_count}</b>" in html
    if covered:
        assert covered.name in html
    if org.secretary:
        assert org.secretary in html
    with session_for(synced) as s:
        below = s.scalar(select(func.count()).select_from(Membership).where(
            Membership.party_org_code.in_(subtree_codes(s, OFFICER_ROOT)), Membership.active.is_(True),
            Membership.status == "active"))
    committee = logged_in(app, "admin").get(f"/orgs/{OFFICER_ROOT}").get_data(as_text=True)
    assert below > 0 and f"<b>{below}</b><span>党员(含下级组织)</span>" in committee
    tree = logged_in(app, "admin").get("/orgs").get_data(as_text=True)
    assert 'id="org-tree"' in tree and ("<details>" in tree) == ("hx-get" in tree)


def test_officer_org_tree_and_pages_stay_in_the_subtree(app, synced: Site) -> None:
    codes = officer_codes(synced)
    with session_for(synced) as s:
        outside = s.scalar(select(PartyOrg.code).where(PartyOrg.code.not_in(codes)).order_by(PartyOrg.code))
    officer = logged_in(app, "officer")
    tree = officer.get("/orgs").get_data(as_text=True)
    shown = set(re.findall(r'href="/orgs/([^"/]+)"', tree))
    assert OFFICER_ROOT in shown and shown <= set(codes)
    assert officer.get(f"/orgs/{outside}").status_code == 404
    with session_for(synced) as s:
        children = s.scalars(select(PartyOrg.code).where(PartyOrg.parent_code == OFFICER_ROOT)).all()
    fragment = officer.get(f"/orgs/{OFFICER_ROOT}/children").get_data(as_text=True)
    assert children and set(re.findall(r'href="/orgs/([^"/]+)"', fragment)) == set(children)
    assert "<html" not in fragment  # a fragment for htmx, not a page
    assert officer.get(f"/orgs/{outside}/children").status_code == 404
    found = officer.get("/orgs?q=党").get_data(as_text=True)
    assert set(re.findall(r'href="/orgs/([^"/]+)"', found)) <= set(codes)


# --- exports -------------------------------------------------------------------------------


def _csv(body: bytes) -> list[list[str]]:
    assert body.startswith(b"\xef\xbb\xbf"), "the CSV must start with a UTF-8 BOM"
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))


def _xlsx(body: bytes) -> list[list]:
    book = load_workbook(io.BytesIO(body), read_only=True)
    return [list(row) for row in book.worksheets[0].iter_rows(values_only=True)]


@pytest.fixture
def fresh(tmp_path: Path) -> Site:
    """A site of its own, for tests that change data."""
    site = make_site(tmp_path / "src", f"sqlite:///{tmp_path / 'dualline.db'}", staff=300, seed=29)
    assert site.sync().status == "succeeded"
    with session_factory(site.runtime.engine)() as s, s.begin():
        s.add(User(username="admin", password_hash=hash_password("admin-pass-1"), role="admin"))
        s.add(User(username="officer", password_hash=hash_password("officer-pass-1"), role="officer",
                   party_org_code=OFFICER_ROOT))
    return site


def test_mismatch_exports_rows_filters_and_injection_guard(fresh: Site) -> None:
    app = _app(fresh)
    with session_for(fresh) as s, s.begin():
        target = s.scalar(select(Mismatch).where(mismatch_state_filter("open")).order_by(Mismatch.id))
        target.subject_label = '=HYPERLINK("http://evil.example","x")'
        total = s.scalar(select(func.count()).select_from(Mismatch).where(mismatch_state_filter("open")))
        branch = s.scalar(select(func.count()).select_from(Mismatch).where(
            mismatch_state_filter("open"), Mismatch.rule == "branch_mismatch"))
        codes = subtree_codes(s, OFFICER_ROOT)
        mine = s.scalar(select(func.count()).select_from(Mismatch).where(
            mismatch_state_filter("open"), visible_mismatch(codes)))
        everything = s.scalar(select(func.count()).select_from(Mismatch))
    admin = logged_in(app, "admin")
    rows = _csv(admin.get("/exports/mismatches.csv").data)
    assert rows[0][:3] == ["编号", "差异类型", "规则"] and "应在支部" in rows[0] and "员工编号" in rows[0]
    assert len(rows) - 1 == total
    assert ['\'=HYPERLINK("http://evil.example","x")'] == [r[5] for r in rows[1:] if r[0] == str(target.id)]
    sheet = _xlsx(admin.get("/exports/mismatches.xlsx").data)
    assert sheet[0] == rows[0] and len(sheet) - 1 == total
    assert [r[5] for r in sheet[1:] if r[0] == target.id] == ['\'=HYPERLINK("http://evil.example","x")']
    assert len(_csv(admin.get("/exports/mismatches.csv?rule=branch_mismatch").data)) - 1 == branch
    assert len(_xlsx(admin.get("/exports/mismatches.xlsx?state=all").data)) - 1 == everything
    id_column = rows[0].index("身份证号(脱敏)")
    assert all("*" in r[id_column] for r in rows[1:] if r[id_column])
    officer = logged_in(app, "officer")
    assert 0 < mine < total
    assert len(_csv(officer.get("/exports/mismatches.csv").data)) - 1 == mine
    assert len(_xlsx(officer.get("/exports/mismatches.xlsx").data)) - 1 == mine
    with session_for(fresh) as s:
        outside = s.scalar(select(PartyOrg.code).where(PartyOrg.code.not_in(codes)))
    assert officer.get(f"/exports/mismatches.csv?party_org={outside}").status_code == 404
    with session_for(fresh) as s:
        exports = s.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "export.mismatches"))
    assert exports == 6


def test_transfer_exports_pending_and_recorded(fresh: Site) -> None:
    app = _app(fresh)
    with session_for(fresh) as s, s.begin():
        pending = s.scalars(select(Mismatch).where(mismatch_state_filter("open"), Mismatch.rule == "branch_mismatch")
                            .order_by(Mismatch.id)).all()
        assert len(pending) >= 2
        done = pending[0]
        membership = s.scalar(select(Membership).where(Membership.person_id == done.subject_id))
        s.add(Transfer(person_id=done.subject_id, membership_id=membership.id, kind="internal",
                       from_party_org_code=done.party_org_code, to_party_org_code=done.other_party_org_code,
                       category="full", issued_on=dt.date(2026, 1, 5), valid_until=dt.date(2026, 4, 5),
                       letter_no="2026第0001号", status="issued", mismatch_id=done.id, created_by="admin"))
    admin = logged_in(app, "admin")
    rows = _csv(admin.get("/exports/transfers.csv").data)
    assert rows[0][:4] == ["序号", "状态", "转接类型", "姓名"]
    assert [r[1] for r in rows[1:]].count("已开具") == 1 and [r[1] for r in rows[1:]].count("待转接") == len(pending) - 1
    issued = next(r for r in rows[1:] if r[1] == "已开具")
    assert issued[3] == done.subject_label and "2026第0001号" in issued and "*" in issued[7]
    sheet = _xlsx(admin.get("/exports/transfers.xlsx?status=pending").data)
    assert len(sheet) - 1 == len(pending) - 1 and all(r[1] == "待转接" for r in sheet[1:])


# --- audit and users -----------------------------------------------------------------------


def test_users_page_create_deactivate_and_audit(fresh: Site) -> None:
    app = _app(fresh)
    admin = logged_in(app, "admin")
    assert "officer" in admin.get("/users").get_data(as_text=True)
    form = {"username": "wang", "role": "officer", "party_org_code": OFFICER_ROOT, "password": "wang-pass-1"}
    assert admin.post("/users", data={**form, "csrf_token": csrf(admin)}).status_code == 302
    assert "用户名已存在" in admin.post("/users", data={**form, "csrf_token": csrf(admin)},
                                      follow_redirects=True).get_data(as_text=True)
    short = {**form, "username": "li", "password": "short"}
    assert "密码至少8位" in admin.post("/users", data={**short, "csrf_token": csrf(admin)},
                                     follow_redirects=True).get_data(as_text=True)
    no_org = {**form, "username": "zhao", "party_org_code": "NO-SUCH-ORG"}
    assert "党组织编码不存在" in admin.post("/users", data={**no_org, "csrf_token": csrf(admin)},
                                        follow_redirects=True).get_data(as_text=True)
    with session_for(fresh) as s:
        wang = s.scalar(select(User).where(User.username == "wang"))
        me = s.scalar(select(User).where(User.username == "admin"))
        assert s.scalar(select(func.count()).select_from(User).where(User.username.in_(("li", "zhao")))) == 0
    assert wang.role == "officer" and wang.party_org_code == OFFICER_ROOT and wang.password_hash.startswith("$argon2")
    assert login(app.test_client(), "wang", "wang-pass-1").status_code == 302
    admin.post(f"/users/{wang.id}/active", data={"active": "0", "csrf_token": csrf(admin)})
    assert login(app.test_client(), "wang", "wang-pass-1").status_code == 401
    refused = admin.post(f"/users/{me.id}/active", data={"active": "0", "csrf_token": csrf(admin)},
                         follow_redirects=True).get_data(as_text=True)
    assert "不能停用自己的账号" in refused
    admin.post(f"/users/{wang.id}/active", data={"active": "1", "csrf_token": csrf(admin)})
    admin.post(f"/users/{wang.id}/password", data={"password": "new-pass-123", "csrf_token": csrf(admin)})
    admin.post(f"/users/{wang.id}/role", data={"role": "auditor", "csrf_token": csrf(admin)})
    assert login(app.test_client(), "wang", "new-pass-123").status_code == 302
    with session_for(fresh) as s:
        wang = s.get(User, wang.id)
        assert wang.active and wang.role == "auditor" and wang.party_org_code is None
        assert s.get(User, me.id).active
        actions = s.scalars(select(AuditLog.action).where(AuditLog.target_id == "wang", AuditLog.actor == "admin")
                            .order_by(AuditLog.id)).all()
    assert actions == ["user.create", "user.deactivate", "user.reactivate", "user.password_reset", "user.role"]
    officer = logged_in(app, "officer")
    assert officer.get("/users").status_code == 403 and officer.get("/audit").status_code == 403
    assert officer.post("/users", data={**form, "username": "x1", "csrf_token": csrf(officer)}).status_code == 403

    page = admin.get("/audit?action=user.").get_data(as_text=True)
    assert "共 5" in page and "<code>user.deactivate</code>" in page and "<code>login</code>" not in page
    today = utcnow().date().isoformat()
    assert "共 0" in admin.get("/audit?to=2000-01-01").get_data(as_text=True)
    by_actor = admin.get(f"/audit?actor=admin&action=login&from={today}").get_data(as_text=True)
    assert "<code>login</code>" in by_actor and "<code>user.create</code>" not in by_actor


# --- language, throttling, cookies ---------------------------------------------------------


def test_language_follows_accept_language_then_the_switch(app) -> None:
    english = app.test_client()
    assert "Log in" in english.get("/login", headers={"Accept-Language": "en-US,en;q=0.9"}).get_data(as_text=True)
    chinese = app.test_client()
    assert "登录" in chinese.get("/login", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}).get_data(as_text=True)
    chinese.get("/lang/en")
    assert "Log in" in chinese.get("/login").get_data(as_text=True)
    english.get("/lang/zh")
    assert "登录" in english.get("/login", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert login(english, "admin").status_code == 302
    page = english.get("/").get_data(as_text=True)
    assert "仪表盘" in page and 'lang="zh-CN"' in page


def test_login_throttled_after_five_failures(fresh: Site) -> None:
    app = _app(fresh)
    attacker = app.test_client()
    for _ in range(5):
        assert login(attacker, "admin", "wrong-password").status_code == 401
    refused = login(attacker, "admin", "admin-pass-1")
    assert refused.status_code == 429 and "登录失败次数过多" in refused.get_data(as_text=True)
    elsewhere = app.test_client()
    assert login(elsewhere, "admin", environ_base={"REMOTE_ADDR": "10.0.0.9"}).status_code == 302
    with session_for(fresh) as s, s.begin():
        assert s.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "login.failed")) == 5
        s.execute(update(AuditLog).where(AuditLog.action == "login.failed")
                  .values(at=utcnow() - dt.timedelta(minutes=16)))
    assert login(attacker, "admin", "admin-pass-1").status_code == 302


@pytest.mark.parametrize("setting, base_url, secure", [
    ("auto", "http://localhost", False), ("auto", "https://localhost", True),
    ("true", "http://localhost", True), ("false", "https://localhost", False),
])
def test_session_cookie_secure_flag(setting: str, base_url: str, secure: bool, synced: Site) -> None:
    client = _app(synced, DUALLINE_COOKIE_SECURE=setting).test_client()
    response = client.get("/login", base_url=base_url)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert ("Secure" in cookie) is secure


def test_layout_shell_nav_by_role_and_assets(app) -> None:
    admin = logged_in(app, "admin").get("/people").get_data(as_text=True)
    for path in ("/", "/mismatches", "/coverage", "/runs", "/people", "/orgs", "/exports", "/audit", "/users"):
        assert f'<a href="{path}"' in admin
    assert 'aria-current="page">人员' in admin and "menu-toggle" in admin
    officer = logged_in(app, "officer").get("/").get_data(as_text=True)
    assert '<a href="/audit"' not in officer and '<a href="/users"' not in officer
    assert "<script>" not in officer and " style=" not in officer  # the CSP allows neither
    client = app.test_client()
    for asset in ("console.js", "vendor/echarts/echarts.min.js", "vendor/htmx/htmx.min.js", "vendor/echarts/LICENSE"):
        assert client.get(f"/static/console/{asset}").status_code == 200


def test_pages_on_every_backend(tmp_path: Path, any_db_url: str) -> None:
    """The aggregate and search SQL (date grouping, unions, LIKE, keyed-hash lookups) on SQLite,
    PostgreSQL and MariaDB alike."""
    site = make_site(tmp_path / "src", any_db_url, staff=300, seed=29)
    assert site.sync().status == "succeeded"
    with session_for(site) as s, s.begin():
        s.add(User(username="admin", password_hash=hash_password("admin-pass-1"), role="admin"))
        s.add(User(username="officer", password_hash=hash_password("officer-pass-1"), role="officer",
                   party_org_code=OFFICER_ROOT))
        s.execute(update(Mismatch).where(Mismatch.id == s.scalar(select(func.min(Mismatch.id))))
                  .values(closed_at=utcnow()))
        expected = dict(s.execute(select(Mismatch.rule, func.count()).where(mismatch_state_filter("open"))
                                  .group_by(Mismatch.rule)).all())
        person = s.scalar(select(Person).where(Person.id_number_enc.is_not(None)).order_by(Person.id))
        id_number = site.runtime.cipher.decrypt(person.id_number_enc)
        org = s.scalar(select(Membership.party_org_code).where(Membership.active.is_(True)).order_by(Membership.id))
        total = s.scalar(select(func.count()).select_from(Mismatch).where(mismatch_state_filter("open")))
    try:
        app = _app(site)
        for who in ("admin", "officer"):
            client = logged_in(app, who)
            html = client.get("/?days=90").get_data(as_text=True)
            if who == "admin":
                assert _by_rule(html) == expected
                option = json.loads(re.search(r'id="trend-option">(.*?)</script>', html, re.S).group(1))
                assert sum(option["series"][1]["data"]) == 1
                assert f'href="/people/{person.id}"' in client.get(f"/people?q={id_number}").get_data(as_text=True)
                assert len(_csv(client.get("/exports/mismatches.csv").data)) - 1 == total
            for url in ("/people?q=" + person.name[:1], f"/people/{person.id}", "/orgs", f"/orgs/{org}",
                        "/exports/transfers.csv", "/audit", "/users"):
                assert client.get(url).status_code in (200, 403, 404), url
    finally:
        site.runtime.engine.dispose()
