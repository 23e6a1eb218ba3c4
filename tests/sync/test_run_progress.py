"""Run progress while a run goes on: phase and records fetched, from outside the run's transaction."""
from __future__ import annotations

import threading
import time
from pathlib import Path

from benchmarks.enterprise import generate
from benchmarks.sync_bench import write_config
from benchmarks.worker_bench import SlowFakeSource
from records.db import session_factory, upgrade
from records.models import SyncRun
from sync.config import load_config
from sync.engine import SyncEngine
from sync.progress import current_progress
from sync.runtime import Runtime
from tests.conftest import TEST_SECRET, csrf_token_in


def test_progress_is_visible_while_the_run_goes_on(tmp_path: Path, any_db_url: str) -> None:
    enterprise = generate(staff=300, seed=3)
    with SlowFakeSource(enterprise, page_size=20, latency=0.1) as source:
        config = load_config(write_config(tmp_path, source.url, any_db_url, page_size=20))
        config.secret_key = TEST_SECRET
        runtime = Runtime(config)
        upgrade(runtime.engine)
        results = []
        runner = threading.Thread(target=lambda: results.append(SyncEngine(runtime).run()))
        runner.start()
        seen = []
        deadline = time.monotonic() + 60
        with session_factory(runtime.engine)() as s:
            while runner.is_alive() and time.monotonic() < deadline:
                run = s.get(SyncRun, 1)
                if run is not None and run.status == "running":
                    progress = current_progress(s, run, any_db_url)
                    if progress["fetched"]:
                        seen.append(progress)
                s.rollback()  # a fresh snapshot next time (MariaDB's repeatable read)
                s.expire_all()
                time.sleep(0.3)
        runner.join()
    [result] = results
    assert result.status == "succeeded"
    # While running: a phase, and counts that grew, from a writer outside the run's transaction.
    assert len(seen) >= 2, seen
    assert all(p["status"] == "running" and p["phase"] in ("fetch", "apply", "align") for p in seen)
    staff_counts = [p["fetched"].get("hr", {}).get("staff", 0) for p in seen]
    assert staff_counts == sorted(staff_counts) and max(staff_counts) > 0
    assert any(0 < c < 300 for c in staff_counts)
    with session_factory(runtime.engine)() as s:
        final = current_progress(s, s.get(SyncRun, 1), any_db_url)
    assert final["phase"] == "done" and final["status"] == "succeeded"
    assert final["fetched"]["hr"]["staff"] == 300
    runtime.engine.dispose()


def test_console_serves_progress_json_to_readers_only(tmp_path: Path, sqlite_url: str) -> None:

    from records.models import User
    from web import create_app
    from web.auth import hash_password

    config = load_config(write_config(tmp_path, "http://127.0.0.1:9", sqlite_url, page_size=20))
    config.secret_key = TEST_SECRET
    runtime = Runtime(config)
    upgrade(runtime.engine)
    with session_factory(runtime.engine)() as s, s.begin():
        s.add(User(username="admin", password_hash=hash_password("admin-pass-1"), role="admin"))
        s.add(SyncRun(sources=["hr"], status="running",
                      progress={"phase": "fetch", "fetched": {"hr": {"staff": 120}}, "updated_at": "x"}))
    app = create_app(test_config={"DUALLINE_CONFIG_OBJECT": config, "TESTING": True})
    app.extensions["dualline"].set_runtime(runtime)
    client = app.test_client()
    assert client.get("/runs/1/progress.json").status_code == 302  # log in first
    page = client.get("/login").get_data(as_text=True)
    token = csrf_token_in(page)
    client.post("/login", data={"username": "admin", "password": "admin-pass-1", "csrf_token": token})
    answer = client.get("/runs/1/progress.json")
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    body = answer.get_json()
    assert body["run_id"] == 1 and body["status"] == "running" and body["phase"] == "fetch"
    assert body["fetched"] == {"hr": {"staff": 120}}
    assert client.get("/runs/2/progress.json").status_code == 404
