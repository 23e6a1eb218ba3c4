"""Large pulls recognised a page ahead in a child process (sync.read_ahead).

Against the paginated REST fake (pages of 100), the staff (30 pages) and roster (~11 pages)
pulls of a 3 000-staff enterprise pass `AHEAD_AFTER_PAGES` — the roster's mapping resolves
branch names, so the child maps with what the run learned before it forked. The data and the
change feed are exactly what the same syncs write without reading ahead, and without any
create's row made by sync.new_rows (full, no-op, 5 % changed; SQLite and PostgreSQL), and on
SQLite without the C inserter (records._sqlite_rows); a source error on
a page the child reads fails the run with the same error class and applies nothing; a child
that dies fails the run, never applying a half-read pull as if it were whole. The parent's HTTP
connections keep working after a child (the next pulls of the same connector).
"""
from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from sqlalchemy import select

from benchmarks.enterprise import generate
from benchmarks.fake_source import FakeSource
from records import bulk
from records.db import session_factory
from records.models import Change, Membership, OrgUnit, PartyOrg, Person, SourceLink
from sync import read_ahead
from sync.apply import Applier
from tests.conftest import _fresh_server_database
from tests.sync.test_failures import RestSite

STAFF = 3000
MODES = ("ahead", "in_place", "driver", "unbuilt")
SQLITE_ONLY = ("driver",)  # elsewhere the driver does every insert anyway


def _state(site: RestSite) -> dict[str, Any]:
    with session_factory(site.runtime.engine)() as s:
        return {
            "persons": sorted(s.execute(select(Person.employee_no, Person.name, Person.org_unit_code,
                                               Person.id_number_hash, Person.id_number_masked,
                                               Person.mobile_masked, Person.birth_date, Person.provenance,
                                               Person.staff_active, Person.scim_external_id,
                                               Person.scim_deleted_at, Person.scim_extensions,
                                               Person.created_at == Person.updated_at)).all(), key=repr),
            "memberships": sorted(s.execute(select(Membership.party_org_code, Membership.category,
                                                   Membership.joined_on, Membership.provenance,
                                                   Membership.active, Membership.dues_category,
                                                   Membership.created_at == Membership.updated_at)).all(), key=repr),
            # Rows built ahead (in the child or in place) and rows the run built: one feed.
            "feed": sorted(s.execute(select(Change.entity, Change.op, Change.changed, Change.run_id,
                                            Change.actor, Change.seq == Change.id)).all(), key=repr),
            "units": sorted(s.execute(select(OrgUnit.code, OrgUnit.parent_code, OrgUnit.active)).all(), key=repr),
            "orgs": sorted(s.execute(select(PartyOrg.code, PartyOrg.name, PartyOrg.active)).all(), key=repr),
            "links": sorted(s.execute(select(SourceLink.source, SourceLink.kind, SourceLink.external_id,
                                             SourceLink.fingerprint, SourceLink.active,
                                             SourceLink.last_run_id)).all(), key=repr),
            # Each run's timestamps: one per run, on every row it wrote (SQLite writes the
            # columns a batch of rows shares into its INSERT: records.bulk.sqlite_literal).
            "times": [len(set(s.scalars(select(Change.at).where(
                Change.run_id == run, Change.entity.in_(("person", "membership", "org_unit", "party_org"))))))
                for run in (1, 2, 3)],
            "created": sorted(set(s.scalars(select(Person.created_at)))) == sorted(
                set(s.scalars(select(Change.at).where(Change.op == "create", Change.entity == "person")))),
        }


@pytest.fixture(params=["sqlite", "postgresql"])
def databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """An empty database of one kind per mode: synced reading ahead, reading in place, reading in
    place with every insert through the driver (SQLite: no C inserter), and reading in place with
    no row builder (sync.new_rows) at all: `Applier._new_row` makes every create's row."""
    if request.param == "sqlite":
        yield {mode: f"sqlite:///{tmp_path / (mode + '.db')}" for mode in MODES}
        return
    modes = [mode for mode in MODES if mode not in SQLITE_ONLY]
    servers = [_fresh_server_database("postgresql") for _ in modes]
    try:
        yield {mode: url for mode, (url, _) in zip(modes, servers)}
    finally:
        for _, drop in servers:
            drop()


def test_read_ahead_writes_exactly_what_reading_in_place_writes(tmp_path: Path, databases: dict[str, str],
                                                              monkeypatch: pytest.MonkeyPatch, forks: list[int]) -> None:
    # Rows built in this process (a failed build would fall back silently: count the successes).
    built: list[str] = []
    real_row_builder = Applier.row_builder

    def counting_row_builder(self: Applier, kind: str, source: str):  # noqa: ANN202 - a builder or None
        build = real_row_builder(self, kind, source)
        if build is None:
            return None

        def counted(data: dict[str, Any], *id_hash: Any) -> Any:
            row = build(data, *id_hash)
            built.append(kind)
            return row
        return counted

    monkeypatch.setattr(Applier, "row_builder", counting_row_builder)
    states, counts = [], []
    for mode, db_url in databases.items():
        ahead = mode == "ahead"
        if not ahead:
            monkeypatch.setattr(read_ahead, "AHEAD_AFTER_PAGES", 10**9)
        if mode == "driver":
            monkeypatch.setattr(bulk, "_c_insert_rows", None)
        if mode == "unbuilt":  # every create's row made by Applier._new_row, field by field
            monkeypatch.setattr(Applier, "row_builder", lambda self, kind, source: None)
        forks.clear()
        built.clear()
        enterprise = generate(staff=STAFF, seed=17)
        with FakeSource(enterprise, page_size=100) as source:
            (tmp_path / mode).mkdir()
            site = RestSite(tmp_path / mode, db_url, source)
            first = site.sync()
            assert first.status == "succeeded"
            # Staff and roster (and the appraisals) were read ahead, or nothing was.
            assert (len(forks) >= 2) if ahead else not forks
            if mode in ("in_place", "driver"):  # every new staff record's row was built ahead, none failed
                assert built.count("staff") >= first.counts["staff"]["created"] > 0
            elif mode == "unbuilt":
                assert not built
            noop = site.sync()
            assert noop.counts["staff"]["unchanged"] == first.counts["staff"]["created"]
            enterprise.mutate(fraction=0.05, seed=3)
            changed = site.sync()
            assert changed.status == "succeeded" and changed.counts["staff"]["updated"]
            states.append(_state(site))
            counts.append((first.counts, noop.counts, changed.counts, changed.mismatches_by_rule))
    assert all(state == states[0] for state in states[1:])
    assert states[0]["times"] == [1, 0, 1] and states[0]["created"] is True
    assert all(count == counts[0] for count in counts[1:])


def test_a_source_error_on_a_page_read_ahead_fails_the_run(tmp_path: Path, sqlite_url: str) -> None:
    with FakeSource(generate(staff=STAFF, seed=17), page_size=100) as source:
        site = RestSite(tmp_path, sqlite_url, source)
        source.fail("staff", "html", page=25)  # well past the pages read in place
        result = site.sync()
        assert result.status == "failed"
        [error] = result.errors
        assert (error["source"], error["kind"], error["error_class"]) == ("hr", "staff", "protocol")
        with session_factory(site.runtime.engine)() as s:
            assert s.scalar(select(Person.id).limit(1)) is None  # nothing applied


def test_a_child_that_dies_fails_the_run(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real_page = read_ahead.Recogniser.page
    parent = os.getpid()

    def dying_page(self: read_ahead.Recogniser, records: list[dict[str, Any]]) -> list[Any]:
        if os.getpid() != parent and self.kind == "staff":
            os._exit(9)  # the child dies without a word
        return real_page(self, records)

    monkeypatch.setattr(read_ahead.Recogniser, "page", dying_page)
    with FakeSource(generate(staff=STAFF, seed=17), page_size=100) as source:
        site = RestSite(tmp_path, sqlite_url, source)
        result = site.sync()
        assert result.status == "failed"
        [error] = result.errors
        assert (error["kind"], error["error_class"]) == ("staff", "transport")
        assert "ended before the pull was whole" in error["message"]
        with session_factory(site.runtime.engine)() as s:
            assert s.scalar(select(Person.id).limit(1)) is None


class _Pair(NamedTuple):
    first: str
    second: str


def test_pages_cross_the_pipe_unchanged_whatever_their_values_are() -> None:
    """A page of built-in values goes by marshal; one holding any other type goes by pickle,
    and each comes out equal to what went in, of the same types."""
    plain = ("page", [
        (read_ahead.RECORD, "1001", {"name": "张三", "score": 91.5, "tags": ["a", "b"], "member": True,
                                     "left_on": None, "level": 3},
         "employee_no", "b4fea2b0", (("1001", "张三", None), '{"+":[1,"张三"]}')),
        (read_ahead.UNCHANGED, "1002"),
        (read_ahead.QUARANTINE, None, {"工号": ""}, "employee_no", "required field is empty"),
    ], 3, "2026-11-25T00:00:00")
    blob = read_ahead.encode(plain)
    assert blob[:1] == b"m"
    assert read_ahead.decode(blob) == plain

    for odd in (dt.date(2021, 5, 12), _Pair("P1000B0801", "full")):
        page = ("page", [(read_ahead.RECORD, "1003", {"joined_on": odd}, "employee_no", "c0ffee", None)], 1, None)
        blob = read_ahead.encode(page)
        assert blob[:1] == b"p"
        decoded = read_ahead.decode(blob)
        assert decoded == page
        assert type(decoded[1][0][2]["joined_on"]) is type(odd)
