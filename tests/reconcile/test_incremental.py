"""The incremental audit: after a change in a CRM, only the people it touches (and those whose
clocks fell due) are evaluated, and the findings equal what a full audit finds."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from detente.normalize.run import normalize
from detente.reconcile.ledger import FINDINGS, plan_scope, reconcile
from detente.rules import Rules
from detente.sandbox.schema import SALESFORCE_OBJECTS
from detente.sandbox.server import Sandbox
from tests.conftest import AS_OF
from tests.normalize.support import pull

NOW = AS_OF + timedelta(days=1)
LATER = NOW + timedelta(hours=1)
THEN = NOW + timedelta(hours=2)


@pytest.fixture
def private(tmp_path: Path) -> Iterator[Sandbox]:
    """A small demo world of this test's own, to change."""
    sb = Sandbox(state_dir=tmp_path / "sandbox", dataset="demo", size=80, seed=11, as_of=AS_OF)
    sb.start()
    yield sb
    sb.stop()


@pytest.fixture
def audited(private: Sandbox, store: Engine, rules: Rules) -> tuple[Sandbox, Engine]:
    """The private world pulled, normalized and audited once."""
    pull(store, private, NOW)
    normalize(store, now=NOW)
    reconcile(store, rules, NOW)
    return private, store


def _findings(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(FINDINGS))]
    return {r["key"]: {k: v for k, v in r.items() if k != "evaluated_at"} for r in rows}


def _person_id(engine: Engine, lead_id: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT person_id FROM person_records WHERE record_id = :i"),
                                {"i": lead_id}).scalar_one())


def test_nothing_new_evaluates_nobody_and_writes_nothing(audited: tuple[Sandbox, Engine], rules: Rules) -> None:
    _, engine = audited
    scope = plan_scope(engine, rules, NOW, full=False)
    assert scope.people == []
    assert reconcile(engine, rules, NOW) == {}


def test_a_change_in_a_crm_is_audited_incrementally_as_a_full_audit_would(audited: tuple[Sandbox, Engine],
                                                                          rules: Rules) -> None:
    sb, engine = audited
    planted = {p["person"] for p in sb.manifest()["problems"]}
    person = next(p for p in sb.manifest()["people"] if p["key"] not in planted and p["salesforce_lead_id"]
                  and not p["salesforce_contact_id"] and p["hubspot_contact_id"])
    lead = person["salesforce_lead_id"]
    # Salesforce moves the lead back to Open - Not Contacted while HubSpot says SQL: a disagreement.
    sb.world.hs_update("contacts", int(person["hubspot_contact_id"]), {"lifecyclestage": "salesqualifiedlead"},
                       LATER)
    sb.world.sf_update(SALESFORCE_OBJECTS["Lead"], lead, {"Status": "Open - Not Contacted"}, LATER)
    pull(engine, sb, THEN)
    normalize(engine, now=THEN)

    scope = plan_scope(engine, rules, THEN, full=False)
    assert scope.people is not None and _person_id(engine, lead) in scope.people
    assert len(scope.people) < 10
    counts = reconcile(engine, rules, THEN)
    assert counts.get("opened", 0) >= 1
    incremental = _findings(engine)
    opened = [f for f in incremental.values() if f["salesforce_id"] == lead and f["kind"] == "disagreement"]
    assert [f["rule"] for f in opened] == ["sql~lead"]

    assert reconcile(engine, rules, THEN, full=True) == {}  # a full audit finds exactly the same
    assert _findings(engine) == incremental


def test_clocks_that_fall_due_are_audited_without_new_data(audited: tuple[Sandbox, Engine], rules: Rules) -> None:
    _, engine = audited
    with engine.connect() as conn:
        running = conn.execute(select(FINDINGS.c.key, FINDINGS.c.due_at, FINDINGS.c.person_id).where(
            FINDINGS.c.state == "running")).all()
        woken = conn.execute(text("SELECT count(*) FROM audit_wake")).scalar_one()
    assert running and woken >= len({r.person_id for r in running})
    later = max(r.due_at for r in running) + timedelta(minutes=1)
    scope = plan_scope(engine, rules, later, full=False)
    assert scope.people is not None and {r.person_id for r in running} <= set(scope.people)
    counts = reconcile(engine, rules, later)
    assert counts.get("updated", 0) + counts.get("resolved", 0) >= len(running)
    after = _findings(engine)
    assert all(after[r.key]["state"] != "running" or after[r.key]["due_at"] > later for r in running)
    assert reconcile(engine, rules, later, full=True) == {}
    assert _findings(engine) == after


def test_a_rules_change_evaluates_everyone(audited: tuple[Sandbox, Engine], rules: Rules) -> None:
    _, engine = audited
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_state SET rules_version = 'older'"))
    scope = plan_scope(engine, rules, NOW, full=False)
    assert scope.people is None and "rules changed" in scope.why
