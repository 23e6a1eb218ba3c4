"""A first load into empty tables builds their plain indexes once, after the pull (records.bulk
DeferredIndexes; on PostgreSQL the change feed's, after the staged rows move in at COMMIT)."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select

from records.bulk import DeferredIndexes
from records.db import session_factory
from records.models import Change, Person
from tests.sync.conftest import make_site

TABLES = ("persons", "memberships", "source_links", "changes")


def indexes(engine) -> dict[str, set[str]]:
    inspector = inspect(engine)
    return {t: {ix["name"] for ix in inspector.get_indexes(t)} for t in TABLES}


def test_first_load_defers_and_rebuilds_every_index(tmp_path: Path, any_db_url: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("records.stamping._REBUILD_INDEXES_FROM", 10)
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
        assert {"ix_persons_name", "ix_memberships_person_id", "ix_source_links_entity"} <= set(deferred[0])
    assert indexes(site.runtime.engine) == before
    with session_factory(site.runtime.engine)() as s:
        seqs = s.scalars(select(Change.seq).order_by(Change.id)).all()
    assert None not in seqs and seqs == sorted(set(seqs))

    second = site.sync()  # the tables are not empty any more: nothing deferred
    assert second.status == "succeeded" and deferred[-1] == []
    assert indexes(site.runtime.engine) == before


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
