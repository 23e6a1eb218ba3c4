"""The unified records: SQLAlchemy models, sessions, schema migrations, field protection."""
