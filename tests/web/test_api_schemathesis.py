"""Property-based tests of /api/v1 against its own generated OpenAPI document (schemathesis).

The schema is loaded from the Flask app itself (`/api/v1/openapi.json`, WSGI, no socket); every
operation is exercised with generated parameters — valid and invalid — under a token of each
scope (read; read+read:sensitive; write:resolutions only), and every response must pass
schemathesis's checks: no 5xx, the status code is documented, the content type is the documented
one, the body matches the documented schema, and the documented headers are there.

Bounded on purpose: a fixed number of derandomized examples per operation, so the suite stays
fast and a failure reproduces.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from records.db import session_factory  # noqa: E402
from sync.config import parse_config  # noqa: E402
from tests.sync.conftest import Site, make_site  # noqa: E402
from web import create_app  # noqa: E402
from web.tokens import create_token  # noqa: E402
from tests.conftest import app_for

SCOPES = {"read": ["read"], "sensitive": ["read", "read:sensitive"], "writer": ["write:resolutions"]}


@pytest.fixture(scope="module")
def api_app(tmp_path_factory: pytest.TempPathFactory):
    folder: Path = tmp_path_factory.mktemp("schemathesis")
    site: Site = make_site(folder / "src", f"sqlite:///{folder / 'st.db'}", staff=300, seed=41)
    assert site.sync().status == "succeeded"
    app = app_for(site.runtime, API_RATE_LIMIT_PER_SECOND=0)
    with session_factory(site.runtime.engine)() as s, s.begin():
        app.config["SCHEMATHESIS_TOKENS"] = {name: create_token(s, f"st-{name}", scopes).secret
                                             for name, scopes in SCOPES.items()}
    return app


def _document_app():
    """An app over an empty in-memory database: the OpenAPI document depends on the code only,
    so it can be loaded at collection time (the tests then call the synced app)."""
    config = parse_config({"database": "sqlite://"}, path=None)
    return create_app(test_config={"DUALLINE_CONFIG_OBJECT": config, "TESTING": True})


# Loaded at import rather than through schemathesis.pytest.from_fixture, whose lazy loader does
# not run on pytest 9 (it rewrites a node attribute pytest 9 no longer has).
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", _document_app())


@schema.parametrize()
@settings(max_examples=20, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_operation_keeps_its_documented_contract(case, api_app) -> None:
    for secret in api_app.config["SCHEMATHESIS_TOKENS"].values():
        # positive_data_acceptance is left out: a schema-valid request may rightly be refused —
        # an opaque cursor this API never handed out (400), an id that does not exist (404), a
        # token without the scope (403) — and all of those are documented responses.
        case.call_and_validate(app=api_app, headers={"Authorization": f"Bearer {secret}"},
                               excluded_checks=[schemathesis.checks.positive_data_acceptance])


def test_the_document_covers_every_api_route(api_app) -> None:
    """Nothing under /api/v1 escapes the property tests by being left out of the document."""
    documented = set(schema.raw_schema["paths"])
    routed = {re.sub(r"<(?:[^:>]+:)?([^:>]+)>", r"{\1}", rule.rule)  # <int(max=…):id> → {id}
              for rule in api_app.url_map.iter_rules()
              if rule.rule.startswith("/api/v1/") and rule.endpoint.startswith("api.")}
    assert routed and routed <= documented, routed - documented


def test_fast_person_items_equal_the_documented_schema(api_app) -> None:
    """Persons leave through web.api.resources._person_page (columns straight to orjson, for
    speed); they must be exactly what sc.PersonSchema / PersonSensitiveSchema would publish."""
    import orjson
    from sqlalchemy import select

    from records.models import Person
    from web.api import resources, schemas
    from web.api.security import Viewer

    with api_app.app_context():
        with resources.db_session() as s:
            persons = s.scalars(select(Person).order_by(Person.id).limit(50)).all()
            for sensitive in (False, True):
                viewer = Viewer(0, "t", frozenset({"read", "read:sensitive"} if sensitive else {"read"}), None)
                items, _ = resources._person_page(s, viewer, [], len(persons))
                fast = orjson.loads(resources._fast_json(items).get_data())
                schema = schemas.PersonSensitiveSchema if sensitive else schemas.PersonSchema
                slow = orjson.loads(orjson.dumps(schema(many=True).dump(resources._person_views(s, persons))))
                assert fast == slow
