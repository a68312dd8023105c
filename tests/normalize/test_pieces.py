"""The pure parts of the normalizer, one behaviour each: copies, counts, transitions, owners,
person fields and value reading."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from detente.normalize import values as v
from detente.normalize.activities import Stored, counts, find_copies
from detente.normalize.batches import Key, RawRow
from detente.normalize.identity import Cluster
from detente.normalize.links import Link
from detente.normalize.mapping import DEFAULT, FieldMapping, mappings
from detente.normalize.owners import CrmOwner, merge_owners
from detente.normalize.profile import Context, Membership, person_row, read_view
from detente.normalize.transitions import hubspot_history, observed, salesforce_history, stage_dates

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def act(i: int, system: str, object_name: str, *, owner: int | None = 1, subject: str = "Intro call",
        at: datetime = T0, completed: bool = True, deleted: bool = False, key: str | None = None) -> Stored:
    return Stored(i, system, object_name, owner, subject, at, completed, deleted, key)


def raw(system: str, object_name: str, rid: str, data: dict[str, Any], *, deleted: bool = False) -> RawRow:
    return RawRow(system, object_name, rid, T0, deleted, None, data, T0)


# -- activities -----------------------------------------------------------------------------


def test_a_salesforce_task_with_the_same_owner_subject_and_time_is_a_copy() -> None:
    items = [act(1, "hubspot", "calls"), act(2, "salesforce", "Task", subject=" intro  CALL"),
             act(3, "salesforce", "Task", owner=2), act(4, "salesforce", "Task", at=T0 + timedelta(hours=1))]
    assert find_copies(items) == {2: 1}


def test_each_engagement_has_at_most_one_copy_the_closest_in_time() -> None:
    items = [act(1, "hubspot", "emails"), act(2, "salesforce", "Task", at=T0 + timedelta(minutes=4)),
             act(3, "salesforce", "Task", at=T0 + timedelta(minutes=1))]
    assert find_copies(items) == {3: 1}


def test_events_and_detente_tasks_are_never_copies() -> None:
    items = [act(1, "hubspot", "meetings"), act(2, "salesforce", "Event"), act(3, "salesforce", "Task", key="k")]
    assert find_copies(items) == {}


def test_counts_skip_copies_open_tasks_deleted_and_detente_tasks() -> None:
    items = [act(1, "hubspot", "calls", at=T0), act(2, "salesforce", "Task", at=T0 + timedelta(days=2)),
             act(3, "salesforce", "Task", completed=False), act(4, "hubspot", "emails", deleted=True),
             act(5, "salesforce", "Task", key="detente:sla", at=T0 + timedelta(days=9)),
             act(6, "salesforce", "Event", at=T0 - timedelta(days=1))]
    assert counts(items, {2: 1}) == (2, T0 - timedelta(days=1), T0)


# -- transitions ----------------------------------------------------------------------------


def test_hubspot_history_becomes_transitions_oldest_first_without_repeats() -> None:
    row = raw("hubspot", "contacts", "7", {"properties": {}, "history": {"lifecyclestage": [
        {"value": "marketingqualifiedlead", "timestamp": "2026-03-02T15:00:00Z"},
        {"value": "lead", "timestamp": "2026-03-01T15:00:00Z"},
        {"value": "lead", "timestamp": "2026-03-01T16:00:00Z"}]}})
    assert [(c.from_value, c.to_value, c.at.day) for c in hubspot_history(row)] == [
        (None, "lead", 1), ("lead", "marketingqualifiedlead", 2)]


def test_stage_dates_fill_in_stages_the_history_does_not_show() -> None:
    row = raw("hubspot", "contacts", "7", {"properties": {
        "hs_lifecyclestage_lead_date": "2026-03-01T15:00:00Z", "hs_lifecyclestage_customer_date": "1772467200000",
        "hs_lifecyclestage_other_date": None}, "history": {"lifecyclestage": [
            {"value": "lead", "timestamp": "2026-03-01T15:00:00Z"}]}})
    found = stage_dates(row, hubspot_history(row))
    assert [(c.to_value, c.source, c.at) for c in found] == [
        ("customer", "stage_date", datetime(2026, 3, 2, 16, 0, tzinfo=UTC))]


def test_the_row_of_names_beside_an_owner_history_row_is_skipped() -> None:
    base = {"LeadId": "00Q000000000001AAA", "Field": "Owner", "CreatedDate": "2026-03-02T15:00:00.000+0000"}
    ids = raw("salesforce", "LeadHistory", "1", {**base, "OldValue": "005000000000001AAA",
                                                 "NewValue": "005000000000002AAA"})
    names = raw("salesforce", "LeadHistory", "2", {**base, "OldValue": "Ann Lee", "NewValue": "Bo Chen"})
    assert [(c.field, c.to_value) for c in salesforce_history(ids)] == [("OwnerId", "005000000000002AAA")]
    assert salesforce_history(names) == []


def test_a_change_no_history_explains_is_observed_at_the_modification_time() -> None:
    key = Key("salesforce", "Lead", "00Q000000000001AAA")
    before = Link(key, tracked={"Status": "Open", "OwnerId": "005A"}, seen_at=T0)
    after = Link(key, tracked={"Status": "Working", "OwnerId": "005B"}, seen_at=T0 + timedelta(days=1))
    history = [c for c in salesforce_history(raw("salesforce", "LeadHistory", "1", {
        "LeadId": key.record_id, "Field": "Status", "OldValue": "Open", "NewValue": "Working",
        "CreatedDate": "2026-03-02T18:00:00.000+0000"}))]
    found = observed(before, after, history)
    assert [(c.field, c.from_value, c.to_value, c.at, c.source) for c in found] == [
        ("OwnerId", "005A", "005B", T0 + timedelta(days=1), "observed")]
    assert observed(None, after, []) == []


# -- owners ---------------------------------------------------------------------------------


def test_owners_merge_by_email_and_keep_their_ids() -> None:
    found = [CrmOwner("salesforce", "005A", "ann@x.com", "Ann Lee", "Sales", True),
             CrmOwner("hubspot", "11", "ann@x.com", "Ann L", "Marketing", False),
             CrmOwner("hubspot", "12", "bo@x.com", "Bo Chen", "Sales", True)]
    existing = [{"id": 4, "email": "old@x.com", "salesforce_user_id": "005A", "hubspot_owner_id": None}]
    rows = merge_owners(found, existing)
    assert rows == [
        {"id": 4, "email": "ann@x.com", "name": "Ann Lee", "team": "Sales", "salesforce_user_id": "005A",
         "hubspot_owner_id": "11", "active": False},
        {"id": None, "email": "bo@x.com", "name": "Bo Chen", "team": "Sales", "salesforce_user_id": None,
         "hubspot_owner_id": "12", "active": True},
    ]


# -- person fields --------------------------------------------------------------------------


def test_person_fields_follow_the_documented_precedence() -> None:
    lead = raw("salesforce", "Lead", "00Q000000000001AAA", {
        "Email": "Ann@Acme.com", "FirstName": "Ann", "Company": "Acme", "Status": "Working - Contacted",
        "Lead_Score__c": 12.0, "LeadSource": "Web", "Channel__c": "Organic", "OwnerId": "005000000000001AAA",
        "CreatedDate": "2026-01-05T10:00:00.000+0000"})
    hs = raw("hubspot", "contacts", "9", {"properties": {
        "email": "ann@other.com", "firstname": "Annie", "hubspotscore": "64", "channel": "Paid",
        "lifecyclestage": "salesqualifiedlead", "campaign": "Spring Webinar", "hubspot_owner_id": "11",
        "createdate": "2026-01-01T10:00:00Z", "lastmodifieddate": "2026-02-01T10:00:00Z"}})
    maps = mappings([FieldMapping("industry_segment", "text", "Lead.Segment__c", "segment")])
    views = {r.key: read_view(r, maps) for r in (lead, hs)}
    cluster = Cluster(dict.fromkeys(views, "self"), lead="00Q000000000001AAA", hubspot="9")
    ctx = Context({"005000000000001AAA": 1}, {"11": 2}, {"spring webinar": 30}, maps)
    row = person_row(cluster, views, [Membership(31, T0, "00v1")], ctx)
    assert (row["email"], row["email_domain"], row["first_name"], row["company"]) == (
        "ann@acme.com", "acme.com", "Ann", "Acme")
    assert (row["score"], row["channel"], row["source"], row["campaign_id"]) == (64.0, "Paid", "Web", 30)
    assert (row["salesforce_status"], row["hubspot_lifecyclestage"]) == ("Working - Contacted", "salesqualifiedlead")
    assert (row["salesforce_owner_id"], row["hubspot_owner_id"]) == (1, 2)
    assert row["created_at"] == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert row["attributes"] == {"industry_segment": None}


def test_campaign_membership_is_the_fallback_and_the_earliest_wins() -> None:
    lead = raw("salesforce", "Lead", "00QL", {"Email": "a@b.com"})
    views = {lead.key: read_view(lead, DEFAULT)}
    members = [Membership(5, T0, "00v2"), Membership(4, T0 - timedelta(days=3), "00v1")]
    row = person_row(Cluster(dict.fromkeys(views, "self"), lead="00QL"), views, members, Context(maps=DEFAULT))
    assert row["campaign_id"] == 4


def test_a_mapped_field_reads_the_contact_twin_of_a_lead_field() -> None:
    m = FieldMapping("country", "text", "Lead.Country", "country")
    assert (m.salesforce_field("Lead"), m.salesforce_field("Contact")) == ("Country", "MailingCountry")
    assert FieldMapping("x", "text", "Lead.Company").salesforce_field("Contact") is None
    assert FieldMapping("x", "number", "Lead.Score__c").salesforce_field("Contact") == "Score__c"


# -- values ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    ("2024-05-20T20:49:32.000+0000", datetime(2024, 5, 20, 20, 49, 32, tzinfo=UTC)),
    ("2024-05-20T20:49:32Z", datetime(2024, 5, 20, 20, 49, 32, tzinfo=UTC)),
    ("1716238172000", datetime(2024, 5, 20, 20, 49, 32, tzinfo=UTC)),
    ("2024-05-20", datetime(2024, 5, 20, tzinfo=UTC)),
])
def test_instants_in_every_crm_spelling(text: str, expected: datetime) -> None:
    assert v.instant({"x": text}, "x") == expected


def test_a_value_of_the_wrong_kind_names_the_field_not_the_value() -> None:
    with pytest.raises(v.BadRecord, match=r"^Amount: expected a number, got a string of 6 characters$"):
        v.number({"Amount": "secret"}, "Amount")


def test_emails_compare_trimmed_and_lower_case() -> None:
    assert v.normal_email("  Ann.Lee@Acme.COM ") == "ann.lee@acme.com"
    assert v.normal_email("not an email") is None
