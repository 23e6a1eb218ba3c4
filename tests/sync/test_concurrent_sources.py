"""Syncs of different sources at the same time (two crons firing together) both apply, and the
mismatches end as if they had run one after the other: alignment is serialized until commit."""
from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

import sync.alignment as alignment
from records.db import session_factory
from records.models import Mismatch
from tests.sync.conftest import make_site


def _live_mismatches(site) -> Counter:
    with session_factory(site.runtime.engine)() as s:
        rows = s.execute(select(Mismatch.rule, Mismatch.subject_key)
                         .where(Mismatch.closed_at.is_(None), Mismatch.state == "open")).all()
    return Counter((rule, key) for rule, key in rows)


@pytest.mark.parametrize("any_db_url", ["postgresql", "mariadb"], indirect=True)
def test_two_sources_at_once_both_apply_and_align_once(tmp_path: Path, any_db_url: str, monkeypatch) -> None:
    site = make_site(tmp_path / "src", any_db_url, staff=300, seed=47)
    assert site.sync().status == "succeeded"
    site.enterprise.mutate(fraction=0.08, seed=5)  # department moves, transfers, leavers
    site.rewrite()

    # Each run waits (a few seconds at most: a row lock may hold the other back) for the other to
    # reach alignment too, so both compute it with their transactions open.
    arrived = {"oa": threading.Event(), "roster": threading.Event()}
    real = alignment._serialize_alignment

    def meet_then_serialize(session):
        mine = threading.current_thread().name
        arrived[mine].set()
        arrived["roster" if mine == "oa" else "oa"].wait(5)
        real(session)

    monkeypatch.setattr(alignment, "_serialize_alignment", meet_then_serialize)
    results: dict[str, object] = {}

    def run(source: str) -> None:
        try:
            results[source] = site.sync(source).status
        except Exception as exc:  # noqa: BLE001 - reported below with the source's name
            results[source] = exc

    threads = [threading.Thread(target=run, args=(name,), name=name) for name in ("oa", "roster")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == {"oa": "succeeded", "roster": "succeeded"}
    assert all(event.is_set() for event in arrived.values())

    monkeypatch.setattr(alignment, "_serialize_alignment", real)
    live = _live_mismatches(site)
    assert max(live.values()) == 1, "a mismatch was opened twice"
    # A run after both sees the same data, so it opens and closes nothing.
    rerun = site.sync()
    assert rerun.status == "succeeded"
    assert _live_mismatches(site) == live
    dual_line = {*alignment.DUAL_LINE_RULES, "ambiguous_match"}
    expected = Counter((m["rule"]) for m in site.enterprise.expected_mismatches())
    assert Counter(rule for rule, _ in live if rule in dual_line) == expected
