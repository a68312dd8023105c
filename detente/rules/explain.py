"""Evaluate a condition for one record in Python and explain which clauses held, with the values.

This evaluator follows ``detente.rules.semantics`` exactly as the compiled SQL does (tested
property-based against SQLite and PostgreSQL): three-valued logic, ASCII case folding,
LIKE with ``\\`` escapes, double-precision arithmetic, exact time arithmetic in microseconds.
A record maps unified field names to values (text, numbers, booleans, aware datetimes, or
None for empty).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from detente.rules import ir
from detente.rules.conditions import Condition, epoch_micros
from detente.rules.durations import describe
from detente.rules.fields import ValueType
from detente.rules.semantics import fold, like_regex, upper

Record = Mapping[str, Any]
Truth = bool | None
HELD, FAILED, UNKNOWN = "held", "failed", "unknown"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# -- evaluation ---------------------------------------------------------------------------------


def holds(condition: Condition, record: Record, now: datetime) -> bool:
    """True only when the condition is true (unknown does not hold)."""
    return evaluate(condition.root, record, now) is True


def evaluate(node: ir.Pred, record: Record, now: datetime) -> Truth:
    """True, False, or None for unknown."""
    if isinstance(node, ir.And):
        results = [evaluate(i, record, now) for i in node.items]
        return False if False in results else None if None in results else True
    if isinstance(node, ir.Or):
        results = [evaluate(i, record, now) for i in node.items]
        return True if True in results else None if None in results else False
    if isinstance(node, ir.Not):
        inner = evaluate(node.operand, record, now)
        return None if inner is None else not inner
    if isinstance(node, ir.Compare):
        return compare(node.op, node.left, node.right, record, now)
    if isinstance(node, ir.Between):
        low = compare(">=", node.operand, node.low, record, now)
        high = compare("<=", node.operand, node.high, record, now)
        both = False if False in (low, high) else None if None in (low, high) else True
        return None if both is None else (not both if node.negated else both)
    if isinstance(node, ir.InList):
        value = value_of(node.operand, record, now)
        if value is None:
            return None
        if node.operand.type is ValueType.TEXT:
            found = fold(str(value)) in {fold(str(v.value)) for v in node.values}
        else:
            found = any(value == v.value for v in node.values)
        return not found if node.negated else found
    if isinstance(node, ir.Like):
        value = value_of(node.operand, record, now)
        if value is None:
            return None
        matched = like_regex(fold(node.pattern)).fullmatch(fold(str(value))) is not None
        return not matched if node.negated else matched
    if isinstance(node, ir.IsNull):
        empty = value_of(node.operand, record, now) is None
        return not empty if node.negated else empty
    if isinstance(node, ir.IsBool):
        value = value_of(node.operand, record, now)
        result = value is node.value if isinstance(value, bool) else False
        return not result if node.negated else result
    value = value_of(node.operand, record, now)
    return None if value is None else bool(value)


def compare(op: str, left: ir.Expr, right: ir.Expr, record: Record, now: datetime) -> Truth:
    if left.type in (ValueType.DATETIME, ValueType.DURATION):
        lhs: Any = micros(left, record, now)
        rhs: Any = micros(right, record, now)
    else:
        lhs, rhs = value_of(left, record, now), value_of(right, record, now)
        if left.type is ValueType.TEXT and lhs is not None and rhs is not None:
            lhs, rhs = fold(str(lhs)), fold(str(rhs))
    if lhs is None or rhs is None:
        return None
    return _apply(op, lhs, rhs)


def _apply(op: str, lhs: Any, rhs: Any) -> bool:
    if op == "=":
        return bool(lhs == rhs)
    if op == "<>":
        return bool(lhs != rhs)
    if op == "<":
        return bool(lhs < rhs)
    if op == "<=":
        return bool(lhs <= rhs)
    if op == ">":
        return bool(lhs > rhs)
    return bool(lhs >= rhs)


def micros(node: ir.Expr, record: Record, now: datetime) -> int | None:
    """A time as microseconds since 1970, or a duration in microseconds; exact."""
    if isinstance(node, ir.Arith):
        lhs, rhs = micros(node.left, record, now), micros(node.right, record, now)
        if lhs is None or rhs is None:
            return None
        return lhs + rhs if node.op == "+" else lhs - rhs
    value = value_of(node, record, now)
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value // timedelta(microseconds=1)
    assert isinstance(value, datetime)
    return epoch_micros(value)


def value_of(node: ir.Expr, record: Record, now: datetime) -> Any:
    if isinstance(node, ir.Field):
        return record.get(node.field.name)
    if isinstance(node, ir.Const):
        return node.value
    if isinstance(node, ir.Now):
        return now
    if isinstance(node, ir.Neg):
        inner = value_of(node.operand, record, now)
        return None if inner is None else -float(inner)
    if isinstance(node, ir.Arith):
        return _arith(node, record, now)
    return _function(node, record, now)


def _arith(node: ir.Arith, record: Record, now: datetime) -> Any:
    if node.type is not ValueType.NUMBER:
        total = micros(node, record, now)
        if total is None:
            return None
        if node.type is ValueType.DURATION:
            return timedelta(microseconds=total)
        try:
            return _EPOCH + timedelta(microseconds=total)
        except OverflowError:
            return None
    lhs, rhs = value_of(node.left, record, now), value_of(node.right, record, now)
    if lhs is None or rhs is None:
        return None
    a, b = float(lhs), float(rhs)
    if node.op == "/":
        return None if b == 0 else a / b
    return a + b if node.op == "+" else a - b if node.op == "-" else a * b


def _function(node: ir.Func, record: Record, now: datetime) -> Any:
    args = [value_of(a, record, now) for a in node.args]
    if node.name == "coalesce":
        return next((a for a in args if a is not None), None)
    value = args[0]
    if value is None:
        return None
    if node.name == "lower":
        return fold(str(value))
    if node.name == "upper":
        return upper(str(value))
    if node.name == "trim":
        return str(value).strip(" ")
    if node.name == "length":
        return len(str(value))
    moment = value.astimezone(UTC)
    if node.name == "weekday":
        return moment.isoweekday()
    return int(getattr(moment, node.name))


# -- explanation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One clause of a condition, whether it held, and the values seen."""

    text: str
    outcome: str  # held | failed | unknown
    detail: str
    children: tuple[Step, ...] = ()

    def lines(self, indent: int = 0) -> list[str]:
        mark = {HELD: "held", FAILED: "FAILED", UNKNOWN: "unknown"}[self.outcome]
        out = [f"{'  ' * indent}{mark:8} {self.detail}"]
        for child in self.children:
            out.extend(child.lines(indent + 1))
        return out


def explain(condition: Condition, record: Record, now: datetime) -> Step:
    """Which clauses held and which failed for this record, with the values seen."""
    return _explain(condition.root, record, now)


def _outcome(result: Truth) -> str:
    return HELD if result is True else FAILED if result is False else UNKNOWN


def _explain(node: ir.Pred, record: Record, now: datetime) -> Step:
    result = evaluate(node, record, now)
    outcome = _outcome(result)
    text = ir.render(node)
    if isinstance(node, (ir.And, ir.Or)):
        children = tuple(_explain(i, record, now) for i in node.items)
        word = "all of" if isinstance(node, ir.And) else "any of"
        counts = sum(1 for c in children if c.outcome == HELD)
        return Step(text, outcome, f"{word} {len(children)} clauses ({counts} held)", children)
    if isinstance(node, ir.Not):
        child = _explain(node.operand, record, now)
        return Step(text, outcome, f"NOT ({child.detail})", (child,))
    if result is None:
        return Step(text, outcome, _unknown_detail(node, record, now))
    return Step(text, outcome, _detail(node, result, record, now))


def _unknown_detail(node: ir.Pred, record: Record, now: datetime) -> str:
    empty = sorted({n.field.name for n in ir.walk(node)
                    if isinstance(n, ir.Field) and record.get(n.field.name) is None})
    if empty:
        return f"{', '.join(empty)} {'is' if len(empty) == 1 else 'are'} empty, so {ir.render(node)} is unknown"
    return f"{ir.render(node)} is unknown (a value in it is empty)"


def _detail(node: ir.Pred, result: bool, record: Record, now: datetime) -> str:
    if isinstance(node, ir.Compare):
        op = node.op if result else ir.NEGATED[node.op]
        return f"{_side(node.left, record, now)} {op} {_side(node.right, record, now)}"
    if isinstance(node, ir.Between):
        word = "is between" if (result != node.negated) else "is not between"
        return (f"{_side(node.operand, record, now)} {word} {_side(node.low, record, now)} "
                f"and {_side(node.high, record, now)}")
    if isinstance(node, ir.InList):
        inside = result != node.negated
        values = _list(v.value for v in node.values)
        return f"{_side(node.operand, record, now)} {'is in' if inside else 'is not in'} ({values})"
    if isinstance(node, ir.Like):
        matched = result != node.negated
        word = "matches" if matched else "does not match"
        return f"{_side(node.operand, record, now)} {word} {ir.quote(node.pattern)}"
    if isinstance(node, ir.IsNull):
        value = value_of(node.operand, record, now)
        shown = "empty" if value is None else f"not empty ({fmt(value)})"
        return f"{ir.render(node.operand)} is {shown}"
    assert isinstance(node, (ir.IsBool, ir.Truth))
    value = value_of(node.operand, record, now)
    return f"{ir.render(node.operand)} is {fmt(value)}"


def _side(node: ir.Expr, record: Record, now: datetime) -> str:
    if isinstance(node, ir.Const):
        return fmt(node.value)
    value = value_of(node, record, now)
    if isinstance(node, ir.Field):
        return f"{node.field.name} {fmt(value)}"
    return f"{ir.render(node)} ({fmt(value)})"


def _list(values: Any, limit: int = 6) -> str:
    items = [fmt(v) for v in values]
    if len(items) > limit:
        return ", ".join(items[:limit]) + f", and {len(items) - limit} more"
    return ", ".join(items)


def fmt(value: Any) -> str:
    """A value as an explanation shows it."""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return ir.quote(value)
    if isinstance(value, float):
        return ir.number(value) if value.is_integer() else f"{value:g}"
    if isinstance(value, datetime):
        moment = value.astimezone(UTC)
        pattern = "%Y-%m-%d %H:%M" if not (moment.second or moment.microsecond) else "%Y-%m-%d %H:%M:%S"
        return moment.strftime(pattern) + " UTC"
    if isinstance(value, timedelta):
        return describe(value)
    return str(value)
