"""Conditions in plain words, for the glossary: ``score is at least 50 and ...``.

Generated from the same checked tree that compiles to SQL, so the handbook cannot say
something the rules do not do.
"""

from __future__ import annotations

from detente.rules import ir
from detente.rules.durations import describe
from detente.rules.fields import ValueType

_OPS = {"=": "is", "<>": "is not", "<": "is less than", "<=": "is at most", ">": "is more than",
        ">=": "is at least"}
_TIME_OPS = {"=": "is exactly", "<>": "is not", "<": "is before", "<=": "is at or before", ">": "is after",
             ">=": "is at or after"}
_DURATION_OPS = {"=": "is exactly", "<>": "is not", "<": "is less than", "<=": "is at most",
                 ">": "is more than", ">=": "is at least"}


def field_words(name: str) -> str:
    return name.replace("_", " ")


def phrase(node: ir.Pred) -> str:
    """One sentence fragment for a condition."""
    if isinstance(node, ir.And):
        return "; and ".join(_nested(i) for i in node.items) if len(node.items) > 2 else \
            " and ".join(_nested(i) for i in node.items)
    if isinstance(node, ir.Or):
        return " or ".join(_nested(i) for i in node.items)
    if isinstance(node, ir.Not):
        if isinstance(node.operand, ir.Truth):
            return f"{value(node.operand.operand)} is not true"
        return f"not ({phrase(node.operand)})"
    if isinstance(node, ir.Compare):
        ops = _TIME_OPS if node.left.type is ValueType.DATETIME else \
            _DURATION_OPS if node.left.type is ValueType.DURATION else _OPS
        if node.left.type is ValueType.BOOLEAN and isinstance(node.right, ir.Const):
            yes = bool(node.right.value) == (node.op == "=")
            return f"{value(node.left)} is {'true' if yes else 'false'}"
        return f"{value(node.left)} {ops[node.op]} {value(node.right)}"
    if isinstance(node, ir.InList):
        values = ", ".join(value(v) for v in node.values)
        return f"{value(node.operand)} is {'not ' if node.negated else ''}one of {values}"
    if isinstance(node, ir.Like):
        return f"{value(node.operand)} {'does not match' if node.negated else 'matches'} {_pattern(node.pattern)}"
    if isinstance(node, ir.IsNull):
        return f"{value(node.operand)} is {'filled in' if node.negated else 'empty'}"
    if isinstance(node, ir.IsBool):
        truth = node.value != node.negated
        return f"{value(node.operand)} is {'true' if truth else 'not true'}" if node.value else \
            f"{value(node.operand)} is {'false' if truth else 'not false'}"
    if isinstance(node, ir.Between):
        word = "is not between" if node.negated else "is between"
        return f"{value(node.operand)} {word} {value(node.low)} and {value(node.high)}"
    return f"{value(node.operand)} is true"


def _nested(node: ir.Pred) -> str:
    text = phrase(node)
    return f"({text})" if isinstance(node, (ir.And, ir.Or)) else text


def _pattern(pattern: str) -> str:
    if pattern.endswith("%") and "%" not in pattern[:-1] and "_" not in pattern:
        return f"anything starting with '{pattern[:-1]}'"
    if pattern.startswith("%") and "%" not in pattern[1:] and "_" not in pattern:
        return f"anything ending with '{pattern[1:]}'"
    return f"the pattern '{pattern}'"


def value(node: ir.Expr) -> str:
    if isinstance(node, ir.Field):
        return "the " + field_words(node.field.name)
    if isinstance(node, ir.Const):
        if node.type is ValueType.TEXT:
            return f"'{node.value}'"
        if node.type is ValueType.DURATION:
            assert not isinstance(node.value, (str, int, float, bool))
            return describe(node.value)  # type: ignore[arg-type]
        return ir.literal(node)
    if isinstance(node, ir.Now):
        return "now"
    if isinstance(node, ir.Arith) and node.type is ValueType.DURATION and node.op == "-" \
            and isinstance(node.left, ir.Now):
        return f"the time since {value(node.right).removeprefix('the ')}"
    if isinstance(node, ir.Arith) and node.type is ValueType.DURATION and node.op == "-":
        return f"the time from {value(node.right).removeprefix('the ')} to {value(node.left).removeprefix('the ')}"
    if isinstance(node, ir.Func):
        return f"{node.name} of {', '.join(value(a) for a in node.args)}"
    return ir.render(node)
