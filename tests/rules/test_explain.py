"""Per-record explanations for every kind of clause, and the goals arithmetic."""

from __future__ import annotations

from datetime import timedelta

import pytest

from detente.rules import load_rules
from detente.rules.conditions import Condition, Scope, parse_condition
from detente.rules.explain import explain, fmt
from detente.rules.fields import builtin_catalog
from detente.rules.goals import implied_goals, lead_values, value_of
from tests.rules.helpers import NOW, SHIPPED

RECORD = {"score": 35.0, "country": "Canada", "email_domain": "gmail.com", "owner": None,
          "salesforce_converted": True, "created_at": NOW - timedelta(days=4, hours=2), "activity_count": 6}


def details(text: str) -> list[tuple[str, str]]:
    parsed = parse_condition(text, Scope(builtin_catalog()))
    assert isinstance(parsed, Condition), parsed
    step = explain(parsed, RECORD, NOW)
    leaves = step.children or (step,)
    return [(s.outcome, s.detail) for s in leaves]


@pytest.mark.parametrize(("text", "expected"), [
    ("score >= 50", [("failed", "score 35 < 50")]),
    ("score < 50", [("held", "score 35 < 50")]),
    ("score BETWEEN 50 AND 80", [("failed", "score 35 is not between 50 and 80")]),
    ("country LIKE 'U%'", [("failed", "country 'Canada' does not match 'U%'")]),
    ("country NOT LIKE 'U%'", [("held", "country 'Canada' does not match 'U%'")]),
    ("owner IS NULL", [("held", "owner is empty")]),
    ("country IS NULL", [("failed", "country is not empty ('Canada')")]),
    ("salesforce_converted", [("held", "salesforce_converted is true")]),
    ("email_domain IN ('acme.com')", [("failed", "email_domain 'gmail.com' is not in ('acme.com')")]),
    ("now() - created_at > interval '3 days'", [("held", "now() - created_at (4 days 2 hours) > 3 days")]),
    ("owner = 'x@y.com'", [("unknown", "owner is empty, so owner = 'x@y.com' is unknown")]),
    ("score * 2 >= activity_count", [("held", "score * 2 (70) >= activity_count 6")]),
])
def test_each_clause_explains_itself_with_the_values_seen(text: str, expected: list[tuple[str, str]]) -> None:
    assert details(text) == expected


def test_and_or_not_explain_their_parts() -> None:
    parsed = parse_condition("score >= 50 OR NOT (country = 'Canada')", Scope(builtin_catalog()))
    assert isinstance(parsed, Condition)
    step = explain(parsed, RECORD, NOW)
    assert step.outcome == "failed" and step.detail == "any of 2 clauses (0 held)"
    assert step.lines() == [
        "FAILED   any of 2 clauses (0 held)",
        "  FAILED   score 35 < 50",
        "  FAILED   NOT (country 'Canada' = 'Canada')",
        "    held     country 'Canada' = 'Canada'",
    ]


def test_values_are_shown_plainly() -> None:
    assert fmt(50.0) == "50" and fmt(0.25) == "0.25" and fmt(None) == "empty" and fmt(True) == "true"
    assert fmt(NOW) == "2026-11-16 15:00 UTC"


def test_goals_follow_from_bookings() -> None:
    goals = load_rules(SHIPPED).goals
    assert goals is not None
    implied = implied_goals(goals, historical_asp=25_000.0, lead_to_deal_rate=0.02)
    assert (implied.deals, implied.leads, implied.lead_value_goal) == (10, 500, 250_000)
    with pytest.raises(ValueError, match="no average selling price"):
        implied_goals(goals, None, 0.02)
    values = lead_values(goals, {("Web", "Ebook"): 10_000.0}, {("Web", "Ebook"): 200, ("Event", "Demo"): 0})
    assert values == {("Web", "Ebook"): 50.0}
    assert value_of(goals, values, ["Web", "Ebook"]) == 50.0 and value_of(goals, values, ["x", "y"]) == 0.0
