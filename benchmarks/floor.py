"""The bare floor of a sync: fetch every page and insert its rows with one executemany per page.

    python -m benchmarks.floor URL PAGE_SIZE DATABASE_URL

DATABASE_URL is `sqlite:///PATH` or `postgresql://…` (tables are created in a schema `floor`,
dropped first). No mapping, no correlation, no diff, no history: the least any loader must do —
rows go in as the source sends them (text and numbers, list fields as JSON text).
"""
from __future__ import annotations

import json
import sqlite3
import sys
from typing import Any

import requests

KINDS = ("org_units", "party_orgs", "staff", "party_members", "performance")


def _connect(database: str) -> tuple[Any, str]:
    """A DBAPI connection and its parameter marker."""
    if database.startswith("sqlite:///"):
        return sqlite3.connect(database.removeprefix("sqlite:///")), "?"
    import psycopg

    conn = psycopg.connect(database.replace("postgresql+psycopg://", "postgresql://"))
    conn.execute("DROP SCHEMA IF EXISTS floor CASCADE")
    conn.execute("CREATE SCHEMA floor")
    conn.execute("SET search_path TO floor")
    return conn, "%s"


def _cell(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return value if value is None or isinstance(value, str) else str(value)


def main(url: str, page_size: int, database: str) -> None:
    conn, mark = _connect(database)
    http = requests.Session()
    for kind in KINDS:
        columns: list[str] | None = None
        page = 1
        while True:
            body = http.get(f"{url}/{kind}", params={"page": page, "page_size": page_size}).json()
            rows = body["data"]
            if rows and columns is None:
                columns = list(rows[0])
                conn.execute(f'CREATE TABLE "{kind}" ({", ".join(f"{c} text" for c in columns)})')
            if rows:
                marks = ", ".join(mark for _ in columns)
                conn.cursor().executemany(f'INSERT INTO "{kind}" VALUES ({marks})',
                                          [[_cell(r.get(c)) for c in columns] for r in rows])
            if page >= body["total_pages"]:
                break
            page += 1
        conn.commit()
    conn.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
