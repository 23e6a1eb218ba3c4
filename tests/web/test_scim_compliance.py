"""The SCIM service against an independent checker: scim2-tester (with scim2-client/scim2-models),
over real HTTP (werkzeug's server on a free local port, in a thread) with a `write:scim` token.

Every check scim2-tester has runs: discovery (ServiceProviderConfig, ResourceTypes, Schemas, 405s
on discovery endpoints), the 404 for unknown URLs, and the full CRUD and PATCH (add, remove,
replace on every readWrite attribute and on whole extensions) cycle on Users and Groups. Every
check must pass; nothing about PATCH is skipped, as ServiceProviderConfig says it is supported.
The read side is then checked with scim2-client itself: it builds its models from our /Schemas
and /ResourceTypes and validates every response payload (lists, single resources, /.search)
against them.

A small enterprise (no planted noise): the checker lists `/Users` without `count` and expects
the User it just created on that first page of 100.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("scim2_tester")
httpx2 = pytest.importorskip("httpx2")

from scim2_client.engines.httpx2 import SyncSCIMClient  # noqa: E402
from scim2_models import ListResponse, SearchRequest  # noqa: E402
from scim2_tester import Status, check_server  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from records.db import session_factory  # noqa: E402
from tests.sync.conftest import Site, make_site  # noqa: E402
from web import create_app  # noqa: E402
from web.scim import schema as sc  # noqa: E402
from web.tokens import create_token  # noqa: E402

PASSING = {Status.SUCCESS, Status.COMPLIANT, Status.ACCEPTABLE, Status.SKIPPED}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    folder: Path = tmp_path_factory.mktemp("scim-compliance")
    site: Site = make_site(folder / "src", f"sqlite:///{folder / 'c.db'}", staff=40, seed=31, plant=False)
    assert site.sync().status == "succeeded"
    app = create_app(test_config={"DUALLINE_CONFIG_OBJECT": site.runtime.config, "API_RATE_LIMIT_PER_SECOND": 0})
    app.extensions["dualline"].set_runtime(site.runtime)
    with session_factory(site.runtime.engine)() as s, s.begin():
        secret = create_token(s, "scim-checker", ["write:scim"]).secret
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/scim/v2/", secret
    finally:
        server.shutdown()
        thread.join(timeout=5)


def _client(served: tuple[str, str]) -> SyncSCIMClient:
    base, secret = served
    return SyncSCIMClient(httpx2.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}, timeout=30))


def _report(results: list[Any]) -> str:
    return "\n".join(f"{r.status.name:<9} {r.resource_type or '-':<6} {r.title}: {(r.reason or '')[:160]}"
                     for r in results)


def test_scim2_tester_passes(served) -> None:
    results = check_server(_client(served))
    assert len(results) >= 40, _report(results)  # discovery, CRUD and PATCH really ran
    failing = [r for r in results if r.status not in PASSING]
    assert not failing, _report(failing)
    # Nothing is skipped for PATCH: ServiceProviderConfig says it is supported, so it all ran.
    skipped = [r for r in results if r.status is Status.SKIPPED]
    assert not [r for r in skipped if "PATCH" in (r.reason or "")], _report(skipped)
    passed = {r.title for r in results if r.status in PASSING and r.status is not Status.SKIPPED}
    assert {"object_creation", "object_query", "object_query_without_id", "object_replacement",
            "object_deletion", "check_add_attribute", "check_remove_attribute",
            "check_replace_attribute"} <= passed, sorted(passed)
    # The PATCH checks on a whole extension ran too (a bare URN path), on every extension.
    whole = {(r.reason or "").rsplit("'", 2)[-2] for r in results
             if r.title.startswith("check_") and r.status is Status.SUCCESS and (r.reason or "").endswith("'")}
    assert {sc.ENTERPRISE, sc.PARTY, sc.PARTY_ORG} <= whole, sorted(whole)


def test_read_payloads_validate_with_scim2_client(served) -> None:
    client = _client(served)
    client.discover()
    models = {m.__name__: m for m in client.provider.models}
    user_model, group_model = models["User"], models["Group"]
    users = client.query(user_model, query_parameters={"count": 20, "sortBy": "userName"})
    assert isinstance(users, ListResponse) and users.total_results and len(users.resources) == 20
    one = client.query(user_model, users.resources[0].id)
    assert one.id == users.resources[0].id and one.meta.version
    groups = client.query(group_model, query_parameters={"filter": 'urn:dualline:params:scim:schemas:'
                                                                   'extension:partyOrg:1.0:Group:kind eq "branch"'})
    assert groups.total_results and groups.resources
    member_group = next(g for g in groups.resources if g.members)
    assert client.query(group_model, member_group.id).display_name == member_group.display_name
    found = client.search(SearchRequest(filter="active eq true", count=5), url="/Users/.search")
    assert found.total_results and len(found.resources) == 5
