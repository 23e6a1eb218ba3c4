"""`dualline scheduler`: each source's `schedule:` cron, run in-process by APScheduler 3.x.

The single-machine default (Celery workers are for scaling out). What it guarantees:

* one job per scheduled source, `max_instances=1`, so this scheduler never starts a source
  again while its previous run is going on;
* `coalesce=True` with a `misfire_grace_time`: fire times missed while the scheduler was busy or
  the machine slept collapse into ONE run; at start-up, a fire time missed while the scheduler
  was down (the source's last run is older than the cron's previous fire time) gives one
  catch-up run now, however many were missed;
* each run is a child process (`dualline sync SOURCE`) killed when it exceeds
  `scheduler.run_timeout_seconds`: its one transaction never commits and its run lock, whose
  holder is then dead, is free for the next run; a child also dies with the scheduler, even one
  killed with SIGKILL (sync.lifetime), and the next scheduler's run does it again;
* two schedulers started by mistake never run one source twice at once: the child takes the
  source's run lock in the database (sync.locks) and the loser exits 1, which is logged;
* a heartbeat row `scheduler:<host>` in `run_locks`, renewed every third of the lock TTL, which
  `/healthz` and `/metrics` report.

Cron: the usual five fields (`0 2 * * *`), or six with seconds first (`*/10 * * * * *`).
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import Engine, select

from records.models import SyncRun
from sync.config import Config, ConfigError
from sync.lifetime import child_environment
from sync.locks import HOST, beat, new_holder_id

log = logging.getLogger("dualline.scheduler")

EXIT_LOCKED = 1  # `dualline sync` exits 1 when another holder has the source's lock


def parse_cron(expr: str, where: str = "schedule") -> CronTrigger:
    """Five fields (minute hour day month weekday) or six with seconds first; ConfigError if bad."""
    fields = expr.split()
    try:
        if len(fields) == 5:
            return CronTrigger.from_crontab(expr)
        if len(fields) == 6:
            second, minute, hour, day, month, dow = fields
            return CronTrigger(second=second, minute=minute, hour=hour, day=day, month=month, day_of_week=dow)
    except ValueError as exc:
        raise ConfigError(f"{where}: not a valid cron expression {expr!r}: {exc}") from None
    raise ConfigError(f"{where}: a cron expression has 5 fields (or 6 with seconds first), got {expr!r}")


def scheduled_sources(config: Config) -> dict[str, CronTrigger]:
    """The sources that have a `schedule:`, with their parsed triggers."""
    out = {}
    for name, source in config.sources.items():
        expr = source.block.get("schedule")
        if expr:
            out[name] = parse_cron(str(expr), f"sources.{name}.schedule")
    return out


def add_source_job(scheduler: BaseScheduler, name: str, trigger: BaseTrigger, func: Callable[..., Any],
                   *, misfire_grace: int, next_run_time: dt.datetime | None = None) -> None:
    """One job per source with the options that make missed fires coalesce and runs not overlap."""
    options: dict[str, Any] = {}
    if next_run_time is not None:  # a catch-up run now, then the cron as usual
        options["next_run_time"] = next_run_time
    scheduler.add_job(func, trigger, args=[name], id=f"sync:{name}", name=f"sync {name}",
                      coalesce=True, misfire_grace_time=misfire_grace, max_instances=1,
                      replace_existing=True, **options)


def missed_fire(engine: Engine, name: str, trigger: BaseTrigger, now: dt.datetime) -> bool:
    """Did the cron fire (within the grace) while no scheduler ran it? From the last run's start."""
    last: dt.datetime | None = None
    with engine.connect() as conn:
        for sources, started in conn.execute(select(SyncRun.sources, SyncRun.started_at)
                                             .order_by(SyncRun.id.desc()).limit(500)):
            if name in (sources or []):
                last = started
                break
    if last is None:
        return False  # never run: wait for the first fire rather than surprise anyone at start-up
    tz = now.tzinfo or dt.timezone.utc
    last_aware = last.replace(tzinfo=dt.timezone.utc).astimezone(tz)
    following = trigger.get_next_fire_time(None, last_aware)
    return following is not None and following <= now


class ChildRunner:
    """Runs `dualline sync SOURCE` in a child process and kills it on timeout."""

    def __init__(self, config_path: str | None, timeout: float, env: dict[str, str] | None = None) -> None:
        self.config_path = config_path
        self.timeout = timeout
        self.env = env
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def command(self, source: str) -> list[str]:
        return [sys.executable, "-c", "from web.cli import main; main()", "sync", source]

    def __call__(self, source: str) -> int:
        # The child dies with this scheduler, even a scheduler killed outright (sync.lifetime).
        env = child_environment(dict(self.env if self.env is not None else os.environ))
        if self.config_path:
            env["DUALLINE_CONFIG"] = str(self.config_path)
        log.info("sync %s: starting", source)
        proc = subprocess.Popen(self.command(source), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        with self._lock:
            self.children[source] = proc
        try:
            out, _ = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            # SIGKILL, not SIGTERM: nothing it could still do would be committed anyway.
            proc.kill()
            proc.communicate()
            log.error("sync %s: killed after the %ss run timeout; nothing of it was committed", source, self.timeout)
            return -signal.SIGKILL
        finally:
            with self._lock:
                self.children.pop(source, None)
        text = out.decode("utf-8", "replace").strip()
        if proc.returncode == 0:
            log.info("sync %s: done\n%s", source, text)
        elif proc.returncode == EXIT_LOCKED and "is locked by" in text:
            log.warning("sync %s: skipped, %s", source, text.splitlines()[-1])
        else:
            log.error("sync %s: exit %s\n%s", source, proc.returncode, text)
        return proc.returncode

    def kill_all(self) -> None:
        with self._lock:
            for proc in self.children.values():
                proc.kill()


def build_scheduler(config: Config, engine: Engine, runner: Callable[[str], Any], *,
                    scheduler: BaseScheduler | None = None, holder: str | None = None) -> BaseScheduler:
    """A scheduler with one job per scheduled source and the heartbeat job (not started)."""
    triggers = scheduled_sources(config)
    if not triggers:
        raise ConfigError("no source has a `schedule:` (a cron such as \"0 2 * * *\"); nothing to schedule")
    settings = config.scheduler
    ttl = float(settings["lock_ttl_seconds"])
    # Threads only wait for children; one per source plus the heartbeat so it never starves.
    scheduler = scheduler or BlockingScheduler(executors={"default": {"type": "threadpool",
                                                                      "max_workers": len(triggers) + 2}})
    now = dt.datetime.now(dt.timezone.utc).astimezone()
    for name, trigger in triggers.items():
        catch_up = now if missed_fire(engine, name, trigger, now) else None
        if catch_up:
            log.info("sync %s: missed fire time(s) while no scheduler ran; one catch-up run now", name)
        add_source_job(scheduler, name, trigger, runner, misfire_grace=int(settings["misfire_grace_seconds"]),
                       next_run_time=catch_up)
    holder = holder or new_holder_id()
    heartbeat_name = f"scheduler:{HOST}"

    def heartbeat() -> None:
        try:
            beat(engine, heartbeat_name, holder, ttl)
        except Exception as exc:  # noqa: BLE001 - the database may be down for a moment
            log.warning("scheduler heartbeat failed: %s", exc)

    heartbeat()
    scheduler.add_job(heartbeat, "interval", seconds=max(ttl / 3.0, 0.5), id="heartbeat",
                      coalesce=True, max_instances=1, misfire_grace_time=None)
    return scheduler


def run_scheduler(config: Config, engine: Engine) -> None:
    """`dualline scheduler`: block until SIGTERM / Ctrl+C; running children are killed then."""
    runner = ChildRunner(str(config.path) if config.path else None, float(config.scheduler["run_timeout_seconds"]))
    scheduler = build_scheduler(config, engine, runner)
    assert isinstance(scheduler, BlockingScheduler)

    def stop(signum: int, _frame: Any) -> None:
        log.info("scheduler: stopping (signal %s)", signum)
        runner.kill_all()
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    for job in scheduler.get_jobs():
        if job.id != "heartbeat":
            log.info("%s: %s", job.name, job.trigger)
    try:
        scheduler.start()
    except KeyboardInterrupt:
        runner.kill_all()
