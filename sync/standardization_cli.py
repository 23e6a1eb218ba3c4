"""`dualline dues`, `dualline transfers` and `dualline points`: the standardization tools on the CLI.

  dualline dues sheet --branch CODE --month YYYY-MM -o FILE.xlsx   the branch's monthly dues sheet
  dualline transfers list [--status S] [--json]                      transfers, newest first
  dualline transfers letter ID [--json] [--reveal]                   the letter's printable fields
  dualline points rank --branch CODE --year Y [--json]               ranking, 先锋指数, 堡垒指数
  dualline points add EMPLOYEE_NO --year Y --category C --points N --reason TEXT
  dualline points import FILE.csv    columns employee_no, year, category, points, reason (all or nothing)
Dues rates come from `rules.dues_underpaid`, points schemes from `points:` in dualline.yaml.
Exit codes: 0 done; 2 bad usage, bad config or an unknown branch / transfer / person.
"""
from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import click
from flask import current_app
from sqlalchemy import select

from records.db import session_factory
from records.models import PartyOrg, Person
from sync.dues import DuesPolicy, build_dues_sheet, parse_month
from sync.points import PointsSettings, add_entry, ranking
from sync.rules.engine import RuleSet
from sync.transfers import LETTER_LABELS, TransferError, cancel, letter_data, list_transfers, receive

EXIT_USAGE = 2


def _runtime():
    return current_app.extensions["dualline"].runtime()


def _fail(message: str) -> None:
    click.echo(f"dualline: {message}", err=True)
    sys.exit(EXIT_USAGE)


def _branch_known(session, code: str) -> None:  # noqa: ANN001
    if session.scalar(select(PartyOrg.id).where(PartyOrg.code == code)) is None:
        _fail(f"unknown party org '{code}'")


# --- dues ---------------------------------------------------------------------------------------


@click.group("dues")
def dues_group() -> None:
    """Party dues (党费): the monthly sheet per branch."""


@dues_group.command("sheet")
@click.option("--branch", required=True, help="Party org code.")
@click.option("--month", required=True, help="YYYY-MM")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False, path_type=Path))
def dues_sheet_command(branch: str, month: str, output: Path) -> None:
    """Write the branch's dues sheet for MONTH as XLSX."""
    try:
        month = parse_month(month)
    except ValueError as exc:
        _fail(str(exc))
    runtime = _runtime()
    policy = DuesPolicy.from_thresholds(RuleSet.from_config(runtime.config).thresholds["dues_underpaid"])
    with session_factory(runtime.engine)() as session:
        _branch_known(session, branch)
        data = build_dues_sheet(session, branch, month, policy)
    output.write_bytes(data)
    click.echo(f"{output} ({len(data)} bytes)")


# --- transfers ------------------------------------------------------------------------------------


@click.group("transfers")
def transfers_group() -> None:
    """Membership transfers (组织关系转接) and their letters."""


@transfers_group.command("list")
@click.option("--status", type=click.Choice(["issued", "received", "cancelled"]), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def transfers_list_command(status: str | None, as_json: bool) -> None:
    """Transfers, newest first (ID numbers masked)."""
    with session_factory(_runtime().engine)() as session:
        items = [t.as_dict() for t in list_transfers(session, status=status)]
    if as_json:
        click.echo(json.dumps({"items": items, "total": len(items)}, ensure_ascii=False))
        return
    for t in items:
        click.echo(f"{t['transfer_id']:>6}  {t['letter_no'] or '-':<14} {t['status']:<9} {t['name']:<8} "
                   f"{t['from_org'] or '-'} → {t['to_org'] or '-'}  {t['issued_on']} .. {t['valid_until'] or '-'}")


@transfers_group.command("letter")
@click.argument("transfer_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--reveal", is_flag=True, help="Print the full ID number (an operator's flag).")
def transfers_letter_command(transfer_id: int, as_json: bool, reveal: bool) -> None:
    """The printable fields of one transfer's letter (党员组织关系介绍信)."""
    runtime = _runtime()
    with session_factory(runtime.engine)() as session:
        try:
            letter = letter_data(session, transfer_id, cipher=runtime.cipher if reveal else None, reveal=reveal)
        except LookupError as exc:
            _fail(str(exc))
    data = letter.as_dict()
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False))
        return
    click.echo("中国共产党党员组织关系介绍信")
    for key, label in LETTER_LABELS.items():
        click.echo(f"{label}: {'' if data[key] is None else data[key]}")


@transfers_group.command("receive")
@click.argument("transfer_id", type=int)
@click.option("--on", "received_on", default=None, help="The receipt's date, YYYY-MM-DD (default today).")
def transfers_receive_command(transfer_id: int, received_on: str | None) -> None:
    """Record the receipt (回执) of an issued transfer (audited, actor `cli`)."""
    day = None
    if received_on:
        try:
            day = dt.date.fromisoformat(received_on)
        except ValueError:
            _fail(f"--on: not a date (YYYY-MM-DD): '{received_on}'")
    with session_factory(_runtime().engine)() as session, session.begin():
        try:
            t = receive(session, transfer_id, "cli", day)
        except TransferError as exc:
            _fail(exc.message)
        done = t.received_on.isoformat()
    click.echo(f"transfer {transfer_id} received on {done}")


@transfers_group.command("cancel")
@click.argument("transfer_id", type=int)
@click.option("--reason", required=True, help="Why the letter is withdrawn.")
def transfers_cancel_command(transfer_id: int, reason: str) -> None:
    """Cancel (作废) an issued transfer (audited, actor `cli`)."""
    with session_factory(_runtime().engine)() as session, session.begin():
        try:
            cancel(session, transfer_id, "cli", reason)
        except TransferError as exc:
            _fail(exc.message)
    click.echo(f"transfer {transfer_id} cancelled")


# --- points ---------------------------------------------------------------------------------------


@click.group("points")
def points_group() -> None:
    """Points (积分制): rankings and ledger entries."""


@points_group.command("rank")
@click.option("--branch", required=True, help="Party org code.")
@click.option("--year", required=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def points_rank_command(branch: str, year: int, as_json: bool) -> None:
    """The branch's members ranked by points for YEAR, with 先锋指数 and the branch's 堡垒指数."""
    runtime = _runtime()
    settings = PointsSettings.from_config(runtime.config)
    rule_set = RuleSet.from_config(runtime.config)
    with session_factory(runtime.engine)() as session:
        _branch_known(session, branch)
        result = ranking(session, branch, year, settings, rule_set=rule_set)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
        return
    click.echo(f"{branch} {year}: 堡垒指数 {result['fortress_index']}")
    for m in result["members"]:
        cats = ", ".join(f"{k} {v:+g}" for k, v in m["categories"].items())
        click.echo(f"{m['rank']:>4}. {m['name']:<10} {m['total']:>7g}  先锋指数 {m['vanguard_index']}  ({cats})")


@points_group.command("add")
@click.argument("employee_no")
@click.option("--year", required=True, type=int)
@click.option("--category", required=True)
@click.option("--points", "points", required=True, type=float)
@click.option("--reason", required=True)
def points_add_command(employee_no: str, year: int, category: str, points: float, reason: str) -> None:
    """Add one ledger line (audited, actor `cli`)."""
    runtime = _runtime()
    with session_factory(runtime.engine)() as session, session.begin():
        person_id = session.scalar(select(Person.id).where(Person.employee_no == employee_no))
        if person_id is None:
            _fail(f"no person with employee number '{employee_no}'")
        try:
            entry = add_entry(session, person_id=person_id, year=year, category=category, points=points,
                              reason=reason, actor="cli")
        except ValueError as exc:
            _fail(str(exc))
        entry_id = entry.id
    click.echo(f"points entry {entry_id} added at {dt.datetime.now():%Y-%m-%d %H:%M}")


@points_group.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def points_import_command(path: Path) -> None:
    """Import ledger lines from a UTF-8 CSV (employee_no, year, category, points, reason); a bad
    line names its line number and nothing is written."""
    import csv

    runtime = _runtime()
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    needed = {"employee_no", "year", "category", "points", "reason"}
    if rows and not needed <= set(rows[0]):
        _fail(f"{path}: columns {', '.join(sorted(needed))} are required")
    with session_factory(runtime.engine)() as session, session.begin():
        ids = dict(session.execute(select(Person.employee_no, Person.id).where(
            Person.employee_no.in_({r["employee_no"].strip() for r in rows}))).all())
        for line, row in enumerate(rows, start=2):
            try:
                person_id = ids.get(row["employee_no"].strip())
                if person_id is None:
                    raise ValueError(f"no person with employee number '{row['employee_no']}'")
                add_entry(session, person_id=person_id, year=int(row["year"]), category=row["category"].strip(),
                          points=float(row["points"]), reason=row["reason"] or "", actor="cli",
                          source=f"import:{path.name}")
            except (ValueError, LookupError) as exc:
                session.rollback()
                _fail(f"{path}: line {line}: {exc}")
    click.echo(f"{len(rows)} points entries imported from {path}")


COMMANDS = (dues_group, transfers_group, points_group)
