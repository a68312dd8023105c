"""Opportunities and deals: one row per pair, the person it belongs to, rows that merge later."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, text

from detente.connectors.base import Page, Record
from detente.normalize.run import normalize
from detente.store.raw import commit_page

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
OPP = "006000000000001AAA"
CONTACT = "003000000000001AAA"
OTHER_CONTACT = "003000000000002AAA"
LEAD = "00Q000000000001AAA"


def put(engine: Engine, system: str, object_name: str, rid: str, data: dict[str, Any], at: datetime = T0) -> None:
    commit_page(engine, system, Page(object_name, [Record(object_name, rid, at, data)]), at)


def sf(rid: str, **data: Any) -> dict[str, Any]:
    return {"Id": rid, "CreatedDate": "2026-10-01T10:00:00.000+0000", **data}


def deal(rid: str, props: dict[str, Any], contacts: list[str] | None = None) -> dict[str, Any]:
    return {"id": rid, "properties": {"createdate": "2026-10-02T10:00:00Z", **props},
            "associations": {"contacts": contacts or [], "companies": []}}


def rows(engine: Engine, sql: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(sql)))


def test_a_deal_that_later_names_its_opportunity_merges_into_it(store: Engine) -> None:
    put(store, "hubspot", "deals", "900", deal("900", {"dealname": "Acme", "dealstage": "qualifiedtobuy",
                                                       "amount": "5000"}))
    put(store, "hubspot", "calls", "77", {"id": "77", "properties": {"hs_timestamp": "2026-10-03T10:00:00Z"},
                                          "associations": {"contacts": [], "deals": ["900"]}})
    normalize(store, now=T0)
    [alone] = rows(store, "SELECT * FROM opportunities")
    assert (alone.salesforce_id, alone.hubspot_deal_id, alone.stage, alone.amount) == (None, "900", "qualifiedtobuy",
                                                                                       5000.0)
    later = T0 + timedelta(hours=1)
    put(store, "salesforce", "Opportunity", OPP, sf(OPP, Name="Acme - New", StageName="Prospecting", Amount=6000.0,
                                                    CloseDate="2026-12-01", IsClosed=False, IsWon=False), later)
    put(store, "hubspot", "deals", "900", deal("900", {"dealname": "Acme", "dealstage": "qualifiedtobuy",
                                                       "amount": "5000", "salesforceopportunityid": OPP}), later)
    normalize(store, now=later)
    live = rows(store, "SELECT * FROM opportunities WHERE NOT deleted")
    assert [(o.salesforce_id, o.hubspot_deal_id, o.stage, o.hubspot_stage, o.amount) for o in live] == [
        (OPP, "900", "Prospecting", "qualifiedtobuy", 6000.0)]
    assert live[0].id == alone.id  # the deal's row became the pair's: whatever pointed at it still does
    assert rows(store, "SELECT opportunity_id FROM activities")[0].opportunity_id == live[0].id


def test_the_primary_contact_role_decides_the_person(store: Engine) -> None:
    put(store, "salesforce", "Contact", CONTACT, sf(CONTACT, Email="ann@acme.com"))
    put(store, "salesforce", "Contact", OTHER_CONTACT, sf(OTHER_CONTACT, Email="bo@acme.com"))
    put(store, "salesforce", "Lead", LEAD, sf(LEAD, Email="bo@acme.com", IsConverted=True,
                                              ConvertedContactId=OTHER_CONTACT, ConvertedOpportunityId=OPP))
    put(store, "salesforce", "Opportunity", OPP, sf(OPP, StageName="Closed Won", IsClosed=True, IsWon=True,
                                                    CloseDate="2026-10-20", ContactId=OTHER_CONTACT))
    put(store, "salesforce", "OpportunityContactRole", "00K000000000001AAA", sf(
        "00K000000000001AAA", OpportunityId=OPP, ContactId=CONTACT, IsPrimary=True))
    put(store, "salesforce", "OpportunityFieldHistory", "017000000000001AAA", sf(
        "017000000000001AAA", OpportunityId=OPP, Field="StageName", OldValue="Prospecting", NewValue="Closed Won",
        CreatedDate="2026-10-18T09:30:00.000+0000"))
    normalize(store, now=T0)
    [o] = rows(store, "SELECT * FROM opportunities")
    ann = rows(store, f"SELECT person_id FROM person_records WHERE record_id = '{CONTACT}'")[0].person_id
    assert (o.person_id, o.salesforce_contact_id, o.salesforce_lead_id, o.is_won) == (ann, CONTACT, LEAD, True)
    assert str(o.closed_at)[:19] == "2026-10-18 09:30:00"
    [t] = rows(store, "SELECT * FROM transitions")
    assert (t.opportunity_id, t.person_id, t.to_value) == (o.id, ann, "Closed Won")


def test_without_contact_roles_the_converted_lead_decides_the_person(store: Engine) -> None:
    put(store, "salesforce", "Lead", LEAD, sf(LEAD, Email="cy@acme.com", IsConverted=True,
                                              ConvertedOpportunityId=OPP))
    put(store, "salesforce", "Opportunity", OPP, sf(OPP, StageName="Prospecting"))
    normalize(store, now=T0)
    [o] = rows(store, "SELECT * FROM opportunities")
    [p] = rows(store, "SELECT * FROM people")
    assert (o.person_id, o.salesforce_lead_id) == (p.id, LEAD)
