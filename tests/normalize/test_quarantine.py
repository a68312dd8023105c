"""Records whose fields cannot be read are quarantined with the reason; the rest goes on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, text

from detente.connectors.base import Page, Record
from detente.normalize.run import normalize
from detente.store.raw import commit_page

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
SF_TIME = "2026-10-01T10:00:00.000+0000"


def sf(object_name: str, rid: str, **data: Any) -> Record:
    return Record(object_name, rid, T0, {"Id": rid, "CreatedDate": SF_TIME, "LastModifiedDate": SF_TIME, **data})


def hs(object_name: str, rid: str, props: dict[str, Any], **extra: Any) -> Record:
    return Record(object_name, rid, T0, {"id": rid, "properties": props, "createdAt": "2026-10-01T10:00:00Z",
                                         "updatedAt": "2026-10-01T10:00:00Z", **extra})


def put(engine: Engine, system: str, *records: Record) -> None:
    by_object: dict[str, list[Record]] = {}
    for r in records:
        by_object.setdefault(r.object, []).append(r)
    for object_name, found in by_object.items():
        commit_page(engine, system, Page(object_name, found), T0)


def quarantined(engine: Engine) -> dict[str, tuple[str, Any]]:
    with engine.connect() as conn:
        return {r.record_id: (r.reason, r.resolved_at) for r in conn.execute(
            text("SELECT * FROM quarantine WHERE stage = 'normalize'"))}


LEAD_GOOD = "00Q000000000001AAA"
LEAD_BAD_DATE = "00Q000000000002AAA"
LEAD_BAD_SCORE = "00Q000000000003AAA"


def _world(store: Engine) -> None:
    put(store, "salesforce",
        sf("Lead", LEAD_GOOD, Email="ann@acme.com", Status="Open - Not Contacted", Lead_Score__c=60.0),
        sf("Lead", LEAD_BAD_DATE, Email="bob@acme.com", CreatedDate="last tuesday"),
        sf("Lead", LEAD_BAD_SCORE, Email="cy@acme.com", Lead_Score__c="high"),
        sf("Task", "00T000000000001AAA", WhoId="not an id", Subject="Call"),
        sf("Task", "00T000000000002AAA", WhoId=LEAD_GOOD, Subject="Call", Status="Completed", IsClosed=True,
           CompletedDateTime=SF_TIME),
        sf("LeadHistory", "017000000000001AAA", LeadId=LEAD_GOOD, Field="Status", OldValue=None,
           NewValue="Open - Not Contacted", CreatedDate=None),
        sf("Opportunity", "006000000000001AAA", Name="Big", StageName="Prospecting", Amount="lots"))
    put(store, "hubspot",
        hs("contacts", "101", {"email": "ann@acme.com", "lifecyclestage": "lead", "salesforceleadid": LEAD_GOOD}),
        hs("calls", "201", {"hs_timestamp": "soon", "hs_call_title": "Intro"}, associations={"contacts": ["101"]}),
        hs("contacts", "102", {"email": "dee@acme.com"},
           history={"lifecyclestage": [{"value": "lead", "timestamp": "yesterday"}]}))


def test_unreadable_records_are_quarantined_with_the_field_and_what_was_wrong(store: Engine) -> None:
    _world(store)
    normalize(store, now=T0)
    found = quarantined(store)
    assert set(found) == {LEAD_BAD_DATE, LEAD_BAD_SCORE, "00T000000000001AAA", "017000000000001AAA",
                          "006000000000001AAA", "201", "102"}
    assert found[LEAD_BAD_DATE][0] == "CreatedDate: expected a timestamp, got a string of 12 characters"
    assert found[LEAD_BAD_SCORE][0] == "Lead_Score__c: expected a number, got a string of 4 characters"
    assert found["00T000000000001AAA"][0] == "WhoId: expected a Salesforce id, got a string of 9 characters"
    assert found["201"][0] == "hs_timestamp: expected a timestamp, got a string of 4 characters"
    assert found["102"][0] == "history of lifecyclestage: timestamp: expected a timestamp, got a string of 9 characters"
    assert found["017000000000001AAA"][0] == "LeadId and CreatedDate: a history row needs both"
    assert found["006000000000001AAA"][0].startswith("Amount: expected a number")
    assert all(resolved is None for _, resolved in found.values())


def test_the_rest_is_normalized_and_nothing_stays_dirty(store: Engine) -> None:
    _world(store)
    normalize(store, now=T0)
    with store.connect() as conn:
        people = conn.execute(text("SELECT * FROM people")).all()
        activities = conn.execute(text("SELECT record_id, person_id FROM activities")).all()
        dirty = conn.execute(text("SELECT count(*) FROM raw_records WHERE dirty")).scalar()
    assert [(p.salesforce_lead_id, p.hubspot_contact_id, p.activity_count) for p in people] == [
        (LEAD_GOOD, "101", 1)]
    assert [a.record_id for a in activities] == ["00T000000000002AAA"]
    assert dirty == 0


def test_a_record_fixed_later_leaves_quarantine(store: Engine) -> None:
    _world(store)
    normalize(store, now=T0)
    later = T0 + timedelta(hours=1)
    commit_page(store, "salesforce", Page("Lead", [Record("Lead", LEAD_BAD_SCORE, later, {
        "Id": LEAD_BAD_SCORE, "CreatedDate": SF_TIME, "Email": "cy@acme.com", "Lead_Score__c": 70.0})]), later)
    normalize(store, now=later)
    assert quarantined(store)[LEAD_BAD_SCORE][1] is not None
    with store.connect() as conn:
        score = conn.execute(text("SELECT score FROM people WHERE salesforce_lead_id = :l"),
                             {"l": LEAD_BAD_SCORE}).scalar()
    assert score == 70.0


def test_running_again_quarantines_nothing_twice(store: Engine) -> None:
    _world(store)
    normalize(store, now=T0)
    normalize(store, now=T0, full=True)
    with store.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM quarantine")).scalar() == 7
