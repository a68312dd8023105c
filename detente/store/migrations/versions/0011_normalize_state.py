"""normalize: the field mappings the last normalize read with

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23 14:00:00

- ``normalize_state``: one row, a fingerprint of the field mappings (the rules' ``fields``)
  the last normalize used; when the rules change them, the next normalize reads everyone
  again. A store upgraded to it starts without the row: the mappings it was read with are
  not known, and are taken to be the ones of its next normalize.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import detente.store.types

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'normalize_state',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('mappings', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('updated_at', detente.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )


def downgrade() -> None:
    op.drop_table('normalize_state')
