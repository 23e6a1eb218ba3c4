"""Organizational life entered in the console (issue 7): a party org's activities
(三会一课, 主题党日, 组织生活会, 民主评议), listed, added one at a time or imported from a file.

  GET  /orgs/<code>/activities          the org's activities, newest first, paginated
  POST /orgs/<code>/activities          add one (type, held_on, attendees, expected, lecturer)
  POST /orgs/<code>/activities/import   a CSV or XLSX with columns 类型, 日期, 出席人数, 应到人数,
                                         主讲人 (or type, held_on, attendees, expected, lecturer);
                                         all or nothing: one bad row and nothing is written
Readers see the page; admins and officers add (an officer only within their subtree: 404
outside); auditors change nothing (403).

An entered activity is an `Activity` like a synced one, so `meetings_missing`, the indicators and
points count it. Its `activity_key` is `console:<random hex>` and its provenance names `console`
(sync.resolutions.MANUAL) for every field: no source links to it, so a full pull of any source
never deactivates it (sync.apply deactivates only entities whose last source link went inactive),
and no source id can collide with its key. Every write leaves an AuditLog row (`activity.create`,
or one `activity.import` with the count) and a Change row per activity (entity `activity`, op
`create`) for the change feed.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from typing import Any

from flask import abort, flash, g, redirect, render_template, request, session, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mappings import MappingError
from mappings.codes import ACTIVITY_TYPE
from mappings.dates import parse_date
from records.models import NAME, Activity, AuditLog, Change, PartyOrg, utcnow
from sync.resolutions import MANUAL
from web.auth import db_session
from web.console import bp
from web.console.access import ACTORS, READERS, require_org_visible, roles
from web.console.i18n import translate

PAGE_SIZE = 50
# The types in the order the form offers them (mappings.codes.ACTIVITY_TYPE's canonical values).
TYPES = ("member_meeting", "committee_meeting", "group_meeting", "party_lecture", "theme_day",
         "org_life_meeting", "democratic_review")
MAX_PEOPLE = 100_000
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_ROWS = 5000
MAX_REPORTED_ERRORS = 200
# File headers → canonical field (Chinese as the template has them, the canonical names, and a
# few common spellings).
HEADERS = {
    "类型": "type", "活动类型": "type", "type": "type",
    "日期": "held_on", "活动日期": "held_on", "召开日期": "held_on", "held_on": "held_on", "date": "held_on",
    "出席人数": "attendees", "实到人数": "attendees", "attendees": "attendees",
    "应到人数": "expected", "应出席人数": "expected", "expected": "expected",
    "主讲人": "lecturer", "lecturer": "lecturer",
}
REQUIRED_COLUMNS = ("type", "held_on", "attendees")
FIELDS = ("type", "held_on", "attendees", "expected", "lecturer")
XLSX_MAGIC = b"PK\x03\x04"


def _lang() -> str:
    return session.get("lang", "zh")


def _visible_org(s: Session, code: str) -> PartyOrg:
    require_org_visible(s, code)
    org = s.scalar(select(PartyOrg).where(PartyOrg.code == code))
    if org is None:
        abort(404)
    return org


# --- validation ------------------------------------------------------------------------------


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _count(value: Any) -> int | None:
    """A head count from a form or a cell: a whole number 0..MAX_PEOPLE; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(value)
        value = int(value)
    if isinstance(value, str):
        value = value.strip()
        if value.endswith(".0"):
            value = value[:-2]
        value = int(value, 10)
    if not isinstance(value, int) or not 0 <= value <= MAX_PEOPLE:
        raise ValueError(value)
    return value


def check_activity(raw: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """One activity's fields (form strings or spreadsheet cells) as stored values, and the
    errors as (field, message key) — empty when the activity may be written."""
    errors: list[tuple[str, str]] = []
    values: dict[str, Any] = {}
    type_raw = raw.get("type")
    if _blank(type_raw):
        errors.append(("type", "act_err_type_required"))
    else:
        canonical = ACTIVITY_TYPE.get(type_raw.strip() if isinstance(type_raw, str) else type_raw)
        if canonical not in TYPES:
            errors.append(("type", "act_err_type_unknown"))
        else:
            values["type"] = canonical
    held = raw.get("held_on")
    if _blank(held):
        errors.append(("held_on", "act_err_date_required"))
    else:
        try:
            values["held_on"] = dt.date.fromisoformat(parse_date(held.strip() if isinstance(held, str) else held))
        except (MappingError, ValueError):
            errors.append(("held_on", "act_err_date_invalid"))
    for name, required in (("attendees", True), ("expected", False)):
        value = raw.get(name)
        if _blank(value):
            if required:
                errors.append((name, f"act_err_{name}_required"))
            else:
                values[name] = None
            continue
        try:
            values[name] = _count(value)
        except (TypeError, ValueError):
            errors.append((name, f"act_err_{name}_invalid"))
    if values.get("attendees") is not None and values.get("expected") is not None \
            and values["attendees"] > values["expected"]:
        errors.append(("attendees", "act_err_more_than_expected"))
    lecturer = raw.get("lecturer")
    lecturer = "" if lecturer is None else str(lecturer).strip()
    if len(lecturer) > NAME:
        errors.append(("lecturer", "act_err_lecturer_long"))
    values["lecturer"] = lecturer or None
    return values, errors


def _message(field: str, key: str, lang: str) -> str:
    return f"{translate('act_' + field, lang)}: {translate(key, lang)}"


# --- writing ---------------------------------------------------------------------------------


def _shown(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in values.items()}


def write_activities(s: Session, org_code: str, rows: list[dict[str, Any]], actor: str) -> list[Activity]:
    """Insert checked activities of one org with a Change row each (the caller audits and commits)."""
    now = utcnow()
    made = []
    for values in rows:
        fields = {"party_org_code": org_code, **{k: values.get(k) for k in FIELDS}}
        activity = Activity(activity_key=f"{MANUAL}:{uuid.uuid4().hex}", active=True,
                            provenance={k: MANUAL for k, v in fields.items() if v is not None},
                            created_at=now, updated_at=now, **fields)
        s.add(activity)
        made.append((activity, fields))
    s.flush()
    for activity, fields in made:
        changed = {k: [None, v] for k, v in _shown({"activity_key": activity.activity_key, **fields}).items()
                   if v is not None}
        s.add(Change(run_id=None, actor=actor, entity="activity", entity_id=activity.id, op="create",
                     changed=changed, at=now))
    return [a for a, _ in made]


# --- the page --------------------------------------------------------------------------------


def _origin(activity: Activity) -> str | None:
    """The source that reported the activity; None when it was entered in the console."""
    prov = activity.provenance or {}
    source = prov.get("type") or next(iter(prov.values()), None)
    return None if source in (None, MANUAL) else source


def _render(code: str, status: int = 200, **extra: Any):
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    with db_session() as s:
        org = _visible_org(s, code)
        total = s.scalar(select(func.count()).select_from(Activity).where(Activity.party_org_code == code)) or 0
        items = s.scalars(select(Activity).where(Activity.party_org_code == code)
                          .order_by(Activity.held_on.is_(None), Activity.held_on.desc(), Activity.id.desc())
                          .limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)).all()
        rows = [{"a": a, "origin": _origin(a)} for a in items]
    context = {"org": org, "rows": rows, "total": total, "page": page,
               "pages": max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1), "types": TYPES,
               "form": {}, "errors": [], "error_fields": set(), "import_errors": []}
    context.update(extra)
    return render_template("console/activities.html", **context), status


@bp.get("/orgs/<code>/activities")
@roles(*READERS)
def org_activities(code: str):
    return _render(code)


@bp.post("/orgs/<code>/activities")
@roles(*ACTORS)
def org_activity_add(code: str):
    lang = _lang()
    form = {k: (request.form.get(k) or "") for k in FIELDS}
    values, errors = check_activity(form)
    with db_session() as s:
        if not _visible_org(s, code).active:
            errors.append(("party_org", "act_err_org_inactive"))
    if errors:
        return _render(code, 400, form=form, errors=[_message(f, k, lang) for f, k in errors],
                       error_fields={f for f, _ in errors})
    with db_session() as s, s.begin():
        (activity,) = write_activities(s, code, [values], g.user.username)
        s.add(AuditLog(actor=g.user.username, action="activity.create", target_type="activity",
                       target_id=str(activity.id),
                       details={"party_org_code": code, "activity_key": activity.activity_key, **_shown(values)}))
    flash("act_saved", "ok")
    return redirect(url_for("console.org_activities", code=code), code=303)


# --- import ----------------------------------------------------------------------------------


class FileError(Exception):
    """The file as a whole cannot be read (message key)."""


def _decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        try:
            return data.decode("gb18030")
        except UnicodeDecodeError:
            raise FileError("act_file_encoding") from None


def _table(data: bytes, filename: str) -> list[list[Any]]:
    """The file's rows (header first) as lists of cells."""
    if data.startswith(XLSX_MAGIC) or filename.lower().endswith((".xlsx", ".xlsm")):
        from openpyxl import load_workbook

        try:
            book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except Exception:  # noqa: BLE001 - any unreadable workbook is the same to the user
            raise FileError("act_file_unreadable") from None
        try:
            sheet = book.worksheets[0] if book.worksheets else None
            if sheet is None:
                raise FileError("act_file_empty")
            rows = []
            for row in sheet.iter_rows(values_only=True):
                rows.append(list(row))
                if len(rows) > MAX_ROWS + 1:
                    raise FileError("act_file_too_many")
            return rows
        finally:
            book.close()
    text = _decode(data)
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error:
        raise FileError("act_file_unreadable") from None
    if len(rows) > MAX_ROWS + 1:
        raise FileError("act_file_too_many")
    return rows


def _columns(header: list[Any]) -> dict[int, str]:
    columns: dict[int, str] = {}
    for i, cell in enumerate(header):
        name = HEADERS.get(str(cell).strip().lower() if cell is not None else "")
        if name is None and cell is not None:
            name = HEADERS.get(str(cell).strip())
        if name and name not in columns.values():
            columns[i] = name
    return columns


def parse_file(data: bytes, filename: str) -> tuple[list[dict[str, Any]], list[tuple[int, str, str]]]:
    """The file's checked activities and its errors as (row number, field, message key); row
    numbers count the header as row 1, as a spreadsheet shows them. Raises FileError."""
    rows = _table(data, filename)
    while rows and all(_blank(c) for c in rows[0]):
        rows.pop(0)
    if not rows:
        raise FileError("act_file_empty")
    columns = _columns(rows[0])
    missing = [c for c in REQUIRED_COLUMNS if c not in columns.values()]
    if missing:
        raise FileError("act_file_columns")
    good: list[dict[str, Any]] = []
    errors: list[tuple[int, str, str]] = []
    for number, row in enumerate(rows[1:], start=2):
        if all(_blank(c) for c in row):
            continue
        raw = {name: (row[i] if i < len(row) else None) for i, name in columns.items()}
        values, problems = check_activity(raw)
        if problems:
            errors.extend((number, f, k) for f, k in problems)
        else:
            good.append(values)
    if not good and not errors:
        raise FileError("act_file_empty")
    return good, errors


@bp.post("/orgs/<code>/activities/import")
@roles(*ACTORS)
def org_activity_import(code: str):
    lang = _lang()
    upload = request.files.get("file")
    with db_session() as s:
        org = _visible_org(s, code)
        org_active = org.active
    if upload is None or not upload.filename:
        return _render(code, 400, errors=[translate("act_file_required", lang)], error_fields={"file"})
    data = upload.stream.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        return _render(code, 400, errors=[translate("act_file_too_big", lang)], error_fields={"file"})
    try:
        good, problems = parse_file(data, upload.filename)
    except FileError as exc:
        return _render(code, 400, errors=[translate(str(exc), lang)], error_fields={"file"})
    if not org_active:
        return _render(code, 400, errors=[translate("act_err_org_inactive", lang)])
    if problems:
        listed = [{"row": n, "message": _message(f, k, lang)} for n, f, k in problems[:MAX_REPORTED_ERRORS]]
        rows_bad = len({n for n, _, _ in problems})
        return _render(code, 400, errors=[f"{translate('act_import_rejected', lang)} ({rows_bad})"],
                       import_errors=listed, error_fields={"file"})
    with db_session() as s, s.begin():
        made = write_activities(s, code, good, g.user.username)
        s.add(AuditLog(actor=g.user.username, action="activity.import", target_type="party_org", target_id=code,
                       details={"party_org_code": code, "count": len(made), "filename": upload.filename[:200],
                                "activity_ids": [a.id for a in made]}))
    flash(f"{translate('act_imported', lang)} {len(made)}", "ok")
    return redirect(url_for("console.org_activities", code=code), code=303)
