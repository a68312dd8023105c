"""Parse a condition with sqlglot and accept it only if every node is on the allow-list.

Conditions are SQL boolean expressions as Salesforce admins write SOQL WHERE clauses::

    score >= 50 AND email_domain NOT IN ('gmail.com', 'yahoo.com') AND country IN ('US', 'CA')
    now() - created_at > interval '3 days'

Allowed: comparisons (= <> != < <= > >=), AND, OR, NOT, [NOT] IN (literals), [NOT] LIKE
'pattern', IS [NOT] NULL, IS [NOT] TRUE/FALSE, [NOT] BETWEEN, + - * / and unary minus,
parentheses, text/number/TRUE/FALSE literals, ``interval '3 days'``, ``date '2026-01-01'``,
``timestamp '2026-01-01T10:00:00Z'``, ``now()``, the functions lower, upper, trim, length,
coalesce, year, month, day, hour, weekday, and known field names. Everything else —
statements, ``;``, comments, subqueries, casts, parameters, other functions, unknown names —
is rejected with its position. Every problem in a condition is reported, not just the first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokenizer_core import Token, TokenType

from detente.rules import ir
from detente.rules.durations import EXPECTED as DURATION_FORMS
from detente.rules.durations import parse_duration
from detente.rules.fields import Catalog, FieldDef, ValueType
from detente.rules.problems import expected_one_of

MAX_LENGTH = 4000
MAX_NUMBER = 1e15
ALLOWED = (
    "expected a condition built from comparisons (= <> < <= > >=), AND, OR, NOT, IN, LIKE, "
    "IS NULL, BETWEEN, + - * /, intervals and the functions " + ", ".join(sorted(ir.FUNCTIONS))
)
_DIALECT = Postgres()
_WORDS = {
    ValueType.TEXT: "text", ValueType.NUMBER: "a number", ValueType.BOOLEAN: "true/false",
    ValueType.DATETIME: "a date and time", ValueType.DURATION: "a duration",
}
_Kinds = dict[type[exp.Expression], str]
_CMP: _Kinds = {exp.EQ: "=", exp.NEQ: "<>", exp.LT: "<", exp.LTE: "<=", exp.GT: ">", exp.GTE: ">="}
_ARITH: _Kinds = {exp.Add: "+", exp.Sub: "-", exp.Mul: "*", exp.Div: "/"}
_DATE_PART_CLASSES: _Kinds = {exp.Year: "year", exp.Month: "month", exp.Day: "day", exp.Hour: "hour",
                              exp.DayOfWeek: "weekday", exp.DayOfWeekIso: "weekday"}
_TEXT_FUNC_CLASSES: _Kinds = {exp.Lower: "lower", exp.Upper: "upper", exp.Trim: "trim", exp.Length: "length"}
_DISALLOWED_WORDS: dict[type[exp.Expression], str] = {
    exp.Subquery: "a subquery", exp.Select: "a subquery", exp.Exists: "EXISTS (a subquery)",
    exp.Placeholder: "a parameter", exp.Parameter: "a parameter", exp.Star: "*",
    exp.Cast: "a cast", exp.DPipe: "|| (text concatenation)", exp.Case: "CASE", exp.Mod: "% (remainder)",
    exp.Bracket: "[] (subscripts)", exp.Alias: "an alias (two expressions side by side)",
    exp.Escape: "a custom ESCAPE (detente always escapes with \\)",
    exp.NullSafeEQ: "IS NOT DISTINCT FROM", exp.NullSafeNEQ: "IS DISTINCT FROM",
    exp.Any: "ANY", exp.All: "ALL", exp.Array: "an array", exp.Tuple: "a tuple",
    exp.RegexpLike: "~ (regular expressions)", exp.JSONExtract: "-> (JSON access)",
    exp.JSONExtractScalar: "->> (JSON access)", exp.Window: "a window function",
}
_POINT_AT: dict[type[exp.Expression], tuple[TokenType, ...]] = {
    exp.Exists: (TokenType.EXISTS,), exp.Subquery: (TokenType.SELECT,), exp.Select: (TokenType.SELECT,),
    exp.Placeholder: (TokenType.PLACEHOLDER, TokenType.PARAMETER, TokenType.COLON),
    exp.Parameter: (TokenType.PLACEHOLDER, TokenType.PARAMETER, TokenType.COLON),
}
_STATEMENTS = (exp.Query, exp.DML, exp.DDL, exp.Command, exp.Set, exp.Use, exp.Transaction,
               exp.Commit, exp.Rollback, exp.Pragma, exp.Describe)


@dataclass(frozen=True)
class ConditionProblem:
    """One problem in a condition, at a character offset into its text."""

    offset: int
    what: str
    expected: str


@dataclass(frozen=True)
class Condition:
    """A checked condition: its text, its typed tree and the fields it reads."""

    text: str
    root: ir.Pred
    fields: frozenset[str]
    uses_now: bool

    def __str__(self) -> str:
        return ir.render(self.root)


@dataclass(frozen=True)
class Scope:
    """What names a condition may use: the catalog, a CRM's own names, owner fields only."""

    catalog: Catalog
    system: str | None = None
    owner_only: bool = False
    allowed: Callable[[FieldDef], str | None] | None = None


def parse_condition(text: object, scope: Scope) -> Condition | list[ConditionProblem]:
    """The checked condition, or every problem found in it."""
    if not isinstance(text, str):
        return [ConditionProblem(0, f"{text!r} is not a condition", "expected text such as score >= 50")]
    if not text.strip():
        return [ConditionProblem(0, "the condition is empty", "expected a condition such as score >= 50")]
    if len(text) > MAX_LENGTH:
        return [ConditionProblem(0, f"the condition is {len(text)} characters long",
                                 f"expected at most {MAX_LENGTH}; split it into fields or stages")]
    if "\x00" in text:
        return [ConditionProblem(text.index("\x00"), "the condition contains a NUL character",
                                 "expected printable text")]
    tokens = _tokens(text)
    if isinstance(tokens, ConditionProblem):
        return [tokens]
    problems = list(_token_problems(text, tokens))
    if problems:
        return problems
    unclosed = _unclosed_paren(tokens)
    if unclosed is not None:
        return [ConditionProblem(unclosed, "a '(' is never closed", "expected a matching ')'")]
    try:
        parsed = _DIALECT.parser().parse(tokens, text)
    except ParseError as exc:
        return [_parse_problem(text, exc)]
    except RecursionError:
        return [ConditionProblem(0, "the condition is nested too deeply", "expected fewer parentheses")]
    roots = [p for p in parsed if isinstance(p, exp.Expression)]
    if len(roots) != 1:
        return [ConditionProblem(0, "expected exactly one condition", "write one condition, no statements")]
    checker = _Checker(text, scope, tokens)
    try:
        root = checker.predicate(roots[0], 0)
    except RecursionError:
        return [ConditionProblem(0, "the condition is nested too deeply", "expected fewer parentheses")]
    if checker.problems or root is None:
        return checker.problems or [ConditionProblem(0, "the condition is not valid", ALLOWED)]
    return Condition(text, root, ir.field_names(root), ir.uses_now(root))


# -- tokens -------------------------------------------------------------------------------------


def _tokens(text: str) -> list[Token] | ConditionProblem:
    try:
        return _DIALECT.tokenize(text)
    except TokenError:
        offset, kind = _unclosed(text)
        if kind:
            return ConditionProblem(offset, f"{kind} is never closed",
                                    "expected text in 'single quotes' closed on the same condition")
        return ConditionProblem(offset, "the condition cannot be read", ALLOWED)
    except RecursionError:
        return ConditionProblem(0, "the condition is nested too deeply", "expected fewer parentheses")


def _unclosed(text: str) -> tuple[int, str]:
    """Where a quote or comment opens that never closes (the usual reason tokenizing fails)."""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "'\"":
            end = text.find(ch, i + 1)
            while end >= 0 and text[end + 1:end + 2] == ch:
                end = text.find(ch, end + 2)
            if end < 0:
                return i, "a quoted text" if ch == "'" else "a quoted name"
            i = end + 1
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                return i, "a comment"
            i = end + 2
            continue
        if text.startswith("$", i):
            tag_end = text.find("$", i + 1)
            if tag_end > 0:
                tag = text[i:tag_end + 1]
                if text.find(tag, tag_end + 1) < 0:
                    return i, "a $-quoted text"
        i += 1
    return 0, ""


def _token_problems(text: str, tokens: list[Token]) -> list[ConditionProblem]:
    problems: list[ConditionProblem] = []
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            problems.append(ConditionProblem(token.start, "';' ends a statement",
                                             "expected one condition and nothing after it"))
    comment_at = _comment_offset(text, tokens)
    if comment_at is not None:
        problems.append(ConditionProblem(comment_at, "comments are not allowed inside a condition",
                                         "expected only the condition; put notes in a YAML # comment"))
    return problems


def _unclosed_paren(tokens: list[Token]) -> int | None:
    """The offset of a '(' that no ')' closes, if any."""
    opened: list[int] = []
    for token in tokens:
        if token.token_type == TokenType.L_PAREN:
            opened.append(token.start)
        elif token.token_type == TokenType.R_PAREN and opened:
            opened.pop()
    return opened[-1] if opened else None


def _comment_offset(text: str, tokens: list[Token]) -> int | None:
    """The offset of the first SQL comment, looking only between tokens (never inside strings)."""
    previous_end = 0
    for token in [*tokens, None]:
        gap = text[previous_end:token.start if token is not None else len(text)]
        found = [at for at in (gap.find("--"), gap.find("/*")) if at >= 0]
        if found:
            return previous_end + min(found)
        if token is not None:
            previous_end = token.end + 1
    return 0 if any(t.comments for t in tokens) else None


def _parse_problem(text: str, exc: ParseError) -> ConditionProblem:
    detail = exc.errors[0] if exc.errors else {}
    line, col = int(detail.get("line") or 1), int(detail.get("col") or 1)
    highlight = str(detail.get("highlight") or "")
    lines = text.split("\n")
    end = sum(len(part) + 1 for part in lines[:line - 1]) + col - 1
    start = max(0, end - len(highlight) + 1) if highlight else max(0, min(end, len(text) - 1))
    description = str(detail.get("description") or exc)
    near = f" near '{highlight}'" if highlight else ""
    if description.startswith("Required keyword") or description.startswith("Expected"):
        return ConditionProblem(start, f"the condition is incomplete{near}",
                                "expected a value or field after the operator")
    if description.startswith("Expecting )"):
        return ConditionProblem(start, f"a '(' is never closed{near}", "expected a matching ')'")
    if description.startswith("The number of provided arguments"):
        return ConditionProblem(start, f"a function has too many arguments{near}",
                                "expected the arguments listed in the rules documentation")
    if "Unexpected token" in description or "Invalid expression" in description:
        return ConditionProblem(start, f"unexpected '{highlight}'" if highlight else "unexpected text", ALLOWED)
    return ConditionProblem(start, f"the condition cannot be parsed{near}", ALLOWED)


# -- the allow-list -----------------------------------------------------------------------------


@dataclass
class _Checker:
    text: str
    scope: Scope
    tokens: list[Token]
    problems: list[ConditionProblem] = field(default_factory=list)
    _intervals: list[Token] = field(default_factory=list)
    _interval_index: int = 0

    def __post_init__(self) -> None:
        self._intervals = [t for t in self.tokens if t.token_type == TokenType.INTERVAL]

    def fail(self, offset: int, what: str, expected: str) -> None:
        self.problems.append(ConditionProblem(offset, what, expected))

    # predicates

    def predicate(self, node: exp.Expression, fallback: int) -> ir.Pred | None:
        pos = _start(node, fallback)
        if isinstance(node, exp.Paren):
            return self.predicate(node.this, pos)
        if isinstance(node, _STATEMENTS) and node.parent is None:
            self.fail(self.tokens[0].start if self.tokens else 0, "a statement is not a condition",
                      "expected a condition such as score >= 50")
            return None
        if isinstance(node, (exp.And, exp.Or)):
            return self._connective(node, pos)
        if isinstance(node, exp.Not):
            return self._not(node, pos)
        if type(node) in _CMP:
            return self._compare(node, _CMP[type(node)], pos)
        if isinstance(node, exp.In):
            return self._in(node, pos, negated=False)
        if isinstance(node, (exp.Like, exp.ILike)):
            return self._like(node, pos, negated=False)
        if isinstance(node, exp.Is):
            return self._is(node, pos, negated=False)
        if isinstance(node, exp.Between):
            return self._between(node, pos, negated=False)
        value = self.expr(node, pos)
        if value is None:
            return None
        if value.type is not ValueType.BOOLEAN:
            self.fail(pos, f"'{ir.render(value)}' is {_WORDS[value.type]}, not a condition",
                      "expected a comparison such as score >= 50")
            return None
        return ir.Truth(value, pos)

    def _connective(self, node: exp.Expression, pos: int) -> ir.Pred | None:
        kind = type(node)
        parts: list[exp.Expression] = []
        stack = [node]
        while stack:
            current = stack.pop()
            if type(current) is kind:
                stack.extend([current.expression, current.this])
            else:
                parts.append(current)
        items = [self.predicate(p, pos) for p in parts]
        if any(i is None for i in items):
            return None
        checked = tuple(i for i in items if i is not None)
        return ir.And(checked, pos) if kind is exp.And else ir.Or(checked, pos)

    def _not(self, node: exp.Not, pos: int) -> ir.Pred | None:
        inner = node.this
        while isinstance(inner, exp.Paren):
            inner = inner.this
        if isinstance(inner, exp.In):
            return self._in(inner, pos, negated=True)
        if isinstance(inner, exp.Between):
            return self._between(inner, pos, negated=True)
        if isinstance(inner, exp.Is):
            return self._is(inner, pos, negated=True)
        if isinstance(inner, (exp.Like, exp.ILike)):
            return self._like(inner, pos, negated=True)
        operand = self.predicate(inner, pos)
        return None if operand is None else ir.Not(operand, pos)

    def _compare(self, node: exp.Expression, op: str, pos: int) -> ir.Pred | None:
        if isinstance(node.expression, exp.Null) or isinstance(node.this, exp.Null):
            self.fail(pos, f"'{op} NULL' is never true (NULL compares to nothing)",
                      "expected IS NULL or IS NOT NULL")
            return None
        left, right = self.expr(node.this, pos), self.expr(node.expression, pos)
        if left is None or right is None:
            return None
        if not self._comparable(left, right, op, pos):
            return None
        return ir.Compare(op, left, right, pos)

    def _comparable(self, left: ir.Expr, right: ir.Expr, op: str, pos: int) -> bool:
        if left.type is not right.type:
            self.fail(pos, f"{ir.render(left)} is {_WORDS[left.type]} and {ir.render(right)} is "
                           f"{_WORDS[right.type]}", "expected both sides of a comparison to be of one kind")
            return False
        if left.type is ValueType.BOOLEAN and op not in ("=", "<>"):
            self.fail(pos, f"true/false values cannot be compared with {op}", "expected = or <>")
            return False
        return True

    def _in(self, node: exp.In, pos: int, negated: bool) -> ir.Pred | None:
        negated ^= bool(node.args.get("negate"))
        if node.args.get("query") is not None or node.args.get("unnest") is not None \
                or node.args.get("field") is not None:
            self.fail(pos, "IN takes a list of values here, not a subquery", "expected IN ('a', 'b')")
            return None
        values = node.expressions or []
        if not values:
            self.fail(pos, "IN () has no values", "expected at least one value in the list")
            return None
        operand = self.expr(node.this, pos)
        consts: list[ir.Const] = []
        for value in values:
            vpos = _start(value, pos)
            if isinstance(value, exp.Null):
                self.fail(vpos, "NULL in an IN list never matches", "expected IS NULL for empty values")
                continue
            const = self.expr(value, vpos)
            if const is None:
                continue
            if not isinstance(const, ir.Const):
                self.fail(vpos, f"'{ir.render(const)}' in an IN list is not a constant",
                          "expected literal values such as 'US' or 50")
                continue
            consts.append(const)
        if operand is None or len(consts) != len(values):
            return None
        if operand.type not in (ValueType.TEXT, ValueType.NUMBER):
            self.fail(pos, f"IN compares text or numbers, not {_WORDS[operand.type]}",
                      "expected a text or number field")
            return None
        for const in consts:
            if const.type is not operand.type:
                self.fail(const.pos, f"{ir.literal(const)} is {_WORDS[const.type]} but "
                                     f"'{ir.render(operand)}' is {_WORDS[operand.type]}",
                          "expected every value in the list to be of the field's kind")
                return None
        return ir.InList(operand, tuple(consts), negated, pos)

    def _like(self, node: exp.Expression, pos: int, negated: bool) -> ir.Pred | None:
        negated ^= bool(node.args.get("negate"))
        operand = self.expr(node.this, pos)
        pattern = node.expression
        if not (isinstance(pattern, exp.Literal) and pattern.is_string):
            self.fail(_start(pattern, pos), "LIKE needs a quoted pattern", "expected LIKE 'acme%'")
            return None
        text = str(pattern.this)
        if _ends_with_escape(text):
            self.fail(_start(pattern, pos), "the LIKE pattern ends with the escape character \\",
                      "expected \\ to be followed by %, _ or \\")
            return None
        if operand is None:
            return None
        if operand.type is not ValueType.TEXT:
            self.fail(pos, f"LIKE matches text, and '{ir.render(operand)}' is {_WORDS[operand.type]}",
                      "expected a text field")
            return None
        return ir.Like(operand, text, negated, pos)

    def _is(self, node: exp.Is, pos: int, negated: bool) -> ir.Pred | None:
        negated ^= bool(node.args.get("negate"))
        target = node.expression
        operand = self.expr(node.this, pos)
        if operand is None:
            return None
        if isinstance(target, exp.Null):
            return ir.IsNull(operand, negated, pos)
        if isinstance(target, exp.Boolean):
            if operand.type is not ValueType.BOOLEAN:
                self.fail(pos, f"IS TRUE/FALSE needs true/false, and '{ir.render(operand)}' is "
                               f"{_WORDS[operand.type]}", "expected a true/false field")
                return None
            return ir.IsBool(operand, bool(target.this), negated, pos)
        self.fail(pos, "IS is only followed by NULL, TRUE or FALSE", "expected IS NULL or IS TRUE")
        return None

    def _between(self, node: exp.Between, pos: int, negated: bool) -> ir.Pred | None:
        negated ^= bool(node.args.get("negate"))
        operand = self.expr(node.this, pos)
        low, high = self.expr(node.args["low"], pos), self.expr(node.args["high"], pos)
        if operand is None or low is None or high is None:
            return None
        if operand.type is ValueType.BOOLEAN:
            self.fail(pos, "BETWEEN does not apply to true/false", "expected a number, text or time")
            return None
        if not (self._comparable(operand, low, ">=", pos) and self._comparable(operand, high, "<=", pos)):
            return None
        return ir.Between(operand, low, high, negated, pos)

    # values

    def expr(self, node: exp.Expression, fallback: int) -> ir.Expr | None:
        pos = _start(node, fallback)
        if isinstance(node, exp.Paren):
            return self.expr(node.this, pos)
        if isinstance(node, exp.Column):
            return self._column(node, pos)
        if isinstance(node, exp.Literal):
            return self._literal(node, pos)
        if isinstance(node, exp.Boolean):
            return ir.Const(bool(node.this), ValueType.BOOLEAN, pos)
        if isinstance(node, exp.Null):
            self.fail(pos, "NULL is not a value a condition can use here", "expected IS NULL or IS NOT NULL")
            return None
        if isinstance(node, exp.Neg):
            return self._neg(node, pos)
        if type(node) in _ARITH:
            return self._arith(node, _ARITH[type(node)], pos)
        if isinstance(node, exp.Interval):
            return self._interval(node, pos)
        if isinstance(node, exp.CurrentTimestamp):
            if node.this is not None:
                self.fail(pos, "now() takes no arguments", "expected now()")
                return None
            return ir.Now(pos)
        if isinstance(node, exp.Cast):
            return self._typed_literal(node, pos)
        if any(isinstance(node, cls) for cls in _DISALLOWED_WORDS):
            self._not_allowed(node, pos)
            return None
        if isinstance(node, (exp.Func, exp.Anonymous)):
            return self._function(node, pos)
        if isinstance(node, (exp.And, exp.Or, exp.Not, exp.In, exp.Like, exp.ILike, exp.Is, exp.Between,
                             *_CMP)):
            pred = self.predicate(node, pos)
            if pred is not None:
                self.fail(pos, "a condition is used where a value is expected",
                          "expected a field, a literal or a function here")
            return None
        self._not_allowed(node, pos)
        return None

    def _not_allowed(self, node: exp.Expression, pos: int) -> None:
        kinds = next((k for cls, k in _POINT_AT.items() if isinstance(node, cls)), ())
        pos = next((t.start for t in self.tokens if t.token_type in kinds), pos)
        word = next((w for cls, w in _DISALLOWED_WORDS.items() if isinstance(node, cls)), None)
        if word is None and isinstance(node, _STATEMENTS):
            self.fail(pos, "a statement is not a condition", "expected a condition such as score >= 50")
            return
        self.fail(pos, f"{word or repr(node.key.upper())} is not allowed in a condition", ALLOWED)

    def _column(self, node: exp.Column, pos: int) -> ir.Expr | None:
        parts = [p.name for p in node.parts]
        name = ".".join(parts)
        if len(parts) > 1 and self.scope.system is None:
            self.fail(pos, f"'{name}' is a qualified name", "expected a unified field name such as score")
            return None
        if len(parts) > 2:
            self.fail(pos, f"'{name}' has too many parts", "expected Field or Object.Field")
            return None
        found = self.scope.catalog.resolve(name, self.scope.system)
        if found is None:
            quoted = isinstance(node.this, exp.Identifier) and bool(node.this.args.get("quoted"))
            hint = " (text is written in 'single quotes')" if quoted else ""
            names = self.scope.catalog.names(self.scope.system)
            if self.scope.owner_only:
                names = [f.name for f in self.scope.catalog.fields.values() if f.owner_scoped]
            self.fail(pos, f"unknown field '{name}'{hint}", expected_one_of(name, names, "a field"))
            return None
        if self.scope.owner_only and not found.owner_scoped:
            owner_fields = sorted(f.name for f in self.scope.catalog.fields.values() if f.owner_scoped)
            self.fail(pos, f"'{found.name}' is not a field of the owner",
                      "a team condition reads only " + ", ".join(owner_fields))
            return None
        if self.scope.allowed is not None:
            reason = self.scope.allowed(found)
            if reason:
                self.fail(pos, reason, "expected a field that does not depend on this rule")
                return None
        return ir.Field(found, pos)

    def _literal(self, node: exp.Literal, pos: int) -> ir.Const | None:
        if node.is_string:
            return ir.Const(str(node.this), ValueType.TEXT, pos)
        raw = str(node.this)
        try:
            value: int | float = int(raw) if raw.isdigit() else float(raw)
        except ValueError:
            self.fail(pos, f"'{raw}' is not a number", "expected a number such as 50 or 0.5")
            return None
        if abs(value) > MAX_NUMBER:
            self.fail(pos, f"{raw} is out of range", "expected a number between -1e15 and 1e15")
            return None
        return ir.Const(value, ValueType.NUMBER, pos)

    def _neg(self, node: exp.Neg, pos: int) -> ir.Expr | None:
        operand = self.expr(node.this, pos)
        if operand is None:
            return None
        if operand.type is not ValueType.NUMBER:
            self.fail(pos, f"'-' needs a number, and '{ir.render(operand)}' is {_WORDS[operand.type]}",
                      "expected a number")
            return None
        if isinstance(operand, ir.Const) and isinstance(operand.value, (int, float)):
            return ir.Const(-operand.value, ValueType.NUMBER, pos)
        return ir.Neg(operand, pos)

    def _arith(self, node: exp.Expression, op: str, pos: int) -> ir.Expr | None:
        left, right = self.expr(node.this, pos), self.expr(node.expression, pos)
        if left is None or right is None:
            return None
        result = _arith_type(op, left.type, right.type)
        if result is None:
            self.fail(pos, f"cannot compute {_WORDS[left.type]} {op} {_WORDS[right.type]}",
                      "expected numbers with + - * /, a time minus a time, or a time plus or minus an interval")
            return None
        return ir.Arith(op, left, right, result, pos)

    def _interval(self, node: exp.Interval, pos: int) -> ir.Expr | None:
        index = self._interval_index
        self._interval_index += 1
        token_pos, raw = pos, None
        if index < len(self._intervals):
            token = self._intervals[index]
            token_pos = token.start
            raw = self._interval_text(token)
        if raw is None:
            unit = node.args.get("unit")
            raw = f"{node.this.name if node.this is not None else ''} {unit.name if unit is not None else ''}"
        parsed = parse_duration(raw.strip())
        if isinstance(parsed, str):
            self.fail(token_pos, f"bad interval: {parsed}", DURATION_FORMS)
            return None
        if parsed.business:
            self.fail(token_pos, f"'{raw.strip()}' is business time, which needs a calendar",
                      "expected calendar time in a condition (business time belongs in an SLA's within)")
            return None
        return ir.Const(parsed.calendar, ValueType.DURATION, token_pos)

    def _interval_text(self, token: Token) -> str | None:
        following = [t for t in self.tokens if t.start > token.start][:2]
        if not following:
            return None
        first = following[0]
        if first.token_type == TokenType.STRING:
            if len(following) > 1 and following[1].token_type == TokenType.VAR \
                    and self.text[first.end + 1:following[1].start].strip() == "":
                unit = following[1].text
                if unit.lower() not in ("and", "or", "not"):
                    return f"{first.text} {unit}"
            return first.text
        if first.token_type == TokenType.NUMBER and len(following) > 1:
            return f"{first.text} {following[1].text}"
        return first.text

    def _typed_literal(self, node: exp.Cast, pos: int) -> ir.Expr | None:
        target = node.args.get("to")
        inner = node.this
        kind = target.this if isinstance(target, exp.DataType) else None
        dtypes = exp.DataType.Type
        if kind not in (dtypes.DATE, dtypes.TIMESTAMP, dtypes.TIMESTAMPTZ) \
                or not (isinstance(inner, exp.Literal) and inner.is_string):
            self._not_allowed(node, pos)
            return None
        raw = str(inner.this).strip()
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            self.fail(pos, f"'{raw}' is not a date or time", "expected date '2026-01-31' or "
                      "timestamp '2026-01-31T09:00:00Z'")
            return None
        moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        if not 1900 <= moment.year <= 2200:
            self.fail(pos, f"'{raw}' is outside the years 1900-2200", "expected a date a CRM could hold")
            return None
        if kind == dtypes.DATE and (moment.hour, moment.minute, moment.second, moment.microsecond) != (0, 0, 0, 0):
            self.fail(pos, f"date '{raw}' has a time of day", "expected date 'YYYY-MM-DD' or timestamp '...'")
            return None
        return ir.Const(moment.astimezone(UTC), ValueType.DATETIME, pos)

    def _function(self, node: exp.Expression, pos: int) -> ir.Expr | None:
        name = _function_name(node)
        if type(node) in _TEXT_FUNC_CLASSES:
            return self._text_function(node, _TEXT_FUNC_CLASSES[type(node)], pos)
        if type(node) in _DATE_PART_CLASSES or (isinstance(node, exp.Anonymous) and name == "weekday"):
            return self._date_part(node, _DATE_PART_CLASSES.get(type(node), "weekday"), pos)
        if isinstance(node, exp.Coalesce):
            return self._coalesce(node, pos)
        self.fail(pos, f"function '{name}' is not allowed",
                  expected_one_of(name, ir.FUNCTIONS, "one of the functions"))
        return None

    def _text_function(self, node: exp.Expression, name: str, pos: int) -> ir.Expr | None:
        extra = [k for k, v in node.args.items() if k != "this" and v not in (None, [], False)]
        if extra:
            self.fail(pos, f"{name}() takes one argument here", f"expected {name}(field)")
            return None
        arg = self.expr(node.this, pos)
        if arg is None:
            return None
        if arg.type is not ValueType.TEXT:
            self.fail(pos, f"{name}() needs text, and '{ir.render(arg)}' is {_WORDS[arg.type]}",
                      "expected a text field")
            return None
        result = ValueType.NUMBER if name == "length" else ValueType.TEXT
        return ir.Func(name, (arg,), result, pos)

    def _date_part(self, node: exp.Expression, name: str, pos: int) -> ir.Expr | None:
        args = node.expressions if isinstance(node, exp.Anonymous) else [node.this]
        extra = [k for k, v in node.args.items() if k not in ("this", "expressions") and v not in (None, [], False)]
        if len(args) != 1 or extra:
            self.fail(pos, f"{name}() takes one argument", f"expected {name}(created_at)")
            return None
        arg = self.expr(args[0], pos)
        if arg is None:
            return None
        if arg.type is not ValueType.DATETIME or not _is_moment(arg):
            self.fail(pos, f"{name}() takes a date-time field, now() or a date, not '{ir.render(arg)}'",
                      f"expected {name}(created_at)")
            return None
        return ir.Func(name, (arg,), ValueType.NUMBER, pos)

    def _coalesce(self, node: exp.Coalesce, pos: int) -> ir.Expr | None:
        raw_args = [node.this, *(node.expressions or [])]
        args = [self.expr(a, pos) for a in raw_args]
        checked = [a for a in args if a is not None]
        if len(checked) != len(raw_args):
            return None
        if len(checked) < 2:
            self.fail(pos, "coalesce() needs at least two arguments", "expected coalesce(field, fallback)")
            return None
        kinds = {a.type for a in checked}
        if len(kinds) != 1 or ValueType.DURATION in kinds:
            self.fail(pos, "coalesce() arguments are of different kinds",
                      "expected arguments that are all text, all numbers, all true/false or all times")
            return None
        kind = kinds.pop()
        if kind is ValueType.DATETIME and not all(_is_moment(a) for a in checked):
            self.fail(pos, "coalesce() of times takes fields, now() or dates, not arithmetic",
                      "expected coalesce(first_activity_at, created_at)")
            return None
        return ir.Func("coalesce", tuple(checked), kind, pos)


def _function_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    if isinstance(node, exp.Func):
        try:
            return str(node.sql_name()).lower()
        except Exception:  # sqlglot raises for some classes without a SQL name
            return node.key.lower()
    return node.key.lower()


def _is_moment(node: ir.Expr) -> bool:
    """A time value SQL can compare as stored: a field, now(), a date, or coalesce of those."""
    if isinstance(node, (ir.Field, ir.Now)):
        return True
    if isinstance(node, ir.Const):
        return node.type is ValueType.DATETIME
    if isinstance(node, ir.Func) and node.name == "coalesce":
        return all(_is_moment(a) for a in node.args)
    return False


def _arith_type(op: str, left: ValueType, right: ValueType) -> ValueType | None:
    n, d, i = ValueType.NUMBER, ValueType.DATETIME, ValueType.DURATION
    table: dict[tuple[str, ValueType, ValueType], ValueType] = {
        **{(o, n, n): n for o in "+-*/"},
        ("-", d, d): i, ("+", d, i): d, ("-", d, i): d, ("+", i, d): d, ("+", i, i): i, ("-", i, i): i,
    }
    return table.get((op, left, right))


def _ends_with_escape(pattern: str) -> bool:
    trailing = len(pattern) - len(pattern.rstrip("\\"))
    return trailing % 2 == 1


def _start(node: exp.Expression | None, fallback: int) -> int:
    """The offset where a node's text starts: its earliest located leaf, else ``fallback``."""
    if node is None:
        return fallback
    best: int | None = None
    for sub in node.walk():
        meta = sub.meta if sub._meta else None
        if meta and "start" in meta:
            start = int(meta["start"])
            best = start if best is None else min(best, start)
    return fallback if best is None else best


def epoch_micros(moment: datetime) -> int:
    """Microseconds since 1970-01-01 UTC, exactly."""
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
