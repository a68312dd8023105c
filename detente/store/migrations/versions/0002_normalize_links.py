"""normalize: record links, re-link keys, attributes, object-scoped uniqueness

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 01:37:46.696787

- ``record_links``: what each CRM record says about whom it belongs to (email, claimed ids,
  conversion, contact roles, memberships), the status values last seen, and a pending flag.
- ``people_pending``: people whose connector copies and activity counts must be recounted.
- ``raw_records_dirty_keys``: a partial index so the normalizer pages through dirty rows.
- ``people.attributes``: admin-mapped fields (JSON, ``{}`` by default).
- ``activities``: who/what ids and ``detente_key``; unique per (system, object, record_id),
  because HubSpot calls, emails, meetings and tasks may share numeric ids.
- ``opportunities``: the contact, lead and HubSpot contact the person link comes from.
- ``transitions``: ``object``, and uniqueness per (system, object, record_id, field, at, to_value).
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

import detente.store.types

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
UQ = {"uq": "uq_%(table_name)s_%(column_0_N_name)s"}


def _unique_name(table: str, columns: list[str]) -> str:
    """The name of the (possibly unnamed) unique constraint on exactly ``columns``."""
    for uc in sa.inspect(op.get_bind()).get_unique_constraints(table):
        if list(uc["column_names"]) == columns:
            return uc["name"] or f"uq_{table}_{'_'.join(columns)}"
    return f"uq_{table}_{'_'.join(columns)}"


def upgrade() -> None:
    op.create_table('people_pending',
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('person_id')
    )
    op.create_table('record_links',
    sa.Column('system', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('object', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('record_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True),
    sa.Column('ref_lead', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('ref_contact', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('ref_opportunity', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('ref_campaign', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('is_primary', sa.Boolean(), nullable=False),
    sa.Column('created_at', detente.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('merged_into', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('tracked', JSON, nullable=False),
    sa.Column('seen_at', detente.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('pending', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('system', 'object', 'record_id')
    )
    with op.batch_alter_table('record_links', schema=None) as batch_op:
        batch_op.create_index('record_links_contact', ['ref_contact'], unique=False)
        batch_op.create_index('record_links_email', ['email'], unique=False)
        batch_op.create_index('record_links_lead', ['ref_lead'], unique=False)
        batch_op.create_index('record_links_merged', ['merged_into'], unique=False)
        batch_op.create_index('record_links_opportunity', ['ref_opportunity'], unique=False)
        batch_op.create_index('record_links_pending', ['system', 'object', 'record_id'], unique=False,
                              sqlite_where=sa.text('pending = 1'), postgresql_where=sa.text('pending'))

    old_activities = _unique_name('activities', ['system', 'record_id'])
    with op.batch_alter_table('activities', schema=None, naming_convention=UQ) as batch_op:
        batch_op.add_column(sa.Column('who_object', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch_op.add_column(sa.Column('who_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('what_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('detente_key', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True))
        batch_op.drop_constraint(old_activities, type_='unique')
        batch_op.create_unique_constraint('activities_record', ['system', 'object', 'record_id'])
        batch_op.create_index('activities_what', ['system', 'what_id'], unique=False)
        batch_op.create_index('activities_who', ['system', 'who_id'], unique=False)

    with op.batch_alter_table('opportunities', schema=None) as batch_op:
        batch_op.add_column(sa.Column('salesforce_contact_id', sqlmodel.sql.sqltypes.AutoString(length=18),
                                      nullable=True))
        batch_op.add_column(sa.Column('salesforce_lead_id', sqlmodel.sql.sqltypes.AutoString(length=18), nullable=True))
        batch_op.add_column(sa.Column('hubspot_contact_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch_op.create_index('opportunities_hs_contact', ['hubspot_contact_id'], unique=False)
        batch_op.create_index('opportunities_sf_contact', ['salesforce_contact_id'], unique=False)
        batch_op.create_index('opportunities_sf_lead', ['salesforce_lead_id'], unique=False)

    with op.batch_alter_table('people', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attributes', JSON, server_default=sa.text("'{}'"), nullable=False))

    with op.batch_alter_table('raw_records', schema=None) as batch_op:
        batch_op.create_index('raw_records_dirty_keys', ['system', 'object', 'record_id'], unique=False,
                              sqlite_where=sa.text('dirty = 1'), postgresql_where=sa.text('dirty'))

    old_transitions = _unique_name('transitions', ['system', 'record_id', 'field', 'at', 'to_value'])
    with op.batch_alter_table('transitions', schema=None, naming_convention=UQ) as batch_op:
        batch_op.add_column(sa.Column('object', sqlmodel.sql.sqltypes.AutoString(length=64), server_default='',
                                      nullable=False))
        batch_op.drop_constraint(old_transitions, type_='unique')
        batch_op.create_unique_constraint('transitions_change',
                                          ['system', 'object', 'record_id', 'field', 'at', 'to_value'])
        batch_op.create_index('transitions_opportunity', ['opportunity_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('transitions', schema=None) as batch_op:
        batch_op.drop_index('transitions_opportunity')
        batch_op.drop_constraint('transitions_change', type_='unique')
        batch_op.drop_column('object')
        batch_op.create_unique_constraint('transitions_system_record_id_field_at_to_value_key',
                                          ['system', 'record_id', 'field', 'at', 'to_value'])

    with op.batch_alter_table('raw_records', schema=None) as batch_op:
        batch_op.drop_index('raw_records_dirty_keys', sqlite_where=sa.text('dirty = 1'), postgresql_where=sa.text('dirty'))

    with op.batch_alter_table('people', schema=None) as batch_op:
        batch_op.drop_column('attributes')

    with op.batch_alter_table('opportunities', schema=None) as batch_op:
        batch_op.drop_index('opportunities_sf_lead')
        batch_op.drop_index('opportunities_sf_contact')
        batch_op.drop_index('opportunities_hs_contact')
        batch_op.drop_column('hubspot_contact_id')
        batch_op.drop_column('salesforce_lead_id')
        batch_op.drop_column('salesforce_contact_id')

    with op.batch_alter_table('activities', schema=None) as batch_op:
        batch_op.drop_index('activities_who')
        batch_op.drop_index('activities_what')
        batch_op.drop_constraint('activities_record', type_='unique')
        batch_op.drop_column('detente_key')
        batch_op.drop_column('what_id')
        batch_op.drop_column('who_id')
        batch_op.drop_column('who_object')
        batch_op.create_unique_constraint('activities_system_record_id_key', ['system', 'record_id'])

    with op.batch_alter_table('record_links', schema=None) as batch_op:
        batch_op.drop_index('record_links_pending', sqlite_where=sa.text('pending = 1'), postgresql_where=sa.text('pending'))
        batch_op.drop_index('record_links_opportunity')
        batch_op.drop_index('record_links_merged')
        batch_op.drop_index('record_links_lead')
        batch_op.drop_index('record_links_email')
        batch_op.drop_index('record_links_contact')

    op.drop_table('record_links')
    op.drop_table('people_pending')
