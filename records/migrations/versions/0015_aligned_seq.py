"""sync_runs.aligned_seq: how far into the change feed a run's alignment had looked.

An incremental run re-aligns only what changed since the last alignment (sync.alignment
`changed_scope`): the changes stamped after the highest `aligned_seq` of the succeeded runs,
less those of runs that aligned them already.

Revision ID: 0015
Revises: 0014
"""
from alembic import op
import sqlalchemy as sa

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("aligned_seq", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.drop_column("aligned_seq")
