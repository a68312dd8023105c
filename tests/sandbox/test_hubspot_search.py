"""HubSpot simulator: CRM search (operators, sorting, paging, the 10,000-result cap, limits)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hubspot.crm.contacts import ApiException, PublicObjectSearchRequest

from detente.sandbox.server import Sandbox
from tests.conftest import hs_client
from tests.sandbox.test_hubspot_support import (
    assert_hubspot_error,
    batch_create,
    call,
    people,
    set_clock,
    set_faults,
    start,
    stop,
)

T0 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
PEOPLE = [
    {
        "email": "ada@alpha.example",
        "firstname": "Ada",
        "lastname": "Lovelace",
        "company": "Alpha Analytics",
        "lifecyclestage": "lead",
        "detente_lead_value": "10",
    },
    {
        "email": "bob@beta.example",
        "firstname": "Bob",
        "lastname": "Builder",
        "company": "Beta Builds",
        "lifecyclestage": "marketingqualifiedlead",
        "detente_lead_value": "250.5",
    },
    {
        "email": "cy@alpha.example",
        "firstname": "Cy",
        "lastname": "Young",
        "lifecyclestage": "customer",
        "detente_lead_value": "99",
    },
    {"email": "dee@delta.example", "firstname": "Dee", "lastname": "Dee"},
]


def ms(when: datetime) -> str:
    return str(int(when.timestamp() * 1000))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """Four contacts created an hour apart (Ada at T0 … Dee at T0+3h) and a deal with Ada."""
    sb = start(tmp_path_factory, "hs-search")
    for hour, person in enumerate(PEOPLE):
        set_clock(sb, T0 + timedelta(hours=hour))
        assert call(sb, "POST", "/crm/v3/objects/contacts", json={"properties": person}).status_code == 201
    set_clock(sb, None)
    yield sb
    stop(sb)


@pytest.fixture
def sb(world: Sandbox) -> Iterator[Sandbox]:
    yield world
    world.hs_control.reset()


@pytest.fixture
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sb = start(tmp_path_factory, "hs-search-fresh")
    yield sb
    stop(sb)


def search(sb: Sandbox, body: dict[str, Any], object_type: str = "contacts") -> dict[str, Any]:
    response = call(sb, "POST", f"/crm/v3/objects/{object_type}/search", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def names(body: dict[str, Any]) -> list[str]:
    return [r["properties"]["firstname"] for r in body["results"]]


def f(prop: str, op: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    out = {"propertyName": prop, "operator": op, **extra}
    if value is not None:
        out["value"] = value
    return out


OPERATOR_CASES = {
    "EQ on email is case-insensitive": ([[f("email", "EQ", "ADA@alpha.example")]], {"Ada"}),
    "NEQ keeps records without the property": ([[f("lifecyclestage", "NEQ", "lead")]], {"Bob", "Cy", "Dee"}),
    "GT compares numbers as numbers": ([[f("detente_lead_value", "GT", "100")]], {"Bob"}),
    "LTE compares numbers as numbers": ([[f("detente_lead_value", "LTE", "99")]], {"Ada", "Cy"}),
    "BETWEEN takes epoch ms on the modified date": (
        [[f("lastmodifieddate", "BETWEEN", ms(T0 + timedelta(hours=1)), highValue=ms(T0 + timedelta(hours=2)))]],
        {"Bob", "Cy"},
    ),
    "GTE takes an ISO datetime on the create date": (
        [[f("createdate", "GTE", (T0 + timedelta(hours=2)).isoformat())]],
        {"Cy", "Dee"},
    ),
    "LT on hs_lastmodifieddate": ([[f("hs_lastmodifieddate", "LT", ms(T0 + timedelta(hours=1)))]], {"Ada"}),
    "IN on an enumeration": ([[f("lifecyclestage", "IN", values=["lead", "customer"])]], {"Ada", "Cy"}),
    "NOT_IN keeps records without the property": (
        [[f("lifecyclestage", "NOT_IN", values=["lead"])]],
        {"Bob", "Cy", "Dee"},
    ),
    "HAS_PROPERTY": ([[f("lifecyclestage", "HAS_PROPERTY")]], {"Ada", "Bob", "Cy"}),
    "NOT_HAS_PROPERTY": ([[f("detente_lead_value", "NOT_HAS_PROPERTY")]], {"Dee"}),
    "CONTAINS_TOKEN matches a word": ([[f("company", "CONTAINS_TOKEN", "analytics")]], {"Ada"}),
    "CONTAINS_TOKEN with a wildcard": ([[f("email", "CONTAINS_TOKEN", "*@alpha.example")]], {"Ada", "Cy"}),
    "NOT_CONTAINS_TOKEN": ([[f("company", "NOT_CONTAINS_TOKEN", "beta")]], {"Ada", "Cy", "Dee"}),
    "filters in a group are ANDed": (
        [[f("lifecyclestage", "HAS_PROPERTY"), f("detente_lead_value", "LT", "50")]],
        {"Ada"},
    ),
    "groups are ORed": ([[f("email", "EQ", "ada@alpha.example")], [f("firstname", "EQ", "dee")]], {"Ada", "Dee"}),
}


@pytest.mark.parametrize("groups, expected", OPERATOR_CASES.values(), ids=OPERATOR_CASES.keys())
def test_search_operator(sb: Sandbox, groups: list[list[dict[str, Any]]], expected: set[str]) -> None:
    """Each operator selects the records HubSpot's would (see the case id)."""
    body = search(sb, {"filterGroups": [{"filters": fs} for fs in groups], "properties": ["firstname"]})
    assert set(names(body)) == expected
    assert body["total"] == len(expected)


def test_search_through_the_client_on_hs_object_id(sb: Sandbox) -> None:
    """do_search with hs_object_id GT and an id sort returns the later records in id order."""
    all_ids = [r["id"] for r in search(sb, {"limit": 10})["results"]]
    result = hs_client(sb).crm.contacts.search_api.do_search(
        public_object_search_request=PublicObjectSearchRequest(
            filter_groups=[{"filters": [f("hs_object_id", "GT", all_ids[1])]}],
            sorts=[{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
            properties=["firstname"],
        )
    )
    assert [r.id for r in result.results] == all_ids[2:]
    assert result.total == 2


def test_sort_descending_on_a_number_puts_empty_values_last(sb: Sandbox) -> None:
    """Sorting detente_lead_value DESCENDING orders numerically, records without it last."""
    body = search(
        sb, {"sorts": [{"propertyName": "detente_lead_value", "direction": "DESCENDING"}], "properties": ["firstname"]}
    )
    assert names(body) == ["Bob", "Cy", "Ada", "Dee"]


def test_sort_given_as_a_string(sb: Sandbox) -> None:
    """A sort may be a property name, "-name" for descending."""
    assert names(search(sb, {"sorts": ["-createdate"], "properties": ["firstname"]})) == ["Dee", "Cy", "Bob", "Ada"]


def test_default_order_is_by_creation(sb: Sandbox) -> None:
    """Without sorts, results come oldest first."""
    assert names(search(sb, {"properties": ["firstname"]})) == ["Ada", "Bob", "Cy", "Dee"]


def test_search_pages_with_after(sb: Sandbox) -> None:
    """limit and after page through the results; the last page has no paging."""
    first = search(sb, {"limit": 3, "properties": ["firstname"]})
    assert first["total"] == 4 and first["paging"]["next"]["after"] == "3"
    second = search(sb, {"limit": 3, "after": first["paging"]["next"]["after"], "properties": ["firstname"]})
    assert names(second) == ["Dee"] and "paging" not in second


def test_search_results_carry_default_properties_and_no_associations(sb: Sandbox) -> None:
    """Without properties, results carry the defaults; never associations or history."""
    result = search(sb, {"limit": 1})["results"][0]
    assert set(result["properties"]) == {
        "createdate",
        "email",
        "firstname",
        "hs_object_id",
        "lastmodifieddate",
        "lastname",
    }
    assert set(result) == {"id", "properties", "createdAt", "updatedAt", "archived"}


def test_free_text_query(sb: Sandbox) -> None:
    """query finds records whose email, name or company contains the text."""
    assert set(names(search(sb, {"query": "alpha", "properties": ["firstname"]}))) == {"Ada", "Cy"}


def test_association_pseudo_property(sb: Sandbox) -> None:
    """associations.contact EQ <id> finds the deals associated with that contact."""
    ada = search(sb, {"filterGroups": [{"filters": [f("email", "EQ", "ada@alpha.example")]}]})["results"][0]["id"]
    deal = call(
        sb,
        "POST",
        "/crm/v3/objects/deals",
        json={
            "properties": {"dealname": "Ada's deal", "pipeline": "default", "dealstage": "qualifiedtobuy"},
            "associations": [
                {"to": {"id": ada}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}]}
            ],
        },
    ).json()
    call(sb, "POST", "/crm/v3/objects/deals", json={"properties": {"dealname": "Someone else's"}})
    found = search(sb, {"filterGroups": [{"filters": [f("associations.contact", "EQ", ada)]}]}, "deals")
    assert [r["id"] for r in found["results"]] == [deal["id"]]


@pytest.mark.parametrize(
    "body, why",
    [
        ({"filterGroups": [{"filters": [f("email", "HAS_PROPERTY")]}] * 6}, "six groups"),
        ({"filterGroups": [{"filters": [f("email", "HAS_PROPERTY")] * 7}]}, "seven filters in a group"),
        ({"filterGroups": [{"filters": [f("email", "HAS_PROPERTY")] * 5}] * 4}, "twenty filters in all"),
        ({"limit": 201}, "limit over 200"),
        ({"after": "ten"}, "after not an integer"),
        ({"filterGroups": [{"filters": [f("favourite_colour", "EQ", "teal")]}]}, "unknown property"),
        ({"filterGroups": [{"filters": [f("email", "LIKE", "a")]}]}, "unknown operator"),
        ({"filterGroups": [{"filters": [f("createdate", "GT", "yesterday")]}]}, "unparseable datetime"),
        ({"filterGroups": [{"filters": [f("email", "IN")]}]}, "IN without values"),
        ({"sorts": [{"propertyName": "email"}, {"propertyName": "createdate"}]}, "two sorts"),
        ([1, 2], "a list instead of an object"),
    ],
)
def test_invalid_search_is_a_validation_error(sb: Sandbox, body: Any, why: str) -> None:
    """Requests HubSpot refuses get 400 VALIDATION_ERROR (see the case)."""
    response = call(sb, "POST", "/crm/v3/objects/contacts/search", json=body)
    assert_hubspot_error(response, 400, "VALIDATION_ERROR")


def test_archived_records_never_appear(fresh: Sandbox) -> None:
    """A record archived is gone from search results."""
    cid = call(fresh, "POST", "/crm/v3/objects/contacts", json={"properties": {"email": "z@arch.example"}}).json()["id"]
    call(fresh, "DELETE", f"/crm/v3/objects/contacts/{cid}")
    assert search(fresh, {"filterGroups": [{"filters": [f("email", "EQ", "z@arch.example")]}]})["total"] == 0


def test_search_lag_hides_fresh_writes(fresh: Sandbox) -> None:
    """With search_lag_seconds, a new record is readable at once but searchable only later."""
    set_clock(fresh, T0)
    set_faults(fresh, search_lag_seconds=5)
    cid = call(fresh, "POST", "/crm/v3/objects/contacts", json={"properties": {"email": "late@x.example"}}).json()["id"]
    query = {"filterGroups": [{"filters": [f("email", "EQ", "late@x.example")]}]}
    assert search(fresh, query)["total"] == 0
    assert call(fresh, "GET", f"/crm/v3/objects/contacts/{cid}").status_code == 200
    set_clock(fresh, T0 + timedelta(seconds=6))
    assert search(fresh, query)["total"] == 1


def test_search_rate_limit_is_secondly(sb: Sandbox) -> None:
    """Over search_per_second the search answers 429 SECONDLY without Retry-After; a second later it works."""
    set_faults(sb, search_per_second=2)
    statuses = [call(sb, "POST", "/crm/v3/objects/contacts/search", json={}) for _ in range(3)]
    assert [r.status_code for r in statuses[:2]] == [200, 200]
    refused = statuses[2]
    assert refused.status_code == 429 and "Retry-After" not in refused.headers
    body = refused.json()
    assert body["policyName"] == "SECONDLY" and body["message"] == "You have reached your secondly limit."
    time.sleep(1.05)
    assert call(sb, "POST", "/crm/v3/objects/contacts/search", json={}).status_code == 200


def test_search_responses_carry_no_rate_limit_headers(sb: Sandbox) -> None:
    """Search answers without X-HubSpot-RateLimit-* headers; a list answers with them."""
    searched = call(sb, "POST", "/crm/v3/objects/contacts/search", json={})
    listed = call(sb, "GET", "/crm/v3/objects/contacts")
    assert not [h for h in searched.headers if h.lower().startswith("x-hubspot-ratelimit")]
    assert "X-HubSpot-RateLimit-Remaining" in listed.headers


# -- the 10,000-result cap -------------------------------------------------------------------

T1 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
T2 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, list[str]]]:
    """10,100 contacts made by 101 batch creates: 5,100 stamped T1 and 5,000 stamped T2."""
    sb = start(tmp_path_factory, "hs-big")
    records = people(10_100, "bulk")
    set_clock(sb, T1)
    ids = batch_create(sb, "contacts", records[:5_100])
    set_clock(sb, T2)
    ids += batch_create(sb, "contacts", records[5_100:])
    set_clock(sb, None)
    yield sb, ids
    stop(sb)


def test_total_counts_past_the_cap(big: tuple[Sandbox, list[str]]) -> None:
    """total is the true count even beyond 10,000."""
    sb, ids = big
    assert len(ids) == 10_100
    assert search(sb, {"limit": 1})["total"] == 10_100


def test_paging_past_10000_results_is_400(big: tuple[Sandbox, list[str]]) -> None:
    """Following paging.next.after through the client yields exactly 10,000 records, then a 400."""
    sb, _ = big
    api = hs_client(sb).crm.contacts.search_api
    seen, after = 0, "0"
    with pytest.raises(ApiException) as caught:
        while True:
            page = api.do_search(
                public_object_search_request=PublicObjectSearchRequest(
                    sorts=[{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
                    properties=["email"],
                    limit=200,
                    after=after,
                )
            )
            seen += len(page.results)
            after = page.paging.next.after
    assert seen == 10_000 and after == "10000"
    assert caught.value.status == 400
    assert json.loads(caught.value.body)["category"] == "VALIDATION_ERROR"


def test_windows_split_by_hs_object_id_get_every_record(big: tuple[Sandbox, list[str]]) -> None:
    """Restarting the search from the last id seen (hs_object_id GT) reaches every record."""
    sb, ids = big
    api = hs_client(sb).crm.contacts.search_api
    seen: list[str] = []
    last_id = "0"
    while True:
        after, window = "0", 0
        while True:
            page = api.do_search(
                public_object_search_request=PublicObjectSearchRequest(
                    filter_groups=[{"filters": [f("hs_object_id", "GT", last_id)]}],
                    sorts=[{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
                    properties=["email"],
                    limit=200,
                    after=after,
                )
            )
            seen += [r.id for r in page.results]
            window += len(page.results)
            if page.paging is None or int(page.paging.next.after) + 200 > 10_000:
                break
            after = page.paging.next.after
        if page.paging is None:
            break
        last_id = seen[-1]
    assert seen == ids


def test_windows_split_by_modified_time_get_every_record(big: tuple[Sandbox, list[str]]) -> None:
    """Each modified-time window holds fewer than 10,000 records; together they hold all."""
    sb, ids = big
    seen: set[str] = set()
    for when in (T1, T2):
        after: str | None = "0"
        while after is not None:
            body = search(
                sb,
                {
                    "filterGroups": [{"filters": [f("lastmodifieddate", "EQ", ms(when))]}],
                    "properties": ["email"],
                    "limit": 200,
                    "after": after,
                },
            )
            seen |= {r["id"] for r in body["results"]}
            after = body.get("paging", {}).get("next", {}).get("after")
    assert seen == set(ids)
