"""The condition language: what the allow-list accepts, what it rejects and where, durations, words."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from detente.rules.conditions import Condition, ConditionProblem, Scope, parse_condition
from detente.rules.durations import Duration, describe, parse_duration
from detente.rules.fields import builtin_catalog
from detente.rules.sql import SqlCompiler
from detente.rules.store_view import people
from detente.rules.words import phrase

SCOPE = Scope(builtin_catalog())


def ok(text: str, scope: Scope = SCOPE) -> Condition:
    parsed = parse_condition(text, scope)
    assert isinstance(parsed, Condition), parsed
    return parsed


def bad(text: str, scope: Scope = SCOPE) -> list[ConditionProblem]:
    parsed = parse_condition(text, scope)
    assert isinstance(parsed, list), f"{text!r} was accepted"
    return parsed


@pytest.mark.parametrize(("text", "canonical"), [
    ("score >= 50 AND email_domain NOT IN ('gmail.com','yahoo.com') AND country IN ('US','CA')",
     "score >= 50 AND email_domain NOT IN ('gmail.com', 'yahoo.com') AND country IN ('US', 'CA')"),
    ("now() - created_at > interval '3 days'", "now() - created_at > interval '3 days'"),
    ("NOW() - created_at > INTERVAL '24h'", "now() - created_at > interval '1 day'"),
    ("current_timestamp > created_at + interval 30 minutes", "now() > created_at + interval '30 minutes'"),
    ("score != 1 OR NOT (score <> 2)", "score <> 1 OR NOT score <> 2"),
    ("country LIKE 'U%' AND country NOT LIKE '%\\_%'", "country LIKE 'U%' AND country NOT LIKE '%\\_%'"),
    ("country ILIKE 'u%'", "country LIKE 'u%'"),
    ("disqualified_reason IS NULL AND owner IS NOT NULL", "disqualified_reason IS NULL AND owner IS NOT NULL"),
    ("score BETWEEN 10 AND 20 OR score NOT BETWEEN -1 AND 1", "score BETWEEN 10 AND 20 OR score NOT BETWEEN -1 AND 1"),
    ("(score + 1) * 2 / 4 - -3 > 0", "(score + 1) * 2 / 4 - -3 > 0"),
    ("lower(country) = upper(trim(title)) AND length(email) > 3",
     "lower(country) = upper(trim(title)) AND length(email) > 3"),
    ("coalesce(score, 0) >= 50", "coalesce(score, 0) >= 50"),
    ("year(created_at) = 2026 AND month(now()) = 11 AND day(created_at) = 1 AND hour(created_at) < 9 "
     "AND weekday(created_at) IN (6, 7)",
     "year(created_at) = 2026 AND month(now()) = 11 AND day(created_at) = 1 AND hour(created_at) < 9 "
     "AND weekday(created_at) IN (6, 7)"),
    ("salesforce_converted AND NOT opportunity_won", "salesforce_converted AND NOT opportunity_won"),
    ("opportunity_won IS NOT TRUE", "opportunity_won IS NOT TRUE"),
    ("created_at >= date '2026-01-01'", "created_at >= timestamp '2026-01-01T00:00:00Z'"),
    ("last_activity_at - first_activity_at > interval '2 weeks'",
     "last_activity_at - first_activity_at > interval '14 days'"),
    ("Score >= 50", "score >= 50"),
])
def test_allowed_conditions_are_accepted_and_rendered(text: str, canonical: str) -> None:
    assert str(ok(text)) == canonical


@pytest.mark.parametrize(("text", "offset", "what"), [
    ("score = NULL", 0, "'= NULL' is never true"),
    ("country IN ('US', NULL)", 0, "NULL in an IN list never matches"),
    ("salesforce_converted > FALSE", 0, "true/false values cannot be compared with >"),
    ("coalesce(score, 'x') = 1", 0, "coalesce() arguments are of different kinds"),
    ("year(created_at + interval '1 day') = 2026", 0, "year() takes a date-time field, now() or a date"),
    ("upper(score) = 'x'", 0, "upper() needs text"),
    ("NOT score", 4, "'score' is a number, not a condition"),
    ("score + country > 1", 0, "cannot compute a number + text"),
    ("created_at + created_at > now()", 0, "cannot compute a date and time + a date and time"),
    ("now() - created_at > interval '2 business days'", 21, "is business time"),
    ("created_at > date '2026-02-30'", 18, "'2026-02-30' is not a date or time"),
    ("created_at > date '1066-10-14'", 18, "outside the years 1900-2200"),
    ("score > 1e99", 8, "1e99 is out of range"),
    ("country LIKE country", 13, "LIKE needs a quoted pattern"),
    ("score LIKE 'a'", 0, "LIKE matches text"),
    ("created_at IN (date '2026-01-01')", 0, "IN compares text or numbers"),
    ("score IN (now())", 10, "'now()' in an IN list is not a constant"),
    ("country IS 'US'", 0, "IS is only followed by NULL, TRUE or FALSE"),
    ("trim(both 'x' from country) = 'a'", 10, "trim() takes one argument here"),
    ("", 0, "the condition is empty"),
    ("owner_x = 1", 0, "unknown field 'owner_x'"),
])
def test_rejected_conditions_say_what_and_where(text: str, offset: int, what: str) -> None:
    problems = bad(text)
    assert any(p.offset == offset and what in p.what for p in problems), problems


def test_several_problems_in_one_condition_are_all_reported() -> None:
    problems = bad("scor > 1 AND contry = 'US' AND pg_sleep(1) = 0")
    assert [(p.offset, p.what.split(" '")[0]) for p in problems] == [
        (0, "unknown field"), (13, "unknown field"), (31, "function")]


def test_labels_use_the_crms_field_names() -> None:
    salesforce = Scope(builtin_catalog(), system="salesforce")
    assert ok("Status = 'Marketing Qualified'", salesforce).fields == {"salesforce_status"}
    assert ok("Lead.Status = 'x' AND IsConverted", salesforce).fields == {"salesforce_status", "salesforce_converted"}
    assert ok("lifecyclestage = 'lead'", Scope(builtin_catalog(), system="hubspot")).fields == \
        {"hubspot_lifecyclestage"}
    assert bad("Status = 'x'")[0].what.startswith("unknown field 'Status'")


def test_team_conditions_read_only_owner_fields() -> None:
    owner_only = Scope(builtin_catalog(), owner_only=True)
    assert ok("owner_department = 'Sales' AND owner_active", owner_only).fields == {"owner_department", "owner_active"}
    [problem] = bad("score > 1", owner_only)
    assert problem.what == "'score' is not a field of the owner"


@pytest.mark.parametrize(("text", "expected"), [
    ("30m", Duration(30, "minutes")), ("24h", Duration(24, "hours")), ("24 hours", Duration(24, "hours")),
    ("3 days", Duration(3, "days")), ("1 day", Duration(1, "days")), ("2 weeks", Duration(2, "weeks")),
    ("0h", Duration(0, "hours")), ("24 business hours", Duration(24, "hours", business=True)),
    ("3 Business Days", Duration(3, "days", business=True)), ("90 MIN", Duration(90, "minutes")),
])
def test_duration_grammar(text: str, expected: Duration) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(("text", "why"), [
    ("PT24H", "ISO-8601"), ("1.5h", "fraction"), ("3 months", "months and years"), ("1 year", "months and years"),
    ("24", "not a duration"), ("soon", "not a duration"), ("10 seconds", "seconds"), ("-1h", "negative"),
    ("24 business weeks", "hours or days"), ("24 business h", "hours or days"), ("3 fortnights", "unknown unit"),
    ("100000 days", "longer than ten years"), (24, "has no unit"), (True, "not a duration"),
])
def test_bad_durations_say_why(text: object, why: str) -> None:
    message = parse_duration(text)
    assert isinstance(message, str) and why in message


def test_duration_lengths() -> None:
    assert Duration(3, "days").calendar == timedelta(days=3)
    assert Duration(3, "days", business=True).business_hours(8) == 24
    assert describe(timedelta(days=1, hours=2, minutes=5)) == "1 day 2 hours 5 minutes"
    assert str(Duration(1, "hours", business=True)) == "1 business hour"
    with pytest.raises(ValueError, match="needs a calendar"):
        _ = Duration(1, "hours", business=True).calendar


@pytest.mark.parametrize(("text", "words"), [
    ("score >= 50 AND email_domain NOT IN ('gmail.com')",
     "the score is at least 50 and the email domain is not one of 'gmail.com'"),
    ("now() - created_at > interval '3 days'", "the time since created at is more than 3 days"),
    ("country LIKE 'U%' OR owner IS NULL", "the country matches anything starting with 'U' or the owner is empty"),
    ("NOT opportunity_closed", "the opportunity closed is not true"),
])
def test_definitions_in_words(text: str, words: str) -> None:
    assert phrase(ok(text).root) == words


def test_custom_sql_constructs_are_part_of_the_statement_cache_key() -> None:
    """year() and hour() must not share a cached statement (a bug the property test found)."""
    compiler = SqlCompiler(lambda f: people.c[f.source.column])  # type: ignore[union-attr]
    year = select(compiler.predicate(ok("year(created_at) = 1").root))
    hour = select(compiler.predicate(ok("hour(created_at) = 1").root))
    assert year._generate_cache_key() != hour._generate_cache_key()


def test_text_folding_and_ordering_per_dialect() -> None:
    compiler = SqlCompiler(lambda f: people.c[f.source.column])  # type: ignore[union-attr]
    expr = compiler.predicate(ok("country < 'm' AND country = 'US'").root)
    pg = str(expr.compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]
    lite = str(expr.compile(dialect=sqlite.dialect()))  # type: ignore[no-untyped-call]
    assert "translate(people.country, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')" in pg
    assert 'COLLATE "C"' in pg and "COLLATE" not in lite
    assert "lower(people.country)" in lite
