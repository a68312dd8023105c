"""Compile checked conditions to SQLAlchemy expressions that mean the same on SQLite and PostgreSQL.

The few places where the two backends differ are small SQL constructs compiled per dialect
(ASCII case folding, byte-order collation, exact epoch microseconds, date parts, JSON
attributes). ``now()`` and every time derived from it are bound parameters whose values
``Params.bind(now)`` computes at evaluation; nothing reads the clock here. See
``detente.rules.semantics`` for the rules all three evaluators (two SQL, one Python) follow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    Integer,
    String,
    and_,
    bindparam,
    case,
    cast,
    false,
    func,
    literal,
    not_,
    null,
    or_,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeEngine

from detente.rules import ir
from detente.rules.conditions import epoch_micros
from detente.rules.fields import FieldDef, ValueType
from detente.rules.semantics import ASCII_LOWER, ASCII_UPPER, fold
from detente.store.types import UTCDateTime

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Resolver = Callable[[FieldDef], ColumnElement[Any]]


# -- dialect-specific constructs -------------------------------------------------------------------


class AsciiLower(FunctionElement[str]):
    """Lower-case A-Z only, the same on every backend."""

    type = String()
    name = "ascii_lower"
    inherit_cache = True


class AsciiUpper(FunctionElement[str]):
    type = String()
    name = "ascii_upper"
    inherit_cache = True


class ByteOrder(FunctionElement[str]):
    """Compare text by code point: COLLATE "C" on PostgreSQL, already so on SQLite."""

    type = String()
    name = "byte_order"
    inherit_cache = True


class EpochMicros(FunctionElement[int]):
    """Microseconds since 1970 of a stored time, exactly."""

    type = BigInteger()
    name = "epoch_micros"
    inherit_cache = True


class DatePart(FunctionElement[int]):
    """year, month, day, hour or weekday (1 = Monday) of a time, in UTC."""

    type = Integer()
    name = "date_part"
    inherit_cache = True
    # The part is compiled into the SQL text, so it must be part of the statement cache key.
    _traverse_internals = [*FunctionElement._traverse_internals, ("part", InternalTraversal.dp_string)]

    def __init__(self, part: str, value: ColumnElement[Any]) -> None:
        self.part = part
        super().__init__(value)


class Attribute(FunctionElement[Any]):
    """A mapped field from people.attributes, typed; anything of another JSON type reads as NULL."""

    name = "attribute"
    inherit_cache = True
    _traverse_internals = [*FunctionElement._traverse_internals, ("key", InternalTraversal.dp_string),
                           ("kind", InternalTraversal.dp_string)]

    def __init__(self, doc: ColumnElement[Any], key: str, kind: ValueType) -> None:
        self.key = key
        self.kind = kind
        self.type = _SQL_TYPES[kind]
        super().__init__(doc)


def _arg(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(AsciiLower)
def _lower_default(element: AsciiLower, compiler: SQLCompiler, **kw: Any) -> str:
    return f"lower({_arg(element, compiler, **kw)})"


@compiles(AsciiLower, "postgresql")
def _lower_pg(element: AsciiLower, compiler: SQLCompiler, **kw: Any) -> str:
    return f"translate({_arg(element, compiler, **kw)}, '{ASCII_UPPER}', '{ASCII_LOWER}')"


@compiles(AsciiUpper)
def _upper_default(element: AsciiUpper, compiler: SQLCompiler, **kw: Any) -> str:
    return f"upper({_arg(element, compiler, **kw)})"


@compiles(AsciiUpper, "postgresql")
def _upper_pg(element: AsciiUpper, compiler: SQLCompiler, **kw: Any) -> str:
    return f"translate({_arg(element, compiler, **kw)}, '{ASCII_LOWER}', '{ASCII_UPPER}')"


@compiles(ByteOrder)
def _order_default(element: ByteOrder, compiler: SQLCompiler, **kw: Any) -> str:
    return _arg(element, compiler, **kw)


@compiles(ByteOrder, "postgresql")
def _order_pg(element: ByteOrder, compiler: SQLCompiler, **kw: Any) -> str:
    return f'({_arg(element, compiler, **kw)}) COLLATE "C"'


@compiles(EpochMicros)
def _epoch_sqlite(element: EpochMicros, compiler: SQLCompiler, **kw: Any) -> str:
    # The store keeps times on SQLite as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC): whole seconds
    # from strftime on the first 19 characters (strftime would round the fraction to
    # milliseconds), microseconds from the fixed-width fraction.
    x = _arg(element, compiler, **kw)
    return f"(CAST(strftime('%s', substr({x}, 1, 19)) AS INTEGER) * 1000000 + CAST(substr({x}, 21, 6) AS INTEGER))"


@compiles(EpochMicros, "postgresql")
def _epoch_pg(element: EpochMicros, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(EXTRACT(EPOCH FROM {_arg(element, compiler, **kw)}) * 1000000 AS BIGINT)"


_SQLITE_PARTS = {"year": "%Y", "month": "%m", "day": "%d", "hour": "%H"}
_PG_PARTS = {"year": "YEAR", "month": "MONTH", "day": "DAY", "hour": "HOUR", "weekday": "ISODOW"}


@compiles(DatePart)
def _part_sqlite(element: DatePart, compiler: SQLCompiler, **kw: Any) -> str:
    x = f"substr({_arg(element, compiler, **kw)}, 1, 19)"  # whole seconds: strftime rounds fractions
    if element.part == "weekday":
        return f"((CAST(strftime('%w', {x}) AS INTEGER) + 6) % 7 + 1)"
    return f"CAST(strftime('{_SQLITE_PARTS[element.part]}', {x}) AS INTEGER)"


@compiles(DatePart, "postgresql")
def _part_pg(element: DatePart, compiler: SQLCompiler, **kw: Any) -> str:
    x = _arg(element, compiler, **kw)
    return f"CAST(EXTRACT({_PG_PARTS[element.part]} FROM ({x}) AT TIME ZONE 'UTC') AS INTEGER)"


_SQLITE_JSON = {ValueType.TEXT: "('text')", ValueType.NUMBER: "('integer', 'real')",
                ValueType.BOOLEAN: "('true', 'false')", ValueType.DATETIME: "('text')"}


@compiles(Attribute)
def _attr_sqlite(element: Attribute, compiler: SQLCompiler, **kw: Any) -> str:
    doc = _arg(element, compiler, **kw)
    path = f"'$.\"{element.key}\"'"
    return f"CASE WHEN json_type({doc}, {path}) IN {_SQLITE_JSON[element.kind]} THEN json_extract({doc}, {path}) END"


@compiles(Attribute, "postgresql")
def _attr_pg(element: Attribute, compiler: SQLCompiler, **kw: Any) -> str:
    doc = _arg(element, compiler, **kw)
    node, text = f"({doc} -> '{element.key}')", f"({doc} ->> '{element.key}')"
    if element.kind is ValueType.NUMBER:
        return f"CASE WHEN jsonb_typeof({node}) = 'number' THEN CAST({text} AS DOUBLE PRECISION) END"
    if element.kind is ValueType.BOOLEAN:
        return f"CASE WHEN jsonb_typeof({node}) = 'boolean' THEN CAST({text} AS BOOLEAN) END"
    if element.kind is ValueType.DATETIME:
        shape = r"'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$'"
        return (f"CASE WHEN jsonb_typeof({node}) = 'string' AND {text} ~ {shape} "
                f"THEN CAST({text} AS TIMESTAMP) AT TIME ZONE 'UTC' END")
    return f"CASE WHEN jsonb_typeof({node}) = 'string' THEN {text} END"


_SQL_TYPES: dict[ValueType, TypeEngine[Any]] = {
    ValueType.TEXT: String(), ValueType.NUMBER: Float(), ValueType.BOOLEAN: Boolean(),
    ValueType.DATETIME: UTCDateTime(), ValueType.DURATION: BigInteger(),
}


# -- parameters derived from now -------------------------------------------------------------------


@dataclass
class Params:
    """Bound parameters whose values follow from ``now`` at evaluation time."""

    recipes: dict[str, Callable[[datetime], Any]] = field(default_factory=dict)

    def now(self) -> BindParameter[Any]:
        self.recipes.setdefault("now", lambda now: now)
        return bindparam("now", type_=UTCDateTime())

    def derived(self, recipe: Callable[[datetime], Any], type_: TypeEngine[Any]) -> BindParameter[Any]:
        name = f"rule_p{len(self.recipes)}"
        self.recipes[name] = recipe
        return bindparam(name, type_=type_)

    def bind(self, now: datetime) -> dict[str, Any]:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        return {name: recipe(now) for name, recipe in self.recipes.items()}


def micros_to_datetime(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


# -- the compiler ------------------------------------------------------------------------------------


@dataclass
class SqlCompiler:
    """Turns condition trees into SQL expressions over columns given by ``resolve``."""

    resolve: Resolver
    params: Params = field(default_factory=Params)

    def predicate(self, node: ir.Pred) -> ColumnElement[bool]:
        if isinstance(node, ir.And):
            return and_(*(self.predicate(i) for i in node.items))
        if isinstance(node, ir.Or):
            return or_(*(self.predicate(i) for i in node.items))
        if isinstance(node, ir.Not):
            return not_(self.predicate(node.operand))
        if isinstance(node, ir.Compare):
            return self.compare(node.op, node.left, node.right)
        if isinstance(node, ir.Between):
            both = and_(self.compare(">=", node.operand, node.low), self.compare("<=", node.operand, node.high))
            return not_(both) if node.negated else both
        if isinstance(node, ir.InList):
            return self.in_list(node)
        if isinstance(node, ir.Like):
            folded = self.folded(node.operand)
            pattern = literal(fold(node.pattern), String())
            return folded.not_like(pattern, escape="\\") if node.negated else folded.like(pattern, escape="\\")
        if isinstance(node, ir.IsNull):
            value = self.value(node.operand)
            return value.is_not(None) if node.negated else value.is_(None)
        if isinstance(node, ir.IsBool):
            value = self.value(node.operand)
            target = true() if node.value else false()
            return value.is_not(target) if node.negated else value.is_(target)
        return self.value(node.operand) == literal(True, Boolean())

    def in_list(self, node: ir.InList) -> ColumnElement[bool]:
        if node.operand.type is ValueType.TEXT:
            value: ColumnElement[Any] = self.folded(node.operand)
            options: list[Any] = sorted({fold(str(v.value)) for v in node.values})
        else:
            value = self.value(node.operand)
            options = [v.value for v in node.values]
            if not all(isinstance(v, int) for v in options):
                # bound with the operand's type, 0.5 would become 0 for an integer column
                value, options = cast(value, Float()), [float(v) for v in options]
        return value.not_in(options) if node.negated else value.in_(options)

    def compare(self, op: str, left: ir.Expr, right: ir.Expr) -> ColumnElement[bool]:
        kind = left.type
        if kind in (ValueType.DATETIME, ValueType.DURATION):
            return self.compare_times(op, left, right)
        if kind is ValueType.TEXT:
            lhs, rhs = self.folded(left), self.folded(right)
            if op not in ("=", "<>"):
                lhs, rhs = ByteOrder(lhs), ByteOrder(rhs)
            return _apply(op, lhs, rhs)
        return _apply(op, self.value(left), self.value(right))

    def folded(self, node: ir.Expr) -> ColumnElement[Any]:
        """Text folded to ASCII lower case; constants are folded here rather than in SQL."""
        if isinstance(node, ir.Const):
            return literal(fold(str(node.value)), String())
        return AsciiLower(self.value(node))

    def compare_times(self, op: str, left: ir.Expr, right: ir.Expr) -> ColumnElement[bool]:
        """Compare exactly by moving everything but the stored times into one bound value."""
        terms, now_coef, const = _linear(left, 1)
        right_terms, right_now, right_const = _linear(right, -1)
        terms += right_terms
        now_coef += right_now
        const += right_const

        def offset(now: datetime) -> int:
            return now_coef * epoch_micros(now) + const

        if not terms:
            value = self.params.derived(offset, BigInteger()) if now_coef else literal(const, BigInteger())
            return _apply(op, value, literal(0, BigInteger()))
        if len(terms) == 1:
            # sign*atom + offset (op) 0  <=>  atom (op) -offset      when sign is +1
            #                            <=>  atom (flipped op) offset when sign is -1
            sign, atom = terms[0]
            final = op if sign > 0 else ir.FLIPPED[op]

            def bound(now: datetime) -> datetime:
                return micros_to_datetime(-offset(now) if sign > 0 else offset(now))

            threshold: ColumnElement[Any] = self.params.derived(bound, UTCDateTime()) if now_coef else \
                literal(bound(EPOCH), UTCDateTime())
            return _apply(final, self.moment(atom), threshold)
        total: ColumnElement[Any] = self.params.derived(offset, BigInteger()) if now_coef else \
            literal(const, BigInteger())
        for sign, atom in terms:
            micros = EpochMicros(self.moment(atom))
            total = total + micros if sign > 0 else total - micros
        return _apply(op, total, literal(0, BigInteger()))

    def moment(self, node: ir.Expr) -> ColumnElement[Any]:
        if isinstance(node, ir.Now):
            return self.params.now()
        return self.value(node)

    def value(self, node: ir.Expr) -> ColumnElement[Any]:
        if isinstance(node, ir.Field):
            return self.resolve(node.field)
        if isinstance(node, ir.Const):
            return _const(node)
        if isinstance(node, ir.Now):
            return self.params.now()
        if isinstance(node, ir.Neg):
            return -cast(self.value(node.operand), Float())
        if isinstance(node, ir.Arith):
            if node.type is not ValueType.NUMBER:
                raise ValueError(f"time arithmetic '{ir.render(node)}' is only compiled inside a comparison")
            lhs, rhs = cast(self.value(node.left), Float()), cast(self.value(node.right), Float())
            if node.op == "/":
                return lhs / func.nullif(rhs, literal(0.0, Float()), type_=Float())
            return _apply_arith(node.op, lhs, rhs)
        return self.function(node)

    def function(self, node: ir.Func) -> ColumnElement[Any]:
        args = [self.moment(a) for a in node.args]
        if node.name == "lower":
            return AsciiLower(args[0])
        if node.name == "upper":
            return AsciiUpper(args[0])
        if node.name == "trim":
            return func.trim(args[0], type_=String())
        if node.name == "length":
            return func.length(args[0], type_=Integer())
        if node.name == "coalesce":
            return func.coalesce(*args, type_=_SQL_TYPES[node.type])
        return DatePart(node.name, args[0])


def _const(node: ir.Const) -> ColumnElement[Any]:
    value = node.value
    if node.type is ValueType.TEXT:
        return literal(value, String())
    if node.type is ValueType.BOOLEAN:
        return literal(value, Boolean())
    if node.type is ValueType.DATETIME:
        return literal(value, UTCDateTime())
    if node.type is ValueType.DURATION:
        assert isinstance(value, timedelta)
        return literal(value // timedelta(microseconds=1), BigInteger())
    return literal(value, Integer() if isinstance(value, int) else Float())


def _linear(node: ir.Expr, sign: int) -> tuple[list[tuple[int, ir.Expr]], int, int]:
    """A time expression as sign-weighted stored times, a multiple of now, and microseconds."""
    if isinstance(node, ir.Now):
        return [], sign, 0
    if isinstance(node, ir.Const):
        if isinstance(node.value, datetime):
            return [], 0, sign * epoch_micros(node.value)
        assert isinstance(node.value, timedelta)
        return [], 0, sign * (node.value // timedelta(microseconds=1))
    if isinstance(node, ir.Arith):
        left = _linear(node.left, sign)
        right = _linear(node.right, sign if node.op == "+" else -sign)
        return left[0] + right[0], left[1] + right[1], left[2] + right[2]
    return [(sign, node)], 0, 0


def _apply(op: str, lhs: ColumnElement[Any], rhs: ColumnElement[Any]) -> ColumnElement[bool]:
    if op == "=":
        return lhs == rhs
    if op == "<>":
        return lhs != rhs
    if op == "<":
        return lhs < rhs
    if op == "<=":
        return lhs <= rhs
    if op == ">":
        return lhs > rhs
    return lhs >= rhs


def _apply_arith(op: str, lhs: ColumnElement[Any], rhs: ColumnElement[Any]) -> ColumnElement[Any]:
    if op == "+":
        return lhs + rhs
    if op == "-":
        return lhs - rhs
    return lhs * rhs


def tri_state(predicate: ColumnElement[bool]) -> ColumnElement[Any]:
    """1 when the predicate is true, 0 when false, NULL when unknown."""
    return case((predicate, 1), (not_(predicate), 0), else_=null())


def holds(predicate: ColumnElement[bool]) -> ColumnElement[Any]:
    """1 when the predicate holds, else 0 (unknown does not hold)."""
    return case((predicate, 1), else_=0)

