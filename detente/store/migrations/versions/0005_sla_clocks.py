"""audit: SLA clock state on findings, loss reasons per system, incremental audit state

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 04:00:00

- ``findings.state``, ``started_at``, ``stopped_at`` (and ``finding_events.state``): an SLA
  clock's state (running, met, breached) and when it started and stopped.
- ``opportunities.salesforce_loss_reason`` and ``hubspot_loss_reason``: each CRM's own loss
  reason, so that a reason missing in one of them is seen (``loss_reason`` merges them).
  Existing rows take the merged reason until ``detente normalize --full`` reads them again.
- ``audit_state`` (rules version and raw-row watermark of the last audit) and ``audit_wake``
  (people to look at again when a clock falls due), and an index on ``raw_records.pulled_at``.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import detente.store.types

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

TS = detente.store.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'audit_state',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('rules_version', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('watermark', TS, nullable=True),
        sa.Column('evaluated_at', TS, nullable=False),
        sa.Column('full_at', TS, nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_table(
        'audit_wake',
        sa.Column('person_id', sa.Integer(), nullable=False),
        sa.Column('at', TS, nullable=False),
        sa.PrimaryKeyConstraint('person_id'),
    )
    with op.batch_alter_table('audit_wake', schema=None) as batch_op:
        batch_op.create_index('audit_wake_at', ['at'], unique=False)
    with op.batch_alter_table('raw_records', schema=None) as batch_op:
        batch_op.create_index('raw_records_pulled', ['pulled_at'], unique=False)
    with op.batch_alter_table('findings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
        batch_op.add_column(sa.Column('started_at', TS, nullable=True))
        batch_op.add_column(sa.Column('stopped_at', TS, nullable=True))
    with op.batch_alter_table('finding_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
    with op.batch_alter_table('opportunities', schema=None) as batch_op:
        batch_op.add_column(sa.Column('salesforce_loss_reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('hubspot_loss_reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    # Until the next full normalize, each CRM is taken to hold the merged reason.
    op.execute("UPDATE opportunities SET"
               " salesforce_loss_reason = CASE WHEN salesforce_id IS NOT NULL THEN loss_reason END,"
               " hubspot_loss_reason = CASE WHEN hubspot_deal_id IS NOT NULL THEN loss_reason END")


def downgrade() -> None:
    with op.batch_alter_table('raw_records', schema=None) as batch_op:
        batch_op.drop_index('raw_records_pulled')
    op.drop_table('audit_wake')
    op.drop_table('audit_state')
    with op.batch_alter_table('opportunities', schema=None) as batch_op:
        batch_op.drop_column('hubspot_loss_reason')
        batch_op.drop_column('salesforce_loss_reason')
    with op.batch_alter_table('finding_events', schema=None) as batch_op:
        batch_op.drop_column('state')
    with op.batch_alter_table('findings', schema=None) as batch_op:
        batch_op.drop_column('stopped_at')
        batch_op.drop_column('started_at')
        batch_op.drop_column('state')
