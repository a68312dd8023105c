"""Identity findings: CRM records that claim the same person, or point at one that is gone (pure).

Rules, from what each record says (``record_links``):

- ``duplicate_lead_email``: two or more live Salesforce leads carry one email; open since
  the newest of them was created.
- ``hubspot_contacts_share_lead``: two or more live HubSpot contacts claim one Salesforce
  lead (``salesforceleadid``); open since the newest claimant was created.
- ``hubspot_lead_deleted``: a live HubSpot contact claims a lead that Salesforce deleted;
  open since the deletion was seen.
- ``hubspot_lead_converted``: a live HubSpot contact claims a converted lead and carries no
  ``salesforcecontactid``; open since the conversion.

The owner is the owner of the person holding the first record concerned.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime

from detente.reconcile.facts import Facts, PersonFact, RecordFact
from detente.reconcile.model import IDENTITY, Finding


def _holders(facts: Facts) -> tuple[dict[str, PersonFact], dict[str, PersonFact]]:
    by_lead = {p.salesforce_lead_id: p for p in facts.people.values() if p.salesforce_lead_id}
    by_contact = {p.hubspot_contact_id: p for p in facts.people.values() if p.hubspot_contact_id}
    return by_lead, by_contact


def _finding(facts: Facts, rule: str, subject: str, explanation: str, opened: datetime, now: datetime,
             person: PersonFact | None, leads: list[str], contacts: list[str]) -> Finding:
    owner = facts.owner(person.owner_id) if person is not None else None
    records: dict[str, tuple[str, ...]] = {}
    if leads:
        records["salesforce/Lead"] = tuple(sorted(leads))
    if contacts:
        records["hubspot/contacts"] = tuple(sorted(contacts, key=lambda x: (len(x), x)))
    return Finding(IDENTITY, rule, subject, explanation, min(opened, now), records,
                   person_id=person.id if person is not None else None,
                   email=person.email if person is not None else None,
                   salesforce_id=leads[0] if leads else None, hubspot_id=contacts[0] if contacts else None,
                   team=owner.team if owner is not None else None,
                   owner_email=owner.email if owner is not None else None)


def _created(records: list[RecordFact], now: datetime) -> datetime:
    return max((r.created_at for r in records if r.created_at is not None), default=now)


def identity(facts: Facts, now: datetime) -> Iterator[Finding]:
    by_lead, by_contact = _holders(facts)
    leads = {r.record_id: r for r in facts.records if r.system == "salesforce" and r.object == "Lead"}
    live_leads = [r for r in leads.values() if not r.deleted and not r.merged_into]
    contacts = [r for r in facts.records if r.system == "hubspot" and r.object == "contacts"
                and not r.deleted and not r.merged_into]

    same_email: dict[str, list[RecordFact]] = defaultdict(list)
    for lead in live_leads:
        if lead.email:
            same_email[lead.email].append(lead)
    for group in same_email.values():
        if len(group) > 1:
            ids = sorted(r.record_id for r in group)
            yield _finding(facts, "duplicate_lead_email", "leads:" + ",".join(ids),
                           f"{len(ids)} Salesforce leads ({', '.join(ids)}) share the email {group[0].email}; "
                           "merge them in Salesforce", _created(group, now), now, by_lead.get(ids[0]), ids, [])

    claims: dict[str, list[RecordFact]] = defaultdict(list)
    for contact in contacts:
        if contact.ref_lead:
            claims[contact.ref_lead].append(contact)
    for lead_id, claimants in sorted(claims.items()):
        ids = sorted((r.record_id for r in claimants), key=lambda x: (len(x), x))
        if len(claimants) > 1:
            yield _finding(facts, "hubspot_contacts_share_lead", f"lead:{lead_id}",
                           f"HubSpot contacts {', '.join(ids)} all claim Salesforce lead {lead_id}; "
                           "merge the contacts in HubSpot or correct salesforceleadid",
                           _created(claimants, now), now, by_lead.get(lead_id) or by_contact.get(ids[0]),
                           [lead_id], ids)
        claimed = leads.get(lead_id)
        if claimed is None:
            continue  # not pulled yet: the link may simply be ahead of the pull
        for contact in claimants:
            holder = by_contact.get(contact.record_id)
            if claimed.deleted:
                yield _finding(facts, "hubspot_lead_deleted", f"contact:{contact.record_id}",
                               f"HubSpot contact {contact.record_id} points at Salesforce lead {lead_id}, which "
                               "was deleted; clear salesforceleadid or restore the lead",
                               claimed.seen_at or now, now, holder, [lead_id], [contact.record_id])
            elif claimed.ref_contact and not contact.ref_contact:
                converted = facts.lead_status_since.get(lead_id) or claimed.seen_at or now
                yield _finding(facts, "hubspot_lead_converted", f"contact:{contact.record_id}",
                               f"HubSpot contact {contact.record_id} points at Salesforce lead {lead_id}, converted "
                               f"{converted:%Y-%m-%d %H:%M} UTC into contact {claimed.ref_contact}, and its "
                               "salesforcecontactid is empty; let the connector sync the contact",
                               converted, now, holder, [lead_id], [contact.record_id])
