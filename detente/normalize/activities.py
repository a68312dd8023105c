"""Activities: Salesforce tasks and events, HubSpot tasks, calls, emails and meetings; each
tied to its person (WhoId, or the first associated contact), its opportunity (WhatId, or the
first associated deal) and its owner.

HubSpot's native connector copies HubSpot engagements into Salesforce as tasks. Such a copy
is the same activity: a Salesforce task with the same person, owner and subject as a HubSpot
engagement, at the same time (within ``COPY_WINDOW``), gets ``copy_of`` = the engagement,
one copy per engagement, closest times first. A person's ``activity_count`` and first and
last activity count each real activity once: completed, not deleted, not a copy, and not a
task detente wrote itself (``detente_key``). Whatever changes a person's activities queues
the person (``people_pending``); the run recounts each queued person once, at its end.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, select, update

from detente.normalize import values as v
from detente.normalize.batches import (
    ACTIVITIES,
    OPPORTUNITIES,
    PEOPLE,
    PEOPLE_PENDING,
    PERSON_RECORDS,
    STATISTICS_EVERY,
    Key,
    RawRow,
    Rejected,
    chunks,
    each_dirty_chunk,
    group_keys,
    keep_statistics,
    person_ids,
    quarantine,
    resolve_quarantine,
    update_by_id,
    upsert_many,
)
from detente.normalize.links import associations, props
from detente.normalize.report import Report

OBJECTS: tuple[tuple[str, str], ...] = (
    ("salesforce", "Task"), ("salesforce", "Event"),
    ("hubspot", "tasks"), ("hubspot", "calls"), ("hubspot", "emails"), ("hubspot", "meetings"),
)
COPY_WINDOW = timedelta(minutes=10)
DETENTE_KEY_FIELDS = {"salesforce": "Detente_Key__c", "hubspot": "detente_key"}
_WHO = {"00Q": "Lead", "003": "Contact"}
_NOT_DONE = {
    "calls": {"CANCELED", "QUEUED", "CALLING_CRM_USER", "CONNECTING", "RINGING", "IN_PROGRESS"},
    "emails": {"SCHEDULED", "FAILED"},
    "meetings": {"CANCELED", "RESCHEDULED", "NO_SHOW"},
}
_SUBJECT = {"tasks": "hs_task_subject", "calls": "hs_call_title", "emails": "hs_email_subject",
            "meetings": "hs_meeting_title"}
_KIND = {"tasks": "task", "calls": "call", "emails": "email", "meetings": "meeting"}


@dataclass(frozen=True)
class Facts:
    """One activity as read from its CRM record."""

    key: Key
    kind: str
    subject: str | None
    occurred_at: datetime | None
    completed: bool
    owner: str | None
    who_object: str | None
    who_id: str | None
    what_id: str | None
    detente_key: str | None


def read_activity(row: RawRow) -> Facts:
    if row.system == "salesforce":
        return _salesforce(row)
    return _hubspot(row)


def _salesforce(row: RawRow) -> Facts:
    d = row.data
    who = v.salesforce_id(d, "WhoId")
    what = v.salesforce_id(d, "WhatId")
    who_object = _WHO.get(who[:3]) if who else None
    common: dict[str, Any] = {
        "subject": v.text(d, "Subject"), "owner": v.salesforce_id(d, "OwnerId"),
        "who_object": who_object, "who_id": who if who_object else None,
        "what_id": what if what and what.startswith("006") else None,
        "detente_key": v.text(d, DETENTE_KEY_FIELDS["salesforce"]),
    }
    if row.object == "Event":
        kind_type = v.text(d, "Type")
        at = v.instant(d, "StartDateTime") or v.instant(d, "ActivityDateTime") or v.instant(d, "ActivityDate")
        return Facts(row.key, "meeting" if kind_type in (None, "Meeting") else "event", occurred_at=at,
                     completed=True, **common)
    subtype, kind_type = v.text(d, "TaskSubtype"), v.text(d, "Type")
    if subtype == "Call" or kind_type == "Call":
        kind = "call"
    elif subtype in ("Email", "ListEmail") or kind_type == "Email":
        kind = "email"
    elif kind_type == "Meeting":
        kind = "meeting"
    else:
        kind = "task"
    closed = v.boolean(d, "IsClosed")
    completed = closed if closed is not None else v.text(d, "Status") == "Completed"
    at = v.instant(d, "CompletedDateTime") or v.instant(d, "ActivityDate") or v.instant(d, "CreatedDate")
    return Facts(row.key, kind, occurred_at=at, completed=completed, **common)


def _hubspot(row: RawRow) -> Facts:
    p = props(row)
    contacts = associations(row, "contacts")
    deals = associations(row, "deals")
    name = row.object
    if name == "tasks":
        completed = v.text(p, "hs_task_status") == "COMPLETED"
        at = (v.instant(p, "hs_task_completion_date") if completed else None) or v.instant(p, "hs_timestamp")
    elif name == "meetings":
        completed = (v.text(p, "hs_meeting_outcome") or "") not in _NOT_DONE[name]
        at = v.instant(p, "hs_meeting_start_time") or v.instant(p, "hs_timestamp")
    else:
        status = v.text(p, "hs_call_status" if name == "calls" else "hs_email_status") or ""
        completed = status not in _NOT_DONE[name]
        at = v.instant(p, "hs_timestamp")
    return Facts(
        row.key, _KIND[name], v.text(p, _SUBJECT[name]), at or v.instant(row.data, "createdAt"), completed,
        v.hubspot_id(p.get("hubspot_owner_id"), "hubspot_owner_id"),
        "contacts" if contacts else None, contacts[0] if contacts else None, deals[0] if deals else None,
        v.text(p, DETENTE_KEY_FIELDS["hubspot"]),
    )


# -- writing --------------------------------------------------------------------------------


def write_activities(engine: Engine, now: datetime, owners: tuple[Mapping[str, int], Mapping[str, int]],
                     report: Report) -> None:
    for system, object_name in OBJECTS:
        def work(conn: Connection, rows: list[RawRow]) -> None:
            _write_chunk(conn, rows, now, owners, report)

        report.add(f"read.{system}.{object_name}", each_dirty_chunk(engine, system, object_name, work))


def _write_chunk(conn: Connection, rows: list[RawRow], now: datetime,
                 owners: tuple[Mapping[str, int], Mapping[str, int]], report: Report) -> None:
    live: list[Facts] = []
    gone: list[Key] = []
    rejected: list[Rejected] = []
    for row in rows:
        if row.deleted:
            gone.append(row.key)
            continue
        try:
            live.append(read_activity(row))
        except v.BadRecord as exc:
            rejected.append(Rejected(row.key, str(exc), row.data))
    a = ACTIVITIES
    keys = [f.key for f in live] + gone
    before: dict[Key, int | None] = {}
    for (system, object_name), group in group_keys(keys).items():
        for part in chunks(sorted({k.record_id for k in group})):
            for r in conn.execute(select(a.c.record_id, a.c.person_id).where(
                    a.c.system == system, a.c.object == object_name, a.c.record_id.in_(part))):
                before[Key(system, object_name, r.record_id)] = r.person_id
    people = person_ids(conn, [Key(f.key.system, f.who_object, f.who_id) for f in live if f.who_object and f.who_id])
    deals = _opportunity_ids(conn, live)
    sf_owners, hs_owners = owners
    rows_out: list[dict[str, Any]] = []
    for f in live:
        owner_map = sf_owners if f.key.system == "salesforce" else hs_owners
        rows_out.append({
            "system": f.key.system, "object": f.key.object, "record_id": f.key.record_id,
            "person_id": people.get(Key(f.key.system, f.who_object, f.who_id)) if f.who_object and f.who_id else None,
            "opportunity_id": deals.get((f.key.system, f.what_id)) if f.what_id else None,
            "owner_id": owner_map.get(f.owner) if f.owner else None,
            "kind": f.kind, "subject": f.subject, "occurred_at": f.occurred_at, "completed": f.completed,
            "deleted": False, "who_object": f.who_object, "who_id": f.who_id, "what_id": f.what_id,
            "detente_key": f.detente_key,
        })
    upsert_many(conn, a, rows_out, ["system", "object", "record_id"])
    for (system, object_name), group in group_keys(gone).items():
        for part in chunks(sorted({k.record_id for k in group})):
            conn.execute(update(a).where(a.c.system == system, a.c.object == object_name,
                                         a.c.record_id.in_(part)).values(deleted=True))
    affected: set[int] = {p for p in before.values() if p is not None}
    affected.update(int(r["person_id"]) for r in rows_out if r["person_id"] is not None)
    recount_later(conn, affected)
    quarantine(conn, rejected, now)
    resolve_quarantine(conn, keys, now)
    report.add("quarantined", len(rejected))
    report.add("activities.written", len(rows_out))


def _opportunity_ids(conn: Connection, facts: Sequence[Facts]) -> dict[tuple[str, str], int]:
    o = OPPORTUNITIES
    out: dict[tuple[str, str], int] = {}
    for system, column in (("salesforce", o.c.salesforce_id), ("hubspot", o.c.hubspot_deal_id)):
        ids = sorted({f.what_id for f in facts if f.key.system == system and f.what_id})
        for part in chunks(ids):
            for r in conn.execute(select(o.c.id, column).where(column.in_(part))):
                out[(system, r[1])] = int(r.id)
    return out


def relink_people(conn: Connection, keys: Iterable[Key]) -> None:
    """Re-tie the activities of these leads, contacts and HubSpot contacts to their person."""
    a, pr = ACTIVITIES, PERSON_RECORDS
    person = (select(pr.c.person_id).where(pr.c.system == a.c.system, pr.c.object == a.c.who_object,
                                           pr.c.record_id == a.c.who_id).scalar_subquery())
    for (system, object_name), group in group_keys(keys).items():
        for part in chunks(sorted({k.record_id for k in group})):
            conn.execute(update(a).where(a.c.system == system, a.c.who_object == object_name, a.c.who_id.in_(part))
                         .values(person_id=person))


def relink_opportunities(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Re-tie the activities whose WhatId or deal is one of these opportunities' records."""
    params = []
    for r in rows:
        for system, record_id in (("salesforce", r.get("salesforce_id")), ("hubspot", r.get("hubspot_deal_id"))):
            if record_id:
                params.append({"k_system": system, "k_what": record_id, "k_opp": r["id"]})
    if params:
        a = ACTIVITIES
        conn.execute(update(a).where(a.c.system == bindparam("k_system"), a.c.what_id == bindparam("k_what"))
                     .values(opportunity_id=bindparam("k_opp")), params)


# -- copies and counts ----------------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    """An activity as stored, as copy detection and counting need it."""

    id: int
    system: str
    object: str
    owner_id: int | None
    subject: str | None
    occurred_at: datetime | None
    completed: bool
    deleted: bool
    detente_key: str | None


def _subject(text: str | None) -> str:
    return " ".join((text or "").casefold().split())


def find_copies(items: Sequence[Stored], window: timedelta = COPY_WINDOW) -> dict[int, int]:
    """Salesforce task id → the HubSpot engagement it copies, for one person's activities."""
    originals: dict[tuple[int, str], list[Stored]] = {}
    for o in items:
        if o.system == "hubspot" and not o.deleted and o.owner_id is not None and o.occurred_at and _subject(o.subject):
            originals.setdefault((o.owner_id, _subject(o.subject)), []).append(o)
    pairs: list[tuple[timedelta, int, int]] = []
    for c in items:
        if (c.system, c.object) != ("salesforce", "Task") or c.deleted or c.detente_key or c.owner_id is None \
                or c.occurred_at is None:
            continue
        for o in originals.get((c.owner_id, _subject(c.subject)), []):
            assert o.occurred_at is not None
            gap = abs(c.occurred_at - o.occurred_at)
            if gap <= window:
                pairs.append((gap, c.id, o.id))
    copies: dict[int, int] = {}
    used: set[int] = set()
    for _, copy_id, original_id in sorted(pairs):
        if copy_id not in copies and original_id not in used:
            copies[copy_id] = original_id
            used.add(original_id)
    return copies


def counts(items: Sequence[Stored], copies: Mapping[int, int]) -> tuple[int, datetime | None, datetime | None]:
    """How many real activities, and when the first and last happened."""
    real = [a for a in items if a.completed and not a.deleted and not a.detente_key and a.id not in copies]
    times = [a.occurred_at for a in real if a.occurred_at is not None]
    return len(real), (min(times) if times else None), (max(times) if times else None)


def recount_later(conn: Connection, ids: Iterable[int]) -> None:
    """Queue people for ``recount`` (in the transaction that changed their activities)."""
    upsert_many(conn, PEOPLE_PENDING, [{"person_id": i} for i in sorted(set(ids))], ["person_id"])


def recount(engine: Engine, report: Report, batch: int = 2_000) -> None:
    """Work out copies and counts of the queued people, a batch per transaction."""
    for turn in itertools.count():
        if turn % STATISTICS_EVERY == 0:
            keep_statistics(engine)
        with engine.begin() as conn:
            ids = list(conn.execute(select(PEOPLE_PENDING.c.person_id).order_by(PEOPLE_PENDING.c.person_id)
                                    .limit(batch)).scalars())
            if not ids:
                return
            refresh_people(conn, ids)
            conn.execute(delete(PEOPLE_PENDING).where(PEOPLE_PENDING.c.person_id.in_(ids)))
        report.add("people.recounted", len(ids))


def refresh_people(conn: Connection, ids: Iterable[int]) -> None:
    """Work out copies and the activity counts again for these people."""
    a = ACTIVITIES
    for part in chunks(sorted(set(ids))):
        by_person: dict[int, list[Stored]] = {pid: [] for pid in part}
        current: dict[int, int | None] = {}
        for r in conn.execute(select(a.c.id, a.c.person_id, a.c.system, a.c.object, a.c.owner_id, a.c.subject,
                                     a.c.occurred_at, a.c.completed, a.c.deleted, a.c.detente_key, a.c.copy_of)
                              .where(a.c.person_id.in_(part))):
            by_person[r.person_id].append(Stored(r.id, r.system, r.object, r.owner_id, r.subject, r.occurred_at,
                                                 bool(r.completed), bool(r.deleted), r.detente_key))
            current[r.id] = r.copy_of
        copy_updates = []
        people_updates = []
        for pid, items in by_person.items():
            copies = find_copies(items)
            for item in items:
                if current.get(item.id) != copies.get(item.id):
                    copy_updates.append({"id": item.id, "copy_of": copies.get(item.id)})
            n, first, last = counts(items, copies)
            people_updates.append({"id": pid, "activity_count": n, "first_activity_at": first,
                                   "last_activity_at": last})
        update_by_id(conn, a, copy_updates)
        update_by_id(conn, PEOPLE, people_updates)
