"""Alembic environment: runs on the connection detente hands it."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import detente.store.findings  # registers the findings tables
import detente.store.notices  # registers the webhook's record of posted breaches
import detente.store.tables  # registers the tables on SQLModel.metadata
import detente.store.writes  # noqa: F401 - registers the outbox

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - alembic CLI use
    engine = config.attributes["engine"]
    with engine.begin() as connection:
        context.configure(connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
