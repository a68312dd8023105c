# ruff: noqa: F401, F811 - the fixtures are imported from sf_support
"""The Salesforce connector's full and incremental pulls against the demo sandbox."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from detente.connectors.base import Position, Record
from detente.connectors.salesforce import OBJECTS, SalesforceConnector
from detente.pull import pull
from detente.sandbox.server import Sandbox
from tests.conftest import AS_OF
from tests.connectors.sf_support import (
    _close_connectors,
    assert_store_matches,
    connector,
    sf,
    sf_server,
    world_rows,
)

NOW = AS_OF + timedelta(hours=1)


def test_full_pull_stores_exactly_what_the_sandbox_serves_and_a_repeat_writes_nothing(
    store: Engine, sandbox: Sandbox
) -> None:
    sandbox.sf_control.clock.set(NOW + timedelta(minutes=10))  # getDeleted windows are relative to it
    conn = connector(sandbox, page_size=2000)
    report = pull(store, conn, now=NOW, full=True)
    assert report.stopped is None
    assert [o.object for o in report.objects] == list(OBJECTS)
    for item in report.objects:
        assert item.fetched == len(world_rows(sandbox, item.object)), item.object
        assert item.quarantined == 0
    assert_store_matches(store, sandbox)
    assert conn.missing_fields == {}
    # One login, the record counts, every describe in one composite request, and one page per
    # object (all fit in a 2000-record page).
    assert conn.calls == 3 + len(OBJECTS)
    routes = sandbox.sf_control.calls
    assert routes["POST /services/data/v{version}/composite"] == 1
    assert routes["GET /services/data/v{version}/limits/recordCount"] == 1
    assert routes["GET /services/data/v{version}/sobjects/{sobject}/describe"] == 0
    usage = conn.api_usage
    assert usage is not None and usage.limit == 100_000 and usage.used >= 2 + len(OBJECTS)
    # The describes are cached: an unchanged world costs a query and a getDeleted per object.
    again = pull(store, conn, now=NOW + timedelta(minutes=10))
    assert all(o.inserted == o.updated == o.deleted == 0 for o in again.objects)
    assert conn.calls == 3 + 3 * len(OBJECTS)


def test_records_are_plain_dicts_typed_by_the_describe(sandbox: Sandbox) -> None:
    conn = connector(sandbox, page_size=2000)
    [page] = list(conn.pull("Opportunity", None, until=NOW))
    record = page.records[0]
    assert type(record) is Record and type(record.data) is dict and "attributes" not in record.data
    assert isinstance(record.data["IsWon"], bool)
    assert record.data["Amount"] is None or isinstance(record.data["Amount"], float)
    assert record.modified_at.tzinfo is not None
    assert record.data["SystemModstamp"].endswith("+0000")
    ids = [(r.modified_at, r.id) for r in page.records]
    assert ids == sorted(ids)
    assert page.position == Position(*max(ids))


def test_expected_fields_the_user_cannot_see_are_reported_by_name(sf: Sandbox) -> None:
    conn = SalesforceConnector(
        connector(sf).settings, clock=sf.sf_control.clock.now, objects=("Lead",),
        expected={"Lead": ("Status", "Lead_Score__c", "Budget_Approved__c")},
    )
    assert conn.describe_all() == {"Lead": ["Budget_Approved__c"]}
    assert conn.missing_fields == {"Lead": ["Budget_Approved__c"]}
    assert list(conn.pull("Lead", None, until=AS_OF)) and "Budget_Approved__c" not in conn.schema("Lead").names
