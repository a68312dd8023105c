"""HubSpot records, checked and shaped: the raw ``SimplePublicObject`` JSON becomes a
``Record`` whose data keeps what HubSpot returned plus the associations and property history
read beside it, or a ``Reject`` that names each property that is wrong and how (never its
value: values are personal data), with a payload that any store can hold.

Everything here is pure; the property definitions come from the properties API.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from detente.connectors.base import Record, Reject
from detente.connectors.hs_window import from_ms, to_ms

PAYLOAD_VALUE_CHARS = 2_000  # longer strings are cut in a quarantined payload
MAX_PROBLEMS = 10  # named in one reason; the rest are counted
_DIGITS = re.compile(r"^[0-9]{1,30}$")  # ASCII: \d also takes digits int() reads as others
_EPOCH_MS = re.compile(r"^-?\d{1,15}$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class PropertyDef:
    """What a record's value of one property must look like."""

    name: str
    type: str  # string, number, datetime, date, bool, enumeration, phone_number, ...
    field_type: str
    options: frozenset[str] | None  # None: not checked (free values or options kept elsewhere)


def property_defs(results: Iterable[Mapping[str, Any]]) -> dict[str, PropertyDef]:
    """Definitions from ``GET /crm/v3/properties/{object}`` results."""
    defs: dict[str, PropertyDef] = {}
    for item in results:
        name = item.get("name")
        if not isinstance(name, str) or not name:
            continue
        kind = str(item.get("type") or "string")
        raw_options = item.get("options") or []
        values = frozenset(str(o["value"]) for o in raw_options if isinstance(o, Mapping) and "value" in o)
        checked = kind in {"enumeration", "bool"} and bool(values) and not item.get("externalOptions")
        defs[name] = PropertyDef(name, kind, str(item.get("fieldType") or ""), values if checked else None)
    return defs


def parse_instant(text: str) -> datetime | None:
    """ISO-8601 (``2024-09-11T13:27:39.356Z``) or epoch milliseconds; None if neither."""
    text = text.strip()
    if _EPOCH_MS.match(text):
        try:
            return from_ms(int(text))
        except OverflowError:
            return None
    try:
        parsed = datetime.fromisoformat(text)
        return parsed.astimezone(UTC) if parsed.tzinfo is not None else None
    except (ValueError, OverflowError):  # OverflowError: year 1 east of UTC, year 9999 west
        return None


def modified_ms(raw: Mapping[str, Any], modified: str) -> int | None:
    """A search result's modification time in epoch ms, or None when unreadable."""
    instant = _modified_at(raw, modified)
    return to_ms(instant) if instant is not None else None


def record_id(raw: Mapping[str, Any]) -> int | None:
    rid = raw.get("id")
    if isinstance(rid, int) and not isinstance(rid, bool) and 0 <= rid < 10**30:
        return rid
    if isinstance(rid, str) and _DIGITS.fullmatch(rid):
        return int(rid)
    return None


def _modified_at(raw: Mapping[str, Any], modified: str) -> datetime | None:
    props = raw.get("properties")
    value = props.get(modified) if isinstance(props, Mapping) else None
    if value is None:
        value = raw.get("updatedAt")
    return parse_instant(value) if isinstance(value, str) else None


def value_problem(definition: PropertyDef | None, value: Any, max_chars: int) -> str | None:
    """What is wrong with one property value, or None. Never quotes the value."""
    if value is None or value == "":
        return None
    if type(value) is not str:
        return _non_string_problem(definition, value)
    if "\x00" in value:
        return "contains a NUL byte"
    if len(value) > max_chars:
        return f"is {len(value)} characters long, more than the {max_chars} allowed"
    if definition is None or (definition.type in _FREE_TYPES and definition.options is None):
        return None
    kind = definition.type
    if kind == "number":
        try:
            number = float(value)
        except ValueError:
            return "is not a number"
        return None if math.isfinite(number) else "is not a finite number"
    if kind == "datetime":
        return None if parse_instant(value) is not None else "is not a timestamp (ISO-8601 or epoch milliseconds)"
    if kind == "date":
        if _DAY.match(value):
            try:
                date.fromisoformat(value)
            except ValueError:
                return "is not a calendar date"
            return None
        return None if parse_instant(value) is not None else "is not a date (YYYY-MM-DD)"
    if kind == "bool" and definition.options is None:
        return None if value.lower() in {"true", "false"} else "is not true or false"
    if definition.options is not None:
        chosen = value.split(";") if definition.field_type == "checkbox" else [value]
        unknown = sum(1 for v in chosen if v not in definition.options)
        if unknown:
            return f"is not one of the {len(definition.options)} options the property defines"
    return None


_FREE_TYPES = frozenset({"string", "phone_number", "enumeration"})  # enumeration: only when it has options


def _non_string_problem(definition: PropertyDef | None, value: Any) -> str | None:
    if isinstance(value, (dict, list)):
        return f"holds a JSON {'object' if isinstance(value, dict) else 'array'}, not a value"
    kind = definition.type if definition is not None else "string"
    if isinstance(value, float) and not math.isfinite(value):
        return "is not a finite number"
    fits = (kind == "number" and isinstance(value, (int, float))) or (kind == "bool" and isinstance(value, bool))
    return None if fits else f"is a JSON {type(value).__name__}, expected a {kind} as a string"


def record_problems(
    raw: Mapping[str, Any], modified: str, defs: Mapping[str, PropertyDef], max_chars: int
) -> list[str]:
    """Every problem with a record, each naming the property and what is wrong."""
    problems: list[str] = []
    if raw.get("id") in (None, ""):
        problems.append("id: missing")
    elif record_id(raw) is None:
        problems.append("id: not a HubSpot record id")
    props = raw.get("properties")
    if not isinstance(props, Mapping):
        return [*problems, "properties: missing"]
    stamp = props.get(modified)
    if stamp is None and raw.get("updatedAt") is None:
        problems.append(f"{modified}: missing (the record's modification time)")
    elif _modified_at(raw, modified) is None:
        problems.append(f"{modified}: not a timestamp (the record's modification time)")
    for name, value in props.items():
        if name == modified and any(p.startswith(f"{modified}:") for p in problems):
            continue
        problem = value_problem(defs.get(name), value, max_chars)
        if problem:
            problems.append(f"{name}: {problem}")
    history = raw.get("propertiesWithHistory")
    if history is not None and not isinstance(history, Mapping):
        problems.append("propertiesWithHistory: not an object")
    if isinstance(history, Mapping):
        for name, entries in history.items():
            if not isinstance(entries, list):  # build() copies each as a list
                problems.append(f"history of {name}: not a list of entries")
                continue
            for entry in entries:
                if not isinstance(entry, Mapping):
                    problems.append(f"history of {name}: an entry is not an object")
                    break
                stamp_text = entry.get("timestamp")
                if not isinstance(stamp_text, str) or parse_instant(stamp_text) is None:
                    problems.append(f"history of {name}: an entry's timestamp is not a timestamp")
                    break
                # Past values are checked as values only: a stage or option may have been
                # removed from the portal since, and history keeps it.
                problem = value_problem(None, entry.get("value"), max_chars)
                if problem:
                    problems.append(f"history of {name}: a past value {problem}")
                    break
    return problems


def build(
    object_name: str,
    raw: Mapping[str, Any],
    *,
    modified: str,
    defs: Mapping[str, PropertyDef],
    max_chars: int,
    associations: Mapping[str, Sequence[str]] | None = None,
) -> Record | Reject:
    """A checked record, or a reject naming what is wrong with it."""
    problems = record_problems(raw, modified, defs, max_chars)
    if problems:
        shown = problems[:MAX_PROBLEMS]
        more = len(problems) - len(shown)
        reason = "; ".join(shown) + (f"; and {more} more problems" if more else "")
        rid = record_id(raw)
        return Reject(object_name, str(rid) if rid is not None else _anonymous_id(raw), reason, safe_payload(raw))
    modified_at = _modified_at(raw, modified)
    assert modified_at is not None
    data: dict[str, Any] = {k: v for k, v in raw.items() if k not in {"propertiesWithHistory", "associations"}}
    data["id"] = str(record_id(raw))
    if associations is not None:
        data["associations"] = {k: list(v) for k, v in sorted(associations.items())}
    history = raw.get("propertiesWithHistory")
    if isinstance(history, Mapping):
        data["history"] = {k: list(v) for k, v in sorted(history.items())}
    return Record(object_name, data["id"], modified_at, data)


def merged_away(record: Record) -> list[Record]:
    """Records merged into this one (``hs_merged_object_ids``), as deletions that point here."""
    props = record.data.get("properties") or {}
    raw = props.get("hs_merged_object_ids") if isinstance(props, Mapping) else None
    if not isinstance(raw, str):
        return []
    ids = sorted({part.strip() for part in raw.split(";") if _DIGITS.match(part.strip())} - {record.id}, key=int)
    return [Record(record.object, rid, record.modified_at, {}, deleted=True, merged_into=record.id) for rid in ids]


def safe_payload(value: Any) -> Any:
    """A copy any store can hold as JSON: NUL bytes replaced, long strings cut."""
    if isinstance(value, str):
        value = value.replace("\x00", "\ufffd")
        if len(value) > PAYLOAD_VALUE_CHARS:
            return value[:PAYLOAD_VALUE_CHARS] + f"...[cut; {len(value)} characters in all]"
        return value
    if isinstance(value, Mapping):
        return {str(safe_payload(k)): safe_payload(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [safe_payload(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _anonymous_id(raw: Mapping[str, Any]) -> str:
    """A stable key for a record without a usable id, so its rejects do not collide."""
    digest = hashlib.sha1(json.dumps(safe_payload(raw), sort_keys=True, default=str).encode()).hexdigest()
    return f"no-id-{digest[:16]}"
