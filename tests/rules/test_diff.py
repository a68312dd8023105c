"""The impact of a rule change, computed over the store before it goes live."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from detente.rules import Rules, load_rules
from detente.rules.diff import diff_rules, rule_changes
from detente.store.tables import Owner, Transition
from tests.rules.helpers import SHIPPED, insert_people, insert_rows, write

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
LABELLED = datetime(2026, 11, 19, 14, 0, tzinfo=UTC)  # Thursday 9:00 in New York


@pytest.fixture
def people(rules_store: Engine) -> Engine:
    with rules_store.begin() as conn:
        insert_rows(conn, Owner, [{"id": 1, "email": "mk@acme.com", "team": "Marketing"}])
        insert_people(conn, [
            {"id": i, "email": f"p{i}@acme.com", "email_domain": "acme.com", "score": float(score),
             "salesforce_owner_id": 1}
            for i, score in enumerate([40, 55, 60, 65, 80], start=1)
        ])
        insert_rows(conn, Transition, [
            {"person_id": i, "system": "hubspot", "field": "lifecyclestage", "to_value": "marketingqualifiedlead",
             "at": LABELLED, "record_id": f"h{i}"} for i in (2, 5)
        ])
    return rules_store


@pytest.fixture(scope="module")
def old() -> Rules:
    return load_rules(SHIPPED)


@pytest.fixture
def new(tmp_path: Path) -> Rules:
    text = SHIPPED.read_text().replace("score >= 50\n", "score >= 62\n").replace(
        "within: 24 business hours\n    calendar: office\n    on_warning: {before: 4 business hours, task: handoff",
        "within: 2 business hours\n    calendar: office\n    on_warning: {before: 1 business hours, task: handoff")
    return load_rules(write(tmp_path, text))


def test_people_entering_and_leaving_each_stage(people: Engine, old: Rules, new: Rules) -> None:
    with people.connect() as conn:
        result = diff_rules(conn, old, new, NOW, examples=1)
    mql = next(s for s in result.stages if s.stage == "mql")
    assert (mql.before, mql.after) == (4, 2)
    assert mql.entering.count == 0
    assert (mql.leaving.count, mql.leaving.examples) == (2, ("p2@acme.com",))
    lead = next(s for s in result.stages if s.stage == "lead")
    assert (lead.before, lead.after, lead.entering.count, lead.leaving.count) == (5, 5, 0, 0)


def test_sla_clocks_that_would_breach(people: Engine, old: Rules, new: Rules) -> None:
    with people.connect() as conn:
        result = diff_rules(conn, old, new, NOW)
    handoff = next(s for s in result.slas if s.sla == "mql-handoff")
    assert handoff.before == {"started": 2, "stopped": 0, "breached": 0, "running": 2}
    assert handoff.after == {"started": 2, "stopped": 0, "breached": 2, "running": 0}
    assert handoff.newly_breached.examples == ("p2@acme.com", "p5@acme.com")


def test_changes_in_the_text_of_the_rules(old: Rules, new: Rules) -> None:
    changes = rule_changes(old, new)
    assert any(c.startswith("stage mql definition: score >= 50 AND") and "=>  score >= 62 AND" in c for c in changes)
    assert any(c.startswith("SLA mql-handoff: ") and "within 2 business hours" in c for c in changes)
    assert rule_changes(old, old) == []


def test_the_report_reads_as_text_and_json(people: Engine, old: Rules, new: Rules) -> None:
    with people.connect() as conn:
        result = diff_rules(conn, old, new, NOW)
    text = "\n".join(result.lines())
    assert "mql: 4 -> 2  (+0 entering, -2 leaving)" in text
    assert "mql-handoff: started 2 -> 2, stopped 0 -> 0, breached 0 -> 2, running 2 -> 0" in text
    as_json = result.to_dict()
    assert as_json["old_version"] == old.version and as_json["stages"][2]["stage"] == "mql"


def test_an_added_stage_counts_everyone_entering(people: Engine, old: Rules, tmp_path: Path) -> None:
    text = SHIPPED.read_text().replace("  nurture:\n", """  hot:
    meaning: very engaged
    owner: marketing
    after: mql
    definition: score >= 75
  nurture:
""")
    new = load_rules(write(tmp_path, text))
    with people.connect() as conn:
        result = diff_rules(conn, old, new, NOW - timedelta(days=1))
    hot = next(s for s in result.stages if s.stage == "hot")
    assert (hot.before, hot.after, hot.entering.count) == (0, 1, 1)
    assert "stage hot added" in result.changes
