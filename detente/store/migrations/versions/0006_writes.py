"""writeback: the outbox of writes to the CRMs

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 04:00:00

- ``writes``: one row per planned write (field value, task version, task completion) with a
  deterministic key, its payload, state (planned, sent, applied, failed, skipped) and
  attempts; it is also the audit log of everything detente wrote.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

import detente.store.types

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
TS = detente.store.types.UTCDateTime(timezone=True)


def _s(n: int | None = None) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=n)


def upgrade() -> None:
    op.create_table(
        'writes',
        sa.Column('key', _s(600), nullable=False),
        sa.Column('kind', _s(16), nullable=False),
        sa.Column('system', _s(16), nullable=False),
        sa.Column('object', _s(64), nullable=False),
        sa.Column('record_id', _s(64), nullable=True),
        sa.Column('field', _s(128), nullable=True),
        sa.Column('value', JSON, nullable=True),
        sa.Column('previous', JSON, nullable=True),
        sa.Column('task_key', _s(255), nullable=True),
        sa.Column('payload', JSON, nullable=False),
        sa.Column('reason', _s(), nullable=False),
        sa.Column('finding_key', _s(400), nullable=True),
        sa.Column('state', _s(16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('error', _s(), nullable=True),
        sa.Column('result_id', _s(64), nullable=True),
        sa.Column('planned_at', TS, nullable=False),
        sa.Column('sent_at', TS, nullable=True),
        sa.Column('applied_at', TS, nullable=True),
        sa.PrimaryKeyConstraint('key'),
    )
    with op.batch_alter_table('writes', schema=None) as batch_op:
        batch_op.create_index('writes_state', ['state', 'system'], unique=False)
        batch_op.create_index('writes_target', ['system', 'object', 'record_id', 'field'], unique=False)
        batch_op.create_index('writes_task', ['task_key'], unique=False)


def downgrade() -> None:
    op.drop_table('writes')
