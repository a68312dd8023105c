"""The normalizer's plumbing over the store: page through dirty raw rows, mark them read,
quarantine what cannot be read, and write unified rows set-based (one statement executed
over many parameter sets, never one ORM object at a time).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Connection, Engine, Table, and_, bindparam, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from detente.store.tables import (
    Activity,
    Campaign,
    Opportunity,
    Owner,
    Person,
    PersonPending,
    PersonRecord,
    Quarantine,
    RawRecord,
    RecordLink,
    Transition,
)

RAW: Table = RawRecord.__table__  # type: ignore[attr-defined]
QUARANTINE: Table = Quarantine.__table__  # type: ignore[attr-defined]
OWNERS: Table = Owner.__table__  # type: ignore[attr-defined]
CAMPAIGNS: Table = Campaign.__table__  # type: ignore[attr-defined]
PEOPLE: Table = Person.__table__  # type: ignore[attr-defined]
PERSON_RECORDS: Table = PersonRecord.__table__  # type: ignore[attr-defined]
OPPORTUNITIES: Table = Opportunity.__table__  # type: ignore[attr-defined]
ACTIVITIES: Table = Activity.__table__  # type: ignore[attr-defined]
TRANSITIONS: Table = Transition.__table__  # type: ignore[attr-defined]
LINKS: Table = RecordLink.__table__  # type: ignore[attr-defined]
PEOPLE_PENDING: Table = PersonPending.__table__  # type: ignore[attr-defined]

STAGE = "normalize"
CHUNK = 2_000  # raw rows per transaction
IN_LIST = 900  # ids per IN (...) list
T = TypeVar("T")


class Key(NamedTuple):
    """One CRM record."""

    system: str
    object: str
    record_id: str


@dataclass(frozen=True)
class RawRow:
    """A raw record as the normalizer reads it."""

    system: str
    object: str
    record_id: str
    modified_at: datetime
    deleted: bool
    merged_into: str | None
    data: dict[str, Any]
    pulled_at: datetime

    @property
    def key(self) -> Key:
        return Key(self.system, self.object, self.record_id)


@dataclass
class Rejected:
    """A record the normalizer could not read."""

    key: Key
    reason: str
    payload: dict[str, Any]


def chunks(items: Iterable[T], size: int = IN_LIST) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


_RAW_COLUMNS = (RAW.c.system, RAW.c.object, RAW.c.record_id, RAW.c.modified_at, RAW.c.deleted,
                RAW.c.merged_into, RAW.c.data, RAW.c.pulled_at)


def as_raw(row: Any) -> RawRow:
    return RawRow(row.system, row.object, row.record_id, row.modified_at, bool(row.deleted), row.merged_into,
                  row.data if isinstance(row.data, dict) else {}, row.pulled_at)


STATISTICS_EVERY = 10  # chunks or batches between checks of PostgreSQL's statistics
_TABLES = ("raw_records", "record_links", "people", "person_records", "people_pending", "opportunities",
           "activities", "transitions", "quarantine", "owners", "campaigns")


def keep_statistics(engine: Engine) -> None:
    """ANALYZE the tables that changed a lot since PostgreSQL last looked at them.

    Without statistics (a store just filled, autovacuum not there yet) PostgreSQL reads an
    ``IN (...)`` list of ids as a filter over every record of the object instead of looking
    each id up, and a first run becomes quadratic. SQLite needs no statistics for these
    plans (its indexes lead with the columns every lookup names).
    """
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        found = conn.execute(text(
            "SELECT relname, n_live_tup, n_mod_since_analyze, last_analyze, last_autoanalyze "
            "FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname = ANY(:names)"),
            {"names": list(_TABLES)}).all()
        for r in found:
            never = r.last_analyze is None and r.last_autoanalyze is None
            changed = int(r.n_mod_since_analyze or 0)
            if changed > 1_000 and (never or changed > 0.2 * int(r.n_live_tup or 0)):
                conn.execute(text(f'ANALYZE "{r.relname}"'))


def each_dirty_chunk(
    engine: Engine, system: str, object_name: str, work: Callable[[Connection, list[RawRow]], None],
    *, size: int = CHUNK,
) -> int:
    """Run ``work`` over the object's dirty rows, a chunk per transaction, in id order; each
    chunk's rows are marked read in the transaction that wrote what they became. Returns
    the number of rows read."""
    after = ""
    total = 0
    for turn in itertools.count():
        if turn % STATISTICS_EVERY == 0:
            keep_statistics(engine)
        with engine.begin() as conn:
            rows = [as_raw(r) for r in conn.execute(
                select(*_RAW_COLUMNS)
                .where(RAW.c.system == system, RAW.c.object == object_name, RAW.c.dirty,
                       RAW.c.record_id > after)
                .order_by(RAW.c.record_id).limit(size)
            )]
            if not rows:
                return total
            work(conn, rows)
            mark_read(conn, rows)
        total += len(rows)
        after = rows[-1].record_id
    raise AssertionError("unreachable")


def mark_read(conn: Connection, rows: Sequence[RawRow]) -> None:
    """Clear ``dirty`` on rows still as they were read (a pull that rewrote one since keeps it dirty)."""
    # A pull stamps a whole page with one time, so rows group into a few statements.
    groups: dict[tuple[str, str, datetime], list[str]] = {}
    for r in rows:
        groups.setdefault((r.system, r.object, r.pulled_at), []).append(r.record_id)
    for (system, object_name, pulled_at), ids in groups.items():
        for part in chunks(ids):
            conn.execute(update(RAW).where(
                RAW.c.system == system, RAW.c.object == object_name, RAW.c.record_id.in_(part),
                RAW.c.pulled_at == pulled_at,
            ).values(dirty=False))


def read_raw(conn: Connection, keys: Iterable[Key]) -> dict[Key, RawRow]:
    """Raw rows by key, dirty or not."""
    by_object: dict[tuple[str, str], list[str]] = {}
    for k in keys:
        by_object.setdefault((k.system, k.object), []).append(k.record_id)
    out: dict[Key, RawRow] = {}
    for (system, object_name), ids in by_object.items():
        for part in chunks(sorted(set(ids))):
            for r in conn.execute(select(*_RAW_COLUMNS).where(
                    RAW.c.system == system, RAW.c.object == object_name, RAW.c.record_id.in_(part))):
                row = as_raw(r)
                out[row.key] = row
    return out


def upsert_many(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], keys: Sequence[str],
    update_columns: Sequence[str] | None = None,
) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE, as one statement over all rows (executemany)."""
    if not rows:
        return
    columns = list(update_columns) if update_columns is not None else [c for c in rows[0] if c not in keys]
    insert: Any = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table)
    if columns:
        stmt = stmt.on_conflict_do_update(index_elements=list(keys),
                                          set_={c: getattr(stmt.excluded, c) for c in columns})
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
    conn.execute(stmt, list(rows))


def update_by_id(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """UPDATE table SET ... WHERE id = row["id"], one statement over all rows."""
    if not rows:
        return
    columns = [c for c in rows[0] if c != "id"]
    stmt = update(table).where(table.c.id == bindparam("b_id")).values(
        {c: bindparam(f"b_{c}") for c in columns})
    conn.execute(stmt, [{f"b_{k}": v for k, v in r.items()} for r in rows])


def insert_returning_ids(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert rows; their new ids in the same order."""
    if not rows:
        return []
    if conn.dialect.name == "sqlite":
        # SQLite would return ids one row at a time; it hands out max(id) + 1 anyway, and a
        # writer that came in between makes this transaction fail, never share an id.
        start = int(conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one())
        ids = list(range(start + 1, start + 1 + len(rows)))
        conn.execute(table.insert(), [{**r, "id": i} for r, i in zip(rows, ids, strict=True)])
        return ids
    if conn.dialect.name == "postgresql":
        # Ids from the table's own sequence, then one plain multi-row insert: RETURNING in
        # parameter order would cost a round trip per batch of a few dozen rows.
        ids = [int(i) for i in conn.execute(
            text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"),
            {"table": table.name, "n": len(rows)}).scalars()]
        conn.execute(table.insert(), [{**r, "id": i} for r, i in zip(rows, ids, strict=True)])
        return ids
    result = conn.execute(table.insert().returning(table.c.id, sort_by_parameter_order=True), list(rows))
    return [int(r[0]) for r in result]


def quarantine(conn: Connection, rejected: Sequence[Rejected], now: datetime) -> None:
    """Keep records the normalizer could not read, with the reason (stage "normalize")."""
    upsert_many(conn, QUARANTINE, [
        {"system": r.key.system, "object": r.key.object, "record_id": r.key.record_id, "stage": STAGE,
         "reason": r.reason, "payload": r.payload, "seen_at": now, "resolved_at": None}
        for r in rejected
    ], ["system", "object", "record_id", "stage"])


def resolve_quarantine(conn: Connection, keys: Sequence[Key], now: datetime) -> None:
    """Records read fine now: close their open normalize quarantine entries."""
    by_object: dict[tuple[str, str], list[str]] = {}
    for k in keys:
        by_object.setdefault((k.system, k.object), []).append(k.record_id)
    for (system, object_name), ids in by_object.items():
        for part in chunks(ids):
            conn.execute(update(QUARANTINE).where(
                QUARANTINE.c.system == system, QUARANTINE.c.object == object_name,
                QUARANTINE.c.record_id.in_(part), QUARANTINE.c.stage == STAGE, QUARANTINE.c.resolved_at.is_(None),
            ).values(resolved_at=now))


def person_ids(conn: Connection, keys: Iterable[Key]) -> dict[Key, int]:
    """The person each record belongs to (merged-away HubSpot contacts resolve to the survivor's)."""
    pr = PERSON_RECORDS
    by_object: dict[tuple[str, str], set[str]] = {}
    for k in keys:
        by_object.setdefault((k.system, k.object), set()).add(k.record_id)
    out: dict[Key, int] = {}
    for (system, object_name), ids in by_object.items():
        for part in chunks(sorted(ids)):
            for r in conn.execute(select(pr.c.record_id, pr.c.person_id).where(
                    pr.c.system == system, pr.c.object == object_name, pr.c.record_id.in_(part))):
                out[Key(system, object_name, r.record_id)] = int(r.person_id)
    return out


def key_filter(table: Table, keys: Sequence[Key], *, object_column: str = "object") -> Any:
    """A WHERE clause for rows of ``table`` that belong to ``keys`` (all of one system and object)."""
    first = keys[0]
    return and_(table.c.system == first.system, table.c[object_column] == first.object,
                table.c.record_id.in_([k.record_id for k in keys]))


def group_keys(keys: Iterable[Key]) -> dict[tuple[str, str], list[Key]]:
    out: dict[tuple[str, str], list[Key]] = {}
    for k in keys:
        out.setdefault((k.system, k.object), []).append(k)
    return out
