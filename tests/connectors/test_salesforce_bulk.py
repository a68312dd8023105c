# ruff: noqa: F401, F811 - the fixtures are imported from sf_support
"""Large reads switch to Bulk API 2.0 and store exactly what the REST path stores."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from detente.connectors import salesforce
from detente.connectors.base import CallBudget, Position
from detente.pull import pull
from detente.sandbox.control import FaultProfile
from detente.sandbox.server import Sandbox
from detente.sandbox.store import sf_datetime
from detente.store.engine import create_schema, make_engine
from tests.connectors.sf_support import (
    LEAD,
    OPPORTUNITY,
    T0,
    _close_connectors,
    assert_store_matches,
    connector,
    cursor,
    insert,
    leads,
    sf,
    sf_server,
    stored_rows,
)

OBJECTS = ("Lead", "Opportunity")


def _world(sf: Sandbox) -> list[str]:
    """Leads over several stamps with every kind of value, a few deleted; some opportunities."""
    rows = leads(650)
    for i, row in enumerate(rows):
        row["NumberOfEmployees"] = i * 3 if i % 4 else None
        row["Title"] = 'VP, "Growth"\nEMEA' if i % 7 == 0 else ""
        row["Detente_SLA_Due__c"] = sf_datetime(T0 + timedelta(minutes=i)) if i % 5 == 0 else None
        row["Detente_Reason__c"] = "tabs\tand\rreturns, control \x07 chars" if i % 9 == 0 else None
    ids = insert(sf, LEAD, rows[:300], T0 - timedelta(hours=3))
    ids += insert(sf, LEAD, rows[300:], T0 - timedelta(hours=2))
    for rid in ids[::50]:
        sf.world.sf_delete(LEAD, rid, T0 - timedelta(hours=1))
    insert(sf, OPPORTUNITY, [
        {"Name": f"Deal {i}", "StageName": "Closed Won" if i % 2 else "Prospecting", "Amount": 1000.5 * i,
         "Probability": 10.0, "CloseDate": "2026-12-01"} for i in range(250)
    ], T0 - timedelta(hours=1))
    return ids


def test_the_bulk_path_stores_what_the_rest_path_stores(store: Engine, sf: Sandbox, tmp_path: Path) -> None:
    _world(sf)
    rest_store = make_engine(f"sqlite:///{tmp_path / 'rest.db'}")
    create_schema(rest_store)
    pull(rest_store, connector(sf, objects=OBJECTS, bulk_threshold=100_000), now=T0, full=True)
    bulk = connector(sf, objects=OBJECTS, bulk_threshold=0, bulk_max_records=150)
    report = pull(store, bulk, now=T0, full=True)
    assert report.objects[0].fetched == 650
    jobs = sum(n for k, n in sf.sf_control.calls.items() if k == "POST /services/data/v{version}/jobs/query")
    assert jobs == 2
    for name in OBJECTS:
        assert stored_rows(store, name) == stored_rows(rest_store, name), name
    assert_store_matches(store, sf, OBJECTS)
    rest_store.dispose()


def test_a_whole_read_of_a_large_object_goes_straight_to_bulk(sf: Sandbox) -> None:
    ids = _world(sf)
    conn = connector(sf, objects=OBJECTS, bulk_threshold=100, bulk_max_records=150)
    pages = list(conn.pull("Lead", None, until=T0))
    # 650 records in chunks of 150, no REST page first: the record counts said it is large.
    assert [len(p.records) for p in pages] == [150, 150, 150, 150, 50]
    assert [p.position for p in pages[:-1]] == [None] * 4  # bulk results come in no order
    assert pages[-1].position == Position(T0 - timedelta(hours=1), max(ids[::50]))
    assert {r.id for p in pages for r in p.records} == set(ids)
    routes = sf.sf_control.calls
    assert routes["GET /services/data/v{version}/query"] + routes["GET /services/data/v{version}/queryAll"] == 0
    # login, record counts, the composite describe, job creation, one poll, five chunks
    assert sum(p.calls for p in pages) == conn.calls == 3 + 2 + 5


def test_an_object_without_a_record_count_is_counted_in_the_composite_request(sf: Sandbox) -> None:
    _world(sf)
    conn = connector(sf, objects=OBJECTS, bulk_threshold=100)
    assert "LeadHistory" not in conn.expected_sizes(T0)  # not one of the objects asked about
    conn = connector(sf, objects=("Lead", "LeadHistory"), bulk_threshold=100)
    sizes = conn.expected_sizes(T0)
    assert sizes["Lead"] == 637  # recordCount: the recycle bin left out
    assert sizes["LeadHistory"] == len(sf.world.tuples('SELECT "Id" FROM "sf_LeadHistory"'))  # COUNT() in composite
    assert conn.calls == 3  # login, recordCount, one composite request (describes and the count)


def test_without_record_counts_a_large_read_starts_on_rest_and_switches(sf: Sandbox) -> None:
    """An org whose integration user may not read the record counts (they need "View Setup
    and Configuration") and that refuses the Composite resource: describes one by one, a REST
    page first, then Bulk API 2.0 for the rest."""
    ids = _world(sf)
    composite, counts = "POST /services/data/v{version}/composite", "GET /services/data/v{version}/limits/recordCount"
    sf.sf_control.set_faults(FaultProfile(refused=[composite, counts]))
    conn = connector(sf, objects=OBJECTS, bulk_threshold=0, bulk_max_records=150)
    pages = list(conn.pull("Lead", None, until=T0))
    list(conn.pull("Opportunity", None, until=T0))
    routes = sf.sf_control.calls
    assert routes[composite] == routes[counts] == 1  # asked once, then not again
    assert routes["GET /services/data/v{version}/sobjects/{sobject}/describe"] == 2
    assert len(pages) == 1 + 3  # a REST page of 200, then 450 records in chunks of 150
    assert pages[0].position == Position(T0 - timedelta(hours=3), sorted(set(ids[:300]) - set(ids[::50]))[199])
    assert [p.position for p in pages[1:-1]] == [None, None]
    assert pages[-1].position == Position(T0 - timedelta(hours=1), max(ids[::50]))
    assert sum(len(p.records) for p in pages) == 650


def test_an_incremental_read_with_many_changes_starts_on_rest_and_switches(sf: Sandbox) -> None:
    ids = _world(sf)
    since = Position(T0 - timedelta(hours=4), "")
    conn = connector(sf, objects=OBJECTS, bulk_threshold=0, bulk_max_records=150)
    pages = list(conn.pull("Lead", since, until=T0))
    assert len(pages) == 1 + 3  # a REST page of 200, then 450 records in chunks of 150
    assert pages[0].position == Position(T0 - timedelta(hours=3), sorted(set(ids[:300]) - set(ids[::50]))[199])
    assert [p.position for p in pages[1:-1]] == [None, None]
    assert pages[-1].position == Position(T0 - timedelta(hours=1), max(ids[::50]))
    assert sum(len(p.records) for p in pages) == 650
    assert sf.sf_control.calls["GET /services/data/v{version}/limits/recordCount"] == 0


def test_a_stop_in_the_middle_of_a_bulk_job_resumes_without_loss(store: Engine, sf: Sandbox) -> None:
    ids = _world(sf)
    # login, record counts, the composite describe, job creation, one poll, the first result
    # chunk: then none left. Bulk chunks carry no position until the last, so the cursor stays.
    conn = connector(sf, objects=("Lead",), bulk_threshold=0, bulk_max_records=150, budget=CallBudget(per_run=6))
    report = pull(store, conn, now=T0, lookback=timedelta(0))
    assert report.stopped and report.objects[0].fetched == 150
    assert cursor(store, "Lead") is None
    assert len(stored_rows(store, "Lead")) == 150  # the chunk read is committed
    again = pull(store, connector(sf, objects=("Lead",), bulk_threshold=0, bulk_max_records=150), now=T0,
                 lookback=timedelta(0))
    assert again.objects[0].fetched == 650
    assert cursor(store, "Lead") == Position(T0 - timedelta(hours=1), max(ids[::50]))
    assert_store_matches(store, sf, ("Lead",))


def test_large_bulk_chunks_are_split_into_bounded_pages(sf: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _world(sf)
    monkeypatch.setattr(salesforce, "BULK_PAGE_RECORDS", 100)
    conn = connector(sf, objects=OBJECTS, bulk_threshold=0, bulk_max_records=150)
    pages = list(conn.pull("Lead", None, until=T0))
    assert [len(p.records) for p in pages] == [100, 50] * 4 + [50]
    assert [p.position is not None for p in pages] == [False] * 8 + [True]
    assert {r.id for p in pages for r in p.records} == set(ids)
