"""Progress of a run while it goes on: phase, and records fetched per source and kind.

A run's own transaction is long (everything it changes commits at once), so its progress is
written beside it, every `INTERVAL` seconds, by a daemon thread on a short connection of its own:
into `sync_runs.progress` on PostgreSQL and MariaDB. SQLite has one writer and the run holds it
for its whole length, so there the progress goes to a small JSON file next to the database
(`<database>.progress-<run id>.json`, replaced atomically, deleted at the end). The final state
is written with the run's outcome, in the run's own commit.

A distributed run's fetch tasks write no progress of their own: what they have staged so far
(`staged_records`) IS their progress, counted when someone asks (`current_progress`).
"""
from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from records.models import StagedRecord, SyncRun, utcnow

log = logging.getLogger("dualline.progress")

INTERVAL = 1.5  # seconds between writes: often enough for a console polling every second or two
PHASES = ("queued", "fetch", "plan", "apply", "align", "done")


def progress_file(database_url: str, run_id: int) -> Path | None:
    """Where a run on a SQLite database keeps its progress (None for other databases)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(f"{url.database}.progress-{run_id}.json")


class RunProgress:
    """Collects a run's progress in memory (cheap: called once per page) and writes it out."""

    def __init__(self, engine: Engine, run_id: int, interval: float = INTERVAL) -> None:
        self.run_id = run_id
        self.state: dict[str, Any] = {"phase": "fetch", "fetched": {}, "started_at": _now()}
        self.url = engine.url.render_as_string(hide_password=False)
        self.file = progress_file(self.url, run_id)
        self.sqlite = engine.dialect.name == "sqlite"
        self._engine: Engine | None = None
        self._dirty = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(interval,), name="dualline-progress", daemon=True)
        self._thread.start()

    # -- what the run reports -----------------------------------------------------------------

    def fetched(self, source: str, kind: str, read: int) -> None:
        self.state["fetched"].setdefault(source, {})[kind] = read
        self._dirty = True

    def phase(self, name: str) -> None:
        self.state["phase"] = name
        self._dirty = True

    def snapshot(self) -> dict[str, Any]:
        fetched = {source: dict(kinds) for source, kinds in list(self.state["fetched"].items())}
        return {**self.state, "fetched": fetched, "updated_at": _now()}

    # -- writing ------------------------------------------------------------------------------

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            if not self._dirty:
                continue
            self._dirty = False
            try:
                self.write()
            except Exception as exc:  # noqa: BLE001 - progress is a courtesy; the run goes on
                log.debug("run %s: progress not written: %s", self.run_id, exc)

    def write(self) -> None:
        snapshot = self.snapshot()
        if self.sqlite:
            if self.file is not None:
                tmp = self.file.with_name(self.file.name + ".tmp")
                tmp.write_text(json.dumps(snapshot, ensure_ascii=False), encoding="utf-8")
                os.replace(tmp, self.file)
            return
        if self._engine is None:
            from records.db import make_engine

            self._engine = make_engine(self.url, pool_size=1, max_overflow=0)
        with self._engine.begin() as conn:
            # Only while it runs: a write that waited for the run's final commit (which holds the
            # row) must not overwrite the final progress it recorded.
            conn.execute(update(SyncRun).where(SyncRun.id == self.run_id, SyncRun.status == "running")
                         .values(progress=snapshot))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        if self._engine is not None:
            self._engine.dispose()
        if self.file is not None:
            try:
                self.file.unlink(missing_ok=True)
            except OSError:
                pass


def final_progress(tracker: RunProgress | None, status: str) -> dict[str, Any]:
    """What `sync_runs.progress` keeps once the run is over."""
    state = tracker.snapshot() if tracker is not None else {"fetched": {}, "updated_at": _now()}
    return {**state, "phase": "done", "status": status}


def current_progress(session: Session, run: SyncRun, database_url: str) -> dict[str, Any]:
    """The progress of `run` as of now, for the console: its row, the SQLite side file while it
    runs there, and for a distributed run what its fetch tasks have staged so far."""
    progress: dict[str, Any] = dict(run.progress or {})
    if run.status == "running":
        side = progress_file(database_url, run.id)
        if side is not None and side.exists():
            try:
                progress = json.loads(side.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                pass  # replaced between our exists() and read: the row's copy will do
        if progress.get("distributed") and progress.get("phase") in ("queued", "fetch"):
            staged = session.execute(
                select(StagedRecord.source, StagedRecord.kind, func.count())
                .where(StagedRecord.run_id == run.id, StagedRecord.page >= 0)
                .group_by(StagedRecord.source, StagedRecord.kind)
            )
            fetched: dict[str, dict[str, int]] = {}
            for source, kind, count in staged:
                fetched.setdefault(source, {})[kind] = int(count)
            progress["fetched"] = fetched
    progress.setdefault("phase", "done" if run.status != "running" else "fetch")
    progress.setdefault("fetched", {})
    return {"run_id": run.id, "status": run.status,
            "started_at": run.started_at.isoformat() if run.started_at else None,
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            **progress}


def _now() -> str:
    return utcnow().isoformat(timespec="seconds")
