"""HubSpot records on the wire: ``SimplePublicObject`` JSON built from the world's rows, with
the requested properties, property history and inline associations fetched per page (one
query each, never one per record).
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from detente.sandbox.schema import (
    HS_ASSOCIATION_TYPES,
    HS_PRIMARY_ASSOCIATION_TYPES,
    HUBSPOT_OBJECTS,
    HsObject,
    HsProperty,
)
from detente.sandbox.store import HS_HISTORY_TRACKED, World

Row = sqlite3.Row
History = dict[tuple[int, str], list[dict[str, Any]]]
Associations = dict[tuple[int, str], list[dict[str, str]]]


def property_names(obj: HsObject, requested: Sequence[str] | None, props: Mapping[str, HsProperty]) -> list[str]:
    """What a response carries: the defaults, or the requested known properties plus the
    id, created and modified properties HubSpot always adds."""
    if not requested:
        return list(obj.defaults)
    names = dict.fromkeys(n for n in requested if n in props)
    for always in ("hs_object_id", obj.created, obj.modified):
        names.setdefault(always)
    return list(names)


def fetch(world: World, obj: HsObject, ids: Iterable[int], *, archived: bool = False) -> dict[int, Row]:
    """Rows by id (live, or archived ones only)."""
    wanted = sorted(set(ids))
    rows: dict[int, Row] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        for r in world.query(
            f"SELECT * FROM hs_{obj.name} WHERE archived = ? AND id IN ({marks})", (int(archived), *chunk)
        ):
            rows[r["id"]] = r
    return rows


def history(world: World, obj: HsObject, rows: Sequence[Row], names: Sequence[str]) -> History:
    """Property history newest first. Untracked properties (and tracked ones without rows)
    come back as their current value, stamped with the record's last change."""
    out: History = {}
    if not rows or not names:
        return out
    tracked = [n for n in names if n in HS_HISTORY_TRACKED]
    if tracked:
        ids = [r["id"] for r in rows]
        id_marks = ", ".join("?" for _ in ids)
        name_marks = ", ".join("?" for _ in tracked)
        for h in world.query(
            f"SELECT id, property, value, timestamp, source_type FROM hs_history WHERE object = ?"
            f" AND id IN ({id_marks}) AND property IN ({name_marks})"
            " ORDER BY timestamp DESC, rowid DESC",
            (obj.name, *ids, *tracked),
        ):
            out.setdefault((h["id"], h["property"]), []).append(
                {
                    "value": h["value"] if h["value"] is not None else "",
                    "timestamp": h["timestamp"],
                    "sourceType": h["source_type"],
                }
            )
    for r in rows:
        current = json.loads(r["props"])
        for name in names:
            value = current.get(name)
            if (r["id"], name) not in out:
                out[(r["id"], name)] = (
                    []
                    if value in (None, "")
                    else [{"value": value, "timestamp": r["updated_at"], "sourceType": "INTEGRATION"}]
                )
    return out


def association_label(from_name: str, to_name: str, type_id: int) -> str:
    """The v3 ``type`` of an inline association: contact_to_deal, contact_to_company_unlabeled."""
    base = f"{HUBSPOT_OBJECTS[from_name].singular}_to_{HUBSPOT_OBJECTS[to_name].singular}"
    if HS_PRIMARY_ASSOCIATION_TYPES.get((from_name, to_name)) == type_id:
        return base
    if HS_ASSOCIATION_TYPES.get((from_name, to_name)) == type_id:
        return base + "_unlabeled" if (from_name, to_name) in HS_PRIMARY_ASSOCIATION_TYPES else base
    return str(type_id)


def associations(world: World, obj: HsObject, ids: Sequence[int], to_names: Sequence[str]) -> Associations:
    out: Associations = defaultdict(list)
    if not ids:
        return out
    id_marks = ", ".join("?" for _ in ids)
    for to in to_names:
        for a in world.query(
            f"SELECT from_id, to_id, type_id FROM hs_assoc WHERE from_object = ? AND from_id IN ({id_marks})"
            " AND to_object = ? ORDER BY from_id, to_id, type_id",
            (obj.name, *ids, to),
        ):
            out[(a["from_id"], to)].append(
                {"id": str(a["to_id"]), "type": association_label(obj.name, to, a["type_id"])}
            )
    return out


def render(
    obj: HsObject,
    row: Row,
    names: Sequence[str] | None,
    *,
    with_history: Sequence[str] = (),
    hist: History | None = None,
    to_names: Sequence[str] = (),
    assoc: Associations | None = None,
) -> dict[str, Any]:
    """One record as ``SimplePublicObject(WithAssociations)``. ``names=None``: every stored property."""
    stored: dict[str, Any] = json.loads(row["props"])
    props = dict(stored) if names is None else {n: stored.get(n) for n in names}
    record: dict[str, Any] = {
        "id": str(row["id"]),
        "properties": props,
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
        "archived": bool(row["archived"]),
    }
    if row["archived"]:
        record["archivedAt"] = row["archived_at"]
    if with_history:
        record["propertiesWithHistory"] = {n: (hist or {}).get((row["id"], n), []) for n in with_history}
    if to_names and assoc is not None:
        found = {to: {"results": assoc[(row["id"], to)]} for to in to_names if assoc.get((row["id"], to))}
        if found:
            record["associations"] = found
    return record


def render_page(
    world: World,
    obj: HsObject,
    rows: Sequence[Row],
    names: Sequence[str] | None,
    *,
    with_history: Sequence[str] = (),
    to_names: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Records of one page; history and associations cost one query each for the page."""
    hist = history(world, obj, rows, with_history) if with_history else None
    assoc = associations(world, obj, [r["id"] for r in rows], to_names) if to_names else None
    return [render(obj, r, names, with_history=with_history, hist=hist, to_names=to_names, assoc=assoc) for r in rows]
