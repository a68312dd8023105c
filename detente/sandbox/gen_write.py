"""Write a planned world into the sandbox store: both CRMs' records, field history and
associations, in bulk and in a fixed order (the store assigns ids in insertion order).

Salesforce goes first because HubSpot records carry the connector's Salesforce ids. Each
record's audit fields come from the plan: created when it was created, last modified at its
latest change, never after ``as_of``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any, TypeVar

from detente.sandbox.gen_model import (
    Activity,
    Campaign,
    Company,
    HsContact,
    Opportunity,
    Owner,
    Person,
    SfLead,
)
from detente.sandbox.gen_people import (
    Ctx,
    hs_modified,
    sf_lead_modified,
)
from detente.sandbox.schema import HS_ASSOCIATION_TYPES, SALESFORCE_OBJECTS
from detente.sandbox.store import World, hs_datetime, sf_datetime

TEAM_IDS = {"Sales": "101", "Marketing": "102", "Partner": "103"}
PROBABILITY = {"Qualification": 10, "Needs Analysis": 25, "Proposal/Price Quote": 50,
               "Negotiation/Review": 75, "Closed Won": 100, "Closed Lost": 0, "Prospecting": 5}
HS_TYPE = {"email": "emails", "call": "calls", "meeting": "meetings", "task": "tasks"}
SF_TASK_TYPE = {"email": "Email", "call": "Call", "meeting": "Meeting", "task": "Other"}
SF_SUBTYPE = {"email": "Email", "call": "Call", "meeting": "Task", "task": "Task"}

SF = SALESFORCE_OBJECTS
CHUNK = 5000
X = TypeVar("X")


@dataclass
class Written:
    """What the manifest needs from writing: the connector's task copies."""

    connector_copies: list[tuple[str, str, int]] = field(default_factory=list)  # (sf id, type, hs id)


def _sf(moment: datetime) -> str:
    return sf_datetime(moment)


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None and v != ""}


def write_world(world: World, ctx: Ctx, people: list[Person], companies: list[Company],
                campaigns: list[Campaign]) -> Written:
    as_of = ctx.as_of
    owners = ctx.owners.all()
    write_owners(world, owners, as_of)
    if not people and not companies:
        return Written()
    integration = ctx.owners.integration
    _write_accounts(world, companies, as_of, integration)
    _write_campaigns(world, campaigns, as_of)
    _write_sf_people(world, people, as_of, integration)
    written = Written()
    _write_sf_activities(world, people, as_of, integration, written)
    _write_sf_history(world, people, integration)
    for p in people:
        for lead in (p.lead, *p.extra_leads):
            if lead is not None and lead.deleted is not None:
                world.sf_delete(SF["Lead"], lead.sf_id, lead.deleted)
                if lead.member_id:
                    world.sf_delete(SF["CampaignMember"], lead.member_id, lead.deleted)
    _write_companies_hs(world, companies, as_of)
    _write_hs_contacts(world, people, as_of)
    # Merged-away contacts own no associations; merging before any exist keeps it cheap.
    for p in people:
        for other in p.extra_contacts:
            if other.merged_into is not None and other.merged_at is not None:
                world.hs_merge("contacts", other.merged_into.hs_id, other.hs_id, other.merged_at)
    _write_deals(world, people, as_of)
    _write_engagements(world, people, as_of)
    _write_associations(world, people)
    # Copies were inserted in person order; now both ids are known.
    written.connector_copies = [
        (a.sf_id, HS_TYPE[a.kind], a.hs_id) for p in people for a in p.activities if a.copied is not None
    ]
    return written


def write_owners(world: World, owners: list[Owner], as_of: datetime) -> None:
    rows = [{
        "Username": o.email, "Email": o.email, "FirstName": o.first, "LastName": o.last,
        "IsActive": o.deactivated is None,
        "UserType": "PowerPartner" if o.role == "partner" else "Standard",
        "Title": o.title, "Department": o.team, "TimeZoneSidKey": "America/New_York",
        "CreatedDate": _sf(o.created), "LastModifiedDate": _sf(o.deactivated or o.created),
    } for o in owners]
    for o, sf_id in zip(owners, world.sf_insert(SF["User"], rows, as_of), strict=True):
        o.sf_id = sf_id
    hs_rows = [{
        "email": o.email, "first_name": o.first, "last_name": o.last,
        "teams": [{"id": TEAM_IDS[o.team], "name": o.team, "primary": True}] if o.team in TEAM_IDS else [],
        "archived": o.deactivated is not None, "created_at": hs_datetime(o.created),
    } for o in owners]
    for o, hs_id in zip(owners, world.hs_insert_owners(hs_rows, as_of), strict=True):
        o.hs_id = hs_id


def _write_accounts(world: World, companies: list[Company], as_of: datetime, integration: Owner) -> None:
    rows = [{
        "Name": c.name, "Website": f"https://www.{c.domain}", "Industry": c.industry,
        "NumberOfEmployees": c.employees, "AnnualRevenue": c.revenue, "BillingCountry": c.country,
        "Type": "Customer" if c.became_customer else c.type, "OwnerId": c.owner.sf_id,
        "CreatedDate": _sf(c.created), "CreatedById": c.owner.sf_id,
        "LastModifiedDate": _sf(c.became_customer or c.created),
        "LastModifiedById": integration.sf_id if c.became_customer else c.owner.sf_id,
    } for c in companies]
    for c, sf_id in zip(companies, world.sf_insert(SF["Account"], rows, as_of), strict=True):
        c.sf_id = sf_id


def _write_campaigns(world: World, campaigns: list[Campaign], as_of: datetime) -> None:
    rows = [{
        "Name": c.name, "Type": c.type, "Status": c.status, "IsActive": c.status == "In Progress",
        "StartDate": c.start.isoformat(), "EndDate": c.end.isoformat(), "ActualCost": c.actual,
        "BudgetedCost": c.budget, "ExpectedRevenue": round(c.budget * 6, -2),
        "Channel__c": c.source.channel, "Offer__c": c.offer, "OwnerId": c.owner.sf_id,
        "CreatedDate": _sf(c.created), "LastModifiedDate": _sf(c.modified or c.created),
    } for c in campaigns]
    for c, sf_id in zip(campaigns, world.sf_insert(SF["Campaign"], rows, as_of), strict=True):
        c.sf_id = sf_id


def _sf_visible(p: Person) -> list[Activity]:
    """Activities Salesforce holds for the person: logged there, or copied by the connector."""
    return [a for a in p.activities if a.system == "salesforce" or a.copied is not None]


def _rating(score: int | None) -> str | None:
    if score is None:
        return None
    return "Hot" if score >= 70 else "Warm" if score >= 40 else "Cold"


def _sf_bulk(world: World, obj: str, items: Sequence[X], row: Callable[[X], dict[str, Any]],
             as_of: datetime) -> list[str]:
    """Insert one row per item, a chunk at a time so that rows never all exist at once."""
    ids: list[str] = []
    for start in range(0, len(items), CHUNK):
        ids += world.sf_insert(SF[obj], [row(x) for x in items[start:start + CHUNK]], as_of)
    return ids


def _contact_row(p: Person, integration: Owner) -> dict[str, Any]:
    assert p.contact_created is not None and p.contact_owner is not None and p.lead is not None
    visible = _sf_visible(p)
    return {
        "FirstName": p.first, "LastName": p.last, "Email": p.email, "Phone": p.phone,
        "Title": p.title, "LeadSource": p.source.name, "Channel__c": p.channel,
        "Offer__c": p.offer, "Lead_Score__c": p.hs.score.value if p.hs is not None else p.lead.score,
        "AccountId": p.company.sf_id if p.company else None, "OwnerId": p.contact_owner.sf_id,
        "MailingCountry": p.country,
        "LastActivityDate": max(a.at for a in visible).date().isoformat() if visible else None,
        "CreatedDate": _sf(p.contact_created), "CreatedById": p.contact_owner.sf_id,
        "LastModifiedDate": _sf(max([p.contact_created, *p.contact_modified])),
        "LastModifiedById": integration.sf_id if p.contact_modified else p.contact_owner.sf_id,
    }


def _opportunity_row(p: Person) -> dict[str, Any]:
    opp = p.opportunity
    assert opp is not None
    stage = opp.stage.value
    return {
        "Name": opp.name, "AccountId": p.company.sf_id if p.company else None,
        "ContactId": p.sf_contact_id or None, "StageName": stage, "Amount": opp.amount.value,
        "Probability": PROBABILITY[stage], "CloseDate": opp.close_date.value.isoformat(),
        "LeadSource": p.source.name, "CampaignId": p.campaign.sf_id if p.campaign else None,
        "OwnerId": opp.owner.sf_id, "Type": "New Business",
        "Loss_Reason__c": opp.loss_reason if stage == "Closed Lost" and opp.salesforce_reason else None,
        "CreatedDate": _sf(opp.created), "CreatedById": opp.owner.sf_id,
        "LastModifiedDate": _sf(max(opp.stage.since, opp.amount.since, opp.close_date.since)),
        "LastModifiedById": opp.owner.sf_id,
    }


def _write_sf_people(world: World, people: list[Person], as_of: datetime, integration: Owner) -> None:
    converted = [p for p in people if p.contact_created is not None]
    for p, sf_id in zip(converted, _sf_bulk(world, "Contact", converted, lambda p: _contact_row(p, integration),
                                            as_of), strict=True):
        p.sf_contact_id = sf_id

    with_opp = [p for p in people if p.opportunity is not None and p.opportunity.in_salesforce]
    for p, sf_id in zip(with_opp, _sf_bulk(world, "Opportunity", with_opp, _opportunity_row, as_of), strict=True):
        assert p.opportunity is not None
        p.opportunity.sf_id = sf_id

    leads: list[tuple[Person, SfLead]] = [(p, p.lead) for p in people if p.lead is not None]
    leads += [(p, extra) for p in people for extra in p.extra_leads]
    ids = _sf_bulk(world, "Lead", leads, lambda x: _lead_row(x[0], x[1], integration), as_of)
    for (_, lead), sf_id in zip(leads, ids, strict=True):
        lead.sf_id = sf_id

    def role(p: Person) -> dict[str, Any]:
        assert p.opportunity is not None
        return {"OpportunityId": p.opportunity.sf_id, "ContactId": p.sf_contact_id, "Role": "Decision Maker",
                "IsPrimary": True, "CreatedDate": _sf(p.opportunity.created),
                "CreatedById": p.opportunity.owner.sf_id}

    _sf_bulk(world, "OpportunityContactRole", with_opp, role, as_of)

    def member(x: tuple[Person, SfLead]) -> dict[str, Any]:
        p, lead = x
        assert lead.campaign is not None
        return {
            "CampaignId": lead.campaign.sf_id, "LeadId": lead.sf_id,
            "ContactId": p.sf_contact_id if lead.converted else None, "Status": "Responded",
            "FirstRespondedDate": lead.created.date().isoformat(),
            "CreatedDate": _sf(lead.created), "CreatedById": integration.sf_id,
            "LastModifiedDate": _sf(lead.converted or lead.created),
        }

    responded = [(p, lead) for p, lead in leads if lead.campaign is not None]
    for (_, lead), member_id in zip(responded, _sf_bulk(world, "CampaignMember", responded, member, as_of),
                                    strict=True):
        lead.member_id = member_id


def _lead_row(p: Person, lead: SfLead, integration: Owner) -> dict[str, Any]:
    main = lead is p.lead
    visible = _sf_visible(p) if main and not lead.converted else []
    opp = p.opportunity if main and lead.with_opportunity else None
    return {
        "FirstName": p.first, "LastName": p.last, "Email": lead.email, "Phone": p.phone,
        "Title": p.title, "LeadSource": lead.source.name, "Channel__c": lead.channel,
        "Offer__c": lead.offer, "Lead_Score__c": lead.score, "Company": p.company_name,
        "Status": lead.status.value, "Disqualified_Reason__c": lead.disqualified_reason,
        "Rating": _rating(lead.score),
        "Industry": p.company.industry if p.company else None,
        "NumberOfEmployees": p.company.employees if p.company else None, "Country": p.country,
        "OwnerId": lead.owner.value.sf_id,
        "IsConverted": lead.converted is not None,
        "ConvertedDate": lead.converted.date().isoformat() if lead.converted else None,
        "ConvertedAccountId": p.company.sf_id if lead.converted and p.company else None,
        "ConvertedContactId": p.sf_contact_id if lead.converted else None,
        "ConvertedOpportunityId": opp.sf_id if opp is not None and lead.converted else None,
        "LastActivityDate": max(a.at for a in visible).date().isoformat() if visible else None,
        "CreatedDate": _sf(lead.created), "CreatedById": lead.created_by.sf_id,
        "LastModifiedDate": _sf(sf_lead_modified(lead)),
        "LastModifiedById": integration.sf_id if lead.modified else lead.owner.value.sf_id,
    }


def _who(p: Person) -> str | None:
    if p.sf_contact_id:
        return p.sf_contact_id  # conversion moves a lead's activities to its contact
    return p.lead.sf_id if p.lead is not None else None


def _what(p: Person, a: Activity) -> str | None:
    opp = p.opportunity
    if opp is not None and opp.in_salesforce and a.at >= opp.created:
        return opp.sf_id
    return None


def _event_row(x: tuple[Person, Activity]) -> dict[str, Any]:
    p, a = x
    return {
        "Subject": a.subject, "WhoId": _who(p), "WhatId": _what(p, a), "OwnerId": a.owner.sf_id,
        "StartDateTime": _sf(a.at), "EndDateTime": _sf(a.at + _minutes(a.minutes)),
        "ActivityDateTime": _sf(a.at), "ActivityDate": a.at.date().isoformat(),
        "DurationInMinutes": a.minutes, "Type": "Meeting",
        "CreatedDate": _sf(a.at), "CreatedById": a.owner.sf_id, "LastModifiedDate": _sf(a.at),
        "LastModifiedById": a.owner.sf_id,
    }


def _task_row(x: tuple[Person, Activity], integration: Owner) -> dict[str, Any]:
    p, a = x
    copy = a.copied is not None
    created = a.copied if a.copied is not None else a.at
    by = integration.sf_id if copy else a.owner.sf_id
    return _drop_none({
        "Subject": a.subject, "WhoId": _who(p), "WhatId": _what(p, a), "OwnerId": a.owner.sf_id,
        "ActivityDate": a.at.date().isoformat(), "Status": "Completed", "Priority": "Normal",
        "Type": SF_TASK_TYPE[a.kind], "TaskSubtype": SF_SUBTYPE[a.kind],
        "CompletedDateTime": _sf(a.at),
        "Description": "Logged in HubSpot" if copy else None,
        "CallDurationInSeconds": a.minutes * 60 if a.kind == "call" else None,
        "CallDisposition": "Connected" if a.kind == "call" else None,
        "CreatedDate": _sf(created), "CreatedById": by, "LastModifiedDate": _sf(created),
        "LastModifiedById": by,
    })


def _write_sf_activities(world: World, people: list[Person], as_of: datetime, integration: Owner,
                         written: Written) -> None:
    tasks: list[tuple[Person, Activity]] = []
    events: list[tuple[Person, Activity]] = []
    for p in people:
        for a in p.activities:
            if a.system == "salesforce" and a.kind == "meeting":
                events.append((p, a))
            elif a.system == "salesforce" or a.copied is not None:
                tasks.append((p, a))
    ids = _sf_bulk(world, "Task", tasks, lambda x: _task_row(x, integration), as_of)
    for (_, a), sf_id in zip(tasks, ids, strict=True):
        a.sf_id = sf_id
    for (_, a), sf_id in zip(events, _sf_bulk(world, "Event", events, _event_row, as_of), strict=True):
        a.sf_id = sf_id


def _minutes(n: int) -> timedelta:
    return timedelta(minutes=n)


def _changes(parent: str, field_name: str, changes: list[tuple[Any, datetime]],
             by: Callable[[Any, datetime], str], render: Callable[[Any], str] = str,
             ) -> Iterable[dict[str, Any]]:
    for (old, _), (new, at) in pairwise(changes):
        yield {"parent": parent, "field": field_name, "old": render(old), "new": render(new),
               "at": _sf(at), "by": by(new, at)}


def _write_sf_history(world: World, people: list[Person], integration: Owner) -> None:
    lead_rows: list[dict[str, Any]] = []
    opp_rows: list[dict[str, Any]] = []
    for p in people:
        for lead in (p.lead, *p.extra_leads):
            if lead is None:
                continue

            def status_by(status: str, at: datetime, lead: SfLead = lead) -> str:
                # Marketing's label comes through the connector; sales statuses are the rep's.
                owner = lead.owner.at(at)
                if status == "Marketing Qualified" or owner is None:
                    return integration.sf_id
                return owner.sf_id

            lead_rows += _changes(lead.sf_id, "Status", lead.status.changes, status_by)
            lead_rows += _changes(lead.sf_id, "OwnerId", lead.owner.changes,
                                  lambda _o, _t: integration.sf_id, lambda o: str(o.sf_id))
        opp = p.opportunity
        if opp is not None and opp.in_salesforce:
            def by_owner(_value: Any, _at: datetime, owner_id: str = opp.owner.sf_id) -> str:
                return owner_id

            opp_rows += _changes(opp.sf_id, "StageName", opp.stage.changes, by_owner)
            opp_rows += _changes(opp.sf_id, "Amount", opp.amount.changes, by_owner)
            opp_rows += _changes(opp.sf_id, "CloseDate", opp.close_date.changes, by_owner,
                                 lambda d: str(d.isoformat()))
    lead_rows.sort(key=lambda r: str(r["at"]))
    opp_rows.sort(key=lambda r: str(r["at"]))
    world.sf_insert_history(SF["Lead"], lead_rows)
    world.sf_insert_history(SF["Opportunity"], opp_rows)


def _write_companies_hs(world: World, companies: list[Company], as_of: datetime) -> None:
    created = [c.created + timedelta(seconds=60) for c in companies]
    records = [_drop_none({
        "name": c.name, "domain": c.domain, "industry": c.industry, "numberofemployees": c.employees,
        "country": c.country, "salesforceaccountid": c.sf_id, "hubspot_owner_id": c.owner.hs_id,
        "hs_lastmodifieddate": hs_datetime(t),
    }) for c, t in zip(companies, created, strict=True)]
    for c, hs_id in zip(companies, world.hs_insert("companies", records, as_of, created=created), strict=True):
        c.hs_id = hs_id


def _contact_record(p: Person, hs: HsContact) -> tuple[dict[str, Any], dict[str, list[tuple[str, datetime]]]]:
    main = hs is p.hs
    dates: dict[str, str] = {}
    for stage, at in hs.lifecycle.changes:
        dates.setdefault(f"hs_lifecyclestage_{stage}_date", hs_datetime(at))
    hs_activities = [a for a in p.activities if a.system == "hubspot"] if main else []
    lead = hs.lead
    linked_contact = main and hs.contact_linked is not None
    sf_owner: str | None = None
    if linked_contact and p.contact_owner is not None:
        sf_owner = p.contact_owner.sf_id
    elif lead is not None:
        sf_owner = lead.owner.value.sf_id
    props = _drop_none({
        "email": hs.email, "firstname": p.first, "lastname": p.last,
        "company": p.company_name if main else None, "jobtitle": p.title if main else None,
        "phone": p.phone if main else None, "country": p.country if main else None,
        "lifecyclestage": hs.lifecycle.value, **dates,
        "hs_lead_status": hs.lead_status.value if hs.lead_status is not None else None,
        "hubspotscore": hs.score.value,
        "hs_analytics_source": p.source.hubspot if main else "OFFLINE",
        "channel": p.channel if main else None, "offer": p.offer if main else None,
        "campaign": p.campaign.name if main and p.campaign else None,
        "disqualification_reason": hs.disqualification_reason,
        "salesforceleadid": lead.sf_id if lead is not None else None,
        "salesforcecontactid": p.sf_contact_id if linked_contact else None,
        "salesforceaccountid": p.company.sf_id if linked_contact and p.company else None,
        "salesforceownerid": sf_owner,
        "salesforcelastsynctime": hs_datetime(max(hs.synced)) if hs.synced and lead is not None else None,
        "hubspot_owner_id": hs.owner.value.hs_id,
        "lastmodifieddate": hs_datetime(hs_modified(p, hs)),
        "notes_last_contacted": hs_datetime(max(a.at for a in hs_activities)) if hs_activities else None,
        "num_contacted_notes": len(hs_activities) if hs_activities else None,
    })
    history: dict[str, list[tuple[str, datetime]]] = {
        "lifecyclestage": list(hs.lifecycle.changes),
        "hubspot_owner_id": [(str(o.hs_id), t) for o, t in hs.owner.changes],
        "hubspotscore": [(str(s), t) for s, t in hs.score.changes],
    }
    if hs.lead_status is not None:
        history["hs_lead_status"] = list(hs.lead_status.changes)
    return props, history


HsRecord = tuple[dict[str, Any], datetime, dict[str, list[tuple[str, datetime]]] | None]


def _hs_bulk(world: World, obj: str, items: Sequence[X], record: Callable[[X], HsRecord],
             as_of: datetime) -> list[int]:
    """Insert one HubSpot record per item (properties, created, history), a chunk at a time."""
    ids: list[int] = []
    for start in range(0, len(items), CHUNK):
        made = [record(x) for x in items[start:start + CHUNK]]
        histories = [h or {} for _, _, h in made]
        ids += world.hs_insert(obj, [props for props, _, _ in made], as_of, created=[c for _, c, _ in made],
                               history=histories if any(histories) else None)
    return ids


def _write_hs_contacts(world: World, people: list[Person], as_of: datetime) -> None:
    contacts: list[tuple[Person, HsContact]] = [(p, p.hs) for p in people if p.hs is not None]
    contacts += [(p, other) for p in people for other in p.extra_contacts]

    def record(x: tuple[Person, HsContact]) -> HsRecord:
        props, history = _contact_record(*x)
        return props, x[1].created, history

    for (_, hs), hs_id in zip(contacts, _hs_bulk(world, "contacts", contacts, record, as_of), strict=True):
        hs.hs_id = hs_id


def _deal_modified(opp: Opportunity) -> datetime:
    assert opp.deal_stage is not None and opp.deal_amount is not None and opp.deal_close is not None
    assert opp.deal_created is not None
    return max(opp.deal_created, opp.deal_stage.since, opp.deal_amount.since, opp.deal_close.since)


def _deal_record(p: Person) -> HsRecord:
    opp = p.opportunity
    assert opp is not None and opp.deal_stage is not None and opp.deal_amount is not None
    assert opp.deal_close is not None and opp.deal_created is not None
    lost = opp.deal_stage.value == "closedlost"
    props = _drop_none({
        "dealname": opp.name, "amount": opp.deal_amount.value, "dealstage": opp.deal_stage.value,
        "pipeline": "default", "closedate": opp.deal_close.value,
        "closed_lost_reason": opp.loss_reason if lost and opp.hubspot_reason else None,
        "hs_analytics_source": p.source.hubspot,
        "salesforceopportunityid": opp.sf_id if opp.in_salesforce else None,
        "hubspot_owner_id": opp.owner.hs_id,
        "hs_lastmodifieddate": hs_datetime(_deal_modified(opp)),
    })
    history = {
        "dealstage": list(opp.deal_stage.changes),
        "amount": [(str(int(v)) if float(v).is_integer() else str(v), t) for v, t in opp.deal_amount.changes],
        "closedate": list(opp.deal_close.changes),
        "hubspot_owner_id": [(str(opp.owner.hs_id), opp.deal_created)],
    }
    return props, opp.deal_created, history


def _write_deals(world: World, people: list[Person], as_of: datetime) -> None:
    deals = [p for p in people if p.opportunity is not None and p.opportunity.deal_created is not None]
    for p, hs_id in zip(deals, _hs_bulk(world, "deals", deals, _deal_record, as_of), strict=True):
        assert p.opportunity is not None
        p.opportunity.hs_id = hs_id


def _engagement_props(p: Person, a: Activity) -> dict[str, Any]:
    at = hs_datetime(a.at)
    base: dict[str, Any] = {"hs_timestamp": at, "hubspot_owner_id": a.owner.hs_id, "hs_lastmodifieddate": at}
    body = f"{a.subject} ({p.first} {p.last}, {p.company_name})"
    if a.kind == "task":
        base.update(hs_task_subject=a.subject, hs_task_body=body, hs_task_status="COMPLETED",
                    hs_task_priority="MEDIUM", hs_task_type="TODO", hs_task_completion_date=at)
    elif a.kind == "call":
        base.update(hs_call_title=a.subject, hs_call_body=body, hs_call_duration=a.minutes * 60_000,
                    hs_call_direction="OUTBOUND", hs_call_disposition="Connected", hs_call_status="COMPLETED")
    elif a.kind == "email":
        base.update(hs_email_subject=a.subject, hs_email_text=body, hs_email_direction="EMAIL",
                    hs_email_status="SENT")
    else:
        base.update(hs_meeting_title=a.subject, hs_meeting_body=body, hs_meeting_start_time=at,
                    hs_meeting_end_time=hs_datetime(a.at + timedelta(minutes=a.minutes)),
                    hs_meeting_outcome="COMPLETED")
    return base


def _write_engagements(world: World, people: list[Person], as_of: datetime) -> None:
    for kind, object_name in HS_TYPE.items():
        items = [(p, a) for p in people for a in p.activities if a.system == "hubspot" and a.kind == kind]
        ids = _hs_bulk(world, object_name, items, lambda x: (_engagement_props(*x), x[1].at, None), as_of)
        for (_, a), hs_id in zip(items, ids, strict=True):
            a.hs_id = hs_id


def _write_associations(world: World, people: list[Person]) -> None:
    for start in range(0, len(people), CHUNK):
        world.hs_associate(_association_pairs(people[start:start + CHUNK]))


def _association_pairs(people: Sequence[Person]) -> list[tuple[str, int, str, int, int]]:
    pairs: list[tuple[str, int, str, int, int]] = []
    for p in people:
        hs = p.hs
        if hs is None:
            continue
        if p.company is not None:
            pairs.append(("contacts", hs.hs_id, "companies", p.company.hs_id,
                          HS_ASSOCIATION_TYPES[("contacts", "companies")]))
        opp = p.opportunity
        deal = opp if opp is not None and opp.deal_created is not None else None
        if deal is not None:
            pairs.append(("deals", deal.hs_id, "contacts", hs.hs_id, HS_ASSOCIATION_TYPES[("deals", "contacts")]))
            if p.company is not None:
                pairs.append(("deals", deal.hs_id, "companies", p.company.hs_id,
                              HS_ASSOCIATION_TYPES[("deals", "companies")]))
        for a in p.activities:
            if a.system != "hubspot":
                continue
            kind = HS_TYPE[a.kind]
            pairs.append((kind, a.hs_id, "contacts", hs.hs_id, HS_ASSOCIATION_TYPES[(kind, "contacts")]))
            if deal is not None and deal.deal_created is not None and a.at >= deal.deal_created:
                pairs.append((kind, a.hs_id, "deals", deal.hs_id, HS_ASSOCIATION_TYPES[(kind, "deals")]))
    return pairs
