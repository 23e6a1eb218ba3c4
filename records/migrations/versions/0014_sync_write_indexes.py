"""Fewer index writes per synced row: the change feed's pending index and the persons'
SCIM externalId index become partial (PostgreSQL, SQLite; MariaDB has no partial indexes), and
ix_persons_org_unit_code goes (ix_persons_org_unit_id (org_unit_code, id) serves its lookups).

At a million staff a full sync writes ~1.5 million change rows and a million persons; every
index on them is written once per row, so an index that holds only the rare rows it is for
(unstamped changes, SCIM-created persons) saves that much work.

Revision ID: 0014
Revises: 0013
"""
from alembic import op
import sqlalchemy as sa

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_UNSTAMPED = sa.text("seq IS NULL")
_SCIM_ONLY = sa.text("scim_external_id IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.drop_index("ix_changes_pending")
        batch_op.create_index("ix_changes_pending", ["txn", "seq"], unique=False,
                              postgresql_where=_UNSTAMPED, sqlite_where=_UNSTAMPED)
    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.drop_index("ix_persons_org_unit_code")
        batch_op.drop_index("ix_persons_scim_external_id")
        batch_op.create_index("ix_persons_scim_external_id", ["scim_external_id"], unique=False,
                              postgresql_where=_SCIM_ONLY, sqlite_where=_SCIM_ONLY)


def downgrade() -> None:
    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.drop_index("ix_persons_scim_external_id")
        batch_op.create_index("ix_persons_scim_external_id", ["scim_external_id"], unique=False)
        batch_op.create_index("ix_persons_org_unit_code", ["org_unit_code"], unique=False)
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.drop_index("ix_changes_pending")
        batch_op.create_index("ix_changes_pending", ["txn", "seq"], unique=False)
