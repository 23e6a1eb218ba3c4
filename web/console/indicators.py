"""A party org's standing in the console: `/orgs/<code>/indicators` (the indicators, with the
dues-sheet download and the points ranking beside them).

  GET /orgs/<code>/indicators              indicators (sync/indicators.py: numbers and formulas)
  GET /orgs/<code>/dues.xlsx?month=YYYY-MM the monthly dues sheet (sync/dues.py), a download
  GET /orgs/<code>/points?year=Y           the points ranking, 先锋指数 and 堡垒指数 (sync/points.py)
Readers (admin, officer, auditor); an officer only within their subtree (404 outside). All three
only read, so no form here posts.
"""
from __future__ import annotations

from flask import Response, abort, current_app, render_template, request
from sqlalchemy import select

from records.models import PartyOrg
from sync.dues import DuesPolicy, build_dues_sheet, completed_months, parse_month
from sync.indicators import org_indicators
from sync.points import PointsSettings, ranking
from sync.rules.engine import RuleSet
from web.auth import db_session
from web.console import bp
from web.console.access import READERS, require_org_visible, roles

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _visible_org(s, code: str) -> PartyOrg:  # noqa: ANN001 - a Session
    require_org_visible(s, code)
    org = s.scalar(select(PartyOrg).where(PartyOrg.code == code))
    if org is None:
        abort(404)
    return org


def _rule_set() -> RuleSet:
    return RuleSet.from_config(current_app.extensions["dualline"].config())


@bp.get("/orgs/<code>/indicators")
@roles(*READERS)
def org_indicators_page(code: str):
    rule_set = _rule_set()
    with db_session() as s:
        org = _visible_org(s, code)
        data = org_indicators(s, code, rule_set=rule_set)
    last_month = completed_months(rule_set.evaluation_date(), 1)[0]
    return render_template("console/indicators.html", org=org, ind=data, last_month=last_month)


@bp.get("/orgs/<code>/dues.xlsx")
@roles(*READERS)
def org_dues_sheet(code: str):
    rule_set = _rule_set()
    try:
        month = parse_month(request.args.get("month") or completed_months(rule_set.evaluation_date(), 1)[0])
    except ValueError:
        abort(400)
    with db_session() as s:
        _visible_org(s, code)
        data = build_dues_sheet(s, code, month, DuesPolicy.from_thresholds(rule_set.thresholds["dues_underpaid"]))
    filename = f"dues-{code}-{month}.xlsx"
    return Response(data, mimetype=XLSX, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@bp.get("/orgs/<code>/points")
@roles(*READERS)
def org_points_page(code: str):
    rule_set = _rule_set()
    year = request.args.get("year", type=int) or rule_set.evaluation_date().year
    if not 1950 <= year <= 2200:
        abort(400)
    settings = PointsSettings.from_config(current_app.extensions["dualline"].config())
    with db_session() as s:
        org = _visible_org(s, code)
        result = ranking(s, code, year, settings, rule_set=rule_set)
    return render_template("console/points.html", org=org, result=result, year=year)
