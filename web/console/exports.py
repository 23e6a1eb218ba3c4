"""Exports: mismatch lists and transfer lists as XLSX (for entry into the national party-member
system) and CSV.

Both formats have Chinese headers. XLSX is written by openpyxl in write-only mode (rows stream
to a temporary file, not a workbook held in memory); CSV streams row by row with a UTF-8 BOM so
that Excel opens the Chinese correctly. Cells that a spreadsheet would run as a formula (starting
with = + - @, or a tab / carriage return before one) get a leading apostrophe: source data is not
trusted. ID numbers are always masked in exports.

The mismatch export takes the queue's filters (rule, state, party_org with its subtree, source),
so the queue can offer "export what I see". Officers export their subtree only (the same rule
as the queue); exporting is audited.
"""
from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Response, g, render_template, request, send_file, stream_with_context
from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session, aliased

from records.models import AuditLog, Mismatch, PartyOrg, Transfer, utcnow
from records.queries import MISMATCH_STATES, mismatch_state_filter, subtree_codes
from sync.transfers import CATEGORY_LABELS, KIND_LABELS, STATUS_LABELS, list_transfers
from web.auth import db_session
from web.console import bp
from web.console.access import READERS, require_org_visible, roles, visible_org_codes
from web.console.dashboard import mismatch_scope
from web.console.i18n import RULE_LABELS, STATE_LABELS
from web.console.mismatches import source_condition

XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
BATCH = 1000

MISMATCH_HEADERS = [
    "编号", "差异类型", "规则", "状态", "严重程度", "对象",
    # the business line (OA/HR)
    "员工编号", "身份证号(脱敏)", "所在部门编码", "所在部门", "用工状态", "政治面貌代码",
    # the party line, and where the business line says the member belongs
    "党籍所在组织编码", "党籍所在组织", "党员类别", "入党日期", "应在支部编码", "应在支部",
    "发现时间", "处理方式", "处理人", "处理说明",
]
# Columns read for the export: plain rows, not ORM objects (20 000 rows must stay quick).
MISMATCH_FIELDS = (Mismatch.id, Mismatch.rule, Mismatch.state, Mismatch.closed_at, Mismatch.severity,
                   Mismatch.subject_label, Mismatch.details, Mismatch.org_unit_code, Mismatch.party_org_code,
                   Mismatch.other_party_org_code, Mismatch.opened_at, Mismatch.resolution, Mismatch.resolved_by,
                   Mismatch.resolution_note)
SEVERITY_LABELS = {"high": "高", "medium": "中", "low": "低"}
RULE_NAMES = {rule: labels["zh"] for rule, labels in RULE_LABELS.items()}
STATE_NAMES = {state: labels["zh"] for state, labels in STATE_LABELS.items()}


def mismatch_row(m: Any, names: dict[str, str]) -> list[Any]:
    """One export row: both lines' key fields side by side (the details the rule recorded)."""
    details = m.details if isinstance(m.details, dict) else {}
    person = details.get("person") if isinstance(details.get("person"), dict) else {}
    membership = details.get("membership") if isinstance(details.get("membership"), dict) else {}
    expected = details.get("expected") if isinstance(details.get("expected"), dict) else {}
    unit = details.get("org_unit") if isinstance(details.get("org_unit"), dict) else {}
    # missing_membership names the expected branch in party_org_code: there is no registered one
    missing = m.rule == "missing_membership"
    registered = None if missing else m.party_org_code
    expected_code = m.other_party_org_code or (m.party_org_code if missing else None) or expected.get("party_org_code")
    state = "closed" if m.closed_at else m.state
    category = membership.get("category")
    return [
        m.id, RULE_NAMES.get(m.rule, m.rule), m.rule, STATE_NAMES.get(state, state),
        SEVERITY_LABELS.get(m.severity, m.severity), m.subject_label,
        person.get("employee_no"), person.get("id_number"), m.org_unit_code or person.get("org_unit_code"),
        unit.get("name"), person.get("employment_status"), person.get("political_status"),
        registered, names.get(registered) if registered else None,
        CATEGORY_LABELS.get(category, category) if category else None, membership.get("joined_on"),
        expected_code, names.get(expected_code or "") or expected.get("party_org_name"),
        m.opened_at.strftime("%Y-%m-%d %H:%M") if m.opened_at else None,
        m.resolution, m.resolved_by, m.resolution_note,
    ]


TRANSFER_HEADERS = ["序号", "状态", "转接类型", "姓名", "性别", "民族", "年龄", "公民身份号码(脱敏)", "员工编号",
                    "党员类别", "转出党组织", "转出党组织编码", "转往党组织", "转往党组织编码", "党费交到",
                    "介绍信编号", "开具日期", "有效期至", "回执日期"]


def _detail(m: Mismatch, part: str, key: str) -> Any:
    value = (m.details or {}).get(part)
    return value.get(key) if isinstance(value, dict) else None


def safe_cell(value: Any) -> Any:
    """A cell value a spreadsheet shows as text, never runs as a formula (CSV/formula injection)."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


# --- writers ---------------------------------------------------------------------------------


def xlsx_response(filename: str, title: str, headers: list[str], rows: Iterable[list[Any]]) -> Response:
    from openpyxl import Workbook  # imported here: every `dualline` command loads this module, few export

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title)
    sheet.append(headers)
    for row in rows:
        # openpyxl would store a string starting with "=" as a formula: the guard makes it text.
        sheet.append([safe_cell(v) for v in row])
    buffer = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)
    workbook.save(buffer)
    buffer.seek(0)
    return send_file(buffer, mimetype=XLSX_MIME, as_attachment=True, download_name=filename, max_age=0)


def csv_response(filename: str, headers: list[str], rows: Iterable[list[Any]]) -> Response:
    def generate() -> Iterator[str]:
        out = io.StringIO()
        writer = csv.writer(out)
        out.write("\ufeff")  # the BOM: Excel reads the file as UTF-8
        writer.writerow(headers)
        for i, row in enumerate(rows, 1):
            writer.writerow(["" if v is None else safe_cell(v if isinstance(v, str) else str(v)) for v in row])
            if i % 500 == 0:
                yield out.getvalue()
                out.seek(0)
                out.truncate()
        yield out.getvalue()

    response = Response(stream_with_context(generate()), mimetype="text/csv; charset=utf-8")
    response.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{filename}"
    response.headers["Cache-Control"] = "no-store"
    return response


def _audit(what: str, fmt: str, filters: dict[str, Any]) -> None:
    with db_session() as s, s.begin():
        s.add(AuditLog(actor=g.user.username, action=f"export.{what}", target_type="export", target_id=fmt,
                       details={k: v for k, v in filters.items() if v}))


# --- mismatches ------------------------------------------------------------------------------


def mismatch_filters() -> dict[str, Any]:
    state = request.args.get("state") or "open"
    return {"rule": request.args.get("rule") or None,
            "state": state if state in MISMATCH_STATES else "open",
            "party_org": (request.args.get("party_org") or "").strip() or None,
            "source": request.args.get("source") or None}


def mismatch_rows(filters: dict[str, Any]) -> Iterator[list[Any]]:
    """The filtered mismatches, streamed in batches by id (keyset), each as a row of cells.

    `party_org` takes the org and its subtree (a committee's export holds its branches'
    mismatches); officers are limited to their subtree besides."""
    with db_session() as s:
        query = select(*MISMATCH_FIELDS).where(mismatch_scope(s), mismatch_state_filter(filters["state"]))
        if filters["rule"]:
            query = query.where(Mismatch.rule == filters["rule"])
        if filters["source"]:
            query = query.where(source_condition(filters["source"]))
        if filters["party_org"]:
            codes = subtree_codes(s, filters["party_org"])
            query = query.where(or_(Mismatch.party_org_code.in_(codes), Mismatch.other_party_org_code.in_(codes)))
        last_id = 0
        while True:
            batch = s.execute(query.where(Mismatch.id > last_id).order_by(Mismatch.id).limit(BATCH)).all()
            if not batch:
                return
            shown = {c for m in batch for c in (m.party_org_code, m.other_party_org_code) if c}
            names = dict(s.execute(select(PartyOrg.code, PartyOrg.name).where(PartyOrg.code.in_(shown))).all())
            for m in batch:
                yield mismatch_row(m, names)
            last_id = batch[-1].id


def _check_mismatch_filters(filters: dict[str, Any]) -> None:
    if filters["party_org"]:
        with db_session() as s:
            require_org_visible(s, filters["party_org"])


def _stamp() -> str:
    return utcnow().strftime("%Y%m%d-%H%M")


@bp.get("/exports/mismatches.xlsx")
@roles(*READERS)
def export_mismatches_xlsx():
    filters = mismatch_filters()
    _check_mismatch_filters(filters)
    _audit("mismatches", "xlsx", filters)
    return xlsx_response(f"mismatches-{_stamp()}.xlsx", "差异清单", MISMATCH_HEADERS,
                         mismatch_rows(filters))


@bp.get("/exports/mismatches.csv")
@roles(*READERS)
def export_mismatches_csv():
    filters = mismatch_filters()
    _check_mismatch_filters(filters)
    _audit("mismatches", "csv", filters)
    return csv_response(f"mismatches-{_stamp()}.csv", MISMATCH_HEADERS, mismatch_rows(filters))


# --- transfers -------------------------------------------------------------------------------


def pending_transfer_rows(s: Session, codes: list[str] | None) -> list[list[Any]]:
    """Transfers still to make: open `branch_mismatch` mismatches (registered → expected branch)
    for which no transfer has been recorded yet."""
    recorded = exists().where(Transfer.mismatch_id == Mismatch.id, Transfer.status != "cancelled")
    registered, expected = aliased(PartyOrg), aliased(PartyOrg)
    query = (select(Mismatch, registered.name, expected.name)
             .outerjoin(registered, registered.code == Mismatch.party_org_code)
             .outerjoin(expected, expected.code == Mismatch.other_party_org_code)
             .where(Mismatch.rule == "branch_mismatch", mismatch_state_filter("open"), ~recorded)
             .order_by(Mismatch.party_org_code, Mismatch.id))
    if codes is not None:
        query = query.where(or_(Mismatch.party_org_code.in_(codes), Mismatch.other_party_org_code.in_(codes)))
    rows = []
    for m, from_name, to_name in s.execute(query):
        category = _detail(m, "membership", "category")
        rows.append(["待转接", KIND_LABELS["internal"], m.subject_label, None, None, None,
                     _detail(m, "person", "id_number"), _detail(m, "person", "employee_no"),
                     CATEGORY_LABELS.get(category or "", category), from_name or m.party_org_code,
                     m.party_org_code, to_name or m.other_party_org_code, m.other_party_org_code,
                     None, None, None, None, None])
    return rows


def transfer_rows(status: str) -> list[list[Any]]:
    """Recorded transfers (status issued / received / cancelled, or all but cancelled) followed
    by the pending ones (status `pending`, or with `all`)."""
    with db_session() as s:
        codes = visible_org_codes(s)
        rows: list[list[Any]] = []
        if status != "pending":
            letters = list_transfers(s, status=None if status == "all" else status, party_org_codes=codes)
            for t in letters:
                if status == "all" and t.status == "cancelled":
                    continue
                rows.append([STATUS_LABELS.get(t.status, t.status), KIND_LABELS.get(t.kind, t.kind), t.name, t.gender,
                             t.ethnicity, t.age, t.id_number, None, t.category, t.from_org, t.from_org_code, t.to_org,
                             t.to_org_code, t.dues_paid_until, t.letter_no, t.issued_on, t.valid_until,
                             t.received_on])
        if status in ("pending", "all"):
            rows.extend(pending_transfer_rows(s, codes))
    return [[i, *row] for i, row in enumerate(rows, 1)]


TRANSFER_STATUSES = ("all", "pending", "issued", "received", "cancelled")


def _transfer_status() -> str:
    status = request.args.get("status") or "all"
    return status if status in TRANSFER_STATUSES else "all"


@bp.get("/exports/transfers.xlsx")
@roles(*READERS)
def export_transfers_xlsx():
    status = _transfer_status()
    _audit("transfers", "xlsx", {"status": status})
    return xlsx_response(f"transfers-{_stamp()}.xlsx", "组织关系转接", TRANSFER_HEADERS, transfer_rows(status))


@bp.get("/exports/transfers.csv")
@roles(*READERS)
def export_transfers_csv():
    status = _transfer_status()
    _audit("transfers", "csv", {"status": status})
    return csv_response(f"transfers-{_stamp()}.csv", TRANSFER_HEADERS, transfer_rows(status))


@bp.get("/exports")
@roles(*READERS)
def exports():
    with db_session() as s:
        codes = visible_org_codes(s)
        query = select(PartyOrg.code, PartyOrg.name).where(PartyOrg.active.is_(True),
                                                          PartyOrg.kind.in_(("committee", "general_branch", "branch")))
        if codes is not None:
            query = query.where(PartyOrg.code.in_(codes))
        # A select of up to a few hundred orgs; beyond that the code field alone is offered.
        orgs = s.execute(query.order_by(PartyOrg.code).limit(500)).all()
    return render_template("console/exports.html", rules=list(RULE_LABELS), states=MISMATCH_STATES, orgs=orgs,
                           filters=mismatch_filters(), transfer_statuses=TRANSFER_STATUSES)

