"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-24 01:52:11.810087
"""
from alembic import op
import sqlalchemy as sa

# MariaDB/MySQL: full Unicode, and binary collation so codes and names compare exactly
# (a case- or accent-insensitive default would merge distinct codes).
TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=80), nullable=False),
    sa.Column('action', sa.String(length=60), nullable=False),
    sa.Column('target_type', sa.String(length=40), nullable=True),
    sa.Column('target_id', sa.String(length=80), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    **TABLE_OPTIONS,
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_at'), ['at'], unique=False)

    op.create_table('changes',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('actor', sa.String(length=80), nullable=False),
    sa.Column('entity', sa.String(length=20), nullable=False),
    sa.Column('entity_id', sa.Integer(), nullable=False),
    sa.Column('op', sa.String(length=20), nullable=False),
    sa.Column('changed', sa.JSON(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('seq'),
    **TABLE_OPTIONS,
    )
    with op.batch_alter_table('changes', schema=None) as batch_op:
        batch_op.create_index('ix_changes_entity', ['entity', 'entity_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_changes_run_id'), ['run_id'], unique=False)

    op.create_table('coverage',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('party_org_code', sa.String(length=64), nullable=False),
    sa.Column('org_unit_code', sa.String(length=64), nullable=False),
    sa.Column('include_descendants', sa.Boolean(), nullable=False),
    sa.Column('origin', sa.String(length=80), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('party_org_code', 'org_unit_code', name='uq_coverage'),
    **TABLE_OPTIONS,
    )
    with op.batch_alter_table('coverage', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_coverage_org_unit_code'), ['org_unit_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_coverage_party_org_code'), ['party_org_code'], unique=False)

    op.create_table('expected_branches',
    sa.Column('org_unit_code', sa.String(length=64), nullable=False),
    sa.Column('branch_code', sa.String(length=64), nullable=False),
    sa.Column('via_unit_code', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('org_unit_code'),
    **TABLE_OPTIONS,
    )
    with op.batch_alter_table('expected_branches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_expected_branches_branch_code'), ['branch_code'], unique=False)

    op.create_table('mismatches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('rule', sa.String(length=40), nullable=False),
    sa.Column('subject_key', sa.String(length=255), nullable=False),
    sa.Column('subject_type', sa.String(length=20), nullable=False),
    sa.Column('subject_id', sa.Integer(), nullable=True),
    sa.Column('subject_label', sa.String(length=200), nullable=True),
    sa.Column('party_org_code', sa.String(length=64), nullable=True),
    sa.Column('other_party_org_code', sa.String(length=64), nullable=True),
    sa.Column('org_unit_code', sa.String(length=64), nullable=True),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('severity', sa.String(length=10), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('inputs_hash', sa.String(length=40), nullable=False),
    sa.Column('opened_run_id', sa.Integer(), nullable=True),
    sa.Column('opened_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('closed_at', sa.DateTime(), nullable=True),
    sa.Column('resolution', sa.String(length=40), nullable=True),
    sa.Column('resolution_note', sa.Text(), nullable=True),
    sa.Column('resolved_by', sa.String(length=80), nullable=True),
    sa.Column('resolved_at', sa.DateTime(), nullable=True),
    sa.Column('expires_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    **TABLE_OPTIONS,
    )
    with op.batch_alter_table('mismatches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mismatches_party_org_code'), ['party_org_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_mismatches_rule'), ['rule'], unique=False)
        batch_op.create_index(batch_op.f('ix_mismatches_state'), ['state'], unique=False)
        batch_op.create_index('ix_mismatches_subject', ['rule', 'subject_key'], unique=False)

    op.create_table('org_units',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('parent_code', sa.String(length=64), nullable=True),
    sa.Column('kind', sa.String(length=20), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('manager_employee_no', sa.String(length=64), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('provenance', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code'),
    **TABLE_OPTIONS,
    )
    with op.batch_alter_table('org_units', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_org_units_parent_code'), ['parent_code'], unique=False)

    op.create_table('party_orgs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('parent_code', sa.String(length=64), nullable=True),
    sa.Column('secretary', sa.String(length=200), nullable=True),
    sa.Column('elected_on', sa.Date(), nullable=True),
    sa.Column('term_years', sa.Integer(), nullable=True),
    sa.Column('has_committee', sa.Boolean(), nullable=True),
    sa.Column('retirees', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('provenance', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code'),
    **TABLE_OPTIONS,
    )
    with op.batch_alter_table('party_orgs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_party_orgs_name'), ['name'], unique=False)
        batch_op.create_index(batch_op.f('ix_party_orgs_parent_code'), ['parent_code'], unique=False)

    op.create_table('persons',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('employee_no', sa.String(length=64), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('gender', sa.String(length=2), nullable=True),
    sa.Column('birth_date', sa.Date(), nullable=True),
    sa.Column('ethnicity', sa.String(length=4), nullable=True),
    sa.Column('education', sa.String(length=4), nullable=True),
    sa.Column('id_number_enc', sa.Text(), nullable=True),
    sa.Column('id_number_hash', sa.String(length=64), nullable=True),
    sa.Column('id_number_masked', sa.String(length=32), nullable=True),
    sa.Column('mobile_enc', sa.Text(), nullable=True),
    sa.Column('mobile_hash', sa.String(length=64), nullable=True),
    sa.Column('mobile_masked', sa.String(length=32), nullable=True),
    sa.Column('org_unit_code', sa.String(length=64), nullable=True),
    sa.Column('position', sa.String(length=200), nullable=True),
    sa.Column('employment_status', sa.String(length=20), nullable=True),
    sa.Column('hired_on', sa.Date(), nullable=True),
    sa.Column('political_status', sa.String(length=4), nullable=True),
    sa.Column('party_joined_on', sa.Date(), nullable=True),
    sa.Column('staff_active', sa.Boolean(), nullable=False),
    sa.Column('provenance', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('employee_no'),
    **TABLE_OPTIONS,
    )
    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_persons_id_number_hash'), ['id_number_hash'], unique=False)
        batch_op.create_index('ix_persons_name', ['name'], unique=False)
        batch_op.create_index(batch_op.f('ix_persons_org_unit_code'), ['org_unit_code'], unique=False)

    op.create_table('quarantine',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=80), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('external_id', sa.String(length=255), nullable=True),
    sa.Column('row', sa.String(length=40), nullable=True),
    sa.Column('field', sa.String(length=80), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('record_enc', sa.Text(), nullable=True),
    sa.Column('preview', sa.JSON(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    **TABLE_OPTIONS,
    )
    with op.batch_alter_table('quarantine', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_quarantine_run_id'), ['run_id'], unique=False)

    op.create_table('source_cursors',
    sa.Column('source', sa.String(length=80), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('value', sa.String(length=255), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('source', 'kind'),
    **TABLE_OPTIONS,
    )
    op.create_table('source_links',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=80), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('external_id', sa.String(length=255), nullable=False),
    sa.Column('entity_id', sa.Integer(), nullable=False),
    sa.Column('fingerprint', sa.String(length=32), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('last_run_id', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source', 'kind', 'external_id', name='uq_source_link'),
    **TABLE_OPTIONS,
    )
    with op.batch_alter_table('source_links', schema=None) as batch_op:
        batch_op.create_index('ix_source_links_entity', ['kind', 'entity_id'], unique=False)

    op.create_table('sync_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sources', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('full', sa.Boolean(), nullable=False),
    sa.Column('dry_run', sa.Boolean(), nullable=False),
    sa.Column('approved', sa.Boolean(), nullable=False),
    sa.Column('actor', sa.String(length=80), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('counts', sa.JSON(), nullable=False),
    sa.Column('mismatches', sa.JSON(), nullable=False),
    sa.Column('report', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    **TABLE_OPTIONS,
    )
    op.create_table('memberships',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.Column('party_org_code', sa.String(length=64), nullable=True),
    sa.Column('category', sa.String(length=20), nullable=True),
    sa.Column('joined_on', sa.Date(), nullable=True),
    sa.Column('full_member_on', sa.Date(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('provenance', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['person_id'], ['persons.id'], ),
    sa.PrimaryKeyConstraint('id'),
    **TABLE_OPTIONS,
    )
    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_memberships_party_org_code'), ['party_org_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_memberships_person_id'), ['person_id'], unique=False)

    op.create_table('performance',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('employee_no', sa.String(length=64), nullable=False),
    sa.Column('period', sa.String(length=16), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=True),
    sa.Column('grade', sa.String(length=16), nullable=True),
    sa.Column('score', sa.Float(), nullable=True),
    sa.Column('score_max', sa.Float(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('provenance', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['person_id'], ['persons.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('employee_no', 'period', name='uq_performance_key'),
    **TABLE_OPTIONS,
    )
    with op.batch_alter_table('performance', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_performance_person_id'), ['person_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('performance', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_performance_person_id'))

    op.drop_table('performance')
    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_memberships_person_id'))
        batch_op.drop_index(batch_op.f('ix_memberships_party_org_code'))

    op.drop_table('memberships')
    op.drop_table('sync_runs')
    with op.batch_alter_table('source_links', schema=None) as batch_op:
        batch_op.drop_index('ix_source_links_entity')

    op.drop_table('source_links')
    op.drop_table('source_cursors')
    with op.batch_alter_table('quarantine', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_quarantine_run_id'))

    op.drop_table('quarantine')
    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_persons_org_unit_code'))
        batch_op.drop_index('ix_persons_name')
        batch_op.drop_index(batch_op.f('ix_persons_id_number_hash'))

    op.drop_table('persons')
    with op.batch_alter_table('party_orgs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_party_orgs_parent_code'))
        batch_op.drop_index(batch_op.f('ix_party_orgs_name'))

    op.drop_table('party_orgs')
    with op.batch_alter_table('org_units', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_org_units_parent_code'))

    op.drop_table('org_units')
    with op.batch_alter_table('mismatches', schema=None) as batch_op:
        batch_op.drop_index('ix_mismatches_subject')
        batch_op.drop_index(batch_op.f('ix_mismatches_state'))
        batch_op.drop_index(batch_op.f('ix_mismatches_rule'))
        batch_op.drop_index(batch_op.f('ix_mismatches_party_org_code'))

    op.drop_table('mismatches')
    with op.batch_alter_table('expected_branches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_expected_branches_branch_code'))

    op.drop_table('expected_branches')
    with op.batch_alter_table('coverage', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_coverage_party_org_code'))
        batch_op.drop_index(batch_op.f('ix_coverage_org_unit_code'))

    op.drop_table('coverage')
    with op.batch_alter_table('changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_changes_run_id'))
        batch_op.drop_index('ix_changes_entity')

    op.drop_table('changes')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_at'))

    op.drop_table('audit_log')
