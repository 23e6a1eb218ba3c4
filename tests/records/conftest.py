"""Fixtures of the records tests."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from records.db import make_engine, upgrade


@pytest.fixture
def engine(any_db_url: str) -> Iterator[Engine]:
    """A migrated database of each kind."""
    engine = make_engine(any_db_url)
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()
