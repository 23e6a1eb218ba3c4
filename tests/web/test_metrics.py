"""`/metrics` (Prometheus text, read from the database at scrape time) and `/healthz` (database,
migrations, scheduler heartbeat)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete, func, select

from records.db import session_factory
from records.models import Mismatch, RunLock, SyncRun, utcnow
from sync.locks import beat
from tests.sync.conftest import Site, make_site
from web import create_app
from tests.conftest import app_for


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    folder: Path = tmp_path_factory.mktemp("metrics")
    site = make_site(folder / "src", f"sqlite:///{folder / 'm.db'}", staff=300, seed=31)
    assert site.sync().status == "succeeded"
    return site


@pytest.fixture
def client(site: Site):
    app = app_for(site.runtime)
    return app.test_client()


def _samples(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_metrics_after_a_sync(site: Site, client) -> None:
    engine = site.runtime.engine
    with session_factory(engine)() as s, s.begin():
        now = utcnow()
        s.add(SyncRun(sources=["hr"], status="failed", started_at=now, finished_at=now + dt.timedelta(seconds=3),
                      report={"errors": [{"source": "hr", "kind": "staff", "error_class": "auth", "message": "401"},
                                         {"source": "hr", "kind": "org_units", "error_class": "auth"}]}))
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    m = _samples(response.get_data(as_text=True))

    with session_factory(engine)() as s:
        ok_run = s.scalars(select(SyncRun).where(SyncRun.status == "succeeded")).one()
        open_by_rule = dict(s.execute(select(Mismatch.rule, func.count()).where(
            Mismatch.state == "open", Mismatch.closed_at.is_(None)).group_by(Mismatch.rule)).all())
    assert m["dualline_up"][()] == 1
    assert m["dualline_runs_total"] == {(("status", "failed"),): 1, (("status", "succeeded"),): 1}
    for kind, outcomes in ok_run.counts.items():
        for outcome, n in outcomes.items():
            assert m["dualline_last_run_records"][(("kind", kind), ("outcome", outcome))] == n
    assert m["dualline_last_run_records"][(("kind", "staff"), ("outcome", "created"))] > 0
    duration = (ok_run.finished_at - ok_run.started_at).total_seconds()
    sources = set(ok_run.sources)
    for source in sources - {"hr"}:
        assert m["dualline_last_run_duration_seconds"][(("source", source),)] == pytest.approx(duration)
        assert m["dualline_last_run_success"][(("source", source),)] == 1
    assert m["dualline_last_run_duration_seconds"][(("source", "hr"),)] == pytest.approx(3)
    assert m["dualline_last_run_success"][(("source", "hr"),)] == 0
    assert open_by_rule and m["dualline_open_mismatches"] == {(("rule", r),): n for r, n in open_by_rule.items()}
    assert m["dualline_source_errors_total"] == {(("error_class", "auth"), ("source", "hr")): 2}

    # Nothing is kept in memory: a second app (a restarted web process) reports the same.
    again = _samples(create_app(test_config={"DUALLINE_CONFIG_OBJECT": site.runtime.config, "TESTING": True})
                     .test_client().get("/metrics").get_data(as_text=True))
    assert again["dualline_runs_total"] == m["dualline_runs_total"]


def test_healthz_reports_the_scheduler_heartbeat(site: Site, client) -> None:
    engine = site.runtime.engine
    with engine.begin() as conn:
        conn.execute(delete(RunLock))
    body = client.get("/healthz")
    assert body.status_code == 200 and body.json["status"] == "ok"
    assert "schedulers" not in body.json  # no scheduler ever ran: not degraded for lacking one

    beat(engine, "scheduler:box", "box:1:a", ttl=30)
    body = client.get("/healthz")
    assert body.status_code == 200 and body.json["scheduler_ok"] is True
    assert body.json["schedulers"][0]["heartbeat_age_seconds"] < 5

    stale = utcnow() - dt.timedelta(minutes=10)
    with engine.begin() as conn:
        conn.execute(RunLock.__table__.update().values(heartbeat_at=stale, expires_at=stale + dt.timedelta(seconds=30)))
    body = client.get("/healthz")
    assert body.status_code == 503
    assert body.json["status"] == "degraded" and body.json["scheduler_ok"] is False
    assert body.json["schedulers"][0]["heartbeat_age_seconds"] >= 600
    m = _samples(client.get("/metrics").get_data(as_text=True))
    assert m["dualline_scheduler_heartbeat_age_seconds"][(("name", "scheduler:box"),)] >= 600
