"""audit: findings and their history

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 02:20:00

- ``findings``: one row per finding, keyed by kind, rule and subject (see
  ``detente.store.findings``), with status open or resolved.
- ``finding_events``: every change of a finding (opened, updated, resolved, reopened).
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

import detente.store.types

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
TS = detente.store.types.UTCDateTime(timezone=True)


def _s(n: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=n)


def upgrade() -> None:
    op.create_table(
        'findings',
        sa.Column('key', _s(400), nullable=False),
        sa.Column('kind', _s(32), nullable=False),
        sa.Column('rule', _s(64), nullable=False),
        sa.Column('rules_version', _s(64), nullable=False),
        sa.Column('person_id', sa.Integer(), nullable=True),
        sa.Column('opportunity_id', sa.Integer(), nullable=True),
        sa.Column('records', JSON, nullable=False),
        sa.Column('email', _s(320), nullable=True),
        sa.Column('salesforce_id', _s(18), nullable=True),
        sa.Column('hubspot_id', _s(32), nullable=True),
        sa.Column('team', _s(64), nullable=True),
        sa.Column('owner_email', _s(320), nullable=True),
        sa.Column('status', _s(16), nullable=False),
        sa.Column('opened_at', TS, nullable=False),
        sa.Column('due_at', TS, nullable=True),
        sa.Column('resolved_at', TS, nullable=True),
        sa.Column('resolution', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column('explanation', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('evaluated_at', TS, nullable=False),
        sa.PrimaryKeyConstraint('key'),
    )
    with op.batch_alter_table('findings', schema=None) as batch_op:
        batch_op.create_index('findings_status', ['status', 'kind'], unique=False)
        batch_op.create_index('findings_person', ['person_id'], unique=False)
    op.create_table(
        'finding_events',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('finding_key', _s(400), nullable=False),
        sa.Column('at', TS, nullable=False),
        sa.Column('event', _s(16), nullable=False),
        sa.Column('rules_version', _s(64), nullable=False),
        sa.Column('status', _s(16), nullable=False),
        sa.Column('due_at', TS, nullable=True),
        sa.Column('explanation', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('finding_events', schema=None) as batch_op:
        batch_op.create_index('finding_events_key', ['finding_key', 'at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('finding_events', schema=None) as batch_op:
        batch_op.drop_index('finding_events_key')
    op.drop_table('finding_events')
    with op.batch_alter_table('findings', schema=None) as batch_op:
        batch_op.drop_index('findings_person')
        batch_op.drop_index('findings_status')
    op.drop_table('findings')
