"""The console's coverage editor and runs pages: render, preview then save with CSRF, approve and
reject held runs, and refusals (an officer naming another subtree's org, an auditor posting)."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from records.models import AuditLog, Coverage, Mismatch, PartyOrg, Quarantine, SyncRun
from sync.locks import RunLocks, source_lock_name
from tests.web.console_sites import ConsoleSite, build_console_site, fingerprint, login, make_app


@pytest.fixture(scope="module")
def cs(tmp_path_factory: pytest.TempPathFactory) -> ConsoleSite:
    folder = tmp_path_factory.mktemp("covruns")
    return build_console_site(folder / "src", f"sqlite:///{folder / 'console.db'}", staff=400, seed=29)


@pytest.fixture(scope="module")
def app(cs: ConsoleSite):
    app = make_app(cs)
    app.config["DUALLINE_APPROVAL_INLINE"] = True  # the sync runs within the request: deterministic
    return app


def open_uncovered(cs: ConsoleSite) -> list[str]:
    with cs.session() as s:
        return list(s.scalars(select(Mismatch.org_unit_code).where(
            Mismatch.rule == "uncovered_unit", Mismatch.closed_at.is_(None)).order_by(Mismatch.id)))


def a_branch(cs: ConsoleSite, codes: list[str]) -> str:
    with cs.session() as s:
        return s.scalar(select(PartyOrg.code).where(PartyOrg.code.in_(codes), PartyOrg.kind == "branch",
                                                    PartyOrg.retirees.is_(False)).order_by(PartyOrg.code))


def test_coverage_page_renders_both_trees_and_suggestions(app, cs: ConsoleSite) -> None:
    client = app.test_client()
    login(client, "admin")
    page = client.get("/coverage")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "业务线" in html and "党组织线" in html and "有党员但未覆盖的部门" in html
    assert 'name="csrf_token"' in html and "coverage.css" in html
    unit = open_uncovered(cs)[0]
    focused = client.get(f"/coverage?unit={unit}").get_data(as_text=True)
    assert f'name="org_unit_code" required maxlength="64" value="{unit}"' in focused
    # a level of each tree as an htmx fragment, without the page around it
    with cs.session() as s:
        root = s.scalar(select(PartyOrg.code).where(PartyOrg.parent_code.is_(None)))
    fragment = client.get(f"/coverage?fragment=orgs&org={root}")
    assert fragment.status_code == 200 and "<html" not in fragment.get_data(as_text=True)
    assert client.get("/coverage?fragment=units").status_code == 200
    assert client.get("/coverage?q=党支部").status_code == 200
    assert client.get("/lang/en").status_code == 302
    assert "Business line" in client.get("/coverage").get_data(as_text=True)


def test_preview_then_save_through_the_console(app, cs: ConsoleSite) -> None:
    client = app.test_client()
    token = login(client, "admin")
    unit = open_uncovered(cs)[0]
    branch = a_branch(cs, cs.officer_codes)
    form = {"csrf_token": token, "op": "assign", "party_org_code": branch, "org_unit_code": unit,
            "include_descendants": "1"}
    before = fingerprint(cs.engine)
    preview = client.post("/coverage/preview", data=form)
    assert preview.status_code == 200
    html = preview.get_data(as_text=True)
    assert fingerprint(cs.engine) == before  # a preview keeps nothing
    impact = re.search(r"将新增 <b>(\d+)</b> 条差异、消除 <b>(\d+)</b> 条", html)
    assert impact, html[:2000]
    assert int(impact.group(2)) >= 1  # the unit's uncovered_unit mismatch closes
    assert 'action="/coverage/save"' in html
    saved = client.post("/coverage/save", data=form | {"reason": "新部门"})
    assert saved.status_code == 303
    shown = client.get(saved.headers["Location"]).get_data(as_text=True)
    assert f"已保存： 将新增 <b>{impact.group(1)}</b> 条差异、消除 <b>{impact.group(2)}</b> 条" in " ".join(shown.split())
    with cs.session() as s:
        assert s.scalar(select(Coverage.origin).where(Coverage.party_org_code == branch,
                                                      Coverage.org_unit_code == unit)) == "console"
        audit = s.scalar(select(AuditLog).where(AuditLog.action == "coverage.edit").order_by(AuditLog.id.desc()))
        assert audit.actor == "admin" and audit.details["reason"] == "新部门"
    assert unit not in open_uncovered(cs)
    # a bad edit is a 400 with the page, not a crash
    bad = client.post("/coverage/preview", data=form | {"org_unit_code": "NO-SUCH-UNIT"})
    assert bad.status_code == 400 and "NO-SUCH-UNIT" in bad.get_data(as_text=True)


def test_edit_while_a_sync_runs_is_refused(app, cs: ConsoleSite) -> None:
    client = app.test_client()
    token = login(client, "admin")
    form = {"csrf_token": token, "op": "assign", "party_org_code": a_branch(cs, cs.officer_codes),
            "org_unit_code": open_uncovered(cs)[-1], "include_descendants": "1"}
    running = RunLocks(cs.engine, [source_lock_name("party-orgs")])
    running.acquire()
    before = fingerprint(cs.engine)
    try:
        for url in ("/coverage/preview", "/coverage/save"):
            response = client.post(url, data=form)
            assert response.status_code == 409 and "正在同步数据" in response.get_data(as_text=True)
    finally:
        running.release()
    assert fingerprint(cs.engine) == before


def test_officer_edits_own_subtree_only(app, cs: ConsoleSite) -> None:
    client = app.test_client()
    token = login(client, "officer")
    unit = open_uncovered(cs)[-1]
    outside = a_branch(cs, cs.other_codes)
    before = fingerprint(cs.engine)
    for url in ("/coverage/preview", "/coverage/save"):
        response = client.post(url, data={"csrf_token": token, "op": "assign", "party_org_code": outside,
                                          "org_unit_code": unit, "include_descendants": "1"})
        assert response.status_code in (403, 404), (url, response.status_code)
    # one edit inside and one outside: the whole form is refused
    mixed = client.post("/coverage/save", data={
        "csrf_token": token, "op": ["assign", "assign"], "party_org_code": [a_branch(cs, cs.officer_codes), outside],
        "org_unit_code": [unit, unit], "include_descendants": ["1", "1"]})
    assert mixed.status_code in (403, 404)
    assert client.get(f"/coverage?org={outside}").status_code == 404
    assert fingerprint(cs.engine) == before
    page = client.get("/coverage").get_data(as_text=True)
    assert outside not in page


def test_auditor_reads_but_cannot_post(app, cs: ConsoleSite) -> None:
    client = app.test_client()
    token = login(client, "auditor")
    assert client.get("/coverage").status_code == 200
    assert client.get("/runs").status_code == 200
    before = fingerprint(cs.engine)
    unit = open_uncovered(cs)[-1]
    form = {"csrf_token": token, "op": "assign", "party_org_code": a_branch(cs, cs.officer_codes),
            "org_unit_code": unit, "include_descendants": "1", "reason": "x"}
    assert client.post("/coverage/preview", data=form).status_code == 403
    assert client.post("/coverage/save", data=form).status_code == 403
    with cs.session() as s:
        run_id = s.scalar(select(func.max(SyncRun.id)))
    assert client.post(f"/runs/{run_id}/approve", data=form).status_code == 403
    assert client.post(f"/runs/{run_id}/reject", data=form).status_code == 403
    assert "批准并执行" not in client.get(f"/runs/{run_id}").get_data(as_text=True)
    assert fingerprint(cs.engine) == before


def make_held_run(cs: ConsoleSite) -> int:
    site = cs.site
    site.enterprise.staff[:] = site.enterprise.staff[: len(site.enterprise.staff) // 3]
    site.enterprise.version += 1
    site.rewrite()
    held = site.sync("oa")
    assert held.status == "held"
    return held.run_id


def test_runs_pages_and_decisions(app, cs: ConsoleSite) -> None:
    held_id = make_held_run(cs)
    client = app.test_client()
    token = login(client, "admin")
    listing = client.get("/runs").get_data(as_text=True)
    assert f"/runs/{held_id}" in listing and "待审批" in listing
    assert f"/runs/{held_id}" in client.get("/runs?status=held").get_data(as_text=True)
    detail = client.get(f"/runs/{held_id}").get_data(as_text=True)
    assert "暂停原因" in detail and "would deactivate" in detail and "批准并执行" in detail
    officer = app.test_client()
    officer_token = login(officer, "officer")
    assert "只有管理员可以审批" in officer.get(f"/runs/{held_id}").get_data(as_text=True)
    assert officer.post(f"/runs/{held_id}/approve", data={"csrf_token": officer_token}).status_code == 403

    # the first run (a full sync) has changes and quarantined records to page through
    with cs.session() as s:
        first = s.scalar(select(func.min(SyncRun.id)))
        quarantined = s.scalar(select(func.count()).select_from(Quarantine).where(Quarantine.run_id == first))
    first_page = client.get(f"/runs/{first}").get_data(as_text=True)
    assert "本批次的变更" in first_page and "changes_page=2" in first_page
    if quarantined:
        assert "隔离的记录" in first_page and "record_enc" not in first_page

    approved = client.post(f"/runs/{held_id}/approve", data={"csrf_token": token, "reason": "确认离职"})
    assert approved.status_code == 303
    with cs.session() as s:
        held = s.get(SyncRun, held_id)
        assert held.status == "approved" and held.report["decision"]["run_status"] == "succeeded"
        new_id = held.report["decision"]["run_id"]
    page = client.get(f"/runs/{held_id}").get_data(as_text=True)
    assert f"/runs/{new_id}" in page and "确认离职" in page
    again = client.post(f"/runs/{held_id}/reject", data={"csrf_token": token, "reason": "late"})
    assert again.status_code == 409

    second = make_held_run(cs)
    assert client.post(f"/runs/{second}/reject", data={"csrf_token": token, "reason": ""}).status_code == 400
    rejected = client.post(f"/runs/{second}/reject", data={"csrf_token": token, "reason": "导出不完整"})
    assert rejected.status_code == 303
    with cs.session() as s:
        run = s.get(SyncRun, second)
        assert run.status == "rejected" and run.report["decision"]["reason"] == "导出不完整"
    assert client.post(f"/runs/{second}/approve", data={"csrf_token": token}).status_code == 409
    assert client.post("/runs/99999/approve", data={"csrf_token": token}).status_code == 404
