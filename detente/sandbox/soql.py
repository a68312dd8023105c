"""SOQL for the Salesforce sandbox: parse a query with sqlglot, check every name and value
against the catalog, and compile it to parameterised SQLite over the store's ``sf_<Object>``
tables, with Salesforce's own error codes and messages for what it rejects.

Pure: no database and no clock. ``compile_soql`` returns a :class:`SoqlQuery`; the server
runs :meth:`SoqlQuery.ids_sql` once (the snapshot behind a query locator) and
:meth:`SoqlQuery.rows_sql` per page, then shapes rows with :func:`records` or :func:`csv_cells`.

Supported: SELECT of fields, parent relationship paths (``Owner.Email``, polymorphic
``Who.Name``), ``FIELDS(ALL|STANDARD|CUSTOM)``, ``COUNT()`` and ``COUNT(field)``; FROM one
object; WHERE with ``= != <> < <= > >= IN NOT IN LIKE AND OR NOT``, parentheses, ``null``,
``true/false``, numbers, strings, date and datetime literals; ORDER BY with ASC/DESC and
NULLS FIRST/LAST; LIMIT; OFFSET. Comparisons follow SOQL, not SQL: ``!=`` and ``NOT IN``
match nulls, and ``NOT`` is two-valued.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError
from sqlglot.tokens import Tokenizer

from detente.sandbox.schema import SF_PREFIXES, SfField, SfObject, sf_object
from detente.sandbox.store import parse_datetime, sf_datetime


class SoqlError(Exception):
    """A query Salesforce would reject: ``error_code`` and ``message`` as its API sends them."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


# ---------------------------------------------------------------------------------------
# Literals: SOQL's unquoted dates and backslash-escaped strings, protected from sqlglot
# ---------------------------------------------------------------------------------------

_DATETIME = re.compile(
    r"(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})(?![\w:.+-])"
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?![\w:.+-])")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}


@dataclass(frozen=True)
class SoqlLiteral:
    """A literal lifted out of the query text: a string (raw, still escaped), or a date or
    datetime already in the store's text form."""

    kind: str  # string | date | datetime
    value: str
    start: int  # offset in the original text


@dataclass(frozen=True)
class Protected:
    """The query with every literal replaced by a quoted placeholder ``'#n'``."""

    original: str
    text: str
    literals: tuple[SoqlLiteral, ...]
    # (offset in text, offset in original) at the end of each replacement, in order
    shifts: tuple[tuple[int, int], ...]

    def original_offset(self, offset: int) -> int:
        """Map an offset in ``text`` (outside literals) back to the original query."""
        delta = 0
        for prepared, original in self.shifts:
            if prepared > offset:
                break
            delta = original - prepared
        return offset + delta


def protect_literals(soql: str) -> Protected:
    """Lift string, date and datetime literals out of the query so that sqlglot sees only
    plain quoted placeholders and never has to understand SOQL's escapes or bare dates."""
    out: list[str] = []
    literals: list[SoqlLiteral] = []
    shifts: list[tuple[int, int]] = []
    length = 0
    i, n = 0, len(soql)
    while i < n:
        ch = soql[i]
        literal: SoqlLiteral | None = None
        end = i + 1
        if ch == "'":
            j = i + 1
            while j < n and soql[j] != "'":
                j += 2 if soql[j] == "\\" else 1
            if j >= n:
                raise SoqlError("MALFORMED_QUERY", f"unterminated string literal at column {i + 1}")
            literal, end = SoqlLiteral("string", soql[i + 1 : j], i), j + 1
        elif ch.isdigit() and (i == 0 or not (soql[i - 1].isalnum() or soql[i - 1] in "_.")):
            if m := _DATETIME.match(soql, i):
                literal, end = SoqlLiteral("datetime", _normalise_datetime(m.group(0)), i), m.end()
            elif m := _DATE.match(soql, i):
                literal, end = SoqlLiteral("date", _normalise_date(m.group(0)), i), m.end()
        if literal is None:
            out.append(ch)
            length += 1
            i += 1
            continue
        placeholder = f"'#{len(literals)}'"
        literals.append(literal)
        out.append(placeholder)
        length += len(placeholder)
        shifts.append((length, end))
        i = end
    return Protected(soql, "".join(out), tuple(literals), tuple(shifts))


def _normalise_datetime(text: str) -> str:
    try:
        return sf_datetime(parse_datetime(text))
    except ValueError as exc:
        raise SoqlError("INVALID_FIELD", f"invalid date/time literal: {text}") from exc


def _normalise_date(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError as exc:
        raise SoqlError("INVALID_FIELD", f"invalid date literal: {text}") from exc


def decode_string(raw: str, *, like: bool = False) -> str:
    """A SOQL string literal's value; for LIKE, a SQLite pattern with ``ESCAPE '\\'``."""
    out: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = raw[i + 1] if i + 1 < len(raw) else ""
        if nxt in "%_":
            out.append("\\" + nxt if like else nxt)
        elif nxt == "\\" and like:
            out.append("\\\\")
        elif nxt.lower() in _ESCAPES:
            out.append(_ESCAPES[nxt.lower()])
        elif nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", raw[i + 2 : i + 6]):
            out.append(chr(int(raw[i + 2 : i + 6], 16)))
            i += 4
        else:
            raise SoqlError(
                "MALFORMED_QUERY",
                f"Invalid string literal '{raw}'. Illegal character sequence '\\{nxt}' in string literal.",
            )
        i += 2
    return "".join(out)


# ---------------------------------------------------------------------------------------
# Ids
# ---------------------------------------------------------------------------------------

_ID = re.compile(r"[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?")
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def normalize_id(value: str) -> str | None:
    """The 18-character form of a 15- or 18-character Salesforce id; None when malformed."""
    if not _ID.fullmatch(value):
        return None
    if len(value) == 18:
        return value
    suffix = ""
    for chunk in range(3):
        bits = sum(1 << i for i, ch in enumerate(value[chunk * 5 : chunk * 5 + 5]) if "A" <= ch <= "Z")
        suffix += _SUFFIX[bits]
    return value + suffix


def object_for_id(record_id: str) -> str | None:
    """The sObject an id belongs to, from its key prefix."""
    return SF_PREFIXES.get(record_id[:3])


# ---------------------------------------------------------------------------------------
# The compiled query
# ---------------------------------------------------------------------------------------

_STRINGISH = frozenset({"id", "reference", "string", "textarea", "email", "phone", "url", "picklist"})
_NUMERIC = frozenset({"int", "double", "currency", "percent"})
_NOCASE = _STRINGISH - {"id", "reference"} | {"date", "datetime"}


def filterable(f: SfField) -> bool:
    """Long text areas can be neither filtered nor sorted in SOQL."""
    return not (f.type == "textarea" and f.length > 255)


@dataclass(frozen=True)
class Selected:
    """One selected value: its path as Salesforce names it (``("Owner", "Email")``)."""

    path: tuple[str, ...]
    field: SfField
    index: int  # position in a row from rows_sql
    boolean: bool


@dataclass(frozen=True)
class _Entry:
    key: str
    index: int
    boolean: bool = False
    child: _Shape | None = None
    sobject: str | None = None  # None: polymorphic, taken from the id's prefix


@dataclass(frozen=True)
class _Shape:
    entries: tuple[_Entry, ...]


@dataclass(frozen=True)
class SoqlQuery:
    """A validated query, ready to run against the store."""

    soql: str
    sobject: SfObject
    kind: str  # records | count | aggregate
    selected: tuple[Selected, ...]
    aggregate_alias: str | None
    aggregate_sql: str | None
    where_sql: str | None
    where_params: tuple[Any, ...]
    filter_joins: str
    select_joins: str
    select_exprs: tuple[str, ...]  # root Id, relationship ids, then selected values
    order_sql: str
    limit: int | None
    offset: int | None
    shape: _Shape = field(repr=False)
    long_text_fields: int = 0
    uses_fields_function: bool = False

    @property
    def max_batch_size(self) -> int:
        """Salesforce caps a page at 200 records when two or more long text fields are selected."""
        return 200 if self.long_text_fields >= 2 else 2000

    def _from_where(self, include_deleted: bool) -> tuple[str, list[Any]]:
        table = f'"sf_{self.sobject.name}" AS "t"'
        conditions = [] if include_deleted else ['"t"."IsDeleted" = 0']
        if self.where_sql:
            conditions.append(f"({self.where_sql})")
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return f"FROM {table}{self.filter_joins}{where}", list(self.where_params)

    def _limit(self) -> tuple[str, list[Any]]:
        if self.limit is None and self.offset is None:
            return "", []
        return " LIMIT ? OFFSET ?", [-1 if self.limit is None else self.limit, self.offset or 0]

    def ids_sql(self, include_deleted: bool) -> tuple[str, list[Any]]:
        """Every matching record id, in the query's order: the snapshot behind a locator."""
        body, params = self._from_where(include_deleted)
        limit, limit_params = self._limit()
        return f'SELECT "t"."Id" {body} ORDER BY {self.order_sql}{limit}', params + limit_params

    def count_sql(self, include_deleted: bool) -> tuple[str, list[Any]]:
        """``COUNT()``: the number of matching records."""
        body, params = self._from_where(include_deleted)
        limit, limit_params = self._limit()
        return f'SELECT count(*) FROM (SELECT "t"."Id" {body}{limit})', params + limit_params

    def aggregate(self, include_deleted: bool) -> tuple[str, list[Any]]:
        """``COUNT(field)``: one aggregate value."""
        body, params = self._from_where(include_deleted)
        return f"SELECT {self.aggregate_sql} {body}", params

    def rows_sql(self) -> str:
        """The selected values for a page of ids; one parameter, a JSON array of ids, whose
        order the rows keep."""
        return (
            f"SELECT {', '.join(self.select_exprs)} FROM json_each(?) AS \"k\""
            f' CROSS JOIN "sf_{self.sobject.name}" AS "t"{self.select_joins}'
            ' WHERE "t"."Id" = "k"."value" ORDER BY "k"."key"'
        )

    def csv_header(self) -> list[str]:
        return [".".join(s.path) for s in self.selected]


def records(query: SoqlQuery, rows: Sequence[Sequence[Any]], sobjects_url: str) -> list[dict[str, Any]]:
    """Rows from ``rows_sql`` as Salesforce query records: ``attributes`` first, parent
    relationships nested with their own attributes, or null when there is no parent.
    ``sobjects_url`` is like ``/services/data/v59.0/sobjects/``."""
    name = query.sobject.name
    shape = query.shape
    return [_build(shape, row, sobjects_url, name, row[0]) for row in rows]


def _build(shape: _Shape, row: Sequence[Any], url: str, sobject: str, record_id: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"attributes": {"type": sobject, "url": f"{url}{sobject}/{record_id}"}}
    for e in shape.entries:
        value = row[e.index]
        if e.child is None:
            rec[e.key] = bool(value) if e.boolean and value is not None else value
        elif value is None:
            rec[e.key] = None
        else:
            parent = e.sobject or object_for_id(value) or "Name"
            rec[e.key] = _build(e.child, row, url, parent, value)
    return rec


def csv_cells(query: SoqlQuery, rows: Sequence[Sequence[Any]]) -> Iterator[list[str]]:
    """Rows as Bulk API 2.0 CSV cells: empty for null, ``true``/``false`` for booleans."""
    picks = [(s.index, s.boolean) for s in query.selected]
    for row in rows:
        cells = []
        for index, boolean in picks:
            value = row[index]
            if value is None:
                cells.append("")
            elif boolean:
                cells.append("true" if value else "false")
            else:
                cells.append(str(value))
        yield cells


# ---------------------------------------------------------------------------------------
# Relationship joins
# ---------------------------------------------------------------------------------------


@dataclass
class _Node:
    """The root object or one parent reached through relationship fields."""

    names: tuple[str, ...]  # canonical relationship names from the root
    targets: tuple[SfObject, ...]
    aliases: tuple[str, ...]

    def column(self, field_name: str) -> str:
        cols = [f'"{a}"."{field_name}"' for a in self.aliases]
        return cols[0] if len(cols) == 1 else f"coalesce({', '.join(cols)})"

    @property
    def polymorphic(self) -> bool:
        return len(self.targets) > 1

    def field(self, name: str) -> SfField | None:
        """A field present on every target (polymorphic relationships expose only those)."""
        found = [t.field(name) for t in self.targets]
        if any(f is None for f in found):
            return None
        return found[0]

    @property
    def entity(self) -> str:
        return self.targets[0].name if len(self.targets) == 1 else "Name"


class _Joins:
    """LEFT JOINs to parent records, created as paths mention them."""

    def __init__(self, root: SfObject, prefix: str) -> None:
        self.root = _Node((), (root,), ("t",))
        self.nodes: dict[tuple[str, ...], _Node] = {(): self.root}
        self.clauses: list[str] = []
        self.order: list[_Node] = []
        self.prefix = prefix

    def child(self, node: _Node, via: SfField) -> _Node:
        assert via.relationship_name is not None
        key = tuple(n.lower() for n in (*node.names, via.relationship_name))
        if key in self.nodes:
            return self.nodes[key]
        targets = tuple(t for name in via.reference_to if (t := sf_object(name)) is not None)
        n = len(self.nodes)
        aliases = tuple(
            f"{self.prefix}{n}" if len(targets) == 1 else f"{self.prefix}{n}_{i}" for i in range(len(targets))
        )
        on = node.column(via.name)
        for alias, target in zip(aliases, targets, strict=True):
            self.clauses.append(f' LEFT JOIN "sf_{target.name}" AS "{alias}" ON "{alias}"."Id" = {on}')
        child = _Node((*node.names, via.relationship_name), targets, aliases)
        self.nodes[key] = child
        self.order.append(child)
        return child

    def sql(self) -> str:
        return "".join(self.clauses)


# ---------------------------------------------------------------------------------------
# Compiling
# ---------------------------------------------------------------------------------------

_MAX_INT = 2**31 - 1
_MAX_SQLITE_INT = 2**63 - 1
_OPERATORS: dict[type[exp.Expression], str] = {exp.GT: ">", exp.GTE: ">=", exp.LT: "<", exp.LTE: "<="}
_ALLOWED_CLAUSES = {"expressions", "from", "from_", "where", "order", "limit", "offset"}
_CLAUSE_NAMES = {
    "group": "GROUP BY", "having": "HAVING", "distinct": "DISTINCT", "joins": "JOIN",
    "locks": "FOR UPDATE", "with": "WITH", "with_": "WITH",
}


@dataclass(frozen=True)
class _Selection:
    kind: str
    selected: tuple[Selected, ...]
    shape: _Shape
    exprs: tuple[str, ...]
    aggregate_alias: str | None = None
    aggregate_sql: str | None = None
    uses_fields: bool = False


@dataclass
class _Compiler:
    prot: Protected
    sobject: SfObject = field(init=False)
    alias: str | None = None
    filters: _Joins = field(init=False)
    selects: _Joins = field(init=False)
    params: list[Any] = field(default_factory=list)

    # -- errors -------------------------------------------------------------------------

    def located(self, code: str, node: exp.Expression | None, message: str) -> SoqlError:
        """An error in Salesforce's form: the query line, a caret, Row:Column, the message."""
        start = _start(node)
        if start is None:
            return SoqlError(code, message)
        pos = self.prot.original_offset(start)
        text = self.prot.original
        line_start = text.rfind("\n", 0, pos) + 1
        line_end = text.find("\n", pos)
        line = text[line_start : line_end if line_end >= 0 else len(text)]
        row = text.count("\n", 0, pos) + 1
        col = pos - line_start + 1
        return SoqlError(code, f"\n{line}\n{' ' * (col - 1)}^\nERROR at Row:{row}:Column:{col}\n{message}")

    def no_such_column(self, node: exp.Expression, name: str, entity: str) -> SoqlError:
        return self.located(
            "INVALID_FIELD", node,
            f"No such column '{name}' on entity '{entity}'. If you are attempting to use a custom "
            "field, be sure to append the '__c' after the custom field name. Please reference your "
            "WSDL or the describe call for the appropriate names.",
        )

    # -- FROM ---------------------------------------------------------------------------

    def from_clause(self, tree: exp.Select) -> None:
        source = tree.args.get("from_") or tree.args.get("from")
        if not isinstance(source, exp.From):
            raise SoqlError("MALFORMED_QUERY", "unexpected token: <EOF>")
        table = source.this
        if not isinstance(table, exp.Table) or table.args.get("db") or not isinstance(table.this, exp.Identifier):
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{source.this.sql()}'")
        name = table.this.this
        obj = sf_object(name)
        if obj is None or not obj.queryable:
            raise self.located(
                "INVALID_TYPE", table.this,
                f"sObject type '{name}' is not supported. If you are attempting to use a custom object, "
                "be sure to append the '__c' after the entity name. Please reference your WSDL or the "
                "describe call for the appropriate names.",
            )
        self.sobject = obj
        if table.alias:
            self.alias = table.alias.lower()
        self.filters = _Joins(obj, "f")
        self.selects = _Joins(obj, "s")

    # -- field paths --------------------------------------------------------------------

    def resolve(self, node: exp.Expression, joins: _Joins) -> tuple[_Node, SfField, tuple[str, ...]]:
        """A column or dotted path: the node that holds the field, the field, and the path
        as Salesforce names it."""
        parts = _path(node)
        if parts is None:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{node.sql()}'")
        if any(p.quoted for p in parts):
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{node.sql()}'")
        names = [p.this for p in parts]
        if len(names) > 1 and (
            names[0].lower() == self.alias
            or (names[0].lower() == self.sobject.name.lower()
                and names[0].lower() not in self.sobject.relationships)
        ):
            parts, names = parts[1:], names[1:]
        if len(names) > 6:
            raise self.located("MALFORMED_QUERY", node, "Relationship paths can span at most five levels.")
        current = joins.root
        for part, name in zip(parts[:-1], names[:-1], strict=True):
            rel = None if current.polymorphic else current.targets[0].relationships.get(name.lower())
            if rel is None:
                raise self.located(
                    "INVALID_FIELD", part,
                    f"Didn't understand relationship '{name}' in field path. If you are attempting to "
                    "use a custom relationship, be sure to append the '__r' after the custom "
                    "relationship name. Please reference your WSDL or the describe call for the "
                    "appropriate names.",
                )
            current = joins.child(current, rel)
        found = current.field(names[-1])
        if found is None:
            raise self.no_such_column(parts[0], names[-1], current.entity)
        return current, found, (*current.names, found.name)

    # -- SELECT -------------------------------------------------------------------------

    def select(self, tree: exp.Select) -> _Selection:
        items = list(tree.expressions)
        if any(isinstance(_unalias(i), exp.Count) for i in items):
            return self.select_count(items)
        paths: list[tuple[_Node, SfField, tuple[str, ...], exp.Expression]] = []
        uses_fields = False
        for item in items:
            if isinstance(item, exp.Anonymous) and str(item.this).upper() == "FIELDS":
                uses_fields = True
                paths.extend(self.fields_function(item, tree))
            elif isinstance(item, exp.Subquery):
                raise SoqlError(
                    "MALFORMED_QUERY",
                    "child relationship subqueries such as (SELECT Id FROM Tasks) are not supported "
                    "by the sandbox",
                )
            elif isinstance(item, exp.Alias):
                raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{item.alias}'")
            elif isinstance(item, exp.Column | exp.Dot):
                node, f, path = self.resolve(item, self.selects)
                paths.append((node, f, path, item))
            else:
                raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{item.sql()}'")
        seen: set[tuple[str, ...]] = set()
        unique = []
        for node, f, path, item in paths:
            key = tuple(p.lower() for p in path)
            if key in seen:
                if uses_fields:
                    continue
                raise self.located("MALFORMED_QUERY", item, f"duplicate field selected: {'.'.join(path)}")
            seen.add(key)
            unique.append((node, f, path))
        exprs = ['"t"."Id"'] + [n.column("Id") for n in self.selects.order]
        id_index = {n.names: i + 1 for i, n in enumerate(self.selects.order)}
        selected = []
        for node, f, path in unique:
            selected.append(Selected(path, f, len(exprs), f.type == "boolean"))
            exprs.append(node.column(f.name))
        shape = _shape(selected, id_index, self.selects)
        return _Selection("records", tuple(selected), shape, tuple(exprs), uses_fields=uses_fields)

    def fields_function(
        self, item: exp.Anonymous, tree: exp.Select
    ) -> list[tuple[_Node, SfField, tuple[str, ...], exp.Expression]]:
        args = [a.name.upper() for a in item.expressions]
        which = args[0] if args else "ALL"
        if len(args) > 1 or which not in {"ALL", "STANDARD", "CUSTOM"}:
            raise SoqlError("MALFORMED_QUERY", "FIELDS() takes one of ALL, STANDARD or CUSTOM")
        if which != "STANDARD":
            limit = tree.args.get("limit")
            value = _int_literal(limit.expression) if isinstance(limit, exp.Limit) else None
            if value is None or value > 200:
                raise SoqlError(
                    "MALFORMED_QUERY",
                    f"The SOQL FIELDS function must have a LIMIT of at most 200 when FIELDS({which}) is used",
                )
        root = self.selects.root
        return [
            (root, f, (f.name,), item)
            for f in self.sobject.fields
            if which == "ALL" or (which == "CUSTOM") == f.custom
        ]

    def select_count(self, items: list[exp.Expression]) -> _Selection:
        if len(items) != 1:
            other = next(i for i in items if not isinstance(_unalias(i), exp.Count))
            raise SoqlError(
                "MALFORMED_QUERY",
                f"Field must be grouped or aggregated: {other.sql()}"
                if isinstance(other, exp.Column) else f"unexpected token: '{other.sql()}'",
            )
        item = items[0]
        alias = item.alias if isinstance(item, exp.Alias) else None
        count = _unalias(item)
        if count.this is None:
            if alias:
                raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{alias}'")
            return _Selection("count", (), _Shape(()), ('"t"."Id"',))
        node, f, _names = self.resolve(count.this, self.filters)
        return _Selection(
            "aggregate", (), _Shape(()), ('"t"."Id"',),
            aggregate_alias=alias or "expr0", aggregate_sql=f"count({node.column(f.name)})",
        )

    # -- WHERE --------------------------------------------------------------------------

    def condition(self, node: exp.Expression) -> str:
        if isinstance(node, exp.Paren):
            return f"({self.condition(node.this)})"
        if isinstance(node, exp.And | exp.Or):
            word = "AND" if isinstance(node, exp.And) else "OR"
            other = exp.Or if isinstance(node, exp.And) else exp.And
            # SOQL needs parentheses to mix AND and OR; the token it trips on is the later one.
            if isinstance(node.this, other) or isinstance(node.expression, other):
                later = word if isinstance(node.this, other) else ("OR" if word == "AND" else "AND")
                raise SoqlError(
                    "MALFORMED_QUERY", f"unexpected token: '{later}' (use parentheses when mixing AND and OR)"
                )
            return f"{self.condition(node.this)} {word} {self.condition(node.expression)}"
        if isinstance(node, exp.Not):
            if isinstance(node.this, exp.In):
                return self.in_list(node.this, negated=True)
            return f"NOT coalesce(({self.condition(node.this)}), 0)"
        if isinstance(node, exp.In):
            return self.in_list(node, negated=False)
        if isinstance(node, exp.Like):
            return self.like(node)
        if isinstance(node, exp.EQ | exp.NEQ | exp.GT | exp.GTE | exp.LT | exp.LTE):
            return self.comparison(node)
        if isinstance(node, exp.Is):
            raise SoqlError("MALFORMED_QUERY", "unexpected token: 'IS' (SOQL compares with = null and != null)")
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{node.sql()}'")

    def operand(self, node: exp.Expression) -> tuple[str, SfField, exp.Expression]:
        if not isinstance(node, exp.Column | exp.Dot):
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{node.sql()}'")
        holder, f, _names = self.resolve(node, self.filters)
        if not filterable(f):
            raise self.located("INVALID_FIELD", node, f"field '{f.name}' can not be filtered in a query call")
        column = holder.column(f.name)
        if f.type in _NOCASE:
            column += " COLLATE NOCASE"
        return column, f, node

    def comparison(self, node: exp.Expression) -> str:
        column, f, where = self.operand(node.this)
        value = self.value(node.expression, f, where)
        if isinstance(node, exp.EQ | exp.NEQ):
            negate = isinstance(node, exp.NEQ)
            if value is None:
                if f.type == "boolean":  # a boolean is never null: = null means false
                    self.params.append(0)
                    return f"coalesce({column}, 0) {'!=' if negate else '='} ?"
                return f"{column} IS {'NOT ' if negate else ''}NULL"
            self.params.append(value)
            return f"{column} IS NOT ?" if negate else f"{column} = ?"
        op = _OPERATORS[type(node)]
        if value is None:
            raise self.located("MALFORMED_QUERY", where, f"invalid operator {op} with null for field '{f.name}'")
        self.params.append(value)
        return f"{column} {op} ?"

    def in_list(self, node: exp.In, *, negated: bool) -> str:
        if node.args.get("query") is not None:
            raise SoqlError(
                "MALFORMED_QUERY", "semi-join subqueries (IN (SELECT ...)) are not supported by the sandbox"
            )
        column, f, where = self.operand(node.this)
        values = [self.value(v, f, where) for v in node.expressions]
        present = [v for v in values if v is not None]
        has_null = len(present) != len(values)
        marks = ", ".join("?" for _ in present)
        self.params.extend(present)
        if negated:
            parts = [f"{column} IS NOT NULL" if has_null else f"{column} IS NULL"]
            if present:
                parts.append(f"{column} NOT IN ({marks})")
            return f"({' AND '.join(parts)})" if has_null else f"({' OR '.join(parts)})"
        parts = ([f"{column} IN ({marks})"] if present else []) + ([f"{column} IS NULL"] if has_null else [])
        return f"({' OR '.join(parts)})"

    def like(self, node: exp.Like) -> str:
        column, f, where = self.operand(node.this)
        if f.type not in _STRINGISH or f.type in {"id", "reference"}:
            raise self.located("INVALID_FIELD", where, f"invalid operator on {f.type} field: LIKE on '{f.name}'")
        pattern = node.expression
        literal = self.literal(pattern) if isinstance(pattern, exp.Literal) and pattern.is_string else None
        if literal is None or literal.kind != "string":
            raise self.located(
                "INVALID_FIELD", where,
                f"value of filter criterion for field '{f.name}' must be of type string and should be "
                "enclosed in quotes",
            )
        self.params.append(decode_string(literal.value, like=True))
        return f"{column} LIKE ? ESCAPE '\\'"

    def literal(self, node: exp.Literal) -> SoqlLiteral | None:
        text = str(node.this)
        if text.startswith("#") and text[1:].isdigit() and int(text[1:]) < len(self.prot.literals):
            return self.prot.literals[int(text[1:])]
        return None

    def value(self, node: exp.Expression, f: SfField, where: exp.Expression) -> Any:
        """A filter value, checked against the field's type and converted to the stored form."""
        if isinstance(node, exp.Null):
            return None
        kind: str
        value: Any
        if isinstance(node, exp.Boolean):
            kind, value = "boolean", bool(node.this)
        elif isinstance(node, exp.Literal) and node.is_string:
            literal = self.literal(node)
            if literal is None:
                raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{node.sql()}'")
            kind, value = literal.kind, literal.value
        elif isinstance(node, exp.Literal | exp.Neg) and (number := _number(node)) is not None:
            kind, value = "number", number
        elif isinstance(node, exp.Column) and not node.table:
            raise SoqlError(
                "MALFORMED_QUERY",
                f"unexpected token: '{node.name}' (relative date literals and bind variables are "
                "not supported by the sandbox)",
            )
        else:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{node.sql()}'")
        wanted, quoted = _wanted(f)
        if kind != wanted:
            enclosed = "should be enclosed in quotes" if quoted else "should not be enclosed in quotes"
            raise self.located(
                "INVALID_FIELD", where,
                f"value of filter criterion for field '{f.name}' must be of type {_type_word(f)} and {enclosed}",
            )
        if kind == "string":
            value = decode_string(value)
            if f.type in {"id", "reference"}:
                normal = normalize_id(value)
                if normal is None:
                    raise SoqlError("INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {value}")
                value = normal
        elif kind == "boolean":
            value = int(value)
        return value

    def keyset_bound(self, node: exp.Expression) -> exp.GTE | None:
        """``A >= x`` when the condition is keyset paging, ``(A = x AND B > y) OR A > x``."""
        node = _unparen(node)
        if not isinstance(node, exp.Or):
            return None
        sides = (_unparen(node.this), _unparen(node.expression))
        for tie, after in (sides, sides[::-1]):
            if not (isinstance(after, exp.GT | exp.GTE) and isinstance(tie, exp.And)):
                continue
            for eq in (_unparen(tie.this), _unparen(tie.expression)):
                if (isinstance(eq, exp.EQ) and self.same_operand(eq.this, after.this)
                        and self.same_value(eq.expression, after.expression)):
                    return exp.GTE(this=after.this.copy(), expression=after.expression.copy())
        return None

    def same_operand(self, a: exp.Expression, b: exp.Expression) -> bool:
        pa, pb = _path(a), _path(b)
        return pa is not None and pb is not None and [p.name.lower() for p in pa] == [p.name.lower() for p in pb]

    def same_value(self, a: exp.Expression, b: exp.Expression) -> bool:
        if isinstance(a, exp.Literal) and isinstance(b, exp.Literal) and a.is_string and b.is_string:
            la, lb = self.literal(a), self.literal(b)
            return la is not None and lb is not None and (la.kind, la.value) == (lb.kind, lb.value)
        return False

    # -- ORDER BY, LIMIT, OFFSET ------------------------------------------------------

    def order(self, tree: exp.Select) -> str:
        clause = tree.args.get("order")
        parts: list[str] = []
        has_id = False
        for item in clause.expressions if isinstance(clause, exp.Order) else []:
            if not isinstance(item, exp.Ordered):
                raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{item.sql()}'")
            holder, f, names = self.resolve(item.this, self.filters)
            if not filterable(f):
                raise self.located("INVALID_FIELD", item.this, f"field '{f.name}' can not be sorted in a query call")
            has_id = has_id or (names == ("Id",))
            column = holder.column(f.name) + (" COLLATE NOCASE" if f.type in _NOCASE else "")
            desc = bool(item.args.get("desc"))
            nulls_first = bool(item.args.get("nulls_first"))
            # SQLite's default null placement is SOQL's; only spell out the other one.
            nulls = "" if nulls_first != desc else (" NULLS FIRST" if nulls_first else " NULLS LAST")
            parts.append(f"{column} {'DESC' if desc else 'ASC'}{nulls}")
        if not has_id:
            parts.append('"t"."Id" ASC')
        return ", ".join(parts)

    def bound(self, tree: exp.Select, key: str) -> int | None:
        clause = tree.args.get(key)
        if clause is None:
            return None
        value = _int_literal(clause.expression)
        if value is None or value < 0:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{clause.expression.sql()}'")
        if key == "offset" and value > 2000:
            raise SoqlError("NUMBER_OUTSIDE_VALID_RANGE", "Maximum SOQL offset allowed is 2000")
        if value > _MAX_INT:
            raise SoqlError("NUMBER_OUTSIDE_VALID_RANGE", f"{key.upper()} {value} is outside the valid range")
        return value


def compile_soql(soql: str) -> SoqlQuery:
    """Parse, validate and compile one SOQL query. Raises :class:`SoqlError`."""
    if not soql or not soql.strip():
        raise SoqlError("MALFORMED_QUERY", "unexpected token: <EOF>")
    prot = protect_literals(soql)
    try:
        tree = sqlglot.parse_one(prot.text)
    except ParseError as exc:
        raise SoqlError("MALFORMED_QUERY", _parse_error_message(prot.text, exc)) from exc
    except SqlglotError as exc:
        raise SoqlError("MALFORMED_QUERY", f"unexpected token in query: {exc}") from exc
    except RecursionError as exc:
        raise SoqlError("MALFORMED_QUERY", "the query is nested too deeply") from exc
    if not isinstance(tree, exp.Select):
        first = prot.text.split(None, 1)[0] if prot.text.split() else "<EOF>"
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{first}'")
    bad = _select_list_error(prot.text)
    if bad is not None:
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{bad}'")
    for key, value in tree.args.items():
        if value and key not in _ALLOWED_CLAUSES:
            clause = _CLAUSE_NAMES.get(key, key.upper())
            raise SoqlError("MALFORMED_QUERY", f"{clause} is not supported by the sandbox's SOQL")
    c = _Compiler(prot)
    c.from_clause(tree)
    selection = c.select(tree)
    where = tree.args.get("where")
    where_sql = c.condition(where.this) if isinstance(where, exp.Where) else None
    if isinstance(where, exp.Where) and (bound := c.keyset_bound(where.this)) is not None:
        # (A = x AND B > y) OR A > x implies A >= x; saying so lets SQLite seek the
        # (SystemModstamp, Id) index instead of scanning it from the start.
        where_sql = f"({where_sql}) AND {c.comparison(bound)}"
    order_sql = c.order(tree)
    return SoqlQuery(
        soql=soql,
        sobject=c.sobject,
        kind=selection.kind,
        selected=selection.selected,
        aggregate_alias=selection.aggregate_alias,
        aggregate_sql=selection.aggregate_sql,
        where_sql=where_sql,
        where_params=tuple(c.params),
        filter_joins=c.filters.sql(),
        select_joins=c.selects.sql(),
        select_exprs=selection.exprs,
        order_sql=order_sql,
        limit=c.bound(tree, "limit"),
        offset=c.bound(tree, "offset"),
        shape=selection.shape,
        long_text_fields=sum(1 for s in selection.selected if not filterable(s.field)),
        uses_fields_function=selection.uses_fields,
    )


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


def _shape(selected: list[Selected], id_index: dict[tuple[str, ...], int], joins: _Joins) -> _Shape:
    """Nest the selected paths into the record layout, keeping first-mention order."""

    def level(prefix: tuple[str, ...]) -> _Shape:
        entries: list[_Entry] = []
        done: set[str] = set()
        for s in selected:
            if s.path[: len(prefix)] != prefix:
                continue
            rest = s.path[len(prefix) :]
            if len(rest) == 1:
                entries.append(_Entry(rest[0], s.index, s.boolean))
            elif rest[0] not in done:
                done.add(rest[0])
                child_names = (*prefix, rest[0])
                node = joins.nodes[tuple(n.lower() for n in child_names)]
                entries.append(_Entry(
                    rest[0], id_index[node.names], child=level(child_names),
                    sobject=None if node.polymorphic else node.targets[0].name,
                ))
        return _Shape(tuple(entries))

    return level(())


def _unparen(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _unalias(node: exp.Expression) -> exp.Expression:
    return node.this if isinstance(node, exp.Alias) else node


def _path(node: exp.Expression) -> list[exp.Identifier] | None:
    if isinstance(node, exp.Column):
        parts = [p for p in node.parts if isinstance(p, exp.Identifier)]
        return parts if len(parts) == len(node.parts) else None
    if isinstance(node, exp.Dot) and isinstance(node.expression, exp.Identifier):
        head = _path(node.this)
        return None if head is None else [*head, node.expression]
    return None


def _start(node: exp.Expression | None) -> int | None:
    if node is None:
        return None
    if isinstance(node, exp.Identifier) and "start" in node.meta:
        return int(node.meta["start"])
    for child in node.walk():
        if isinstance(child, exp.Identifier) and "start" in child.meta:
            return int(child.meta["start"])
    return None


def _int_literal(node: exp.Expression | None) -> int | None:
    if isinstance(node, exp.Literal) and not node.is_string and str(node.this).isdigit():
        return int(str(node.this))
    return None


def _number(node: exp.Expression) -> int | float | None:
    sign = 1
    if isinstance(node, exp.Neg):
        sign, node = -1, node.this
    if not isinstance(node, exp.Literal) or node.is_string:
        return None
    text = str(node.this)
    try:
        value: int | float = int(text) if re.fullmatch(r"\d+", text) else float(text)
    except ValueError:
        return None
    # SQLite integers are 64-bit; a larger literal compares as a float
    return sign * (value if abs(value) <= _MAX_SQLITE_INT else float(value))


def _wanted(f: SfField) -> tuple[str, bool]:
    """The literal kind a field compares with, and whether it is written in quotes."""
    if f.type in _STRINGISH:
        return "string", True
    if f.type in _NUMERIC:
        return "number", False
    if f.type in {"boolean", "date", "datetime"}:
        return f.type, False
    return "string", True


def _type_word(f: SfField) -> str:
    return {"datetime": "dateTime", "reference": "id", "textarea": "string", "email": "string",
            "phone": "string", "url": "string", "picklist": "string"}.get(f.type, f.type)


def _parse_error_message(text: str, exc: ParseError) -> str:
    bad = _select_list_error(text)
    if bad is not None:
        return f"unexpected token: '{bad}'"
    errors = exc.errors or []
    token = str(errors[0].get("highlight") or "").strip() if errors else ""
    if not token:
        return "unexpected token: <EOF>"
    if token.startswith("'#") and token.endswith("'"):
        token = "literal"
    return f"unexpected token: '{token}'"


def _select_list_error(text: str) -> str | None:
    """The first token that cannot follow a select-list item, for SOQL's own error message
    (``SELECT Id FORM Lead`` → ``FORM``); None when the list reads as items and commas."""
    try:
        tokens = [(t.token_type.name, t.text) for t in Tokenizer().tokenize(text)]
    except SqlglotError:
        return None
    if not tokens or tokens[0][0] != "SELECT":
        return None

    def kind(i: int) -> str:
        return tokens[i][0] if i < len(tokens) else "EOF"

    i = 1
    while True:
        if kind(i) in {"FROM", "COMMA"}:
            return tokens[i][1]
        if kind(i) == "L_PAREN":
            i = _skip_parens(tokens, i)
        else:
            i += 1
            while kind(i) == "DOT" and i + 1 < len(tokens):
                i += 2
            if kind(i) == "L_PAREN":
                i = _skip_parens(tokens, i)
                if kind(i) == "VAR":  # COUNT(Id) cnt: an alias may follow an aggregate
                    i += 1
        if kind(i) == "EOF":
            return "<EOF>"
        if kind(i) == "FROM":
            return None
        if kind(i) != "COMMA":
            return tokens[i][1]
        i += 1


def _skip_parens(tokens: list[tuple[str, str]], i: int) -> int:
    depth = 0
    while i < len(tokens):
        if tokens[i][0] == "L_PAREN":
            depth += 1
        elif tokens[i][0] == "R_PAREN":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i
