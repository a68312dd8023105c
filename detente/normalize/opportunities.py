"""Opportunities: a Salesforce opportunity and the HubSpot deal that mirrors it
(``salesforceopportunityid``) are one opportunity; a deal without one stands alone.

Fields take Salesforce's value first (Sales owns the pipeline) and HubSpot's when Salesforce
has none; ``hubspot_stage`` keeps the deal's own stage. The person is the one holding, in
order: the primary contact role's contact (else ``Opportunity.ContactId``, else any contact
role), the lead converted into the opportunity (``ConvertedOpportunityId``), the deal's first
associated contact. ``closed_at`` is when the current closed stage was entered (history),
else the close date.

Like people, it runs in two passes: dirty opportunities, deals and contact roles are read
(links, transitions) and mark the opportunities they concern pending; pending ones are then
rebuilt a batch per transaction, keeping their ids.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from detente.normalize import activities, links
from detente.normalize import transitions as tr
from detente.normalize import values as v
from detente.normalize.batches import (
    LINKS,
    OPPORTUNITIES,
    RAW,
    STATISTICS_EVERY,
    Key,
    RawRow,
    Rejected,
    as_raw,
    chunks,
    each_dirty_chunk,
    insert_returning_ids,
    keep_statistics,
    person_ids,
    quarantine,
    read_raw,
    resolve_quarantine,
    update_by_id,
)
from detente.normalize.links import props
from detente.normalize.lookups import Lookups, Stage
from detente.normalize.report import Report

OPPORTUNITY = ("salesforce", "Opportunity")
DEAL = ("hubspot", "deals")
LOSS_REASON_FIELD = "Loss_Reason__c"
BATCH = 1_000


def pipeline_stages(rows: Iterable[RawRow]) -> dict[str, Stage]:
    """Deal stage id → label and whether it is closed / won, from the pulled pipelines."""
    out: dict[str, Stage] = {}
    for row in rows:
        if row.deleted or row.data.get("objectType", "deals") != "deals":
            continue
        for stage in row.data.get("stages") or []:
            if not isinstance(stage, Mapping) or not stage.get("id"):
                continue
            meta = stage.get("metadata") if isinstance(stage.get("metadata"), Mapping) else {}
            assert isinstance(meta, Mapping)
            closed = str(meta.get("isClosed", "")).lower() == "true"
            try:
                won = closed and float(meta.get("probability") or 0) >= 1.0
            except (TypeError, ValueError):
                won = False
            out[str(stage["id"])] = Stage(str(stage.get("label") or stage["id"]), closed, won)
    return out


def read_pipelines(conn: Connection) -> dict[str, Stage]:
    return pipeline_stages(as_raw(r) for r in conn.execute(
        select(RAW).where(RAW.c.system == "hubspot", RAW.c.object == "pipelines")))


@dataclass(frozen=True)
class Parts:
    """What one opportunity is made of."""

    salesforce_id: str | None
    opportunity: RawRow | None
    deal: RawRow | None
    contact_id: str | None
    lead_id: str | None
    hubspot_contact_id: str | None


def validate(row: RawRow) -> None:
    """Raise ``BadRecord`` if an opportunity or deal has fields that cannot be read."""
    _values(row, {})


def _values(row: RawRow | None, stages: Mapping[str, Stage]) -> dict[str, Any]:
    if row is None:
        return {}
    if row.system == "salesforce":
        d = row.data
        return {
            "name": v.text(d, "Name"), "stage": v.text(d, "StageName"), "amount": v.number(d, "Amount"),
            "close_date": v.day(d, "CloseDate"), "is_closed": v.boolean(d, "IsClosed"), "is_won": v.boolean(d, "IsWon"),
            "loss_reason": v.text(d, LOSS_REASON_FIELD), "source": v.text(d, "LeadSource"),
            "campaign": v.salesforce_id(d, "CampaignId"), "owner": v.salesforce_id(d, "OwnerId"),
            "created_at": v.instant(d, "CreatedDate"), "contact": v.salesforce_id(d, "ContactId"),
        }
    p = props(row)
    stage_id = v.text(p, "dealstage")
    stage = stages.get(stage_id or "")
    closed, won = v.boolean(p, "hs_is_closed"), v.boolean(p, "hs_is_closed_won")
    return {
        "name": v.text(p, "dealname"), "stage": stage.label if stage else stage_id, "hubspot_stage": stage_id,
        "amount": v.number(p, "amount"), "close_date": v.day(p, "closedate"),
        "is_closed": closed if closed is not None else (stage.closed if stage else None),
        "is_won": won if won is not None else (stage.won if stage else None),
        "loss_reason": v.text(p, "closed_lost_reason"), "source": v.text(p, "hs_analytics_source"),
        "owner": v.hubspot_id(p.get("hubspot_owner_id"), "hubspot_owner_id"),
        "created_at": v.instant(p, "createdate") or v.instant(row.data, "createdAt"),
    }


def opportunity_row(parts: Parts, stages: Mapping[str, Stage], sf_owners: Mapping[str, int],
                    hs_owners: Mapping[str, int], campaigns: Mapping[str, int],
                    closed_at: datetime | None) -> dict[str, Any]:
    """The ``opportunities`` columns (without id and person) for one opportunity (pure)."""
    sf = _values(parts.opportunity, stages)
    hs = _values(parts.deal, stages)
    live_sf = parts.opportunity is not None and not parts.opportunity.deleted
    live_hs = parts.deal is not None and not parts.deal.deleted
    first, second = (sf, hs) if live_sf or not live_hs else (hs, sf)

    def pick(name: str) -> Any:
        value = first.get(name)
        return value if value is not None else second.get(name)

    owner = sf_owners.get(sf["owner"]) if sf.get("owner") else None
    if owner is None and hs.get("owner"):
        owner = hs_owners.get(hs["owner"])
    created = [x for x in (sf.get("created_at"), hs.get("created_at")) if x is not None]
    is_closed = bool(pick("is_closed"))
    close_date = pick("close_date")
    if is_closed and closed_at is None and close_date is not None:
        closed_at = datetime.combine(close_date, time(), tzinfo=UTC)
    return {
        "salesforce_id": parts.salesforce_id,
        "hubspot_deal_id": parts.deal.record_id if parts.deal is not None else None,
        "name": pick("name"), "stage": pick("stage"), "hubspot_stage": hs.get("hubspot_stage"),
        "amount": pick("amount"), "close_date": close_date, "is_closed": is_closed,
        "is_won": bool(pick("is_won")), "loss_reason": pick("loss_reason"), "source": pick("source"),
        "salesforce_loss_reason": sf.get("loss_reason"), "hubspot_loss_reason": hs.get("loss_reason"),
        "campaign_id": campaigns.get(sf["campaign"]) if sf.get("campaign") else None,
        "owner_id": owner, "created_at": min(created) if created else None,
        "closed_at": closed_at if is_closed else None,
        "deleted": not (live_sf or live_hs),
        "salesforce_contact_id": parts.contact_id, "salesforce_lead_id": parts.lead_id,
        "hubspot_contact_id": parts.hubspot_contact_id,
    }


# -- pass 1: read --------------------------------------------------------------------------


def read_opportunities(engine: Engine, now: datetime, report: Report) -> None:
    for system, object_name in (OPPORTUNITY, DEAL, ("salesforce", "OpportunityContactRole")):
        def work(conn: Connection, rows: list[RawRow]) -> None:
            _read_chunk(conn, rows, now, report)

        report.add(f"read.{system}.{object_name}", each_dirty_chunk(engine, system, object_name, work))


def _read_chunk(conn: Connection, rows: list[RawRow], now: datetime, report: Report) -> None:
    accepted: list[tuple[RawRow, links.Link, list[tr.Change]]] = []
    rejected: list[Rejected] = []
    for row in rows:
        try:
            link = links.read_link(row)
            changes = tr.hubspot_history(row) if row.system == "hubspot" else []
            if not row.deleted and row.object != "OpportunityContactRole":
                validate(row)
        except v.BadRecord as exc:
            rejected.append(Rejected(row.key, str(exc), row.data))
            continue
        accepted.append((row, link, changes))
    before = links.load(conn, [link.key for _, link, _ in accepted])
    known = tr.recorded_for_changes(conn, [(before.get(link.key), link) for _, link, _ in accepted])
    found: list[tr.Change] = []
    pending: set[Key] = set()
    for row, link, changes in accepted:
        old = before.get(link.key)
        if row.object == "OpportunityContactRole":
            pending.update(Key(*OPPORTUNITY, x.ref_opportunity) for x in (old, link) if x and x.ref_opportunity)
            continue
        explained = changes if row.system == "hubspot" else known.get(link.key, [])
        found += changes + tr.observed(old, link, explained)
        moved = old is not None and old.ref_opportunity and old.ref_opportunity != link.ref_opportunity
        if row.object == "deals" and moved and old is not None and old.ref_opportunity:
            pending.add(Key(*OPPORTUNITY, old.ref_opportunity))
    roles = [link for row, link, _ in accepted if row.object == "OpportunityContactRole"]
    links.save(conn, roles, pending=False)
    links.save(conn, [link for row, link, _ in accepted if row.object != "OpportunityContactRole"], pending=True)
    links.set_pending(conn, pending)
    tr.write(conn, found)
    quarantine(conn, rejected, now)
    resolve_quarantine(conn, [row.key for row, _, _ in accepted], now)
    report.add("quarantined", len(rejected))
    report.add("transitions.read", len(found))


# -- pass 2: build -------------------------------------------------------------------------


def build_pending(engine: Engine, lookups: Lookups, report: Report) -> None:
    for turn in itertools.count():
        if turn % STATISTICS_EVERY == 0:
            keep_statistics(engine)
        with engine.begin() as conn:
            seed = links.pending_keys(conn, [OPPORTUNITY, DEAL], BATCH)
            if not seed:
                return
            done = _build(conn, seed, lookups, report)
            links.set_pending(conn, [*seed, *done], False)


def _build(conn: Connection, seed: Sequence[Key], lookups: Lookups, report: Report) -> list[Key]:
    seed_links = links.load(conn, seed)
    sf_ids = {k.record_id for k in seed if (k.system, k.object) == OPPORTUNITY}
    alone: set[str] = set()
    for k in seed:
        if (k.system, k.object) == DEAL:
            link = seed_links.get(k)
            if link is not None and link.ref_opportunity and not link.deleted:
                sf_ids.add(link.ref_opportunity)
            else:
                alone.add(k.record_id)
    claims: dict[str, list[str]] = {}
    roles: dict[str, list[links.Link]] = {}
    converted: dict[str, list[links.Link]] = {}
    for part in chunks(sorted(sf_ids)):
        for link in links.find(conn, LINKS.c.ref_opportunity.in_(part), LINKS.c.deleted.is_(False)):
            target = link.ref_opportunity or ""
            kind = (link.key.system, link.key.object)
            if kind == DEAL:
                claims.setdefault(target, []).append(link.key.record_id)
            elif kind == ("salesforce", "OpportunityContactRole"):
                roles.setdefault(target, []).append(link)
            elif kind == ("salesforce", "Lead"):
                converted.setdefault(target, []).append(link)
    groups: list[tuple[str | None, str | None]] = []
    for claimed in sorted(sf_ids):
        deals = sorted(claims.get(claimed, []), key=v.id_order)
        groups.append((claimed, deals[0] if deals else None))
        groups += [(None, extra) for extra in deals[1:]]  # a second deal for one opportunity stands alone
    groups += [(None, d) for d in sorted(alone, key=v.id_order)]
    raw = read_raw(conn, [Key(*OPPORTUNITY, s) for s, _ in groups if s] + [Key(*DEAL, d) for _, d in groups if d])
    parts = []
    for sf_id, deal_id in groups:
        sf_row = raw.get(Key(*OPPORTUNITY, sf_id)) if sf_id else None
        deal_row = raw.get(Key(*DEAL, deal_id)) if deal_id else None
        if sf_row is None and deal_row is None:
            continue
        contact, lead = (_contact(sf_id, sf_row, roles.get(sf_id, []), converted.get(sf_id, []))
                         if sf_id else (None, None))
        hs_contact = None
        if deal_row is not None and not deal_row.deleted:
            try:
                contacts = links.associations(deal_row, "contacts")
            except v.BadRecord:
                contacts = []
            hs_contact = contacts[0] if contacts else None
        parts.append(Parts(sf_id, sf_row, deal_row, contact, lead, hs_contact))
    closed = _closed_at(conn, parts)
    rows = []
    for p, closed_at in zip(parts, closed, strict=True):
        try:
            row = opportunity_row(p, lookups.stages, lookups.salesforce_owners, lookups.hubspot_owners,
                                  lookups.campaigns_by_sf, closed_at)
        except v.BadRecord:
            continue  # quarantined when read; kept as it was
        rows.append(row)
    _link_people(conn, rows)
    saved = _save(conn, rows)
    tr.relink_opportunities(conn, saved)
    activities.relink_opportunities(conn, saved)
    report.add("opportunities.written", len(saved))
    return [Key(*OPPORTUNITY, s) for s, _ in groups if s] + [Key(*DEAL, d) for _, d in groups if d]


def _contact(sf_id: str, row: RawRow | None, roles: Sequence[links.Link],
             converted: Sequence[links.Link]) -> tuple[str | None, str | None]:
    ranked = sorted((r for r in roles if r.ref_contact),
                    key=lambda r: (not r.is_primary, r.created_at or datetime.max.replace(tzinfo=UTC), r.key.record_id))
    direct = None
    if row is not None:
        try:
            direct = v.salesforce_id(row.data, "ContactId")
        except v.BadRecord:
            direct = None
    contact = ranked[0].ref_contact if ranked and ranked[0].is_primary else direct or (
        ranked[0].ref_contact if ranked else None)
    leads = sorted(converted, key=lambda link: link.key.record_id)
    return contact, (leads[0].key.record_id if leads else None)


def _closed_at(conn: Connection, parts: Sequence[Parts]) -> list[datetime | None]:
    """When each closed opportunity entered the stage it is in now, from its transitions."""
    keys = [Key(*OPPORTUNITY, p.salesforce_id) for p in parts if p.salesforce_id] + \
           [Key(*DEAL, p.deal.record_id) for p in parts if p.deal is not None]
    entered: dict[tuple[Key, str], datetime] = {}
    for change in tr.recorded(conn, keys):
        if change.field in ("StageName", "dealstage"):
            slot = (change.key, change.to_value)
            entered[slot] = max(entered.get(slot, change.at), change.at)
    out: list[datetime | None] = []
    for p in parts:
        found = None
        if p.opportunity is not None and p.salesforce_id:
            stage = p.opportunity.data.get("StageName")
            found = entered.get((Key(*OPPORTUNITY, p.salesforce_id), str(stage)))
        if found is None and p.deal is not None:
            stage = (p.deal.data.get("properties") or {}).get("dealstage")
            found = entered.get((Key(*DEAL, p.deal.record_id), str(stage)))
        out.append(found)
    return out


def _link_people(conn: Connection, rows: list[dict[str, Any]]) -> None:
    keys = [Key("salesforce", "Contact", r["salesforce_contact_id"]) for r in rows if r["salesforce_contact_id"]]
    keys += [Key("salesforce", "Lead", r["salesforce_lead_id"]) for r in rows if r["salesforce_lead_id"]]
    keys += [Key("hubspot", "contacts", r["hubspot_contact_id"]) for r in rows if r["hubspot_contact_id"]]
    found = person_ids(conn, keys)
    for r in rows:
        r["person_id"] = next((found[k] for k in (
            Key("salesforce", "Contact", r["salesforce_contact_id"] or ""),
            Key("salesforce", "Lead", r["salesforce_lead_id"] or ""),
            Key("hubspot", "contacts", r["hubspot_contact_id"] or "")) if k in found), None)


def _save(conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Write rows keeping ids: a row is the one holding its Salesforce id, else its deal."""
    o = OPPORTUNITIES
    sf_ids = sorted({r["salesforce_id"] for r in rows if r["salesforce_id"]})
    deal_ids = sorted({r["hubspot_deal_id"] for r in rows if r["hubspot_deal_id"]})
    existing: dict[int, Any] = {}
    for column, ids in ((o.c.salesforce_id, sf_ids), (o.c.hubspot_deal_id, deal_ids)):
        for part in chunks(ids):
            for found in conn.execute(select(o.c.id, o.c.salesforce_id, o.c.hubspot_deal_id).where(column.in_(part))):
                existing[int(found.id)] = found
    by_sf = {r.salesforce_id: i for i, r in existing.items() if r.salesforce_id}
    by_deal = {r.hubspot_deal_id: i for i, r in existing.items() if r.hubspot_deal_id}
    taken: set[int] = set()
    for r in rows:
        candidates = [by_sf.get(r["salesforce_id"]) if r["salesforce_id"] else None]
        held = by_deal.get(r["hubspot_deal_id"]) if r["hubspot_deal_id"] else None
        if held is not None and existing[held].salesforce_id in (None, r["salesforce_id"]):
            candidates.append(held)
        r["id"] = next((c for c in candidates if c is not None and c not in taken), None)
        if r["id"] is not None:
            taken.add(r["id"])
    # A deal that moved to another row leaves the row it was on (deleted if nothing else holds it).
    moved = [{"id": i, "hubspot_deal_id": None} for i, x in existing.items()
             if x.hubspot_deal_id and i not in taken and x.hubspot_deal_id in deal_ids]
    moved += [{"id": r["id"], "hubspot_deal_id": None} for r in rows if r["id"] is not None
              and existing[r["id"]].hubspot_deal_id not in (None, r["hubspot_deal_id"])]
    update_by_id(conn, o, moved)
    orphans = [i for i, x in existing.items()
               if i not in taken and not x.salesforce_id and x.hubspot_deal_id in deal_ids]
    for part in chunks(orphans):
        conn.execute(update(o).where(o.c.id.in_(part)).values(deleted=True))
    update_by_id(conn, o, [r for r in rows if r["id"] is not None])
    fresh = [r for r in rows if r["id"] is None]
    for r, new_id in zip(fresh, insert_returning_ids(conn, o, [{k: x for k, x in r.items() if k != "id"}
                                                                for r in fresh]), strict=True):
        r["id"] = new_id
    return rows


def relink_people(conn: Connection, keys: Iterable[Key]) -> None:
    """Re-tie the opportunities linked through these records to their person now, and the
    transitions of those whose person changed."""
    o = OPPORTUNITIES
    columns = {("salesforce", "Contact"): o.c.salesforce_contact_id, ("salesforce", "Lead"): o.c.salesforce_lead_id,
               ("hubspot", "contacts"): o.c.hubspot_contact_id}
    ids: dict[tuple[str, str], list[str]] = {}
    for k in keys:
        if (k.system, k.object) in columns:
            ids.setdefault((k.system, k.object), []).append(k.record_id)
    touched: dict[int, Any] = {}
    for kind, record_ids in ids.items():
        for part in chunks(sorted(record_ids)):
            for row in conn.execute(select(o.c.id, o.c.person_id, o.c.salesforce_id, o.c.hubspot_deal_id,
                                           o.c.salesforce_contact_id, o.c.salesforce_lead_id, o.c.hubspot_contact_id)
                                    .where(columns[kind].in_(part))):
                touched[int(row.id)] = dict(row._mapping)
    if not touched:
        return
    rows: list[dict[str, Any]] = list(touched.values())
    keys_needed = [Key(*kind, r[col.name]) for r in rows for kind, col in columns.items() if r[col.name]]
    found_people = person_ids(conn, keys_needed)
    changed = []
    for r in rows:
        person = next((found_people[Key(*kind, r[col.name])] for kind, col in columns.items()
                       if r[col.name] and Key(*kind, r[col.name]) in found_people), None)
        if person != r["person_id"]:
            r["person_id"] = person
            changed.append(r)
    update_by_id(conn, o, [{"id": r["id"], "person_id": r["person_id"]} for r in changed])
    tr.relink_opportunities(conn, changed)
