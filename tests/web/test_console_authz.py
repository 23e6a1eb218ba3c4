"""The console's authorization matrix: every route × every method × every role, and tampering.

The expectation table below is written from the issue (admin: everything; officer: read and act
inside one party-org subtree; auditor: read everything, change nothing), NOT copied from the views'
decorators, so a view that forgets or loosens its `@roles(...)` fails here. Every console route in
`app.url_map` must appear in the table: a new page has to be classified before the suite passes.

Refusals: anonymous → redirect to /login (or 401); a role that may not → 403; an officer naming an
object outside the subtree → 404 (or 403). A refused POST changes nothing (the database fingerprint
before and after is the same). Every POST without the CSRF token → 400.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from records.models import ApiToken, Membership, Mismatch, OrgUnit, PartyOrg, Person, SyncRun, Transfer, User, Webhook
from records.queries import mismatch_state_filter
from tests.web.console_sites import ConsoleSite, build_console_site, fingerprint, login, make_app

ROLES = ("anonymous", "admin", "officer", "auditor")
PUBLIC = frozenset(ROLES)
READERS = frozenset({"admin", "officer", "auditor"})
ACTORS = frozenset({"admin", "officer"})
ADMIN = frozenset({"admin"})
OVERSEERS = frozenset({"admin", "auditor"})  # whole-system reading (the audit trail)

# (path pattern with placeholders as <>, method) → roles that may use it. Written from the issue.
EXPECTED: dict[tuple[str, str], frozenset[str]] = {
    ("/login", "GET"): PUBLIC,
    ("/login", "POST"): PUBLIC,
    ("/logout", "POST"): PUBLIC,
    ("/lang/<>", "GET"): PUBLIC,
    ("/static/console/<>", "GET"): PUBLIC,
    ("/", "GET"): READERS,
    # mismatches: everyone reads (officers their subtree); admins and officers resolve
    ("/mismatches", "GET"): READERS,
    ("/mismatches/<>", "GET"): READERS,
    ("/mismatches/<>/resolve", "POST"): ACTORS,
    ("/mismatches/bulk", "POST"): ACTORS,
    # coverage: everyone reads; mapping departments to branches is an officer's job too
    ("/coverage", "GET"): READERS,
    ("/coverage/preview", "POST"): ACTORS,
    ("/coverage/save", "POST"): ACTORS,
    # runs: everyone reads; a held run is the whole enterprise's, so only an admin decides
    ("/runs", "GET"): READERS,
    ("/runs/<>", "GET"): READERS,
    ("/runs/<>/progress.json", "GET"): READERS,
    ("/runs/<>/approve", "POST"): ADMIN,
    ("/runs/<>/reject", "POST"): ADMIN,
    ("/people", "GET"): READERS,
    ("/people/<>", "GET"): READERS,
    # full ID number and mobile of one person: sensitive data, admins only (audited)
    ("/people/<>/reveal", "POST"): ADMIN,
    ("/orgs", "GET"): READERS,
    ("/orgs/<>", "GET"): READERS,
    ("/orgs/<>/children", "GET"): READERS,
    ("/orgs/<>/indicators", "GET"): READERS,
    # a branch's dues sheet and points: the officer who collects them needs them (subtree only)
    ("/orgs/<>/dues.xlsx", "GET"): READERS,
    ("/orgs/<>/points", "GET"): READERS,
    ("/orgs/<>/dues.xlsx", "GET"): READERS,
    ("/orgs/<>/points", "GET"): READERS,
    # organizational life: everyone reads; the officer who runs the branch's meetings enters them
    ("/orgs/<>/activities", "GET"): READERS,
    ("/orgs/<>/activities", "POST"): ACTORS,
    ("/orgs/<>/activities/import", "POST"): ACTORS,
    ("/exports", "GET"): READERS,
    ("/exports/mismatches.xlsx", "GET"): READERS,
    ("/exports/mismatches.csv", "GET"): READERS,
    ("/exports/transfers.xlsx", "GET"): READERS,
    ("/exports/transfers.csv", "GET"): READERS,
    # membership transfers: everyone reads (officers those touching their subtree); the officers
    # who issue the letters record the receipt or cancel one
    ("/transfers", "GET"): READERS,
    ("/transfers/<>", "GET"): READERS,
    ("/transfers/<>/receive", "POST"): ACTORS,
    ("/transfers/<>/cancel", "POST"): ACTORS,
    ("/audit", "GET"): OVERSEERS,
    ("/users", "GET"): ADMIN,
    ("/users", "POST"): ADMIN,
    ("/users/<>/active", "POST"): ADMIN,
    ("/users/<>/password", "POST"): ADMIN,
    ("/users/<>/role", "POST"): ADMIN,
    # API tokens and webhooks: the integration's keys, admins only
    ("/tokens", "GET"): ADMIN,
    ("/tokens", "POST"): ADMIN,
    ("/tokens/<>/revoke", "POST"): ADMIN,
    ("/webhooks", "GET"): ADMIN,
    ("/webhooks", "POST"): ADMIN,
    ("/webhooks/<>", "GET"): ADMIN,
    ("/webhooks/<>/active", "POST"): ADMIN,
    ("/webhooks/<>/ping", "POST"): ADMIN,
}


def pattern(rule: str) -> str:
    return re.sub(r"<[^>]+>", "<>", rule)


def console_routes(app) -> list[tuple[str, str, str]]:
    """(rule, method, endpoint) of every console route (HEAD and OPTIONS are Flask's own)."""
    return sorted({(r.rule, m, r.endpoint) for r in app.url_map.iter_rules() if r.endpoint.startswith("console.")
                   for m in r.methods - {"HEAD", "OPTIONS"}})


# --- the site: built once per module, restored from a pristine copy after a POST that may write ---


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ConsoleSite, Path, Path]]:
    folder = tmp_path_factory.mktemp("authz")
    db_file = folder / "console.db"
    console_site = build_console_site(folder / "src", f"sqlite:///{db_file}")
    with console_site.session() as s, s.begin():
        # one API token and one webhook, so their pages have an object to show (the webhook's
        # receiver is a closed local port: a ping fails at once)
        s.add(ApiToken(name="authz-token", token_hash="0" * 64, prefix="dl_authz", scopes=["read"]))
        s.add(Webhook(name="authz-hook", url="http://127.0.0.1:9/hook", events=["changes"]))
        # one issued transfer inside the officer's subtree and one outside it
        for codes, letter_no in ((console_site.officer_codes, "authz-in"), (console_site.other_codes, "authz-out")):
            s.add(_transfer(s, codes, letter_no))
    console_site.engine.dispose()
    pristine_copy = folder / "pristine.db"
    shutil.copyfile(db_file, pristine_copy)
    yield console_site, db_file, pristine_copy
    console_site.engine.dispose()


def _transfer(s, codes: list[str], letter_no: str) -> Transfer:  # noqa: ANN001 - a Session
    """An issued transfer of a member registered in `codes` to another branch of `codes`."""
    branches = list(s.scalars(select(PartyOrg.code).where(
        PartyOrg.code.in_(codes), PartyOrg.kind == "branch", PartyOrg.active.is_(True)).order_by(PartyOrg.code)))
    m = s.scalars(select(Membership).where(Membership.party_org_code.in_(branches), Membership.active.is_(True))
                  .order_by(Membership.id)).first()
    to = next(b for b in branches if b != m.party_org_code)
    return Transfer(person_id=m.person_id, membership_id=m.id, kind="internal", from_party_org_code=m.party_org_code,
                    to_party_org_code=to, category=m.category, letter_no=letter_no, issued_on=dt.date(2025, 3, 1),
                    valid_until=dt.date(2025, 5, 30), status="issued", created_by="authz")


@pytest.fixture(scope="module")
def cs(pristine) -> ConsoleSite:
    return pristine[0]


@pytest.fixture(scope="module")
def app(cs: ConsoleSite):
    return make_app(cs)


def restore(pristine) -> None:
    console_site, db_file, pristine_copy = pristine
    console_site.engine.dispose()
    for stale in ("-wal", "-shm"):
        Path(f"{db_file}{stale}").unlink(missing_ok=True)
    shutil.copyfile(pristine_copy, db_file)


@pytest.fixture(scope="module")
def samples(cs: ConsoleSite) -> dict[str, Any]:
    """Objects inside the officer's subtree (so that only the role decides) and outside it."""
    with cs.session() as s:
        def open_mismatch(codes: list[str], rule: str | None = None) -> Mismatch:
            query = select(Mismatch).where(mismatch_state_filter("open"), Mismatch.party_org_code.in_(codes),
                                           Mismatch.subject_type == "person")
            if rule:
                query = query.where(Mismatch.rule == rule)
            return s.scalars(query.order_by(Mismatch.id).limit(1)).one()

        inside, outside = open_mismatch(cs.officer_codes), open_mismatch(cs.other_codes)
        runs = s.scalars(select(SyncRun.id).order_by(SyncRun.id)).all()
        unit = s.scalar(select(OrgUnit.code).order_by(OrgUnit.code).limit(1))
        user_id = s.scalar(select(User.id).where(User.username == "officer_b"))
        token_id = s.scalar(select(ApiToken.id).where(ApiToken.name == "authz-token"))
        webhook_id = s.scalar(select(Webhook.id).where(Webhook.name == "authz-hook"))
        transfers = dict(s.execute(select(Transfer.letter_no, Transfer.id).where(
            Transfer.letter_no.in_(("authz-in", "authz-out")))).all())
        return {"mismatch": inside.id, "mismatch_out": outside.id,
                "person": inside.subject_id, "person_out": outside.subject_id,
                "org": inside.party_org_code, "org_out": outside.party_org_code,
                "run": runs[-1], "unit": unit, "user": user_id,
                "token": token_id, "webhook": webhook_id,
                "transfer": transfers["authz-in"], "transfer_out": transfers["authz-out"]}


def fill(rule: str, samples: dict[str, Any], outside: bool = False) -> str:
    """A concrete URL for a rule: ids of objects inside the officer's subtree (or outside)."""
    suffix = "_out" if outside else ""

    def value(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[-1]
        if rule.startswith("/static/"):
            return "console.css"
        if rule.startswith("/lang/"):
            return "en"
        if rule.startswith("/mismatches/"):
            return str(samples["mismatch" + suffix])
        if rule.startswith("/people/"):
            return str(samples["person" + suffix])
        if rule.startswith("/orgs/"):
            return str(samples["org" + suffix])
        if rule.startswith("/runs/"):
            return str(samples["run"])
        if rule.startswith("/users/"):
            return str(samples["user"])
        if rule.startswith("/tokens/"):
            return str(samples["token"])
        if rule.startswith("/webhooks/"):
            return str(samples["webhook"])
        if rule.startswith("/transfers/"):
            return str(samples["transfer" + suffix])
        raise AssertionError(f"no sample value for <{name}> in {rule}: teach fill() about it")

    return re.sub(r"<([^>]*)>", value, rule)


def refused_anonymous(response) -> bool:
    if response.status_code == 401:
        return True
    return response.status_code in (302, 303) and "/login" in response.headers.get("Location", "")


# --- the table covers every route ---


def test_every_console_route_is_classified(app) -> None:
    routes = console_routes(app)
    assert routes, "no console routes registered"
    missing = sorted({(pattern(rule), method) for rule, method, _ in routes} - set(EXPECTED))
    assert not missing, f"console routes missing from the authorization table (classify them): {missing}"


def test_every_classified_route_exists(app) -> None:
    """The issue's pages all exist (a page dropped by mistake shows here)."""
    present = {(pattern(rule), method) for rule, method, _ in console_routes(app)}
    assert not sorted(set(EXPECTED) - present), f"classified but not registered: {sorted(set(EXPECTED) - present)}"


# --- the matrix ---


@pytest.mark.parametrize("role", ROLES)
def test_matrix(role: str, app, cs: ConsoleSite, samples, pristine) -> None:
    """Each route with each method as `role`: allowed → not refused; not allowed → refused, and a
    refused POST leaves the data as it was."""
    problems: list[str] = []
    # one session for the whole walk: a restored database keeps the user, so the session stays valid
    client = app.test_client()
    token = login(client, role) if role != "anonymous" else None
    if token is None:
        client.get("/login")  # a session with a CSRF token, so that CSRF is not what refuses
        with client.session_transaction() as sess:
            token = sess.get("csrf")
    # log-out last: it ends the session the walk uses
    for rule, method, _ in sorted(console_routes(app), key=lambda r: r[0] == "/logout"):
        allowed = EXPECTED.get((pattern(rule), method))
        if allowed is None:
            continue  # reported by test_every_console_route_is_classified
        url = fill(rule, samples)
        before = fingerprint(cs.engine) if method == "POST" else None
        try:
            if method == "GET":
                response = client.get(url)
            else:
                response = client.post(url, data={"csrf_token": token or ""})
        except Exception as exc:  # noqa: BLE001 - TESTING propagates a view's error: it is a finding here
            problems.append(f"{method} {url} as {role}: the view raised {exc.__class__.__name__}: {exc}")
            if method == "POST":
                restore(pristine)
            continue
        status = response.status_code
        if allowed == PUBLIC:
            if status == 403 or status >= 500:
                problems.append(f"{method} {url}: open to everyone, got {status} for {role}")
        elif role in allowed:
            if status in (401, 403) or (role != "anonymous" and refused_anonymous(response)) or status >= 500:
                problems.append(f"{method} {url}: {role} may, got {status}")
            elif method == "GET" and status == 404 and "/static/" not in rule:
                problems.append(f"{method} {url}: {role} may, got 404 for an object in the subtree")
        elif role == "anonymous":
            if not refused_anonymous(response):
                problems.append(f"{method} {url}: anonymous must go to /login, got {status}")
        elif status != 403:
            problems.append(f"{method} {url}: {role} may not, expected 403, got {status}")
        if method == "POST":
            if role not in allowed and fingerprint(cs.engine) != before:
                problems.append(f"{method} {url}: refused for {role} but the data changed")
            restore(pristine)
    assert not problems, "\n".join(problems)


def test_every_post_needs_the_csrf_token(app, cs: ConsoleSite, samples, pristine) -> None:
    client = app.test_client()
    login(client, "admin")
    before = fingerprint(cs.engine)
    for rule, method, _ in console_routes(app):
        if method != "POST":
            continue
        response = client.post(fill(rule, samples), data={"reason": "x", "action": "exception"})
        assert response.status_code == 400, f"POST {rule} without a CSRF token: {response.status_code}"
        wrong = client.post(fill(rule, samples), data={"csrf_token": "forged", "action": "exception"})
        assert wrong.status_code == 400, f"POST {rule} with a forged CSRF token: {wrong.status_code}"
    assert fingerprint(cs.engine) == before


# --- an officer reaching into another subtree ---


OUT_OF_SUBTREE_PAGES = ("/mismatches/<>", "/people/<>", "/orgs/<>", "/orgs/<>/indicators", "/orgs/<>/dues.xlsx",
                        "/orgs/<>/points", "/orgs/<>/activities", "/transfers/<>")


@pytest.mark.parametrize("page", OUT_OF_SUBTREE_PAGES)
def test_officer_cannot_open_another_subtree_by_url(page: str, app, samples) -> None:
    client = app.test_client()
    login(client, "officer")
    assert client.get(fill(page, samples)).status_code == 200  # the same page inside the subtree
    response = client.get(fill(page, samples, outside=True))
    assert response.status_code in (403, 404), f"{page} outside the subtree: {response.status_code}"


def _resolutions(mismatch_id: int, target: str, person_id: int) -> list[dict[str, str]]:
    """One form per resolution action, each with a tampered field where it has one."""
    return [
        {"action": "transfer", "target_party_org": target, "reason": "tampered"},
        {"action": "create_membership", "target_party_org": target, "reason": "tampered"},
        {"action": "transfer_out", "reason": "tampered"},
        {"action": "exception", "reason": "tampered", "expires_on": "2030-01-01"},
        {"action": "link_person", "person_id": str(person_id), "reason": "tampered"},
    ]


def test_officer_cannot_resolve_another_subtrees_mismatch(app, cs: ConsoleSite, samples, pristine) -> None:
    client = app.test_client()
    token = login(client, "officer")
    before = fingerprint(cs.engine)
    try:
        for form in _resolutions(samples["mismatch_out"], samples["org"], samples["person"]):
            response = client.post(f"/mismatches/{samples['mismatch_out']}/resolve", data=form | {"csrf_token": token})
            assert response.status_code in (403, 404), f"{form['action']} on another subtree: {response.status_code}"
        bulk = client.post("/mismatches/bulk", data={"csrf_token": token, "ids": [str(samples["mismatch_out"])],
                                                     "mismatch_id": [str(samples["mismatch_out"])],
                                                     "action": "exception", "reason": "tampered"})
        assert bulk.status_code in (200, 302, 303, 400, 403, 404), bulk.status_code
        assert fingerprint(cs.engine) == before
    finally:
        restore(pristine)


def test_officer_cannot_transfer_into_another_subtree(app, cs: ConsoleSite, samples, pristine) -> None:
    """A mismatch of the officer's own subtree, but the form's target branch tampered to lie
    outside it: refused, nothing changes."""
    with cs.session() as s:
        inside = s.scalars(select(Mismatch).where(
            mismatch_state_filter("open"), Mismatch.party_org_code.in_(cs.officer_codes),
            Mismatch.rule.in_(("branch_mismatch", "missing_membership"))).order_by(Mismatch.id).limit(1)).one()
        person_out = samples["person_out"]
    client = app.test_client()
    token = login(client, "officer")
    before = fingerprint(cs.engine)
    try:
        for form in _resolutions(inside.id, samples["org_out"], person_out)[:2] + [_resolutions(inside.id, "", person_out)[4]]:
            response = client.post(f"/mismatches/{inside.id}/resolve", data=form | {"csrf_token": token})
            assert response.status_code in (400, 403, 404, 422), (form, response.status_code)
            assert fingerprint(cs.engine) == before, f"{form['action']} with a tampered target changed data"
    finally:
        restore(pristine)


def test_officer_cannot_assign_coverage_to_another_subtree(app, cs: ConsoleSite, samples, pristine) -> None:
    """The coverage editor's form with a party org of another subtree: refused (preview and
    save), nothing changes; the same edit for the officer's own branch goes through."""
    client = app.test_client()
    token = login(client, "officer")
    before = fingerprint(cs.engine)
    try:
        for endpoint in ("/coverage/preview", "/coverage/save"):
            response = client.post(endpoint, data={"csrf_token": token, "op": "assign", "org_unit_code": samples["unit"],
                                                   "party_org_code": samples["org_out"], "include_descendants": "1",
                                                   "reason": "tampered"})
            assert response.status_code in (403, 404), f"{endpoint}: {response.status_code}"
        assert fingerprint(cs.engine) == before
        own = client.post("/coverage/preview", data={"csrf_token": token, "op": "assign", "org_unit_code": samples["unit"],
                                                     "party_org_code": samples["org"], "include_descendants": "1"})
        assert own.status_code == 200, own.status_code
    finally:
        restore(pristine)


def test_auditor_posts_change_nothing(app, cs: ConsoleSite, samples, pristine) -> None:
    client = app.test_client()
    token = login(client, "auditor")
    before = fingerprint(cs.engine)
    try:
        for form in _resolutions(samples["mismatch"], samples["org"], samples["person"]):
            assert client.post(f"/mismatches/{samples['mismatch']}/resolve",
                               data=form | {"csrf_token": token}).status_code == 403
        for url in ("/mismatches/bulk", f"/runs/{samples['run']}/approve", f"/runs/{samples['run']}/reject",
                    "/coverage/save", "/users"):
            assert client.post(url, data={"csrf_token": token, "ids": [str(samples["mismatch"])],
                                          "action": "exception", "reason": "x"}).status_code == 403, url
        assert fingerprint(cs.engine) == before
    finally:
        restore(pristine)


# --- exports follow the subtree ---


def _csv_rows(body: bytes) -> list[list[str]]:
    text = body.decode("utf-8-sig")
    return list(csv.reader(io.StringIO(text)))


def test_officer_exports_hold_only_the_subtree(app, cs: ConsoleSite, samples) -> None:
    with cs.session() as s:
        names_out = {n for (n,) in s.execute(select(Mismatch.subject_label).where(
            mismatch_state_filter("open"), Mismatch.party_org_code.in_(cs.other_codes),
            Mismatch.other_party_org_code.is_(None) | Mismatch.other_party_org_code.not_in(cs.officer_codes))) if n}
        names_in = {n for (n,) in s.execute(select(Mismatch.subject_label).where(
            mismatch_state_filter("open"), Mismatch.party_org_code.in_(cs.officer_codes))) if n}
        out_person = s.get(Person, samples["person_out"])
    names_out -= names_in  # a namesake inside the subtree is allowed to appear
    assert names_out and names_in
    officer, admin = app.test_client(), app.test_client()
    login(officer, "officer")
    login(admin, "admin")
    for fmt in ("csv", "xlsx"):
        # each body read before the next request (a streamed body runs in its request's context)
        mine = officer.get(f"/exports/mismatches.{fmt}")
        mine_body = mine.get_data()
        everything = admin.get(f"/exports/mismatches.{fmt}")
        all_body = everything.get_data()
        assert mine.status_code == everything.status_code == 200
        if fmt == "csv":
            mine_text = "\n".join(",".join(r) for r in _csv_rows(mine_body))
            all_text = "\n".join(",".join(r) for r in _csv_rows(all_body))
        else:
            mine_text = _xlsx_text(mine_body)
            all_text = _xlsx_text(all_body)
        assert any(n in mine_text for n in names_in), f"{fmt}: the officer's own mismatches are missing"
        leaked = sorted(n for n in names_out if n in mine_text)
        assert not leaked, f"{fmt}: the officer's export holds other subtrees' people: {leaked[:5]}"
        assert any(n in all_text for n in names_out), f"{fmt}: the admin's export should hold everything"
        assert out_person.name not in mine_text or out_person.name in names_in
    for fmt in ("csv", "xlsx"):
        response = officer.get(f"/exports/transfers.{fmt}")
        assert response.status_code == 200
        text = "\n".join(",".join(r) for r in _csv_rows(response.data)) if fmt == "csv" else _xlsx_text(response.data)
        leaked = sorted(n for n in names_out if n in text)
        assert not leaked, f"transfers.{fmt}: other subtrees' people: {leaked[:5]}"


def _xlsx_text(body: bytes) -> str:
    book = load_workbook(io.BytesIO(body), read_only=True)
    return "\n".join(",".join("" if v is None else str(v) for v in row)
                     for sheet in book.worksheets for row in sheet.iter_rows(values_only=True))
