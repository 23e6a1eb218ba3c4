"""`GET /api/v1/party-orgs/<id>/indicators`: a party org's standardization indicators.

Scope `read`; a subtree-limited token sees only orgs inside its subtree (404 outside, as for
every party-org endpoint). The numbers and their formulas: sync/indicators.py. Registered on the
api blueprint by importing this module in web.api.init_app.
"""
from __future__ import annotations

from flask import Response, current_app
from marshmallow import RAISE, Schema, fields, validate

from sync.indicators import org_indicators
from sync.rules.engine import RuleSet
from web.api.resources import _json, _visible_party_org, bp, documented
from web.api.security import db_session, require


class StandardizationSchema(Schema):
    score = fields.Float(metadata={"description": "0–100: 100 − open findings' severity weights per branch"})
    penalty = fields.Integer()
    branches = fields.Integer()
    weights = fields.Dict(keys=fields.String(), values=fields.Integer())


class CountsSchema(Schema):
    held = fields.Integer()
    required = fields.Integer()


class MeetingsSchema(CountsSchema):
    rate = fields.Float(allow_none=True)
    by_type = fields.Dict(keys=fields.String(), values=fields.Nested(CountsSchema))


class DuesSchema(Schema):
    expected = fields.Float()
    paid = fields.Float()
    member_months = fields.Integer()
    rate = fields.Float(allow_none=True)
    from_ = fields.String(data_key="from")
    to = fields.String()


class ShareSchema(Schema):
    graded = fields.Integer()
    good = fields.Integer()
    share = fields.Float(allow_none=True)


class IntegrationSchema(Schema):
    year = fields.Integer()
    good_grades = fields.List(fields.String())
    members = fields.Nested(ShareSchema)
    staff = fields.Nested(ShareSchema)
    gap = fields.Float(allow_none=True)
    covered_units = fields.Integer()


class SecretarySchema(Schema):
    party_org_code = fields.String()
    secretary = fields.String()
    person_id = fields.Integer(allow_none=True)
    position = fields.String(allow_none=True)
    managing = fields.Boolean()


class CrossAppointmentSchema(Schema):
    secretaries = fields.Integer()
    matched = fields.Integer()
    managing = fields.Integer()
    share = fields.Float(allow_none=True)
    orgs = fields.List(fields.Nested(SecretarySchema))


class IndicatorsSchema(Schema):
    party_org_id = fields.Integer()
    party_org_code = fields.String()
    today = fields.String(metadata={"description": "Evaluation date (rules.settings.today, else today)"})
    year = fields.Integer(metadata={"description": "Appraisal year of the integration indicator"})
    subtree = fields.List(fields.String())
    standardization = fields.Nested(StandardizationSchema)
    findings = fields.Dict(keys=fields.String(), values=fields.Integer(),
                           metadata={"description": "Open findings by rule id in the subtree"})
    meetings = fields.Nested(MeetingsSchema)
    dues = fields.Nested(DuesSchema)
    integration = fields.Nested(IntegrationSchema)
    cross_appointment = fields.Nested(CrossAppointmentSchema)


class IndicatorsQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    year = fields.Integer(validate=validate.Range(min=1950, max=2200),
                          metadata={"description": "Appraisal year for 党建与业务融合 (default: last year)"})


def _rule_set() -> RuleSet:
    return RuleSet.from_config(current_app.extensions["dualline"].runtime().config)


@bp.route("/party-orgs/<int:org_id>/indicators")
@bp.arguments(IndicatorsQuerySchema, location="query")
@bp.response(200, IndicatorsSchema)
@documented(400, 404)
def party_org_indicators(args: dict[str, int], org_id: int) -> Response:
    """Standardization score, open findings by rule, meetings held vs required, dues collection
    rate, members' grades vs all staff (党建与业务融合), cross-appointment coverage."""
    viewer = require("read")
    with db_session() as s:
        org = _visible_party_org(s, viewer, org_id)
        data = org_indicators(s, org.code, rule_set=_rule_set(), year=args.get("year"))
        data["party_org_id"] = org.id
        data["dues"]["from_"] = data["dues"].pop("from")
        return _json(IndicatorsSchema().dump(data))
