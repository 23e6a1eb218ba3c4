"""`GET /healthz`: is the database reachable and the schema current?"""
from __future__ import annotations

from flask import Blueprint, Flask, current_app, jsonify

from records.db import schema_is_current

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    try:
        runtime = current_app.extensions["dualline"].runtime()
        current = schema_is_current(runtime.engine)
    except Exception as exc:  # noqa: BLE001 - a health check reports, it never raises
        return jsonify(status="error", database=False, error=type(exc).__name__), 503
    status = 200 if current else 503
    return jsonify(status="ok" if current else "degraded", database=True, migrations_current=current), status


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
