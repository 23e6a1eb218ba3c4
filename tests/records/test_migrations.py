"""Alembic owns the schema: on every backend the migrations build exactly what the models say."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateTable

from records.db import make_engine, schema_is_current, upgrade
from records.models import Base, SourceLink


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


def test_source_links_leave_room_for_heap_only_updates_on_postgresql(any_db_url: str) -> None:
    """Autogenerate does not compare storage parameters: migration 0016 and the model both set
    source_links' fillfactor, so that a run's link updates need no index entries."""
    assert "WITH (fillfactor = 90)" in str(CreateTable(SourceLink.__table__).compile(dialect=postgresql.dialect()))
    engine = make_engine(any_db_url)
    try:
        upgrade(engine)
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                options = conn.execute(text("SELECT reloptions FROM pg_class WHERE relname = 'source_links'")).scalar()
            assert options == ["fillfactor=90"]
    finally:
        engine.dispose()


def test_migrated_columns_compare_as_the_models_say_on_postgresql(any_db_url: str) -> None:
    """Autogenerate does not compare collations either: every column the models make
    byte-compared on PostgreSQL (records.models.machine_text) is so after the migrations
    (0017), and no other column is."""
    dialect = postgresql.dialect()
    expected = {(table.name, column.name): getattr(column.type.dialect_impl(dialect), "collation", None)
                for table in Base.metadata.tables.values() for column in table.columns}
    assert expected[("source_links", "external_id")] == "C"
    engine = make_engine(any_db_url)
    try:
        upgrade(engine)
        if engine.dialect.name != "postgresql":
            return
        with engine.connect() as conn:
            migrated = {(table, column): collation for table, column, collation in conn.execute(text(
                "SELECT table_name, column_name, collation_name FROM information_schema.columns "
                "WHERE table_schema = 'public'"))}
        assert {key: migrated[key] for key in expected} == expected
    finally:
        engine.dispose()
