"""Salesforce rows to Records: an object's describe reduced to what parsing needs, and the
checks that turn a REST record or a Bulk API 2.0 CSV row into the same ``Record`` (values
typed by the describe, datetimes in one canonical form) or, when a value does not fit its
field, a ``Reject`` whose reason names the field and the value's shape, never the value.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property, lru_cache
from typing import Any

from detente.connectors.base import Record, Reject
from detente.errors import shape

TEXT_TYPES = frozenset({
    "id", "reference", "string", "textarea", "email", "phone", "url", "picklist", "multipicklist",
    "combobox", "encryptedstring",
})
INT_TYPES = frozenset({"int", "long"})
FLOAT_TYPES = frozenset({"double", "currency", "percent"})
# Compound fields repeat their components and Bulk API 2.0 cannot select them; base64 fields
# are file bodies, one per query at most. Neither belongs in a page of records.
SKIPPED_TYPES = frozenset({"address", "location", "base64"})
CURSOR_FIELDS = ("SystemModstamp", "CreatedDate")

_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_OFFSET = re.compile(r"([+-]\d{2})(\d{2})$")
# Salesforce's own forms of a UTC instant with milliseconds: REST's +0000 and Bulk CSV's Z.
_PLAIN_UTC = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3})(?:\+0000|Z)")
SLOW = object()  # a quick converter's answer when the value needs ``convert``'s full checks


@dataclass(frozen=True)
class FieldSpec:
    """One field as parsing needs it."""

    name: str
    type: str
    length: int = 0
    picklist: frozenset[str] | None = None  # the values of a restricted picklist


@dataclass(frozen=True)
class ObjectSchema:
    """The fields of one object the integration user can read, from its describe."""

    name: str
    fields: tuple[FieldSpec, ...]
    _by_name: dict[str, FieldSpec] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update({f.name: f for f in self.fields})

    _quick: dict[bool, dict[str, Callable[[Any], Any]]] = field(default_factory=dict, compare=False, repr=False)

    def field(self, name: str) -> FieldSpec | None:
        return self._by_name.get(name)

    def quick(self, text: bool) -> dict[str, Callable[[Any], Any]]:
        """Per field, a converter for the values that need no more than a glance (``quick``)."""
        found = self._quick.get(text)
        if found is None:
            found = self._quick[text] = {f.name: quick(f, text) for f in self.fields}
        return found

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    @cached_property
    def cursor(self) -> str | None:
        """The field incremental pulls order by: SystemModstamp, or CreatedDate on history rows."""
        return next((c for c in CURSOR_FIELDS if c in self._by_name), None)


def schema_from_describe(describe: Mapping[str, Any]) -> ObjectSchema:
    """An ObjectSchema from ``GET /sobjects/{Object}/describe``."""
    specs = []
    for f in describe.get("fields") or []:
        kind = str(f.get("type") or "")
        if kind in SKIPPED_TYPES:
            continue
        picklist = None
        if kind in {"picklist", "multipicklist"} and f.get("restrictedPicklist") and f.get("picklistValues"):
            picklist = frozenset(str(v.get("value")) for v in f["picklistValues"])
        specs.append(FieldSpec(str(f["name"]), kind, int(f.get("length") or 0), picklist))
    return ObjectSchema(str(describe.get("name")), tuple(specs))


# -- datetimes ------------------------------------------------------------------------------


def parse_datetime(text: str) -> datetime:
    """Salesforce's ``2024-05-20T20:49:32.000+0000`` (or ``...Z``) → aware UTC, milliseconds kept."""
    return _canonical(text)[1]


@lru_cache(maxsize=65_536)
def _canonical(text: str) -> tuple[str, datetime]:
    # Records share stamps by the thousand (bulk updates, imports): parse each text once.
    plain = _PLAIN_UTC.fullmatch(text)
    if plain is not None:  # already UTC to the millisecond: checked by the parser, not rebuilt
        try:
            return plain[1] + "+0000", datetime.fromisoformat(plain[1]).replace(tzinfo=UTC)
        except ValueError:
            pass
    parsed = _parse_datetime(text)
    return format_datetime(parsed), parsed


def _parse_datetime(text: str) -> datetime:
    value = text.strip()
    if "T" not in value:
        raise ValueError("no time part")
    value = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else _OFFSET.sub(r"\1:\2", value)
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("no time zone")
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError:  # year 1 east of UTC, or year 9999 west of it
        raise ValueError("out of range in UTC") from None
    return parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)


def format_datetime(value: datetime) -> str:
    """The canonical stored form, Salesforce's REST form: ``2024-05-20T20:49:32.000+0000``."""
    value = value.astimezone(UTC)
    # Not %Y: it leaves years before 1000 unpadded, which fromisoformat cannot read back.
    return f"{value.year:04d}" + value.strftime("-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def soql_datetime(value: datetime) -> str:
    """A SOQL datetime literal with milliseconds: ``2024-05-20T20:49:32.000Z``."""
    value = value.astimezone(UTC)
    return f"{value.year:04d}" + value.strftime("-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


# -- values ---------------------------------------------------------------------------------


def convert(spec: FieldSpec, value: Any, *, text: bool = False) -> tuple[Any, str | None]:
    """A value as detente stores it, or a problem that names what was expected and the shape.

    ``text`` values come from Bulk CSV, where every value is a string and null is empty.
    Salesforce keeps an empty string as null, so REST's rare ``""`` becomes null as well.
    """
    if value is None or value == "":
        return None, None
    kind = spec.type
    if kind == "boolean":
        if text and value in ("true", "false"):
            return value == "true", None
        if not text and isinstance(value, bool):
            return value, None
        return None, f"expected a boolean, got {shape(value)}"
    if kind in INT_TYPES:
        number = _number(value, text)
        if number is None or not float(number).is_integer():
            return None, f"expected an integer, got {shape(value)}"
        return int(number), None
    if kind in FLOAT_TYPES:
        number = _number(value, text)
        if number is None:
            return None, f"expected a number, got {shape(value)}"
        return float(number), None
    if kind == "datetime":
        if isinstance(value, str):
            try:
                return _canonical(value)[0], None
            except ValueError:
                pass
        return None, f"expected a datetime, got {shape(value)}"
    if kind == "date":
        if isinstance(value, str) and _DATE.fullmatch(value):
            try:
                return date.fromisoformat(value).isoformat(), None
            except ValueError:
                pass
        return None, f"expected a date, got {shape(value)}"
    if kind in TEXT_TYPES or kind == "time":
        if not isinstance(value, str):
            return None, f"expected text, got {shape(value)}"
        if "\x00" in value:
            return None, f"contains a NUL byte ({shape(value)})"
        if kind in {"id", "reference"} and not _ID.fullmatch(value):
            return None, f"expected a record id, got {shape(value)}"
        if spec.length and len(value) > spec.length:
            return None, f"{len(value)} characters, longer than the field's {spec.length}"
        if spec.picklist is not None:
            chosen = value.split(";") if kind == "multipicklist" else [value]
            if any(v not in spec.picklist for v in chosen):
                return None, f"not a value of the restricted picklist ({shape(value)})"
        return value, None
    # anyType (history OldValue/NewValue) and types detente does not interpret: kept as given.
    if isinstance(value, str) and "\x00" in value:
        return None, f"contains a NUL byte ({shape(value)})"
    if isinstance(value, dict | list):
        return None, f"expected a single value, got {shape(value)}"
    return value, None


def quick(spec: FieldSpec, text: bool) -> Callable[[Any], Any]:
    """A converter that gives exactly what ``convert`` gives for the values every page is made
    of (plain text within its length, booleans, finite numbers, Salesforce's datetimes) in a
    fraction of its time, and ``SLOW`` for anything else, which ``convert`` then checks."""
    kind, length, picklist = spec.type, spec.length, spec.picklist
    if kind in TEXT_TYPES or kind == "time":
        ids = kind in {"id", "reference"}
        single = picklist if kind != "multipicklist" else None
        if kind == "multipicklist" and picklist is not None:
            return lambda v: None if v is None or v == "" else SLOW

        def text_value(v: Any) -> Any:
            if v is None or v == "":
                return None
            if (type(v) is not str or "\x00" in v or (length and len(v) > length)
                    or (ids and not _ID.fullmatch(v)) or (single is not None and v not in single)):
                return SLOW
            return v

        return text_value
    if kind == "boolean":
        truth = {"true": True, "false": False} if text else {True: True, False: False}
        return lambda v: None if v is None or v == "" else truth.get(v, SLOW) if type(v) in (str, bool) else SLOW
    if kind == "datetime":
        def instant(v: Any) -> Any:
            if v is None or v == "":
                return None
            if type(v) is not str:
                return SLOW
            try:
                return _canonical(v)[0]
            except ValueError:
                return SLOW

        return instant
    if kind in FLOAT_TYPES:
        def number(v: Any) -> Any:
            if v is None or v == "":
                return None
            if not (type(v) is str if text else type(v) in (int, float)):
                return SLOW
            try:
                x = float(v)
            except (ValueError, OverflowError):  # not a number; an integer beyond any float
                return SLOW
            return x if math.isfinite(x) else SLOW

        return number
    return lambda v: None if v is None or v == "" else SLOW


def _number(value: Any, text: bool) -> float | int | None:
    if isinstance(value, bool):
        return None
    if text and isinstance(value, str):
        try:
            number: float | int = int(value) if re.fullmatch(r"-?\d+", value) else float(value)
        except ValueError:
            return None
    elif isinstance(value, int | float):
        number = value
    else:
        return None
    try:
        return number if math.isfinite(number) else None
    except OverflowError:  # an integer beyond any float: no Salesforce number field holds it
        return None


# -- rows -----------------------------------------------------------------------------------


def parse_row(schema: ObjectSchema, raw: Mapping[str, Any], *, text: bool = False) -> Record | Reject:
    """One row (REST JSON, or a Bulk CSV row as a dict of strings) → Record, or Reject with
    every problem found in it."""
    obj = schema.name
    data: dict[str, Any] = {}
    problems: list[str] = []
    fast = schema.quick(text)
    for key, value in raw.items():
        if key == "attributes":
            continue
        glance = fast.get(key)
        if glance is not None:
            got = glance(value)
            if got is not SLOW:
                data[key] = got
                continue
        spec = schema.field(key)
        if spec is None:
            if isinstance(value, str) and "\x00" in value:
                problems.append(f"{obj}.{key}: contains a NUL byte ({shape(value)})")
            else:
                data[key] = value
            continue
        converted, problem = convert(spec, value, text=text)
        if problem is not None:
            problems.append(f"{obj}.{key}: {problem}")
        else:
            data[key] = converted
    record_id = raw.get("Id")
    if record_id is None or record_id == "":
        problems.insert(0, f"{obj}.Id: missing")
    cursor = schema.cursor
    stamp = data.get(cursor) if cursor else None
    if cursor is not None and stamp is None and not any(p.startswith(f"{obj}.{cursor}:") for p in problems):
        problems.append(f"{obj}.{cursor}: missing")
    if problems or not isinstance(record_id, str) or stamp is None:
        return Reject(obj, _reject_id(record_id, raw), "; ".join(problems), safe_payload(raw))
    deleted = data.get("IsDeleted") is True
    merged = data.get("MasterRecordId") if deleted else None
    return Record(obj, record_id, parse_datetime(stamp), data, deleted, merged if isinstance(merged, str) else None)


def parse_csv(schema: ObjectSchema, text: str) -> list[Record | Reject]:
    """A Bulk API 2.0 result chunk (CSV with a header row, empty cells for null) → rows."""
    return list(iter_csv(schema, text))


def iter_csv(schema: ObjectSchema, text: str) -> Iterator[Record | Reject]:
    """Rows of a result chunk one at a time, so a 50,000-row chunk need not be held parsed."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        return
    for cells in reader:
        if not cells:
            continue
        if len(cells) != len(header):
            raw = dict(zip(header, cells, strict=False))
            reason = f"{schema.name}: a CSV row of {len(cells)} cells under a header of {len(header)}"
            yield Reject(schema.name, _reject_id(raw.get("Id"), raw), reason, safe_payload(raw))
            continue
        yield parse_row(schema, dict(zip(header, cells, strict=True)), text=True)


def _reject_id(record_id: Any, raw: Mapping[str, Any]) -> str:
    if isinstance(record_id, str) and record_id and "\x00" not in record_id and len(record_id) <= 64:
        return record_id
    # No usable id: name the row by its content, so re-reading it quarantines it once.
    digest = hashlib.sha256(json.dumps(safe_payload(raw), sort_keys=True, default=str).encode()).hexdigest()
    return f"no-id-{digest[:16]}"


def safe_payload(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The row as quarantine keeps it: without ``attributes``, NUL bytes replaced (PostgreSQL's
    JSON cannot hold them), non-finite numbers as text."""
    return {_safe(str(k)): _safe(v) for k, v in raw.items() if k != "attributes"}


def _safe(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {_safe(str(k)): _safe(v) for k, v in value.items() if k != "attributes"}
    if isinstance(value, list):
        return [_safe(v) for v in value]
    return value


def split(rows: Iterable[Record | Reject]) -> tuple[list[Record], list[Reject]]:
    """Records and rejects apart; one of each id at most (the last wins), as a page needs."""
    records: dict[str, Record] = {}
    rejects: dict[str, Reject] = {}
    for row in rows:
        if isinstance(row, Record):
            records[row.id] = row
            rejects.pop(row.id, None)
        else:
            rejects[row.id] = row
            records.pop(row.id, None)
    return list(records.values()), list(rejects.values())
