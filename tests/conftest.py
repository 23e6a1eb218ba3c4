"""Shared fixtures: the app (flaskr style), its CLI runner, and databases on every backend.

Database-backed tests run on SQLite and, through the `any_db_url` fixture, on the machine's
real PostgreSQL and MariaDB. Locally a missing server skips those tests; in CI (CI=true) a
missing server is a failure, never a silent skip.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from records.db import make_engine, upgrade

SERVERS = {
    "postgresql": os.environ.get("DUALLINE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"),
    "mariadb": os.environ.get("DUALLINE_TEST_MARIADB", "mysql://root@127.0.0.1:3306/test"),
}
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TEST_SECRET = "test-secret-key-0123456789abcdef"


def _server_unavailable(kind: str, exc: Exception) -> None:
    message = f"{kind} server not reachable at {SERVERS[kind]}: {exc.__class__.__name__}: {exc}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'dualline.db'}"


def _fresh_server_database(kind: str) -> tuple[str, callable]:
    """A brand-new database on the server for one test, dropped afterwards."""
    base = SERVERS[kind]
    name = f"dualline_t_{uuid.uuid4().hex[:10]}"
    admin = make_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if kind == "postgresql":
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            else:
                conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
    except Exception as exc:  # noqa: BLE001
        admin.dispose()
        _server_unavailable(kind, exc)
    url = make_url(base).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as conn:
            if kind == "postgresql":
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            else:
                conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()

    return url, drop


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def any_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test on SQLite, PostgreSQL and MariaDB."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'dualline.db'}"
        return
    url, drop = _fresh_server_database(request.param)
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def db_engine(sqlite_url: str):
    engine = make_engine(sqlite_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def app_for(runtime, **config):  # noqa: ANN001, ANN201 - a Runtime in, a Flask app out
    """The app factory over an existing runtime (its config and database), as every web test
    needs it; `config` adds Flask settings (e.g. API_RATE_LIMIT_PER_SECOND=0)."""
    from web import create_app

    app = create_app(test_config={"DUALLINE_CONFIG_OBJECT": runtime.config, "TESTING": True, **config})
    app.extensions["dualline"].set_runtime(runtime)
    return app


def csrf_token_in(html: str) -> str:
    """The CSRF token a console page's form carries."""
    import re

    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
