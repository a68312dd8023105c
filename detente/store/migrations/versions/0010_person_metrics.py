"""metrics: each live person as the period tallies count them

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23 13:00:00

- ``person_metrics``: per live person, the lead-value fields the tallies group by, whether
  the person has an opportunity and whether they reached MQL, and the stages whose
  definitions hold and each CRM labels, written by the audit.

The audit state is cleared so the next audit evaluates everyone and fills the table.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import detente.store.types

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

TS = detente.store.types.UTCDateTime(timezone=True)


def _s(n: int | None = None) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=n)


def upgrade() -> None:
    op.create_table(
        'person_metrics',
        sa.Column('person_id', sa.Integer(), nullable=False),
        sa.Column('created_at', TS, nullable=True),
        sa.Column('source', _s(), nullable=True),
        sa.Column('channel', _s(), nullable=True),
        sa.Column('offer', _s(), nullable=True),
        sa.Column('campaign_id', sa.Integer(), nullable=True),
        sa.Column('country', _s(), nullable=True),
        sa.Column('email_domain', _s(255), nullable=True),
        sa.Column('company', _s(), nullable=True),
        sa.Column('title', _s(), nullable=True),
        sa.Column('has_opportunity', sa.Boolean(), nullable=False),
        sa.Column('mql', sa.Boolean(), nullable=False),
        sa.Column('definitions', _s(), nullable=False),
        sa.Column('salesforce_labels', _s(), nullable=False),
        sa.Column('hubspot_labels', _s(), nullable=False),
        sa.PrimaryKeyConstraint('person_id'),
    )
    with op.batch_alter_table('person_metrics', schema=None) as batch_op:
        batch_op.create_index('person_metrics_cohort', ['created_at', 'source', 'offer', 'channel', 'campaign_id',
                                                        'has_opportunity', 'mql'], unique=False)
    op.execute("DELETE FROM audit_state")


def downgrade() -> None:
    op.drop_table('person_metrics')
