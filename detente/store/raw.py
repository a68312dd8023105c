"""The raw layer: write a page of records and its cursor in one transaction."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, select

from detente.connectors.base import Page, Position
from detente.store.bulk import upsert
from detente.store.tables import Cursor, Quarantine, RawRecord

RAW = RawRecord.__table__  # type: ignore[attr-defined]
CURSORS = Cursor.__table__  # type: ignore[attr-defined]
QUARANTINE = Quarantine.__table__  # type: ignore[attr-defined]


@dataclass
class PageResult:
    fetched: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    quarantined: int = 0


def read_position(engine: Engine, system: str, object_name: str) -> Position | None:
    with engine.connect() as conn:
        row = conn.execute(
            select(CURSORS.c.modified_at, CURSORS.c.last_id).where(
                CURSORS.c.system == system, CURSORS.c.object == object_name
            )
        ).first()
    if row is None or row.modified_at is None:
        return None
    return Position(row.modified_at, row.last_id or "")


def commit_page(engine: Engine, system: str, page: Page, now: datetime) -> PageResult:
    """Store a page's records and rejects and advance the cursor, atomically.

    A record whose modification time and content are unchanged is not rewritten, so
    re-reading the overlap window costs no writes and marks nothing dirty.
    """
    result = PageResult(fetched=len(page.records), quarantined=len(page.rejects))
    by_id = {r.id: r for r in page.records}  # a page may repeat an id; the last wins
    with engine.begin() as conn:
        existing: dict[str, Any] = {}
        ids = list(by_id)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for row in conn.execute(
                select(RAW.c.record_id, RAW.c.modified_at, RAW.c.deleted, RAW.c.data, RAW.c.merged_into).where(
                    RAW.c.system == system, RAW.c.object == page.object, RAW.c.record_id.in_(chunk)
                )
            ):
                existing[row.record_id] = row
        rows = []
        for rec in by_id.values():
            old = existing.get(rec.id)
            if rec.deleted:
                if old is None or not old.deleted or old.merged_into != rec.merged_into:
                    result.deleted += 1
                    rows.append(_row(system, rec.object, rec.id, rec.modified_at,
                                     old.data if old is not None else rec.data, True, rec.merged_into, now,
                                     old.modified_at if old is not None else None))
                else:
                    result.unchanged += 1
                continue
            if old is not None and not old.deleted and old.data == rec.data and old.modified_at == rec.modified_at:
                result.unchanged += 1
                continue
            if old is None:
                result.inserted += 1
            else:
                result.updated += 1
            rows.append(_row(system, rec.object, rec.id, rec.modified_at, rec.data, False, None, now, None))
        if rows:
            _write_raw(conn, rows)
        if page.rejects:
            upsert(conn, QUARANTINE, [
                {"system": system, "object": j.object, "record_id": j.id, "stage": "pull", "reason": j.reason,
                 "payload": j.payload, "seen_at": now, "resolved_at": None}
                for j in page.rejects
            ], ["system", "object", "record_id", "stage"])
        if page.position is not None:
            upsert(conn, CURSORS, [{
                "system": system, "object": page.object, "modified_at": page.position.modified_at,
                "last_id": page.position.last_id, "updated_at": now,
            }], ["system", "object"])
    return result


_RAW_COLUMNS = ("system", "object", "record_id", "modified_at", "deleted", "merged_into", "data",
                "first_pulled_at", "pulled_at", "dirty")
_RAW_KEYS = ("system", "object", "record_id")
_SQLITE_UPSERT = (
    f"INSERT INTO raw_records ({', '.join(_RAW_COLUMNS)}) VALUES ({', '.join('?' for _ in _RAW_COLUMNS)})"
    " ON CONFLICT (system, object, record_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _RAW_COLUMNS if c not in _RAW_KEYS and c != "first_pulled_at")
)


def _write_raw(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Upsert raw rows. On SQLite the rows go straight to the driver: SQLAlchemy's per-value
    type processing would cost more than the insert itself on a full pull. The values are
    encoded exactly as the column types encode them (naive UTC text, JSON text, 0/1)."""
    if conn.dialect.name != "sqlite":
        upsert(conn, RAW, rows, _RAW_KEYS, [c for c in _RAW_COLUMNS if c not in _RAW_KEYS and c != "first_pulled_at"])
        return
    texts: dict[datetime, str] = {}  # a page's rows share their pull times, and often their stamps

    def when(value: datetime) -> str:
        text = texts.get(value)
        if text is None:
            text = texts[value] = _sqlite_time(value)
        return text

    params = [
        (r["system"], r["object"], r["record_id"], when(r["modified_at"]), int(r["deleted"]),
         r["merged_into"], json.dumps(r["data"]), when(r["first_pulled_at"]), when(r["pulled_at"]),
         int(r["dirty"]))
        for r in rows
    ]
    conn.exec_driver_sql(_SQLITE_UPSERT, params)


def _sqlite_time(value: datetime) -> str:
    """As SQLAlchemy's SQLite DateTime stores it: naive UTC, ``YYYY-MM-DD HH:MM:SS.ffffff``."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _row(
    system: str, object_name: str, record_id: str, modified_at: datetime, data: dict[str, Any],
    deleted: bool, merged_into: str | None, now: datetime, old_modified: datetime | None,
) -> dict[str, Any]:
    return {
        "system": system, "object": object_name, "record_id": record_id,
        "modified_at": max(modified_at, old_modified) if old_modified else modified_at,
        "deleted": deleted, "merged_into": merged_into, "data": data,
        "first_pulled_at": now, "pulled_at": now, "dirty": True,
    }


def live_ids(engine: Engine, system: str, object_name: str) -> set[str]:
    """Ids of the records the store holds as not deleted (for --full reconciliation)."""
    with engine.connect() as conn:
        return {
            r[0] for r in conn.execute(
                select(RAW.c.record_id).where(
                    RAW.c.system == system, RAW.c.object == object_name, RAW.c.deleted.is_(False)
                )
            )
        }


