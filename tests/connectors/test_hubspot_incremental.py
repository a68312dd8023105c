# ruff: noqa: F811 - the fixtures are imported from hs_support
"""Incremental HubSpot pulls lose and duplicate nothing: changes during a pull, many records
in one millisecond, more than 10,000 changes in one window, archives, merges, back-dated
records, search lag and a clock that steps back. After every step the store is compared
with the sandbox."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Engine

from detente.connectors.base import Page, Position
from detente.pull import pull
from detente.sandbox.server import Sandbox
from detente.sandbox.store import hs_datetime, parse_datetime
from tests.conftest import hs_client
from tests.connectors.hs_support import (  # noqa: F401 - fixtures
    T0,
    Interleaved,
    assert_store_matches,
    connector,
    contacts,
    faults,
    hs,
    hs_server,
    insert,
    stored_rows,
    tasks,
)

LOOKBACK = timedelta(minutes=5)
SINCE = Position(T0, "")


def run(engine: Engine, sb: Sandbox, at: Any, *, full: bool = False, objects: tuple[str, ...] = ("contacts",),
        hook: Any = None, **overrides: Any) -> Any:
    with connector(sb, **overrides) as c:
        target: Any = Interleaved(c, hook) if hook is not None else c
        report = pull(engine, target, now=at, objects=list(objects), full=full, lookback=LOOKBACK)
    assert report.stopped is None
    return report.objects[0]


def searches(sb: Sandbox) -> int:
    calls: int = sb.hs_control.calls.get("POST /crm/v3/objects/{type}/search", 0)
    return calls


def spread(start: Any, n: int, step: timedelta) -> list[Any]:
    return [start + i * step for i in range(n)]


def test_an_incremental_pull_reads_the_changes_and_little_else(store: Engine, hs: Sandbox) -> None:
    ids = insert(hs, "contacts", contacts(400), spread(T0 - timedelta(hours=3), 400, timedelta(seconds=10)))
    run(store, hs, T0, full=True)
    later = T0 + timedelta(minutes=10)
    for rid in ids[::40]:
        hs.world.hs_update("contacts", rid, {"hs_lead_status": "IN_PROGRESS"}, later)
    item = run(store, hs, later + timedelta(minutes=1))
    assert_store_matches(store, hs)
    assert item.updated == 10
    # The cursor was the newest change read before (T0 - 3h + 3990 s); the lookback re-reads 5 minutes.
    assert item.fetched <= 10 + 31


def test_hits_the_store_already_holds_are_not_read_again(store: Engine, hs: Sandbox) -> None:
    """The unchanged records of the lookback overlap cost their search only: no batch read, no
    association read; a changed one among them is read in full."""
    ids = insert(hs, "contacts", contacts(30), spread(T0 - timedelta(minutes=4), 30, timedelta(seconds=5)))
    run(store, hs, T0)
    before = dict(hs.hs_control.calls)
    again = run(store, hs, T0 + timedelta(minutes=1))
    spent = {k: v - before.get(k, 0) for k, v in hs.hs_control.calls.items() if v != before.get(k, 0)}
    assert again.fetched == 0 and spent.get("POST /crm/v3/objects/{type}/search") == 1, spent
    assert not [route for route in spent if "batch/read" in route], spent  # no records, no associations read
    hs.world.hs_update("contacts", ids[3], {"hs_lead_status": "IN_PROGRESS"}, T0 + timedelta(minutes=2))
    changed = run(store, hs, T0 + timedelta(minutes=3))
    assert (changed.fetched, changed.updated) == (1, 1)
    assert_store_matches(store, hs)


def test_records_sharing_one_millisecond_across_pages_are_read_once(store: Engine, hs: Sandbox) -> None:
    at = T0 - timedelta(hours=1)
    insert(hs, "contacts", contacts(50), spread(at - timedelta(minutes=5), 50, timedelta(seconds=1)))
    insert(hs, "contacts", contacts(450, 50), at)
    insert(hs, "contacts", contacts(50, 500), spread(at + timedelta(seconds=1), 50, timedelta(seconds=1)))
    item = run(store, hs, T0, full=True, page_size=100, records_per_page=100)
    assert (item.fetched, item.inserted) == (550, 550)
    assert_store_matches(store, hs)


def read_all(sb: Sandbox, since: Position | None, until: Any) -> tuple[list[str], list[Page]]:
    """Every record id one pull of tasks hands over (straight from the connector: these
    tests are about the walk, and 10,000 rows would mostly time the store)."""
    with connector(sb) as c:
        pages = list(c.pull("tasks", since, until=until))
    return [r.id for p in pages for r in p.records], pages


def assert_positions_truthful(sb: Sandbox, since: Position, pages: list[Page]) -> None:
    """Each page's position claims only what that page, the ones before it and the pulls
    before (everything up to ``since``) hold."""
    rows = sb.world.query("SELECT id, updated_at FROM hs_tasks WHERE archived = 0")
    stamp = {str(r["id"]): parse_datetime(r["updated_at"]) for r in rows}
    read: set[str] = set()
    for page in pages:
        read.update(r.id for r in page.records)
        if page.position is not None:
            p = page.position
            claimed = {i for i, t in stamp.items() if t >= since.modified_at and (
                       t < p.modified_at or (t == p.modified_at and p.last_id and int(i) <= int(p.last_id)))}
            assert claimed <= read


def test_more_than_10000_changes_in_one_window_are_all_read(hs: Sandbox) -> None:
    start = T0 + timedelta(minutes=1)
    insert(hs, "tasks", tasks(20), T0 - timedelta(hours=1))
    ids = insert(hs, "tasks", tasks(10_050, 20), spread(start, 10_050, timedelta(milliseconds=5)))
    got, pages = read_all(hs, SINCE, T0 + timedelta(minutes=5))
    assert sorted(got, key=int) == [str(i) for i in ids]  # each once, none missed
    assert searches(hs) <= 10_050 // 200 + 2
    assert_positions_truthful(hs, SINCE, pages)


def test_more_than_10000_records_in_one_millisecond_are_all_read(hs: Sandbox) -> None:
    at = T0 + timedelta(minutes=1)
    ids = insert(hs, "tasks", tasks(3), [at - timedelta(seconds=1)] * 3)
    ids += insert(hs, "tasks", tasks(10_050, 3), at)
    ids += insert(hs, "tasks", tasks(3, 20_000), [at + timedelta(seconds=1)] * 3)
    got, pages = read_all(hs, SINCE, T0 + timedelta(minutes=5))
    assert sorted(got, key=int) == [str(i) for i in ids]
    # One search finds the crowded millisecond, 51 page through it by id, one reads the rest.
    assert searches(hs) <= 1 + 1 + 10_050 // 200 + 1 + 1
    assert_positions_truthful(hs, SINCE, pages)


def test_records_changed_between_pages_are_neither_lost_nor_skipped(store: Engine, hs: Sandbox) -> None:
    ids = insert(hs, "contacts", contacts(600), spread(T0 - timedelta(hours=2), 600, timedelta(seconds=5)))
    changed_at = T0 + timedelta(minutes=1)
    touched = [ids[50], ids[150], ids[450]]

    def change(object: str, page: int) -> None:
        if page == 1:
            for rid in touched:
                hs.world.hs_update("contacts", rid, {"jobtitle": "Changed"}, changed_at)

    item = run(store, hs, T0, hook=change, page_size=100, records_per_page=100)
    live = {k for k, r in stored_rows(store, "contacts").items() if not r.deleted}
    # The two not yet read moved past the pull's start: read next time, and nobody else skipped.
    assert live == {str(i) for i in ids} - {str(ids[150]), str(ids[450])}
    assert item.fetched == 598
    run(store, hs, T0 + timedelta(minutes=10))
    assert_store_matches(store, hs)


def test_records_changed_during_a_full_pull_are_not_taken_for_deleted(store: Engine, hs: Sandbox) -> None:
    ids = insert(hs, "contacts", contacts(300), spread(T0 - timedelta(hours=2), 300, timedelta(seconds=5)))
    run(store, hs, T0, full=True)

    def change(object: str, page: int) -> None:
        if page == 1:
            hs.world.hs_update("contacts", ids[250], {"jobtitle": "Changed"}, T0 + timedelta(hours=1, minutes=1))

    item = run(store, hs, T0 + timedelta(hours=1), full=True, hook=change, page_size=100, records_per_page=100)
    assert item.deleted == 0
    assert_store_matches(store, hs)


def test_archived_records_become_deletions(store: Engine, hs: Sandbox) -> None:
    ids = insert(hs, "contacts", contacts(30), spread(T0 - timedelta(hours=1), 30, timedelta(seconds=1)))
    old = insert(hs, "contacts", contacts(1, 100), T0 - timedelta(days=30))
    hs.world.hs_archive("contacts", old[0], T0 - timedelta(days=20))  # long gone, never stored
    run(store, hs, T0, full=True)
    for rid in ids[:3]:
        hs.world.hs_archive("contacts", rid, T0 + timedelta(minutes=2))
    item = run(store, hs, T0 + timedelta(minutes=5))
    assert item.deleted == 3
    assert str(old[0]) not in stored_rows(store, "contacts")
    assert_store_matches(store, hs)
    hs.world.hs_archive("contacts", ids[3], T0 + timedelta(minutes=6))
    assert run(store, hs, T0 + timedelta(minutes=7), full=True).deleted == 1
    assert_store_matches(store, hs)


def test_merged_contacts_become_deletions_that_point_at_the_survivor(store: Engine, hs: Sandbox) -> None:
    ids = insert(hs, "contacts", contacts(4), spread(T0 - timedelta(hours=1), 4, timedelta(seconds=1)))
    company = insert(hs, "companies", [{"name": "Acme", "domain": "acme.example"}], T0 - timedelta(hours=1))[0]
    hs.world.hs_associate([("contacts", ids[1], "companies", company, 279)])
    run(store, hs, T0, full=True)
    hs.world.hs_merge("contacts", ids[0], ids[1], T0 + timedelta(minutes=1))
    hs.world.hs_merge("contacts", ids[0], ids[2], T0 + timedelta(minutes=2))
    run(store, hs, T0 + timedelta(minutes=5))
    rows = stored_rows(store, "contacts")
    assert rows[str(ids[1])].merged_into == rows[str(ids[2])].merged_into == str(ids[0])
    assert rows[str(ids[0])].data["associations"]["companies"] == [str(company)]
    # (The company's side moved too, but HubSpot does not bump a record's modification time
    # for association changes: an incremental pull of companies cannot see it.)
    assert_store_matches(store, hs, ("contacts",))


def test_records_created_in_the_past_are_read_when_they_appear(store: Engine, hs: Sandbox) -> None:
    insert(hs, "contacts", contacts(5), T0 - timedelta(hours=1))
    run(store, hs, T0, full=True)
    # An import: created a year ago, last modified when it arrived.
    year_ago = T0 - timedelta(days=365)
    arrived = hs_datetime(T0 + timedelta(minutes=1))
    hs.world.hs_insert("contacts", contacts(3, 10, lastmodifieddate=arrived), T0, created=[year_ago] * 3)
    run(store, hs, T0 + timedelta(minutes=5))
    assert_store_matches(store, hs)


def test_records_that_search_shows_late_are_read_by_the_lookback(store: Engine, hs: Sandbox) -> None:
    insert(hs, "contacts", contacts(5), T0 - timedelta(hours=1))
    run(store, hs, T0, full=True)
    t1 = T0 + timedelta(minutes=10)
    faults(hs, search_lag_seconds=30)
    hs.hs_control.clock.set(t1)
    insert(hs, "contacts", contacts(1, 10), t1 - timedelta(minutes=2))  # visible
    insert(hs, "contacts", contacts(1, 20), t1 - timedelta(seconds=10))  # not searchable yet
    run(store, hs, t1)
    assert len([r for r in stored_rows(store, "contacts").values() if not r.deleted]) == 6
    hs.hs_control.clock.set(t1 + timedelta(minutes=1))
    run(store, hs, t1 + timedelta(minutes=1))
    assert_store_matches(store, hs)


def test_a_clock_that_steps_back_loses_nothing(store: Engine, hs: Sandbox) -> None:
    ids = insert(hs, "contacts", contacts(3), T0 - timedelta(hours=1))
    run(store, hs, T0, full=True)
    client = hs_client(hs)
    api = client.crm.contacts.basic_api
    t1 = T0 + timedelta(minutes=10)
    hs.hs_control.clock.set(t1)
    api.update(str(ids[0]), {"properties": {"jobtitle": "First"}}, _request_timeout=10)
    run(store, hs, t1 + timedelta(seconds=1))
    hs.hs_control.clock.set(t1 - timedelta(seconds=3))
    api.update(str(ids[1]), {"properties": {"jobtitle": "Second"}}, _request_timeout=10)
    api.api_client.rest_client.pool_manager.clear()
    api.api_client.last_response = None
    run(store, hs, t1 + timedelta(seconds=5))
    assert stored_rows(store, "contacts")[str(ids[1])].data["properties"]["jobtitle"] == "Second"
    assert_store_matches(store, hs)


def test_owners_and_pipelines_are_read_whole_on_the_deletions_interval(store: Engine, hs: Sandbox) -> None:
    every = timedelta(minutes=15)

    def owners_read(at: Any) -> int:
        before = hs.hs_control.calls.get("GET /crm/v3/owners/", 0)
        with connector(hs) as c:
            pull(store, c, now=at, objects=["owners", "pipelines"], deletes_every=every)
        return hs.hs_control.calls.get("GET /crm/v3/owners/", 0) - before

    assert owners_read(T0) > 0
    assert owners_read(T0 + timedelta(minutes=5)) == 0
    assert owners_read(T0 + timedelta(minutes=16)) > 0
