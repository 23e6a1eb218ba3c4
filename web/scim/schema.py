"""What the SCIM service publishes about itself: schemas, resource types, ServiceProviderConfig.

Attributes are `mutability: readOnly` except those SCIM may write (web.scim.writes: the service
is a source named `scim`; a field a real source owns stays read-only in practice, refused with
400 mutability). Only the attributes actually served are defined, so a client that builds its
model from `/Schemas` (as scim2-tester does) expects exactly what it gets. The party org
extension is required (every Group has a kind); the User extensions are not (a User lists one
when it holds something or a client attached it).
"""
from __future__ import annotations

from typing import Any

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PARTY = "urn:dualline:params:scim:schemas:extension:party:1.0:User"
PARTY_ORG = "urn:dualline:params:scim:schemas:extension:partyOrg:1.0:Group"
LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
SEARCH_REQUEST = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
SPC = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
RESOURCE_TYPE = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

PARTY_ORG_KINDS = ["committee", "general_branch", "branch", "group"]

MAX_RESULTS = 1000  # a page never holds more (count is capped; itemsPerPage says what was given)
DEFAULT_COUNT = 100


def attr(name: str, type_: str = "string", description: str = "", *, multi: bool = False,
         required: bool = False, case_exact: bool = False, returned: str = "default",
         uniqueness: str = "none", sub: list[dict[str, Any]] | None = None,
         canonical: list[str] | None = None, reference_types: list[str] | None = None,
         writable: bool = False) -> dict[str, Any]:
    """One attribute definition (RFC 7643 §7): readOnly unless `writable` (see web.scim.writes)."""
    out: dict[str, Any] = {
        "name": name, "type": type_, "multiValued": multi, "description": description,
        "required": required, "mutability": "readWrite" if writable else "readOnly", "returned": returned,
        "uniqueness": uniqueness,
    }
    if type_ in ("string", "reference", "binary"):
        out["caseExact"] = case_exact
    if canonical:
        out["canonicalValues"] = canonical
    if reference_types:
        out["referenceTypes"] = reference_types
    if sub is not None:
        out["subAttributes"] = sub
    return out


def _ref(name: str, description: str, kinds: list[str], writable: bool = False) -> dict[str, Any]:
    return attr(name, "reference", description, reference_types=kinds, writable=writable)


USER_ATTRIBUTES = [
    attr("userName", description="The employee number (the person's surrogate id when there is none). "
         "Writable unless a source owns it.", required=True, uniqueness="server", writable=True),
    attr("name", "complex", "The person's name. `formatted` is authoritative; family and given names "
         "are derived for Chinese names (the surname first, one character or a known compound surname).",
         writable=True, sub=[
             attr("formatted", description="The full name as the HR system records it (writable unless a "
                  "source owns it).", writable=True),
             attr("familyName", description="Derived surname; omitted for names written with spaces."),
             attr("givenName", description="Derived given name; omitted for names written with spaces."),
         ]),
    attr("displayName", description="The full name."),
    attr("active", "boolean", "Listed as staff by a source and in service (active, probation, temporary)."),
    attr("phoneNumbers", "complex", "The mobile number: masked unless the token holds read:sensitive.",
         multi=True, sub=[
             attr("value", description="The number (masked unless read:sensitive)."),
             attr("type", description="Always `mobile`.", canonical=["mobile"]),
             attr("primary", "boolean", "Always true: the one number held."),
         ]),
    attr("groups", "complex", "Party orgs of the person's active memberships.", multi=True, sub=[
        attr("value", description="The Group id.", case_exact=True),
        _ref("$ref", "The Group's URI.", ["Group"]),
        attr("display", description="The party org's name."),
        attr("type", description="Always `direct`.", canonical=["direct"]),
    ]),
]

ENTERPRISE_ATTRIBUTES = [
    attr("employeeNumber", description="The employee number a real source (HR, the party roster) assigned; "
         "absent for a person only SCIM created, whose number is their userName until HR lists them."),
    attr("organization", description="The company (nearest ancestor org unit of kind company)."),
    attr("department", description="The name of the person's org unit."),
    attr("manager", "complex", "The org unit's manager, when known and a person here.", sub=[
        attr("value", description="The manager's User id.", case_exact=True),
        _ref("$ref", "The manager's URI.", ["User"]),
        attr("displayName", description="The manager's name."),
    ]),
]

PARTY_ATTRIBUTES = [
    attr("branch", "complex", "The party org of the active membership (normally a branch).", sub=[
        attr("value", description="The Group id of the party org.", case_exact=True),
        attr("code", description="The party org code (absent for one created through SCIM).", case_exact=True),
        attr("display", description="The party org's name."),
        _ref("$ref", "The Group's URI.", ["Group"]),
    ]),
    attr("category", description="Membership category.", canonical=["full", "probationary"]),
    attr("joinedOn", "dateTime", "Date of joining the party (midnight UTC; the date is what counts)."),
    attr("fullMemberOn", "dateTime", "Date of becoming a full member (midnight UTC)."),
    attr("membershipStatus", description="Status of the membership.",
         canonical=["active", "transferred_out", "deceased", "removed"]),
    attr("politicalStatus", description="HR political status, national code (01 member, 02 probationary, …)."),
]

GROUP_ATTRIBUTES = [
    attr("displayName", description="The party org's name.", required=True, writable=True),
    attr("members", "complex", "Persons with an active membership registered here. Adding a User registers "
         "their membership here; removing one ends it (status transferred_out).", multi=True, writable=True, sub=[
        attr("value", description="The User id.", case_exact=True, writable=True),
        _ref("$ref", "The User's URI.", ["User"], writable=True),
        attr("display", description="The person's name."),
        attr("type", description="Always `User`.", canonical=["User"], writable=True),
    ]),
]

# A party org created through SCIM has no code, retirees flag or listing status from a source:
# those attributes are absent for it (its records key is a generated placeholder, not a code).
PARTY_ORG_ATTRIBUTES = [
    attr("code", description="The party org code its source assigned; absent for one created through SCIM.",
         case_exact=True, uniqueness="server"),
    attr("kind", description="Kind of party org. Writable unless a source owns it; `branch` when a new Group "
         "leaves it out.", required=True, writable=True, canonical=PARTY_ORG_KINDS),
    attr("parent", "complex", "The parent party org: a Group the token sees, neither this one nor one below it. "
         "Writable unless a source owns it; removing it makes the party org top-level.", writable=True, sub=[
        attr("value", description="The parent's Group id.", case_exact=True, writable=True),
        _ref("$ref", "The parent Group's URI.", ["Group"], writable=True),
        attr("code", description="The parent's code, given instead of value and $ref when the token cannot see "
             "the parent.", case_exact=True),
    ]),
    attr("secretary", description="The secretary's name. Writable unless a source owns it.", writable=True),
    attr("retirees", "boolean", "Holds retired members (as its source says; absent for one created through SCIM)."),
    attr("active", "boolean", "Still listed by its source (absent for one created through SCIM, which is active "
         "until deleted)."),
]

SCHEMAS: dict[str, tuple[str, str, list[dict[str, Any]]]] = {
    CORE_USER: ("User", "A person of the unified records.", USER_ATTRIBUTES),
    ENTERPRISE: ("EnterpriseUser", "Enterprise User extension (RFC 7643 §4.3).", ENTERPRISE_ATTRIBUTES),
    PARTY: ("PartyMember", "dualline party extension: the person's party membership.", PARTY_ATTRIBUTES),
    CORE_GROUP: ("Group", "A party org (committee, general branch, branch, group).", GROUP_ATTRIBUTES),
    PARTY_ORG: ("PartyOrg", "dualline party org extension.", PARTY_ORG_ATTRIBUTES),
}

RESOURCE_TYPES: dict[str, dict[str, Any]] = {
    "User": {"name": "User", "endpoint": "/Users", "description": "Persons (staff and party members)",
             "schema": CORE_USER, "schemaExtensions": [{"schema": ENTERPRISE, "required": False},
                                                       {"schema": PARTY, "required": False}]},
    "Group": {"name": "Group", "endpoint": "/Groups", "description": "Party orgs",
              "schema": CORE_GROUP, "schemaExtensions": [{"schema": PARTY_ORG, "required": True}]},
}


def schema_resource(urn: str, base: str) -> dict[str, Any]:
    name, description, attributes = SCHEMAS[urn]
    return {"schemas": [SCHEMA], "id": urn, "name": name, "description": description,
            "attributes": attributes,
            "meta": {"resourceType": "Schema", "location": f"{base}/Schemas/{urn}"}}


def resource_type_resource(name: str, base: str) -> dict[str, Any]:
    return {"schemas": [RESOURCE_TYPE], "id": name, **RESOURCE_TYPES[name],
            "meta": {"resourceType": "ResourceType", "location": f"{base}/ResourceTypes/{name}"}}


def service_provider_config(base: str) -> dict[str, Any]:
    """What the service supports, truthfully: filter, sort, ETags (If-Match on writes too), PATCH;
    POST/PUT/DELETE too (no flag in SCIM: the readWrite attributes in /Schemas say what can be
    written). Bulk and changePassword are not supported."""
    return {
        "schemas": [SPC],
        "documentationUri": "https://github.com/dualline/dualline#scim",
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": False},
        "sort": {"supported": True},
        "etag": {"supported": True},
        "authenticationSchemes": [{
            "type": "oauthbearertoken", "name": "Bearer token",
            "description": "Authorization: Bearer <token> from `dualline token create NAME --scope read` "
                           "(writes: --scope write:scim).",
            "specUri": "https://www.rfc-editor.org/rfc/rfc6750", "primary": True,
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": f"{base}/ServiceProviderConfig"},
    }
