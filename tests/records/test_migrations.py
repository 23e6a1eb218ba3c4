"""Alembic owns the schema: on every backend the migrations build exactly what the models say."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from records.db import make_engine, schema_is_current, upgrade
from records.models import Base


def test_migrations_match_models_on_every_backend(any_db_url: str) -> None:
    engine = make_engine(any_db_url)
    try:
        assert not schema_is_current(engine)
        upgrade(engine)
        upgrade(engine)  # idempotent
        assert schema_is_current(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
    finally:
        engine.dispose()
