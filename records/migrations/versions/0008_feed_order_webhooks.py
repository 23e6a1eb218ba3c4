"""change feed stamped at commit (seq in commit order); webhooks and their delivery log

`changes.seq` was an autoincrement, which numbers rows at INSERT, not at COMMIT (see
records.models.Change). The old column becomes `id` (insertion order); `seq` is a new nullable
column stamped at commit through the one-row `change_feed_counter`. Existing rows keep their
numbers (seq = id), so consumers' cursors stay valid, and the counter starts after them.

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa

TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Which transaction wrote a change row (records.models.WriterTransaction, written out here).
WRITER_TRANSACTION = {"postgresql": "txid_current()", "mysql": "(connection_id())", "mariadb": "(connection_id())"}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    # PostgreSQL, MariaDB ≥ 10.5 and SQLite ≥ 3.25 rename in place, keeping the autoincrement.
    op.execute("ALTER TABLE changes RENAME COLUMN seq TO id")
    writer = WRITER_TRANSACTION.get(dialect)
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("txn", sa.BigInteger(), nullable=True,
                                      server_default=sa.text(writer) if writer else None))
    op.execute("UPDATE changes SET seq = id")
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_changes_seq"), ["seq"], unique=True)
        batch_op.create_index("ix_changes_pending", ["txn", "seq"], unique=False)

    op.create_table(
        "change_feed_counter",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        **TABLE_OPTIONS,
    )
    op.execute("INSERT INTO change_feed_counter (id, last_seq) SELECT 1, COALESCE(MAX(seq), 0) FROM changes")

    op.create_table(
        "webhooks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("origin", sa.String(length=20), nullable=False),
        sa.Column("url", sa.String(length=1000), nullable=False),
        sa.Column("secret_enc", sa.Text(), nullable=True),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("entities", sa.JSON(), nullable=True),
        sa.Column("party_org_code", sa.String(length=64), nullable=True),
        sa.Column("timeout_seconds", sa.Float(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(length=40), nullable=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_run_id", sa.Integer(), nullable=False),
        sa.Column("pending_delivery", sa.String(length=36), nullable=True),
        sa.Column("pending_event", sa.String(length=20), nullable=True),
        sa.Column("pending_last_seq", sa.BigInteger(), nullable=True),
        sa.Column("pending_run_id", sa.Integer(), nullable=True),
        sa.Column("pending_items", sa.Integer(), nullable=True),
        sa.Column("pending_body", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("webhook_id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.String(length=36), nullable=False),
        sa.Column("event", sa.String(length=20), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("attempted_at", sa.DateTime(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["webhook_id"], ["webhooks.id"]),
        sa.PrimaryKeyConstraint("id"),
        **TABLE_OPTIONS,
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhook_deliveries_delivery_id"), ["delivery_id"], unique=False)
        batch_op.create_index("ix_webhook_deliveries_webhook", ["webhook_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_deliveries_webhook")
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_delivery_id"))
    op.drop_table("webhook_deliveries")
    op.drop_table("webhooks")
    op.drop_table("change_feed_counter")
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.drop_index("ix_changes_pending")
        batch_op.drop_index(batch_op.f("ix_changes_seq"))
        batch_op.drop_column("txn")
        batch_op.drop_column("seq")
    op.execute("ALTER TABLE changes RENAME COLUMN id TO seq")
