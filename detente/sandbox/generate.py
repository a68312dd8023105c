"""Generate the sandbox's world and its ground-truth manifest.

``generate_world(world, dataset=..., size=..., seed=..., as_of=...)`` fills a ``World`` with
one company's Salesforce org and HubSpot portal as they look at ``as_of`` and returns the
manifest: what is in them, who is who across the two systems, and every planted problem
with the moment it became true. The same parameters give the same records (ids included)
and the same manifest; nothing reads the clock.

Datasets
--------
``empty``: the owners only (see below), in both systems. ``demo``: ``size`` people who
arrived over the 12 months before ``as_of`` through sources, channels, offers and
campaigns, and moved through the funnel in both CRMs as HubSpot's native Salesforce
connector mirrors them:

- owners with one email in both systems: a marketing team, SDRs and AEs (about one rep
  per 150 people), partner users (``PowerPartner``), the integration user and one SDR who
  left 75 days before ``as_of`` (inactive user, archived owner; his open leads were
  reassigned). ``User.Department`` and the owners' ``teams`` say Sales, Marketing or Partner.
- companies (Account and HubSpot company with ``salesforceaccountid``) and campaigns (one
  per inbound source, offer and quarter, monthly from 5,000 people up) with costs.
- people: a HubSpot contact from a form (subscriber or lead) → a Salesforce lead created
  by the connector → MQL when score >= the bar and the email domain is a business one
  (labelled in HubSpot, mirrored as Status "Marketing Qualified") → handed to an SDR
  (owner change in both) → first contact and more activities (HubSpot calls, emails,
  meetings and tasks; Salesforce Tasks and Events; about half the HubSpot ones copied
  into Salesforce by the connector) → Sales Qualified → converted (Contact, Opportunity,
  OpportunityContactRole; HubSpot deal; lifecycle opportunity) → won (customer) or lost
  with a reason; or disqualified with a reason after at least the agreed activities, or
  nurtured (back to marketing). Quality depends on offer and source: demo requests and
  referrals score higher and win more than ebook downloads. Some stay subscribers in
  HubSpot only; about 8% are outbound leads in Salesforce only; about 1% have an older
  duplicate HubSpot contact merged into theirs. Recent arrivals have clocks running.
- field history: LeadHistory (Status, OwnerId), OpportunityFieldHistory (StageName,
  Amount, CloseDate), HubSpot history of lifecyclestage, hs_lead_status, hubspot_owner_id,
  hubspotscore, dealstage, amount, closedate; ``hs_lifecyclestage_*_date`` at stage entry;
  created and last-modified times consistent with them. Every event is at or before
  ``as_of``; only planned dates (an open opportunity's CloseDate and its deal's closedate, a
  campaign's EndDate) may lie after it.

``knobs`` (``gen_people.Knobs``) sets the clean world's shares: outbound people (0.08),
ebook/webinar arrivals who start as subscribers (0.5) and of those who later become leads
(0.45), HubSpot activities the connector copies (0.5), people with a merged duplicate (0.01).

Problem kinds (against ``detente.agreement.REFERENCE``)
-------------------------------------------------------
Each planted person has exactly one problem and everyone else none; ``shares`` sets the
share of people per kind (default ``DEFAULT_SHARES``, at least two of each from 100 people).
"Labelled MQL" means HubSpot lifecyclestage marketingqualifiedlead or Salesforce lead
Status "Marketing Qualified"; the definition is evaluated on the current score and email.

===============================  ==============================================================
kind                             true when / ``true_as_of``
===============================  ==============================================================
definition_drift                 labelled MQL in HubSpot and/or Salesforce but score < bar or a
                                 free domain / the later of the label and the definition failing
missed_label                     the definition has held for the grace period, HubSpot says
                                 subscriber or lead, Salesforce (if any) Open - Not Contacted /
                                 since + grace
stage_disagreement               HubSpot lifecycle and Salesforce Status form an INCOMPATIBLE
                                 pair / when the later of the two was set
mql_not_handed_over              MQL (definition holds), no sales owner by the hand-over SLA /
                                 the due time (first label + handoff business hours)
mql_handed_over_late             a sales owner only after the hand-over SLA / the due time
first_contact_missing            handed over, no activity by the first-contact SLA / due time
first_contact_late               first activity after the first-contact SLA / due time
disqualified_too_early           disqualified after fewer activities than agreed / the moment
closed_lost_without_reason       closed lost with Loss_Reason__c and/or closed_lost_reason
                                 empty / the close
won_not_in_hubspot               Salesforce opportunity Closed Won, HubSpot lifecycle still
                                 salesqualifiedlead or opportunity / the win
converted_without_opportunity    converted lead with no ConvertedOpportunityId / the conversion
idle_with_sales                  open lead owned by sales, no activity, status or owner change
                                 for idle_with_sales_days / last touch + that many days
duplicate_lead_email             two live Salesforce leads with one email / the second's creation
hubspot_contacts_share_lead      two HubSpot contacts with one salesforceleadid / the second's
hubspot_lead_deleted             salesforceleadid points at a deleted lead / the deletion
hubspot_lead_converted           salesforceleadid points at a converted lead and
                                 salesforcecontactid is empty / the conversion
===============================  ==============================================================

Fine print, as the clocks are read: the hand-over clock starts at the first MQL label in
either system and runs only while the definition holds (drift is reported instead); the
first-contact clock starts when a sales owner first appears (either system) for a person
who was ever labelled MQL, and outbound leads have none; the outcome clock (an outcome
within ``outcome_window_days`` of the first sales owner) is kept by every journey, planted
or clean, whose problem is not about it; "open" leads are those with Status
Open - Not Contacted, Marketing Qualified, Working - Contacted or Sales Qualified; a
nurtured person goes back to a marketing owner with hs_lead_status BAD_TIMING; a duplicate
lead (same email) carries no score and stays with marketing, so it breaks no other rule.

Activities count once across systems: a connector copy (a Salesforce Task created by the
integration user with the subject, owner and completion time of a HubSpot engagement) is
the same activity. A person's "touches" are activities, status changes and owner changes.

Manifest
--------
A JSON-serialisable dict:

- ``format`` (1), ``generator``: dataset, size, seed, as_of, shares, knobs.
- ``agreement``: the numbers used (``dataclasses.asdict(REFERENCE)``).
- ``counts``: live records per object per system (``World.counts()``).
- ``owners``: key, email, team, role, active, salesforce_user_id, hubspot_owner_id.
- ``people``: one entry per real person: key, email, origin (inbound | outbound),
  salesforce_lead_id (live), salesforce_contact_id, salesforce_opportunity_id,
  hubspot_contact_id (the surviving contact), hubspot_deal_id, hubspot_merged_ids
  (merged-away contact ids), duplicate_salesforce_lead_ids, duplicate_hubspot_contact_ids,
  deleted_salesforce_lead_id, and ``hubspot_claims``: for each live HubSpot contact of the
  person, the Salesforce lead and contact ids it carries.
- ``connector_copies``: Salesforce Task id → {"type": engagement object, "id": its id}.
- ``problems``: kind, person (key), ``salesforce`` and ``hubspot`` (object → sorted record
  ids, e.g. {"Lead": [...]} and {"contacts": [...]}; HubSpot ids as strings), team, owner
  (email, salesforce_user_id, hubspot_owner_id), detail (the values that make it true),
  true_as_of (ISO, UTC, <= as_of).
- ``problem_counts``: kind → count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from detente.agreement import REFERENCE, Agreement
from detente.sandbox.gen_model import Owner, Person, Problem
from detente.sandbox.gen_people import (
    NEEDS_BUSINESS,
    PLANTERS,
    Knobs,
    add_merged_duplicate,
    assign_campaign,
    clean_journey,
    draw_arrival,
    make_campaigns,
    make_companies,
    make_ctx,
    make_person,
    plant,
)
from detente.sandbox.gen_write import write_world
from detente.sandbox.store import World

PROBLEM_KINDS: tuple[str, ...] = tuple(PLANTERS)

DEFAULT_SHARES: dict[str, float] = {
    "definition_drift": 0.02,
    "missed_label": 0.015,
    "stage_disagreement": 0.01,
    "mql_not_handed_over": 0.01,
    "mql_handed_over_late": 0.015,
    "first_contact_missing": 0.01,
    "first_contact_late": 0.015,
    "disqualified_too_early": 0.01,
    "closed_lost_without_reason": 0.01,
    "won_not_in_hubspot": 0.005,
    "converted_without_opportunity": 0.005,
    "idle_with_sales": 0.01,
    "duplicate_lead_email": 0.005,
    "hubspot_contacts_share_lead": 0.005,
    "hubspot_lead_deleted": 0.003,
    "hubspot_lead_converted": 0.003,
}
MIN_PER_KIND = 2  # from MIN_PER_KIND_FROM people up, so that small worlds show every kind
MIN_PER_KIND_FROM = 100
DATASETS = ("empty", "demo")


def plant_counts(size: int, shares: Mapping[str, float]) -> dict[str, int]:
    """How many people get each planted problem."""
    unknown = sorted(set(shares) - set(PROBLEM_KINDS))
    if unknown:
        raise ValueError(f"unknown problem kinds {unknown}; expected some of {list(PROBLEM_KINDS)}")
    counts = {}
    for kind in PROBLEM_KINDS:
        share = shares.get(kind, 0.0)
        if not 0 <= share <= 1:
            raise ValueError(f"share of {kind} must be between 0 and 1, got {share}")
        n = round(share * size)
        if share > 0 and size >= MIN_PER_KIND_FROM:
            n = max(n, MIN_PER_KIND)
        counts[kind] = n
    if sum(counts.values()) > size // 2:
        raise ValueError(f"planted problems ({sum(counts.values())}) would exceed half of {size} people")
    return counts


def generate_world(
    world: World, *, dataset: str, size: int, seed: int, as_of: datetime,
    shares: Mapping[str, float] | None = None, knobs: Knobs | None = None,
    agreement: Agreement = REFERENCE,
) -> dict[str, Any]:
    """Fill ``world`` for (dataset, size, seed, as_of) and return the manifest."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {list(DATASETS)}")
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    as_of = as_of.astimezone(UTC).replace(microsecond=0)
    shares = dict(DEFAULT_SHARES if shares is None else shares)
    knobs = knobs or Knobs()
    people_count = size if dataset == "demo" else 0
    ctx, fake = make_ctx(seed=seed, size=people_count, as_of=as_of, agreement=agreement, knobs=knobs)
    people: list[Person] = []
    if people_count:
        make_companies(ctx, fake, max(20, people_count // 3))
        make_campaigns(ctx, people_count)
        counts = plant_counts(people_count, shares)
        order = list(range(people_count))
        ctx.rng.shuffle(order)
        kinds: dict[int, str] = {}
        cursor = 0
        for kind, n in counts.items():
            for index in order[cursor:cursor + n]:
                kinds[index] = kind
            cursor += n
        for index in range(people_count):
            planted = kinds.get(index)
            if planted is not None:
                p = make_person(ctx, index, inbound=True, business=True if planted in NEEDS_BUSINESS else None)
                plant(ctx, p, planted)
            else:
                p = make_person(ctx, index, inbound=False, business=None)
                p.arrived = draw_arrival(ctx)
                assign_campaign(ctx, p)
                clean_journey(ctx, p)
                if p.hs is not None and ctx.rng.random() < knobs.merges:
                    add_merged_duplicate(ctx, p)
            people.append(p)
    campaigns = [c for source in ctx.campaigns.values() for c in source]
    written = write_world(world, ctx, people, ctx.companies, campaigns)
    return {
        "format": 1,
        "generator": {
            "dataset": dataset, "size": size, "seed": seed, "as_of": _iso(as_of),
            "shares": shares, "knobs": dataclasses.asdict(knobs),
        },
        "agreement": _jsonable(dataclasses.asdict(agreement)),
        "counts": world.counts(),
        "owners": [_owner_entry(o) for o in ctx.owners.all()],
        "people": [_person_entry(p) for p in people],
        "connector_copies": {sf: {"type": kind, "id": str(hs)} for sf, kind, hs in written.connector_copies},
        "problems": [_problem_entry(p, problem) for p in people for problem in p.problems],
        "problem_counts": {k: sum(1 for p in people for x in p.problems if x.kind == k) for k in PROBLEM_KINDS},
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _owner_entry(o: Owner) -> dict[str, Any]:
    return {"key": o.key, "email": o.email, "team": o.team, "role": o.role,
            "active": o.deactivated is None, "salesforce_user_id": o.sf_id, "hubspot_owner_id": str(o.hs_id)}


def _person_entry(p: Person) -> dict[str, Any]:
    lead = p.lead
    live_lead = lead.sf_id if lead is not None and lead.deleted is None else None
    opp = p.opportunity
    claims: dict[str, dict[str, str | None]] = {}
    for hs in [p.hs, *p.extra_contacts]:
        if hs is None or hs.merged_into is not None:
            continue
        claims[str(hs.hs_id)] = {
            "salesforce_lead_id": hs.lead.sf_id if hs.lead is not None else None,
            "salesforce_contact_id": p.sf_contact_id if hs is p.hs and hs.contact_linked else None,
        }
    return {
        "key": p.key,
        "email": p.email,
        "origin": p.origin,
        "salesforce_lead_id": live_lead,
        "salesforce_contact_id": p.sf_contact_id or None,
        "salesforce_opportunity_id": opp.sf_id if opp is not None and opp.in_salesforce else None,
        "hubspot_contact_id": str(p.hs.hs_id) if p.hs is not None else None,
        "hubspot_deal_id": str(opp.hs_id) if opp is not None and opp.deal_created is not None else None,
        "hubspot_merged_ids": [str(c.hs_id) for c in p.extra_contacts if c.merged_into is not None],
        "duplicate_salesforce_lead_ids": [x.sf_id for x in p.extra_leads if x.deleted is None],
        "duplicate_hubspot_contact_ids": [str(c.hs_id) for c in p.extra_contacts if c.merged_into is None],
        "deleted_salesforce_lead_id": lead.sf_id if lead is not None and lead.deleted is not None else None,
        "hubspot_claims": claims,
    }


PERSON_KINDS = frozenset({
    "definition_drift", "missed_label", "stage_disagreement", "mql_not_handed_over",
    "mql_handed_over_late", "first_contact_missing", "first_contact_late", "disqualified_too_early",
    "idle_with_sales",
})


def problem_records(kind: str, p: Person) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The records a problem is about: (Salesforce object → ids, HubSpot object → ids)."""
    sf: dict[str, list[str]] = {}
    hs: dict[str, list[str]] = {}
    lead, opp, contact = p.lead, p.opportunity, p.hs
    if kind in PERSON_KINDS:
        if lead is not None and lead.deleted is None:
            sf["Lead"] = [lead.sf_id]
        if contact is not None:
            hs["contacts"] = [str(contact.hs_id)]
    elif kind == "closed_lost_without_reason":
        assert opp is not None
        sf["Opportunity"] = [opp.sf_id]
        if opp.deal_created is not None:
            hs["deals"] = [str(opp.hs_id)]
    elif kind == "won_not_in_hubspot":
        assert opp is not None and contact is not None
        sf["Opportunity"] = [opp.sf_id]
        hs["contacts"] = [str(contact.hs_id)]
    elif kind == "converted_without_opportunity":
        assert lead is not None and contact is not None
        sf["Lead"] = [lead.sf_id]
        sf["Contact"] = [p.sf_contact_id]
        hs["contacts"] = [str(contact.hs_id)]
    elif kind == "duplicate_lead_email":
        assert lead is not None
        sf["Lead"] = sorted([lead.sf_id, *(x.sf_id for x in p.extra_leads)])
    elif kind == "hubspot_contacts_share_lead":
        assert lead is not None and contact is not None
        sf["Lead"] = [lead.sf_id]
        hs["contacts"] = sorted([str(contact.hs_id), *(str(c.hs_id) for c in p.extra_contacts)])
    elif kind in ("hubspot_lead_deleted", "hubspot_lead_converted"):
        assert lead is not None and contact is not None
        sf["Lead"] = [lead.sf_id]
        hs["contacts"] = [str(contact.hs_id)]
    else:
        raise ValueError(f"no records rule for {kind}")
    return sf, hs


def _problem_entry(p: Person, problem: Problem) -> dict[str, Any]:
    sf, hs = problem_records(problem.kind, p)
    owner = problem.owner
    return {
        "kind": problem.kind,
        "person": p.key,
        "salesforce": sf,
        "hubspot": hs,
        "team": problem.team,
        "owner": None if owner is None else {
            "email": owner.email, "salesforce_user_id": owner.sf_id, "hubspot_owner_id": str(owner.hs_id)},
        "detail": problem.detail,
        "true_as_of": _iso(problem.true_as_of),
    }
