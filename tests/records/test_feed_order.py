"""The change feed's `seq` follows COMMIT order: a follower polling it never misses a change.

Two writers with their own connections commit in the worst order (the one that wrote first
commits last); a follower that stores the last seq it saw must still get every row.
"""
from __future__ import annotations

import random
import threading
import time

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from records.db import make_engine, upgrade
from records.feed import SubtreeWindow, read_feed
from records.stamping import hold_feed, stamp_changes
from records.models import Change, ChangeFeedCounter, utcnow


def _row(marker: str) -> dict:
    return {"run_id": None, "actor": marker, "entity": "org_unit", "entity_id": 1, "op": "update",
            "changed": {"name": ["a", marker]}, "at": utcnow()}


def _follow(engine, after: int) -> tuple[list[Change], int]:
    with Session(engine) as s:
        rows = read_feed(s, SubtreeWindow(None), after, 1000)
    return rows, (rows[-1].seq if rows else after)


def _commit_in_background(conn) -> tuple[threading.Thread, threading.Event]:
    """COMMIT `conn` in a thread, given half a second to get stuck; the thread and an event set
    once it has committed."""
    committed = threading.Event()

    def commit() -> None:
        conn.commit()
        committed.set()

    worker = threading.Thread(target=commit)
    worker.start()
    time.sleep(0.5)
    return worker, committed


@pytest.fixture
def server_engine(any_db_url: str):
    if any_db_url.startswith("sqlite"):
        pytest.skip("SQLite has one writer at a time: its transactions cannot interleave")
    engine = make_engine(any_db_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def test_first_writer_committing_last_is_not_skipped(server_engine) -> None:
    early = server_engine.connect()
    early.begin()
    early.execute(insert(Change.__table__), [_row("early")])  # inserted first: the smaller id
    with server_engine.begin() as late:
        late.execute(insert(Change.__table__), [_row("late-1"), _row("late-2")])
    seen, cursor = _follow(server_engine, 0)
    assert [c.actor for c in seen] == ["late-1", "late-2"]
    early.commit()
    early.close()
    more, cursor = _follow(server_engine, cursor)
    assert [c.actor for c in more] == ["early"]
    assert more[0].seq > seen[-1].seq
    with Session(server_engine) as s:
        assert s.scalar(select(ChangeFeedCounter.last_seq)) == cursor


def test_stamping_is_serialised_by_the_counter(server_engine) -> None:
    """While one transaction has stamped (holds the counter) and not committed, another's commit
    waits, and its rows come after; work before the stamping never waits."""
    first = server_engine.connect()
    first.begin()
    first.execute(insert(Change.__table__), [_row("first")])
    second = server_engine.connect()
    second.begin()
    second.execute(insert(Change.__table__), [_row("second")])  # not blocked by `first`
    assert stamp_changes(first) == 1
    worker, committed = _commit_in_background(second)
    assert not committed.is_set()  # waiting for the counter
    assert _follow(server_engine, 0)[0] == []
    first.commit()
    worker.join(10)
    assert committed.is_set()
    rows, _ = _follow(server_engine, 0)
    assert [c.actor for c in rows] == ["first", "second"]
    first.close()
    second.close()


def test_a_transaction_holding_the_feed_numbers_rows_as_it_writes_them(server_engine) -> None:
    """PostgreSQL's first-load path (hold_feed): rows written with `seq = id + offset` at INSERT
    and rows left for the commit both come after everything committed before, in id order;
    another writer that committed nothing yet waits at its COMMIT and comes after them all."""
    if server_engine.dialect.name != "postgresql":
        pytest.skip("the feed is held on PostgreSQL only (MariaDB stamps by primary key)")
    with server_engine.begin() as conn:
        conn.execute(insert(Change.__table__), [_row("before")])
    before, cursor = _follow(server_engine, 0)
    holder = server_engine.connect()
    holder.begin()
    offset = hold_feed(holder)
    assert offset is not None and hold_feed(holder) == offset  # held once per transaction
    other = server_engine.connect()
    other.begin()
    other.execute(insert(Change.__table__), [_row("other")])  # writing does not wait
    ids = [r[0] for r in holder.execute(text(
        "SELECT nextval(pg_get_serial_sequence('changes', 'id')) FROM generate_series(1, 2)"))]
    holder.execute(insert(Change.__table__), [{**_row(f"numbered-{i}"), "id": i, "seq": i + offset} for i in ids])
    holder.execute(insert(Change.__table__), [_row("stamped-at-commit")])
    worker, committed = _commit_in_background(other)
    assert not committed.is_set()  # the holder has the counter until it ends
    assert _follow(server_engine, cursor)[0] == []
    holder.commit()
    worker.join(10)
    assert committed.is_set()
    rows, last = _follow(server_engine, cursor)
    assert [c.actor for c in rows] == [f"numbered-{i}" for i in ids] + ["stamped-at-commit", "other"]
    assert rows[0].seq > before[-1].seq
    with Session(server_engine) as s:
        assert s.scalar(select(ChangeFeedCounter.last_seq)) == last
    holder.close()
    other.close()


def test_no_feed_is_held_after_the_transaction_wrote_change_rows(server_engine) -> None:
    if server_engine.dialect.name != "postgresql":
        pytest.skip("the feed is held on PostgreSQL only")
    with server_engine.connect() as conn:
        conn.begin()
        conn.execute(insert(Change.__table__), [_row("early")])
        assert hold_feed(conn) is None  # its rows could not be numbered after the counter
        conn.commit()
    rows, _ = _follow(server_engine, 0)
    assert [c.actor for c in rows] == ["early"]


def test_follower_never_misses_under_concurrent_writers(server_engine) -> None:
    """Two writers commit many small transactions with random delays between INSERT and COMMIT
    while a follower polls: it ends with every row, each once, in increasing seq."""
    per_writer, stop = 40, threading.Event()
    errors: list[BaseException] = []

    def writer(name: str, seed: int) -> None:
        rng = random.Random(seed)
        try:
            for i in range(per_writer):
                with server_engine.connect() as conn:
                    conn.begin()
                    conn.execute(insert(Change.__table__),
                                 [_row(f"{name}-{i}-{j}") for j in range(rng.randint(1, 4))])
                    time.sleep(rng.random() * 0.01)
                    conn.commit()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    seen: list[tuple[int, str]] = []

    def follower() -> None:
        cursor = 0
        while True:
            done = stop.is_set()
            rows, cursor = _follow(server_engine, cursor)
            seen.extend((c.seq, c.actor) for c in rows)
            if done and not rows:
                return
            time.sleep(0.001)

    threads = [threading.Thread(target=writer, args=("a", 1)), threading.Thread(target=writer, args=("b", 2))]
    reader = threading.Thread(target=follower)
    reader.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    reader.join(30)
    assert not errors
    with server_engine.connect() as conn:
        written = {r[0] for r in conn.execute(text("SELECT actor FROM changes"))}
        assert conn.execute(text("SELECT COUNT(*) FROM changes WHERE seq IS NULL")).scalar() == 0
    seqs = [s for s, _ in seen]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert sorted(a for _, a in seen) == sorted(written)


def test_rolled_back_changes_get_no_seq_and_the_next_commit_stamps(any_db_url: str) -> None:
    engine = make_engine(any_db_url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            conn.begin()
            conn.execute(insert(Change.__table__), [_row("gone")])
            conn.rollback()
        with Session(engine) as s, s.begin():  # the ORM path: a plain add, nothing else to do
            s.add(Change(**_row("kept")))
        rows, _ = _follow(engine, 0)
        assert [c.actor for c in rows] == ["kept"] and rows[0].seq >= 1
    finally:
        engine.dispose()
