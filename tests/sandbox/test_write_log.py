"""The sandbox keeps a log of every write made to either CRM after its world was generated
(what a harness compares with what detente says it wrote), readable in-process and over
``GET /__sandbox/writes``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hubspot.crm.contacts import SimplePublicObjectInput, SimplePublicObjectInputForCreate

from detente.sandbox.server import Sandbox
from tests.conftest import hs_client, sf_client, trusting_session


@pytest.fixture
def sb(empty_sandbox: Sandbox) -> Iterator[Sandbox]:
    yield empty_sandbox


def _over_http(sb: Sandbox, system: str, since: int = 0) -> list[dict]:
    assert sb.info is not None
    base = sb.info.salesforce if system == "salesforce" else sb.info.hubspot
    with trusting_session(sb.info) as session:
        response = session.get(f"{base}/__sandbox/writes", params={"since": since}, timeout=10)
    response.raise_for_status()
    return list(response.json()["writes"])


def test_generation_is_not_logged_and_every_api_write_is(sb: Sandbox) -> None:
    assert sb.world.writes() == []  # the owners the empty world was generated with are not writes
    sf = sf_client(sb)
    lead = sf.Lead.create({"LastName": "Log", "Company": "Acme", "Email": "log@acme.example"})["id"]
    sf.Lead.update(lead, {"Status": "Working - Contacted"})
    sf.Lead.delete(lead)
    hs = hs_client(sb)
    contact = hs.crm.contacts.basic_api.create(
        SimplePublicObjectInputForCreate(properties={"email": "log@acme.example"})).id
    hs.crm.contacts.basic_api.update(contact, SimplePublicObjectInput(properties={"firstname": "Logan"}))

    got = [(w["system"], w["object"], w["record_id"], w["op"], w["fields"]) for w in sb.world.writes()]
    assert got[0][:4] == ("salesforce", "Lead", lead, "insert")
    assert {"LastName": "Log", "Company": "Acme", "Email": "log@acme.example"}.items() <= got[0][4].items()
    assert got[1:3] == [
        ("salesforce", "Lead", lead, "update", {"Status": "Working - Contacted"}),
        ("salesforce", "Lead", lead, "delete", None),
    ]
    assert got[3][:4] == ("hubspot", "contacts", contact, "create") and got[3][4]["email"] == "log@acme.example"
    assert got[4] == ("hubspot", "contacts", contact, "update", {"firstname": "Logan"})
    # Over HTTP, each server lists its own system's writes, past a sequence number.
    sf_writes = _over_http(sb, "salesforce")
    assert [w["op"] for w in sf_writes] == ["insert", "update", "delete"]
    assert [w["op"] for w in _over_http(sb, "hubspot", since=sf_writes[-1]["seq"])] == ["create", "update"]


def test_a_bad_since_is_refused_with_what_to_send(sb: Sandbox) -> None:
    assert sb.info is not None
    with trusting_session(sb.info) as session:
        response = session.get(f"{sb.info.hubspot}/__sandbox/writes", params={"since": "x"}, timeout=10)
    assert response.status_code == 400 and "whole number" in response.json()["error"]


def test_restoring_the_world_empties_the_log(sb: Sandbox) -> None:
    sf_client(sb).Lead.create({"LastName": "Gone", "Company": "Acme"})
    assert sb.world.writes()
    sb.restore()
    assert sb.world.writes() == []


def test_deleting_a_lead_deletes_the_tasks_about_it(sb: Sandbox) -> None:
    """As in Salesforce: a lead's activities go to the recycle bin with it."""
    sf = sf_client(sb)
    lead = sf.Lead.create({"LastName": "Gone", "Company": "Acme"})["id"]
    task = sf.Task.create({"Subject": "Call", "WhoId": lead})["id"]
    other = sf.Task.create({"Subject": "Unrelated"})["id"]
    sf.Lead.delete(lead)
    assert sf.query_all(f"SELECT Id FROM Task WHERE Id = '{task}'")["totalSize"] == 0
    assert sf.query_all(f"SELECT Id FROM Task WHERE Id = '{other}'")["totalSize"] == 1
    assert [(w["object"], w["record_id"]) for w in sb.world.writes() if w["op"] == "delete"] == [
        ("Lead", lead), ("Task", task)]
