"""console read paths: open mismatches counted by party org (either side) and by rule

The console's dashboard, queue and party-org pages count open mismatches per party org and per
rule; at 20 000+ open mismatches these covering indexes let the engines read the index alone
(benchmarks/console_bench.py).

Revision ID: 0011
Revises: 0010
"""
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_mismatches_open_party_org": ["state", "closed_at", "party_org_code"],
    "ix_mismatches_open_other_org": ["state", "closed_at", "other_party_org_code"],
    "ix_mismatches_open_rule": ["state", "closed_at", "rule"],
}


def upgrade() -> None:
    with op.batch_alter_table("mismatches", schema=None) as batch_op:
        for name, columns in INDEXES.items():
            batch_op.create_index(name, columns, unique=False)


def downgrade() -> None:
    with op.batch_alter_table("mismatches", schema=None) as batch_op:
        for name in INDEXES:
            batch_op.drop_index(name)
