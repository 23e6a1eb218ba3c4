"""`GET /healthz`: database reachable, schema current, scheduler and worker heartbeats fresh.

200 with `status: ok` when all hold; 503 with `status: degraded` (or `error` when the database
cannot be reached) otherwise. The scheduler is only judged once one has ever run here (its
heartbeat row exists), Celery workers likewise: a deployment without them is not degraded for lacking them.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, current_app, jsonify

from records.db import schema_is_current
from records.models import utcnow
from sync.locks import heartbeats

bp = Blueprint("health", __name__)


def scheduler_health(engine: Any, prefix: str = "scheduler:") -> list[dict[str, Any]]:
    """Each scheduler's (or Celery worker's) heartbeat: age in seconds and whether it is stale
    (its lease expired)."""
    now = utcnow()
    return [
        {"name": hb.name, "holder": hb.holder, "heartbeat_age_seconds": round((now - hb.heartbeat_at).total_seconds(), 1),
         "stale": hb.expires_at < now}
        for hb in heartbeats(engine, prefix)
    ]


@bp.get("/healthz")
def healthz():
    try:
        runtime = current_app.extensions["dualline"].runtime()
        current = schema_is_current(runtime.engine)
    except Exception as exc:  # noqa: BLE001 - a health check reports, it never raises
        return jsonify(status="error", database=False, error=type(exc).__name__), 503
    body: dict[str, Any] = {"database": True, "migrations_current": current}
    healthy = current
    try:
        schedulers = scheduler_health(runtime.engine)
        workers = scheduler_health(runtime.engine, "worker:")
    except Exception:  # noqa: BLE001 - an old schema has no run_locks yet (migrations_current says so)
        schedulers, workers = [], []
    if schedulers:
        body["schedulers"] = schedulers
        # Healthy when at least one scheduler is alive: a second one may have been retired.
        body["scheduler_ok"] = any(not s["stale"] for s in schedulers)
        healthy = healthy and body["scheduler_ok"]
    if workers:
        body["workers"] = workers
        # Celery workers come and go with scaling: degraded only when none is alive.
        body["worker_ok"] = any(not w["stale"] for w in workers)
        healthy = healthy and body["worker_ok"]
    body["status"] = "ok" if healthy else "degraded"
    return jsonify(body), 200 if healthy else 503


def init_app(app: Flask) -> None:
    from web import metrics  # `/metrics` lives beside the health check

    app.register_blueprint(bp)
    metrics.init_app(app)
