"""The SQLite store maps its file into memory only while a report scans it."""

from __future__ import annotations

from pathlib import Path

from detente.store.engine import SCAN_MAP_BYTES, create_schema, make_engine, scanning


def test_only_a_scanning_connection_maps_the_store(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}", pool_size=1)
    create_schema(engine)

    def mapped() -> int:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql("PRAGMA mmap_size").scalar_one())

    assert mapped() == 0  # pulls, the audit and write-back read and write without a map
    with scanning(engine) as conn:
        assert conn.exec_driver_sql("PRAGMA mmap_size").scalar_one() == SCAN_MAP_BYTES
        assert conn.exec_driver_sql("SELECT count(*) FROM people").scalar_one() == 0
    assert mapped() == 0  # the same pooled connection, its map dropped
    engine.dispose()
