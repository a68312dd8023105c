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


def test_a_new_sqlite_store_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    import stat

    engine = make_engine(f"sqlite:///{tmp_path / 'private' / 'store.db'}")
    create_schema(engine)
    engine.dispose()
    for name in ("store.db",):
        mode = stat.S_IMODE((tmp_path / "private" / name).stat().st_mode)
        assert mode == 0o600, oct(mode)
