"""Set-based upserts that work on SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str],
    update: Iterable[str] | None = None,
    *,
    batch: int = 5000,
) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE, in batches; ``update`` defaults to every
    non-key column present in the rows."""
    if not rows:
        return
    columns = list(update) if update is not None else [c for c in rows[0] if c not in keys]
    insert: Any = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table)
    if columns:
        stmt = stmt.on_conflict_do_update(
            index_elements=list(keys), set_={c: getattr(stmt.excluded, c) for c in columns}
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
    # One statement executed for many parameter sets: compiled once, sent in batches by the
    # driver (executemany / insertmanyvalues) instead of one giant VALUES list per batch.
    for start in range(0, len(rows), batch):
        conn.execute(stmt, list(rows[start : start + batch]))
