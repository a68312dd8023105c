"""What each CRM record says about whom it belongs to (``record_links``): read from the raw
record (pure), stored, and compared with what was stored before.

A lead carries its email and, once converted, its contact and opportunity; a HubSpot contact
its email, the Salesforce lead and contact the native connector wrote onto it, and the
contact it was merged into; a contact role joins an opportunity and a contact; a campaign
member a campaign and a lead or contact; a deal the opportunity it mirrors. ``tracked``
keeps status, stage and owner values so that a change no history row explains can be seen.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from detente.normalize import values as v
from detente.normalize.batches import LINKS, Key, RawRow, chunks, group_keys, upsert_many

# Status, stage and owner fields whose changes become transitions, per object.
TRACKED: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("salesforce", "Lead"): ("Status", "OwnerId"),
    ("salesforce", "Contact"): ("OwnerId",),
    ("salesforce", "Opportunity"): ("StageName", "OwnerId"),
    ("hubspot", "contacts"): ("lifecyclestage", "hs_lead_status", "hubspot_owner_id"),
    ("hubspot", "deals"): ("dealstage", "hubspot_owner_id"),
}
PEOPLE_OBJECTS: tuple[tuple[str, str], ...] = (
    ("salesforce", "Lead"), ("salesforce", "Contact"), ("hubspot", "contacts"))
DEAL_OBJECTS: tuple[tuple[str, str], ...] = (("salesforce", "Opportunity"), ("hubspot", "deals"))


@dataclass(frozen=True)
class Link:
    """One row of ``record_links``."""

    key: Key
    email: str | None = None
    ref_lead: str | None = None
    ref_contact: str | None = None
    ref_opportunity: str | None = None
    ref_campaign: str | None = None
    is_primary: bool = False
    created_at: datetime | None = None
    deleted: bool = False
    merged_into: str | None = None
    tracked: dict[str, str | None] = field(default_factory=dict)
    seen_at: datetime | None = None
    view: dict[str, Any] = field(default_factory=dict)

    def row(self, pending: bool) -> dict[str, Any]:
        return {
            "system": self.key.system, "object": self.key.object, "record_id": self.key.record_id,
            "email": self.email, "ref_lead": self.ref_lead, "ref_contact": self.ref_contact,
            "ref_opportunity": self.ref_opportunity, "ref_campaign": self.ref_campaign,
            "is_primary": self.is_primary, "created_at": self.created_at, "deleted": self.deleted,
            "merged_into": self.merged_into, "tracked": self.tracked, "seen_at": self.seen_at, "view": self.view,
            "pending": pending,
        }


def props(row: RawRow) -> Mapping[str, Any]:
    """A HubSpot record's properties (an empty mapping when there are none)."""
    found = row.data.get("properties")
    if found is None:
        return {}
    if not isinstance(found, Mapping):
        raise v.BadRecord("properties: expected an object, got " + v.shape(found))
    return found


def associations(row: RawRow, to_object: str) -> list[str]:
    """Ids of the records a HubSpot record is associated with, in id order."""
    found = row.data.get("associations")
    if found is None:
        return []
    if not isinstance(found, Mapping):
        raise v.BadRecord("associations: expected an object, got " + v.shape(found))
    ids = found.get(to_object) or []
    if not isinstance(ids, list):
        raise v.BadRecord(f"associations.{to_object}: expected a list, got {v.shape(ids)}")
    out = [v.hubspot_id(i, f"associations.{to_object}") for i in ids]
    return sorted({i for i in out if i is not None}, key=v.id_order)


def tracked_values(row: RawRow, source: Mapping[str, Any]) -> dict[str, str | None]:
    return {name: v.text(source, name) for name in TRACKED.get((row.system, row.object), ())}


def sf_modified(data: Mapping[str, Any]) -> datetime | None:
    return v.instant(data, "LastModifiedDate") or v.instant(data, "SystemModstamp")


def hs_created(row: RawRow) -> datetime | None:
    p = props(row)
    return v.instant(p, "createdate") or v.instant(p, "hs_createdate") or v.instant(row.data, "createdAt")


def read_link(row: RawRow) -> Link:
    """The link facts of one raw record. Raises ``BadRecord`` for a live record whose
    fields cannot be read; a deleted record yields what can be read of it."""
    try:
        return _read_link(row)
    except v.BadRecord:
        if not row.deleted:
            raise
        return Link(row.key, deleted=True, merged_into=row.merged_into, seen_at=row.modified_at)


def _read_link(row: RawRow) -> Link:
    key, d = row.key, row.data
    common: dict[str, Any] = {"deleted": row.deleted, "merged_into": row.merged_into, "seen_at": row.modified_at}
    if row.system == "salesforce":
        created = v.instant(d, "CreatedDate")
        if row.object == "Lead":
            return Link(key, email=v.normal_email(v.text(d, "Email")),
                        ref_contact=v.salesforce_id(d, "ConvertedContactId"),
                        ref_opportunity=v.salesforce_id(d, "ConvertedOpportunityId"),
                        created_at=created, tracked=tracked_values(row, d), **common)
        if row.object == "Contact":
            return Link(key, email=v.normal_email(v.text(d, "Email")), created_at=created,
                        tracked=tracked_values(row, d), **common)
        if row.object == "OpportunityContactRole":
            return Link(key, ref_contact=v.salesforce_id(d, "ContactId"),
                        ref_opportunity=v.salesforce_id(d, "OpportunityId"),
                        is_primary=bool(v.boolean(d, "IsPrimary")), created_at=created, **common)
        if row.object == "CampaignMember":
            return Link(key, ref_lead=v.salesforce_id(d, "LeadId"), ref_contact=v.salesforce_id(d, "ContactId"),
                        ref_campaign=v.salesforce_id(d, "CampaignId"),
                        created_at=v.instant(d, "FirstRespondedDate") or created, **common)
        if row.object == "Opportunity":
            return Link(key, created_at=created, tracked=tracked_values(row, d), **common)
        raise ValueError(f"no link facts for salesforce {row.object}")
    p = props(row)
    if row.object == "contacts":
        return Link(key, email=v.normal_email(v.text(p, "email")),
                    ref_lead=v.salesforce_id(p, "salesforceleadid"),
                    ref_contact=v.salesforce_id(p, "salesforcecontactid"),
                    created_at=hs_created(row), tracked=tracked_values(row, p), **common)
    if row.object == "deals":
        return Link(key, ref_opportunity=v.salesforce_id(p, "salesforceopportunityid"),
                    created_at=hs_created(row), tracked=tracked_values(row, p), **common)
    raise ValueError(f"no link facts for hubspot {row.object}")


# -- the table ------------------------------------------------------------------------------


# Everything but the tracked values (only reading a record compares them) and the view.
_LIGHT = [c for c in LINKS.c if c.name not in ("tracked", "seen_at", "pending", "view")]


def _from_row(r: Any) -> Link:
    mapping = r._mapping
    return Link(Key(r.system, r.object, r.record_id), r.email, r.ref_lead, r.ref_contact, r.ref_opportunity,
                r.ref_campaign, bool(r.is_primary), r.created_at, bool(r.deleted), r.merged_into,
                dict(mapping.get("tracked") or {}), mapping.get("seen_at"), dict(mapping.get("view") or {}))


def load(conn: Connection, keys: Iterable[Key], *, light: bool = False) -> dict[Key, Link]:
    """Links by key; ``light`` leaves out the tracked values (a linking pass needs none)."""
    columns = _LIGHT if light else [LINKS]
    out: dict[Key, Link] = {}
    for (system, object_name), group in group_keys(keys).items():
        for part in chunks(sorted({k.record_id for k in group})):
            for r in conn.execute(select(*columns).where(
                    LINKS.c.system == system, LINKS.c.object == object_name, LINKS.c.record_id.in_(part))):
                link = _from_row(r)
                out[link.key] = link
    return out


def views(conn: Connection, keys: Iterable[Key]) -> dict[Key, dict[str, Any]]:
    """The stored views of these records."""
    out: dict[Key, dict[str, Any]] = {}
    for (system, object_name), group in group_keys(keys).items():
        for part in chunks(sorted({k.record_id for k in group})):
            for r in conn.execute(select(LINKS.c.record_id, LINKS.c.view).where(
                    LINKS.c.system == system, LINKS.c.object == object_name, LINKS.c.record_id.in_(part))):
                out[Key(system, object_name, r.record_id)] = dict(r.view or {})
    return out


def find(conn: Connection, *conditions: Any, light: bool = False) -> list[Link]:
    return [_from_row(r) for r in conn.execute(select(*(_LIGHT if light else [LINKS])).where(*conditions))]


def find_keys(conn: Connection, *conditions: Any) -> list[Key]:
    return [Key(r.system, r.object, r.record_id)
            for r in conn.execute(select(LINKS.c.system, LINKS.c.object, LINKS.c.record_id).where(*conditions))]


def save(conn: Connection, links: Sequence[Link], *, pending: bool) -> None:
    upsert_many(conn, LINKS, [link.row(pending) for link in links], ["system", "object", "record_id"])


def set_pending(conn: Connection, keys: Iterable[Key], pending: bool = True) -> None:
    for (system, object_name), group in group_keys(keys).items():
        for part in chunks(sorted({k.record_id for k in group})):
            conn.execute(update(LINKS).where(
                LINKS.c.system == system, LINKS.c.object == object_name, LINKS.c.record_id.in_(part),
                LINKS.c.pending.is_(not pending),
            ).values(pending=pending))


def pending_keys(conn: Connection, objects: Sequence[tuple[str, str]], limit: int) -> list[Key]:
    out: list[Key] = []
    for system, object_name in objects:
        if len(out) >= limit:
            break
        out += [Key(system, object_name, r.record_id) for r in conn.execute(
            select(LINKS.c.record_id).where(LINKS.c.system == system, LINKS.c.object == object_name,
                                            LINKS.c.pending)
            .order_by(LINKS.c.record_id).limit(limit - len(out)))]
    return out
