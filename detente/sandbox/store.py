"""The sandbox's world: one SQLite database holding both CRMs' records.

Salesforce objects are tables with one column per field of the catalog; HubSpot objects keep
their properties (all strings, as HubSpot serves them) in a JSON column beside the system
columns. Server-maintained values (ids, SystemModstamp, computed fields, field history,
lifecycle-stage dates) are set here, so the API servers and the generator share one
behaviour. Every method takes ``now``: the sandbox's clock is an argument, never read here.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from detente.agreement import HUBSPOT_LIFECYCLE_ORDER
from detente.sandbox.schema import (
    HUBSPOT_OBJECTS,
    SALESFORCE_OBJECTS,
    SfField,
    SfObject,
)

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"

# HubSpot keeps full history for every property; the sandbox keeps it for the ones an audit
# reads and serves the current value as a one-entry history for the rest.
HS_HISTORY_TRACKED = frozenset({
    "lifecyclestage", "hs_lead_status", "hubspot_owner_id", "hubspotscore", "dealstage",
    "amount", "closedate", "hs_task_status",
})


def sf_datetime(value: datetime) -> str:
    """Salesforce's wire form: 2024-05-20T20:49:32.000+0000 (always UTC)."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def hs_datetime(value: datetime) -> str:
    """HubSpot's wire form: 2024-09-11T13:27:39.356Z (always UTC)."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_datetime(text: str) -> datetime:
    """Parse either wire form (or plain ISO-8601) into an aware UTC datetime."""
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    elif len(text) > 5 and text[-5] in "+-" and text[-3] != ":" and "T" in text:
        text = text[:-2] + ":" + text[-2:]
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def sf_id(prefix: str, number: int) -> str:
    """An 18-character Salesforce id: prefix, instance, base-62 counter, case-safe suffix."""
    body = ""
    n = number
    for _ in range(9):
        n, r = divmod(n, 62)
        body = _BASE62[r] + body
    fifteen = prefix + "5g0" + body
    suffix = ""
    for chunk in range(3):
        bits = 0
        for i, ch in enumerate(fifteen[chunk * 5 : chunk * 5 + 5]):
            if "A" <= ch <= "Z":
                bits |= 1 << i
        suffix += _SUFFIX[bits]
    return fifteen + suffix


def _sql_type(f: SfField) -> str:
    if f.type in {"boolean", "int"}:
        return "INTEGER"
    if f.type in {"double", "currency", "percent"}:
        return "REAL"
    if f.type in {"id", "reference"}:
        return "TEXT"
    return "TEXT COLLATE NOCASE"


class World:
    """Both CRMs' data in one SQLite database; safe to share between threads."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = str(path) if path else ":memory:"
        self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self.lock = threading.RLock()
        # Once the world is generated, every write is also appended to ``write_log``: what a
        # harness compares with what detente says it wrote (see ``writes``).
        self.log_writes = False
        if self.path != ":memory:":
            self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=OFF")
        self.conn.execute("PRAGMA cache_size=-200000")
        self._create_schema()

    # -- plumbing -------------------------------------------------------------------------

    def _create_schema(self) -> None:
        c = self.conn
        c.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        for obj in SALESFORCE_OBJECTS.values():
            cols = ", ".join(
                f'"{f.name}" {_sql_type(f)}' + (" PRIMARY KEY" if f.name == "Id" else "")
                for f in obj.fields
            )
            c.execute(f'CREATE TABLE IF NOT EXISTS "sf_{obj.name}" ({cols})')
            stamp = "SystemModstamp" if obj.field("SystemModstamp") else "CreatedDate"
            c.execute(
                f'CREATE INDEX IF NOT EXISTS "sf_{obj.name}_stamp" ON "sf_{obj.name}" ("{stamp}", "Id")'
            )
            if obj.field("Email"):
                c.execute(f'CREATE INDEX IF NOT EXISTS "sf_{obj.name}_email" ON "sf_{obj.name}" ("Email")')
            for f in obj.fields:
                if f.external_id or f.unique:
                    c.execute(
                        f'CREATE INDEX IF NOT EXISTS "sf_{obj.name}_{f.name}" ON "sf_{obj.name}" ("{f.name}")'
                    )
        c.execute(
            "CREATE TABLE IF NOT EXISTS sf_deleted (object TEXT, id TEXT PRIMARY KEY, deleted_date TEXT)"
        )
        c.execute("CREATE INDEX IF NOT EXISTS sf_deleted_date ON sf_deleted (object, deleted_date)")
        for hs in HUBSPOT_OBJECTS.values():
            c.execute(
                f"CREATE TABLE IF NOT EXISTS hs_{hs.name} (id INTEGER PRIMARY KEY, created_at TEXT,"
                " updated_at TEXT, archived INTEGER NOT NULL DEFAULT 0, archived_at TEXT, props TEXT)"
            )
            c.execute(f"CREATE INDEX IF NOT EXISTS hs_{hs.name}_upd ON hs_{hs.name} (updated_at, id)")
            for prop in hs.properties:
                if prop.unique and prop.name != "hs_object_id":
                    c.execute(
                        f"CREATE INDEX IF NOT EXISTS hs_{hs.name}_{prop.name} ON hs_{hs.name}"
                        f" (json_extract(props, '$.{prop.name}'))"
                    )
        c.execute(
            "CREATE TABLE IF NOT EXISTS hs_history (object TEXT, id INTEGER, property TEXT, value TEXT,"
            " timestamp TEXT, source_type TEXT)"
        )
        c.execute("CREATE INDEX IF NOT EXISTS hs_history_rec ON hs_history (object, id, property)")
        c.execute(
            "CREATE TABLE IF NOT EXISTS hs_assoc (from_object TEXT, from_id INTEGER, to_object TEXT,"
            " to_id INTEGER, category TEXT, type_id INTEGER,"
            " PRIMARY KEY (from_object, from_id, to_object, to_id, type_id))"
        )
        c.execute(
            "CREATE TABLE IF NOT EXISTS hs_merged (object TEXT, old_id INTEGER, new_id INTEGER,"
            " PRIMARY KEY (object, old_id))"
        )
        c.execute(
            "CREATE TABLE IF NOT EXISTS hs_owners (id INTEGER PRIMARY KEY, email TEXT, first_name TEXT,"
            " last_name TEXT, user_id INTEGER, teams TEXT, archived INTEGER NOT NULL DEFAULT 0,"
            " created_at TEXT, updated_at TEXT)"
        )
        c.execute(
            "CREATE TABLE IF NOT EXISTS write_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, system TEXT,"
            " object TEXT, record_id TEXT, op TEXT, fields TEXT, at TEXT)"
        )
        c.execute(
            "CREATE TABLE IF NOT EXISTS hs_custom_props (object TEXT, name TEXT, definition TEXT,"
            " PRIMARY KEY (object, name))"
        )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of work; nests by joining the outer transaction."""
        with self.lock:
            if self.conn.in_transaction:
                yield self.conn
                return
            self.conn.execute("BEGIN")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self.lock:
            return self.conn.execute(sql, params).fetchall()

    def tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Like ``query``, but plain tuples: cheaper when building thousands of records."""
        with self.lock:
            cursor = self.conn.cursor()
            cursor.row_factory = None
            return cursor.execute(sql, params).fetchall()

    def clear(self) -> None:
        """Delete every record of both CRMs and restart the id sequences; credentials stay."""
        with self.transaction() as c:
            tables = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                if table != "meta":
                    c.execute(f'DELETE FROM "{table}"')
            c.execute("DELETE FROM meta WHERE key LIKE 'seq:%' OR key = 'generated'")

    def _log(self, system: str, obj: str, op: str, entries: Iterable[tuple[Any, dict[str, Any] | None]],
             at: str) -> None:
        """Append writes to ``write_log`` (inside the caller's transaction), once generated."""
        if self.log_writes:
            self.conn.executemany(
                "INSERT INTO write_log (system, object, record_id, op, fields, at) VALUES (?, ?, ?, ?, ?, ?)",
                [(system, obj, str(rid), op, None if fields is None else json.dumps(fields, default=str), at)
                 for rid, fields in entries],
            )

    def writes(self, since: int = 0) -> list[dict[str, Any]]:
        """The write log past sequence number ``since``: every record created, updated,
        deleted, archived or associated since the world was generated, with the values sent."""
        return [
            {"seq": r["seq"], "system": r["system"], "object": r["object"], "record_id": r["record_id"],
             "op": r["op"], "fields": None if r["fields"] is None else json.loads(r["fields"]), "at": r["at"]}
            for r in self.query("SELECT * FROM write_log WHERE seq > ? ORDER BY seq", (since,))
        ]

    def get_meta(self, key: str, default: Any = None) -> Any:
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0]["value"]) if rows else default

    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def _next(self, sequence: str, count: int, start: int) -> int:
        """Reserve ``count`` numbers of a sequence; return the first."""
        with self.transaction() as c:
            row = c.execute("SELECT value FROM meta WHERE key = ?", (f"seq:{sequence}",)).fetchone()
            first = json.loads(row["value"]) if row else start
            c.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                (f"seq:{sequence}", json.dumps(first + count)),
            )
        return int(first)

    def new_sf_ids(self, prefix: str, count: int) -> list[str]:
        first = self._next(f"sf:{prefix}", count, 1)
        return [sf_id(prefix, first + i) for i in range(count)]

    def new_hs_ids(self, object_name: str, count: int) -> list[int]:
        base = {"contacts": 1001, "companies": 5001, "deals": 9001}.get(object_name, 20001)
        first = self._next(f"hs:{object_name}", count, base)
        return list(range(first, first + count))

    def counts(self) -> dict[str, dict[str, int]]:
        """Live (not deleted or archived) record counts per object, per system."""
        sf = {
            name: self.query(f'SELECT count(*) FROM "sf_{name}" WHERE NOT "IsDeleted"')[0][0]
            for name in SALESFORCE_OBJECTS
        }
        hs = {
            name: self.query(f"SELECT count(*) FROM hs_{name} WHERE NOT archived")[0][0]
            for name in HUBSPOT_OBJECTS
        }
        hs["owners"] = self.query("SELECT count(*) FROM hs_owners WHERE NOT archived")[0][0]
        return {"salesforce": sf, "hubspot": hs}

    # -- Salesforce -----------------------------------------------------------------------

    def sf_insert(
        self, obj: SfObject, rows: Sequence[dict[str, Any]], now: datetime, user_id: str | None = None
    ) -> list[str]:
        """Insert records; ids and unset audit fields are assigned. Values are wire values."""
        ids = self.new_sf_ids(obj.key_prefix, len(rows))
        stamp = sf_datetime(now)
        names = [f.name for f in obj.fields]
        prepared: list[tuple[Any, ...]] = []
        history: list[dict[str, Any]] = []
        for rid, row in zip(ids, rows, strict=True):
            rec: dict[str, Any] = dict.fromkeys(names)
            rec.update(row)
            rec["Id"] = rid
            rec["IsDeleted"] = 0
            created = rec.get("CreatedDate") or stamp
            rec["CreatedDate"] = created
            if "LastModifiedDate" in rec:
                rec["LastModifiedDate"] = rec["LastModifiedDate"] or created
                rec["SystemModstamp"] = rec.get("SystemModstamp") or max(rec["LastModifiedDate"], created)
            for key in ("CreatedById", "LastModifiedById"):
                if key in rec and not rec[key]:
                    rec[key] = user_id or rec.get("OwnerId")
            _derive(obj.name, rec)
            prepared.append(tuple(_to_db(obj.field(n), rec[n]) for n in names))
            if obj.history_object:
                history.append({"parent": rid, "field": "created", "old": None, "new": None,
                                "at": created, "by": rec.get("CreatedById")})
        cols = ", ".join(f'"{n}"' for n in names)
        marks = ", ".join("?" for _ in names)
        with self.transaction() as c:
            c.executemany(f'INSERT INTO "sf_{obj.name}" ({cols}) VALUES ({marks})', prepared)
            self._log("salesforce", obj.name, "insert", zip(ids, rows, strict=True), stamp)
            if history and obj.history_object:
                self._sf_history(obj, history)
        return ids

    def _sf_history(self, obj: SfObject, entries: Sequence[dict[str, Any]]) -> None:
        assert obj.history_object
        hist = SALESFORCE_OBJECTS[obj.history_object]
        parent = hist.history_parent
        ids = self.new_sf_ids(hist.key_prefix, len(entries))
        self.conn.executemany(
            f'INSERT INTO "sf_{hist.name}" ("Id", "IsDeleted", "{parent}", "Field", "OldValue",'
            ' "NewValue", "DataType", "CreatedDate", "CreatedById") VALUES (?, 0, ?, ?, ?, ?, ?, ?, ?)',
            [
                (hid, e["parent"], e["field"], _str(e["old"]), _str(e["new"]),
                 _history_type(obj, e["field"]), e["at"], e["by"])
                for hid, e in zip(ids, entries, strict=True)
            ],
        )

    def sf_insert_history(self, obj: SfObject, entries: Sequence[dict[str, Any]]) -> None:
        """Bulk-insert field-history rows of ``obj`` (e.g. Lead) that happened in the past.

        Each entry: ``parent`` (record id), ``field``, ``old``, ``new``, ``at`` (wire datetime),
        ``by`` (user id). For importing history; live updates record theirs in ``sf_update``.
        """
        if entries:
            with self.transaction():
                self._sf_history(obj, entries)

    def sf_get(self, obj: SfObject, record_id: str, include_deleted: bool = False) -> dict[str, Any] | None:
        rows = self.query(f'SELECT * FROM "sf_{obj.name}" WHERE "Id" = ?', (record_id,))
        if not rows or (rows[0]["IsDeleted"] and not include_deleted):
            return None
        return {k: _from_db(obj.field(k), rows[0][k]) for k in rows[0].keys()}  # noqa: SIM118 - sqlite3.Row

    def sf_update(
        self, obj: SfObject, record_id: str, values: dict[str, Any], now: datetime,
        user_id: str | None = None, *, stamp: str | None = None,
    ) -> bool:
        """Update one record; returns False when it does not exist (or is deleted)."""
        with self.transaction():
            current = self.sf_get(obj, record_id)
            if current is None:
                return False
            stamp = stamp or sf_datetime(now)
            merged = {**current, **values}
            _derive(obj.name, merged)
            changed = {k: v for k, v in merged.items() if current.get(k) != v}
            history = [
                {"parent": record_id, "field": k, "old": current.get(k), "new": changed[k],
                 "at": stamp, "by": user_id or current.get("OwnerId")}
                for k in changed
                if (f := obj.field(k)) is not None and f.history_tracked
            ]
            changed["LastModifiedDate"] = stamp
            changed["SystemModstamp"] = stamp
            if user_id:
                changed["LastModifiedById"] = user_id
            sets = ", ".join(f'"{k}" = ?' for k in changed)
            self.conn.execute(
                f'UPDATE "sf_{obj.name}" SET {sets} WHERE "Id" = ?',
                [*(_to_db(obj.field(k), v) for k, v in changed.items()), record_id],
            )
            self._log("salesforce", obj.name, "update", [(record_id, values)], stamp)
            if history and obj.history_object:
                self._sf_history(obj, history)
        return True

    def sf_delete(self, obj: SfObject, record_id: str, now: datetime) -> bool:
        """Delete a record (to the recycle bin). As in Salesforce, deleting a lead or a contact
        deletes the tasks and events about it (``WhoId``) too."""
        with self.transaction() as c:
            if self.sf_get(obj, record_id) is None:
                return False
            stamp = sf_datetime(now)
            c.execute(
                f'UPDATE "sf_{obj.name}" SET "IsDeleted" = 1, "SystemModstamp" = ? WHERE "Id" = ?',
                (stamp, record_id),
            )
            c.execute("INSERT OR REPLACE INTO sf_deleted VALUES (?, ?, ?)", (obj.name, record_id, stamp))
            self._log("salesforce", obj.name, "delete", [(record_id, None)], stamp)
            if obj.name in ("Lead", "Contact"):
                for activity in ("Task", "Event"):
                    for (aid,) in c.execute(f'SELECT "Id" FROM "sf_{activity}" WHERE "WhoId" = ? AND NOT "IsDeleted"',
                                            (record_id,)).fetchall():
                        self.sf_delete(SALESFORCE_OBJECTS[activity], aid, now)
        return True

    def sf_find(self, obj: SfObject, field: str, value: Any) -> list[str]:
        rows = self.query(
            f'SELECT "Id" FROM "sf_{obj.name}" WHERE "{field}" = ? AND NOT "IsDeleted"', (value,)
        )
        return [r[0] for r in rows]

    # -- HubSpot --------------------------------------------------------------------------

    def hs_insert(
        self, object_name: str, records: Sequence[dict[str, Any]], now: datetime,
        *, created: Sequence[datetime | None] | None = None,
        history: Sequence[dict[str, list[tuple[str, datetime]]]] | None = None,
        source: str = "INTEGRATION",
    ) -> list[int]:
        """Create records. ``history`` may give, per record, past (value, time) pairs per property."""
        ids = self.new_hs_ids(object_name, len(records))
        obj = HUBSPOT_OBJECTS[object_name]
        rows: list[tuple[Any, ...]] = []
        hist_rows: list[tuple[Any, ...]] = []
        for i, (rid, props) in enumerate(zip(ids, records, strict=True)):
            at = (created[i] if created else None) or now
            p = {k: _hs_str(v) for k, v in props.items()}
            p["hs_object_id"] = str(rid)
            p[obj.created] = hs_datetime(at)
            modified = p.get(obj.modified) or hs_datetime(max(at, now) if not created else at)
            p[obj.modified] = modified
            p["hs_lastmodifieddate"] = modified
            _hs_derive(object_name, p, {}, at)
            past = (history[i] if history else None) or {}
            for name, value in p.items():
                if name in HS_HISTORY_TRACKED and value not in (None, ""):
                    entries = past.get(name) or [(value, at)]
                    hist_rows.extend(
                        (object_name, rid, name, _hs_str(v), hs_datetime(t), source) for v, t in entries
                    )
            rows.append((rid, p[obj.created], modified, json.dumps(p)))
        with self.transaction() as c:
            c.executemany(
                f"INSERT INTO hs_{object_name} (id, created_at, updated_at, props) VALUES (?, ?, ?, ?)", rows
            )
            c.executemany("INSERT INTO hs_history VALUES (?, ?, ?, ?, ?, ?)", hist_rows)
            self._log("hubspot", object_name, "create", zip(ids, records, strict=True), hs_datetime(now))
        return ids

    def hs_get(self, object_name: str, record_id: int, archived: bool = False) -> dict[str, Any] | None:
        rows = self.query(
            f"SELECT * FROM hs_{object_name} WHERE id = ? AND archived = ?", (record_id, int(archived))
        )
        if not rows:
            return None
        r = rows[0]
        return {"id": r["id"], "created_at": r["created_at"], "updated_at": r["updated_at"],
                "archived": bool(r["archived"]), "archived_at": r["archived_at"],
                "properties": json.loads(r["props"])}

    def hs_resolve(self, object_name: str, record_id: int) -> int:
        """Follow merges: the id of the surviving record."""
        seen = set()
        while record_id not in seen:
            seen.add(record_id)
            rows = self.query(
                "SELECT new_id FROM hs_merged WHERE object = ? AND old_id = ?", (object_name, record_id)
            )
            if not rows:
                break
            record_id = rows[0][0]
        return record_id

    def hs_update(
        self, object_name: str, record_id: int, props: dict[str, Any], now: datetime,
        source: str = "INTEGRATION",
    ) -> dict[str, Any] | None:
        """Set properties on a live record; maintains derived and history properties."""
        obj = HUBSPOT_OBJECTS[object_name]
        with self.transaction() as c:
            current = self.hs_get(object_name, record_id)
            if current is None:
                return None
            before = current["properties"]
            after = {**before, **{k: _hs_str(v) for k, v in props.items()}}
            stamp = hs_datetime(now)
            _hs_derive(object_name, after, before, now)
            changed = {k: v for k, v in after.items() if before.get(k) != v}
            if changed:
                after[obj.modified] = stamp
                after["hs_lastmodifieddate"] = stamp
                c.execute(
                    f"UPDATE hs_{object_name} SET updated_at = ?, props = ? WHERE id = ?",
                    (stamp, json.dumps(after), record_id),
                )
                c.executemany(
                    "INSERT INTO hs_history VALUES (?, ?, ?, ?, ?, ?)",
                    [(object_name, record_id, k, v, stamp, source)
                     for k, v in changed.items() if k in HS_HISTORY_TRACKED],
                )
            self._log("hubspot", object_name, "update", [(record_id, props)], stamp)
            current["properties"] = after
            if changed:
                current["updated_at"] = stamp
        return current

    def hs_archive(self, object_name: str, record_id: int, now: datetime) -> bool:
        """Archive (soft-delete); as in HubSpot, the last-modified date does not move."""
        with self.transaction() as c:
            cur = c.execute(
                f"UPDATE hs_{object_name} SET archived = 1, archived_at = ? WHERE id = ? AND archived = 0",
                (hs_datetime(now), record_id),
            )
            if cur.rowcount == 1:
                self._log("hubspot", object_name, "archive", [(record_id, None)], hs_datetime(now))
            return cur.rowcount == 1

    def hs_merge(self, object_name: str, primary: int, secondary: int, now: datetime) -> dict[str, Any] | None:
        """Merge ``secondary`` into ``primary``: associations move, the secondary id redirects."""
        with self.transaction() as c:
            keep = self.hs_get(object_name, primary)
            gone = self.hs_get(object_name, secondary)
            if keep is None or gone is None or primary == secondary:
                return None
            merged_ids = [x for x in (keep["properties"].get("hs_merged_object_ids") or "").split(";") if x]
            merged_ids += [str(secondary)] + [
                x for x in (gone["properties"].get("hs_merged_object_ids") or "").split(";") if x
            ]
            fill = {k: v for k, v in gone["properties"].items()
                    if v not in (None, "") and keep["properties"].get(k) in (None, "")
                    and k not in {"hs_object_id", "createdate", "hs_createdate"}}
            c.execute(f"DELETE FROM hs_{object_name} WHERE id = ?", (secondary,))
            c.execute("INSERT OR REPLACE INTO hs_merged VALUES (?, ?, ?)", (object_name, secondary, primary))
            c.execute("UPDATE hs_merged SET new_id = ? WHERE object = ? AND new_id = ?",
                      (primary, object_name, secondary))
            for direction in (("from_object", "from_id"), ("to_object", "to_id")):
                c.execute(
                    f"UPDATE OR IGNORE hs_assoc SET {direction[1]} = ? WHERE {direction[0]} = ? AND {direction[1]} = ?",
                    (primary, object_name, secondary),
                )
                c.execute(f"DELETE FROM hs_assoc WHERE {direction[0]} = ? AND {direction[1]} = ?",
                          (object_name, secondary))
            return self.hs_update(object_name, primary, {**fill, "hs_merged_object_ids": ";".join(merged_ids)}, now)

    def hs_associate(
        self, pairs: Iterable[tuple[str, int, str, int, int]], category: str = "HUBSPOT_DEFINED"
    ) -> None:
        """Create associations (from_object, from_id, to_object, to_id, type_id) and their inverses."""
        from detente.sandbox.schema import HS_ASSOCIATION_TYPES

        pairs = list(pairs)
        rows = []
        for fo, fid, to, tid, type_id in pairs:
            rows.append((fo, fid, to, tid, category, type_id))
            inverse = HS_ASSOCIATION_TYPES.get((to, fo))
            if inverse is not None:
                rows.append((to, tid, fo, fid, category, inverse))
        with self.transaction() as c:
            c.executemany("INSERT OR IGNORE INTO hs_assoc VALUES (?, ?, ?, ?, ?, ?)", rows)
            for fo, fid, to, tid, type_id in pairs if self.log_writes else ():
                self._log("hubspot", fo, "associate", [(fid, {"to": to, "to_id": tid, "type": type_id})],
                          hs_datetime(datetime.now(UTC)))

    def hs_associations(self, object_name: str, record_id: int, to_object: str) -> list[tuple[int, str, int]]:
        rows = self.query(
            "SELECT to_id, category, type_id FROM hs_assoc WHERE from_object = ? AND from_id = ?"
            " AND to_object = ? ORDER BY to_id",
            (object_name, record_id, to_object),
        )
        return [(r[0], r[1], r[2]) for r in rows]

    def hs_unassociate(
        self, from_object: str, from_id: int, to_object: str, to_id: int,
        type_ids: Sequence[int] | None = None,
    ) -> int:
        """Remove associations between two records: the given types one way, or (without
        ``type_ids``) every type both ways. Returns the number of rows removed."""
        with self.transaction() as c:
            if type_ids is not None:
                marks = ", ".join("?" for _ in type_ids)
                cur = c.execute(
                    "DELETE FROM hs_assoc WHERE from_object = ? AND from_id = ? AND to_object = ?"
                    f" AND to_id = ? AND type_id IN ({marks})",
                    (from_object, from_id, to_object, to_id, *type_ids),
                )
                return cur.rowcount
            cur = c.execute(
                "DELETE FROM hs_assoc WHERE (from_object = ? AND from_id = ? AND to_object = ? AND to_id = ?)"
                " OR (from_object = ? AND from_id = ? AND to_object = ? AND to_id = ?)",
                (from_object, from_id, to_object, to_id, to_object, to_id, from_object, from_id),
            )
            return cur.rowcount

    def hs_purge(self, object_name: str, record_id: int) -> bool:
        """Delete a record for good (GDPR delete): live or archived, with its history and
        associations. Returns False when there was no such record."""
        with self.transaction() as c:
            if c.execute(f"DELETE FROM hs_{object_name} WHERE id = ?", (record_id,)).rowcount == 0:
                return False
            c.execute("DELETE FROM hs_history WHERE object = ? AND id = ?", (object_name, record_id))
            c.execute(
                "DELETE FROM hs_assoc WHERE (from_object = ? AND from_id = ?) OR (to_object = ? AND to_id = ?)",
                (object_name, record_id, object_name, record_id),
            )
            return True

    def hs_custom_properties(self, object_name: str) -> list[dict[str, Any]]:
        """Definitions of the custom properties created on an object (properties API JSON)."""
        rows = self.query(
            "SELECT definition FROM hs_custom_props WHERE object = ? ORDER BY rowid", (object_name,)
        )
        return [json.loads(r[0]) for r in rows]

    def hs_create_custom_property(self, object_name: str, definition: dict[str, Any]) -> bool:
        """Store a custom property definition; False if the name is already taken."""
        with self.transaction() as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO hs_custom_props (object, name, definition) VALUES (?, ?, ?)",
                (object_name, definition["name"], json.dumps(definition)),
            )
            return cur.rowcount == 1

    def hs_history(self, object_name: str, record_id: int, prop: str) -> list[tuple[str, str, str]]:
        """(value, timestamp, source) newest first."""
        rows = self.query(
            "SELECT value, timestamp, source_type FROM hs_history WHERE object = ? AND id = ?"
            " AND property = ? ORDER BY timestamp DESC, rowid DESC",
            (object_name, record_id, prop),
        )
        return [(r[0], r[1], r[2]) for r in rows]

    def hs_insert_owners(self, owners: Sequence[dict[str, Any]], now: datetime) -> list[int]:
        ids = self.new_hs_ids("owners", len(owners))
        stamp = hs_datetime(now)
        with self.transaction() as c:
            c.executemany(
                "INSERT INTO hs_owners VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(oid, o["email"], o.get("first_name"), o.get("last_name"), o.get("user_id", oid * 7 + 3),
                  json.dumps(o.get("teams", [])), int(o.get("archived", False)),
                  o.get("created_at", stamp), stamp)
                 for oid, o in zip(ids, owners, strict=True)],
            )
        return ids


def _str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _hs_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return hs_datetime(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _history_type(obj: SfObject, field_name: str) -> str:
    f = obj.field(field_name)
    if f is None:
        return "Text"
    return {"picklist": "DynamicEnum", "reference": "EntityId", "currency": "Currency",
            "date": "Date", "datetime": "DateTime", "double": "Double"}.get(f.type, "Text")


def _to_db(f: SfField | None, value: Any) -> Any:
    if value is None or f is None:
        return value
    if f.type == "boolean":
        return int(bool(value)) if not isinstance(value, str) else int(value.lower() == "true")
    if f.type == "int":
        return int(value)
    if f.type in {"double", "currency", "percent"}:
        return float(value)
    if f.type == "datetime" and isinstance(value, datetime):
        return sf_datetime(value)
    if f.type == "date" and isinstance(value, date):
        return value.isoformat()
    return value


def _from_db(f: SfField | None, value: Any) -> Any:
    if value is None or f is None:
        return value
    if f.type == "boolean":
        return bool(value)
    return value


_CLOSED_WON = "Closed Won"
_CLOSED_LOST = "Closed Lost"
_RESPONDED = {"Responded", "Registered", "Attended"}


def _derive(object_name: str, rec: dict[str, Any]) -> None:
    """Server-computed Salesforce fields."""
    if object_name in {"Lead", "Contact", "User"} and "LastName" in rec:
        rec["Name"] = " ".join(x for x in (rec.get("FirstName"), rec.get("LastName")) if x) or None
    if object_name == "Opportunity":
        stage = rec.get("StageName")
        rec["IsClosed"] = stage in {_CLOSED_WON, _CLOSED_LOST}
        rec["IsWon"] = stage == _CLOSED_WON
    if object_name == "Task":
        rec["IsClosed"] = rec.get("Status") == "Completed"
        if rec.get("TaskSubtype") is None:
            rec["TaskSubtype"] = "Task"
    if object_name == "CampaignMember":
        rec["HasResponded"] = rec.get("Status") in _RESPONDED
    if object_name == "Lead" and rec.get("IsConverted") is None:
        rec["IsConverted"] = False
    if object_name == "User" and rec.get("IsActive") is None:
        rec["IsActive"] = True


def _hs_derive(object_name: str, after: dict[str, Any], before: dict[str, Any], now: datetime) -> None:
    """Server-computed HubSpot properties: email domain, lifecycle dates, deal flags."""
    if object_name == "contacts":
        email = after.get("email")
        after["hs_email_domain"] = email.rsplit("@", 1)[1].lower() if email and "@" in email else None
        stage = after.get("lifecyclestage")
        if stage and stage != before.get("lifecyclestage") and stage in HUBSPOT_LIFECYCLE_ORDER:
            key = f"hs_lifecyclestage_{stage}_date"
            # A date given with the change (an import of history) is kept; otherwise the
            # stage was entered now.
            if not after.get(key) or after.get(key) == before.get(key):
                after[key] = hs_datetime(now)
    if object_name == "deals":
        stage = after.get("dealstage")
        after["hs_is_closed"] = "true" if stage in {"closedwon", "closedlost"} else "false"
        after["hs_is_closed_won"] = "true" if stage == "closedwon" else "false"
