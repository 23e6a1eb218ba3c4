"""Membership transfers (组织关系转接) in the console: the list, the printable letter, and the two
things that happen to an issued letter afterwards.

  GET  /transfers                   transfers, newest first, paginated, `?status=` issued|received|cancelled
  GET  /transfers/<id>              the letter (党员组织关系介绍信) as a printable page, ID number masked
  POST /transfers/<id>/receive      the receipt came back (`received_on`, default today)
  POST /transfers/<id>/cancel       the letter is withdrawn (`reason` required)
Readers see the pages; admins and officers act. An officer sees and acts on transfers whose issuing
or receiving party org lies in their subtree (404 outside). The work itself is sync/transfers.py
(audited there); CSRF is checked for every POST by the app.
"""
from __future__ import annotations

import datetime as dt

from flask import abort, flash, g, redirect, render_template, request, url_for
from sqlalchemy.orm import Session

from sync.transfers import (
    LETTER_LABELS, STATUS_LABELS, TransferError, cancel, count_transfers, letter_data, list_transfers,
    party_orgs_of, receive,
)
from web.auth import db_session
from web.console import bp
from web.console.access import ACTORS, READERS, require_org_visible, roles, visible_org_codes

PAGE_SIZE = 50
STATUSES = tuple(STATUS_LABELS)


def _visible(s: Session, transfer_id: int) -> None:
    """404 unless the transfer exists and (for an officer) touches the subtree."""
    codes = party_orgs_of(s, transfer_id)
    if codes is None:
        abort(404)
    require_org_visible(s, *codes)


@bp.get("/transfers")
@roles(*READERS)
def transfers_list():
    status = request.args.get("status") or None
    if status not in (None, *STATUSES):
        status = None
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    with db_session() as s:
        codes = visible_org_codes(s)
        total = count_transfers(s, status=status, party_org_codes=codes)
        rows = list_transfers(s, status=status, party_org_codes=codes, limit=PAGE_SIZE,
                              offset=(page - 1) * PAGE_SIZE)
    return render_template("console/transfers.html", rows=rows, total=total, page=page, status=status,
                           statuses=STATUSES, pages=max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1))


@bp.get("/transfers/<int:transfer_id>")
@roles(*READERS)
def transfer_detail(transfer_id: int):
    with db_session() as s:
        _visible(s, transfer_id)
        letter = letter_data(s, transfer_id)  # masked: the printed page never carries the full number
    return render_template("console/transfer.html", letter=letter, data=letter.as_dict(), labels=LETTER_LABELS,
                           today=dt.date.today().isoformat())


def _done(transfer_id: int, message: str, category: str = "ok"):
    flash(message, category)
    return redirect(url_for("console.transfer_detail", transfer_id=transfer_id), code=303)


@bp.post("/transfers/<int:transfer_id>/receive")
@roles(*ACTORS)
def transfer_receive(transfer_id: int):
    raw = (request.form.get("received_on") or "").strip()
    day = None
    if raw:
        try:
            day = dt.date.fromisoformat(raw)
        except ValueError:
            with db_session() as s:
                _visible(s, transfer_id)
            return _done(transfer_id, "tr_err_date", "error")
    try:
        with db_session() as s, s.begin():
            _visible(s, transfer_id)
            receive(s, transfer_id, g.user.username, day)
    except TransferError as exc:
        return _done(transfer_id, f"tr_err_{exc.code}", "error")
    return _done(transfer_id, "tr_received")


@bp.post("/transfers/<int:transfer_id>/cancel")
@roles(*ACTORS)
def transfer_cancel(transfer_id: int):
    try:
        with db_session() as s, s.begin():
            _visible(s, transfer_id)
            cancel(s, transfer_id, g.user.username, request.form.get("reason") or "")
    except TransferError as exc:
        return _done(transfer_id, f"tr_err_{exc.code}", "error")
    return _done(transfer_id, "tr_cancelled")
