"""The `dualline` command as users and scripts see it: exit codes, JSON shapes, messages."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from benchmarks.enterprise import generate
from benchmarks.writers import write_config, write_demo_sources
from tests.conftest import TEST_SECRET
from web.cli import cli

DUALLINE = [sys.executable, "-c", "from web.cli import main; main()"]


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    enterprise = generate(staff=350, seed=17)
    write_demo_sources(enterprise, tmp_path)
    config = write_config(tmp_path)
    monkeypatch.setenv("DUALLINE_CONFIG", str(config))
    monkeypatch.setenv("DUALLINE_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("DUALLINE_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    return config


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_init_sync_runs_mismatches_json(site: Path) -> None:
    assert invoke("init").exit_code == 0
    assert invoke("init").exit_code == 0  # idempotent
    result = invoke("sync", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["status"] == "succeeded" and isinstance(payload["run_id"], int)
    for kind in ("org_units", "staff", "party_orgs", "party_members", "performance"):
        assert set(payload["counts"][kind]) >= {"created", "updated", "deactivated", "unchanged", "quarantined"}
    assert set(payload["mismatches"]) == {"opened", "closed", "open"}

    runs = json.loads(invoke("runs", "--json").output)
    assert runs["items"][0]["id"] == payload["run_id"] and runs["items"][0]["status"] == "succeeded"

    listed = json.loads(invoke("mismatches", "--json", "--rule", "branch_mismatch").output)
    assert listed["total"] == len(listed["items"]) > 0
    item = listed["items"][0]
    assert set(item) >= {"id", "rule", "state", "severity", "subject", "details", "opened_at"}
    assert item["subject"]["type"] == "person" and item["subject"]["employee_no"]
    assert "*" in item["subject"]["id_number"]  # masked unless --reveal
    revealed = json.loads(invoke("mismatches", "--json", "--rule", "branch_mismatch", "--reveal").output)
    assert "*" not in revealed["items"][0]["subject"]["id_number"]
    assert len(revealed["items"][0]["subject"]["id_number"]) == 18

    everything = json.loads(invoke("mismatches", "--json", "--state", "all").output)
    assert everything["total"] == payload["mismatches"]["open"]


def test_dry_run_prints_plan_and_writes_nothing(site: Path) -> None:
    invoke("init")
    result = invoke("sync", "--dry-run")
    assert result.exit_code == 0
    assert "dry run (nothing written)" in result.output and "plan staff create" in result.output
    assert "no runs yet" in invoke("runs").output


def test_guard_exit_code_3_then_approve(site: Path, tmp_path: Path) -> None:
    invoke("init")
    assert invoke("sync").exit_code == 0
    (tmp_path / "oa" / "staff.json").write_text("[]", encoding="utf-8")
    held = invoke("sync", "oa", "--json")
    assert held.exit_code == 3
    assert json.loads(held.output)["status"] == "held"
    approved = invoke("sync", "oa", "--approve", "--json")
    assert approved.exit_code == 0
    assert json.loads(approved.output)["counts"]["staff"]["deactivated"] > 0


def test_bad_config_exit_2_names_the_key(site: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"sources": {"oa": {"connector": "rest", "provides": ["staf"]}}}))
    result = subprocess.run(DUALLINE + ["--config", str(bad), "sync"], capture_output=True, text=True,
                            env=os.environ | {"DUALLINE_CONFIG": str(bad)})
    assert result.returncode == 2
    assert "sources.oa" in result.stderr and "Traceback" not in result.stderr


def test_unknown_source_and_uninitialised_database(site: Path) -> None:
    result = subprocess.run(DUALLINE + ["sync", "nope"], capture_output=True, text=True)
    assert result.returncode == 2 and "unknown source nope" in result.stderr
    result = subprocess.run(DUALLINE + ["sync"], capture_output=True, text=True)
    assert result.returncode == 2 and "dualline init" in result.stderr


def test_missing_secret_is_a_config_error(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = dict(os.environ)
    env.pop("DUALLINE_SECRET_KEY")
    # `init` needs no key (it only builds the schema); anything that touches personal data does.
    assert subprocess.run(DUALLINE + ["init"], capture_output=True, text=True, env=env).returncode == 0
    result = subprocess.run(DUALLINE + ["sync"], capture_output=True, text=True, env=env)
    assert result.returncode == 2 and "DUALLINE_SECRET_KEY" in result.stderr


def test_demo_runs_on_embedded_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DUALLINE_CONFIG", "DUALLINE_DATABASE_URL", "DUALLINE_SECRET_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DUALLINE_INSTANCE", str(tmp_path / "instance"))
    result = invoke("demo", "--no-serve")
    assert result.exit_code == 0, result.output
    assert "mismatches:" in result.output and "branch_mismatch" in result.output
    assert (tmp_path / "instance" / "secret_key").exists()


def test_check_shows_mapped_samples_and_fails_on_unreachable_source(site: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke("check", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    by_name = {s["source"]: s for s in report["sources"]}
    staff = by_name["oa"]["kinds"]["staff"]["sample"]
    assert staff["employee_no"] and "*" in staff["id_number"]
    assert by_name["roster"]["kinds"]["party_members"]["sample"]["party_org_code"]  # resolved by name

    monkeypatch.setattr("connectors.http.time.sleep", lambda s: None)
    config = yaml.safe_load(site.read_text(encoding="utf-8"))
    config["sources"] = {"hr": {"connector": "rest", "url": "http://127.0.0.1:9/api", "provides": ["staff"],
                                "retries": {"max_attempts": 1},
                                "endpoints": {"staff": {"path": "/staff", "records_path": "data"}}}}
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("DUALLINE_CONFIG", str(broken))
    result = invoke("check")
    assert result.exit_code == 1
    assert "✗ hr (rest)" in result.output and "[transport]" in result.output


def _app_for(command: str):
    """The app `dualline COMMAND` loads."""
    from flask.cli import ScriptInfo

    ctx = cli.make_context("dualline", [command], resilient_parsing=True)
    assert cli.get_command(ctx, command) is not None
    return ctx.ensure_object(ScriptInfo).load_app()


def test_commands_that_serve_nothing_start_without_the_web_routes(site: Path) -> None:
    """A sync (one per source and fire under the scheduler) does not register the console, API
    and SCIM routes it never serves; the commands that serve or list them still have them."""
    for command in ("sync", "init", "runs", "scheduler", "worker", "beat"):
        app = _app_for(command)
        assert [r.rule for r in app.url_map.iter_rules() if r.endpoint != "static"] == [], command
        assert {"sync", "init", "user", "token"} <= set(app.cli.commands), command
    for command in ("serve", "routes", "openapi", "transfers"):
        rules = {r.rule for r in _app_for(command).url_map.iter_rules()}
        assert {"/healthz", "/metrics", "/login"} <= rules and any(r.startswith("/api/v1/") for r in rules), command
