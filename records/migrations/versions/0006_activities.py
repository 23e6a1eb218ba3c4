"""activities: organizational life (三会一课, 主题党日, 组织生活会, 民主评议)

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa

TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "activities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("activity_key", sa.String(length=64), nullable=False),
        sa.Column("party_org_code", sa.String(length=64), nullable=True),
        sa.Column("type", sa.String(length=32), nullable=True),
        sa.Column("held_on", sa.Date(), nullable=True),
        sa.Column("attendees", sa.Integer(), nullable=True),
        sa.Column("expected", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("provenance", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("activity_key", name="uq_activities_key"),
        **TABLE_OPTIONS,
    )
    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_activities_held_on"), ["held_on"], unique=False)
        batch_op.create_index(batch_op.f("ix_activities_party_org_code"), ["party_org_code"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_activities_party_org_code"))
        batch_op.drop_index(batch_op.f("ix_activities_held_on"))
    op.drop_table("activities")
