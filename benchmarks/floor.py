"""The bare floor of a sync: fetch every page and insert its rows with one executemany per page.

    python -m benchmarks.floor URL PAGE_SIZE SQLITE_URL

No mapping, no correlation, no diff, no history: the least any loader must do.
"""
from __future__ import annotations

import json
import sqlite3
import sys

import requests

KINDS = ("org_units", "party_orgs", "staff", "party_members", "performance")


def main(url: str, page_size: int, database: str) -> None:
    path = database.removeprefix("sqlite:///")
    conn = sqlite3.connect(path)
    http = requests.Session()
    for kind in KINDS:
        columns: list[str] | None = None
        page = 1
        while True:
            body = http.get(f"{url}/{kind}", params={"page": page, "page_size": page_size}).json()
            rows = body["data"]
            if rows and columns is None:
                columns = list(rows[0])
                conn.execute(f'CREATE TABLE "{kind}" ({", ".join(f"{c!r}" for c in columns)})')
            if rows:
                marks = ", ".join("?" for _ in columns)
                conn.executemany(
                    f'INSERT INTO "{kind}" VALUES ({marks})',
                    [[json.dumps(r.get(c), ensure_ascii=False) if isinstance(r.get(c), (list, dict)) else r.get(c)
                      for c in columns] for r in rows],
                )
            if page >= body["total_pages"]:
                break
            page += 1
        conn.commit()
    conn.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
