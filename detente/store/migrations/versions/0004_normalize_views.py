"""normalize: record views, and link indexes that lead with the object

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 02:45:00

- ``record_links.view``: the values a person takes from a lead, contact or HubSpot contact,
  kept when the record is read so that linking never reads the raw record a second time.
- ``record_links_lead``, ``_contact``, ``_merged`` now lead with (system, object): SQLite,
  without statistics, otherwise scans every record of the object through the primary key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
INDEXES = {"record_links_lead": "ref_lead", "record_links_contact": "ref_contact", "record_links_merged": "merged_into"}


def upgrade() -> None:
    with op.batch_alter_table('record_links', schema=None) as batch_op:
        batch_op.add_column(sa.Column('view', JSON, server_default=sa.text("'{}'"), nullable=False))
        for name, column in INDEXES.items():
            batch_op.drop_index(name)
            batch_op.create_index(name, ['system', 'object', column], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('record_links', schema=None) as batch_op:
        for name, column in INDEXES.items():
            batch_op.drop_index(name)
            batch_op.create_index(name, [column], unique=False)
        batch_op.drop_column('view')
