"""benchmarks.insert_bench: both ways load every row of every table (a small run)."""
from __future__ import annotations

import json

import pytest

from benchmarks import insert_bench
from records import bulk


def test_both_ways_insert_every_row(capsys: pytest.CaptureFixture[str]) -> None:
    if bulk._c_insert_rows is None:
        pytest.skip("records._sqlite_rows is not built here (tests/records/test_bulk.py fails for it in CI)")
    assert insert_bench.main(["--persons", "300", "--changes", "200", "--links", "100", "--rounds", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"driver", "c"}
    for runs in report.values():
        assert [set(r) for r in runs] == [{"persons", "changes", "source_links"}]  # counts checked inside
