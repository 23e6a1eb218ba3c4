"""SCIM writes: externalId and deletion mark of persons and party orgs written through SCIM;
an index for the API's persons-by-org-unit pages

Revision ID: 0012
Revises: 0011
"""
from alembic import op
import sqlalchemy as sa

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scim_external_id", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("scim_deleted_at", sa.DateTime(), nullable=True))
        batch_op.create_index(batch_op.f("ix_persons_scim_external_id"), ["scim_external_id"], unique=False)
    with op.batch_alter_table("party_orgs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scim_external_id", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("scim_deleted_at", sa.DateTime(), nullable=True))
        batch_op.create_index(batch_op.f("ix_party_orgs_scim_external_id"), ["scim_external_id"], unique=False)


    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.create_index("ix_persons_org_unit_id", ["org_unit_code", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.drop_index("ix_persons_org_unit_id")
    with op.batch_alter_table("party_orgs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_party_orgs_scim_external_id"))
        batch_op.drop_column("scim_deleted_at")
        batch_op.drop_column("scim_external_id")
    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_persons_scim_external_id"))
        batch_op.drop_column("scim_deleted_at")
        batch_op.drop_column("scim_external_id")
