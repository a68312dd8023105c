"""HubSpot simulator: owners, pipelines, the properties API, associations, and bad requests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hubspot.crm.associations.v4 import (
    AssociationSpec,
    BatchInputPublicAssociationMultiPost,
    BatchInputPublicFetchAssociationsBatchRequest,
    PublicAssociationMultiPost,
    PublicFetchAssociationsBatchRequest,
    PublicObjectId,
)
from hubspot.crm.contacts import ApiException as ContactsApiException
from hubspot.crm.properties import ApiException as PropertiesApiException
from hubspot.crm.properties import OptionInput, PropertyCreate

from detente.agreement import HUBSPOT_LIFECYCLE_ORDER
from detente.sandbox.schema import HS_DEAL_STAGES, HUBSPOT_OBJECTS
from detente.sandbox.server import Sandbox
from tests.conftest import hs_client
from tests.sandbox.test_hubspot_support import assert_hubspot_error, call, start, stop

OWNERS: list[dict[str, Any]] = [
    {
        "email": "ann.owner@detente.example",
        "first_name": "Ann",
        "last_name": "Owner",
        "teams": [{"id": "7", "name": "Inside Sales", "primary": True}],
    },
    {"email": "ben.owner@detente.example", "first_name": "Ben", "last_name": "Owner"},
    {"email": "cat.owner@detente.example", "first_name": "Cat", "last_name": "Owner"},
    {"email": "gone.owner@detente.example", "first_name": "Gone", "last_name": "Owner", "archived": True},
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sb = start(tmp_path_factory, "hs-meta")
    sb.world.hs_insert_owners(OWNERS, datetime(2025, 1, 1, tzinfo=UTC))
    yield sb
    stop(sb)


@pytest.fixture
def sb(world: Sandbox) -> Iterator[Sandbox]:
    yield world
    world.hs_control.reset()


def owner_rows(sb: Sandbox, archived: bool) -> list[Any]:
    return sb.world.query("SELECT * FROM hs_owners WHERE archived = ? ORDER BY id", (int(archived),))


def create(sb: Sandbox, object_type: str, **props: str) -> str:
    if object_type in {"tasks", "calls", "emails", "meetings"}:
        props.setdefault("hs_timestamp", "2026-05-01T00:00:00Z")
    response = call(sb, "POST", f"/crm/v3/objects/{object_type}", json={"properties": props})
    assert response.status_code == 201, response.text
    record_id: str = response.json()["id"]
    return record_id


def spec(type_id: int) -> AssociationSpec:
    return AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=type_id)


# -- owners ------------------------------------------------------------------------------


def test_owners_page_lists_the_active_owners(sb: Sandbox) -> None:
    """owners_api.get_page (which calls /crm/v3/owners/) lists every active owner and no archived one."""
    page = hs_client(sb).crm.owners.owners_api.get_page(limit=100)
    assert [o.id for o in page.results] == [str(r["id"]) for r in owner_rows(sb, archived=False)]
    assert "gone.owner@detente.example" not in {o.email for o in page.results}


def test_archived_owners_appear_only_with_archived_true(sb: Sandbox) -> None:
    """archived=True lists only deactivated owners; they keep userIdIncludingInactive, not userId."""
    page = hs_client(sb).crm.owners.owners_api.get_page(limit=100, archived=True)
    assert [o.id for o in page.results] == [str(r["id"]) for r in owner_rows(sb, archived=True)]
    gone = next(o for o in page.results if o.email == "gone.owner@detente.example")
    assert gone.archived and gone.user_id is None and gone.user_id_including_inactive is not None


def test_owners_page_with_limit_and_after(sb: Sandbox) -> None:
    """Pages of one owner follow paging.next.after to the last owner."""
    api = hs_client(sb).crm.owners.owners_api
    seen, after = [], None
    while True:
        page = api.get_page(limit=1, after=after)
        seen += [o.id for o in page.results]
        if page.paging is None:
            break
        after = page.paging.next.after
    assert seen == [str(r["id"]) for r in owner_rows(sb, archived=False)]


def test_owner_shape_is_public_owner(sb: Sandbox) -> None:
    """An owner carries PublicOwner's fields, with teams as {id, name, primary}."""
    body = call(sb, "GET", "/crm/v3/owners?email=ANN.owner@detente.example").json()
    (owner,) = body["results"]
    assert set(owner) == {
        "id",
        "email",
        "firstName",
        "lastName",
        "userId",
        "userIdIncludingInactive",
        "type",
        "teams",
        "archived",
        "createdAt",
        "updatedAt",
    }
    assert owner["type"] == "PERSON" and owner["teams"] == [{"id": "7", "name": "Inside Sales", "primary": True}]
    assert owner["createdAt"] == "2025-01-01T00:00:00.000Z"


def test_owner_by_id_and_by_user_id(sb: Sandbox) -> None:
    """owners/{id} finds an owner by id, or by userId with idProperty=userId."""
    row = owner_rows(sb, archived=False)[1]
    api = hs_client(sb).crm.owners.owners_api
    assert api.get_by_id(row["id"]).email == row["email"]
    assert api.get_by_id(row["user_id"], id_property="userId").id == str(row["id"])


def test_owners_limit_over_500_is_refused(sb: Sandbox) -> None:
    """Owner pages hold at most 500."""
    assert_hubspot_error(call(sb, "GET", "/crm/v3/owners/?limit=501"), 400, "VALIDATION_ERROR")


# -- pipelines ---------------------------------------------------------------------------


def test_deal_pipeline_has_the_default_stages(sb: Sandbox) -> None:
    """pipelines_api.get_all("deals") returns the default pipeline with string metadata per stage."""
    (pipeline,) = hs_client(sb).crm.pipelines.pipelines_api.get_all(object_type="deals").results
    assert pipeline.id == "default"
    assert [s.id for s in pipeline.stages] == list(HS_DEAL_STAGES)
    won = next(s for s in pipeline.stages if s.id == "closedwon")
    assert won.metadata == {"probability": "1.0", "isClosed": "true"}


def test_pipeline_by_id_and_its_stages(sb: Sandbox) -> None:
    """The pipeline and its stages are readable by id."""
    hs = hs_client(sb)
    assert hs.crm.pipelines.pipelines_api.get_by_id("deals", "default").label == "Sales Pipeline"
    stages = hs.crm.pipelines.pipeline_stages_api.get_all("deals", "default").results
    assert [s.display_order for s in stages] == list(range(len(HS_DEAL_STAGES)))


def test_unknown_pipeline_is_404(sb: Sandbox) -> None:
    """A pipeline id that does not exist is 404."""
    assert_hubspot_error(call(sb, "GET", "/crm/v3/pipelines/deals/sales2"), 404, "OBJECT_NOT_FOUND")


# -- properties API ----------------------------------------------------------------------


def test_properties_list_covers_the_schema(sb: Sandbox) -> None:
    """core_api.get_all lists every schema property of contacts, with options and metadata."""
    results = hs_client(sb).crm.properties.core_api.get_all("contacts").results
    by_name = {p.name: p for p in results}
    assert {p.name for p in HUBSPOT_OBJECTS["contacts"].properties} <= set(by_name)
    assert [o.value for o in by_name["lifecyclestage"].options] == list(HUBSPOT_LIFECYCLE_ORDER)
    assert by_name["hs_email_domain"].modification_metadata.read_only_value is True
    assert by_name["email"].has_unique_value is True


def test_property_by_name(sb: Sandbox) -> None:
    """get_by_name returns one property; its type and field type match the schema."""
    prop = hs_client(sb).crm.properties.core_api.get_by_name("deals", "amount")
    assert (prop.type, prop.field_type, prop.group_name) == ("number", "number", "contactinformation")


def test_unknown_property_definition_is_404(sb: Sandbox) -> None:
    """Reading a property that does not exist is 404."""
    with pytest.raises(PropertiesApiException) as caught:
        hs_client(sb).crm.properties.core_api.get_by_name("contacts", "favourite_colour")
    assert caught.value.status == 404


def test_custom_property_is_created_once(sb: Sandbox) -> None:
    """POST /crm/v3/properties creates a custom property (201); the same name again is 409."""
    api = hs_client(sb).crm.properties.core_api
    definition = PropertyCreate(
        name="detente_tier",
        label="Tier",
        type="enumeration",
        field_type="select",
        group_name="detente",
        options=[
            OptionInput(label="Gold", value="gold", display_order=0, hidden=False),
            OptionInput(label="Silver", value="silver", display_order=1, hidden=False),
        ],
    )
    created = api.create("contacts", definition)
    assert created.name == "detente_tier" and created.hubspot_defined is False
    with pytest.raises(PropertiesApiException) as caught:
        api.create("contacts", definition)
    assert caught.value.status == 409
    assert "detente_tier" in {p.name for p in api.get_all("contacts").results}


def test_custom_property_becomes_writable_and_searchable(sb: Sandbox) -> None:
    """Once created, a custom property accepts its options, refuses others and can be searched."""
    call(
        sb,
        "POST",
        "/crm/v3/properties/contacts",
        json={
            "name": "detente_region",
            "label": "Region",
            "type": "enumeration",
            "fieldType": "select",
            "groupName": "detente",
            "options": [{"label": "EMEA", "value": "emea"}, {"label": "APAC", "value": "apac"}],
        },
    )
    cid = create(sb, "contacts", email="region@x.example", detente_region="emea")
    bad = call(
        sb,
        "POST",
        "/crm/v3/objects/contacts",
        json={"properties": {"email": "region2@x.example", "detente_region": "mars"}},
    )
    assert "INVALID_OPTION" in assert_hubspot_error(bad, 400, "VALIDATION_ERROR")["message"]
    found = call(
        sb,
        "POST",
        "/crm/v3/objects/contacts/search",
        json={"filterGroups": [{"filters": [{"propertyName": "detente_region", "operator": "EQ", "value": "emea"}]}]},
    ).json()
    assert [r["id"] for r in found["results"]] == [cid]


def test_invalid_property_definition_is_refused(sb: Sandbox) -> None:
    """A definition without type or with a bad name is 400."""
    response = call(sb, "POST", "/crm/v3/properties/contacts", json={"name": "Bad Name", "label": "x"})
    assert_hubspot_error(response, 400, "VALIDATION_ERROR")


# -- associations ------------------------------------------------------------------------


def test_v4_get_page_lists_associations_with_their_types(sb: Sandbox) -> None:
    """v4 basic_api.get_page lists a contact's deals with HUBSPOT_DEFINED type 4."""
    cid = create(sb, "contacts", email="assoc1@x.example")
    deal = create(sb, "deals", dealname="D1")
    hs = hs_client(sb)
    hs.crm.associations.v4.basic_api.create_default("deals", deal, "contacts", cid)
    page = hs.crm.associations.v4.basic_api.get_page("contacts", cid, "deals", limit=500)
    (result,) = page.results
    assert result.to_object_id == deal
    assert [(t.category, t.type_id) for t in result.association_types] == [("HUBSPOT_DEFINED", 4)]


def test_v4_get_page_pages_with_after(sb: Sandbox) -> None:
    """limit and after page through a record's associations."""
    cid = create(sb, "contacts", email="assoc2@x.example")
    deals = [create(sb, "deals", dealname=f"D{i}") for i in range(3)]
    for deal in deals:
        call(sb, "PUT", f"/crm/v4/objects/contacts/{cid}/associations/default/deals/{deal}")
    first = call(sb, "GET", f"/crm/v4/objects/contacts/{cid}/associations/deals?limit=2").json()
    assert [str(r["toObjectId"]) for r in first["results"]] == deals[:2]
    after = first["paging"]["next"]["after"]
    second = call(sb, "GET", f"/crm/v4/objects/contacts/{cid}/associations/deals?limit=2&after={after}").json()
    assert [str(r["toObjectId"]) for r in second["results"]] == deals[2:] and "paging" not in second


def test_v4_batch_read_reports_ids_without_associations_in_a_207(sb: Sandbox) -> None:
    """batch/read returns associations per id and a 207 error for an id with none."""
    cid = create(sb, "contacts", email="assoc3@x.example")
    deal = create(sb, "deals", dealname="D3")
    call(sb, "PUT", f"/crm/v4/objects/contacts/{cid}/associations/default/deals/{deal}")
    result = hs_client(sb).crm.associations.v4.batch_api.get_page(
        "contacts",
        "deals",
        BatchInputPublicFetchAssociationsBatchRequest(
            inputs=[PublicFetchAssociationsBatchRequest(id=cid), PublicFetchAssociationsBatchRequest(id="31337")]
        ),
    )
    assert result.num_errors == 1
    assert result.errors[0].context == {"fromObjectId": ["31337"], "toObjectType": ["deal"]}
    assert [(r._from.id, [t.to_object_id for t in r.to]) for r in result.results] == [(cid, [deal])]


def test_v4_create_default_links_both_ways(sb: Sandbox) -> None:
    """create_default associates contact → company (279) and company → contact (280)."""
    cid, company = create(sb, "contacts", email="assoc4@x.example"), create(sb, "companies", name="Acme")
    result = hs_client(sb).crm.associations.v4.basic_api.create_default("contacts", cid, "companies", company)
    assert sorted(r.association_spec.association_type_id for r in result.results) == [279, 280]
    back = call(sb, "GET", f"/crm/v4/objects/companies/{company}/associations/contacts").json()
    assert [r["toObjectId"] for r in back["results"]] == [int(cid)]


def test_v4_labeled_primary_company(sb: Sandbox) -> None:
    """Association type 1 makes a primary company; the contact lists both contact_to_company types."""
    cid, company = create(sb, "contacts", email="assoc5@x.example"), create(sb, "companies", name="Prime")
    pair = hs_client(sb).crm.associations.v4.basic_api.create("contacts", cid, "companies", company, [spec(1)])
    assert pair.labels == ["Primary"]
    contact = call(sb, "GET", f"/crm/v3/objects/contacts/{cid}?associations=companies").json()
    assert {r["type"] for r in contact["associations"]["companies"]["results"]} == {
        "contact_to_company",
        "contact_to_company_unlabeled",
    }


def test_new_primary_company_replaces_the_old_one(sb: Sandbox) -> None:
    """A contact has one primary company: a new primary demotes the previous one to unlabeled."""
    cid = create(sb, "contacts", email="assoc6@x.example")
    old, new = create(sb, "companies", name="Old"), create(sb, "companies", name="New")
    for company in (old, new):
        call(
            sb,
            "PUT",
            f"/crm/v4/objects/contacts/{cid}/associations/companies/{company}",
            json=[{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 1}],
        )
    body = call(sb, "GET", f"/crm/v4/objects/contacts/{cid}/associations/companies").json()
    types = {str(r["toObjectId"]): {t["typeId"] for t in r["associationTypes"]} for r in body["results"]}
    assert types == {old: {279}, new: {1, 279}}


def test_v4_archive_removes_the_association_both_ways(sb: Sandbox) -> None:
    """DELETE on a pair removes it from both records."""
    cid, deal = create(sb, "contacts", email="assoc7@x.example"), create(sb, "deals", dealname="D7")
    call(sb, "PUT", f"/crm/v4/objects/contacts/{cid}/associations/default/deals/{deal}")
    hs_client(sb).crm.associations.v4.basic_api.archive("contacts", cid, "deals", deal)
    assert call(sb, "GET", f"/crm/v4/objects/deals/{deal}/associations/contacts").json()["results"] == []


def test_v4_batch_create(sb: Sandbox) -> None:
    """batch/create associates many pairs at once (201) and reports missing records in a 207."""
    deal = create(sb, "deals", dealname="D8")
    contacts = [create(sb, "contacts", email=f"assoc8{i}@x.example") for i in range(2)]
    api = hs_client(sb).crm.associations.v4.batch_api
    ok = api.create(
        "deals",
        "contacts",
        BatchInputPublicAssociationMultiPost(
            inputs=[
                PublicAssociationMultiPost(_from=PublicObjectId(id=deal), to=PublicObjectId(id=c), types=[spec(3)])
                for c in contacts
            ]
        ),
    )
    assert sorted(str(r.to_object_id) for r in ok.results) == sorted(contacts)
    partial = api.create(
        "deals",
        "contacts",
        BatchInputPublicAssociationMultiPost(
            inputs=[
                PublicAssociationMultiPost(
                    _from=PublicObjectId(id=deal), to=PublicObjectId(id="424242"), types=[spec(3)]
                )
            ]
        ),
    )
    assert partial.num_errors == 1 and partial.errors[0].category == "OBJECT_NOT_FOUND"


def test_invalid_association_type_is_refused(sb: Sandbox) -> None:
    """A type id that does not connect the two objects is 400 INVALID_ASSOCIATION_TYPE."""
    cid, deal = create(sb, "contacts", email="assoc9@x.example"), create(sb, "deals", dealname="D9")
    response = call(
        sb,
        "PUT",
        f"/crm/v4/objects/contacts/{cid}/associations/deals/{deal}",
        json=[{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}],
    )
    body = assert_hubspot_error(response, 400, "VALIDATION_ERROR")
    assert body["subCategory"] == "crm.associations.INVALID_ASSOCIATION_TYPE"


def test_v3_put_association_by_type_id_or_name(sb: Sandbox) -> None:
    """The v3 shorthand takes a type id or a type name and answers with the record's associations."""
    cid = create(sb, "contacts", email="assoc10@x.example")
    deal, task = create(sb, "deals", dealname="D10"), create(sb, "tasks", hs_task_subject="T10")
    by_id = call(sb, "PUT", f"/crm/v3/objects/contacts/{cid}/associations/deals/{deal}/4")
    assert by_id.status_code == 200
    assert by_id.json()["associations"]["deals"]["results"] == [{"id": deal, "type": "contact_to_deal"}]
    by_name = call(sb, "PUT", f"/crm/v3/objects/tasks/{task}/associations/contacts/{cid}/task_to_contact")
    assert by_name.json()["associations"]["contacts"]["results"][0]["id"] == cid


def test_association_to_a_missing_record_is_404(sb: Sandbox) -> None:
    """Both records must exist."""
    cid = create(sb, "contacts", email="assoc11@x.example")
    response = call(sb, "PUT", f"/crm/v4/objects/contacts/{cid}/associations/default/deals/777777")
    assert_hubspot_error(response, 404, "OBJECT_NOT_FOUND")


# -- bad requests ------------------------------------------------------------------------


def test_bad_token_is_401_for_the_client(sb: Sandbox) -> None:
    """A wrong token is 401 INVALID_AUTHENTICATION (UnauthorizedException in the client)."""
    assert sb.info is not None
    from hubspot import HubSpot

    client = HubSpot(access_token="pat-na1-wrong", host=sb.info.hubspot, ssl_ca_cert=str(sb.info.ca))
    with pytest.raises(ContactsApiException) as caught:
        client.crm.contacts.basic_api.get_page()
    assert caught.value.status == 401
    body = json.loads(caught.value.body)
    assert body["category"] == "INVALID_AUTHENTICATION"
    assert body["message"].startswith("Authentication credentials not found.")


def test_missing_token_is_401(sb: Sandbox) -> None:
    """No Authorization header at all is 401 too."""
    assert sb.info is not None
    response = call(sb, "GET", "/crm/v3/owners", token="")
    assert_hubspot_error(response, 401, "INVALID_AUTHENTICATION")


def test_unknown_object_type_is_400(sb: Sandbox) -> None:
    """An object type HubSpot cannot infer is 400 "Unable to infer object type from: ..."."""
    body = assert_hubspot_error(call(sb, "GET", "/crm/v3/objects/widgets"), 400, "VALIDATION_ERROR")
    assert body["message"] == "Unable to infer object type from: widgets"


def test_unknown_path_is_404_in_hubspot_shape(sb: Sandbox) -> None:
    """A path the API does not have is 404 with HubSpot's error body."""
    assert_hubspot_error(call(sb, "GET", "/crm/v3/nothing/here"), 404, "OBJECT_NOT_FOUND")


def test_wrong_method_is_405_in_hubspot_shape(sb: Sandbox) -> None:
    """PUT on a list endpoint is 405 with HubSpot's error body."""
    assert_hubspot_error(call(sb, "PUT", "/crm/v3/objects/contacts"), 405)


@pytest.mark.parametrize(
    "method, path",
    [
        ("POST", "/crm/v3/objects/contacts"),
        ("POST", "/crm/v3/objects/contacts/search"),
        ("POST", "/crm/v3/objects/contacts/batch/create"),
        ("POST", "/crm/v4/associations/contacts/deals/batch/read"),
    ],
)
def test_malformed_json_is_400(sb: Sandbox, method: str, path: str) -> None:
    """A body that is not JSON is 400 "Invalid input JSON ..."."""
    response = call(sb, method, path, data=b'{"inputs": [', headers={"Content-Type": "application/json"})
    body = assert_hubspot_error(response, 400, "VALIDATION_ERROR")
    assert body["message"].startswith("Invalid input JSON on line 1")


NASTY: list[tuple[str, str, Any]] = [
    ("GET", "/crm/v3/objects/contacts?limit=abc", None),
    ("GET", "/crm/v3/objects/contacts?after=-5", None),
    ("GET", "/crm/v3/objects/contacts?archived=maybe", None),
    ("GET", "/crm/v3/objects/contacts/not-a-number", None),
    ("GET", "/crm/v3/objects/contacts/1?idProperty=firstname", None),
    ("PATCH", "/crm/v3/objects/contacts/1", [1, 2]),
    ("POST", "/crm/v3/objects/contacts", {"properties": ["email"]}),
    ("POST", "/crm/v3/objects/contacts", {"properties": {"email": "a@b.example"}, "associations": [{"to": 5}]}),
    ("POST", "/crm/v3/objects/contacts", {"properties": {"email": {"nested": True}}}),
    ("POST", "/crm/v3/objects/contacts/batch/create", {"inputs": "all of them"}),
    ("POST", "/crm/v3/objects/contacts/batch/create", {"inputs": [1, None]}),
    ("POST", "/crm/v3/objects/contacts/batch/update", {"inputs": [{"id": None, "properties": {}}]}),
    ("POST", "/crm/v3/objects/contacts/batch/upsert", {"inputs": [{"id": "x@y.example"}]}),
    ("POST", "/crm/v3/objects/contacts/batch/read", {"inputs": [{"id": "1"}], "idProperty": "nope"}),
    ("POST", "/crm/v3/objects/contacts/search", {"filterGroups": "x"}),
    ("POST", "/crm/v3/objects/contacts/search", {"filterGroups": [{"filters": [None]}]}),
    ("POST", "/crm/v3/objects/contacts/search", {"sorts": [5]}),
    ("POST", "/crm/v3/objects/contacts/search", {"query": 5}),
    ("POST", "/crm/v3/objects/contacts/merge", {"primaryObjectId": "a", "objectIdToMerge": []}),
    ("POST", "/crm/v3/properties/contacts", {}),
    ("GET", "/crm/v3/owners/abc", None),
    ("GET", "/crm/v3/owners/1?idProperty=email", None),
    ("PUT", "/crm/v4/objects/contacts/1/associations/deals/2", {}),
    ("POST", "/crm/v4/associations/contacts/deals/batch/read", {"inputs": [None, 5]}),
    ("POST", "/crm/v4/associations/contacts/deals/batch/create", {"inputs": [{"from": 1}]}),
    ("POST", "/crm/v4/associations/contacts/deals/batch/archive", {"inputs": [{"from": {"id": "1"}, "to": "x"}]}),
    ("PUT", "/crm/v3/objects/contacts/1/associations/deals/2/3", None),
    ("GET", "/crm/v3/pipelines/contacts", None),
]


@pytest.mark.parametrize("method, path, body", NASTY, ids=[f"{m} {p}" for m, p, _ in NASTY])
def test_bad_requests_get_hubspot_errors_never_500(sb: Sandbox, method: str, path: str, body: Any) -> None:
    """Malformed requests answer 4xx in HubSpot's error shape, never a 500."""
    response = call(sb, method, path, json=body)
    assert 400 <= response.status_code < 500, response.text
    assert_hubspot_error(response, response.status_code)


def test_non_utf8_body_is_400(sb: Sandbox) -> None:
    """A body that is not UTF-8 is a 400, not a crash."""
    response = call(
        sb, "POST", "/crm/v3/objects/contacts", data=b"\xff\xfe{}", headers={"Content-Type": "application/json"}
    )
    assert_hubspot_error(response, 400, "VALIDATION_ERROR")
