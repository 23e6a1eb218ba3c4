"""transfers (组织关系转接) and field_overrides (a person's decision held against a source)

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa

TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "transfers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("membership_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("from_party_org_code", sa.String(length=64), nullable=True),
        sa.Column("to_party_org_code", sa.String(length=64), nullable=True),
        sa.Column("to_org_name", sa.String(length=200), nullable=True),
        sa.Column("category", sa.String(length=20), nullable=True),
        sa.Column("dues_paid_until", sa.Date(), nullable=True),
        sa.Column("letter_no", sa.String(length=64), nullable=True),
        sa.Column("issued_on", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.Column("received_on", sa.Date(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("mismatch_id", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"]),
        sa.ForeignKeyConstraint(["membership_id"], ["memberships.id"]),
        sa.PrimaryKeyConstraint("id"),
        **TABLE_OPTIONS,
    )
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_transfers_person_id"), ["person_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_transfers_membership_id"), ["membership_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_transfers_from_party_org_code"), ["from_party_org_code"], unique=False)
        batch_op.create_index(batch_op.f("ix_transfers_to_party_org_code"), ["to_party_org_code"], unique=False)
        batch_op.create_index(batch_op.f("ix_transfers_status"), ["status"], unique=False)

    op.create_table(
        "field_overrides",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entity", sa.String(length=20), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("field", sa.String(length=40), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("source", sa.String(length=80), nullable=True),
        sa.Column("source_value", sa.JSON(), nullable=True),
        sa.Column("mismatch_id", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("released_at", sa.DateTime(), nullable=True),
        sa.Column("released_run_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        **TABLE_OPTIONS,
    )
    with op.batch_alter_table("field_overrides", schema=None) as batch_op:
        batch_op.create_index("ix_field_overrides_entity", ["entity", "entity_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("field_overrides", schema=None) as batch_op:
        batch_op.drop_index("ix_field_overrides_entity")
    op.drop_table("field_overrides")
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_transfers_status"))
        batch_op.drop_index(batch_op.f("ix_transfers_to_party_org_code"))
        batch_op.drop_index(batch_op.f("ix_transfers_from_party_org_code"))
        batch_op.drop_index(batch_op.f("ix_transfers_membership_id"))
        batch_op.drop_index(batch_op.f("ix_transfers_person_id"))
    op.drop_table("transfers")
