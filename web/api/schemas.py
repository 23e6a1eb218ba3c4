"""Marshmallow schemas of the API, kept apart from the SQLAlchemy models on purpose.

The models are the storage; these are the published contract (and the OpenAPI document is
generated from them). Like CTFd's per-audience views, sensitive personal data has two views:
`PersonSchema` shows the masked ID number and mobile, `PersonSensitiveSchema` (tokens holding
`read:sensitive`) decrypts them. Both publish the same field names and types, so the OpenAPI
document describes one shape.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from flask import current_app
from marshmallow import Schema, fields, validate

from records.feed import FEED_ENTITIES
from records.queries import MISMATCH_STATES
from sync.resolutions import ALL_ACTIONS as RESOLUTION_ACTIONS

MAX_LIMIT = 1000
# Ids are 64-bit: a larger number in a query is refused (422), not handed to the driver to overflow.
MAX_ID = 2**63 - 1
ID_RANGE = validate.Range(0, MAX_ID)
DEFAULT_LIMIT = 100


def _cipher() -> Any:
    return current_app.extensions["dualline"].runtime().cipher


class UtcDateTime(fields.DateTime):
    """Timestamps are stored as naive UTC: published with their offset (`+00:00`), as RFC 3339
    `date-time` (what the OpenAPI document promises) requires."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return super()._serialize(value, attr, obj, **kwargs)


# --- errors ------------------------------------------------------------------------------------


class ErrorDetailSchema(Schema):
    code = fields.String(required=True, metadata={"description": "Machine-readable error code."})
    message = fields.String(required=True, metadata={"description": "What went wrong, for people."})
    field = fields.String(allow_none=True, required=True,
                          metadata={"description": "The request field at fault, if any."})


class ErrorSchema(Schema):
    error = fields.Nested(ErrorDetailSchema, required=True)


# --- query arguments ---------------------------------------------------------------------------


class PageQuerySchema(Schema):
    limit = fields.Integer(load_default=DEFAULT_LIMIT, validate=validate.Range(1, MAX_LIMIT),
                           metadata={"description": f"Items per page (1–{MAX_LIMIT})."})
    cursor = fields.String(metadata={"description": "Opaque: the `next_cursor` of the previous page."})


class UpdatedSinceMixin(Schema):
    updated_since = fields.DateTime(metadata={"description": "Only records updated at or after this time (UTC unless offset given)."})


class PersonQuerySchema(PageQuerySchema, UpdatedSinceMixin):
    employee_no = fields.String()
    org_unit = fields.String(metadata={"description": "Org unit code (exact)."})
    party_org = fields.String(metadata={"description": "Party org code of an active membership (exact)."})
    political_status = fields.String(metadata={"description": "National code, e.g. 01 (member), 02 (probationary)."})
    is_member = fields.Boolean(metadata={"description": "Holds an active membership."})


class OrgUnitQuerySchema(PageQuerySchema, UpdatedSinceMixin):
    parent_code = fields.String()
    kind = fields.String(validate=validate.OneOf(("company", "department", "team")))
    status = fields.String(validate=validate.OneOf(("active", "dissolved")))
    active = fields.Boolean()


class PartyOrgQuerySchema(PageQuerySchema, UpdatedSinceMixin):
    parent_code = fields.String()
    kind = fields.String(validate=validate.OneOf(("committee", "general_branch", "branch", "group")))
    active = fields.Boolean()


class MembershipQuerySchema(PageQuerySchema, UpdatedSinceMixin):
    person_id = fields.Integer(validate=ID_RANGE)
    party_org = fields.String()
    category = fields.String(validate=validate.OneOf(("full", "probationary")))
    status = fields.String(validate=validate.OneOf(("active", "transferred_out", "deceased", "removed")))
    active = fields.Boolean()


class PerformanceQuerySchema(PageQuerySchema, UpdatedSinceMixin):
    employee_no = fields.String()
    person_id = fields.Integer(validate=ID_RANGE)
    period = fields.String()


class MismatchQuerySchema(PageQuerySchema, UpdatedSinceMixin):
    rule = fields.String()
    state = fields.String(load_default="all", validate=validate.OneOf(MISMATCH_STATES),
                          metadata={"description": "`closed`: the data agrees now; `all` (default): every state."})
    party_org = fields.String(metadata={"description": "Registered or expected party org code."})
    subject_type = fields.String(validate=validate.OneOf(("person", "org_unit", "party_org")))


class RunQuerySchema(PageQuerySchema):
    status = fields.String(validate=validate.OneOf(("running", "succeeded", "failed", "held", "dry_run")))


class ChangeQuerySchema(Schema):
    after = fields.Integer(load_default=0, validate=validate.Range(0, MAX_ID),
                           metadata={"description": "Return changes with seq greater than this (the previous `last_seq`)."})
    limit = fields.Integer(load_default=DEFAULT_LIMIT, validate=validate.Range(1, MAX_LIMIT))
    entity = fields.String(validate=validate.OneOf(FEED_ENTITIES))


# --- records -----------------------------------------------------------------------------------


class TimestampedSchema(Schema):
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class PersonSchema(TimestampedSchema):
    """A person as every reader sees it: ID number and mobile masked."""

    id = fields.Integer(required=True)
    employee_no = fields.String(allow_none=True)
    name = fields.String()
    gender = fields.String(allow_none=True)
    birth_date = fields.Date(allow_none=True)
    ethnicity = fields.String(allow_none=True)
    education = fields.String(allow_none=True)
    id_number = fields.String(attribute="id_number_masked", allow_none=True,
                              metadata={"description": "Masked unless the token holds read:sensitive."})
    mobile = fields.String(attribute="mobile_masked", allow_none=True,
                           metadata={"description": "Masked unless the token holds read:sensitive."})
    org_unit_code = fields.String(allow_none=True)
    position = fields.String(allow_none=True)
    employment_status = fields.String(allow_none=True)
    hired_on = fields.Date(allow_none=True)
    political_status = fields.String(allow_none=True)
    party_joined_on = fields.Date(allow_none=True)
    staff_active = fields.Boolean()
    is_member = fields.Boolean(metadata={"description": "Holds an active membership."})
    party_org_codes = fields.List(fields.String(), metadata={"description": "Party orgs of the active memberships."})


class PersonSensitiveSchema(PersonSchema):
    """The view for tokens holding read:sensitive: ID number and mobile decrypted."""

    id_number = fields.Function(lambda p: _cipher().decrypt(p.id_number_enc), allow_none=True)
    mobile = fields.Function(lambda p: _cipher().decrypt(p.mobile_enc), allow_none=True)


class OrgUnitSchema(TimestampedSchema):
    id = fields.Integer(required=True)
    code = fields.String()
    name = fields.String()
    parent_code = fields.String(allow_none=True)
    kind = fields.String(allow_none=True)
    status = fields.String()
    manager_employee_no = fields.String(allow_none=True)
    active = fields.Boolean()


class OrgUnitTreeSchema(OrgUnitSchema):
    children = fields.List(fields.Nested(lambda: OrgUnitTreeSchema()))


class CoverSchema(Schema):
    org_unit_code = fields.String()
    include_descendants = fields.Boolean()
    origin = fields.String()


class PartyOrgSchema(TimestampedSchema):
    id = fields.Integer(required=True)
    code = fields.String()
    name = fields.String()
    kind = fields.String()
    parent_code = fields.String(allow_none=True)
    secretary = fields.String(allow_none=True)
    elected_on = fields.Date(allow_none=True)
    term_years = fields.Integer(allow_none=True)
    has_committee = fields.Boolean(allow_none=True)
    retirees = fields.Boolean()
    active = fields.Boolean()
    covers = fields.List(fields.Nested(CoverSchema), metadata={"description": "Org units this party org covers."})
    member_count = fields.Integer(metadata={"description": "Active memberships registered directly here."})


class PartyOrgTreeSchema(PartyOrgSchema):
    subtree_member_count = fields.Integer(metadata={"description": "Active memberships here and below."})
    children = fields.List(fields.Nested(lambda: PartyOrgTreeSchema()))


class MembershipSchema(TimestampedSchema):
    id = fields.Integer(required=True)
    person_id = fields.Integer()
    party_org_code = fields.String(allow_none=True)
    category = fields.String(allow_none=True)
    joined_on = fields.Date(allow_none=True)
    full_member_on = fields.Date(allow_none=True)
    status = fields.String()
    active = fields.Boolean()


class PerformanceSchema(TimestampedSchema):
    id = fields.Integer(required=True)
    employee_no = fields.String()
    period = fields.String()
    person_id = fields.Integer(allow_none=True)
    grade = fields.String(allow_none=True)
    score = fields.Float(allow_none=True)
    score_max = fields.Float(allow_none=True)
    active = fields.Boolean()


class MismatchSubjectSchema(Schema):
    type = fields.String()
    id = fields.Integer(allow_none=True)
    label = fields.String(allow_none=True)
    employee_no = fields.String(allow_none=True)
    id_number = fields.String(allow_none=True, metadata={"description": "Masked unless read:sensitive."})
    code = fields.String(allow_none=True)
    birth_date = fields.String(allow_none=True)
    source = fields.String(allow_none=True)


class MismatchSchema(Schema):
    """A mismatch in the shape of `dualline mismatches --json`, plus its resolution."""

    id = fields.Integer(required=True)
    rule = fields.String()
    state = fields.String()
    severity = fields.String()
    subject = fields.Nested(MismatchSubjectSchema)
    details = fields.Dict()
    party_org_code = fields.String(allow_none=True)
    other_party_org_code = fields.String(allow_none=True)
    org_unit_code = fields.String(allow_none=True)
    opened_at = UtcDateTime(allow_none=True)
    updated_at = UtcDateTime(allow_none=True)
    closed_at = UtcDateTime(allow_none=True)
    resolution = fields.String(allow_none=True)
    resolution_note = fields.String(allow_none=True)
    resolved_by = fields.String(allow_none=True)
    resolved_at = UtcDateTime(allow_none=True)
    expires_at = UtcDateTime(allow_none=True)


class ResolutionSchema(Schema):
    state = fields.String(required=True, validate=validate.OneOf(("resolved", "ignored")))
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    expires_at = UtcDateTime(allow_none=True, metadata={
        "description": "For `ignored`: when the accepted exception lapses and the mismatch reopens."})
    # What to do besides deciding the state (sync.resolutions); `exception` goes with state
    # `ignored`, every other action with `resolved`. Without it: `resolve` or `exception`.
    action = fields.String(validate=validate.OneOf(RESOLUTION_ACTIONS), metadata={
        "description": "transfer | create_membership | transfer_out | move_to_retirees | mark_deceased | "
                       "adopt_hr | link_person (each fits certain rules) | exception | resolve"})
    target_party_org = fields.String(allow_none=True, validate=validate.Length(max=64), metadata={
        "description": "transfer / create_membership / move_to_retirees: the branch (default: the expected one)."})
    person_id = fields.Integer(allow_none=True, validate=ID_RANGE, metadata={"description": "link_person: the person."})
    to_org_name = fields.String(allow_none=True, validate=validate.Length(max=200), metadata={
        "description": "transfer_out: the party organization the member goes to."})
    letter_no = fields.String(allow_none=True, validate=validate.Length(max=64))
    dues_paid_until = fields.Date(allow_none=True)


class RunSchema(Schema):
    id = fields.Integer(required=True)
    status = fields.String()
    sources = fields.List(fields.String())
    full = fields.Boolean()
    dry_run = fields.Boolean()
    approved = fields.Boolean()
    actor = fields.String()
    started_at = UtcDateTime(allow_none=True)
    finished_at = UtcDateTime(allow_none=True)
    counts = fields.Dict()
    mismatches = fields.Dict()
    error = fields.String(allow_none=True)


class ChangeSchema(Schema):
    seq = fields.Integer(required=True)
    entity = fields.String(metadata={"description": "person | org_unit | party_org | membership | mismatch | performance | payroll"})
    entity_id = fields.Integer()
    op = fields.String(metadata={"description": "create | update | deactivate"})
    changed = fields.Dict(metadata={"description": "field → [before, after]; sensitive values always masked."})
    run_id = fields.Integer(allow_none=True)
    at = UtcDateTime()


class ChangeFeedSchema(Schema):
    items = fields.List(fields.Nested(ChangeSchema), required=True)
    last_seq = fields.Integer(required=True, metadata={"description": "Pass as `after` to resume exactly."})


def page_schema(item: type[Schema], name: str) -> type[Schema]:
    """`{"items": [...], "next_cursor": …}` around `item` (null cursor: the last page)."""
    return Schema.from_dict(
        {"items": fields.List(fields.Nested(item), required=True),
         "next_cursor": fields.String(allow_none=True, required=True)},
        name=name,
    )


PersonPageSchema = page_schema(PersonSchema, "PersonPage")
OrgUnitPageSchema = page_schema(OrgUnitSchema, "OrgUnitPage")
PartyOrgPageSchema = page_schema(PartyOrgSchema, "PartyOrgPage")
MembershipPageSchema = page_schema(MembershipSchema, "MembershipPage")
PerformancePageSchema = page_schema(PerformanceSchema, "PerformancePage")
MismatchPageSchema = page_schema(MismatchSchema, "MismatchPage")
RunPageSchema = page_schema(RunSchema, "RunPage")
