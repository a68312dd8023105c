"""Set-based evaluation over the store, on SQLite and PostgreSQL, and per-person explanations."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from detente.rules import Rules, load_rules
from detente.rules.conditions import Condition, Scope, parse_condition
from detente.rules.evaluate import (
    ConditionQuery,
    StageEvaluator,
    explain_person,
    fetch_record,
    find_person,
)
from detente.store.tables import Campaign, Opportunity, Owner, Transition
from tests.rules.helpers import NOW, SHIPPED, insert_people, insert_rows, write


@pytest.fixture
def world(rules_store: Engine) -> Engine:
    """A handful of people that exercise every join the shipped definitions use."""
    with rules_store.begin() as conn:
        insert_rows(conn, Owner, [
            {"id": 1, "email": "rep@acme.com", "team": "Sales", "salesforce_user_id": "005A", "hubspot_owner_id": "11"},
            {"id": 2, "email": "mk@acme.com", "team": "Marketing", "salesforce_user_id": "005B"},
            {"id": 3, "email": "gone@acme.com", "team": "Sales", "active": False},
        ])
        insert_rows(conn, Campaign, [{"id": 1, "name": "Q4 Webinar"}])
        insert_people(conn, [
            {"id": 1, "email": "ana@acme.com", "email_domain": "acme.com", "score": 72.0,
             "hubspot_lifecyclestage": "marketingqualifiedlead", "salesforce_owner_id": 2, "campaign_id": 1,
             "hubspot_contact_id": "901", "created_at": NOW - timedelta(days=5)},
            {"id": 2, "email": "bob@gmail.com", "email_domain": "gmail.com", "score": 35.0, "activity_count": 2,
             "salesforce_status": "Marketing Qualified", "salesforce_owner_id": 1, "salesforce_lead_id": "00Q1"},
            {"id": 3, "email": "cy@corp.com", "email_domain": "corp.com", "salesforce_converted": True,
             "activity_count": 7, "salesforce_status": "Closed - Converted", "hubspot_owner_id": 1},
            {"id": 4, "email": "gone@deleted.com", "email_domain": "deleted.com", "score": 90.0, "deleted": True},
            {"id": 5, "email": "eve@corp.com", "email_domain": "corp.com", "activity_count": 3,
             "salesforce_owner_id": 3, "attributes": {"industry": "Retail"}},
        ])
        insert_rows(conn, Opportunity, [
            {"id": 1, "person_id": 3, "stage": "Closed Lost", "is_closed": True,
             "created_at": NOW - timedelta(days=90)},
            {"id": 2, "person_id": 3, "stage": "Closed Won", "is_closed": True, "is_won": True, "amount": 1200.0,
             "created_at": NOW - timedelta(days=10)},
            {"id": 3, "person_id": 3, "stage": "Prospecting", "created_at": NOW, "deleted": True},
        ])
        insert_rows(conn, Transition, [
            {"person_id": 1, "system": "hubspot", "field": "lifecyclestage", "to_value": "marketingqualifiedlead",
             "at": NOW - timedelta(days=2), "record_id": "901"},
            {"person_id": 1, "system": "salesforce", "field": "Status", "to_value": "MARKETING QUALIFIED",
             "at": NOW - timedelta(days=3), "record_id": "00Q9"},
            {"person_id": 1, "system": "hubspot", "field": "lifecyclestage", "to_value": "lead",
             "at": NOW - timedelta(days=4), "record_id": "901"},
        ])
    return rules_store


@pytest.fixture(scope="module")
def shipped() -> Rules:
    return load_rules(SHIPPED)


def condition(rules: Rules, text: str) -> Condition:
    parsed = parse_condition(text, Scope(rules.catalog))
    assert isinstance(parsed, Condition), parsed
    return parsed


def test_one_statement_gives_every_definition_and_label(world: Engine, shipped: Rules) -> None:
    with world.connect() as conn:
        found = {m.person_id: m for m in StageEvaluator(shipped).memberships(conn, NOW)}
    assert set(found) == {1, 2, 3, 5}, "deleted people are not evaluated"
    assert found[1].definitions == {"inquiry", "lead", "mql"}
    assert found[1].labels == {"hubspot": {"mql"}, "salesforce": set()}
    assert found[2].definitions == {"inquiry", "sal"}
    assert found[2].labels["salesforce"] == {"mql"}
    assert found[3].definitions == {"inquiry", "lead", "sal", "sql", "customer"}
    assert found[3].labels["salesforce"] == {"opportunity"}
    assert found[5].definitions == {"inquiry", "lead"}, "an inactive sales owner is on no team"


def test_evaluation_can_be_limited_to_some_people(world: Engine, shipped: Rules) -> None:
    with world.connect() as conn:
        assert [m.person_id for m in StageEvaluator(shipped).memberships(conn, NOW, [2, 3])] == [2, 3]


def test_explanation_shows_the_values_seen(world: Engine, shipped: Rules) -> None:
    with world.connect() as conn:
        step = explain_person(conn, shipped, 2, shipped.stages["mql"].definition, NOW)
    assert step is not None
    assert step.outcome == "failed"
    assert [(c.outcome, c.detail) for c in step.children] == [
        ("failed", "score 35 < 50"),
        ("failed", "email_domain 'gmail.com' is in ('gmail.com', 'yahoo.com', 'hotmail.com', 'outlook.com', "
                   "'aol.com', 'icloud.com', and 4 more)"),
    ]


def test_explanation_of_unknown_names_the_empty_field(world: Engine, shipped: Rules) -> None:
    with world.connect() as conn:
        step = explain_person(conn, shipped, 3, shipped.stages["mql"].definition, NOW)
    assert step is not None and step.outcome == "unknown"
    assert step.children[0].detail == "score is empty, so score >= 50 is unknown"
    assert step.children[1].outcome == "held"


def test_stage_entered_time_is_the_first_label_in_either_crm(world: Engine, shipped: Rules) -> None:
    with world.connect() as conn:
        record = fetch_record(conn, shipped, 1, ["mql_at", "lead_at", "sql_at"])
        since = condition(shipped, "now() - mql_at >= interval '3 days'")
        matching = ConditionQuery(shipped, since).matching(conn, NOW)
    assert record == {"mql_at": NOW - timedelta(days=3), "lead_at": NOW - timedelta(days=4), "sql_at": None}
    assert matching == [1]


def test_latest_live_opportunity_and_owner_fields(world: Engine, shipped: Rules) -> None:
    with world.connect() as conn:
        record = fetch_record(conn, shipped, 3, ["opportunity_stage", "opportunity_amount", "opportunity_won",
                                                 "owner", "owner_department", "team"])
    assert record == {"opportunity_stage": "Closed Won", "opportunity_amount": 1200.0, "opportunity_won": True,
                      "owner": "rep@acme.com", "owner_department": "Sales", "team": "sales"}


def test_campaign_and_mapped_fields(world: Engine, tmp_path: Path) -> None:
    rules = load_rules(write(tmp_path, SHIPPED.read_text().replace(
        "fields:\n", "fields:\n  industry:\n    type: text\n    hubspot: industry\n", 1)))
    with world.connect() as conn:
        assert ConditionQuery(rules, condition(rules, "campaign = 'q4 webinar'")).matching(conn, NOW) == [1]
        assert ConditionQuery(rules, condition(rules, "industry LIKE 'ret%'")).matching(conn, NOW) == [5]
        assert fetch_record(conn, rules, 5, ["industry"]) == {"industry": "Retail"}


def test_team_members_by_email_come_before_conditions(world: Engine, tmp_path: Path) -> None:
    text = SHIPPED.read_text().replace("  sales:\n", "  sales:\n    members: [GONE@acme.com]\n", 1)
    rules = load_rules(write(tmp_path, text))
    with world.connect() as conn:
        assert fetch_record(conn, rules, 5, ["team"]) == {"team": "sales"}
        assert ConditionQuery(rules, condition(rules, "team = 'sales'")).matching(conn, NOW) == [2, 3, 5]


def test_labels_in_a_crms_own_field_names(world: Engine, shipped: Rules) -> None:
    label = parse_condition("Status = 'marketing qualified'", Scope(shipped.catalog, system="salesforce"))
    assert isinstance(label, Condition)
    with world.connect() as conn:
        assert ConditionQuery(shipped, label).matching(conn, NOW) == [2]


def test_find_person_by_id_email_or_crm_id(world: Engine) -> None:
    with world.connect() as conn:
        assert find_person(conn, "2") == 2
        assert find_person(conn, "ANA@acme.com") == 1
        assert find_person(conn, "00Q1") == 2
        assert find_person(conn, "901") == 1
        assert find_person(conn, "nobody@nowhere") is None


def test_now_is_a_parameter_not_the_clock(world: Engine, shipped: Rules) -> None:
    cond = condition(shipped, "now() - created_at > interval '4 days'")
    query = ConditionQuery(shipped, cond)
    with world.connect() as conn:
        assert query.matching(conn, NOW) == [1]
        assert query.matching(conn, NOW - timedelta(days=2)) == []
