"""metrics: the stages people reached and their SLA clocks, as the audit judged them

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 07:00:00

- ``person_stages``: per person, each agreed stage reached, when first labelled, and the
  current one;
- ``person_clocks``: per person and SLA, the clock (started, due, stopped, outcome, hours);
- ``people_created``: the metrics read the people created in a period.

The audit state is cleared so the next audit evaluates everyone and fills both tables.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import detente.store.types

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

TS = detente.store.types.UTCDateTime(timezone=True)


def _s(n: int | None = None) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=n)


def upgrade() -> None:
    op.create_table(
        'person_stages',
        sa.Column('person_id', sa.Integer(), nullable=False),
        sa.Column('stage', _s(64), nullable=False),
        sa.Column('entered_at', TS, nullable=True),
        sa.Column('is_current', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('person_id', 'stage'),
    )
    with op.batch_alter_table('person_stages', schema=None) as batch_op:
        batch_op.create_index('person_stages_stage', ['stage', 'person_id'], unique=False)
    op.create_table(
        'person_clocks',
        sa.Column('person_id', sa.Integer(), nullable=False),
        sa.Column('sla', _s(64), nullable=False),
        sa.Column('team', _s(64), nullable=True),
        sa.Column('owner_email', _s(320), nullable=True),
        sa.Column('started_at', TS, nullable=False),
        sa.Column('due_at', TS, nullable=False),
        sa.Column('stopped_at', TS, nullable=True),
        sa.Column('outcome', _s(16), nullable=False),
        sa.Column('hours', sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint('person_id', 'sla'),
    )
    with op.batch_alter_table('person_clocks', schema=None) as batch_op:
        batch_op.create_index('person_clocks_sla', ['sla', 'started_at'], unique=False)
        batch_op.create_index('person_clocks_started', ['started_at', 'sla', 'outcome', 'person_id'], unique=False)
    with op.batch_alter_table('people', schema=None) as batch_op:
        batch_op.create_index('people_created', ['created_at'], unique=False)
        batch_op.create_index('people_cohort', ['created_at', 'deleted', 'source', 'offer', 'channel', 'campaign_id',
                                                'salesforce_owner_id', 'hubspot_owner_id', 'activity_count'],
                              unique=False)
    op.execute("DELETE FROM audit_state")


def downgrade() -> None:
    with op.batch_alter_table('people', schema=None) as batch_op:
        batch_op.drop_index('people_cohort')
        batch_op.drop_index('people_created')
    op.drop_table('person_clocks')
    op.drop_table('person_stages')
