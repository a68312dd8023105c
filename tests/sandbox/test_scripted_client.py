"""A requests-only client that knows only the published API shapes pages every object of
both sandbox servers, and its counts match the servers' own statistics."""

from __future__ import annotations

import pytest

from detente.sandbox.server import Sandbox
from tests.conftest import sf_token, trusting_session
from tests.sandbox.scripted_client import ScriptedClient

HUBSPOT_OBJECTS = ["contacts", "companies", "deals", "tasks", "calls", "emails", "meetings"]


@pytest.fixture
def client(sandbox: Sandbox) -> ScriptedClient:
    assert sandbox.info is not None
    return ScriptedClient(
        salesforce=sandbox.info.salesforce, hubspot=sandbox.info.hubspot, ca=str(sandbox.info.ca),
        sf_token=sf_token(sandbox)["access_token"], hs_token=sandbox.credentials.hs_token,
    )


def stats(sandbox: Sandbox, system: str) -> dict[str, int]:
    assert sandbox.info is not None
    base = sandbox.info.salesforce if system == "salesforce" else sandbox.info.hubspot
    body = trusting_session(sandbox.info).get(f"{base}/__sandbox/stats", timeout=30).json()
    records: dict[str, int] = body["records"]
    return records


def test_every_salesforce_object_pages_to_the_served_count(sandbox: Sandbox, client: ScriptedClient) -> None:
    """Every queryable sObject, all described fields, paged with nextRecordsUrl."""
    served = stats(sandbox, "salesforce")
    objects = client.sf_objects()
    assert set(served) <= set(objects)
    assert served["Lead"] > 0, "the demo world has leads"
    for name in served:
        records = client.sf_page_all(name, client.sf_fields(name))
        assert len(records) == served[name], name
        assert len({r["Id"] for r in records}) == len(records), f"{name}: an id came back twice"


def test_every_hubspot_object_pages_to_the_served_count(sandbox: Sandbox, client: ScriptedClient) -> None:
    """Every CRM object and the owners, paged with paging.next.after."""
    served = stats(sandbox, "hubspot")
    assert served["contacts"] > 0, "the demo world has contacts"
    for name in HUBSPOT_OBJECTS:
        records = client.hs_page_all(name)
        assert len(records) == served[name], name
        assert len({r["id"] for r in records}) == len(records), f"{name}: an id came back twice"
    assert len(client.hs_owners()) == served["owners"]


def test_calls_are_counted_per_endpoint(sandbox: Sandbox, client: ScriptedClient) -> None:
    """The stats endpoint counts what the client sent, per endpoint and method."""
    before = trusting_session(sandbox.info).get(f"{sandbox.info.hubspot}/__sandbox/stats", timeout=30).json()  # type: ignore[union-attr]
    client.hs_page_all("deals")
    after = trusting_session(sandbox.info).get(f"{sandbox.info.hubspot}/__sandbox/stats", timeout=30).json()  # type: ignore[union-attr]
    assert after["total_calls"] - before["total_calls"] == client.calls


def test_reset_with_data_restores_the_generated_world(empty_sandbox: Sandbox) -> None:
    """POST /__sandbox/reset {"data": true} throws away writes; a plain reset keeps data."""
    info = empty_sandbox.info
    assert info is not None
    http = trusting_session(info)
    owners_before = stats(empty_sandbox, "hubspot")["owners"]
    created = http.post(f"{info.hubspot}/crm/v3/objects/contacts", timeout=30,
                        headers={"Authorization": f"Bearer {empty_sandbox.credentials.hs_token}"},
                        json={"properties": {"email": "new.person@example.org"}})
    assert created.status_code == 201
    assert http.post(f"{info.hubspot}/__sandbox/reset", timeout=30).json() == {"reset": True, "data": False}
    assert stats(empty_sandbox, "hubspot")["contacts"] == 1
    assert http.post(f"{info.hubspot}/__sandbox/reset", json={"data": True}, timeout=60).json()["data"] is True
    after = stats(empty_sandbox, "hubspot")
    assert after["contacts"] == 0 and after["owners"] == owners_before
    bad = http.post(f"{info.salesforce}/__sandbox/reset", data="nonsense", timeout=30)
    assert bad.status_code == 400
