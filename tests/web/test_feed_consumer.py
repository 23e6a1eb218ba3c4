"""A consumer following `/api/v1/changes` from 0 while syncs run ends with exactly what the API lists.

The consumer is what another system would write: poll with `after=last_seq`, apply each item to
its own copy (create adds the record with the `changed` after-values, update overwrites them,
deactivate marks it inactive). Meanwhile a thread runs several syncs — the first full load, then
HR and party work (mutations) synced source by source — and another resolves mismatches through
the API, so two writers commit changes concurrently. At the end the consumer's copy must hold
exactly the persons, org units, party orgs, memberships and mismatches the API lists, with the
same values: nothing missed, nothing twice. (Runs of two sources side by side are left out: on
PostgreSQL and MariaDB they collide in the engine's expected-branch refresh, a separate matter.)
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from records.db import session_factory
from tests.sync.conftest import make_site
from web.tokens import create_token
from tests.conftest import app_for

LISTS = {"person": "/api/v1/persons", "org_unit": "/api/v1/org-units", "party_org": "/api/v1/party-orgs",
         "membership": "/api/v1/memberships", "mismatch": "/api/v1/mismatches"}
# Fields the consumer compares with the API (sensitive ones are masked in both, so left out).
FIELDS = {"person": ("employee_no", "name", "org_unit_code", "employment_status", "political_status"),
          "org_unit": ("code", "name", "parent_code", "kind", "status"),
          "party_org": ("code", "name", "kind", "parent_code"),
          "membership": ("party_org_code", "category", "status"),
          "mismatch": ("rule", "state")}


class Consumer:
    def __init__(self, client: Any, token: str) -> None:
        self.client, self.headers = client, {"Authorization": f"Bearer {token}"}
        self.after = 0
        self.seqs: list[int] = []
        self.records: dict[str, dict[int, dict[str, Any]]] = {e: {} for e in LISTS}
        self.created: dict[str, list[int]] = {e: [] for e in LISTS}

    def poll(self) -> int:
        response = self.client.get("/api/v1/changes", query_string={"after": self.after, "limit": 250},
                                   headers=self.headers)
        if response.status_code == 429:
            time.sleep(float(response.headers.get("Retry-After", "1")))
            return -1
        assert response.status_code == 200, response.get_data(as_text=True)
        page = response.get_json()
        for item in page["items"]:
            self.seqs.append(item["seq"])
            records = self.records.get(item["entity"])
            if records is None:
                continue
            if item["op"] == "create":
                self.created[item["entity"]].append(item["entity_id"])
            record = records.setdefault(item["entity_id"], {})
            for name, (_, after) in item["changed"].items():
                record[name] = after
        self.after = page["last_seq"]
        return len(page["items"])


def _api_list(client: Any, token: str, path: str) -> dict[int, dict[str, Any]]:
    out, cursor = {}, None
    while True:
        query = {"limit": 1000} | ({"cursor": cursor} if cursor else {})
        page = client.get(path, query_string=query, headers={"Authorization": f"Bearer {token}"}).get_json()
        out.update({item["id"]: item for item in page["items"]})
        cursor = page.get("next_cursor")
        if not cursor:
            return out


def test_consumer_following_the_feed_during_syncs_matches_the_api(tmp_path: Path, any_db_url: str) -> None:
    site = make_site(tmp_path / "src", any_db_url, staff=300, seed=41)
    app = app_for(site.runtime, API_RATE_LIMIT_PER_SECOND=0)
    with session_factory(site.runtime.engine)() as s, s.begin():
        token = create_token(s, "follower", ["read"]).secret
        resolver_token = create_token(s, "resolver", ["read", "write:resolutions"]).secret

    statuses: list[str] = []
    errors: list[BaseException] = []

    def run(*sources: str) -> None:
        try:
            statuses.append(site.sync(*sources).status)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def syncs() -> None:
        run()  # the first full load
        for round_ in range(2):
            site.enterprise.mutate(fraction=0.05, seed=100 + round_)
            site.rewrite()
            run("oa")
            run("roster")
            run("party-orgs", "performance")

    resolved: list[int] = []

    def resolver() -> None:
        client, headers = app.test_client(), {"Authorization": f"Bearer {resolver_token}"}
        try:
            while worker.is_alive() and len(resolved) < 30:
                page = client.get("/api/v1/mismatches", query_string={"state": "open", "limit": 3},
                                  headers=headers).get_json()
                for item in page["items"]:
                    answer = client.post(f"/api/v1/mismatches/{item['id']}/resolution", headers=headers,
                                         json={"state": "ignored", "reason": "accepted while syncing"})
                    if answer.status_code == 200:
                        resolved.append(item["id"])
                time.sleep(0.02)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    worker = threading.Thread(target=syncs)
    deciding = threading.Thread(target=resolver)
    consumer = Consumer(app.test_client(), token)
    worker.start()
    deciding.start()
    while worker.is_alive() or deciding.is_alive():
        if consumer.poll() <= 0:
            time.sleep(0.01)
    worker.join()
    deciding.join()
    while consumer.poll() != 0:
        pass

    assert not errors and statuses and all(s == "succeeded" for s in statuses), (statuses, errors)
    assert resolved  # the second writer did write
    assert consumer.seqs == sorted(consumer.seqs) and len(set(consumer.seqs)) == len(consumer.seqs)
    client = app.test_client()
    for entity, path in LISTS.items():
        listed = _api_list(client, token, path)
        mine = consumer.records[entity]
        assert sorted(consumer.created[entity]) == sorted(set(consumer.created[entity])), f"{entity} created twice"
        assert set(mine) == set(listed), f"{entity}: missed {set(listed) - set(mine)}, extra {set(mine) - set(listed)}"
        for entity_id, record in listed.items():
            for name in FIELDS[entity]:
                if name in mine[entity_id] or record.get(name) is not None:
                    assert mine[entity_id].get(name) == record.get(name), (entity, entity_id, name)
