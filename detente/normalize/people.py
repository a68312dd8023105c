"""The people stage: leads, contacts and HubSpot contacts become linked people.

It runs in two passes so that linking never sees half a change:

1. **Read.** Each dirty lead, contact and HubSpot contact (a chunk per transaction) is read
   into its link facts and the values a person takes from it (``record_links``, marked
   pending), its transitions (HubSpot property history and stage dates; changes no history
   explains), or quarantined. A campaign member marks the lead or contact it names pending;
   a lead whose converted opportunity changed marks that opportunity pending.
2. **Link.** A batch of pending records is closed over everything that could change how they
   link (shared emails, the ids they claim or are claimed by, conversions, merges, and the
   people they belonged to) and re-linked (``detente.normalize.identity``) from
   ``record_links`` alone, no raw record read twice. Then the people are written (ids kept
   stable; people that dissolved are marked deleted), ``person_records`` too, and the
   activities, opportunities and transitions of records whose person changed are re-tied;
   the people concerned are queued for recounting their activities.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, select, update

from detente.normalize import activities, links, opportunities
from detente.normalize import transitions as tr
from detente.normalize import values as v
from detente.normalize.batches import (
    LINKS,
    PEOPLE,
    PERSON_RECORDS,
    STATISTICS_EVERY,
    Key,
    RawRow,
    Rejected,
    chunks,
    each_dirty_chunk,
    insert_returning_ids,
    keep_statistics,
    person_ids,
    quarantine,
    resolve_quarantine,
    update_by_id,
)
from detente.normalize.identity import CONTACT, HUBSPOT, LEAD, Cluster, assign_person_ids, link_people
from detente.normalize.lookups import Lookups
from detente.normalize.profile import Context, Membership, load_view, person_row, read_view, store_view
from detente.normalize.report import Report

LINK_BATCH = 1_000  # pending records per linking transaction (before closing over them)


def payload(row: RawRow) -> dict[str, Any]:
    return row.data if isinstance(row.data, dict) else {}


# -- pass 1: read --------------------------------------------------------------------------


def read_people(engine: Engine, now: datetime, lookups: Lookups, report: Report) -> None:
    for system, object_name in links.PEOPLE_OBJECTS:
        def work(conn: Connection, rows: list[RawRow]) -> None:
            _read_chunk(conn, rows, now, lookups, report)

        report.add(f"read.{system}.{object_name}", each_dirty_chunk(engine, system, object_name, work))

    def members(conn: Connection, rows: list[RawRow]) -> None:
        _read_members(conn, rows, now, report)

    report.add("read.salesforce.CampaignMember", each_dirty_chunk(engine, "salesforce", "CampaignMember", members))


def _keep_modified(old: links.Link | None, new: links.Link) -> links.Link:
    """A record changed only in fields no person value comes from (detente's own write-back,
    say) keeps the modification time it had: a person's ``modified_at`` moves only when
    something about the person changed."""
    if old is None or not old.view or not new.view or "modified" not in old.view:
        return new
    if {k: x for k, x in old.view.items() if k != "modified"} != {k: x for k, x in new.view.items() if k != "modified"}:
        return new
    return replace(new, view={**new.view, "modified": old.view["modified"]})


def _read_chunk(conn: Connection, rows: list[RawRow], now: datetime, lookups: Lookups, report: Report) -> None:
    accepted: list[tuple[RawRow, links.Link, list[tr.Change]]] = []
    rejected: list[Rejected] = []
    for row in rows:
        try:
            link = links.read_link(row)
            changes: list[tr.Change] = []
            if row.system == "hubspot":
                changes = tr.hubspot_history(row)
                changes += tr.stage_dates(row, changes)
            if not row.deleted:
                link = replace(link, view=store_view(read_view(row, lookups.maps)))
        except v.BadRecord as exc:
            rejected.append(Rejected(row.key, str(exc), payload(row)))
            continue
        accepted.append((row, link, changes))
    before = links.load(conn, [link.key for _, link, _ in accepted])
    accepted = [(row, _keep_modified(before.get(link.key), link), changes) for row, link, changes in accepted]
    known = tr.recorded_for_changes(conn, [(before.get(link.key), link) for _, link, _ in accepted])
    found: list[tr.Change] = []
    moved_opportunities: set[Key] = set()
    for row, link, changes in accepted:
        old = before.get(link.key)
        explained = changes if row.system == "hubspot" else known.get(link.key, [])
        found += changes + tr.observed(old, link, explained)
        if old is not None and old.ref_opportunity != link.ref_opportunity:
            moved_opportunities.update(Key("salesforce", "Opportunity", x)
                                       for x in (old.ref_opportunity, link.ref_opportunity) if x)
        elif old is None and link.ref_opportunity:
            moved_opportunities.add(Key("salesforce", "Opportunity", link.ref_opportunity))
    links.save(conn, [link for _, link, _ in accepted], pending=True)
    links.set_pending(conn, moved_opportunities)
    tr.write(conn, found)
    quarantine(conn, rejected, now)
    resolve_quarantine(conn, [row.key for row, _, _ in accepted], now)
    report.add("quarantined", len(rejected))
    report.add("transitions.read", len(found))


def _read_members(conn: Connection, rows: list[RawRow], now: datetime, report: Report) -> None:
    accepted: list[links.Link] = []
    rejected: list[Rejected] = []
    for row in rows:
        try:
            accepted.append(links.read_link(row))
        except v.BadRecord as exc:
            rejected.append(Rejected(row.key, str(exc), payload(row)))
    before = links.load(conn, [link.key for link in accepted])
    touched: set[Key] = set()
    for link in accepted:
        for x in (link, before.get(link.key)):
            if x is None:
                continue
            if x.ref_lead:
                touched.add(Key(*LEAD, x.ref_lead))
            if x.ref_contact:
                touched.add(Key(*CONTACT, x.ref_contact))
    links.save(conn, accepted, pending=False)
    links.set_pending(conn, touched)
    quarantine(conn, rejected, now)
    resolve_quarantine(conn, [link.key for link in accepted], now)
    report.add("quarantined", len(rejected))


# -- pass 2: link --------------------------------------------------------------------------


def link_pending(engine: Engine, lookups: Lookups, report: Report) -> None:
    for turn in itertools.count():
        if turn % STATISTICS_EVERY == 0:
            keep_statistics(engine)
        with engine.begin() as conn:
            seed = links.pending_keys(conn, links.PEOPLE_OBJECTS, LINK_BATCH)
            if not seed:
                return
            component = closure(conn, seed)
            _relink(conn, component, lookups, report)
            links.set_pending(conn, [*component, *seed], False)


def closure(conn: Connection, seed: Iterable[Key]) -> dict[Key, links.Link]:
    """The records whose linking depends on each other, starting from ``seed``: shared
    emails, claimed and claiming ids, conversions, merges and former people, to a fixpoint."""
    found: dict[Key, links.Link] = {}
    tried: set[Key] = set()
    to_load = set(seed)
    while to_load:
        tried |= to_load
        batch = [link for key, link in links.load(conn, to_load, light=True).items() if key not in found]
        found.update((link.key, link) for link in batch)
        to_load = set()
        emails = sorted({x.email for x in batch if x.email})
        lead_ids = sorted({x.key.record_id for x in batch if (x.key.system, x.key.object) == LEAD})
        contact_ids = sorted({x.key.record_id for x in batch if (x.key.system, x.key.object) == CONTACT})
        hs_ids = sorted({x.key.record_id for x in batch if (x.key.system, x.key.object) == HUBSPOT})
        hs_contacts = (LINKS.c.system == "hubspot") & (LINKS.c.object == "contacts")
        for part in chunks(emails):
            to_load.update(links.find_keys(conn, LINKS.c.email.in_(part)))
        for part in chunks(lead_ids):
            to_load.update(links.find_keys(conn, hs_contacts, LINKS.c.ref_lead.in_(part)))
        for part in chunks(contact_ids):
            for system, object_name in (HUBSPOT, LEAD):
                to_load.update(links.find_keys(conn, LINKS.c.system == system, LINKS.c.object == object_name,
                                               LINKS.c.ref_contact.in_(part)))
        for part in chunks(hs_ids):
            to_load.update(links.find_keys(conn, hs_contacts, LINKS.c.merged_into.in_(part)))
        for x in batch:
            kind = (x.key.system, x.key.object)
            if kind == HUBSPOT:
                to_load.update(k for k in (Key(*LEAD, x.ref_lead) if x.ref_lead else None,
                                           Key(*CONTACT, x.ref_contact) if x.ref_contact else None,
                                           Key(*HUBSPOT, x.merged_into) if x.merged_into else None) if k)
            elif kind == LEAD and x.ref_contact:
                to_load.add(Key(*CONTACT, x.ref_contact))
        to_load.update(_former_mates(conn, [x.key for x in batch]))
        to_load = {k for k in to_load - tried if (k.system, k.object) in links.PEOPLE_OBJECTS}
    return found


def _former_mates(conn: Connection, keys: Sequence[Key]) -> set[Key]:
    """Every record of the people these records belonged to."""
    pr = PERSON_RECORDS
    owners = set(person_ids(conn, keys).values())
    out: set[Key] = set()
    for part in chunks(sorted(owners)):
        found = conn.execute(select(pr.c.system, pr.c.object, pr.c.record_id).where(pr.c.person_id.in_(part)))
        out.update(Key(r.system, r.object, r.record_id) for r in found)
    return out


def _relink(conn: Connection, component: Mapping[Key, links.Link], lookups: Lookups, report: Report) -> None:
    previous = person_ids(conn, component)
    clusters = link_people(component.values())
    ids = assign_person_ids(clusters, previous)
    live = [k for c in clusters for k in c.members if not component[k].deleted]
    views = {k: load_view(stored) for k, stored in links.views(conn, live).items()}
    member_of = _memberships(conn, clusters, lookups)
    ctx = Context(lookups.salesforce_owners, lookups.hubspot_owners, lookups.campaigns_by_name, lookups.maps)
    rows = [person_row(c, views, member_of[i], ctx) for i, c in enumerate(clusters)]
    update_by_id(conn, PEOPLE, [{"id": pid, **row} for pid, row in zip(ids, rows, strict=True) if pid is not None])
    fresh = [i for i, pid in enumerate(ids) if pid is None]
    for i, new_id in zip(fresh, insert_returning_ids(conn, PEOPLE, [rows[i] for i in fresh]), strict=True):
        ids[i] = new_id
    final: dict[Key, int] = {}
    for i, c in enumerate(clusters):
        assigned = ids[i]
        assert assigned is not None
        final.update(dict.fromkeys(c.members, assigned))
    gone = sorted(set(previous.values()) - set(final.values()))
    for part in chunks(gone):
        conn.execute(update(PEOPLE).where(PEOPLE.c.id.in_(part)).values(
            deleted=True, salesforce_lead_id=None, salesforce_contact_id=None, hubspot_contact_id=None,
            identity_conflict=None))
    _write_person_records(conn, component, clusters, final)
    changed = [k for k in component if previous.get(k) != final.get(k)]
    activities.relink_people(conn, changed)
    tr.relink_people(conn, changed)
    opportunities.relink_people(conn, changed)
    affected = {previous[k] for k in changed if k in previous} | {final[k] for k in changed if k in final}
    activities.recount_later(conn, affected)
    report.add("people.linked", len(clusters))
    report.add("people.new", len(fresh))
    report.add("people.dissolved", len(gone))
    report.add("people.conflicts", sum(1 for c in clusters if c.conflicts))


def _write_person_records(conn: Connection, component: Mapping[Key, links.Link], clusters: Sequence[Cluster],
                          final: Mapping[Key, int | None]) -> None:
    pr = PERSON_RECORDS
    by_object: dict[tuple[str, str], list[str]] = {}
    for k in component:
        by_object.setdefault((k.system, k.object), []).append(k.record_id)
    for (system, object_name), ids in by_object.items():
        for part in chunks(sorted(ids)):
            conn.execute(delete(pr).where(pr.c.system == system, pr.c.object == object_name, pr.c.record_id.in_(part)))
    rows = [{"system": k.system, "object": k.object, "record_id": k.record_id, "person_id": final[k], "linked_by": how}
            for c in clusters for k, how in c.members.items()]
    if rows:
        conn.execute(pr.insert(), rows)


def _memberships(conn: Connection, clusters: Sequence[Cluster], lookups: Lookups) -> list[list[Membership]]:
    """Each cluster's Salesforce campaign memberships (of any of its leads and contacts)."""
    owner: dict[Key, int] = {}
    for i, c in enumerate(clusters):
        for k in c.members:
            if k.system == "salesforce":
                owner[k] = i
    out: list[list[Membership]] = [[] for _ in clusters]
    lead_ids = sorted(k.record_id for k in owner if k.object == "Lead")
    contact_ids = sorted(k.record_id for k in owner if k.object == "Contact")
    found: dict[Key, links.Link] = {}
    for column, ids in ((LINKS.c.ref_lead, lead_ids), (LINKS.c.ref_contact, contact_ids)):
        for part in chunks(ids):
            for link in links.find(conn, LINKS.c.system == "salesforce", LINKS.c.object == "CampaignMember",
                                   column.in_(part), LINKS.c.deleted.is_(False), light=True):
                found[link.key] = link
    for link in found.values():
        campaign = lookups.campaigns_by_sf.get(link.ref_campaign or "")
        if campaign is None:
            continue
        holder = owner.get(Key(*CONTACT, link.ref_contact or "")) if link.ref_contact else None
        if holder is None and link.ref_lead:
            holder = owner.get(Key(*LEAD, link.ref_lead))
        if holder is not None:
            out[holder].append(Membership(campaign, link.created_at, link.key.record_id))
    return out
