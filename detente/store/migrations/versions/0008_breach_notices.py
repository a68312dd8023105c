"""notify: the SLA breaches posted to the webhook

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 07:00:00

- ``breach_notices``: one row per breach posted (finding key and the moment the finding
  opened), written after the webhook accepted it, so each breach is posted once.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import detente.store.types

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

TS = detente.store.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'breach_notices',
        sa.Column('finding_key', sqlmodel.sql.sqltypes.AutoString(length=400), nullable=False),
        sa.Column('opened_at', TS, nullable=False),
        sa.Column('notified_at', TS, nullable=False),
        sa.PrimaryKeyConstraint('finding_key', 'opened_at'),
    )


def downgrade() -> None:
    op.drop_table('breach_notices')
