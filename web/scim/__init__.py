"""SCIM 2.0 (RFC 7643/7644) at `/scim/v2`: persons as Users, party orgs as Groups.

Writes (web.scim.writes has the whole model): the unified records are owned by the sync, so SCIM
is one more source, named `scim`. It creates Users and Groups, changes what no real source owns
(a field HR or the roster set answers 400 `mutability`), registers memberships through Group
`members`, and DELETE deactivates (then 404), never deletes. Token scope `write:scim`.

* `/Schemas` marks the writable attributes readWrite (userName, name.formatted, externalId;
  Group displayName, externalId, members, and the party org's kind, parent and secretary),
  everything else readOnly; `/ResourceTypes` declares the party org extension required (every
  Group carries it) and the User extensions optional;
* `ServiceProviderConfig`: patch supported, bulk and changePassword not, filter (maxResults
  1000), sort and etag supported, authentication `oauthbearertoken`;
* `/Bulk` and `/.search` at the root answer 501 (RFC 7644 §3.12: not supported, as advertised).

Mapping decisions:

* Users: `id` = person id, `externalId` and `userName` = employee number (`userName` falls back to
  the id for party-only persons; a person created through SCIM keeps the client's externalId), `name.formatted`/`displayName` = the recorded name (authoritative;
  familyName/givenName derived: the first character, or a known compound surname, is the family
  name; names with spaces keep only `formatted`), `active` = listed as staff and in service
  (active, probation, temporary). `phoneNumbers` carries the mobile *masked* unless the token holds
  `read:sensitive` (as in /api/v1) and is never filterable. The ID number is not published at all.
  Enterprise extension: employeeNumber (only the number a real source assigned, not one a SCIM
  client chose as userName), department (org unit name), organization (the nearest company
  above), manager (the org unit's manager, when they are a person the token can see).
  Party extension `urn:dualline:params:scim:schemas:extension:party:1.0:User`: the active
  membership's branch (Group id, code, name), category, joinedOn, fullMemberOn, membershipStatus,
  plus the HR politicalStatus. A User lists an extension when it holds something or while a
  SCIM client has it attached (web.scim.writes).
* Groups: `id` = party org id, `externalId` = code (the client's own for Groups it created),
  `displayName` = name, `members` = persons with an active membership registered there;
  extension `urn:dualline:params:scim:schemas:extension:partyOrg:1.0:Group` (kind, parent as
  value/$ref — by code only when outside the token's view —, secretary; and from a source: code,
  retirees, active, absent for a party org created through SCIM).
* Tokens, scopes, subtree limits and masking are web.api.security's; a subtree token sees the
  Users and Groups the REST API shows it, and gets 404 for the others.
* Lists page by `startIndex`/`count` (offset: SCIM has no cursor), ordered by `sortBy` then id;
  `meta.version` is a weak ETag over the whole representation, sent as `ETag` on single reads
  (`If-None-Match` → 304).
"""
from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from web.scim.views import bp

    app.register_blueprint(bp)
