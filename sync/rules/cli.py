"""`dualline rules list` and `dualline rules run`: the standardization rules on demand.

`run` evaluates every enabled rule against the records as they are now and reconciles the
findings into the mismatches (actor `cli`, no sync run), exactly as a sync does after alignment.
Exit codes as for every command: 0 done; 2 bad usage or config (a bad `rules:` block names
`rules.<id>.<key>`).
"""
from __future__ import annotations

import datetime as dt
import json

import click
from flask import current_app

from records.db import session_factory
from sync.rules.engine import RuleSet


def _rule_set() -> RuleSet:
    return RuleSet.from_config(current_app.extensions["dualline"].runtime().config)


@click.group("rules")
def rules_group() -> None:
    """Standardization (规范化) rules: list them, or run them now."""


@rules_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def list_command(as_json: bool) -> None:
    """Rule ids, their regulations, severities and effective thresholds."""
    rule_set = _rule_set()
    items = [
        {"id": rid, "reference": rule.reference, "summary": rule.summary, "severity": rule.severity,
         "subject": rule.subject_type, "thresholds": rule_set.thresholds[rid]}
        for rid, rule in rule_set.rules.items()
    ]
    if as_json:
        click.echo(json.dumps({"items": items, "today": rule_set.evaluation_date().isoformat()}, ensure_ascii=False))
        return
    for it in items:
        state = "" if it["thresholds"]["enabled"] else "  (disabled)"
        click.echo(f"{it['id']:<20} {it['reference']}{state}")
        click.echo(f"{'':<20} {it['summary']}")
        values = ", ".join(f"{k}={v}" for k, v in it["thresholds"].items() if k != "enabled")
        click.echo(f"{'':<20} severity {it['severity']}; {values}")


@rules_group.command("run")
@click.option("--today", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Evaluate as of this date (default: rules.settings.today, else today).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def run_command(today: dt.datetime | None, as_json: bool) -> None:
    """Evaluate every enabled rule now and update the mismatches."""
    runtime = current_app.extensions["dualline"].runtime()
    rule_set = RuleSet.from_config(runtime.config)
    with session_factory(runtime.engine)() as session, session.begin():
        outcome = rule_set.evaluate(session, None, "cli", today=today.date() if today else None)
    r = outcome.result
    payload = {"today": outcome.today.isoformat(), "found": outcome.found,
               "mismatches": {"opened": r.opened, "closed": r.closed, "reopened": r.reopened, "open": r.open},
               "open_by_rule": {rid: r.by_rule.get(rid, 0) for rid in rule_set.rules}}
    if as_json:
        click.echo(json.dumps(payload, ensure_ascii=False))
        return
    click.echo(f"rules as of {payload['today']}: {r.opened} opened, {r.closed} closed, {r.reopened} reopened")
    for rid in rule_set.rules:
        found = outcome.found.get(rid)
        click.echo(f"  {rid:<20}{'disabled' if found is None else found:>9} found{payload['open_by_rule'][rid]:>7} open")
