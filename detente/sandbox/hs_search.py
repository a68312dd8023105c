"""HubSpot CRM search: a request body is validated and compiled into one SQL query.

Compilation is pure (body, catalog, visibility cut-off → ``SearchQuery``). The modified and
created properties map to the indexed ``updated_at`` and ``created_at`` columns and
``hs_object_id`` to the primary key, so the windowed, sorted scans an incremental sync runs
stay cheap on large worlds; other properties go through ``json_extract``.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from detente.sandbox.hs_errors import validation
from detente.sandbox.hs_props import parse_instant
from detente.sandbox.schema import HsObject, HsProperty, hs_object
from detente.sandbox.store import hs_datetime

MAX_GROUPS = 5
MAX_FILTERS_PER_GROUP = 6
MAX_FILTERS = 18
MAX_LIMIT = 200
DEFAULT_LIMIT = 10
MAX_RESULTS = 10_000

_VALUE_OPS = {"EQ": "=", "NEQ": "=", "LT": "<", "LTE": "<=", "GT": ">", "GTE": ">="}
OPERATORS = frozenset(
    {
        *_VALUE_OPS,
        "BETWEEN",
        "IN",
        "NOT_IN",
        "HAS_PROPERTY",
        "NOT_HAS_PROPERTY",
        "CONTAINS_TOKEN",
        "NOT_CONTAINS_TOKEN",
    }
)
_SAFE_NAME = re.compile(r"^[a-z0-9_]+$")
_TOKEN = re.compile(r"[a-z0-9]+")

# What the free-text ``query`` looks through, per object.
QUERY_PROPERTIES: dict[str, tuple[str, ...]] = {
    "contacts": ("email", "firstname", "lastname", "phone", "company"),
    "companies": ("name", "domain"),
    "deals": ("dealname",),
    "tasks": ("hs_task_subject", "hs_task_body"),
    "calls": ("hs_call_title", "hs_call_body"),
    "emails": ("hs_email_subject", "hs_email_text"),
    "meetings": ("hs_meeting_title", "hs_meeting_body"),
}


@dataclass(frozen=True)
class SearchQuery:
    """A compiled search: the WHERE clause, its parameters, the order and the page window."""

    table: str
    where: str
    params: tuple[Any, ...]
    order_by: str
    limit: int
    offset: int
    properties: list[str] | None


@dataclass(frozen=True)
class _Column:
    expr: str
    kind: str  # id, number, datetime, date, bool, enumeration, string
    always_set: bool = False


def contains_token(text: str | None, wanted: str | None) -> int:
    """CONTAINS_TOKEN: every word of ``wanted`` is a word of ``text``; ``*`` is a wildcard."""
    if text is None or wanted is None:
        return 0
    text, wanted = text.lower(), wanted.lower().strip()
    if "*" in wanted:
        pattern = ".*".join(re.escape(part) for part in wanted.split("*"))
        return int(re.fullmatch(pattern, text) is not None)
    needed = _TOKEN.findall(wanted)
    words = set(_TOKEN.findall(text))
    return int(bool(needed) and all(w in words for w in needed))


def register_functions(conn: sqlite3.Connection) -> None:
    """SQL functions the compiled queries call."""
    conn.create_function("hs_contains_token", 2, contains_token, deterministic=True)


def _column(obj: HsObject, props: Mapping[str, HsProperty], name: Any) -> _Column:
    if not isinstance(name, str) or not name:
        raise validation("Every filter and sort needs a propertyName.")
    if name in {obj.modified, "hs_lastmodifieddate"}:
        return _Column("updated_at", "datetime", always_set=True)
    if name == obj.created:
        return _Column("created_at", "datetime", always_set=True)
    if name == "hs_object_id":
        return _Column("id", "id", always_set=True)
    prop = props.get(name)
    if prop is None or not _SAFE_NAME.match(name):
        raise validation(
            f"There is no property {name!r} on {obj.name}; filters and sorts take"
            " property names from GET /crm/v3/properties/" + obj.name,
            context={"propertyName": [str(name)]},
        )
    kind = prop.type if prop.type in {"number", "datetime", "date", "bool", "enumeration"} else "string"
    return _Column(f"json_extract(props, '$.{name}')", kind)


def _typed(column: _Column, value: Any, prop_name: str) -> Any:
    """A filter value converted to what the column is compared with."""
    if isinstance(value, (dict, list)) or value is None:
        raise validation(f"The filter on {prop_name} needs a scalar value.")
    text = value if isinstance(value, str) else json.dumps(value)
    if column.kind in {"id", "number"}:
        try:
            return int(text) if column.kind == "id" else float(text)
        except ValueError:
            raise validation(f"{text!r} is not a number (filter on {prop_name}).") from None
    if column.kind in {"datetime", "date"}:
        instant = parse_instant(text)
        if instant is None:
            raise validation(
                f"{text!r} is not a timestamp (filter on {prop_name}); send epoch milliseconds or ISO-8601."
            )
        return instant.date().isoformat() if column.kind == "date" else hs_datetime(instant)
    return text if column.kind == "enumeration" else text.lower()


def _compared(column: _Column) -> str:
    if column.kind == "number":
        return f"CAST({column.expr} AS REAL)"
    if column.kind in {"string", "bool"}:
        return f"lower({column.expr})"
    return column.expr


def _present(column: _Column) -> str:
    return "1" if column.always_set else f"({column.expr} IS NOT NULL AND {column.expr} != '')"


def _filter(obj: HsObject, props: Mapping[str, HsProperty], f: Any) -> tuple[str, list[Any]]:
    if not isinstance(f, dict):
        raise validation("Each filter must be an object with propertyName and operator.")
    name, op = f.get("propertyName"), f.get("operator")
    if op not in OPERATORS:
        raise validation(f"Unknown operator {op!r}; use one of {', '.join(sorted(OPERATORS))}.")
    if isinstance(name, str) and name.startswith("associations."):
        return _association_filter(obj, name, op, f)
    column = _column(obj, props, name)
    present, cmp = _present(column), _compared(column)
    if op == "HAS_PROPERTY":
        return present, []
    if op == "NOT_HAS_PROPERTY":
        return f"NOT {present}", []
    if op in {"IN", "NOT_IN"}:
        values = f.get("values")
        if not isinstance(values, list) or not values:
            raise validation(f"{op} needs a non-empty values list (filter on {name}).")
        typed = [_typed(column, v, str(name)) for v in values]
        marks = ", ".join("?" for _ in typed)
        clause = f"({present} AND {cmp} IN ({marks}))"
        return (clause if op == "IN" else f"NOT {clause}"), typed
    if "value" not in f:
        raise validation(f"{op} needs a value (filter on {name}).")
    if op == "BETWEEN":
        if "highValue" not in f:
            raise validation(f"BETWEEN needs value and highValue (filter on {name}).")
        low, high = _typed(column, f["value"], str(name)), _typed(column, f["highValue"], str(name))
        return f"({present} AND {cmp} BETWEEN ? AND ?)", [low, high]
    if op in {"CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"}:
        clause = f"({present} AND hs_contains_token({column.expr}, ?))"
        token = f["value"] if isinstance(f["value"], str) else json.dumps(f["value"])
        return (clause if op == "CONTAINS_TOKEN" else f"NOT {clause}"), [token]
    typed_value = _typed(column, f["value"], str(name))
    clause = f"({present} AND {cmp} {_VALUE_OPS[op]} ?)"
    return (f"NOT {clause}" if op == "NEQ" else clause), [typed_value]


def _association_filter(obj: HsObject, name: str, op: str, f: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """``associations.contact`` EQ/IN: records associated with the given ids."""
    other = hs_object(name.split(".", 1)[1])
    if other is None or op not in {"EQ", "IN"}:
        raise validation(f"{name} supports EQ and IN with ids of a known object type.")
    raw = f.get("values") if op == "IN" else [f.get("value")]
    try:
        ids = [int(str(v)) for v in raw or ()]
    except ValueError:
        raise validation(f"{name} takes record ids.") from None
    if not ids:
        raise validation(f"{name} needs at least one id.")
    marks = ", ".join("?" for _ in ids)
    clause = (
        f"id IN (SELECT to_id FROM hs_assoc WHERE from_object = ? AND from_id IN ({marks})"
        f" AND to_object = ? UNION SELECT from_id FROM hs_assoc WHERE from_object = ?"
        f" AND to_object = ? AND to_id IN ({marks}))"
    )
    return clause, [other.name, *ids, obj.name, obj.name, other.name, *ids]


def _int(value: Any, name: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise validation(f"{name} must be an integer.")
    try:
        return int(value)
    except ValueError:
        raise validation(f"{name} must be an integer, got {value!r}.") from None


def _sort(obj: HsObject, props: Mapping[str, HsProperty], sorts: Any) -> str:
    if sorts in (None, []):
        return "id ASC"
    if not isinstance(sorts, list):
        raise validation("sorts must be a list.")
    if len(sorts) > 1:
        raise validation("Only one sort is supported per search.")
    sort = sorts[0]
    if isinstance(sort, str) and sort.lstrip().startswith("{"):
        try:
            sort = json.loads(sort)
        except json.JSONDecodeError:
            raise validation(f"Could not read the sort {sort!r}.") from None
    name: Any
    if isinstance(sort, str):
        name, descending = sort.lstrip("-"), sort.startswith("-")
    elif isinstance(sort, dict):
        name = sort.get("propertyName")
        direction = str(sort.get("direction") or "ASCENDING").upper()
        if direction not in {"ASCENDING", "DESCENDING"}:
            raise validation("A sort direction is ASCENDING or DESCENDING.")
        descending = direction == "DESCENDING"
    else:
        raise validation('A sort is {"propertyName": ..., "direction": ...} or a property name.')
    column = _column(obj, props, name)
    way = "DESC" if descending else "ASC"
    if column.always_set:
        return f"{column.expr} {way}, id {way}" if column.kind != "id" else f"id {way}"
    return f"{_present(column)} DESC, {_compared(column)} {way}, id {way}"


def compile_search(
    obj: HsObject, props: Mapping[str, HsProperty], body: Any, *, visible_until: str | None = None
) -> SearchQuery:
    """Validate a search body and compile it. ``visible_until`` hides later writes (search lag)."""
    if not isinstance(body, dict):
        raise validation("The search body must be a JSON object.")
    groups = body.get("filterGroups") or []
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise validation('filterGroups must be a list of {"filters": [...]} objects.')
    filters = [g.get("filters") or [] for g in groups]
    if not all(isinstance(fs, list) for fs in filters):
        raise validation("Each filter group's filters must be a list.")
    total = sum(len(fs) for fs in filters)
    if len(groups) > MAX_GROUPS or any(len(fs) > MAX_FILTERS_PER_GROUP for fs in filters) or total > MAX_FILTERS:
        raise validation(
            f"Too many filters: at most {MAX_GROUPS} filterGroups, {MAX_FILTERS_PER_GROUP} filters"
            f" per group and {MAX_FILTERS} filters in total are allowed (got {len(groups)} groups,"
            f" {total} filters).",
            sub_category="crm.search.TOO_MANY_FILTERS",
        )
    where = ["archived = 0"]
    params: list[Any] = []
    if visible_until is not None:
        where.append("updated_at <= ?")
        params.append(visible_until)
    ored = []
    for fs in filters:
        anded = []
        for f in fs:
            clause, values = _filter(obj, props, f)
            anded.append(clause)
            params.extend(values)
        if anded:
            ored.append("(" + " AND ".join(anded) + ")")
    if ored:
        where.append("(" + " OR ".join(ored) + ")")
    query = body.get("query")
    if query is not None and not isinstance(query, str):
        raise validation("query must be a string.")
    if query and query.strip():
        like = "%" + re.sub(r"([%_\\])", r"\\\1", query.strip().lower()) + "%"
        names = [n for n in QUERY_PROPERTIES.get(obj.name, ()) if n in props]
        where.append("(" + " OR ".join(f"lower(json_extract(props, '$.{n}')) LIKE ? ESCAPE '\\'" for n in names) + ")")
        params.extend(like for _ in names)
    limit = _int(body.get("limit"), "limit", DEFAULT_LIMIT)
    after = _int(body.get("after"), "after", 0)
    if not 0 <= limit <= MAX_LIMIT:
        raise validation(f"limit must be between 0 and {MAX_LIMIT}, got {limit}.")
    if after < 0:
        raise validation(f"after must not be negative, got {after}.")
    if after + limit > MAX_RESULTS:
        raise validation(
            f"Search results are limited to {MAX_RESULTS} per query; this page (after={after},"
            f" limit={limit}) ends past that. Narrow the filters and search again.",
            context={"after": [str(after)], "limit": [str(limit)]},
        )
    properties = body.get("properties")
    if properties is not None and (not isinstance(properties, list) or not all(isinstance(p, str) for p in properties)):
        raise validation("properties must be a list of property names.")
    return SearchQuery(
        table=f"hs_{obj.name}",
        where=" AND ".join(where),
        params=tuple(params),
        order_by=_sort(obj, props, body.get("sorts")),
        limit=limit,
        offset=after,
        properties=properties,
    )


def run_search(
    query: Callable[[str, Sequence[Any]], list[sqlite3.Row]], q: SearchQuery
) -> tuple[int, list[sqlite3.Row]]:
    """(total, rows of the page) through ``World.query``."""
    total = int(query(f"SELECT count(*) FROM {q.table} WHERE {q.where}", q.params)[0][0])
    rows = (
        query(
            f"SELECT * FROM {q.table} WHERE {q.where} ORDER BY {q.order_by} LIMIT ? OFFSET ?",
            (*q.params, q.limit, q.offset),
        )
        if q.limit
        else []
    )
    return total, list(rows)
