"""A first load into empty tables builds their plain indexes once, after the pull (records.bulk
DeferredIndexes), the change feed's included: its rows are numbered as they are written (on
PostgreSQL the run holds the feed, records.stamping.hold_feed); later runs on PostgreSQL stage
theirs and move them in at COMMIT."""
from __future__ import annotations

import gc
from pathlib import Path

import pytest
from sqlalchemy import event, func, inspect, select

from records import stamping
from records.bulk import DeferredIndexes
from records.db import session_factory
from records.models import Change, ChangeFeedCounter, Person
from tests.conftest import _fresh_server_database
from tests.sync.conftest import make_site

TABLES = ("persons", "memberships", "source_links", "changes")


def indexes(engine) -> dict[str, set[str]]:
    """Each table's indexes, and the roster's foreign keys (deferred with them on PostgreSQL)."""
    inspector = inspect(engine)
    return {**{t: {ix["name"] for ix in inspector.get_indexes(t)} for t in TABLES},
            "memberships foreign keys": {fk["name"] for fk in inspector.get_foreign_keys("memberships")}}


def test_first_load_defers_and_rebuilds_every_index(tmp_path: Path, any_db_url: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("records.stamping._REBUILD_INDEXES_FROM", 10)
    moved: list[int] = []
    move = stamping._move_staged
    monkeypatch.setattr(stamping, "_move_staged", lambda conn, offset: moved.append(move(conn, offset)) or moved[-1])
    deferred: list[list[str]] = []
    defer = DeferredIndexes.defer
    monkeypatch.setattr(DeferredIndexes, "defer", lambda self, tables: deferred.append(defer(self, tables)) or deferred[-1])
    site = make_site(tmp_path / "src", any_db_url, staff=300, seed=2)
    before = indexes(site.runtime.engine)
    assert before["persons"] >= {"ix_persons_name", "ix_persons_id_number_hash", "ix_persons_org_unit_id"}

    first = site.sync()
    assert first.status == "succeeded", first.errors
    if site.runtime.engine.dialect.name in ("mysql", "mariadb"):
        assert deferred == [[]]  # its DDL would commit the run half-way
    else:
        assert {"ix_persons_name", "ix_memberships_person_id", "ix_source_links_entity",
                "ix_changes_entity"} <= set(deferred[-1])
    assert moved == []  # nothing staged: written once, numbered
    if site.runtime.engine.dialect.name == "postgresql":  # statistics for the next run's plans
        with site.runtime.engine.connect() as conn:
            analysed = set(conn.exec_driver_sql(
                "SELECT DISTINCT tablename FROM pg_stats WHERE schemaname = 'public'").scalars())
        assert {"source_links", "changes", "persons", "memberships"} <= analysed
    assert indexes(site.runtime.engine) == before
    first_seqs = feed(site.runtime.engine)

    site.enterprise.mutate(fraction=0.05, seed=5)
    site.rewrite()
    second = site.sync()  # the tables are not empty any more: nothing deferred
    assert second.status == "succeeded" and deferred[-1] == []
    assert indexes(site.runtime.engine) == before
    if site.runtime.engine.dialect.name == "postgresql":
        assert moved and moved[-1] > 0  # staged this time
    seqs = feed(site.runtime.engine)
    assert seqs[: len(first_seqs)] == first_seqs and len(seqs) > len(first_seqs)


def feed(engine) -> list[int]:
    """Every seq in id order: all stamped, unique, increasing, and the counter at the last."""
    with session_factory(engine)() as s:
        seqs = s.scalars(select(Change.seq).order_by(Change.id)).all()
        counter = s.scalar(select(ChangeFeedCounter.last_seq))
    assert None not in seqs and seqs == sorted(set(seqs))
    if engine.dialect.name != "sqlite":  # SQLite numbers by id, without the counter
        assert counter == seqs[-1]
    return seqs


def test_a_failed_first_load_keeps_its_indexes(tmp_path: Path, any_db_url: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    site = make_site(tmp_path / "src", any_db_url, staff=300, seed=3)
    before = indexes(site.runtime.engine)

    def broken(*args, **kwargs):
        raise RuntimeError("alignment broke")

    monkeypatch.setattr("sync.engine.align", broken)
    with pytest.raises(RuntimeError):
        site.sync()
    assert indexes(site.runtime.engine) == before  # the drop rolled back with the run
    with session_factory(site.runtime.engine)() as s:
        assert s.scalar(select(func.count()).select_from(Person)) == 0


def test_a_dry_first_load_keeps_its_indexes(tmp_path: Path, sqlite_url: str) -> None:
    site = make_site(tmp_path / "src", sqlite_url, staff=300, seed=4)
    before = indexes(site.runtime.engine)
    assert site.sync(dry_run=True).status == "dry_run"
    assert indexes(site.runtime.engine) == before
    assert site.sync().status == "succeeded"
    assert indexes(site.runtime.engine) == before


def test_alignment_analyses_only_the_tables_its_run_changed(tmp_path: Path) -> None:
    """PostgreSQL: a first load analyses what it filled before the rules read it; a no-op
    `sync --full` re-aligns everything without paying for an ANALYZE (1.5 s at a million staff)."""
    url, drop = _fresh_server_database("postgresql")
    try:
        _analyses_only_what_changed(make_site(tmp_path / "src", url, staff=300, seed=6))
    finally:
        drop()


def _analyses_only_what_changed(site) -> None:  # noqa: ANN001 - a tests.sync.conftest.Site
    analysed: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        if statement.lstrip().upper().startswith("ANALYZE"):
            analysed.append(statement)

    event.listen(site.runtime.engine, "before_cursor_execute", record)
    assert site.sync().status == "succeeded"
    assert any("persons" in s and "expected_branches" in s for s in analysed), analysed
    analysed.clear()
    # A backend reports a transaction's row counts to the statistics a moment after its COMMIT
    # (up to 10 s when idle); until then they still show as the next transaction's own. Each CLI
    # run has its own connection, so the next run starts on a fresh one here too.
    site.runtime.engine.dispose()
    assert site.sync(full=True).status == "succeeded"
    assert analysed == []


def test_the_correlation_index_is_freed_before_the_indexes_and_alignment(
        tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """At a first load the planner's index of persons is the largest thing the run holds; no
    phase after the pull needs it, so it must not add to their memory."""
    from sync import engine
    from sync.correlate import PersonIndex
    from sync.planner import Planner

    alive: list[int] = []
    real_align = engine.align

    def align(*args, **kwargs):
        alive.append(sum(isinstance(o, (Planner, PersonIndex)) for o in gc.get_objects()))
        return real_align(*args, **kwargs)

    monkeypatch.setattr(engine, "align", align)
    site = make_site(tmp_path / "src", sqlite_url, staff=300, seed=2)
    assert site.sync().status == "succeeded"
    assert alive == [0]
