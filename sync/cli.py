"""CLI of the sync: `dualline sync`, `dualline runs`, `dualline mismatches`.

Exit codes (DESIGN.md): 0 done; 1 failed; 2 bad usage or config; 3 held by the guard.
"""
from __future__ import annotations

import json
import sys
import time
from typing import Any

import click
from flask import Flask, current_app
from sqlalchemy import func, select

from connectors import SourceError
from mappings import MappingContext, MappingError
from records.db import session_factory
from records.queries import MISMATCH_STATES, mismatch_state_filter
from records.models import Mismatch, PartyOrg, Person, SyncRun
from sqlalchemy.exc import SQLAlchemyError
from sync.fields import SENSITIVE_FIELDS
from sync.engine import RunResult, SyncEngine
from sync.locks import LockHeld

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_HELD = 0, 1, 2, 3
STATUS_EXIT = {"succeeded": EXIT_OK, "dry_run": EXIT_OK, "failed": EXIT_FAILED, "held": EXIT_HELD}


def _runtime():
    return current_app.extensions["dualline"].runtime()


class TerminalProgress:
    """Per source and kind: records read and rate, rewritten in place on a terminal."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.started: dict[tuple[str, str], float] = {}
        self.current: tuple[str, str] | None = None

    def __call__(self, source: str, kind: str, read: int) -> None:
        if not self.enabled:
            return
        key = (source, kind)
        if key != self.current:
            if self.current is not None:
                sys.stderr.write("\n")
            self.current = key
            self.started[key] = time.perf_counter()
        elapsed = max(time.perf_counter() - self.started[key], 1e-6)
        sys.stderr.write(f"\r  {source}/{kind}: {read:,} read ({read / elapsed:,.0f}/s)   ")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled and self.current is not None:
            sys.stderr.write("\n")


def print_summary(result: RunResult) -> None:
    label = {"succeeded": "done", "dry_run": "dry run (nothing written)", "failed": "FAILED",
             "held": "HELD by the guard (nothing applied)"}[result.status]
    run = f"run {result.run_id}" if result.run_id else "run"
    click.echo(f"{run}: {label} in {result.seconds:.1f}s")
    if result.counts:
        click.echo(f"  {'kind':<15}{'created':>9}{'updated':>9}{'deactiv.':>9}{'unchanged':>11}{'quarant.':>9}{'ambig.':>7}")
        for kind, c in result.counts.items():
            click.echo(f"  {kind:<15}{c['created']:>9}{c['updated']:>9}{c['deactivated']:>9}"
                       f"{c['unchanged']:>11}{c['quarantined']:>9}{c['ambiguous']:>7}")
    if result.moves:
        click.echo("  moves: " + ", ".join(f"{k} {v}" for k, v in result.moves.items()))
    for err in result.errors:
        where = "/".join(x for x in (err.get("source"), err.get("kind")) if x)
        click.echo(f"  error {where} [{err.get('error_class')}]: {err.get('message')}", err=True)
    for reason in result.guard.get("reasons", []):
        click.echo(f"  guard: {reason}")
    if result.status == "held":
        click.echo("  review the plan, then rerun with --approve (or approve the run in the console)")
    for q in result.quarantined[:10]:
        row = f" row {q['row']}" if q.get("row") else ""
        click.echo(f"  quarantined {q['source']}/{q['kind']}{row}: {q['field'] + ': ' if q.get('field') else ''}{q['reason']}")
    total_q = sum(c["quarantined"] for c in result.counts.values())
    if total_q > 10:
        click.echo(f"  … {total_q - 10} more quarantined (see `dualline runs` / the console)")
    if result.mismatches:
        m = result.mismatches
        click.echo(f"  mismatches: {m['opened']} opened, {m['closed']} closed, {m['open']} open")
        for rule, n in sorted(result.mismatches_by_rule.items()):
            click.echo(f"    {rule:<20}{n:>6}")
    if result.status == "dry_run":
        for entry in result.plan:
            click.echo(f"  plan {entry['kind']} {entry['op']}: {entry['total']}  e.g. "
                       + ", ".join(s["label"] for s in entry["sample"][:5]))


@click.command("sync")
@click.argument("sources", nargs=-1)
@click.option("--dry-run", is_flag=True, help="Do everything but write nothing; print the plan.")
@click.option("--full", is_flag=True, help="Full pull (detects deletions) even where incremental is possible.")
@click.option("--approve", is_flag=True, help="Apply even if the guard would hold the run.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--distributed", is_flag=True,
              help="Run on the Celery workers of `workers:` (fetch in parallel partitions) and wait.")
def sync_command(sources: tuple[str, ...], dry_run: bool, full: bool, approve: bool, as_json: bool,
                 distributed: bool) -> None:
    """Run sources (all when none are named)."""
    from sync.lifetime import die_with_parent
    from sync.logs import log_format, setup_logging

    die_with_parent()  # started by `dualline scheduler`: end with it (sync.lifetime)

    if log_format() == "json":  # JSON logs tell the run's story; human runs print their summary
        setup_logging("INFO")
    progress = None if as_json or distributed else TerminalProgress()
    engine = SyncEngine(_runtime(), progress=progress)
    if distributed and dry_run:
        raise click.UsageError("--dry-run runs in this process; leave out --distributed")
    if engine.config.webhooks and not dry_run:
        from sync.webhooks import register_config_webhooks

        register_config_webhooks(engine.runtime)  # a new one starts here, before this run's changes
    try:
        if distributed:
            from sync.tasks import run_distributed

            result = run_distributed(engine.runtime, list(sources) or None, full=full, approve=approve)
        else:
            result = engine.run(list(sources) or None, dry_run=dry_run, full=full, approve=approve)
    except LockHeld as exc:  # another live run has one of these sources: nothing was done
        if as_json:
            click.echo(json.dumps({"run_id": None, "status": "failed", "errors": [
                {"error_class": "locked", "message": str(exc), "holder": exc.holder,
                 "since": exc.since.isoformat() if exc.since else None}]}, ensure_ascii=False))
        click.echo(f"dualline: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    if progress:
        progress.done()
    if as_json:
        click.echo(json.dumps(result.as_json(), ensure_ascii=False, default=str))
    else:
        print_summary(result)
    sys.exit(STATUS_EXIT[result.status])


@click.command("runs")
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def runs_command(limit: int, as_json: bool) -> None:
    """List recent sync runs."""
    runtime = _runtime()
    with session_factory(runtime.engine)() as session:
        runs = session.scalars(select(SyncRun).order_by(SyncRun.id.desc()).limit(limit)).all()
    items = [
        {"id": r.id, "status": r.status, "sources": r.sources, "full": r.full, "actor": r.actor,
         "started_at": r.started_at.isoformat() if r.started_at else None,
         "finished_at": r.finished_at.isoformat() if r.finished_at else None,
         "counts": r.counts, "mismatches": r.mismatches, "error": r.error}
        for r in runs
    ]
    if as_json:
        click.echo(json.dumps({"items": items}, ensure_ascii=False))
        return
    if not items:
        click.echo("no runs yet: try `dualline sync`")
    for r in items:
        counts = ", ".join(f"{k} +{v['created']}~{v['updated']}-{v['deactivated']}" for k, v in (r["counts"] or {}).items())
        click.echo(f"#{r['id']:<5} {r['status']:<10} {r['started_at'][:19]}  {','.join(r['sources'])}  {counts}")
        if r["error"]:
            click.echo(f"       {r['error']}")


def mismatch_item(m: Mismatch, person: Any, reveal: bool, cipher: Any) -> dict[str, Any]:
    subject: dict[str, Any] = {"type": m.subject_type, "id": m.subject_id, "label": m.subject_label}
    if m.subject_type == "org_unit":
        subject["code"] = m.org_unit_code
    elif m.subject_type == "party_org":
        subject["code"] = m.party_org_code
    details = m.details or {}
    if person is not None:
        subject["employee_no"] = person.employee_no
        subject["id_number"] = cipher.decrypt(person.id_number_enc) if reveal else person.id_number_masked
    elif m.rule == "ambiguous_match":
        record = details.get("record", {})
        subject["employee_no"] = record.get("employee_no")
        subject["birth_date"] = record.get("birth_date")
        subject["source"] = details.get("source")
    return {"id": m.id, "rule": m.rule, "state": m.state, "severity": m.severity, "subject": subject,
            "details": details, "opened_at": m.opened_at.isoformat() if m.opened_at else None}


@click.command("mismatches")
@click.option("--rule", default=None, help="Only this rule id.")
@click.option("--state", default="open", show_default=True, type=click.Choice(MISMATCH_STATES))
@click.option("--reveal", is_flag=True, help="Show ID numbers unmasked (operators only).")
@click.option("--limit", default=None, type=int)
@click.option("--json", "as_json", is_flag=True)
def mismatches_command(rule: str | None, state: str, reveal: bool, limit: int | None, as_json: bool) -> None:
    """List mismatches between the business line and the party line."""
    runtime = _runtime()
    cipher = runtime.cipher if reveal else None
    query = select(Mismatch, Person).outerjoin(
        Person, (Mismatch.subject_type == "person") & (Person.id == Mismatch.subject_id)
    )
    count = select(func.count(Mismatch.id))
    if rule:
        query, count = query.where(Mismatch.rule == rule), count.where(Mismatch.rule == rule)
    state_cond = mismatch_state_filter(state)
    query, count = query.where(state_cond), count.where(state_cond)
    query = query.order_by(Mismatch.rule, Mismatch.id)
    if limit:
        query = query.limit(limit)
    with session_factory(runtime.engine)() as session:
        total = session.scalar(count) or 0
        items = [mismatch_item(m, p, reveal, cipher) for m, p in session.execute(query)]
    if as_json:
        click.echo(json.dumps({"items": items, "total": total}, ensure_ascii=False, default=str))
        return
    for it in items:
        s = it["subject"]
        ident = s.get("employee_no") or s.get("code") or ""
        click.echo(f"#{it['id']:<6} {it['rule']:<20} {it['state']:<8} {s.get('label') or ''} {ident}")
    click.echo(f"{total} mismatch(es)")


def _masked_sample(data: dict[str, Any]) -> dict[str, Any]:
    return {k: (SENSITIVE_FIELDS[k](v) if k in SENSITIVE_FIELDS and v else v) for k, v in data.items()}


def check_source(engine: SyncEngine, source: Any, context: MappingContext) -> dict[str, Any]:
    """Connectivity, auth and one mapped sample record per kind, for one source."""
    report: dict[str, Any] = {"source": source.name, "connector": source.connector, "ok": True, "kinds": {}}
    connector, mapping = engine.build(source)
    with connector:
        try:
            connector.check()
        except SourceError as exc:
            report.update(ok=False, error=f"[{exc.error_class}] {exc.message}")
            return report
        for kind in source.provides:
            entry: dict[str, Any] = {"ok": True}
            try:
                pages = connector.read(kind)
                page = next(iter(pages), None)
                getattr(pages, "close", lambda: None)()
                if page is None or not page.records:
                    entry.update(records=0, warning="the source returned no records for this kind")
                else:
                    raw = page.records[0]
                    entry["records_in_first_page"] = len(page.records)
                    try:
                        entry["sample"] = _masked_sample(mapping.map(kind, raw, context).data)
                    except MappingError as exc:
                        entry.update(ok=False, error=f"first record does not map: {exc}",
                                     columns=sorted(k for k in raw if not k.startswith("_")))
            except SourceError as exc:
                entry.update(ok=False, error=f"[{exc.error_class}] {exc.message}")
            report["kinds"][kind] = entry
            report["ok"] = report["ok"] and entry["ok"]
    return report


def _stored_party_org_names(runtime: Any) -> dict[str, str]:
    """Party org names from the database if it is there (for the roster's branch lookup)."""
    try:
        with session_factory(runtime.engine)() as session:
            return dict(session.execute(select(PartyOrg.name, PartyOrg.code)).all())
    except SQLAlchemyError:
        return {}


def _source_party_org_names(engine: SyncEngine) -> dict[str, str]:
    """Party org names as the configured party-org sources list them now, so that a roster can
    be checked before the first sync has stored any."""
    names: dict[str, str] = {}
    for source in engine.config.sources.values():
        if "party_orgs" not in source.provides:
            continue
        try:
            connector, mapping = engine.build(source)
            with connector:
                for page in connector.read("party_orgs"):
                    for raw in page.records:
                        try:
                            data = mapping.map("party_orgs", raw, MappingContext()).data
                        except MappingError:
                            continue
                        if data.get("name") and data.get("code"):
                            names[data["name"]] = data["code"]
        except SourceError:
            continue  # reported when that source itself is checked
    return names


@click.command("check")
@click.argument("sources", nargs=-1)
@click.option("--json", "as_json", is_flag=True)
def check_command(sources: tuple[str, ...], as_json: bool) -> None:
    """Validate the config, test each source's connectivity and auth, and show one record per
    kind mapped to the canonical form: what to run before the first sync."""
    runtime = _runtime()
    engine = SyncEngine(runtime)
    selected = engine.select_sources(list(sources) or None)
    names = _stored_party_org_names(runtime) | _source_party_org_names(engine) | runtime.config.party_org_names
    context = MappingContext(resolve_party_org=names.get, party_org_names=runtime.config.party_org_names)
    reports = [check_source(engine, source, context) for source in selected]
    ok = all(r["ok"] for r in reports)
    if as_json:
        click.echo(json.dumps({"ok": ok, "sources": reports}, ensure_ascii=False, default=str))
    else:
        click.echo(f"config ok: {runtime.config.path or 'defaults'} ({len(runtime.config.sources)} sources)")
        for r in reports:
            click.echo(f"{'✓' if r['ok'] else '✗'} {r['source']} ({r['connector']})" + (f": {r['error']}" if r.get("error") else ""))
            for kind, entry in r["kinds"].items():
                if entry.get("error"):
                    click.echo(f"    {kind}: {entry['error']}")
                    if entry.get("columns"):
                        click.echo(f"      columns: {', '.join(entry['columns'])}")
                elif entry.get("warning"):
                    click.echo(f"    {kind}: {entry['warning']}")
                else:
                    click.echo(f"    {kind}: {json.dumps(entry['sample'], ensure_ascii=False, default=str)}")
    sys.exit(EXIT_OK if ok else EXIT_FAILED)


@click.command("scheduler")
def scheduler_command() -> None:
    """Run the sources' `schedule:` crons until stopped (each run in a child process)."""
    from sync.logs import setup_logging
    from sync.scheduler import run_scheduler

    setup_logging()  # human lines, or JSON with --log-format json / $DUALLINE_LOG_FORMAT
    runtime = _runtime()
    run_scheduler(runtime.config, runtime.engine)


@click.command("worker")
@click.option("--concurrency", "-c", type=int, default=None, help="Worker processes (default: CPU count).")
@click.option("--queues", "-Q", default=None, help="Queues to consume (default: `workers.queue`).")
@click.option("--beat", "with_beat", is_flag=True, help="Also run the beat schedule (one per deployment).")
@click.option("--loglevel", default="INFO", show_default=True)
def worker_command(concurrency: int | None, queues: str | None, with_beat: bool, loglevel: str) -> None:
    """A Celery worker for distributed runs (`workers:` in the config)."""
    from sync.logs import setup_logging
    from sync.tasks import app, configure, worker_argv

    setup_logging(loglevel.upper())
    configure(_runtime().config)
    app.worker_main(worker_argv(concurrency, queues, loglevel, with_beat))


@click.command("beat")
@click.option("--loglevel", default="INFO", show_default=True)
def beat_command(loglevel: str) -> None:
    """Celery beat: enqueue each source's `schedule:` cron as a distributed run."""
    from sync.logs import setup_logging
    from sync.tasks import app, configure

    setup_logging(loglevel.upper())
    configure(_runtime().config)
    app.start(["beat", f"--loglevel={loglevel}"])


def init_app(app: Flask) -> None:
    from sync.rules.cli import rules_group  # `dualline rules list|run`: standardization rules

    for command in (sync_command, runs_command, mismatches_command, check_command, rules_group,
                    scheduler_command, worker_command, beat_command):
        app.cli.add_command(command)
    from sync.standardization_cli import COMMANDS  # `dualline dues|transfers|points`

    for command in COMMANDS:
        app.cli.add_command(command)
    from sync.webhooks import webhooks_group  # `dualline webhooks deliver|list`

    app.cli.add_command(webhooks_group)
