"""run locks: database leases for sync runs and scheduler heartbeats

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# Microseconds on MySQL/MariaDB: whole seconds would cut up to a second off every lease.
LEASE_TIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_locks",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("acquired_at", LEASE_TIME, nullable=False),
        sa.Column("heartbeat_at", LEASE_TIME, nullable=False),
        sa.Column("expires_at", LEASE_TIME, nullable=False),
        sa.PrimaryKeyConstraint("name"),
        **TABLE_OPTIONS,
    )


def downgrade() -> None:
    op.drop_table("run_locks")
