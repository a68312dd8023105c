"""A person's unified fields from the records linked into it (pure).

Each record is read into a *view* (its values, typed; ``BadRecord`` when one cannot be
read), then the views are combined with a fixed precedence:

=========================================  =================================================
field                                      first non-empty of
=========================================  =================================================
email, first/last name, company, title,    Salesforce contact, Salesforce lead, HubSpot
country, source, disqualified_reason,      contact (Sales keeps who a person is once it
custom attributes                          holds them)
score, channel, offer                      HubSpot contact, Salesforce contact, Salesforce
                                           lead (Marketing owns scoring and attribution)
campaign                                   the HubSpot ``campaign`` property, matched to a
                                           campaign by name; else the person's earliest
                                           Salesforce campaign membership
salesforce_status / _converted             the person's primary lead
hubspot_lifecyclestage / _lead_status      the HubSpot contact
salesforce_owner_id / hubspot_owner_id     contact (else lead) OwnerId / hubspot_owner_id
created_at / modified_at                   earliest creation / latest change of any record
=========================================  =================================================

Both systems' raw status values stay side by side (``salesforce_status``,
``hubspot_lifecyclestage``, ``hubspot_lead_status``) because the audit compares them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from detente.normalize import values as v
from detente.normalize.batches import Key, RawRow
from detente.normalize.identity import CONTACT, HUBSPOT, LEAD, Cluster
from detente.normalize.links import props, sf_modified
from detente.normalize.mapping import FieldMapping, Mappings

View = dict[str, Any]
_READERS: Mapping[str, Callable[[Mapping[str, Any], str], Any]] = {
    "text": v.text, "number": v.number, "boolean": v.boolean, "datetime": v.instant,
}


def read_view(row: RawRow, maps: Mappings) -> View:
    """The values of one lead, contact or HubSpot contact that a person is made of."""
    if row.system == "salesforce":
        d = row.data
        view: View = {
            "email": v.normal_email(v.text(d, "Email")), "first_name": v.text(d, "FirstName"),
            "last_name": v.text(d, "LastName"), "owner": v.salesforce_id(d, "OwnerId"),
            "created": v.instant(d, "CreatedDate"), "modified": sf_modified(d),
        }
        if row.object == "Lead":
            view["status"] = v.text(d, "Status")
            view["converted"] = v.boolean(d, "IsConverted")
        for m in maps.all():
            name = m.salesforce_field(row.object)
            if name is not None:
                view[f"m:{m.name}"] = m.translate("salesforce", _READERS[m.type](d, name))
        return view
    p = props(row)
    view = {
        "email": v.normal_email(v.text(p, "email")), "first_name": v.text(p, "firstname"),
        "last_name": v.text(p, "lastname"), "owner": v.hubspot_id(p.get("hubspot_owner_id"), "hubspot_owner_id"),
        "created": v.instant(p, "createdate") or v.instant(row.data, "createdAt"),
        "modified": v.instant(p, "lastmodifieddate") or v.instant(p, "hs_lastmodifieddate") or row.modified_at,
        "lifecyclestage": v.text(p, "lifecyclestage"), "lead_status": v.text(p, "hs_lead_status"),
        "campaign": v.text(p, "campaign"),
    }
    for m in maps.all():
        if m.hubspot:
            view[f"m:{m.name}"] = m.translate("hubspot", _READERS[m.type](p, m.hubspot))
    return view


_TIMES = ("created", "modified")


def store_view(view: View) -> dict[str, Any]:
    """A view as JSON (``record_links.view``): datetimes as ISO text."""
    return {k: (x.isoformat() if isinstance(x, datetime) else x) for k, x in view.items()}


def load_view(stored: dict[str, Any]) -> View:
    """A view back from JSON. Mapped datetimes stay text, which ``encode_attribute`` reads."""
    view = dict(stored)
    for name in _TIMES:
        if isinstance(view.get(name), str):
            view[name] = datetime.fromisoformat(view[name])
    return view


@dataclass(frozen=True)
class Membership:
    """A Salesforce campaign membership of one of the person's leads or contacts."""

    campaign_id: int
    at: datetime | None
    record_id: str


@dataclass
class Context:
    """What a person's fields are looked up in: owners, campaigns and memberships."""

    salesforce_owners: Mapping[str, int] = field(default_factory=dict)
    hubspot_owners: Mapping[str, int] = field(default_factory=dict)
    campaigns_by_name: Mapping[str, int] = field(default_factory=dict)
    maps: Mappings | None = None


def _first(views: Sequence[View | None], name: str) -> Any:
    for view in views:
        if view is not None and view.get(name) is not None:
            return view[name]
    return None


def person_row(cluster: Cluster, views: Mapping[Key, View], memberships: Sequence[Membership],
               ctx: Context) -> dict[str, Any]:
    """The ``people`` columns for one cluster (links, fields and attributes; not the
    activity counts, which follow the activities)."""
    from detente.rules.fields import ValueType, encode_attribute

    lead = views.get(Key(*LEAD, cluster.lead)) if cluster.lead else None
    contact = views.get(Key(*CONTACT, cluster.contact)) if cluster.contact else None
    hubspot = views.get(Key(*HUBSPOT, cluster.hubspot)) if cluster.hubspot else None
    sf_first = [contact, lead, hubspot]
    hs_first = [hubspot, contact, lead]
    maps = ctx.maps
    assert maps is not None

    def mapped(m: FieldMapping) -> Any:
        return _first(hs_first if m.hubspot_first else sf_first, f"m:{m.name}")

    builtin = {name: mapped(m) for name, m in maps.builtins.items()}
    email = _first(sf_first, "email")
    campaign_id = None
    name = hubspot.get("campaign") if hubspot else None
    if name:
        campaign_id = ctx.campaigns_by_name.get(name.casefold())
    if campaign_id is None and memberships:
        campaign_id = min(memberships, key=lambda m: (m.at is None, m.at, m.record_id)).campaign_id
    sf_owner = _first([contact, lead], "owner")
    hs_owner = hubspot.get("owner") if hubspot else None
    linked = [views[k] for k in cluster.members if k in views]
    created = [x["created"] for x in linked if x.get("created") is not None]
    modified = [x["modified"] for x in linked if x.get("modified") is not None]
    score = builtin.get("score")
    return {
        "email": email,
        "email_domain": v.email_domain(email),
        "first_name": _first(sf_first, "first_name"),
        "last_name": _first(sf_first, "last_name"),
        "company": builtin.get("company"),
        "title": builtin.get("title"),
        "country": builtin.get("country"),
        "source": builtin.get("source"),
        "channel": builtin.get("channel"),
        "offer": builtin.get("offer"),
        "campaign_id": campaign_id,
        "score": float(score) if isinstance(score, int | float) else None,
        "salesforce_lead_id": cluster.lead,
        "salesforce_contact_id": cluster.contact,
        "hubspot_contact_id": cluster.hubspot,
        "salesforce_status": lead.get("status") if lead else None,
        "salesforce_converted": bool(lead.get("converted")) if lead else False,
        "hubspot_lifecyclestage": hubspot.get("lifecyclestage") if hubspot else None,
        "hubspot_lead_status": hubspot.get("lead_status") if hubspot else None,
        "disqualified_reason": builtin.get("disqualified_reason"),
        "salesforce_owner_id": ctx.salesforce_owners.get(sf_owner) if sf_owner else None,
        "hubspot_owner_id": ctx.hubspot_owners.get(hs_owner) if hs_owner else None,
        "created_at": min(created) if created else None,
        "modified_at": max(modified) if modified else None,
        "identity_conflict": cluster.conflict,
        "deleted": False,
        "attributes": {
            m.name: encode_attribute(ValueType(m.type), _first(sf_first, f"m:{m.name}")) for m in maps.custom
        },
    }
