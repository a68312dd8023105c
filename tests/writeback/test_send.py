"""The write-back transport against a private sandbox over HTTPS with the real client
libraries: calls per batch, per-record outcomes, idempotent task upserts, partial failures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from detente.connectors.base import BudgetExhausted, CallBudget
from detente.sandbox.schema import HS_ASSOCIATION_TYPES, SALESFORCE_OBJECTS
from detente.sandbox.server import Sandbox
from detente.settings import HubSpotSettings, SalesforceSettings
from detente.writeback.send import (
    HubSpotWriter,
    Op,
    Outcome,
    Refusal,
    SalesforceWriter,
    WireRecord,
    batches,
    merge,
    problem,
    split,
)
from tests.conftest import AS_OF, trusting_session

LEAD = SALESFORCE_OBJECTS["Lead"]
CONTACT = SALESFORCE_OBJECTS["Contact"]
TASK = SALESFORCE_OBJECTS["Task"]
NOW = AS_OF + timedelta(days=1)
SF_UPDATE = "PATCH /services/data/v{version}/composite/sobjects"
SF_UPSERT = "PATCH /services/data/v{version}/composite/sobjects/{sobject}/{field}"
HS_UPDATE = "POST /crm/v3/objects/{type}/batch/update"
HS_CREATE = "POST /crm/v3/objects/{type}/batch/create"
HS_UPSERT = "POST /crm/v3/objects/{type}/batch/upsert"
HS_ASSOCIATE = "POST /crm/v4/associations/{type}/{to_type}/batch/create"
DETENTE_SF: dict[str, Any] = {
    "Detente_Status__c": "Drift", "Detente_SLA_Due__c": "2026-11-20T15:00:00Z", "Detente_Lead_Value__c": 1234.5,
    "Detente_Rules_Version__c": "rules-7",
}
DETENTE_HS: dict[str, Any] = {
    "detente_status": "Drift", "detente_sla_due": "2026-11-20T15:00:00.000Z", "detente_lead_value": 1234.5,
    "detente_rules_version": "rules-7",
}


# -- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture
def private(tmp_path: Path) -> Iterator[Sandbox]:
    """A small demo world of this test's own, to write to."""
    sb = Sandbox(state_dir=tmp_path / "sandbox", dataset="demo", size=40, seed=29, as_of=AS_OF)
    sb.start()
    yield sb
    sb.stop()


def sf_settings(sb: Sandbox, **overrides: Any) -> SalesforceSettings:
    values = {**sb.settings_dict()["salesforce"], "timeout_seconds": 10, "backoff_factor": 0.01,
              "backoff_max_seconds": 0.05, **overrides}
    return SalesforceSettings(**values)


def hs_settings(sb: Sandbox, **overrides: Any) -> HubSpotSettings:
    values = {**sb.settings_dict()["hubspot"], "timeout_seconds": 10, "backoff_factor": 0.01,
              "backoff_max_seconds": 0.05, "burst_per_10s": 100_000, "search_per_second": 10_000, **overrides}
    return HubSpotSettings(**values)


@pytest.fixture
def writers() -> Iterator[list[SalesforceWriter | HubSpotWriter]]:
    """Writers to close after the test (open connections would hold up the sandbox's stop)."""
    made: list[SalesforceWriter | HubSpotWriter] = []
    yield made
    for w in made:
        w.close()


@pytest.fixture
def sf_writer(private: Sandbox, writers: list[SalesforceWriter | HubSpotWriter]) -> SalesforceWriter:
    """A Salesforce writer, logged in already so that calls count the writes alone."""
    w = SalesforceWriter(sf_settings(private))
    w.connect()
    writers.append(w)
    return w


@pytest.fixture
def hs_writer(private: Sandbox, writers: list[SalesforceWriter | HubSpotWriter]) -> HubSpotWriter:
    w = HubSpotWriter(hs_settings(private))
    writers.append(w)
    return w


def control(sb: Sandbox, system: str, what: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """GET stats or POST faults on one of the sandbox's servers."""
    assert sb.info is not None
    base = sb.info.salesforce if system == "salesforce" else sb.info.hubspot
    with trusting_session(sb.info) as session:
        if body is None:
            response = session.get(f"{base}/__sandbox/{what}", timeout=10)
        else:
            response = session.post(f"{base}/__sandbox/{what}", json=body, timeout=10)
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer


def route_calls(sb: Sandbox, system: str) -> dict[str, int]:
    calls: dict[str, int] = control(sb, system, "stats")["calls"]
    return calls


def live_leads(sb: Sandbox, count: int) -> list[str]:
    """``count`` live, unconverted lead ids, inserting leads when the world has too few."""
    def ids() -> list[str]:
        rows = sb.world.query('SELECT "Id" FROM "sf_Lead" WHERE NOT "IsDeleted" AND NOT "IsConverted" ORDER BY "Id"')
        return [r[0] for r in rows]

    have = ids()
    if len(have) < count:
        owner = sb.world.query('SELECT "Id" FROM "sf_User" ORDER BY "Id" LIMIT 1')[0][0]
        sb.world.sf_insert(LEAD, [
            {"LastName": f"Writer{n}", "Company": f"Batch Co {n}", "Email": f"writer{n}@batch.example",
             "Status": "Open - Not Contacted", "OwnerId": owner}
            for n in range(count - len(have))
        ], NOW)
        have = ids()
    return have[:count]


def live_contacts(sb: Sandbox, count: int) -> list[str]:
    """``count`` HubSpot contact ids, inserting contacts when the world has too few."""
    def ids() -> list[str]:
        return [str(r[0]) for r in sb.world.query("SELECT id FROM hs_contacts WHERE NOT archived ORDER BY id")]

    have = ids()
    if len(have) < count:
        sb.world.hs_insert("contacts", [
            {"email": f"writer{n}@batch.example", "firstname": "Batch", "lastname": f"Writer{n}"}
            for n in range(count - len(have))
        ], NOW)
        have = ids()
    return have[:count]


def lead(sb: Sandbox, record_id: str) -> dict[str, Any]:
    row = sb.world.sf_get(LEAD, record_id)
    assert row is not None
    return row


def contact_props(sb: Sandbox, record_id: str) -> dict[str, Any]:
    row = sb.world.hs_get("contacts", int(record_id))
    assert row is not None
    props: dict[str, Any] = row["properties"]
    return props


def by_ref(outcomes: list[Outcome]) -> dict[str, Outcome]:
    return {o.ref: o for o in outcomes}


def sf_update(ref: str, record_id: str, obj: str = "Lead", **fields: Any) -> Op:
    return Op(ref, "salesforce", obj, fields, record_id=record_id)


def hs_update(ref: str, record_id: str, **fields: Any) -> Op:
    return Op(ref, "hubspot", "contacts", fields, record_id=record_id)


# -- pure helpers ---------------------------------------------------------------------------------


def test_batches_cut_runs_of_at_most_size() -> None:
    assert batches(list(range(5)), 2) == [[0, 1], [2, 3], [4]]
    assert batches([], 3) == []


def test_writes_to_one_record_merge_with_later_fields_winning() -> None:
    ops = [sf_update("a", "00Q1", Detente_Status__c="Drift"), sf_update("b", "00Q2", Detente_Status__c="Aligned"),
           sf_update("c", "00Q1", Detente_Status__c="SLA Running", Detente_Reason__c="late")]
    [first, second] = merge(ops, range(3))
    assert first.indices == [0, 2] and first.fields == {"Detente_Status__c": "SLA Running", "Detente_Reason__c": "late"}
    assert second.indices == [1]


def test_invalid_writes_are_refused_before_sending() -> None:
    both = Op("x", "salesforce", "Lead", {}, record_id="00Q1", upsert_key=("Detente_Key__c", "k"))
    assert problem(both, "salesforce") is not None
    assert problem(Op("y", "hubspot", "contacts", {"a": 1}, record_id="1"), "salesforce") is not None
    assert problem(sf_update("z", "00Q1", Detente_SLA_Due__c=NOW), "salesforce") is not None
    assert problem(sf_update("ok", "00Q1", Detente_Status__c="Drift"), "salesforce") is None


@pytest.mark.parametrize(("op", "said"), [
    (Op("a", "salesforce", "Lead", {"Status": "Working"}, record_id="00Q1"), "Status is not a field of detente's own"),
    (Op("b", "salesforce", "Opportunity", {"Detente_Status__c": "x"}, record_id="0061"),
     "does not write salesforce Opportunity"),
    (Op("c", "salesforce", "Account", {"Detente_Status__c": "x"}, record_id="0011"), "does not write"),
    (Op("d", "hubspot", "contacts", {"lifecyclestage": "lead"}, record_id="1"), "lifecyclestage is not"),
    (Op("e", "hubspot", "deals", {"detente_status": "x"}, record_id="1"), "does not write hubspot deals"),
])
def test_writes_beyond_detente_s_own_fields_and_tasks_are_refused_before_sending(op: Op, said: str) -> None:
    """Least privilege at the last step, whatever reached the outbox."""
    found = problem(op, op.system)
    assert found is not None and said in found, found


def test_a_refused_call_fails_records_with_a_missing_property_at_once_and_halves_the_rest() -> None:
    group = [WireRecord("contacts", [i], {"detente_status": "x"}, str(i)) for i in range(4)]
    group[1].fields["detente_nope"] = "y"
    failed, again = split(group, Refusal("VALIDATION_ERROR", True, frozenset({"detente_nope"}),
                                         frozenset({"detente_nope"})))
    assert failed == [group[1]] and again == [[group[0], group[2], group[3]]]
    failed, again = split(group, Refusal("VALIDATION_ERROR", True, frozenset({"detente_status"})))
    assert failed == [] and again == [group[:2], group[2:]]


# -- Salesforce -----------------------------------------------------------------------------------


def test_250_salesforce_lead_updates_go_out_in_two_calls(private: Sandbox, sf_writer: SalesforceWriter) -> None:
    ids = live_leads(private, 250)
    before = route_calls(private, "salesforce").get(SF_UPDATE, 0)
    ops = [sf_update(f"w{i}", rid, **DETENTE_SF, Detente_Reason__c=f"reason {i}") for i, rid in enumerate(ids)]
    outcomes = sf_writer.send(ops)
    assert [o.ref for o in outcomes] == [op.ref for op in ops]
    assert all(o.ok and o.record_id == rid and not o.created for o, rid in zip(outcomes, ids, strict=True))
    assert sf_writer.last_calls == 2
    assert route_calls(private, "salesforce").get(SF_UPDATE, 0) - before == 2
    for i in (0, 137, 249):
        row = lead(private, ids[i])
        assert row["Detente_Status__c"] == "Drift" and row["Detente_Reason__c"] == f"reason {i}"
        assert row["Detente_Lead_Value__c"] == 1234.5 and row["Detente_Rules_Version__c"] == "rules-7"
        assert str(row["Detente_SLA_Due__c"]).startswith("2026-11-20T15:00:00")


def test_leads_and_contacts_share_one_call_and_writes_to_one_lead_are_merged(
    private: Sandbox, sf_writer: SalesforceWriter
) -> None:
    [a, b] = live_leads(private, 2)
    [contact] = [r[0] for r in private.world.query('SELECT "Id" FROM "sf_Contact" WHERE NOT "IsDeleted" LIMIT 1')]
    sent: list[Any] = []
    sf_writer.connector.session.hooks["response"].append(lambda r, *args, **kwargs: sent.append(r.request.body))
    outcomes = sf_writer.send([
        sf_update("status", a, Detente_Status__c="Disagreement"),
        sf_update("contact", contact, "Contact", Detente_Status__c="Aligned"),
        sf_update("other", b, Detente_Status__c="Feedback Gap"),
        sf_update("reason", a, Detente_Reason__c="HubSpot says MQL, Salesforce says Disqualified"),
    ])
    assert all(o.ok for o in outcomes), outcomes
    assert sf_writer.last_calls == 1
    [body] = [json.loads(b) for b in sent]
    assert [(r["attributes"]["type"], r["Id"]) for r in body["records"]] == [("Contact", contact), ("Lead", a),
                                                                             ("Lead", b)]
    assert lead(private, a)["Detente_Status__c"] == "Disagreement"
    assert lead(private, a)["Detente_Reason__c"].startswith("HubSpot says MQL")
    contact_row = private.world.sf_get(CONTACT, contact)
    assert contact_row is not None and contact_row["Detente_Status__c"] == "Aligned"


def _sf_task(ref: str, key: str, who: str, subject: str) -> Op:
    return Op(ref, "salesforce", "Task", {"Subject": subject, "WhoId": who, "Status": "Not Started",
                                          "Priority": "High", "ActivityDate": "2026-11-20"},
              upsert_key=("Detente_Key__c", key))


def test_a_task_upserted_twice_by_detente_key_is_created_once(private: Sandbox, sf_writer: SalesforceWriter) -> None:
    """The second send stands for a retry after a crash that lost the first send's outcome."""
    [who] = live_leads(private, 1)
    key = "sla-first-touch|breach|person:7|20261116T150000"
    first = sf_writer.send([_sf_task("t1", key, who, "Call back"), _sf_task("t1-again", key, who, "Call back")])
    assert [o.ok and o.created for o in first] == [True, True]
    assert first[0].record_id is not None and first[0].record_id.startswith("00T")
    assert first[0].record_id == first[1].record_id
    assert sf_writer.last_calls == 1

    again = SalesforceWriter(sf_settings(private))  # a new process after the crash
    try:
        [second] = again.send([_sf_task("t1", key, who, "Call back today")])
    finally:
        again.close()
    assert second.ok and not second.created and second.record_id == first[0].record_id
    assert private.world.sf_find(TASK, "Detente_Key__c", key) == [first[0].record_id]
    task = private.world.sf_get(TASK, first[0].record_id)
    assert task is not None and task["Subject"] == "Call back today" and task["WhoId"] == who
    assert route_calls(private, "salesforce").get(SF_UPSERT, 0) == 2


def test_deleted_and_unknown_leads_fail_alone_with_salesforce_s_message(
    private: Sandbox, sf_writer: SalesforceWriter
) -> None:
    [alive, deleted, other] = live_leads(private, 3)
    private.world.sf_delete(LEAD, deleted, NOW)
    [unknown] = private.world.new_sf_ids("00Q", 1)
    outcomes = by_ref(sf_writer.send([
        sf_update("alive", alive, Detente_Status__c="Drift"), sf_update("deleted", deleted, Detente_Status__c="Drift"),
        sf_update("unknown", unknown, Detente_Status__c="Drift"), sf_update("other", other, Detente_Status__c="Drift"),
    ]))
    assert sf_writer.last_calls == 1
    assert outcomes["alive"].ok and outcomes["other"].ok
    assert not outcomes["deleted"].ok and not outcomes["deleted"].retryable
    assert outcomes["deleted"].error is not None and "ENTITY_IS_DELETED" in outcomes["deleted"].error
    assert not outcomes["unknown"].ok and not outcomes["unknown"].retryable
    assert outcomes["unknown"].error is not None and "INVALID_CROSS_REFERENCE_KEY" in outcomes["unknown"].error
    assert lead(private, other)["Detente_Status__c"] == "Drift"


def test_salesforce_partial_batch_failures_are_retryable_for_exactly_the_failed_records(
    private: Sandbox, sf_writer: SalesforceWriter
) -> None:
    ids = live_leads(private, 40)
    control(private, "salesforce", "faults", {"partial_batch_failures": 0.3, "seed": 5})
    outcomes = sf_writer.send([sf_update(rid, rid, Detente_Status__c="Missed Label") for rid in ids])
    failed = {o.ref for o in outcomes if not o.ok}
    assert 0 < len(failed) < len(ids)
    assert all(o.retryable and o.error and "UNABLE_TO_LOCK_ROW" in o.error for o in outcomes if not o.ok)
    assert all(not o.retryable for o in outcomes if o.ok)
    written = {rid for rid in ids if lead(private, rid)["Detente_Status__c"] == "Missed Label"}
    assert written == set(ids) - failed
    assert control(private, "salesforce", "stats")["faults_injected"]["partial_batch_failure"] == len(failed)


def test_a_value_of_the_wrong_type_fails_its_lead_alone(private: Sandbox, sf_writer: SalesforceWriter) -> None:
    """Salesforce refuses the whole call (JSON_PARSER_ERROR); the writer splits it to find the lead."""
    ids = live_leads(private, 8)
    ops = [sf_update(rid, rid, Detente_Status__c="Drift", Detente_Lead_Value__c=10.0) for rid in ids]
    ops[5] = sf_update(ids[5], ids[5], Detente_Status__c="Drift", Detente_Lead_Value__c="a lot")
    outcomes = by_ref(sf_writer.send(ops))
    bad = outcomes[ids[5]]
    assert not bad.ok and not bad.retryable and bad.error is not None and "JSON_PARSER_ERROR" in bad.error
    assert all(outcomes[rid].ok for rid in ids if rid != ids[5])
    assert all(lead(private, rid)["Detente_Status__c"] == "Drift" for rid in ids if rid != ids[5])
    assert lead(private, ids[5])["Detente_Status__c"] != "Drift"


def test_salesforce_failing_after_retries_makes_every_write_retryable_and_stops_the_send(
    private: Sandbox, writers: list[SalesforceWriter | HubSpotWriter]
) -> None:
    ids = live_leads(private, 250)
    writer = SalesforceWriter(sf_settings(private, retries=1))
    writers.append(writer)
    writer.connect()
    control(private, "salesforce", "faults", {"server_errors": 1.0})
    outcomes = writer.send([sf_update(rid, rid, Detente_Status__c="Drift") for rid in ids])
    assert all(not o.ok and o.retryable for o in outcomes)
    assert sum("not sent" in (o.error or "") for o in outcomes) == 50  # the second call was never made
    assert writer.last_calls == 2  # the first call and its one retry


def test_an_expired_session_is_renewed_in_the_middle_of_a_send(private: Sandbox, sf_writer: SalesforceWriter) -> None:
    ids = live_leads(private, 250)
    control(private, "salesforce", "faults", {"expire_session_every": 2})
    outcomes = sf_writer.send([sf_update(rid, rid, Detente_Status__c="Aligned") for rid in ids])
    assert all(o.ok for o in outcomes)
    assert sf_writer.connector.logins == 2  # the fixture's login and one more after the 401
    assert control(private, "salesforce", "stats")["faults_injected"]["expired_session"] == 1
    assert lead(private, ids[-1])["Detente_Status__c"] == "Aligned"


def test_a_spent_budget_raises_and_keeps_the_outcomes_known_so_far(
    private: Sandbox, writers: list[SalesforceWriter | HubSpotWriter]
) -> None:
    ids = live_leads(private, 250)
    writer = SalesforceWriter(sf_settings(private), budget=CallBudget(per_run=2))  # the login and one call
    writers.append(writer)
    with pytest.raises(BudgetExhausted):
        writer.send([sf_update(rid, rid, Detente_Status__c="Drift") for rid in ids])
    known = writer.last_outcomes
    assert all(o is not None and o.ok for o in known[:200]) and all(o is None for o in known[200:])


def test_missing_fields_names_the_fields_the_org_lacks(sf_writer: SalesforceWriter) -> None:
    wanted = {"Lead": ["Detente_Status__c", "Detente_Reason__c", "Detente_Nonexistent__c", "SystemModstamp"],
              "Contact": ["Detente_Status__c", "Detente_SLA_Due__c"], "Task": ["Detente_Key__c", "WhoId"]}
    assert sf_writer.missing_fields(wanted) == {"Lead": ["Detente_Nonexistent__c", "SystemModstamp"]}
    assert sf_writer.last_calls == 0 and sf_writer.calls == 4  # the login and one describe per object


# -- HubSpot --------------------------------------------------------------------------------------


def test_150_hubspot_contact_updates_go_out_in_two_calls(private: Sandbox, hs_writer: HubSpotWriter) -> None:
    ids = live_contacts(private, 150)
    before = route_calls(private, "hubspot").get(HS_UPDATE, 0)
    outcomes = hs_writer.send([hs_update(f"w{i}", rid, **DETENTE_HS, detente_reason=f"reason {i}")
                               for i, rid in enumerate(ids)])
    assert all(o.ok and o.record_id == rid for o, rid in zip(outcomes, ids, strict=True)), outcomes[:3]
    assert hs_writer.last_calls == 2
    assert route_calls(private, "hubspot").get(HS_UPDATE, 0) - before == 2
    for i in (0, 99, 149):
        props = contact_props(private, ids[i])
        assert props["detente_status"] == "Drift" and props["detente_reason"] == f"reason {i}"
        assert props["detente_lead_value"] == "1234.5" and props["detente_rules_version"] == "rules-7"
        assert props["detente_sla_due"] == "2026-11-20T15:00:00.000Z"


def test_an_update_of_a_merged_away_contact_lands_on_the_survivor(private: Sandbox, hs_writer: HubSpotWriter) -> None:
    [keep, gone, other] = live_contacts(private, 3)
    private.world.hs_merge("contacts", int(keep), int(gone), NOW)
    outcomes = by_ref(hs_writer.send([hs_update("gone", gone, detente_status="Drift"),
                                      hs_update("other", other, detente_status="Drift")]))
    assert outcomes["gone"].ok and outcomes["gone"].record_id == keep
    assert outcomes["other"].ok and outcomes["other"].record_id == other
    assert contact_props(private, keep)["detente_status"] == "Drift"


def test_hubspot_failing_after_retries_makes_every_write_retryable_and_stops_the_send(
    private: Sandbox, writers: list[SalesforceWriter | HubSpotWriter]
) -> None:
    ids = live_contacts(private, 150)
    writer = HubSpotWriter(hs_settings(private, retries=1))
    writers.append(writer)
    control(private, "hubspot", "faults", {"server_errors": 1.0})
    outcomes = writer.send([hs_update(rid, rid, detente_status="Drift") for rid in ids])
    assert all(not o.ok and o.retryable for o in outcomes)
    assert sum("not sent" in (o.error or "") for o in outcomes) == 50  # the second call was never made
    assert writer.last_calls == 2  # the first call and its one retry


def _hs_task(ref: str, key: str, contact: str, subject: str) -> Op:
    return Op(ref, "hubspot", "tasks", {"hs_task_subject": subject, "hs_timestamp": "2026-11-20T15:00:00.000Z",
                                        "hs_task_status": "NOT_STARTED", "hs_task_priority": "HIGH"},
              upsert_key=("detente_key", key), associate_with=("contacts", contact))


def _tasks_with_key(sb: Sandbox, key: str) -> list[int]:
    rows = sb.world.query("SELECT id FROM hs_tasks WHERE json_extract(props, '$.detente_key') = ? AND NOT archived",
                          (key,))
    return [r[0] for r in rows]


@pytest.mark.parametrize(("create_first", "first_calls", "again_calls"), [(True, 1, 3), (False, 2, 2)])
def test_hubspot_task_upserts_make_one_task_per_key_on_its_contact(
    private: Sandbox, writers: list[SalesforceWriter | HubSpotWriter], create_first: bool, first_calls: int,
    again_calls: int,
) -> None:
    contacts = live_contacts(private, 3)
    keys = [f"sla-mql|warning|person:{n}|20261116T150000" for n in range(3)]
    writer = HubSpotWriter(hs_settings(private), create_first=create_first)
    writers.append(writer)
    before = route_calls(private, "hubspot")
    first = writer.send([_hs_task(k, k, c, "Work the MQL") for k, c in zip(keys, contacts, strict=True)])
    assert all(o.ok and o.created and o.record_id for o in first), first
    assert writer.last_calls == first_calls
    for outcome, key, contact in zip(first, keys, contacts, strict=True):
        assert outcome.record_id is not None
        assert _tasks_with_key(private, key) == [int(outcome.record_id)]
        linked = private.world.hs_associations("tasks", int(outcome.record_id), "contacts")
        assert (int(contact), "HUBSPOT_DEFINED", HS_ASSOCIATION_TYPES[("tasks", "contacts")]) in linked

    again = HubSpotWriter(hs_settings(private), create_first=create_first)  # a new process after a crash
    writers.append(again)
    second = again.send([_hs_task(k, k, c, "Work the MQL today") for k, c in zip(keys, contacts, strict=True)])
    assert all(o.ok and not o.created for o in second), second
    assert [o.record_id for o in second] == [o.record_id for o in first]
    assert again.last_calls == again_calls
    for outcome, key in zip(first, keys, strict=True):
        assert _tasks_with_key(private, key) == [int(str(outcome.record_id))]
        task = private.world.hs_get("tasks", int(str(outcome.record_id)))
        assert task is not None and task["properties"]["hs_task_subject"] == "Work the MQL today"
    after = route_calls(private, "hubspot")
    used = {route: after.get(route, 0) - before.get(route, 0) for route in (HS_CREATE, HS_UPSERT, HS_ASSOCIATE)}
    assert used == ({HS_CREATE: 2, HS_UPSERT: 1, HS_ASSOCIATE: 1} if create_first
                    else {HS_CREATE: 0, HS_UPSERT: 2, HS_ASSOCIATE: 2})


def test_archived_and_unknown_contacts_fail_alone_with_hubspot_s_message(
    private: Sandbox, hs_writer: HubSpotWriter
) -> None:
    [alive, archived, other] = live_contacts(private, 3)
    private.world.hs_archive("contacts", int(archived), NOW)
    outcomes = by_ref(hs_writer.send([
        hs_update("alive", alive, detente_status="Drift"), hs_update("archived", archived, detente_status="Drift"),
        hs_update("unknown", "99999999", detente_status="Drift"), hs_update("other", other, detente_status="Drift"),
    ]))
    assert hs_writer.last_calls == 1
    assert outcomes["alive"].ok and outcomes["other"].ok
    for ref in ("archived", "unknown"):
        assert not outcomes[ref].ok and not outcomes[ref].retryable
        assert str(outcomes[ref].error).startswith("OBJECT_NOT_FOUND")
    assert contact_props(private, other)["detente_status"] == "Drift"


def test_hubspot_partial_batch_failures_are_retryable_for_exactly_the_failed_records(
    private: Sandbox, hs_writer: HubSpotWriter
) -> None:
    ids = live_contacts(private, 40)
    control(private, "hubspot", "faults", {"partial_batch_failures": 0.3, "seed": 5})
    outcomes = hs_writer.send([hs_update(rid, rid, detente_status="Missed Label") for rid in ids])
    failed = {o.ref for o in outcomes if not o.ok}
    assert 0 < len(failed) < len(ids)
    assert all(o.retryable for o in outcomes if not o.ok)
    assert all(not o.retryable for o in outcomes if o.ok)
    written = {rid for rid in ids if contact_props(private, rid).get("detente_status") == "Missed Label"}
    assert written == set(ids) - failed
    assert control(private, "hubspot", "stats")["faults_injected"]["partial_batch_failure"] == len(failed)


def test_a_bad_property_value_fails_its_contact_alone(private: Sandbox, hs_writer: HubSpotWriter) -> None:
    """HubSpot refuses the whole batch; the writer splits it to find the contact."""
    ids = live_contacts(private, 10)
    ops = [hs_update(rid, rid, detente_status="Drift") for rid in ids]
    ops[3] = hs_update(ids[3], ids[3], detente_status="Somewhat Aligned")
    outcomes = by_ref(hs_writer.send(ops))
    bad = outcomes[ids[3]]
    assert not bad.ok and not bad.retryable and bad.error is not None and "INVALID_OPTION" in bad.error
    assert all(outcomes[rid].ok for rid in ids if rid != ids[3])
    assert all(contact_props(private, rid).get("detente_status") == "Drift" for rid in ids if rid != ids[3])


def test_a_property_that_does_not_exist_fails_its_contacts_without_a_search(
    private: Sandbox, hs_writer: HubSpotWriter
) -> None:
    ids = live_contacts(private, 10)
    ops = [hs_update(rid, rid, detente_status="Drift") for rid in ids]
    ops[2] = hs_update(ids[2], ids[2], detente_status="Drift", detente_mood="calm")
    outcomes = by_ref(hs_writer.send(ops))
    assert hs_writer.last_calls == 2  # the refused batch, then the others again
    assert not outcomes[ids[2]].ok and "PROPERTY_DOESNT_EXIST" in str(outcomes[ids[2]].error)
    assert all(outcomes[rid].ok for rid in ids if rid != ids[2])


def test_missing_properties_names_the_properties_the_portal_lacks(hs_writer: HubSpotWriter) -> None:
    wanted = {"contacts": ["detente_status", "detente_reason", "detente_sla_due", "detente_mood"],
              "tasks": ["detente_key", "hs_task_subject"]}
    assert hs_writer.missing_properties(wanted) == {"contacts": ["detente_mood"]}
    assert hs_writer.calls == 2  # one properties read per object
