"""Sync runs: the list, one run's counts, report, changes and quarantined records, and the
person's decision on a run the guard held (approve / reject, sync.approval).

Everyone reads runs (a run is the whole enterprise's bookkeeping, not a subtree's: its counts
and errors name no person; its change rows carry values already masked, and quarantined records
are shown by their masked preview, never the encrypted raw record). Approving or rejecting a held
run is for admins only: a held run stands for whole sources — deactivations across every
subtree — so an officer's subtree cannot contain the decision.

Approving starts the sync in a child process (the request returns at once); with the app config
`DUALLINE_APPROVAL_INLINE` (tests) the sync runs within the request.
"""
from __future__ import annotations

import json
from typing import Any

from flask import abort, current_app, flash, g, redirect, render_template, request, url_for
from sqlalchemy import func, select

from records.models import Change, Quarantine, SyncRun
from sync.approval import DecisionRefused, approve_run, reject_run, start_approval
from web.auth import db_session
from web.console import bp
from web.console.access import READERS, roles

PAGE_SIZE = 50
CHANGES_PAGE = 100
QUARANTINE_PAGE = 50
STATUSES = ("running", "succeeded", "failed", "held", "approved", "rejected")


def shown(value: Any, limit: int = 300) -> str:
    """A value of a change or a quarantined record as text (templates escape it)."""
    if value is None:
        return "∅"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "…"


def _totals(counts: dict[str, Any] | None) -> dict[str, int]:
    totals = {"created": 0, "updated": 0, "deactivated": 0, "quarantined": 0}
    for per_kind in (counts or {}).values():
        for key in totals:
            totals[key] += int((per_kind or {}).get(key) or 0)
    return totals


@bp.get("/runs")
@roles(*READERS)
def runs():
    status = request.args.get("status") or None
    if status not in STATUSES:
        status = None
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    with db_session() as s:
        query = select(SyncRun)
        if status:
            query = query.where(SyncRun.status == status)
        total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
        items = s.scalars(query.order_by(SyncRun.id.desc()).limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)).all()
    rows = [{"run": r, "totals": _totals(r.counts), "mismatches": r.mismatches or {}} for r in items]
    return render_template("console/runs.html", rows=rows, status=status, statuses=STATUSES, total=total,
                           page=page, pages=max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1))


def _run_page(run_id: int, error: str | None = None, status_code: int = 200):
    changes_page = max(request.args.get("changes_page", 1, type=int) or 1, 1)
    quarantine_page = max(request.args.get("quarantine_page", 1, type=int) or 1, 1)
    with db_session() as s:
        run = s.get(SyncRun, run_id)
        if run is None:
            abort(404)
        n_changes = s.scalar(select(func.count()).select_from(Change).where(Change.run_id == run_id)) or 0
        # In insertion order (`id`): the run's rows are one transaction, so that is their feed
        # order too, and the run_id index (which carries the primary key) serves it unsorted.
        changes = s.scalars(select(Change).where(Change.run_id == run_id).order_by(Change.id)
                            .limit(CHANGES_PAGE).offset((changes_page - 1) * CHANGES_PAGE)).all()
        n_quarantine = s.scalar(select(func.count()).select_from(Quarantine).where(Quarantine.run_id == run_id)) or 0
        # Only what is safe to show: never `record_enc` (the encrypted raw record).
        quarantine = s.execute(
            select(Quarantine.id, Quarantine.source, Quarantine.kind, Quarantine.row, Quarantine.field,
                   Quarantine.reason, Quarantine.preview, Quarantine.external_id)
            .where(Quarantine.run_id == run_id).order_by(Quarantine.id)
            .limit(QUARANTINE_PAGE).offset((quarantine_page - 1) * QUARANTINE_PAGE)).all()
    report = run.report or {}
    change_rows = [{"change": c, "fields": [(name, shown(pair[0] if isinstance(pair, list) and len(pair) == 2 else None),
                                             shown(pair[1] if isinstance(pair, list) and len(pair) == 2 else pair))
                                            for name, pair in (c.changed or {}).items()]} for c in changes]
    quarantine_rows = [{"q": q, "fields": [(k, shown(v, 120)) for k, v in (q.preview or {}).items()]}
                       for q in quarantine]
    return render_template(
        "console/run.html", run=run, report=report, decision=report.get("decision") or {},
        guard=report.get("guard") or {}, errors=report.get("errors") or [], totals=_totals(run.counts),
        changes=change_rows, n_changes=n_changes, changes_page=changes_page,
        changes_pages=max((n_changes + CHANGES_PAGE - 1) // CHANGES_PAGE, 1),
        quarantine=quarantine_rows, n_quarantine=n_quarantine, quarantine_page=quarantine_page,
        quarantine_pages=max((n_quarantine + QUARANTINE_PAGE - 1) // QUARANTINE_PAGE, 1),
        can_decide=g.user.role == "admin" and run.status == "held", error=error,
    ), status_code


@bp.get("/runs/<int:run_id>")
@roles(*READERS)
def run_detail(run_id: int):
    return _run_page(run_id)


def _runtime():
    return current_app.extensions["dualline"].runtime()


@bp.post("/runs/<int:run_id>/approve")
@roles("admin")
def run_approve(run_id: int):
    reason = (request.form.get("reason") or "").strip()[:500] or None
    try:
        if current_app.config.get("DUALLINE_APPROVAL_INLINE"):
            approve_run(_runtime(), run_id, g.user.username, reason)
        else:
            start_approval(_runtime(), run_id, g.user.username, reason)
    except DecisionRefused as exc:
        if exc.status == 404:
            abort(404)
        return _run_page(run_id, error=exc.message, status_code=exc.status)
    flash("runs_approval_started")
    return redirect(url_for("console.run_detail", run_id=run_id), code=303)


@bp.post("/runs/<int:run_id>/reject")
@roles("admin")
def run_reject(run_id: int):
    reason = (request.form.get("reason") or "").strip()[:500]
    try:
        reject_run(_runtime(), run_id, g.user.username, reason)
    except DecisionRefused as exc:
        if exc.status == 404:
            abort(404)
        return _run_page(run_id, error=exc.message, status_code=exc.status)
    flash("runs_rejected_msg")
    return redirect(url_for("console.run_detail", run_id=run_id), code=303)
