"""Property: every condition gives the same answer on SQLite, on PostgreSQL and in Python.

Hypothesis generates typed conditions (text, numbers, booleans, times and durations; all
operators and functions on the allow-list; NULLs everywhere) and people with values chosen
to hit the edges: case, non-ASCII letters, LIKE wildcards and escapes, zero, exact time
boundaries. The answer compared is three-valued: true, false or unknown.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.engine import make_url

from detente.rules import checked as c
from detente.rules import load_rules
from detente.rules.conditions import Condition, Scope, parse_condition
from detente.rules.evaluate import PersonQuery, fields_of
from detente.rules.explain import evaluate, explain
from detente.rules.fields import ValueType, encode_attribute
from detente.rules.sql import Params, tri_state
from detente.store.engine import create_schema, make_engine
from detente.store.tables import Person
from tests.conftest import POSTGRES_URL
from tests.rules.helpers import add_attributes, person, write

NOW = datetime(2026, 11, 16, 15, 0, tzinfo=UTC)
RULES = """\
version: 1
fields:
  industry: {type: text, hubspot: industry}
  revenue: {type: number, hubspot: annualrevenue}
  renewal_at: {type: datetime, hubspot: renewal_date}
  vip: {type: boolean, hubspot: vip}
teams:
  sales: {members: [rep@example.com]}
stages:
  lead: {meaning: m, owner: sales, definition: email IS NOT NULL}
"""
ATTRIBUTES = {"industry": ValueType.TEXT, "revenue": ValueType.NUMBER, "renewal_at": ValueType.DATETIME,
              "vip": ValueType.BOOLEAN}


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> c.Rules:
    return load_rules(write(tmp_path_factory.mktemp("rules"), RULES))


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory, postgres_server: Engine | None) -> Iterator[dict[str, Engine]]:
    """One migrated store per backend for the whole module (examples roll back their rows)."""
    out = {"sqlite": make_engine(f"sqlite:///{tmp_path_factory.mktemp('eq') / 'eq.db'}")}
    name = None
    if postgres_server is not None:
        name = f"detente_eq_{uuid.uuid4().hex[:10]}"
        with postgres_server.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        out["postgresql"] = make_engine(make_url(POSTGRES_URL).set(database=name).render_as_string(False))
    for engine in out.values():
        create_schema(engine)
        add_attributes(engine)
    yield out
    for engine in out.values():
        engine.dispose()
    if postgres_server is not None and name is not None:
        with postgres_server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# -- values ----------------------------------------------------------------------------------------

TEXTS = ["", "a", "A", "ab", "aB", "Ab", "b", "a%", "a_b", "a\\b", "é", "É", "İ", "ß", " a ", "us", "US", "Us",
         "gmail.com", "Gmail.COM", "z", "Z", "~", "a'b"]
texts = st.one_of(st.none(), st.sampled_from(TEXTS), st.text(alphabet="aAzZ_%\\ éÉ'", max_size=4))
exact_numbers = st.one_of(st.integers(-60, 60), st.sampled_from([0.5, -0.25, 2.5, 49.75, 50.0, 1000.0, -0.0]))
numbers = st.one_of(st.none(), exact_numbers, st.sampled_from([1 / 3, 0.1, 0.2, 0.3, 1e-3, 123.456]))
BOUNDARIES = [NOW, NOW - timedelta(days=3), NOW - timedelta(hours=24), NOW - timedelta(minutes=30),
              NOW + timedelta(weeks=1), NOW - timedelta(microseconds=1), datetime(2026, 11, 13, tzinfo=UTC),
              datetime(2026, 11, 15, 15, tzinfo=UTC), datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
              datetime(2026, 11, 15, 23, 59, 59, 999500, tzinfo=UTC)]
times = st.one_of(st.none(), st.sampled_from(BOUNDARIES),
                  st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31),
                               timezones=st.just(UTC)))
nows = st.sampled_from([NOW, NOW + timedelta(microseconds=1), datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)])


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "email_domain": draw(texts), "country": draw(texts), "industry": draw(texts),
        "score": draw(numbers), "activity_count": draw(st.integers(0, 12)),
        "revenue": draw(st.one_of(st.none(), exact_numbers)),
        "salesforce_converted": draw(st.booleans()), "vip": draw(st.one_of(st.none(), st.booleans())),
        "created_at": draw(times), "last_activity_at": draw(times), "renewal_at": draw(times),
    }


# -- conditions --------------------------------------------------------------------------------------

TEXT_FIELDS = st.sampled_from(["email_domain", "country", "industry"])
NUMBER_FIELDS = st.sampled_from(["score", "activity_count", "revenue"])
BOOL_FIELDS = st.sampled_from(["salesforce_converted", "vip"])
TIME_FIELDS = st.sampled_from(["created_at", "last_activity_at", "renewal_at"])
COMPARE = st.sampled_from(["=", "<>", "!=", "<", "<=", ">", ">="])


def quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


text_literals = st.sampled_from(TEXTS).map(quote)
number_literals = st.sampled_from(["0", "1", "-1", "2.5", "0.5", "50", "-0.25", "3", "1e3", "0.1", "49.75"])
interval_literals = st.sampled_from(["interval '3 days'", "interval '24h'", "interval '30m'", "interval '1 week'",
                                     "interval '0 minutes'", "interval '1 day'"])
time_literals = st.sampled_from(["date '2026-11-13'", "timestamp '2026-11-15T15:00:00Z'", "now()"])


def _levels(base: st.SearchStrategy[str], grow: Any, depth: int) -> list[st.SearchStrategy[str]]:
    """Strategies for depth 0..depth, each built once (so reprs and generation stay small)."""
    levels = [base]
    for _ in range(depth):
        levels.append(st.one_of(base, grow(levels[-1])))
    return levels


def _call(names: list[str]) -> Any:
    return lambda inner: st.builds(lambda f, e: f"{f}({e})", st.sampled_from(names), inner)


def _coalesce(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda a, b: f"coalesce({a}, {b})", inner, inner)


TEXT = _levels(st.one_of(TEXT_FIELDS, text_literals),
               lambda inner: st.one_of(_call(["lower", "upper", "trim"])(inner), _coalesce(inner)), 2)
MOMENT = _levels(st.one_of(TIME_FIELDS, time_literals), _coalesce, 1)
BOOL = _levels(st.one_of(BOOL_FIELDS, st.sampled_from(["TRUE", "FALSE"])), _coalesce, 1)


def _numbers(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(lambda a, op, b: f"({a} {op} {b})", inner, st.sampled_from(["+", "-", "*", "/"]), inner),
        st.builds(lambda a: f"-({a})", inner),
        st.builds(lambda e: f"length({e})", TEXT[1]),
        _call(["year", "month", "day", "hour", "weekday"])(MOMENT[1]),
        _coalesce(inner),
    )


NUMBER = _levels(st.one_of(NUMBER_FIELDS, number_literals), _numbers, 2)
TIME = st.one_of(MOMENT[1], st.builds(lambda m, op, i: f"{m} {op} {i}", MOMENT[1], st.sampled_from(["+", "-"]),
                                      interval_literals))
DURATION = st.one_of(
    interval_literals,
    st.builds(lambda a, b: f"({a} - {b})", TIME, TIME),
    st.builds(lambda a, b, op: f"({a} - {b}) {op} interval '1 day'", MOMENT[1], MOMENT[1], st.sampled_from(["+", "-"])),
)
like_patterns = st.text(alphabet="aAé_%\\", max_size=4).map(
    lambda p: p + "x" if (len(p) - len(p.rstrip("\\"))) % 2 else p)
ANY = st.one_of(TEXT[1], NUMBER[1], MOMENT[1], BOOL[1])
NEGATION = st.sampled_from(["", "NOT "])


def _compare(side: st.SearchStrategy[str], ops: st.SearchStrategy[str] = COMPARE) -> st.SearchStrategy[str]:
    return st.builds(lambda a, op, b: f"{a} {op} {b}", side, ops, side)


def _in(side: st.SearchStrategy[str], values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda a, n, vs: f"{a} {n}IN ({', '.join(vs)})", side, NEGATION,
                     st.lists(values, min_size=1, max_size=4))


def _between(side: st.SearchStrategy[str], bounds: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda a, n, lo, hi: f"{a} {n}BETWEEN {lo} AND {hi}", side, NEGATION, bounds, bounds)


LEAF = st.one_of(
    _compare(NUMBER[2]), _compare(TEXT[2]), _compare(TIME), _compare(DURATION),
    _compare(BOOL[1], st.sampled_from(["=", "<>"])),
    _in(NUMBER[1], number_literals), _in(TEXT[1], text_literals),
    st.builds(lambda a, n, p: f"{a} {n}LIKE {quote(p)}", TEXT[1], NEGATION, like_patterns),
    st.builds(lambda a, n: f"{a} IS {n}NULL", ANY, NEGATION),
    st.builds(lambda a, n, v: f"{a} IS {n}{v}", BOOL[1], NEGATION, st.sampled_from(["TRUE", "FALSE"])),
    _between(NUMBER[1], NUMBER[1]), _between(TEXT[1], text_literals), _between(TIME_FIELDS, TIME),
    BOOL[1],
)


def _connect(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(lambda a, op, b: f"({a}) {op} ({b})", inner, st.sampled_from(["AND", "OR"]), inner),
        st.builds(lambda a: f"NOT ({a})", inner),
    )


PREDICATE = _levels(LEAF, _connect, 2)


# -- running ------------------------------------------------------------------------------------------

_COLUMNS = {col.name for col in Person.__table__.columns}


def _rows(people: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for i, record in enumerate(people, start=1):
        columns = {k: v for k, v in record.items() if k in _COLUMNS}
        doc = {k: encode_attribute(t, record[k]) for k, t in ATTRIBUTES.items() if record[k] is not None}
        rows.append(person(id=i, **columns, attributes=doc))
    return rows


def sql_answers(engine: Engine, rules: c.Rules, cond: Condition, people: list[dict[str, Any]],
                now: datetime) -> list[bool | None]:
    params = Params()
    query = PersonQuery(rules, fields_of([cond], rules), params)
    predicate_sql = query.compiler().predicate(cond.root)
    stmt = select(query.people.c.id, tri_state(predicate_sql)).select_from(query.from_clause) \
        .order_by(query.people.c.id)
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            conn.execute(insert(Person.__table__), _rows(people))
            result = conn.execute(stmt, params.bind(now)).all()
        finally:
            trans.rollback()
    return [None if v is None else bool(v) for _, v in result]


def python_answers(cond: Condition, people: list[dict[str, Any]], now: datetime) -> list[bool | None]:
    return [evaluate(cond.root, record, now) for record in people]


@settings(max_examples=int(os.environ.get("DETENTE_HYPOTHESIS_EXAMPLES", "400")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(condition=PREDICATE[2], people=st.lists(records(), min_size=1, max_size=6), now=nows)
def test_sql_on_every_backend_and_python_agree(engines: dict[str, Engine], rules: c.Rules, condition: str,
                                              people: list[dict[str, Any]], now: datetime) -> None:
    """SQLite, PostgreSQL (when reachable) and the explanation give the same three-valued answer."""
    parsed = parse_condition(condition, Scope(rules.catalog))
    assert isinstance(parsed, Condition), (condition, parsed)
    expected = python_answers(parsed, people, now)
    outcomes = {True: "held", False: "failed", None: "unknown"}
    assert [explain(parsed, record, now).outcome for record in people] == [outcomes[e] for e in expected]
    for name, engine in engines.items():
        got = sql_answers(engine, rules, parsed, people, now)
        assert got == expected, f"{name}: {condition!r} gave {got}, Python {expected}, now {now}, people {people}"


def test_postgresql_takes_part_when_reachable(engines: dict[str, Engine], postgres_server: Engine | None) -> None:
    """The property above covers PostgreSQL whenever the test server is up (CI requires it)."""
    assert ("postgresql" in engines) == (postgres_server is not None)


@pytest.mark.parametrize(("condition", "expected"), [
    ("country = 'us'", [True, True, False, None]),
    ("country LIKE 'u%'", [True, True, False, None]),
    ("country < 'v'", [True, True, False, None]),
    ("NOT (country IN ('US'))", [False, False, True, None]),
    ("country IS NULL OR score > 1", [False, True, None, True]),
    ("score / 0 > 1", [None, None, None, None]),
    ("now() - created_at > interval '3 days'", [False, True, None, None]),
    ("now() - created_at >= interval '3 days'", [True, True, None, None]),
])
def test_fixed_cases_on_every_backend(engines: dict[str, Engine], rules: c.Rules, condition: str,
                                      expected: list[bool | None]) -> None:
    """Known answers, including the exact boundary of a duration and NULL handling."""
    people = [
        {"country": "US", "score": 1, "created_at": NOW - timedelta(days=3)},
        {"country": "us", "score": 2, "created_at": NOW - timedelta(days=3, microseconds=1)},
        {"country": "É", "score": None, "created_at": None},
        {"country": None, "score": 5, "created_at": None},
    ]
    filled = [{"email_domain": None, "industry": None, "activity_count": 0, "revenue": None,
               "salesforce_converted": False, "vip": None, "last_activity_at": None, "renewal_at": None, **p}
              for p in people]
    parsed = parse_condition(condition, Scope(rules.catalog))
    assert isinstance(parsed, Condition)
    assert python_answers(parsed, filled, NOW) == expected
    for engine in engines.values():
        assert sql_answers(engine, rules, parsed, filled, NOW) == expected


def test_generated_conditions_parse(rules: c.Rules) -> None:
    """The generator only writes valid conditions (a guard on the property above)."""
    @given(PREDICATE[2])
    @settings(max_examples=300, deadline=None)
    def check(condition: str) -> None:
        assert isinstance(parse_condition(condition, Scope(rules.catalog)), Condition), condition

    check()

