"""The console in a real headless Chromium, at desktop (1280×800) and phone (390×844) widths.

An officer's daily work end to end through the browser: log in, resolve a mismatch of every kind
with the action that fits it (checked in the database afterwards), assign an uncovered unit in the
coverage editor (preview, then save), approve a held run, export XLSX, switch the language. The
main pages are kept as screenshots (tests/artifacts/screenshots/, CI artifacts); at phone width no
page may scroll sideways, hostile names included; no page may trip the Content-Security-Policy.
"""
from __future__ import annotations

import datetime as dt
import io
import subprocess
import time

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select

from records.models import (
    AuditLog, Coverage, Membership, Mismatch, OrgUnit, PartyOrg, Performance, Person, SourceLink, SyncRun, Transfer,
)
from records.queries import mismatch_state_filter
from tests.web.browser.conftest import DESKTOP, PHONE, horizontal_overflow, screenshot
from tests.web.console_sites import HOSTILE_NAMES, HOSTILE_ORG_NAME, HOSTILE_UNIT_NAME, ConsoleSite, plant_hostile

WIDTHS = ("desktop", "phone")


@pytest.fixture
def csp_errors(new_page):
    """Console messages a page produced that report a CSP violation or a script error."""
    collected: list[str] = []

    def record(msg) -> None:
        # the browser asks for /favicon.ico by itself; the console does not serve one
        if msg.type == "error" and not (msg.location or {}).get("url", "").endswith("/favicon.ico"):
            collected.append(msg.text)

    def watch(page):
        page.on("console", record)
        page.on("pageerror", lambda exc: collected.append(f"page error: {exc}"))
        return page

    return watch, collected


def open_as(new_page, width: str, username: str = "admin"):
    return new_page(username, PHONE if width == "phone" else DESKTOP)


def goto_ok(page, url: str) -> None:
    response = page.goto(url)
    assert response is not None and response.status == 200, f"{url}: {response.status if response else None}"


# --- the main pages: screenshots, no sideways scrolling on a phone, no CSP violation ---


def main_pages(cs: ConsoleSite) -> dict[str, str]:
    with cs.session() as s:
        mismatch = s.scalars(select(Mismatch).where(mismatch_state_filter("open"), Mismatch.rule == "branch_mismatch")
                             .order_by(Mismatch.id)).first()
        run = s.scalar(select(func.max(SyncRun.id)))
    return {"dashboard": "/", "mismatches": "/mismatches", "mismatch": f"/mismatches/{mismatch.id}",
            "coverage": "/coverage", "runs": "/runs", "run": f"/runs/{run}", "people": "/people",
            "person": f"/people/{mismatch.subject_id}", "orgs": "/orgs", "org": f"/orgs/{mismatch.party_org_code}",
            "exports": "/exports", "audit": "/audit", "users": "/users"}


@pytest.mark.parametrize("width", WIDTHS)
def test_main_pages(width: str, new_page, console_site: ConsoleSite, csp_errors) -> None:
    watch, errors = csp_errors
    page = new_page(None, PHONE if width == "phone" else DESKTOP)
    watch(page)
    goto_ok(page, "/login")
    screenshot(page, f"login-{width}")
    page.fill('input[name="username"]', "admin")
    page.fill('input[name="password"]', "admin-pass-1")
    page.click('form [type="submit"]')
    page.wait_for_load_state()
    assert "/login" not in page.url
    overflowing = {}
    for name, url in main_pages(console_site).items():
        goto_ok(page, url)
        screenshot(page, f"{name}-{width}")
        if width == "phone" and horizontal_overflow(page) > 0:
            overflowing[url] = horizontal_overflow(page)
    assert not overflowing, f"pages wider than a 390 px phone (px too wide): {overflowing}"
    assert not errors, f"browser console errors (CSP violations?): {errors[:5]}"


def test_chinese_renders_with_cjk_glyphs(new_page) -> None:
    """fonts-noto-cjk is installed and distinct Chinese characters render as distinct glyphs (a
    missing font draws every one as the same empty box)."""
    fonts = subprocess.run(["fc-list"], capture_output=True, text=True).stdout
    assert "Noto Sans CJK" in fonts, "fonts-noto-cjk is not installed"
    page = new_page("admin")
    assert "待处理" in page.content() or "差异" in page.content()
    same = page.evaluate("""() => {
        const draw = (ch) => { const c = document.createElement('canvas'); c.width = c.height = 40;
            const x = c.getContext('2d'); x.font = '32px sans-serif'; x.fillText(ch, 2, 34);
            return Array.from(x.getImageData(0, 0, 40, 40).data).join(','); };
        const blank = draw(' ');
        return {dang: draw('党') === draw('建'), empty: draw('党') === blank};
    }""")
    assert not same["dang"] and not same["empty"], same


# --- resolving a mismatch of every kind ---


taken: set[int] = set()


def pick(cs: ConsoleSite, rule: str, within: list[str] | None = None) -> Mismatch:
    """An open mismatch of `rule` no other test of this module has used (both its party orgs
    inside `within`, when given and one such is left)."""
    with cs.session() as s:
        query = select(Mismatch).where(mismatch_state_filter("open"), Mismatch.rule == rule).order_by(Mismatch.id)
        if taken:
            query = query.where(Mismatch.id.not_in(taken))
        m = None
        if within:
            m = s.scalars(query.where(Mismatch.party_org_code.in_(within),
                                      Mismatch.other_party_org_code.in_(within)).limit(1)).first()
        m = m or s.scalars(query.limit(1)).first()
        assert m is not None, f"no open {rule} left in the test site"
        s.expunge(m)
    taken.add(m.id)
    return m


def submit_resolution(page, action: str, fields: dict[str, str]) -> None:
    """Choose `action` on a mismatch page, fill `fields`, submit, and wait for the answer."""
    form = page.locator(f'form:has([name="action"][value="{action}"])').first
    if form.count() == 0:
        form = page.locator('form:has(select[name="action"])').first
        form.locator('select[name="action"]').select_option(action)
    else:
        chooser = form.locator(f'[name="action"][value="{action}"]').first
        kind = (chooser.get_attribute("type") or "").lower()
        if kind == "radio":
            chooser.check()
    for name, value in fields.items():
        field = form.locator(f'[name="{name}"]').first
        tag = field.evaluate("e => e.tagName.toLowerCase()")
        kind = (field.get_attribute("type") or "").lower()
        if tag == "select":
            field.select_option(value)
        elif kind == "radio":
            form.locator(f'[name="{name}"][value="{value}"]').check()
        else:
            field.fill(value)
    button = form.locator(f'button[name="action"][value="{action}"]')
    if button.count() == 0:
        button = form.locator('[type="submit"]')
    with page.expect_navigation():
        button.first.click()


def resolved(cs: ConsoleSite, mismatch_id: int) -> Mismatch:
    with cs.session() as s:
        m = s.get(Mismatch, mismatch_id)
        s.expunge(m)
        return m


@pytest.mark.parametrize("width", WIDTHS)
def test_transfer_for_branch_mismatch(width: str, new_page, console_site: ConsoleSite) -> None:
    # the officer of the subtree does it when a transfer inside their subtree is left (officers act
    # from their phones), the admin otherwise
    m = pick(console_site, "branch_mismatch", within=console_site.officer_codes)
    inside = {m.party_org_code, m.other_party_org_code} <= set(console_site.officer_codes)
    user = "officer" if inside else "admin"
    page = open_as(new_page, width, user)
    goto_ok(page, f"/mismatches/{m.id}")
    submit_resolution(page, "transfer", {"target_party_org": m.other_party_org_code, "reason": "调动后补办组织关系转接"})
    after = resolved(console_site, m.id)
    assert after.state == "resolved" and after.resolution == "transfer", (after.state, after.resolution)
    assert after.resolved_by == user
    with console_site.session() as s:
        membership = s.scalars(select(Membership).where(Membership.person_id == m.subject_id,
                                                        Membership.active.is_(True))).one()
        assert membership.party_org_code == m.other_party_org_code
        assert s.scalar(select(func.count()).select_from(Transfer).where(Transfer.mismatch_id == m.id)) == 1
        assert s.scalar(select(AuditLog).where(AuditLog.target_type == "mismatch", AuditLog.target_id == str(m.id)))


@pytest.mark.parametrize("width", WIDTHS)
def test_create_membership_for_missing_membership(width: str, new_page, console_site: ConsoleSite) -> None:
    m = pick(console_site, "missing_membership")
    page = open_as(new_page, width)
    goto_ok(page, f"/mismatches/{m.id}")
    fields = {"reason": "补录党籍信息"}
    if page.locator('[name="target_party_org"]').count() and m.other_party_org_code:
        fields["target_party_org"] = m.other_party_org_code
    submit_resolution(page, "create_membership", fields)
    after = resolved(console_site, m.id)
    assert after.state == "resolved", after.state
    with console_site.session() as s:
        assert s.scalar(select(func.count()).select_from(Membership).where(
            Membership.person_id == m.subject_id, Membership.active.is_(True))) == 1


@pytest.mark.parametrize("width", WIDTHS)
def test_transfer_out_for_orphan_membership(width: str, new_page, console_site: ConsoleSite) -> None:
    m = pick(console_site, "orphan_membership")
    page = open_as(new_page, width)
    goto_ok(page, f"/mismatches/{m.id}")
    fields = {"reason": "已离职，转出组织关系"}
    if page.locator('[name="to_org_name"]').count():
        fields["to_org_name"] = "中共某市某区委组织部"
    submit_resolution(page, "transfer_out", fields)
    after = resolved(console_site, m.id)
    assert after.state == "resolved", after.state
    with console_site.session() as s:
        memberships = s.scalars(select(Membership).where(Membership.person_id == m.subject_id)).all()
        assert memberships and all(ms.status != "active" or not ms.active for ms in memberships), \
            [(ms.status, ms.active) for ms in memberships]


@pytest.mark.parametrize("rule", ["status_conflict", "join_date_conflict"])
@pytest.mark.parametrize("width", WIDTHS)
def test_exception_with_expiry(width: str, rule: str, new_page, console_site: ConsoleSite) -> None:
    m = pick(console_site, rule)
    page = open_as(new_page, width)
    goto_ok(page, f"/mismatches/{m.id}")
    expires = (dt.date.today() + dt.timedelta(days=90)).isoformat()
    submit_resolution(page, "exception", {"reason": "档案待核实，暂作例外", "expires_on": expires})
    after = resolved(console_site, m.id)
    assert after.state == "ignored" and after.resolution_note == "档案待核实，暂作例外"
    assert after.expires_at is not None and after.expires_at.date().isoformat() == expires


@pytest.mark.parametrize("width", WIDTHS)
def test_link_person_for_ambiguous_match(width: str, new_page, console_site: ConsoleSite) -> None:
    m = pick(console_site, "ambiguous_match")
    candidates = m.details.get("candidates") or m.details.get("candidate_ids") or []
    page = open_as(new_page, width)
    goto_ok(page, f"/mismatches/{m.id}")
    chooser = page.locator('[name="person_id"]').first
    if chooser.evaluate("e => e.tagName.toLowerCase()") == "select":
        person_id = chooser.locator("option[value]:not([value=''])").first.get_attribute("value")
    elif (chooser.get_attribute("type") or "") == "radio":
        person_id = chooser.get_attribute("value")
    else:
        person_id = str(candidates[0]["id"] if isinstance(candidates[0], dict) else candidates[0])
    submit_resolution(page, "link_person", {"person_id": person_id, "reason": "核对身份证后确认"})
    after = resolved(console_site, m.id)
    assert after.state == "resolved", after.state
    # the ambiguous source record is now linked to the chosen person (the next sync follows it)
    _, source, kind, external_id = m.subject_key.split(":", 3)
    with console_site.session() as s:
        link = s.scalars(select(SourceLink).where(SourceLink.source == source, SourceLink.kind == kind,
                                                  SourceLink.external_id == external_id)).one()
        linked_person = link.entity_id if kind == "staff" else s.get(Membership, link.entity_id).person_id
        assert link.active and linked_person == int(person_id)


@pytest.mark.parametrize("width", WIDTHS)
def test_coverage_assignment_for_uncovered_unit(width: str, new_page, console_site: ConsoleSite) -> None:
    """The coverage editor: assign the uncovered unit to a branch, preview (how many mismatches it
    opens or closes), save; the unit is covered and its mismatch closes."""
    m = pick(console_site, "uncovered_unit")
    with console_site.session() as s:
        unit = s.scalar(select(OrgUnit).where(OrgUnit.code == m.org_unit_code))
        branch = s.scalars(select(PartyOrg.code).where(PartyOrg.kind == "branch", PartyOrg.active.is_(True))
                           .order_by(PartyOrg.code)).first()
    page = open_as(new_page, width)
    goto_ok(page, "/coverage")
    # the editor's own form (the trees also carry one-click forms with hidden fields)
    form = page.locator('form[action$="/coverage/preview"]:has(input[type="text"][name="org_unit_code"])').first
    if form.locator('select[name="op"]').count():
        form.locator('select[name="op"]').select_option("assign")
    form.locator('[name="party_org_code"]').fill(branch)
    form.locator('[name="org_unit_code"]').fill(unit.code)
    with page.expect_navigation():
        form.locator('[type="submit"]').first.click()
    assert unit.code in page.content(), "the preview names the unit"
    screenshot(page, f"coverage-preview-{width}")
    save = page.locator('form[action$="/coverage/save"]').first
    with page.expect_navigation():
        save.locator('[type="submit"]').first.click()
    with console_site.session() as s:
        assert s.scalar(select(Coverage).where(Coverage.org_unit_code == unit.code, Coverage.party_org_code == branch))
        after = s.get(Mismatch, m.id)
        assert after.closed_at is not None or after.state != "open", (after.state, after.closed_at)


# --- a held run, approved by a person ---


def make_held_run(cs: ConsoleSite) -> int:
    """Appraisals arrive empty: deactivating all of them is more than the guard lets through."""
    enterprise = cs.site.enterprise
    if not enterprise.performance:
        enterprise.performance[:] = list(getattr(enterprise, "_kept_performance"))
        cs.site.rewrite()
        assert cs.site.sync("performance").status == "succeeded"
    enterprise._kept_performance = list(enterprise.performance)  # type: ignore[attr-defined]
    enterprise.performance[:] = []
    cs.site.rewrite()
    result = cs.site.sync("performance")
    assert result.status == "held", result.status
    return result.run_id


@pytest.mark.parametrize("width", WIDTHS)
def test_approve_held_run(width: str, new_page, console_site: ConsoleSite) -> None:
    run_id = make_held_run(console_site)
    page = open_as(new_page, width)
    goto_ok(page, "/runs")
    assert page.locator(f'a[href$="/runs/{run_id}"]').count() >= 1, "the held run is listed"
    goto_ok(page, f"/runs/{run_id}")
    screenshot(page, f"run-held-{width}")
    approve = page.locator(f'form[action$="/runs/{run_id}/approve"]')
    approve.locator('[name="reason"]').fill("考核数据年度清零，确认")
    with page.expect_navigation():
        approve.locator('[type="submit"]').first.click()
    # the console carries the approved run out in a child process: wait for it to finish
    deadline = time.monotonic() + 60
    while True:
        with console_site.session() as s:
            held = s.get(SyncRun, run_id)
            decision = (held.report or {}).get("decision") or {}
            new_run = s.get(SyncRun, decision["run_id"]) if decision.get("run_id") else None
            if (new_run is not None and new_run.status != "running") or decision.get("error"):
                break
        assert time.monotonic() < deadline, f"the approved run did not finish: {held.status} {decision}"
        time.sleep(0.3)
    assert held.status == "approved" and decision.get("by") == "admin", (held.status, decision)
    assert new_run is not None and new_run.status == "succeeded" and new_run.approved, decision
    with console_site.session() as s:
        assert s.scalar(select(func.count()).select_from(Performance).where(Performance.active.is_(True))) == 0
    goto_ok(page, f"/runs/{run_id}")
    screenshot(page, f"run-approved-{width}")


# --- export, language ---


@pytest.mark.parametrize("width", WIDTHS)
def test_export_xlsx(width: str, new_page, console_site: ConsoleSite, tmp_path) -> None:
    page = open_as(new_page, width)
    goto_ok(page, "/exports")
    form = page.locator('form[action$="/exports/mismatches.xlsx"]')
    with page.expect_download() as info:
        form.locator('button[type="submit"]:not([formaction])').first.click()
    download = info.value
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    assert path.suffix == ".xlsx"
    book = load_workbook(io.BytesIO(path.read_bytes()), read_only=True)
    rows = list(book.worksheets[0].iter_rows(values_only=True))
    with console_site.session() as s:
        open_count = s.scalar(select(func.count()).select_from(Mismatch).where(mismatch_state_filter("open")))
    assert len(rows) - 1 == open_count >= 1, "one row per open mismatch, under a header"
    assert any(isinstance(v, str) and "党" in v for row in rows for v in row if v), "Chinese content in the sheet"


@pytest.mark.parametrize("width", WIDTHS)
def test_switch_language(width: str, new_page) -> None:
    page = open_as(new_page, width)
    goto_ok(page, "/mismatches")
    assert (page.get_attribute("html", "lang") or "").lower().startswith("zh")
    switch = page.locator('a[href*="/lang/en"], button[value="en"]').first
    if not switch.is_visible():
        page.locator(".nav-toggle, [aria-controls], summary").first.click()
    with page.expect_navigation():
        switch.click()
    assert "/mismatches" in page.url, "the switch returns to the same page"
    assert (page.get_attribute("html", "lang") or "").lower().startswith("en")
    assert "Mismatches" in page.content()
    screenshot(page, f"mismatches-en-{width}")
    page.goto("/lang/zh")
    assert (page.get_attribute("html", "lang") or "").lower().startswith("zh")


# --- hostile names at phone width (last: it renames people of this module's site) ---


def test_hostile_names_keep_the_phone_layout(new_page, console_site: ConsoleSite) -> None:
    names = plant_hostile(console_site.site)
    assert console_site.site.sync().status == "succeeded"
    with console_site.session() as s:
        persons = s.execute(select(Person.id, Person.name).where(Person.name.in_(HOSTILE_NAMES))).all()
        mismatches = s.scalars(select(Mismatch.id).where(Mismatch.subject_label.in_(HOSTILE_NAMES))).all()
        org = s.scalar(select(PartyOrg.code).where(PartyOrg.name == HOSTILE_ORG_NAME))
        unit = s.scalar(select(OrgUnit.code).where(OrgUnit.name == HOSTILE_UNIT_NAME))
    assert len(persons) == len(names) and mismatches and org and unit
    page = new_page("admin", PHONE)
    urls = ["/mismatches?state=all", "/people", *(f"/mismatches/{i}" for i in mismatches),
            *(f"/people/{pid}" for pid, _ in persons), f"/orgs/{org}", "/orgs", f"/coverage?unit={unit}&org={org}"]
    overflowing = {}
    for url in urls:
        goto_ok(page, url)
        if horizontal_overflow(page) > 0:
            overflowing[url] = horizontal_overflow(page)
    goto_ok(page, f"/people/{next(pid for pid, name in persons if len(name) >= 300)}")
    screenshot(page, "hostile-person-phone")
    assert not new_page.alerts, f"hostile data ran script: {new_page.alerts}"
    assert not overflowing, f"hostile names push pages wider than 390 px: {overflowing}"
