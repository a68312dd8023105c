"""HubSpot simulator: object listing, reads and single-record writes through the real client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hubspot.crm.contacts import ApiException as ContactsApiException
from hubspot.crm.contacts import SimplePublicObjectInput, SimplePublicObjectInputForCreate
from hubspot.crm.objects.tasks import AssociationSpec, PublicAssociationsForObject, PublicObjectId
from hubspot.crm.objects.tasks import SimplePublicObjectInputForCreate as TaskInput

from detente.sandbox.schema import HUBSPOT_OBJECTS
from detente.sandbox.server import Sandbox
from tests.conftest import hs_client
from tests.sandbox.test_hubspot_support import (
    assert_hubspot_error,
    call,
    people,
    set_clock,
    start,
    stats,
    stop,
)

OBJECTS = list(HUBSPOT_OBJECTS)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sb = start(tmp_path_factory, "hs-objects")
    sb.world.hs_insert_owners(
        [{"email": "olive@detente.example", "first_name": "Olive", "last_name": "Owner"}], datetime.now(UTC)
    )
    yield sb
    stop(sb)


@pytest.fixture
def sb(world: Sandbox) -> Iterator[Sandbox]:
    yield world
    world.hs_control.reset()


@pytest.fixture
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox of its own for tests that count everything in it."""
    sb = start(tmp_path_factory, "hs-fresh")
    yield sb
    stop(sb)


def create_contact(sb: Sandbox, **props: str) -> str:
    response = call(sb, "POST", "/crm/v3/objects/contacts", json={"properties": props})
    assert response.status_code == 201, response.text
    contact_id: str = response.json()["id"]
    return contact_id


def owner_id(sb: Sandbox) -> str:
    return str(sb.world.query("SELECT id FROM hs_owners WHERE NOT archived ORDER BY id LIMIT 1")[0][0])


# -- paging ------------------------------------------------------------------------------


@pytest.mark.parametrize("object_type", OBJECTS)
def test_get_page_loop_reaches_every_record_of_the_demo_world(sandbox: Sandbox, object_type: str) -> None:
    """basic_api.get_page, followed by paging.next.after, returns what /__sandbox/stats counts."""
    api = hs_client(sandbox).crm.objects.basic_api
    seen: list[int] = []
    after = None
    while True:
        page = api.get_page(object_type, limit=100, after=after)
        seen += [int(r.id) for r in page.results]
        if page.paging is None:
            break
        after = page.paging.next.after
    assert len(seen) == stats(sandbox)["records"][object_type]
    assert seen == sorted(set(seen))


@pytest.mark.parametrize("object_type", ["contacts", "companies", "deals"])
def test_get_all_helper_returns_every_record_of_the_demo_world(sandbox: Sandbox, object_type: str) -> None:
    """The client's get_all helper pages to the end of contacts, companies and deals."""
    records = getattr(hs_client(sandbox).crm, object_type).get_all()
    assert len(records) == stats(sandbox)["records"][object_type]


def test_paging_a_seeded_world_matches_the_stats(fresh: Sandbox) -> None:
    """Every object pages completely (100 a page, no paging on the last page); archived are left out."""
    now = datetime.now(UTC)
    sizes = {"contacts": 250, "companies": 30, "deals": 101, "tasks": 140, "calls": 7, "emails": 100, "meetings": 2}
    for name, size in sizes.items():
        ids = fresh.world.hs_insert(name, [{"hs_timestamp": now} for _ in range(size)], now)
        fresh.world.hs_archive(name, ids[0], now)
    hs = hs_client(fresh)
    counts = stats(fresh)["records"]
    for name, size in sizes.items():
        pages = []
        after = None
        while True:
            page = hs.crm.objects.basic_api.get_page(name, limit=100, after=after)
            pages.append(len(page.results))
            if page.paging is None:
                break
            after = page.paging.next.after
        assert sum(pages) == counts[name] == size - 1
        assert all(n == 100 for n in pages[:-1]) and 0 < pages[-1] <= 100


def test_get_all_of_tasks_through_the_generic_objects_api(fresh: Sandbox) -> None:
    """hs.crm.objects.get_all("tasks") collects every task."""
    now = datetime.now(UTC)
    fresh.world.hs_insert("tasks", [{"hs_timestamp": now} for _ in range(205)], now)
    assert len(hs_client(fresh).crm.objects.get_all("tasks")) == 205


def test_get_all_with_history_pages_by_50(fresh: Sandbox) -> None:
    """With propertiesWithHistory the helper asks for pages of 50, and the server accepts them."""
    now = datetime.now(UTC)
    fresh.world.hs_insert("contacts", [{"lifecyclestage": "lead"} for _ in range(120)], now)
    records = hs_client(fresh).crm.contacts.get_all(properties_with_history=["lifecyclestage"])
    assert len(records) == 120
    assert stats(fresh)["calls"]["GET /crm/v3/objects/{type}"] == 3
    assert records[0].properties_with_history["lifecyclestage"][0].value == "lead"


def test_limit_over_100_is_a_validation_error(sb: Sandbox) -> None:
    """limit=101 on a list is refused with 400 VALIDATION_ERROR."""
    assert_hubspot_error(call(sb, "GET", "/crm/v3/objects/contacts?limit=101"), 400, "VALIDATION_ERROR")


def test_limit_over_50_with_history_is_a_validation_error(sb: Sandbox) -> None:
    """With propertiesWithHistory the page is at most 50."""
    response = call(sb, "GET", "/crm/v3/objects/contacts?limit=51&propertiesWithHistory=lifecyclestage")
    assert_hubspot_error(response, 400, "VALIDATION_ERROR")
    assert call(sb, "GET", "/crm/v3/objects/contacts?limit=50&propertiesWithHistory=lifecyclestage").ok


def test_paging_link_and_after_point_at_the_next_record(sb: Sandbox) -> None:
    """paging.next.after is the next record's id and the link repeats the query with it."""
    ids = [create_contact(sb, **p) for p in people(3, "linky")]
    response = call(sb, "GET", f"/crm/v3/objects/contacts?limit=2&after={ids[0]}&properties=email")
    body = response.json()
    assert [r["id"] for r in body["results"]] == ids[:2]
    assert body["paging"]["next"]["after"] == ids[2]
    assert f"after={ids[2]}" in body["paging"]["next"]["link"]
    assert "properties=email" in body["paging"]["next"]["link"]


# -- properties --------------------------------------------------------------------------


def test_comma_and_repeated_properties_mean_the_same(sb: Sandbox) -> None:
    """properties=a,b and properties=a&properties=b select the same properties."""
    cid = create_contact(sb, email="both@forms.example", firstname="Both", jobtitle="CTO")
    comma = call(sb, "GET", f"/crm/v3/objects/contacts/{cid}?properties=email,jobtitle").json()
    repeated = call(sb, "GET", f"/crm/v3/objects/contacts/{cid}?properties=email&properties=jobtitle").json()
    assert comma["properties"] == repeated["properties"]
    assert comma["properties"]["jobtitle"] == "CTO"
    assert "firstname" not in comma["properties"]


def test_default_properties_when_none_are_requested(sb: Sandbox) -> None:
    """Without properties a contact carries HubSpot's default contact properties."""
    cid = create_contact(sb, email="defaults@x.example", firstname="Dee", jobtitle="CFO")
    record = hs_client(sb).crm.contacts.basic_api.get_by_id(cid)
    assert set(record.properties) == set(HUBSPOT_OBJECTS["contacts"].defaults)


def test_requested_but_unset_property_is_null(sb: Sandbox) -> None:
    """A requested property without a value comes back as null; unknown names are left out."""
    cid = create_contact(sb, email="nulls@x.example")
    record = hs_client(sb).crm.contacts.basic_api.get_by_id(cid, properties=["phone", "no_such_prop"])
    assert record.properties["phone"] is None
    assert "no_such_prop" not in record.properties


def test_history_is_newest_first(sb: Sandbox) -> None:
    """propertiesWithHistory lists every value a tracked property had, newest first."""
    set_clock(sb, datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    cid = create_contact(sb, email="history@x.example", lifecyclestage="subscriber")
    set_clock(sb, datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    call(sb, "PATCH", f"/crm/v3/objects/contacts/{cid}", json={"properties": {"lifecyclestage": "lead"}})
    record = hs_client(sb).crm.contacts.basic_api.get_by_id(cid, properties_with_history=["lifecyclestage"])
    history = record.properties_with_history["lifecyclestage"]
    assert [h.value for h in history] == ["lead", "subscriber"]
    assert history[0].timestamp > history[1].timestamp
    assert history[0].source_type == "INTEGRATION"


def test_untracked_property_history_is_its_current_value(sb: Sandbox) -> None:
    """An untracked property's history is one entry: the current value."""
    cid = create_contact(sb, email="untracked@x.example", jobtitle="VP")
    body = call(sb, "GET", f"/crm/v3/objects/contacts/{cid}?propertiesWithHistory=jobtitle").json()
    assert [h["value"] for h in body["propertiesWithHistory"]["jobtitle"]] == ["VP"]


# -- archived ----------------------------------------------------------------------------


def test_archived_records_are_listed_only_with_archived_true(sb: Sandbox) -> None:
    """archived=True lists only archived records, with archivedAt; the default list omits them."""
    kept, gone = create_contact(sb, email="kept@arch.example"), create_contact(sb, email="gone@arch.example")
    hs = hs_client(sb)
    hs.crm.contacts.basic_api.archive(gone)
    archived = hs.crm.contacts.basic_api.get_page(limit=100, archived=True)
    live = hs.crm.contacts.get_all()
    assert gone in {r.id for r in archived.results} and kept not in {r.id for r in archived.results}
    assert all(r.archived and r.archived_at is not None for r in archived.results)
    assert gone not in {r.id for r in live} and kept in {r.id for r in live}


def test_archiving_keeps_lastmodifieddate(sb: Sandbox) -> None:
    """Archiving does not move hs_lastmodifieddate or lastmodifieddate (as in HubSpot)."""
    set_clock(sb, datetime(2026, 4, 1, 12, 0, tzinfo=UTC))
    cid = create_contact(sb, email="stillmod@x.example")
    set_clock(sb, datetime(2026, 4, 9, 12, 0, tzinfo=UTC))
    assert call(sb, "DELETE", f"/crm/v3/objects/contacts/{cid}").status_code == 204
    body = call(sb, "GET", f"/crm/v3/objects/contacts/{cid}?archived=true&properties=hs_lastmodifieddate").json()
    assert body["properties"]["lastmodifieddate"] == "2026-04-01T12:00:00.000Z"
    assert body["properties"]["hs_lastmodifieddate"] == "2026-04-01T12:00:00.000Z"
    assert body["archivedAt"] == "2026-04-09T12:00:00.000Z"


# -- writes ------------------------------------------------------------------------------


def test_write_is_visible_to_the_next_read(sb: Sandbox) -> None:
    """A PATCH shows up in the next GET, with updatedAt moved to the write."""
    hs = hs_client(sb)
    cid = create_contact(sb, email="visible@x.example")
    before = hs.crm.contacts.basic_api.get_by_id(cid)
    hs.crm.contacts.basic_api.update(cid, SimplePublicObjectInput(properties={"hs_lead_status": "IN_PROGRESS"}))
    after = hs.crm.contacts.basic_api.get_by_id(cid, properties=["hs_lead_status"])
    assert after.properties["hs_lead_status"] == "IN_PROGRESS"
    assert after.updated_at >= before.updated_at


def test_frozen_clock_sets_lastmodifieddate(sb: Sandbox) -> None:
    """With the clock frozen, writes stamp exactly the frozen time."""
    frozen = datetime(2026, 5, 5, 8, 30, 15, 123000, tzinfo=UTC)
    set_clock(sb, frozen)
    cid = create_contact(sb, email="frozen@x.example")
    call(sb, "PATCH", f"/crm/v3/objects/contacts/{cid}", json={"properties": {"jobtitle": "Boss"}})
    record = hs_client(sb).crm.contacts.basic_api.get_by_id(cid, properties=["hs_lastmodifieddate"])
    assert record.properties["lastmodifieddate"] == "2026-05-05T08:30:15.123Z"
    assert record.properties["hs_lastmodifieddate"] == "2026-05-05T08:30:15.123Z"
    assert record.updated_at == frozen


def test_get_by_email_id_property(sb: Sandbox) -> None:
    """idProperty=email finds a contact by its email, case-insensitively."""
    cid = create_contact(sb, email="byemail@x.example")
    record = hs_client(sb).crm.contacts.basic_api.get_by_id("ByEmail@X.example", id_property="email")
    assert record.id == cid


def test_unknown_id_is_404(sb: Sandbox) -> None:
    """A missing record is 404 OBJECT_NOT_FOUND (NotFoundException in the client)."""
    with pytest.raises(ContactsApiException) as caught:
        hs_client(sb).crm.contacts.basic_api.get_by_id("999999999")
    assert caught.value.status == 404
    assert json.loads(caught.value.body)["category"] == "OBJECT_NOT_FOUND"


def test_delete_is_204_even_for_a_missing_record(sb: Sandbox) -> None:
    """DELETE answers 204 whether or not the record exists, as HubSpot does."""
    assert call(sb, "DELETE", "/crm/v3/objects/deals/424242").status_code == 204


def test_duplicate_email_is_409_conflict(sb: Sandbox) -> None:
    """A second contact with an existing email is 409 CONFLICT naming the existing id."""
    cid = create_contact(sb, email="dupe@x.example")
    with pytest.raises(ContactsApiException) as caught:
        hs_client(sb).crm.contacts.basic_api.create(
            SimplePublicObjectInputForCreate(properties={"email": "DUPE@x.example"})
        )
    assert caught.value.status == 409
    body = json.loads(caught.value.body)
    assert body["category"] == "CONFLICT"
    assert body["message"] == f"Contact already exists. Existing ID: {cid}"


def test_contact_needs_an_email_or_a_name(sb: Sandbox) -> None:
    """Creating a contact with none of email, firstname, lastname is 400."""
    response = call(sb, "POST", "/crm/v3/objects/contacts", json={"properties": {"jobtitle": "Ghost"}})
    assert_hubspot_error(response, 400, "VALIDATION_ERROR")


def test_unknown_property_is_property_doesnt_exist(sb: Sandbox) -> None:
    """Writing an unknown property is 400 with a PROPERTY_DOESNT_EXIST detail."""
    response = call(
        sb,
        "POST",
        "/crm/v3/objects/contacts",
        json={"properties": {"email": "unknown@x.example", "favourite_colour": "teal"}},
    )
    body = assert_hubspot_error(response, 400, "VALIDATION_ERROR")
    details = json.loads(body["message"].split(": ", 1)[1])
    assert details[0]["error"] == "PROPERTY_DOESNT_EXIST" and details[0]["name"] == "favourite_colour"


def test_every_invalid_property_is_reported_at_once(sb: Sandbox) -> None:
    """Read-only, bad option, bad number and bad datetime are all listed in one 400."""
    response = call(
        sb,
        "POST",
        "/crm/v3/objects/contacts",
        json={
            "properties": {
                "email": "many@x.example",
                "hs_email_domain": "x.example",
                "lifecyclestage": "friend",
                "detente_lead_value": "lots",
                "detente_sla_due": "next tuesday",
            }
        },
    )
    body = assert_hubspot_error(response, 400, "VALIDATION_ERROR")
    codes = {d["name"]: d["error"] for d in json.loads(body["message"].split(": ", 1)[1])}
    assert codes == {
        "hs_email_domain": "READ_ONLY_VALUE",
        "lifecyclestage": "INVALID_OPTION",
        "detente_lead_value": "INVALID_FLOAT",
        "detente_sla_due": "INVALID_DATE",
    }


def test_datetimes_accept_epoch_ms_and_iso(sb: Sandbox) -> None:
    """A datetime written as epoch ms or ISO-8601 is served as ISO-8601 UTC."""
    a = create_contact(sb, email="ms@x.example", detente_sla_due="1767225600000")
    b = create_contact(sb, email="iso@x.example", detente_sla_due="2026-01-01T01:00:00+01:00")
    for cid in (a, b):
        body = call(sb, "GET", f"/crm/v3/objects/contacts/{cid}?properties=detente_sla_due").json()
        assert body["properties"]["detente_sla_due"] == "2026-01-01T00:00:00.000Z"


def test_unknown_owner_is_refused(sb: Sandbox) -> None:
    """hubspot_owner_id must name an active owner."""
    response = call(
        sb,
        "POST",
        "/crm/v3/objects/contacts",
        json={"properties": {"email": "owned@x.example", "hubspot_owner_id": "1"}},
    )
    body = assert_hubspot_error(response, 400, "VALIDATION_ERROR")
    assert "INVALID_OWNER_ID" in body["message"]
    assert create_contact(sb, email="owned@x.example", hubspot_owner_id=owner_id(sb))


def test_lifecyclestage_cannot_move_backward(sb: Sandbox) -> None:
    """customer → lead is refused with 400."""
    cid = create_contact(sb, email="backward@x.example", lifecyclestage="customer")
    with pytest.raises(ContactsApiException) as caught:
        hs_client(sb).crm.contacts.basic_api.update(cid, SimplePublicObjectInput(properties={"lifecyclestage": "lead"}))
    assert caught.value.status == 400
    assert "lifecyclestage" in json.loads(caught.value.body)["message"]


def test_lifecyclestage_moves_back_after_clearing(sb: Sandbox) -> None:
    """Setting lifecyclestage to "" first lets it take an earlier stage."""
    cid = create_contact(sb, email="reset@x.example", lifecyclestage="customer")
    for value in ("", "lead"):
        response = call(sb, "PATCH", f"/crm/v3/objects/contacts/{cid}", json={"properties": {"lifecyclestage": value}})
        assert response.status_code == 200, response.text
    assert response.json()["properties"]["lifecyclestage"] == "lead"


def test_task_created_with_an_inline_association_to_a_contact(sb: Sandbox) -> None:
    """A task created with association type 204 is linked both ways (inline associations on reads)."""
    cid = create_contact(sb, email="tasked@x.example")
    hs = hs_client(sb)
    task = hs.crm.objects.tasks.basic_api.create(
        TaskInput(
            properties={
                "hs_timestamp": "2026-05-02T09:00:00.000Z",
                "hs_task_subject": "Follow up",
                "hs_task_status": "NOT_STARTED",
                "hs_task_priority": "HIGH",
                "hs_task_type": "CALL",
                "hubspot_owner_id": owner_id(sb),
            },
            associations=[
                PublicAssociationsForObject(
                    to=PublicObjectId(id=cid),
                    types=[AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=204)],
                )
            ],
        )
    )
    contact = call(sb, "GET", f"/crm/v3/objects/contacts/{cid}?associations=tasks").json()
    assert contact["associations"]["tasks"]["results"] == [{"id": task.id, "type": "contact_to_task"}]
    listed = call(sb, "GET", f"/crm/v3/objects/tasks?after={task.id}&limit=1&associations=contacts").json()
    assert listed["results"][0]["associations"]["contacts"]["results"][0]["id"] == cid


def test_task_without_hs_timestamp_is_refused(sb: Sandbox) -> None:
    """Activities need hs_timestamp on create."""
    response = call(sb, "POST", "/crm/v3/objects/tasks", json={"properties": {"hs_task_subject": "x"}})
    assert_hubspot_error(response, 400, "VALIDATION_ERROR")


def test_object_type_ids_are_accepted(sb: Sandbox) -> None:
    """/crm/v3/objects/0-1 is the contacts endpoint."""
    cid = create_contact(sb, email="typeid@x.example")
    assert call(sb, "GET", f"/crm/v3/objects/0-1/{cid}").json()["id"] == cid


# -- merge -------------------------------------------------------------------------------


def test_merged_id_returns_the_survivor(sb: Sandbox) -> None:
    """After a merge the old id reads as the surviving record, which lists the merged id."""
    keep, lose = create_contact(sb, email="keep@merge.example"), create_contact(sb, email="lose@merge.example")
    response = call(
        sb, "POST", "/crm/v3/objects/contacts/merge", json={"primaryObjectId": keep, "objectIdToMerge": lose}
    )
    assert response.status_code == 200, response.text
    old = hs_client(sb).crm.contacts.basic_api.get_by_id(lose, properties=["hs_merged_object_ids"])
    assert old.id == keep
    assert old.properties["hs_merged_object_ids"] == lose


def test_merge_into_itself_is_refused(sb: Sandbox) -> None:
    """Merging a record into itself is a 400."""
    cid = create_contact(sb, email="self@merge.example")
    response = call(sb, "POST", "/crm/v3/objects/contacts/merge", json={"primaryObjectId": cid, "objectIdToMerge": cid})
    assert_hubspot_error(response, 400, "VALIDATION_ERROR")


def test_merged_record_leaves_the_list(sb: Sandbox) -> None:
    """The merged-away contact no longer appears in listings."""
    keep, lose = create_contact(sb, email="k2@merge.example"), create_contact(sb, email="l2@merge.example")
    call(sb, "POST", "/crm/v3/objects/contacts/merge", json={"primaryObjectId": keep, "objectIdToMerge": lose})
    ids = {r.id for r in hs_client(sb).crm.contacts.get_all()}
    assert keep in ids and lose not in ids


def test_gdpr_delete_removes_a_contact_for_good(sb: Sandbox) -> None:
    """After a GDPR delete the contact is neither readable, listed as archived, nor associated."""
    cid = create_contact(sb, email="forget.me@x.example")
    deal = call(sb, "POST", "/crm/v3/objects/deals", json={"properties": {"dealname": "Forgotten"}}).json()["id"]
    call(sb, "PUT", f"/crm/v4/objects/contacts/{cid}/associations/default/deals/{deal}")
    response = call(
        sb,
        "POST",
        "/crm/v3/objects/contacts/gdpr-delete",
        json={"objectId": "forget.me@x.example", "idProperty": "email"},
    )
    assert response.status_code == 204
    assert call(sb, "GET", f"/crm/v3/objects/contacts/{cid}").status_code == 404
    assert call(sb, "GET", f"/crm/v3/objects/contacts/{cid}?archived=true").status_code == 404
    assert call(sb, "GET", f"/crm/v4/objects/deals/{deal}/associations/contacts").json()["results"] == []


def test_clock_moves_only_when_told(sb: Sandbox) -> None:
    """createdAt follows the frozen clock, a day later after the clock is moved a day."""
    start_at = datetime(2026, 6, 1, tzinfo=UTC)
    set_clock(sb, start_at)
    first = create_contact(sb, email="day1@x.example")
    set_clock(sb, start_at + timedelta(days=1))
    second = create_contact(sb, email="day2@x.example")
    hs = hs_client(sb)
    assert hs.crm.contacts.basic_api.get_by_id(first).created_at == start_at
    assert hs.crm.contacts.basic_api.get_by_id(second).created_at == start_at + timedelta(days=1)
