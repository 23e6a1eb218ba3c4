"""End to end: a `sql` source of appraisal rows (an ERP view with Chinese columns, in a SQLite
file) synced by the engine into the dualline database — full, incremental and deletions."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select

from records.db import session_factory, upgrade
from records.models import Performance, Quarantine, SourceCursor
from sync.config import parse_config
from sync.engine import SyncEngine
from sync.runtime import Runtime
from tests.conftest import TEST_SECRET

ROWS = [
    ("10023", "2024年第一季度", "优秀", "95.5", 100, "2024-04-02 09:00:00"),
    ("10024", "2024年第一季度", "B", "82", 100, "2024-04-03 09:00:00"),
    ("10023", "2023年度", "合格", "78", 100, "2024-01-10 09:00:00"),
    ("10025", "2024-03", "D", "55", 100, "2024-04-01 09:00:00"),
    ("10026", "2024年第一季度", "超级优秀", "99", 100, "2024-04-01 08:00:00"),  # bad grade
]


class ErpSite:
    def __init__(self, folder: Path, db_url: str) -> None:
        self.erp = folder / "erp.db"
        with sqlite3.connect(self.erp) as conn:
            conn.execute("CREATE TABLE appraisal (工号 TEXT, 考核周期 TEXT, 考核等级 TEXT, 得分 TEXT, "
                         "满分 INTEGER, 修改时间 TEXT)")
            conn.executemany("INSERT INTO appraisal VALUES (?, ?, ?, ?, ?, ?)", ROWS)
        config = parse_config({
            "database": db_url, "secret_key": TEST_SECRET,
            "guard": {"max_deactivate_ratio": 1.0, "max_deactivate": 100},
            "sources": {"erp": {
                "connector": "sql", "url": f"sqlite:///{self.erp}", "provides": ["performance"],
                "mapping": "appraisal", "chunk_size": 2,
                "queries": {"performance": "SELECT * FROM appraisal WHERE 考核周期 IS NOT NULL"},
                "incremental": {"performance": {"column": "修改时间"}},
            }},
        }, path=None)
        self.runtime = Runtime(config)
        upgrade(self.runtime.engine)

    def execute(self, sql: str, *params: object) -> None:
        with sqlite3.connect(self.erp) as conn:
            conn.execute(sql, params)

    def sync(self, **options: object):
        return SyncEngine(self.runtime).run(None, **options)

    def performance(self) -> dict[tuple[str, str], tuple]:
        with session_factory(self.runtime.engine)() as s:
            return {(p.employee_no, p.period): (p.grade, p.score, p.score_max, p.active)
                    for p in s.scalars(select(Performance))}

    def cursor(self) -> str | None:
        with session_factory(self.runtime.engine)() as s:
            row = s.get(SourceCursor, ("erp", "performance"))
            return row.value if row else None


@pytest.fixture
def erp(tmp_path: Path, sqlite_url: str) -> ErpSite:
    return ErpSite(tmp_path, sqlite_url)


def test_full_then_incremental_then_full(erp: ErpSite) -> None:
    result = erp.sync()
    assert result.status == "succeeded", result.errors
    counts = result.counts["performance"]
    assert (counts["created"], counts["quarantined"]) == (4, 1)
    assert erp.performance() == {
        ("10023", "2024-Q1"): ("优秀", 95.5, 100.0, True),
        ("10024", "2024-Q1"): ("良好", 82.0, 100.0, True),
        ("10023", "2023"): ("合格", 78.0, 100.0, True),
        ("10025", "2024-03"): ("不合格", 55.0, 100.0, True),
    }
    with session_factory(erp.runtime.engine)() as s:
        [quarantined] = s.scalars(select(Quarantine)).all()
        assert "超级优秀" in quarantined.reason
    assert erp.cursor() == "2024-04-03 09:00:00"

    # A re-appraisal: only the changed row is read, and nothing unlisted is deactivated.
    erp.execute("UPDATE appraisal SET 考核等级 = '良好', 得分 = '86', 修改时间 = '2024-05-01 10:00:00' "
                "WHERE 工号 = '10025'")
    erp.execute("DELETE FROM appraisal WHERE 工号 = '10024'")
    result = erp.sync()
    assert result.status == "succeeded", result.errors
    counts = result.counts["performance"]
    assert (counts["updated"], counts["created"], counts["deactivated"]) == (1, 0, 0)
    assert erp.performance()[("10025", "2024-03")] == ("良好", 86.0, 100.0, True)
    assert erp.performance()[("10024", "2024-Q1")][3] is True
    assert erp.cursor() == "2024-05-01 10:00:00"

    # Nothing changed since: nothing read, the cursor stays.
    result = erp.sync()
    assert result.status == "succeeded"
    assert not result.counts.get("performance", {}).get("updated")
    assert erp.cursor() == "2024-05-01 10:00:00"

    # A full pull sees the deletion.
    result = erp.sync(full=True)
    assert result.status == "succeeded", result.errors
    assert result.counts["performance"]["deactivated"] == 1
    assert erp.performance()[("10024", "2024-Q1")][3] is False


def test_broken_view_fails_the_run_and_applies_nothing(erp: ErpSite) -> None:
    assert erp.sync().status == "succeeded"
    before = erp.performance()
    erp.execute("DROP TABLE appraisal")
    result = erp.sync(full=True)
    assert result.status == "failed"
    [error] = result.errors
    assert (error["source"], error["kind"], error["error_class"]) == ("erp", "performance", "config")
    assert "no such table" in error["message"]
    assert erp.performance() == before
