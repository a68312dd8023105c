"""HubSpot simulator: batch read, create, update, upsert and archive, with partial failures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hubspot.crm.contacts import (
    ApiException,
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectId,
    BatchReadInputSimplePublicObjectId,
    SimplePublicObjectBatchInput,
    SimplePublicObjectId,
)
from hubspot.crm.contacts.models.batch_response_simple_public_object_with_errors import (
    BatchResponseSimplePublicObjectWithErrors,
)

from detente.sandbox.server import Sandbox
from tests.conftest import hs_client
from tests.sandbox.test_hubspot_support import (
    assert_hubspot_error,
    batch_create,
    call,
    people,
    set_clock,
    set_faults,
    start,
    stats,
    stop,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sb = start(tmp_path_factory, "hs-batch")
    yield sb
    stop(sb)


@pytest.fixture
def sb(world: Sandbox) -> Iterator[Sandbox]:
    yield world
    world.hs_control.reset()


def count(sb: Sandbox, email_domain: str) -> int:
    body = call(
        sb,
        "POST",
        "/crm/v3/objects/contacts/search",
        json={
            "filterGroups": [
                {"filters": [{"propertyName": "email", "operator": "CONTAINS_TOKEN", "value": f"*@{email_domain}"}]}
            ]
        },
    ).json()
    total: int = body["total"]
    return total


# -- create ------------------------------------------------------------------------------


def test_batch_create_answers_201_with_every_record(sb: Sandbox) -> None:
    """batch/create writes all inputs and returns them with ids, status COMPLETE and timestamps."""
    response = call(
        sb,
        "POST",
        "/crm/v3/objects/contacts/batch/create",
        json={"inputs": [{"properties": p} for p in people(3, "made")]},
    )
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "COMPLETE" and body["startedAt"] and body["completedAt"]
    assert [r["properties"]["email"] for r in body["results"]] == [f"made{i}@made.example" for i in range(3)]
    assert count(sb, "made.example") == 3


def test_batch_over_100_inputs_is_refused(sb: Sandbox) -> None:
    """101 inputs is a 400 VALIDATION_ERROR and nothing is written."""
    response = call(
        sb,
        "POST",
        "/crm/v3/objects/contacts/batch/create",
        json={"inputs": [{"properties": p} for p in people(101, "toomany")]},
    )
    assert_hubspot_error(response, 400, "VALIDATION_ERROR")
    assert count(sb, "toomany.example") == 0


def test_one_invalid_input_fails_the_whole_create(sb: Sandbox) -> None:
    """Without objectWriteTraceId one invalid input fails the call with 400; nothing is written."""
    records = people(3, "allornone")
    records[1]["lifecyclestage"] = "friend"
    inputs = [{"properties": p} for p in records]
    response = call(sb, "POST", "/crm/v3/objects/contacts/batch/create", json={"inputs": inputs})
    body = assert_hubspot_error(response, 400, "VALIDATION_ERROR")
    assert "INVALID_OPTION" in body["message"]
    assert count(sb, "allornone.example") == 0


def test_traced_create_reports_invalid_inputs_in_a_207(sb: Sandbox) -> None:
    """With objectWriteTraceId on every input, invalid ones come back as errors and the rest are written."""
    records = people(3, "traced")
    records[2]["no_such_property"] = "x"
    inputs = [{"properties": p, "objectWriteTraceId": f"t{i}"} for i, p in enumerate(records)]
    response = call(sb, "POST", "/crm/v3/objects/contacts/batch/create", json={"inputs": inputs})
    assert response.status_code == 207
    body = response.json()
    assert body["numErrors"] == 1
    assert body["errors"][0]["category"] == "VALIDATION_ERROR"
    assert body["errors"][0]["context"] == {"objectWriteTraceId": ["t2"]}
    assert [r["objectWriteTraceId"] for r in body["results"]] == ["t0", "t1"]
    assert count(sb, "traced.example") == 2


def test_duplicate_email_inside_one_batch_is_a_conflict(sb: Sandbox) -> None:
    """Two inputs with the same email fail the create with 409."""
    records = people(2, "twin")
    records[1]["email"] = records[0]["email"].upper()
    inputs = [{"properties": p} for p in records]
    response = call(sb, "POST", "/crm/v3/objects/contacts/batch/create", json={"inputs": inputs})
    assert_hubspot_error(response, 409, "CONFLICT")


# -- read --------------------------------------------------------------------------------


def test_batch_read_with_an_unknown_id_is_a_207_for_the_client(sb: Sandbox) -> None:
    """An unknown id makes batch/read answer 207; the client returns ...WithErrors, not an exception."""
    ids = batch_create(sb, "contacts", people(2, "readme"))
    result = hs_client(sb).crm.contacts.batch_api.read(
        BatchReadInputSimplePublicObjectId(
            inputs=[SimplePublicObjectId(id=i) for i in [*ids, "987654321"]],
            properties=["email"],
            properties_with_history=[],
        )
    )
    assert isinstance(result, BatchResponseSimplePublicObjectWithErrors)
    assert result.num_errors == 1
    assert result.errors[0].category == "OBJECT_NOT_FOUND"
    assert result.errors[0].context == {"ids": ["987654321"]}
    assert sorted(r.id for r in result.results) == sorted(ids)


def test_batch_read_by_email_with_history(sb: Sandbox) -> None:
    """batch/read with idProperty=email returns the records with the asked properties and history."""
    batch_create(sb, "contacts", people(2, "byemail", lifecyclestage="lead"))
    response = call(
        sb,
        "POST",
        "/crm/v3/objects/contacts/batch/read",
        json={
            "idProperty": "email",
            "properties": ["lifecyclestage"],
            "propertiesWithHistory": ["lifecyclestage"],
            "inputs": [{"id": "BYEMAIL0@byemail.example"}, {"id": "byemail1@byemail.example"}],
        },
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["properties"]["lifecyclestage"] for r in results] == ["lead", "lead"]
    assert results[0]["propertiesWithHistory"]["lifecyclestage"][0]["value"] == "lead"


def test_batch_read_of_a_merged_id_returns_the_survivor(sb: Sandbox) -> None:
    """A merged-away id reads as the surviving record."""
    keep, lose = batch_create(sb, "contacts", people(2, "bmerge"))
    call(sb, "POST", "/crm/v3/objects/contacts/merge", json={"primaryObjectId": keep, "objectIdToMerge": lose})
    body = call(sb, "POST", "/crm/v3/objects/contacts/batch/read", json={"inputs": [{"id": lose}]}).json()
    assert [r["id"] for r in body["results"]] == [keep]


# -- update ------------------------------------------------------------------------------


def test_batch_update_writes_every_input(sb: Sandbox) -> None:
    """batch/update through the client sets the properties and answers 200 with the records."""
    ids = batch_create(sb, "contacts", people(3, "upd"))
    result = hs_client(sb).crm.contacts.batch_api.update(
        BatchInputSimplePublicObjectBatchInput(
            inputs=[SimplePublicObjectBatchInput(id=i, properties={"hs_lead_status": "IN_PROGRESS"}) for i in ids]
        )
    )
    assert sorted(r.id for r in result.results) == sorted(ids)
    assert {r.properties["hs_lead_status"] for r in result.results} == {"IN_PROGRESS"}


def test_batch_update_with_an_unknown_id_is_a_207(sb: Sandbox) -> None:
    """Known ids are updated; the unknown one is reported as OBJECT_NOT_FOUND."""
    (cid,) = batch_create(sb, "contacts", people(1, "upd207"))
    response = call(
        sb,
        "POST",
        "/crm/v3/objects/contacts/batch/update",
        json={
            "inputs": [
                {"id": cid, "properties": {"jobtitle": "CEO"}},
                {"id": "555555555", "properties": {"jobtitle": "CEO"}},
            ]
        },
    )
    assert response.status_code == 207
    body = response.json()
    assert body["errors"][0]["category"] == "OBJECT_NOT_FOUND"
    assert body["errors"][0]["context"]["ids"] == ["555555555"]
    assert body["results"][0]["properties"]["jobtitle"] == "CEO"


def test_batch_update_with_duplicate_ids_is_refused(sb: Sandbox) -> None:
    """The same id twice in one batch is a 400."""
    (cid,) = batch_create(sb, "contacts", people(1, "dupid"))
    response = call(
        sb,
        "POST",
        "/crm/v3/objects/contacts/batch/update",
        json={"inputs": [{"id": cid, "properties": {"jobtitle": "A"}}, {"id": cid, "properties": {"jobtitle": "B"}}]},
    )
    assert_hubspot_error(response, 400, "VALIDATION_ERROR")


def test_batch_update_with_an_invalid_value_writes_nothing(sb: Sandbox) -> None:
    """One invalid property value fails the whole update."""
    a, b = batch_create(sb, "contacts", people(2, "updbad"))
    response = call(
        sb,
        "POST",
        "/crm/v3/objects/contacts/batch/update",
        json={
            "inputs": [
                {"id": a, "properties": {"jobtitle": "Fine"}},
                {"id": b, "properties": {"hs_lead_status": "MAYBE"}},
            ]
        },
    )
    assert_hubspot_error(response, 400, "VALIDATION_ERROR")
    record = call(sb, "GET", f"/crm/v3/objects/contacts/{a}?properties=jobtitle").json()
    assert record["properties"]["jobtitle"] is None


# -- upsert ------------------------------------------------------------------------------


def test_batch_upsert_by_email_creates_and_updates(sb: Sandbox) -> None:
    """Upsert by email updates the existing contact (new: false) and creates the other (new: true)."""
    (existing,) = batch_create(sb, "contacts", people(1, "ups"))
    response = call(
        sb,
        "POST",
        "/crm/v3/objects/contacts/batch/upsert",
        json={
            "inputs": [
                {"id": "ups0@ups.example", "idProperty": "email", "properties": {"jobtitle": "Kept"}},
                {"id": "ups1@ups.example", "idProperty": "email", "properties": {"firstname": "New"}},
            ]
        },
    )
    assert response.status_code == 200, response.text
    results = {r["properties"]["email"]: r for r in response.json()["results"]}
    assert results["ups0@ups.example"]["id"] == existing and results["ups0@ups.example"]["new"] is False
    assert results["ups1@ups.example"]["new"] is True
    assert count(sb, "ups.example") == 2


def test_batch_upsert_of_tasks_by_detente_key_is_idempotent(sb: Sandbox) -> None:
    """Upserting the same detente_key twice leaves one task, updated the second time."""

    def upsert(subject: str) -> dict[str, object]:
        response = call(
            sb,
            "POST",
            "/crm/v3/objects/tasks/batch/upsert",
            json={
                "inputs": [
                    {
                        "id": "rule-7:contact-1",
                        "idProperty": "detente_key",
                        "properties": {"hs_timestamp": "2026-05-02T09:00:00Z", "hs_task_subject": subject},
                    }
                ]
            },
        )
        assert response.status_code == 200, response.text
        result: dict[str, object] = response.json()["results"][0]
        return result

    first, second = upsert("Call back"), upsert("Call back today")
    assert first["new"] is True and second["new"] is False and first["id"] == second["id"]
    task = call(
        sb, "GET", "/crm/v3/objects/tasks/rule-7:contact-1?idProperty=detente_key&properties=hs_task_subject"
    ).json()
    assert task["properties"]["hs_task_subject"] == "Call back today"


def test_upsert_on_a_non_unique_property_is_refused(sb: Sandbox) -> None:
    """idProperty must be a unique property."""
    response = call(
        sb,
        "POST",
        "/crm/v3/objects/contacts/batch/upsert",
        json={"inputs": [{"id": "Ann", "idProperty": "firstname", "properties": {"jobtitle": "x"}}]},
    )
    assert_hubspot_error(response, 400, "VALIDATION_ERROR")


# -- archive -----------------------------------------------------------------------------


def test_batch_archive_answers_204_and_archives(sb: Sandbox) -> None:
    """batch/archive through the client archives the records (they move to archived=true)."""
    ids = batch_create(sb, "contacts", people(2, "arch"))
    hs_client(sb).crm.contacts.batch_api.archive(
        BatchInputSimplePublicObjectId(inputs=[SimplePublicObjectId(id=i) for i in ids])
    )
    assert count(sb, "arch.example") == 0
    archived = call(sb, "GET", f"/crm/v3/objects/contacts/{ids[0]}?archived=true").json()
    assert archived["archived"] is True


# -- partial failures --------------------------------------------------------------------


def test_partial_batch_failure_fault_fails_a_share_of_inputs(sb: Sandbox) -> None:
    """With partial_batch_failures, a 207 lists the failed inputs; only the others are written."""
    set_faults(sb, partial_batch_failures=0.3, seed=3)
    inputs = [{"properties": p, "objectWriteTraceId": f"pf{i}"} for i, p in enumerate(people(100, "partial"))]
    response = call(sb, "POST", "/crm/v3/objects/contacts/batch/create", json={"inputs": inputs})
    assert response.status_code == 207
    body = response.json()
    failed = {e["context"]["objectWriteTraceId"][0] for e in body["errors"]}
    written = {r["objectWriteTraceId"] for r in body["results"]}
    assert body["numErrors"] == len(failed) > 0 and len(written) + len(failed) == 100
    assert not failed & written
    assert count(sb, "partial.example") == len(written)
    assert stats(sb)["faults_injected"]["partial_batch_failure"] == len(failed)


def test_partial_batch_failure_reaches_the_client_as_num_errors(sb: Sandbox) -> None:
    """batch/update under the fault returns BatchResponseSimplePublicObjectWithErrors to the client."""
    ids = batch_create(sb, "contacts", people(50, "partupd"))
    set_faults(sb, partial_batch_failures=0.5, seed=1)
    result = hs_client(sb).crm.contacts.batch_api.update(
        BatchInputSimplePublicObjectBatchInput(
            inputs=[SimplePublicObjectBatchInput(id=i, properties={"jobtitle": "Updated"}) for i in ids]
        )
    )
    assert isinstance(result, BatchResponseSimplePublicObjectWithErrors)
    failed = {i for e in result.errors for i in e.context["ids"]}
    assert result.num_errors == len(failed) > 0
    assert len(result.results) + len(failed) == 50


def test_batch_create_timestamps_come_from_the_sandbox_clock(sb: Sandbox) -> None:
    """startedAt, completedAt and createdAt follow the frozen clock."""
    set_clock(sb, datetime(2026, 7, 4, 12, 0, tzinfo=UTC))
    body = call(
        sb,
        "POST",
        "/crm/v3/objects/contacts/batch/create",
        json={"inputs": [{"properties": p} for p in people(1, "clocked")]},
    ).json()
    assert body["startedAt"] == body["completedAt"] == "2026-07-04T12:00:00.000Z"
    assert body["results"][0]["createdAt"] == "2026-07-04T12:00:00.000Z"


def test_batch_post_429_is_not_retried_by_the_client(sb: Sandbox) -> None:
    """A 429 on batch/read (a POST) raises ApiException(429) after one attempt."""
    set_faults(sb, rate_limited=1.0, retry_after_seconds=0)
    with pytest.raises(ApiException) as caught:
        hs_client(sb).crm.contacts.batch_api.read(
            BatchReadInputSimplePublicObjectId(
                inputs=[SimplePublicObjectId(id="1")], properties=[], properties_with_history=[]
            )
        )
    assert caught.value.status == 429
    assert json.loads(caught.value.body)["policyName"] == "TEN_SECONDLY_ROLLING"
    assert stats(sb)["calls"]["POST /crm/v3/objects/{type}/batch/read"] == 1
