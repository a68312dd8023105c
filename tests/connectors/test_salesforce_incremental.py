# ruff: noqa: F401, F811 - the fixtures are imported from sf_support
"""Incremental Salesforce pulls lose and duplicate nothing: changes during a pull, ties on
SystemModstamp, deletes and purges, conversions, back-dated records, clocks that step back."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine
from structlog.testing import capture_logs

from detente.connectors.base import CallBudget, Position
from detente.pull import pull
from detente.sandbox.server import Sandbox
from detente.sandbox.store import sf_datetime
from tests.connectors.sf_support import (
    ACCOUNT,
    CONTACT,
    LEAD,
    T0,
    Interleaved,
    _close_connectors,
    assert_store_matches,
    connector,
    cursor,
    insert,
    leads,
    purge,
    set_clock,
    sf,
    sf_server,
    stored_rows,
)

LEADS = ("Lead",)


def test_records_changed_between_pages_are_not_lost(store: Engine, sf: Sandbox) -> None:
    ids = insert(sf, LEAD, leads(300), T0 - timedelta(hours=2))
    ids += insert(sf, LEAD, leads(300, 300), T0 - timedelta(hours=1))
    later = T0 + timedelta(minutes=1)

    def change(object: str, pages: int) -> None:
        if pages == 1:  # after the first page: touch records on pages read and not yet read
            set_clock(sf, later)
            for rid in (ids[0], ids[250], ids[450], ids[599]):
                sf.world.sf_update(LEAD, rid, {"Status": "Working - Contacted"}, later)

    conn = Interleaved(connector(sf, objects=LEADS), change)
    pull(store, conn, now=T0, full=True)
    assert conn.pages == 3
    # The cursor stays at or before the pull's start, so the changes are read next time.
    position = cursor(store, "Lead")
    assert position is not None and position.modified_at <= T0
    pull(store, connector(sf, objects=LEADS), now=later + timedelta(seconds=1))
    assert_store_matches(store, sf, LEADS)
    assert stored_rows(store, "Lead")[ids[599]][1]["Status"] == "Working - Contacted"


def test_a_stop_after_a_page_whose_last_record_changed_resumes_without_loss(store: Engine, sf: Sandbox) -> None:
    ids = insert(sf, LEAD, leads(200), T0 - timedelta(hours=3))
    ids += insert(sf, LEAD, leads(200, 200), T0 - timedelta(hours=2))
    ids += insert(sf, LEAD, leads(200, 400), T0 - timedelta(hours=1))

    def change(object: str, pages: int) -> None:
        if pages == 1:  # the last record of the second page changes before that page is read
            sf.world.sf_update(LEAD, ids[399], {"Status": "Working - Contacted"}, T0 + timedelta(seconds=30))

    # Budget: login, record counts, describe and two pages; the third page's call is refused.
    conn = Interleaved(connector(sf, objects=LEADS, budget=CallBudget(per_run=5)), change)
    report = pull(store, conn, now=T0, full=True, lookback=timedelta(0))
    assert report.stopped and report.objects[0].fetched == 400
    # Not the changed record's new stamp: the third page's records come before it.
    assert cursor(store, "Lead") == Position(T0 - timedelta(hours=2), ids[398])
    pull(store, connector(sf, objects=LEADS), now=T0 + timedelta(minutes=1), lookback=timedelta(0))
    assert_store_matches(store, sf, LEADS)


def test_more_than_a_page_of_ties_on_one_stamp_resume_exactly(store: Engine, sf: Sandbox) -> None:
    ids = sorted(insert(sf, LEAD, leads(450), T0 - timedelta(hours=1)))
    # Budget: login, record counts, describe and one page.
    report = pull(store, connector(sf, objects=LEADS, budget=CallBudget(per_run=4)), now=T0, lookback=timedelta(0))
    assert report.stopped and report.objects[0].fetched == 200
    assert cursor(store, "Lead") == Position(T0 - timedelta(hours=1), ids[199])
    resumed = pull(store, connector(sf, objects=LEADS), now=T0, lookback=timedelta(0))
    assert resumed.objects[0].fetched == 250 and resumed.objects[0].inserted == 250
    assert_store_matches(store, sf, LEADS)


def test_soft_deletes_come_from_queryall_and_purged_ones_from_getdeleted(store: Engine, sf: Sandbox) -> None:
    a, b, c = insert(sf, LEAD, leads(3), T0 - timedelta(minutes=30))
    pull(store, connector(sf, objects=LEADS), now=T0)
    t1 = T0 + timedelta(minutes=10)
    set_clock(sf, t1)
    sf.world.sf_delete(LEAD, a, t1)  # in the recycle bin: queryAll returns it with IsDeleted
    sf.world.sf_delete(LEAD, b, t1)
    purge(sf, LEAD, b)  # gone from queryAll; only getDeleted knows
    set_clock(sf, t1 + timedelta(minutes=2))  # getDeleted covers whole minutes up to its clock
    report = pull(store, connector(sf, objects=LEADS), now=t1 + timedelta(minutes=2))
    assert report.objects[0].deleted == 2
    stored = stored_rows(store, "Lead")
    assert stored[a][0] and stored[b][0] and not stored[c][0]
    assert stored[b][1]["LastName"] == "Lead1"  # the last known values are kept
    assert_store_matches(store, sf, LEADS)


def test_deletions_are_asked_for_on_their_own_interval_and_none_is_lost(store: Engine, sf: Sandbox) -> None:
    """Between two checks a pull reads changes only (queryAll still shows soft deletes); the
    next check reads the delete log from the last check on, so a purge in between is found."""
    a, b, _ = insert(sf, LEAD, leads(3), T0 - timedelta(minutes=30))
    every = timedelta(minutes=15)
    pull(store, connector(sf, objects=LEADS), now=T0, deletes_every=every)
    t1 = T0 + timedelta(minutes=5)
    set_clock(sf, t1)
    sf.world.sf_delete(LEAD, a, t1)
    sf.world.sf_delete(LEAD, b, t1)
    purge(sf, LEAD, b)  # only getDeleted knows
    set_clock(sf, t1 + timedelta(minutes=2))
    soon = pull(store, connector(sf, objects=LEADS), now=t1 + timedelta(minutes=2), deletes_every=every)
    assert soon.objects[0].deleted == 1  # the soft delete, from queryAll; the delete log not asked
    assert not stored_rows(store, "Lead")[b][0] and deletes_checked(store) == T0
    later = T0 + timedelta(minutes=16)
    set_clock(sf, later)
    due = pull(store, connector(sf, objects=LEADS), now=later, deletes_every=every)
    assert due.objects[0].deleted >= 1 and stored_rows(store, "Lead")[b][0]  # the purge, from getDeleted
    assert deletes_checked(store) == later
    assert_store_matches(store, sf, LEADS)


def deletes_checked(store: Engine) -> object:
    from sqlalchemy import select

    from detente.store.raw import CURSORS

    with store.connect() as conn:
        return conn.execute(select(CURSORS.c.deletes_checked_at).where(
            CURSORS.c.system == "salesforce", CURSORS.c.object == "Lead")).scalar()


def test_a_converted_lead_arrives_with_its_contact(store: Engine, sf: Sandbox) -> None:
    [lead] = insert(sf, LEAD, leads(1), T0 - timedelta(minutes=5))
    objects = ("Account", "Lead", "Contact")
    pull(store, connector(sf, objects=objects), now=T0)
    t1 = T0 + timedelta(minutes=3)
    set_clock(sf, t1)
    [account] = insert(sf, ACCOUNT, [{"Name": "Co0"}])
    [contact] = insert(sf, CONTACT, [{"LastName": "Lead0", "Email": "l0@example.com", "AccountId": account}])
    sf.world.sf_update(LEAD, lead, {
        "IsConverted": True, "ConvertedDate": t1.date().isoformat(), "ConvertedContactId": contact,
        "ConvertedAccountId": account, "Status": "Closed - Converted",
    }, t1)
    pull(store, connector(sf, objects=objects), now=t1 + timedelta(seconds=1))
    data = stored_rows(store, "Lead")[lead][1]
    assert data["IsConverted"] is True and data["ConvertedContactId"] == contact
    assert data["ConvertedOpportunityId"] is None
    assert contact in stored_rows(store, "Contact")
    assert_store_matches(store, sf, objects)


def test_records_created_with_back_dated_audit_fields_are_pulled(store: Engine, sf: Sandbox) -> None:
    insert(sf, LEAD, leads(2), T0 - timedelta(minutes=5))
    pull(store, connector(sf, objects=LEADS), now=T0)
    t1 = T0 + timedelta(hours=1)
    set_clock(sf, t1)
    back = sf_datetime(T0 - timedelta(days=400))
    conn = connector(sf, objects=LEADS)
    sf_client = conn.connect()
    created = sf_client.Lead.create({"LastName": "Old", "Company": "Past Inc", "CreatedDate": back,
                                     "LastModifiedDate": back})
    pull(store, conn, now=t1 + timedelta(seconds=1))
    data = stored_rows(store, "Lead")[created["id"]][1]
    assert data["CreatedDate"] == back and data["SystemModstamp"] == sf_datetime(t1)
    assert_store_matches(store, sf, LEADS)


def test_a_sandbox_clock_stepping_back_between_pulls_loses_nothing(store: Engine, sf: Sandbox) -> None:
    ids = insert(sf, LEAD, leads(5), T0)
    pull(store, connector(sf, objects=LEADS), now=T0 + timedelta(seconds=1))
    earlier = T0 - timedelta(seconds=4)  # the CRM's clock steps back a few seconds
    set_clock(sf, earlier)
    sf.world.sf_update(LEAD, ids[2], {"Status": "Working - Contacted"}, earlier)
    [new] = insert(sf, LEAD, leads(1, 5), earlier)
    report = pull(store, connector(sf, objects=LEADS), now=T0 + timedelta(seconds=2))
    assert report.objects[0].inserted == 1 and report.objects[0].updated == 1
    assert new in stored_rows(store, "Lead")
    assert_store_matches(store, sf, LEADS)


def test_a_delete_log_that_no_longer_reaches_the_cursor_triggers_a_full_pull(store: Engine, sf: Sandbox) -> None:
    a, b = insert(sf, LEAD, leads(2), T0 - timedelta(minutes=5))
    pull(store, connector(sf, objects=LEADS), now=T0)
    later = T0 + timedelta(days=20)  # past getDeleted's 15 days
    set_clock(sf, later)
    sf.world.sf_delete(LEAD, a, T0 + timedelta(days=1))
    purge(sf, LEAD, a)
    with sf.world.transaction() as c:
        c.execute("DELETE FROM sf_deleted")  # and the delete log has been purged as well
    report = pull(store, connector(sf, objects=LEADS), now=later)
    assert report.objects[0].deleted == 1
    assert stored_rows(store, "Lead")[a][0] and not stored_rows(store, "Lead")[b][0]
    assert_store_matches(store, sf, LEADS)


def test_an_expired_query_locator_restarts_the_query_from_the_last_position(store: Engine, sf: Sandbox) -> None:
    insert(sf, LEAD, leads(300), T0 - timedelta(hours=2))
    insert(sf, LEAD, leads(300, 300), T0 - timedelta(hours=1))
    other = connector(sf, objects=LEADS).connect()

    def crowd_out(object: str, pages: int) -> None:
        if pages == 1:  # the sandbox keeps 100 open queries; more push the pull's locator out
            for _ in range(101):
                other.query("SELECT Id FROM Lead", headers={"Sforce-Query-Options": "batchSize=200"})

    conn = connector(sf, objects=LEADS)
    with capture_logs() as logs:
        report = pull(store, Interleaved(conn, crowd_out), now=T0, full=True)
    assert [e for e in logs if e["event"] == "salesforce.query_restarted"]
    assert report.stopped is None and report.objects[0].inserted == 600
    assert_store_matches(store, sf, LEADS)
