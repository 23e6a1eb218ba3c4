"""Structured logs on request: one JSON object per line, with the run's context."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from benchmarks.writers import write_config, write_demo_sources
from benchmarks.enterprise import generate
from sync.logs import JsonFormatter, log_format, setup_logging
from tests.conftest import TEST_SECRET


def test_json_formatter_carries_extras_and_tracebacks() -> None:
    record = logging.LogRecord("dualline.worker", logging.WARNING, __file__, 1, "run %s: %s", (7, "held"), None)
    record.run_id, record.source = 7, "hr"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "warning" and entry["logger"] == "dualline.worker"
    assert entry["msg"] == "run 7: held" and entry["run_id"] == 7 and entry["source"] == "hr"
    assert entry["ts"].endswith("Z")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert "ValueError: boom" in json.loads(JsonFormatter().format(failed))["exc"]


def test_format_from_option_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DUALLINE_LOG_FORMAT", raising=False)
    assert log_format() == "human" and log_format("json") == "json"
    monkeypatch.setenv("DUALLINE_LOG_FORMAT", "JSON")
    assert log_format() == "json"
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        setup_logging("INFO", "json")
        setup_logging("INFO", "human")  # replaces its own handler, keeps everyone else's
        ours = [h for h in root.handlers if getattr(h, "_dualline", False)]
        assert len(ours) == 1 and not isinstance(ours[0].formatter, JsonFormatter)
        assert all(h in root.handlers for h in before)
    finally:
        for handler in [h for h in root.handlers if getattr(h, "_dualline", False)]:
            root.removeHandler(handler)


def test_sync_with_log_format_json_logs_the_run_as_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from web.cli import cli

    write_demo_sources(generate(staff=300, seed=2), tmp_path)
    config = write_config(tmp_path)
    monkeypatch.setenv("DUALLINE_CONFIG", str(config))
    monkeypatch.setenv("DUALLINE_DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite'}")
    monkeypatch.setenv("DUALLINE_SECRET_KEY", TEST_SECRET)
    # `--log-format` sets the variable for the process: monkeypatch puts it back afterwards.
    monkeypatch.setenv("DUALLINE_LOG_FORMAT", "human")
    runner = CliRunner()
    assert runner.invoke(cli, ["init"], catch_exceptions=False).exit_code == 0
    try:
        result = runner.invoke(cli, ["--log-format", "json", "sync", "--json"], catch_exceptions=False)
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, "_dualline", False)]:
            root.removeHandler(handler)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    [done] = [e for e in lines if e["logger"] == "dualline.sync"]
    assert done["status"] == "succeeded" and done["run_id"] == 1 and done["level"] == "info"
    assert done["counts"]["staff"]["created"] > 200
    assert json.loads(result.stdout.strip().splitlines()[-1])["status"] == "succeeded"
