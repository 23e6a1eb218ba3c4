"""`GET /metrics`: Prometheus text format, read from the database at scrape time.

A custom collector rather than in-process counters: syncs run in the CLI, the scheduler's
children and workers, not in the web process, and counters kept in memory would be lost on every
restart. Everything here is derived from `sync_runs`, `mismatches` and `run_locks`, so any web
process, after any restart, reports the same numbers.

Families:
  dualline_up                                   1 when the database answered this scrape
  dualline_runs_total{status}                   runs by status
  dualline_last_run_records{kind,outcome}       records per kind and outcome, from the newest
                                                finished run that pulled that kind
  dualline_last_run_duration_seconds{source}    duration of the newest finished run of each source
  dualline_last_run_success{source}             1 if that run succeeded
  dualline_open_mismatches{rule}                open mismatches by rule id
  dualline_source_errors_total{source,error_class}  source errors in failed runs' reports
  dualline_scheduler_heartbeat_age_seconds{name}    seconds since each scheduler's heartbeat
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Flask, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import Engine, func, select

from records.models import Mismatch, SyncRun, utcnow
from sync.locks import heartbeats

bp = Blueprint("metrics", __name__)

RECENT_RUNS = 500  # newest finished runs scanned for the per-kind and per-source "last run" families


class DatabaseCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("dualline_up", "1 when the database answered this scrape")
        try:
            families = list(self._families())
        except Exception:  # noqa: BLE001 - a scrape reports the database down, it never raises
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> Iterator[Metric]:
        with self.engine.connect() as conn:
            by_status = conn.execute(select(SyncRun.status, func.count()).group_by(SyncRun.status)).all()
            recent = conn.execute(
                select(SyncRun.sources, SyncRun.status, SyncRun.counts, SyncRun.started_at, SyncRun.finished_at)
                .where(SyncRun.finished_at.is_not(None), SyncRun.status != "running")
                .order_by(SyncRun.id.desc()).limit(RECENT_RUNS)
            ).all()
            open_by_rule = conn.execute(
                select(Mismatch.rule, func.count())
                .where(Mismatch.state == "open", Mismatch.closed_at.is_(None)).group_by(Mismatch.rule)
            ).all()
            failed_reports = conn.execute(select(SyncRun.report).where(SyncRun.status == "failed")).scalars().all()

        runs = CounterMetricFamily("dualline_runs", "Sync runs by status", labels=["status"])
        for status, n in sorted(by_status):
            runs.add_metric([status], n)
        yield runs

        records = GaugeMetricFamily("dualline_last_run_records",
                                    "Records per kind and outcome in the newest finished run that pulled the kind",
                                    labels=["kind", "outcome"])
        duration = GaugeMetricFamily("dualline_last_run_duration_seconds",
                                     "Duration of the newest finished run of each source", labels=["source"])
        success = GaugeMetricFamily("dualline_last_run_success",
                                    "1 if the newest finished run of the source succeeded", labels=["source"])
        seen_kinds: set[str] = set()
        seen_sources: set[str] = set()
        for sources, status, counts, started, finished in recent:  # newest first
            for kind, outcomes in (counts or {}).items():
                if kind in seen_kinds or not isinstance(outcomes, dict):
                    continue
                seen_kinds.add(kind)
                for outcome, n in sorted(outcomes.items()):
                    records.add_metric([kind, outcome], float(n))
            for source in sources or []:
                if source in seen_sources:
                    continue
                seen_sources.add(source)
                duration.add_metric([source], max((finished - started).total_seconds(), 0.0))
                success.add_metric([source], 1.0 if status == "succeeded" else 0.0)
        yield records
        yield duration
        yield success

        mismatches = GaugeMetricFamily("dualline_open_mismatches", "Open mismatches by rule", labels=["rule"])
        for rule, n in sorted(open_by_rule):
            mismatches.add_metric([rule], n)
        yield mismatches

        errors: Counter[tuple[str, str]] = Counter()
        for report in failed_reports:
            for err in (report or {}).get("errors", []) if isinstance(report, dict) else []:
                errors[(str(err.get("source") or ""), str(err.get("error_class") or "unknown"))] += 1
        source_errors = CounterMetricFamily("dualline_source_errors", "Errors of failed runs by source and class",
                                            labels=["source", "error_class"])
        for (source, error_class), n in sorted(errors.items()):
            source_errors.add_metric([source, error_class], n)
        yield source_errors

        beats = GaugeMetricFamily("dualline_scheduler_heartbeat_age_seconds",
                                  "Seconds since each scheduler's last heartbeat", labels=["name"])
        now = utcnow()
        for hb in heartbeats(self.engine, "scheduler:"):
            beats.add_metric([hb.name], max((now - hb.heartbeat_at).total_seconds(), 0.0))
        yield beats


def render(engine: Engine) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(engine))
    return generate_latest(registry)


@bp.get("/metrics")
def metrics() -> Response:
    runtime: Any = current_app.extensions["dualline"].runtime()
    return Response(render(runtime.engine), mimetype=None, content_type=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
