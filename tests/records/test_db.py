"""records.db: how dualline opens SQLite."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from records.db import make_engine, upgrade


def test_a_new_sqlite_database_uses_wal_and_16k_pages(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'dualline.db'}")
    try:
        upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA page_size")).scalar_one() == 16384
            assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
    finally:
        engine.dispose()


def test_an_existing_database_keeps_its_page_size(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:  # made by an earlier version, 4 KiB pages
        old.execute("CREATE TABLE t (x)")
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA page_size")).scalar_one() == 4096
            assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 0
    finally:
        engine.dispose()
