"""The checked form of a condition: a small typed tree that SQL and Python both evaluate.

A condition's text is parsed by sqlglot and every node is checked against the allow-list in
``detente.rules.conditions``; what survives becomes these nodes. They carry a type (text,
number, boolean, datetime, duration) and render back to canonical text, so explanations and
the glossary quote exactly what runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from detente.rules.durations import describe
from detente.rules.fields import FieldDef, ValueType

Value = str | int | float | bool | datetime | timedelta | None

COMPARISONS = ("=", "<>", "<", "<=", ">", ">=")
NEGATED = {"=": "<>", "<>": "=", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}
FLIPPED = {"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
TEXT_FUNCTIONS = ("lower", "upper", "trim", "length")
DATE_PARTS = ("year", "month", "day", "hour", "weekday")
FUNCTIONS = ("coalesce", *TEXT_FUNCTIONS, *DATE_PARTS, "now")


@dataclass(frozen=True)
class Field:
    field: FieldDef
    pos: int

    @property
    def type(self) -> ValueType:
        return self.field.type


@dataclass(frozen=True)
class Const:
    value: str | int | float | bool | datetime | timedelta
    type: ValueType
    pos: int


@dataclass(frozen=True)
class Now:
    pos: int

    @property
    def type(self) -> ValueType:
        return ValueType.DATETIME


@dataclass(frozen=True)
class Neg:
    operand: Expr
    pos: int

    @property
    def type(self) -> ValueType:
        return ValueType.NUMBER


@dataclass(frozen=True)
class Arith:
    op: str  # + - * /
    left: Expr
    right: Expr
    type: ValueType
    pos: int


@dataclass(frozen=True)
class Func:
    name: str
    args: tuple[Expr, ...]
    type: ValueType
    pos: int


@dataclass(frozen=True)
class Compare:
    op: str
    left: Expr
    right: Expr
    pos: int


@dataclass(frozen=True)
class InList:
    operand: Expr
    values: tuple[Const, ...]
    negated: bool
    pos: int


@dataclass(frozen=True)
class Like:
    operand: Expr
    pattern: str
    negated: bool
    pos: int


@dataclass(frozen=True)
class IsNull:
    operand: Expr
    negated: bool
    pos: int


@dataclass(frozen=True)
class IsBool:
    """``x IS TRUE`` / ``x IS NOT FALSE``: never unknown, unlike ``x = TRUE``."""

    operand: Expr
    value: bool
    negated: bool
    pos: int


@dataclass(frozen=True)
class Between:
    operand: Expr
    low: Expr
    high: Expr
    negated: bool
    pos: int


@dataclass(frozen=True)
class Truth:
    """A boolean value used as a condition: ``salesforce_converted``."""

    operand: Expr
    pos: int


@dataclass(frozen=True)
class And:
    items: tuple[Pred, ...]
    pos: int


@dataclass(frozen=True)
class Or:
    items: tuple[Pred, ...]
    pos: int


@dataclass(frozen=True)
class Not:
    operand: Pred
    pos: int


Expr = Field | Const | Now | Neg | Arith | Func
Pred = Compare | InList | Like | IsNull | IsBool | Between | Truth | And | Or | Not
Node = Expr | Pred
LEAVES = (Compare, InList, Like, IsNull, IsBool, Between, Truth)


def type_of(node: Expr) -> ValueType:
    return node.type


def children(node: Node) -> tuple[Node, ...]:
    """The direct sub-nodes of a node, in source order."""
    if isinstance(node, (Field, Const, Now)):
        return ()
    if isinstance(node, (Neg, Truth, Not)):
        return (node.operand,)
    if isinstance(node, (Arith, Compare)):
        return (node.left, node.right)
    if isinstance(node, Func):
        return node.args
    if isinstance(node, InList):
        return (node.operand, *node.values)
    if isinstance(node, (Like, IsNull, IsBool)):
        return (node.operand,)
    if isinstance(node, Between):
        return (node.operand, node.low, node.high)
    return node.items


def walk(node: Node) -> list[Node]:
    out: list[Node] = [node]
    for child in children(node):
        out.extend(walk(child))
    return out


def field_names(node: Node) -> frozenset[str]:
    return frozenset(n.field.name for n in walk(node) if isinstance(n, Field))


def uses_now(node: Node) -> bool:
    return any(isinstance(n, Now) for n in walk(node))


# -- rendering --------------------------------------------------------------------------------

_PRECEDENCE = {"OR": 1, "AND": 2, "NOT": 3, "CMP": 4, "+": 5, "-": 5, "*": 6, "/": 6, "NEG": 7, "ATOM": 8}


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def literal(const: Const) -> str:
    """A constant as it would be written in a condition."""
    value = const.value
    if const.type is ValueType.TEXT:
        return quote(str(value))
    if const.type is ValueType.BOOLEAN:
        return "TRUE" if value else "FALSE"
    if const.type is ValueType.DATETIME:
        assert isinstance(value, datetime)
        return f"timestamp '{value.astimezone(UTC).isoformat().replace('+00:00', 'Z')}'"
    if const.type is ValueType.DURATION:
        assert isinstance(value, timedelta)
        return f"interval '{describe(value)}'"
    return number(value)


def number(value: object) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def render(node: Node) -> str:
    """Canonical text of a node, with only the parentheses its meaning needs."""
    return _render(node)[0]


def _wrap(node: Node, parent: int) -> str:
    text, prec = _render(node)
    return f"({text})" if prec < parent else text


def _render(node: Node) -> tuple[str, int]:
    atom = _PRECEDENCE["ATOM"]
    cmp_ = _PRECEDENCE["CMP"]
    if isinstance(node, Field):
        return node.field.name, atom
    if isinstance(node, Const):
        return literal(node), atom
    if isinstance(node, Now):
        return "now()", atom
    if isinstance(node, Func):
        return f"{node.name}({', '.join(render(a) for a in node.args)})", atom
    if isinstance(node, Neg):
        return f"-{_wrap(node.operand, atom)}", _PRECEDENCE["NEG"]
    if isinstance(node, Arith):
        p = _PRECEDENCE[node.op]
        return f"{_wrap(node.left, p)} {node.op} {_wrap(node.right, p + 1)}", p
    if isinstance(node, Compare):
        return f"{_wrap(node.left, cmp_ + 1)} {node.op} {_wrap(node.right, cmp_ + 1)}", cmp_
    if isinstance(node, InList):
        values = ", ".join(literal(v) for v in node.values)
        return f"{_wrap(node.operand, cmp_ + 1)} {'NOT IN' if node.negated else 'IN'} ({values})", cmp_
    if isinstance(node, Like):
        return f"{_wrap(node.operand, cmp_ + 1)} {'NOT LIKE' if node.negated else 'LIKE'} {quote(node.pattern)}", cmp_
    if isinstance(node, IsNull):
        return f"{_wrap(node.operand, cmp_ + 1)} IS {'NOT ' if node.negated else ''}NULL", cmp_
    if isinstance(node, IsBool):
        word = "TRUE" if node.value else "FALSE"
        return f"{_wrap(node.operand, cmp_ + 1)} IS {'NOT ' if node.negated else ''}{word}", cmp_
    if isinstance(node, Between):
        word = "NOT BETWEEN" if node.negated else "BETWEEN"
        low, high = _wrap(node.low, cmp_ + 1), _wrap(node.high, cmp_ + 1)
        return f"{_wrap(node.operand, cmp_ + 1)} {word} {low} AND {high}", cmp_
    if isinstance(node, Truth):
        return _render(node.operand)
    if isinstance(node, Not):
        return f"NOT {_wrap(node.operand, _PRECEDENCE['NOT'])}", _PRECEDENCE["NOT"]
    word = "AND" if isinstance(node, And) else "OR"
    p = _PRECEDENCE[word]
    return f" {word} ".join(_wrap(item, p) for item in node.items), p
