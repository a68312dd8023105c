"""SLA clocks: due times on business calendars, states, and the facts read from the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from detente.rules import Rules, load_rules
from detente.rules.clocks import PersonFacts, clock_for, clock_state, clocks, due_at, gather_facts
from detente.store.tables import Activity, Owner, Transition
from tests.rules.helpers import SHIPPED, insert_people, insert_rows

FRIDAY_4PM = datetime(2026, 11, 13, 21, 0, tzinfo=UTC)  # 16:00 in New York
NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def shipped() -> Rules:
    return load_rules(SHIPPED)


def sla(rules: Rules, sla_id: str):  # type: ignore[no-untyped-def]
    return next(s for s in rules.slas if s.id == sla_id)


def test_business_hours_skip_nights_and_weekends(shipped: Rules) -> None:
    handoff = sla(shipped, "mql-handoff")
    calendar = shipped.calendars["office"].business()
    # Friday 16-17 (1h), Monday 8h, Tuesday 8h, Wednesday 9-16 (7h)
    assert due_at(handoff, calendar, FRIDAY_4PM) == datetime(2026, 11, 18, 21, 0, tzinfo=UTC)


def test_calendar_time_ignores_the_calendar(shipped: Rules) -> None:
    outcome = sla(shipped, "outcome")
    assert due_at(outcome, None, FRIDAY_4PM) == FRIDAY_4PM + timedelta(days=30)


@pytest.mark.parametrize(("started", "stopped", "requirement_ok", "state"), [
    (None, None, True, "not_started"),
    (NOW - timedelta(hours=1), None, True, "running"),
    (NOW - timedelta(days=9), None, True, "breached"),
    (NOW - timedelta(days=9), NOW - timedelta(days=8, hours=23), True, "met"),
    (NOW - timedelta(days=9), NOW - timedelta(days=1), True, "breached"),
    (NOW - timedelta(days=9), NOW - timedelta(days=8, hours=23), False, "breached"),
])
def test_clock_states(started: datetime | None, stopped: datetime | None, requirement_ok: bool, state: str) -> None:
    due = started + timedelta(days=1) if started else None
    assert clock_state(started, stopped, due, requirement_ok, NOW) == state


def test_disqualifying_too_early_breaches_the_outcome_sla(shipped: Rules) -> None:
    outcome = sla(shipped, "outcome")
    facts = PersonFacts(1, created_at=NOW - timedelta(days=20), owner_id=1, current_team="sales",
                        stage_entries={"disqualified": [NOW - timedelta(days=2)]})
    early = clock_for(outcome, facts, None, 8, NOW)
    assert (early.state, early.stopped_at_stage, early.requirement_failed) == ("breached", "disqualified", True)
    facts.conditions.add("outcome:require")
    assert clock_for(outcome, facts, None, 8, NOW).state == "met"


@pytest.fixture
def handoffs(rules_store: Engine) -> Engine:
    """Two MQLs labelled on Friday 16:00 New York time: one handed over Monday, one never."""
    with rules_store.begin() as conn:
        insert_rows(conn, Owner, [
            {"id": 1, "email": "mk@acme.com", "team": "Marketing", "salesforce_user_id": "005M"},
            {"id": 2, "email": "rep@acme.com", "team": "Sales", "salesforce_user_id": "005S", "hubspot_owner_id": "77"},
        ])
        insert_people(conn, [
            {"id": 1, "email": "a@acme.com", "salesforce_owner_id": 2, "created_at": FRIDAY_4PM - timedelta(days=1)},
            {"id": 2, "email": "b@acme.com", "salesforce_owner_id": 1, "created_at": FRIDAY_4PM - timedelta(days=1)},
        ])
        insert_rows(conn, Transition, [
            {"person_id": 1, "system": "hubspot", "field": "lifecyclestage", "to_value": "marketingqualifiedlead",
             "at": FRIDAY_4PM, "record_id": "h1"},
            {"person_id": 2, "system": "salesforce", "field": "Status", "to_value": "Marketing Qualified",
             "at": FRIDAY_4PM, "record_id": "l2"},
            {"person_id": 1, "system": "hubspot", "field": "hubspot_owner_id", "to_value": "77",
             "at": FRIDAY_4PM + timedelta(days=3), "record_id": "h1"},
        ])
        insert_rows(conn, Activity, [
            {"person_id": 1, "owner_id": 2, "record_id": "t1", "occurred_at": FRIDAY_4PM + timedelta(days=3, hours=2)},
            {"person_id": 1, "owner_id": 1, "record_id": "t0", "occurred_at": FRIDAY_4PM + timedelta(hours=1)},
        ])
    return rules_store


def test_clocks_from_the_store(handoffs: Engine, shipped: Rules) -> None:
    with handoffs.connect() as conn:
        facts = gather_facts(conn, shipped, NOW)
    result = clocks(shipped, facts, NOW)
    met, missed = result["mql-handoff"][1], result["mql-handoff"][2]
    assert (met.state, met.started_at, met.stopped_at) == ("met", FRIDAY_4PM, FRIDAY_4PM + timedelta(days=3))
    assert (missed.state, missed.due_at) == ("breached", datetime(2026, 11, 18, 21, 0, tzinfo=UTC))
    contact = result["first-contact"][1]
    assert (contact.state, contact.stopped_at) == ("met", FRIDAY_4PM + timedelta(days=3, hours=2))
    assert result["first-contact"][2].state == "not_started"
