"""Console log-in (throttled, see web.auth), log-out and the language (zh-CN first, English)."""
from __future__ import annotations

import time

from flask import redirect, render_template, request, session, url_for

from web.auth import LoginThrottled, authenticate
from web.console import bp
from web.console.i18n import pick_language


def _local(target: str | None) -> str | None:
    """Only same-site paths are followed after log-in or a language switch (no open redirect)."""
    return target if target and target.startswith("/") and not target.startswith("//") else None


@bp.before_app_request
def _first_visit_language() -> None:
    """On a first visit the browser's Accept-Language decides (zh-CN unless it prefers English);
    /lang/<code> overrides it for the session. Console pages only: API clients get no cookie."""
    if "lang" not in session and not request.path.startswith(("/api/", "/scim/", "/static/", "/healthz", "/metrics")):
        session["lang"] = pick_language(request.accept_languages)


@bp.get("/lang/<code>")
def set_language(code: str):
    session["lang"] = "en" if code == "en" else "zh"
    referrer = request.referrer or ""
    back = referrer[len(request.host_url) - 1:] if referrer.startswith(request.host_url) else None
    return redirect(_local(back) or url_for("console.index"))


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        try:
            user = authenticate(request.form.get("username", "").strip(), request.form.get("password", ""))
        except LoginThrottled:
            return render_template("console/login.html", error="login_throttled"), 429
        if user is None:
            error = "login_failed"
        else:
            lang = session.get("lang")
            session.clear()
            session.update(user_id=user.id, lang=lang or "zh", seen=time.time())
            return redirect(_local(request.args.get("next")) or url_for("console.index"))
    return render_template("console/login.html", error=error), (401 if error else 200)


@bp.post("/logout")
def logout():
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    return redirect(url_for("console.login"))
