"""Feedback gaps: outcomes sales never reported back to marketing (pure).

- ``idle_with_sales``: an open lead (not converted, not at a stage that ends the funnel)
  owned by the team the rules' ``feedback`` names, with no activity, status or owner change
  in either CRM for ``idle_with_sales``; opened at the last touch plus that long.
- ``converted_without_opportunity``: a Salesforce lead converted with no opportunity;
  opened at the conversion.
- ``closed_lost_without_reason``: a closed-lost opportunity whose Salesforce Loss_Reason__c
  or whose HubSpot deal's closed_lost_reason is empty; opened at the close.
- ``opportunity_without_source``: a live opportunity with no source in either CRM (LeadSource,
  hs_analytics_source); opened at its creation.
- ``won_not_in_hubspot`` (a disagreement): the Salesforce opportunity closed won while the
  person's HubSpot lifecycle stage still says a stage before customer (sql, opportunity);
  opened at the later of the win and that label.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from detente.reconcile.facts import Facts, OpportunityFact, PersonFact
from detente.reconcile.labels import base_fields, label_since, later_stages
from detente.reconcile.model import DISAGREEMENT, FEEDBACK, Finding
from detente.rules import checked as c

PERSON_OBJECTS = frozenset({"Lead", "Contact", "contacts"})


def terminal_stages(rules: c.Rules) -> frozenset[str]:
    """Stages nothing follows (customer, nurture, disqualified): a lead labelled so is closed."""
    after = later_stages(rules)
    return frozenset(name for name, later in after.items() if not later)


def last_touch(person: PersonFact) -> datetime | None:
    """The latest activity, status or owner change of the person in either CRM (or its creation)."""
    times = [ch.at for ch in person.changes if ch.object in PERSON_OBJECTS]
    times += [a.at for a in person.activities]
    if person.created_at is not None:
        times.append(person.created_at)
    return max(times, default=None)


def idle_with_sales(facts: Facts, rules: c.Rules, now: datetime) -> Iterator[Finding]:
    if rules.feedback is None:
        return
    window, team = rules.feedback.idle_with_sales, rules.feedback.team
    closed = terminal_stages(rules)
    for person in facts.people.values():
        owner = facts.owner(person.owner_id)
        if owner is None or owner.team != team or person.salesforce_converted:
            continue
        labels = person.labels.get("hubspot", frozenset()) | person.labels.get("salesforce", frozenset())
        if labels & closed:
            continue
        touched = last_touch(person)
        if touched is not None and touched + window.calendar > now:
            facts.wake_at(person.id, touched + window.calendar)
        if touched is None or touched + window.calendar > now:
            continue
        yield Finding(FEEDBACK, "idle_with_sales", f"person:{person.id}",
                      f"owned by {owner.email} ({team}); no activity, status or owner change since "
                      f"{touched:%Y-%m-%d %H:%M} UTC, longer than {window}; log the work or report an outcome",
                      touched + window.calendar, **base_fields(person, facts, team))  # type: ignore[arg-type]


def converted_without_opportunity(facts: Facts, rules: c.Rules, now: datetime) -> Iterator[Finding]:
    leads = {r.record_id: r for r in facts.records if r.system == "salesforce" and r.object == "Lead"}
    for person in facts.people.values():
        lead = leads.get(person.salesforce_lead_id or "")
        if not person.salesforce_converted or lead is None or lead.deleted or lead.ref_opportunity:
            continue
        converted = facts.lead_status_since.get(lead.record_id) or lead.seen_at or now
        fields = base_fields(person, facts, rules.feedback.team if rules.feedback else "sales")
        records = dict(fields["records"])  # type: ignore[call-overload]
        if person.salesforce_contact_id:
            records["salesforce/Contact"] = (person.salesforce_contact_id,)
        fields["records"] = records
        yield Finding(FEEDBACK, "converted_without_opportunity", f"person:{person.id}",
                      f"Salesforce lead {lead.record_id} was converted {converted:%Y-%m-%d %H:%M} UTC into contact "
                      f"{person.salesforce_contact_id or lead.ref_contact} with no opportunity; create the "
                      "opportunity or record why there is none", min(converted, now), **fields)  # type: ignore[arg-type]


def _opportunity_fields(opp: OpportunityFact, facts: Facts, team: str | None) -> dict[str, object]:
    person = facts.people.get(opp.person_id) if opp.person_id is not None else None
    owner = facts.owner(opp.owner_id) or (facts.owner(person.owner_id) if person is not None else None)
    records: dict[str, tuple[str, ...]] = {}
    if opp.salesforce_id:
        records["salesforce/Opportunity"] = (opp.salesforce_id,)
    if opp.hubspot_deal_id:
        records["hubspot/deals"] = (opp.hubspot_deal_id,)
    return {"person_id": opp.person_id, "opportunity_id": opp.id,
            "email": person.email if person is not None else None,
            "salesforce_id": opp.salesforce_id, "hubspot_id": opp.hubspot_deal_id, "team": team,
            "owner_email": owner.email if owner is not None else None, "records": records}


def closed_lost_without_reason(facts: Facts, rules: c.Rules, now: datetime) -> Iterator[Finding]:
    team = rules.feedback.team if rules.feedback else "sales"
    for opp in facts.opportunities.values():
        if not opp.is_closed or opp.is_won:
            continue
        empty = []
        if opp.salesforce_id and not opp.salesforce_loss_reason:
            empty.append("Salesforce Loss_Reason__c")
        if opp.hubspot_deal_id and not opp.hubspot_loss_reason:
            empty.append("HubSpot closed_lost_reason")
        if not empty:
            continue
        closed = opp.closed_at or now
        yield Finding(FEEDBACK, "closed_lost_without_reason", f"opportunity:{opp.id}",
                      f"{opp.name or 'the opportunity'} closed lost {closed:%Y-%m-%d %H:%M} UTC with "
                      f"{' and '.join(empty)} empty; record why it was lost", min(closed, now),
                      **_opportunity_fields(opp, facts, team))  # type: ignore[arg-type]


def opportunity_without_source(facts: Facts, rules: c.Rules, now: datetime) -> Iterator[Finding]:
    team = rules.feedback.team if rules.feedback else "sales"
    for opp in facts.opportunities.values():
        if opp.source:
            continue
        created = opp.created_at or now
        yield Finding(FEEDBACK, "opportunity_without_source", f"opportunity:{opp.id}",
                      f"{opp.name or 'the opportunity'} (created {created:%Y-%m-%d %H:%M} UTC) has no source, so its "
                      "bookings count for no channel; set LeadSource", min(created, now),
                      **_opportunity_fields(opp, facts, team))  # type: ignore[arg-type]


def won_not_in_hubspot(facts: Facts, rules: c.Rules, now: datetime) -> Iterator[Finding]:
    """HubSpot still shows a stage before customer after the Salesforce opportunity closed won."""
    if "customer" not in rules.stages:
        return
    before = [name for name, later in later_stages(rules).items() if "customer" in later and name != "customer"]
    for opp in facts.opportunities.values():
        if not opp.is_won or not opp.salesforce_id or opp.person_id is None:
            continue
        person = facts.people.get(opp.person_id)
        if person is None or person.hubspot_contact_id is None:
            continue
        hs = person.labels.get("hubspot", frozenset())
        if "customer" in hs:
            continue
        stuck = [s for s in before if s in hs]
        if not stuck:
            continue
        stage = max(stuck, key=list(rules.stages).index)
        since = label_since(person, rules.stages[stage], "hubspot")
        won = opp.closed_at or now
        fields = _opportunity_fields(opp, facts, rules.stages["customer"].owner)
        fields["records"] = {"salesforce/Opportunity": (opp.salesforce_id,),
                             "hubspot/contacts": (person.hubspot_contact_id,)}
        fields["hubspot_id"] = person.hubspot_contact_id
        yield Finding(DISAGREEMENT, "won_not_in_hubspot", f"opportunity:{opp.id}",
                      f"Salesforce opportunity {opp.salesforce_id} closed won {won:%Y-%m-%d %H:%M} UTC while "
                      f"HubSpot still says {stage} ({person.hubspot_lifecyclestage}); move the contact to customer",
                      min(max(won, since or won), now), **fields)  # type: ignore[arg-type]


def feedback_gaps(facts: Facts, rules: c.Rules, now: datetime) -> Iterator[Finding]:
    yield from idle_with_sales(facts, rules, now)
    yield from converted_without_opportunity(facts, rules, now)
    yield from closed_lost_without_reason(facts, rules, now)
    yield from opportunity_without_source(facts, rules, now)
    yield from won_not_in_hubspot(facts, rules, now)
