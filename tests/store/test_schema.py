"""The migrations build exactly the schema the table classes declare."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import detente.store.findings
import detente.store.tables
import detente.store.writes  # noqa: F401 - every table class registered
from detente.store.engine import create_schema, make_engine


def test_migrated_schema_equals_the_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    create_schema(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), SQLModel.metadata)
    engine.dispose()
    assert [d for d in diff if not (isinstance(d, tuple) and d[0] == "remove_table"
                                   and d[1].name == "alembic_version")] == []
