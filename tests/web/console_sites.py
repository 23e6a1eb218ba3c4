"""A synced site with console users, shared by the console's authorization, hostile-data and
browser tests: who is logged in as what, where the officer's subtree is, and a fingerprint of
the data a refused request must leave untouched.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from records.db import session_factory
from records.models import (
    Change, Coverage, FieldOverride, Membership, Mismatch, PartyOrg, Person, SourceLink, SyncRun, Transfer, User,
)
from records.queries import mismatch_state_filter, subtree_codes
from tests.sync.conftest import Site, make_site
from web.auth import hash_password
from tests.conftest import app_for, csrf_token_in

PASSWORDS = {"admin": "admin-pass-1", "officer": "officer-pass-1", "auditor": "auditor-pass-1",
             "officer_b": "officer-b-pass-1"}


@dataclass
class ConsoleSite:
    """A synced site plus who may see what: the officer looks after `officer_org`'s subtree;
    `other_org` is a sibling subtree the officer must never reach."""

    site: Site
    officer_org: str
    other_org: str
    officer_codes: list[str]
    other_codes: list[str]

    @property
    def engine(self) -> Engine:
        return self.site.runtime.engine

    def session(self):
        return session_factory(self.engine)()


def _top_level_orgs_by_open_mismatches(s) -> list[str]:
    """Party orgs directly below the root committee, busiest (most open mismatches) first."""
    root = s.scalar(select(PartyOrg.code).where(PartyOrg.parent_code.is_(None)).order_by(PartyOrg.code))
    children = s.scalars(select(PartyOrg.code).where(PartyOrg.parent_code == root).order_by(PartyOrg.code)).all()
    counts: Counter[str] = Counter()
    for child in children:
        codes = subtree_codes(s, child)
        counts[child] = s.scalar(select(func.count()).select_from(Mismatch).where(
            mismatch_state_filter("open"), Mismatch.party_org_code.in_(codes))) or 0
    return [code for code, _ in counts.most_common()]


# Hostile text a source might carry: markup, attribute breakers, quotes, a 300-character name with
# a long unbroken run, an RTL override, Arabic, Hebrew and a spreadsheet formula.
LONG_NAME = "长" * 60 + "W" * 180 + "名" * 60
HOSTILE_NAMES = (
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "O'Brien \"引号\" '\"",
    LONG_NAME,
    "\u202eevil\u202c 王\u202e五",
    "محمد عبد الله",
    "דוד כהן",
    '=HYPERLINK("http://evil.example","点我")',  # a formula, should a spreadsheet take it as one
)
HOSTILE_ORG_NAME = "<script>alert(1)</script>第一党支部"
HOSTILE_UNIT_NAME = '"><img src=x onerror=alert(1)>生产部' + "X" * 120


def plant_hostile(site: Site) -> dict[str, str]:
    """Give hostile names to staff who are subjects of mismatches (in the OA export and the roster
    alike, so the sync carries them through), to a party branch and to an uncovered unit.
    Returns employee_no → hostile name."""
    enterprise = site.enterprise
    subjects = [m["subject"]["employee_no"] for m in enterprise.expected_mismatches()
                if m["subject"].get("employee_no") and m["rule"] != "ambiguous_match"]
    chosen = list(dict.fromkeys(subjects))[: len(HOSTILE_NAMES)]
    assert len(chosen) == len(HOSTILE_NAMES), "too few mismatch subjects to plant hostile names on"
    names = dict(zip(chosen, HOSTILE_NAMES))
    for record in (*enterprise.staff, *enterprise.party_members):
        if record.get("employee_no") in names:
            record["name"] = names[record["employee_no"]]
    staff = {s["employee_no"]: s for s in enterprise.staff}
    registered = {r["employee_no"]: r["party_org_code"] for r in enterprise.party_members if r.get("employee_no")}
    branch = next(registered[e] for e in chosen if e in registered)
    for org in enterprise.party_orgs:
        if org["code"] == branch:
            org["name"] = HOSTILE_ORG_NAME
    uncovered = next(m["subject"]["code"] for m in enterprise.expected_mismatches() if m["rule"] == "uncovered_unit")
    for unit in enterprise.org_units:
        if unit["code"] in (uncovered, staff[chosen[0]]["org_unit_code"]):
            unit["name"] = HOSTILE_UNIT_NAME
    enterprise.version += 1
    site.rewrite()
    return names


def build_console_site(folder: Path, db_url: str, staff: int = 400, seed: int = 29,
                       hostile: bool = False) -> ConsoleSite:
    """Sync a generated enterprise and create admin, auditor and two officers (A and B subtrees)."""
    site = make_site(folder, db_url, staff=staff, seed=seed)
    if hostile:
        plant_hostile(site)
    assert site.sync().status == "succeeded"
    with session_factory(site.runtime.engine)() as s, s.begin():
        busiest = _top_level_orgs_by_open_mismatches(s)
        officer_org, other_org = busiest[0], busiest[1]
        officer_codes, other_codes = subtree_codes(s, officer_org), subtree_codes(s, other_org)
        for name, role, org in (("admin", "admin", None), ("auditor", "auditor", None),
                                ("officer", "officer", officer_org), ("officer_b", "officer", other_org)):
            s.add(User(username=name, password_hash=hash_password(PASSWORDS[name]), role=role, party_org_code=org))
    return ConsoleSite(site, officer_org, other_org, officer_codes, other_codes)


def make_app(console_site: ConsoleSite) -> Flask:
    runtime = console_site.site.runtime
    return app_for(runtime)


def login(client: FlaskClient, username: str) -> str:
    """Log `username` in through the form; returns the session's CSRF token for later POSTs."""
    page = client.get("/login").get_data(as_text=True)
    token = csrf_token_in(page)
    response = client.post("/login", data={"username": username, "password": PASSWORDS[username],
                                           "csrf_token": token})
    assert response.status_code == 302, f"log-in as {username} failed: {response.status_code}"
    # log-in starts a new session; its CSRF token is made by the first page with a form
    page = client.get("/mismatches").get_data(as_text=True)
    with client.session_transaction() as sess:
        token = sess.get("csrf")
    assert token and token in page, "the page after log-in carries the session's CSRF token"
    return token


def fingerprint(engine: Engine) -> dict[str, Any]:
    """What a refused request must not change: mismatch decisions, memberships, transfers, field
    overrides, source links, coverage, runs, users, persons' placement and the change feed."""
    with session_factory(engine)() as s:
        return {
            "mismatches": s.execute(select(
                Mismatch.id, Mismatch.state, Mismatch.resolution, Mismatch.resolution_note, Mismatch.resolved_by,
                Mismatch.expires_at, Mismatch.closed_at).order_by(Mismatch.id)).all(),
            "memberships": s.execute(select(
                Membership.id, Membership.person_id, Membership.party_org_code, Membership.status,
                Membership.active).order_by(Membership.id)).all(),
            "coverage": s.execute(select(
                Coverage.party_org_code, Coverage.org_unit_code, Coverage.include_descendants)
                .order_by(Coverage.party_org_code, Coverage.org_unit_code)).all(),
            "runs": s.execute(select(SyncRun.id, SyncRun.status, SyncRun.approved).order_by(SyncRun.id)).all(),
            "users": s.execute(select(User.username, User.role, User.party_org_code, User.active,
                                      User.password_hash).order_by(User.username)).all(),
            "persons": s.execute(select(Person.id, Person.name, Person.org_unit_code, Person.staff_active)
                                 .order_by(Person.id)).all(),
            "transfers": s.execute(select(Transfer.id, Transfer.person_id, Transfer.to_party_org_code, Transfer.status)
                                   .order_by(Transfer.id)).all(),
            "overrides": s.execute(select(FieldOverride.id, FieldOverride.entity_id, FieldOverride.field)
                                   .order_by(FieldOverride.id)).all(),
            "links": s.execute(select(SourceLink.id, SourceLink.entity_id, SourceLink.active)
                               .order_by(SourceLink.id)).all(),
            "changes": s.scalar(select(func.count()).select_from(Change)),
        }


__all__ = ["HOSTILE_NAMES", "HOSTILE_ORG_NAME", "HOSTILE_UNIT_NAME", "PASSWORDS", "plant_hostile", "ConsoleSite", "build_console_site", "fingerprint", "login", "make_app"]
