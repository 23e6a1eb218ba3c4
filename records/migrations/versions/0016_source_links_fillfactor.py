"""PostgreSQL: source_links pages keep a tenth free, so that a run's link updates stay HOT.

Every record a run finds changed updates its source link (fingerprint, last run, active): none
of those columns is indexed, so PostgreSQL can write the new row version on the same page
without touching the table's three indexes (a heap-only tuple) — if the page has room. A bulk
load fills pages to the brim; with fillfactor 90 there is room. Measured at 1 000 000 staff:
10 000 link updates 0.54–0.72 s on full pages, 0.14–0.16 s with room (all HOT). Existing pages
keep what they hold until rewritten (VACUUM FULL); new ones, a first load's included, leave
the room. Other databases have no such setting.

Revision ID: 0016
Revises: 0015
"""
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE source_links SET (fillfactor = 90)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE source_links RESET (fillfactor)")
