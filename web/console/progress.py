"""`GET /runs/<id>/progress.json`: a run's progress while it goes on (the runs pages poll it).

Phase (queued, fetch, plan, apply, align, done) and records fetched per source and kind, as
sync.progress keeps them: the run row, the SQLite side file, or a distributed run's staged rows.
"""
from __future__ import annotations

from flask import abort, jsonify

from records.models import SyncRun
from sync.progress import current_progress
from web.auth import db_session
from web.console import bp
from web.console.access import READERS, roles


@bp.get("/runs/<int:run_id>/progress.json")
@roles(*READERS)
def run_progress(run_id: int):
    with db_session() as s:
        run = s.get(SyncRun, run_id)
        if run is None:
            abort(404)
        url = s.get_bind().url.render_as_string(hide_password=False)
        payload = current_progress(s, run, url)
    response = jsonify(payload)
    response.headers["Cache-Control"] = "no-store"  # polled: always the latest
    return response
