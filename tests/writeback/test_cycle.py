"""Write-back end to end against a private sandbox: pull → audit → plan → apply → pull. The
fields hold the desired values, each open SLA breach has exactly one task in the right CRM,
owned by the right user, due at the right time; a second cycle writes nothing; resolving the
cause completes the task."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from detente.normalize.run import normalize
from detente.reconcile.ledger import FINDINGS, reconcile
from detente.rules import Rules, load_rules
from detente.sandbox.schema import SALESFORCE_OBJECTS
from detente.sandbox.server import Sandbox
from detente.settings import Settings, WritebackSettings
from detente.writeback.apply import apply_writes
from detente.writeback.plan import WRITES, PlanTooLarge, plan_writes
from detente.writeback.send import HubSpotWriter, SalesforceWriter
from tests.conftest import AS_OF
from tests.normalize.support import pull, settings_for

RULES = Path(__file__).resolve().parents[2] / "config" / "rules.yaml"
NOW = AS_OF + timedelta(minutes=5)


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules(RULES)


@pytest.fixture
def private(tmp_path: Path) -> Iterator[Sandbox]:
    sb = Sandbox(state_dir=tmp_path / "sandbox", dataset="demo", size=100, seed=23, as_of=AS_OF)
    sb.start()
    yield sb
    sb.stop()


def _settings(sb: Sandbox, **writeback: Any) -> Settings:
    s = settings_for(sb)
    return s.model_copy(update={"writeback": WritebackSettings(enabled=True, **writeback)})


def _cycle(engine: Engine, sb: Sandbox, rules: Rules, settings: Settings, now: Any) -> tuple[int, dict[str, int]]:
    pull(engine, sb, now)
    normalize(engine, now=now)
    reconcile(engine, rules, now)
    plan = plan_writes(engine, rules, settings.writeback, now)
    sf, hs = SalesforceWriter(settings.salesforce), HubSpotWriter(settings.hubspot)
    result = apply_writes(engine, settings, {"salesforce": sf.send, "hubspot": hs.send}, now)
    return len(plan.writes), dict(result.counts)


def _calls(sb: Sandbox) -> int:
    import requests

    assert sb.info is not None
    session = requests.Session()
    session.verify = str(sb.info.ca)
    session.trust_env = False
    total = 0
    for base in (sb.info.salesforce, sb.info.hubspot):
        total += int(session.get(f"{base}/__sandbox/stats", timeout=10).json()["total_calls"])
    return total


def _sf_tasks(sb: Sandbox) -> list[Any]:
    return sb.world.query('SELECT * FROM "sf_Task" WHERE "Detente_Key__c" IS NOT NULL AND NOT "IsDeleted"')


def _hs_tasks(sb: Sandbox) -> list[dict[str, Any]]:
    rows = sb.world.query("SELECT id, props FROM hs_tasks WHERE archived = 0")
    return [{"id": r["id"], **json.loads(r["props"])} for r in rows if json.loads(r["props"]).get("detente_key")]


def test_a_cycle_writes_fields_and_one_task_per_breach_and_a_second_cycle_writes_nothing(
        private: Sandbox, store: Engine, rules: Rules) -> None:
    sb = private
    settings = _settings(sb)
    planned, counts = _cycle(store, sb, rules, settings, NOW)
    assert planned > 0 and counts == {"applied": planned}

    with store.connect() as conn:
        writes = [dict(r._mapping) for r in conn.execute(select(WRITES))]
        breaches = conn.execute(select(FINDINGS).where(FINDINGS.c.kind == "sla", FINDINGS.c.status == "open",
                                                       FINDINGS.c.state == "breached")).all()
    assert breaches and all(w["state"] == "applied" for w in writes)
    # Every field write is in the CRM.
    for w in (w for w in writes if w["kind"] == "field"):
        if w["system"] == "salesforce":
            record = sb.world.sf_get(SALESFORCE_OBJECTS[w["object"]], w["record_id"])
            assert record is not None
            got = record[w["field"]]
        else:
            contact = sb.world.hs_get("contacts", int(w["record_id"]))
            assert contact is not None
            got = contact["properties"].get(w["field"])
        want = w["value"]
        assert (got in (None, "") and want in (None, "")) or str(got)[:19] == str(want)[:19], (w, got)
    # One task per breached clock, in the CRM of the team that owes it, owned by the person's owner there.
    sf_tasks, hs_tasks = _sf_tasks(sb), _hs_tasks(sb)
    keys = [t["Detente_Key__c"] for t in sf_tasks] + [t["detente_key"] for t in hs_tasks]
    assert len(keys) == len(set(keys))
    task_rows = {w["task_key"]: w for w in writes if w["kind"] == "task"}
    assert set(keys) == set(task_rows)
    for breach in breaches:
        mine = [k for k in keys if k.startswith(f"{breach.rule}|") and f"|person:{breach.person_id}|" in k]
        assert len(mine) == 1, (breach.key, mine)
        row = task_rows[mine[0]]
        assert row["system"] == ("hubspot" if breach.team == "marketing" else "salesforce")
    for t in sf_tasks:
        with store.connect() as conn:
            owner = conn.execute(text(
                "SELECT o.salesforce_user_id FROM people p JOIN owners o ON o.id = p.salesforce_owner_id "
                "WHERE p.salesforce_lead_id = :w OR p.salesforce_contact_id = :w"), {"w": t["WhoId"]}).scalar()
        assert t["OwnerId"] == owner and t["Status"] == "Not Started"

    before = _calls(sb)
    planned_again, counts_again = _cycle(store, sb, rules, settings, NOW + timedelta(minutes=10))
    assert (planned_again, counts_again) == (0, {})
    pulls_only = _calls(sb) - before
    with store.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM writes")).scalar_one() == len(writes)
    assert pulls_only > 0  # the second cycle pulled, and sent no write (no write row was added)


def test_resolving_the_cause_completes_the_task(private: Sandbox, store: Engine, rules: Rules) -> None:
    sb = private
    settings = _settings(sb)
    _cycle(store, sb, rules, settings, NOW)
    with store.connect() as conn:
        breach = conn.execute(select(FINDINGS).where(
            FINDINGS.c.rule == "first-contact", FINDINGS.c.status == "open", FINDINGS.c.state == "breached",
            FINDINGS.c.stopped_at.is_(None))).first()
        assert breach is not None
        who = conn.execute(text(
            "SELECT p.salesforce_lead_id, o.salesforce_user_id FROM people p JOIN owners o "
            "ON o.id = p.salesforce_owner_id WHERE p.id = :p"), {"p": breach.person_id}).one()
    later = NOW + timedelta(hours=1)
    # The rep calls the lead: the clock stops (late), the finding resolves.
    sb.world.sf_insert(SALESFORCE_OBJECTS["Task"], [{
        "Subject": "Call", "WhoId": who.salesforce_lead_id, "OwnerId": who.salesforce_user_id,
        "Status": "Completed", "TaskSubtype": "Call", "ActivityDate": later.date().isoformat(),
        "CompletedDateTime": later.strftime("%Y-%m-%dT%H:%M:%S.000+0000")}], later, who.salesforce_user_id)
    _cycle(store, sb, rules, settings, later + timedelta(minutes=5))
    with store.connect() as conn:
        done = conn.execute(select(WRITES).where(WRITES.c.kind == "complete")).all()
        status = conn.execute(select(FINDINGS.c.status).where(FINDINGS.c.key == breach.key)).scalar_one()
    assert status == "resolved"
    mine = [d for d in done if f"|person:{breach.person_id}|" in d.task_key and d.task_key.startswith("first-contact")]
    assert len(mine) == 1 and mine[0].state == "applied"
    [task] = [t for t in _sf_tasks(sb) if t["Detente_Key__c"] == mine[0].task_key]
    assert task["Status"] == "Completed" and "Closed by detente" in task["Description"]


def test_a_task_deleted_with_its_lead_is_not_made_again_to_be_completed(private: Sandbox, store: Engine,
                                                                        rules: Rules) -> None:
    """Deleting a lead in Salesforce deletes its tasks. When detente then completes its task
    (the finding behind it resolved), it does so by the task's id: the CRM says the task is
    deleted, the write is skipped, and no completed copy appears (an upsert by key made one;
    found by the crash harness)."""
    sb = private
    settings = _settings(sb)
    _cycle(store, sb, rules, settings, NOW)
    with store.connect() as conn:
        row = conn.execute(select(WRITES).where(WRITES.c.kind == "task", WRITES.c.system == "salesforce",
                                                WRITES.c.object == "Task", WRITES.c.state == "applied")).first()
    assert row is not None and row.result_id
    assert sb.world.sf_delete(SALESFORCE_OBJECTS["Lead"], row.record_id, datetime.now(UTC))
    assert row.task_key not in {t["Detente_Key__c"] for t in _sf_tasks(sb)}
    mark = max(w["seq"] for w in sb.world.writes())
    # What the plan queues when the finding resolves: the task marked completed.
    with store.begin() as conn:
        conn.execute(WRITES.insert().values(
            key=f"complete|{row.task_key}", kind="complete", system="salesforce", object="Task",
            record_id=row.record_id, task_key=row.task_key, reason="resolved", state="planned", attempts=0,
            payload={"Status": "Completed", "Description": "Closed by detente"}, planned_at=datetime.now(UTC)))
    sf, hs = SalesforceWriter(settings.salesforce), HubSpotWriter(settings.hubspot)
    try:
        counts = apply_writes(store, settings, {"salesforce": sf.send, "hubspot": hs.send}, datetime.now(UTC)).counts
    finally:
        sf.close()
        hs.close()
    with store.connect() as conn:
        done = conn.execute(select(WRITES).where(WRITES.c.key == f"complete|{row.task_key}")).one()
    assert (done.state, counts["skipped"]) == ("skipped", 1), done
    assert "ENTITY_IS_DELETED" in done.error
    assert row.task_key not in {t["Detente_Key__c"] for t in _sf_tasks(sb)}
    assert [w for w in sb.world.writes(mark) if w["object"] == "Task"] == []


def test_a_plan_larger_than_the_cap_stops_before_anything_is_queued(private: Sandbox, store: Engine,
                                                                    rules: Rules) -> None:
    sb = private
    settings = _settings(sb, max_writes_per_run=3)
    pull(store, sb, NOW)
    normalize(store, now=NOW)
    reconcile(store, rules, NOW)
    with pytest.raises(PlanTooLarge, match="max_writes_per_run"):
        plan_writes(store, rules, settings.writeback, NOW)
    with store.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM writes")).scalar_one() == 0
