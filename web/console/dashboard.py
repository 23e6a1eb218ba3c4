"""The console's home page: how the last runs went, what is open, the trend, coverage standing.

Everything here is an aggregate query (GROUP BY / COUNT over indexed columns), so the page costs
the same with 100 000 persons and 20 000 open mismatches as with a demo enterprise. An officer
sees the numbers of their party-org subtree only: mismatches naming an org of the subtree (as in
the queue), the units their branches cover; runs and the org chart are not personal and shown whole.

Also the officer scope for mismatches, shared with the other page modules (people, orgs, exports).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from flask import current_app, g, render_template, request, session
from sqlalchemy import ColumnElement, func, or_, select, true, union_all
from sqlalchemy.orm import Session

from records.models import ExpectedBranch, Mismatch, OrgUnit, PartyOrg, SyncRun, utcnow
from records.queries import mismatch_state_filter
from web.auth import db_session
from web.console import bp
from web.console.access import READERS, roles, visible_org_codes
from web.console.i18n import translate

TREND_DAYS = (30, 90)
TOP_ORGS = 10
# How many recent runs are read to find each source's last one (a run lists its sources in a JSON
# column, which no portable SQL indexes): enough for every source of a daily schedule and more.
RUNS_SCANNED = 500


def mismatch_scope(s: Session) -> ColumnElement[bool]:
    """Mismatches the current user may see: all, or (officer) those naming an org of the subtree
    as registered or expected party org — the same rule as the queue and the API."""
    codes = visible_org_codes(s)
    if codes is None:
        return true()
    return or_(Mismatch.party_org_code.in_(codes), Mismatch.other_party_org_code.in_(codes))


def open_mismatches(s: Session) -> ColumnElement[bool]:
    return mismatch_state_filter("open") & mismatch_scope(s)


# --- the pieces ------------------------------------------------------------------------------


def last_runs(s: Session) -> list[dict[str, Any]]:
    """The last run of every configured source (and of sources that ran but are no longer
    configured), newest first, with the counts of the kinds that source provides."""
    configured = current_app.extensions["dualline"].config().sources
    last: dict[str, Any] = {}
    # only the small columns: a run's report (its plan) can be large
    rows = s.execute(select(SyncRun.id, SyncRun.sources, SyncRun.status, SyncRun.started_at, SyncRun.finished_at,
                            SyncRun.counts).where(SyncRun.dry_run.is_(False))
                     .order_by(SyncRun.id.desc()).limit(RUNS_SCANNED))
    for run in rows:
        for name in run.sources or []:
            last.setdefault(name, run)
        if configured and all(name in last for name in configured):
            break
    result = []
    for name in list(configured) + sorted(set(last) - set(configured)):
        run = last.get(name)
        kinds = configured[name].provides if name in configured else sorted((run.counts or {}) if run else [])
        counts: dict[str, int] = {}
        if run is not None:
            for kind in kinds:
                for key, value in (run.counts or {}).get(kind, {}).items():
                    if isinstance(value, int):
                        counts[key] = counts.get(key, 0) + value
        result.append({"source": name, "configured": name in configured, "run": run, "kinds": kinds,
                       "counts": counts})
    result.sort(key=lambda r: -(r["run"].id if r["run"] else 0))
    return result


def open_by_rule(s: Session) -> list[tuple[str, int]]:
    rows = s.execute(select(Mismatch.rule, func.count()).where(open_mismatches(s))
                     .group_by(Mismatch.rule).order_by(func.count().desc(), Mismatch.rule))
    return [(rule, n) for rule, n in rows]


def open_by_org(s: Session, limit: int = TOP_ORGS) -> list[dict[str, Any]]:
    """Party orgs with the most open mismatches. A mismatch counts for each org it names
    (registered and expected branch): both have work to do. Officers: orgs of their subtree."""
    live = mismatch_state_filter("open")
    named = union_all(
        select(Mismatch.party_org_code.label("code")).where(live, Mismatch.party_org_code.is_not(None)),
        select(Mismatch.other_party_org_code.label("code")).where(
            live, Mismatch.other_party_org_code.is_not(None),
            or_(Mismatch.party_org_code.is_(None), Mismatch.other_party_org_code != Mismatch.party_org_code)),
    ).subquery()
    query = select(named.c.code, func.count().label("n")).group_by(named.c.code)
    codes = visible_org_codes(s)
    if codes is not None:
        query = query.where(named.c.code.in_(codes))
    rows = s.execute(query.order_by(func.count().desc(), named.c.code).limit(limit)).all()
    names = dict(s.execute(select(PartyOrg.code, PartyOrg.name).where(PartyOrg.code.in_([r[0] for r in rows]))).all())
    return [{"code": code, "name": names.get(code, code), "count": n} for code, n in rows]


def _day(value: Any) -> dt.date:
    """func.date() answers a string on SQLite and a date on PostgreSQL and MariaDB."""
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


def trend(s: Session, days: int) -> dict[str, Any]:
    """Mismatches opened and closed (the data came to agree) per day over the last `days` days,
    and how many were unclosed at the end of each day — walked back from today's count, so the
    whole series costs two GROUP BYs and one COUNT whatever the number of mismatches."""
    today = utcnow().date()
    first = today - dt.timedelta(days=days - 1)
    start = dt.datetime.combine(first, dt.time())
    scope = mismatch_scope(s)
    opened = {_day(d): n for d, n in s.execute(
        select(func.date(Mismatch.opened_at), func.count()).where(scope, Mismatch.opened_at >= start)
        .group_by(func.date(Mismatch.opened_at)))}
    closed = {_day(d): n for d, n in s.execute(
        select(func.date(Mismatch.closed_at), func.count()).where(scope, Mismatch.closed_at >= start)
        .group_by(func.date(Mismatch.closed_at)))}
    unclosed_now = s.scalar(select(func.count()).select_from(Mismatch).where(scope, Mismatch.closed_at.is_(None))) or 0
    dates = [first + dt.timedelta(days=i) for i in range(days)]
    unclosed: list[int] = []
    level = unclosed_now
    for day in reversed(dates):
        unclosed.append(level)
        level = level - opened.get(day, 0) + closed.get(day, 0)
    unclosed.reverse()
    return {"dates": [d.isoformat() for d in dates], "opened": [opened.get(d, 0) for d in dates],
            "closed": [closed.get(d, 0) for d in dates], "unclosed": unclosed}


def coverage_standing(s: Session) -> dict[str, int]:
    """Active org units with an expected branch (covered) and without; of the uncovered, those
    holding staff or members have an open `uncovered_unit` mismatch. Officers: units whose
    expected branch lies in their subtree."""
    active_units = select(OrgUnit.code).where(OrgUnit.active.is_(True))
    total = s.scalar(select(func.count()).select_from(OrgUnit).where(OrgUnit.active.is_(True))) or 0
    covered_query = select(func.count()).select_from(ExpectedBranch).where(
        ExpectedBranch.org_unit_code.in_(active_units))
    covered_all = s.scalar(covered_query) or 0
    codes = visible_org_codes(s)
    covered_mine = covered_all if codes is None else (
        s.scalar(covered_query.where(ExpectedBranch.branch_code.in_(codes))) or 0)
    uncovered_with_people = s.scalar(select(func.count()).select_from(Mismatch).where(
        open_mismatches(s), Mismatch.rule == "uncovered_unit")) or 0
    return {"total": total, "covered": covered_all, "uncovered": total - covered_all,
            "covered_mine": covered_mine, "uncovered_with_people": uncovered_with_people}


def trend_chart_option(data: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    """An ECharts option of plain data (console.js draws it; no functions, nothing evaluated)."""
    return {
        "legend": {"top": 0},
        "grid": {"left": 40, "right": 40, "top": 36, "bottom": 28, "containLabel": True},
        "xAxis": {"type": "category", "data": data["dates"]},
        "yAxis": [{"type": "value", "minInterval": 1}, {"type": "value", "minInterval": 1}],
        "series": [
            {"name": labels["opened"], "type": "bar", "data": data["opened"], "itemStyle": {"color": "#b71c1c"}},
            {"name": labels["closed"], "type": "bar", "data": data["closed"], "itemStyle": {"color": "#1a7f37"}},
            {"name": labels["unclosed"], "type": "line", "yAxisIndex": 1, "data": data["unclosed"],
             "showSymbol": False, "itemStyle": {"color": "#0b57d0"}},
        ],
    }


@bp.get("/")
@roles(*READERS)
def index():
    days = request.args.get("days", 30, type=int)
    days = days if days in TREND_DAYS else TREND_DAYS[0]
    lang = session.get("lang", "zh")
    with db_session() as s:
        runs = last_runs(s)
        by_rule = open_by_rule(s)
        by_org = open_by_org(s)
        series = trend(s, days)
        coverage = coverage_standing(s)
    labels = {k: translate(f"trend_{k}", lang) for k in ("opened", "closed", "unclosed")}
    return render_template("console/dashboard.html", runs=runs, by_rule=by_rule, open_total=sum(n for _, n in by_rule),
                           by_org=by_org, trend=series, trend_option=trend_chart_option(series, labels),
                           days=days, trend_days=TREND_DAYS, coverage=coverage, officer=g.user.role == "officer")
