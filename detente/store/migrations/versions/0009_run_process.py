"""runs: which process ran each run (host and pid)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 10:00:00

- ``runs.host``, ``runs.pid``: the process that started the run. A process killed mid-run
  leaves its row ``running``; the daemon that takes the lead next marks such rows of its own
  host whose process is gone ``interrupted``.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('runs') as batch:
        batch.add_column(sa.Column('host', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True))
        batch.add_column(sa.Column('pid', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('runs') as batch:
        batch.drop_column('pid')
        batch.drop_column('host')
