"""The officers' console (server-rendered, Chinese first).

One blueprint; each page family lives in its own module (login, mismatches, …), imported below so
its routes register on `bp`. Templates autoescape everything they show; assets are served from this
package's static folder (no CDN: intranets have no internet).
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, session

from web.console.i18n import RULE_LABELS, STATE_LABELS, translate

bp = Blueprint("console", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static/console")


@bp.app_context_processor
def _helpers() -> dict[str, Any]:
    lang = session.get("lang", "zh")
    return {"t": lambda key: translate(key, lang), "lang": lang,
            "rule_label": lambda r: RULE_LABELS.get(r, {}).get(lang, r),
            "state_label": lambda s: STATE_LABELS.get(s, {}).get(lang, s)}


# The page modules register their routes on `bp` when imported.
from web.console import login, mismatches, dashboard, people, orgs, exports, admin, indicators, progress, coverage, runs, tokens, webhooks, activities, transfers  # noqa: E402,F401


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
