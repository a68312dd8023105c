"""Engines for the store: SQLite (WAL) by default, PostgreSQL by changing the URL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for a store URL (``sqlite:///path.db`` or ``postgresql+psycopg://...``)."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            path = Path(parsed.database)
            path.parent.mkdir(parents=True, exist_ok=True)
            # The store holds people's data: readable by its owner only (SQLite gives its -wal
            # and -shm files the database file's permissions).
            os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        engine = create_engine(parsed, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            # A larger page cache; no memory map but while a report scans (``scanning``).
            cur.execute("PRAGMA mmap_size=0")
            cur.execute("PRAGMA cache_size=-65536")
            cur.close()

        return engine
    return create_engine(parsed, pool_pre_ping=True, **kwargs)


SCAN_MAP_BYTES = 1 << 30


@contextmanager
def scanning(engine: Engine) -> Iterator[Connection]:
    """A connection for reading large ranges (the reports). On SQLite it reads through a
    memory map of up to 1 GB of the store while it is open, and drops the map when it is
    done: the mapped pages count in the process's memory, so the writers (pulls, the audit)
    and a long-running daemon between reports do not keep the store mapped."""
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            conn.exec_driver_sql(f"PRAGMA mmap_size={SCAN_MAP_BYTES}")
        try:
            yield conn
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA mmap_size=0")


def create_schema(engine: Engine) -> None:
    """Bring the store's schema up to date (alembic migrations)."""
    from detente.store.migrate import upgrade

    upgrade(engine)
