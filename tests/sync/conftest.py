"""Fixtures for engine tests: a generated enterprise written as source files, and a runtime."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from benchmarks.enterprise import Enterprise, generate
from benchmarks.writers import write_config, write_demo_sources
from records.db import make_engine, upgrade
from sync.config import load_config
from sync.engine import SyncEngine
from sync.runtime import Runtime
from tests.conftest import TEST_SECRET


@dataclass
class Site:
    """An enterprise's source files on disk, its config, and a runtime over a database."""

    folder: Path
    enterprise: Enterprise
    runtime: Runtime

    def sync(self, *sources: str, **kwargs: Any):
        return SyncEngine(self.runtime).run(list(sources) or None, **kwargs)

    def rewrite(self) -> None:
        write_demo_sources(self.enterprise, self.folder)

    @property
    def expected(self) -> dict[str, Any]:
        return json.loads((self.folder / "expected.json").read_text(encoding="utf-8"))


def make_site(folder: Path, db_url: str, **generate_args: Any) -> Site:
    enterprise = generate(**generate_args)
    write_demo_sources(enterprise, folder)
    config_path = write_config(folder)
    config = load_config(config_path)
    config.database = db_url
    config.secret_key = TEST_SECRET
    runtime = Runtime(config)
    upgrade(runtime.engine)
    return Site(folder, enterprise, runtime)


@pytest.fixture
def site(tmp_path: Path, sqlite_url: str) -> Site:
    return make_site(tmp_path / "src", sqlite_url, staff=600, seed=11)


__all__ = ["Site", "make_site", "make_engine"]


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pids of the children sync.read_ahead forks while the test runs."""
    from sync import read_ahead

    pids: list[int] = []
    real_fork = os.fork

    def counting_fork() -> int:
        pid = real_fork()
        if pid:
            pids.append(pid)
        return pid

    monkeypatch.setattr(read_ahead.os, "fork", counting_fork)
    return pids
