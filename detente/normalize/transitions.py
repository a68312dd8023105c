"""Stage, status and owner changes with their times, from three sources:

- ``history``: Salesforce LeadHistory / OpportunityFieldHistory rows (Status, StageName,
  OwnerId; a lookup's second row, which carries names, is skipped) and HubSpot property
  history (lifecyclestage, hs_lead_status, hubspot_owner_id, dealstage);
- ``stage_date``: HubSpot's ``hs_lifecyclestage_<stage>_date`` properties, for stages the
  property history does not show;
- ``observed``: a tracked value that differs from the one detente read in the previous
  version of the record, when no history row explains the change; its time is the record's
  modification time (the latest the change can have happened).

Rows are keyed by (system, object, record_id, field, at, to_value), so writing them again
changes nothing. A value that was cleared is recorded as ``""``: the key must not hold NULL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select, update

from detente.normalize import values as v
from detente.normalize.batches import (
    OPPORTUNITIES,
    PERSON_RECORDS,
    TRANSITIONS,
    Key,
    RawRow,
    chunks,
    group_keys,
    person_ids,
    upsert_many,
)
from detente.normalize.links import TRACKED, Link, props

HISTORY = "history"
STAGE_DATE = "stage_date"
OBSERVED = "observed"

# Salesforce history: the parent field per history object, and the fields kept (as named).
SF_HISTORY: Mapping[str, tuple[str, str]] = {
    "LeadHistory": ("LeadId", "Lead"),
    "OpportunityFieldHistory": ("OpportunityId", "Opportunity"),
}
SF_HISTORY_OBJECTS = tuple(("salesforce", name) for name in SF_HISTORY)
SF_FIELDS: Mapping[str, str] = {"Status": "Status", "StageName": "StageName", "OwnerId": "OwnerId",
                                "Owner": "OwnerId"}
# How close to the versions a history row must be to explain an observed change.
SLACK = timedelta(minutes=5)
# How far back a late history row may replace an observed change it explains.
LATE_HISTORY = timedelta(days=31)


@dataclass(frozen=True)
class Change:
    """One transition, before it is tied to a person or opportunity."""

    system: str
    object: str
    record_id: str
    field: str
    from_value: str | None
    to_value: str
    at: datetime
    source: str

    @property
    def key(self) -> Key:
        return Key(self.system, self.object, self.record_id)


def _value(raw: Any) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    return str(raw)


def salesforce_history(row: RawRow) -> list[Change]:
    """The change one LeadHistory / OpportunityFieldHistory row records, if it is one we keep."""
    parent_field, parent_object = SF_HISTORY[row.object]
    d = row.data
    name = SF_FIELDS.get(v.text(d, "Field") or "")
    if name is None or row.deleted:
        return []
    parent = v.salesforce_id(d, parent_field)
    at = v.instant(d, "CreatedDate")
    if parent is None or at is None:
        raise v.BadRecord(f"{parent_field} and CreatedDate: a history row needs both")
    old, new = _value(d.get("OldValue")), _value(d.get("NewValue"))
    if name == "OwnerId" and not all(x is None or v.is_salesforce_id(x) for x in (old, new)):
        return []  # the row of names that accompanies the row of ids
    return [Change("salesforce", parent_object, parent, name, old, new or "", at, HISTORY)]


def hubspot_history(row: RawRow) -> list[Change]:
    """Changes from a HubSpot record's property history (oldest first)."""
    history = row.data.get("history")
    if row.deleted or not isinstance(history, Mapping):
        return []
    out: list[Change] = []
    for name in TRACKED.get((row.system, row.object), ()):
        entries = history.get(name)
        if not isinstance(entries, list):
            continue
        timed: list[tuple[datetime, str]] = []
        for entry in entries:
            if not isinstance(entry, Mapping):
                raise v.BadRecord(f"history of {name}: an entry is not an object")
            try:
                at = v.instant(entry, "timestamp")
                value = v.text(entry, "value") or ""
            except v.BadRecord as exc:
                raise v.BadRecord(f"history of {name}: {exc}") from None
            if at is None:
                raise v.BadRecord(f"history of {name}: an entry has no timestamp")
            timed.append((at, value))
        timed.sort()
        previous: str | None = None
        for at, value in timed:
            if previous is not None and value == previous:
                continue
            out.append(Change(row.system, row.object, row.record_id, name, previous, value, at, HISTORY))
            previous = value
    return out


def stage_dates(row: RawRow, history: Sequence[Change]) -> list[Change]:
    """``hs_lifecyclestage_<stage>_date`` entries for stages the history does not show."""
    if row.deleted or row.object != "contacts":
        return []
    shown = {c.to_value for c in history if c.field == "lifecyclestage"}
    out = []
    for name, raw in props(row).items():
        if not (name.startswith("hs_lifecyclestage_") and name.endswith("_date")) or raw in (None, ""):
            continue
        stage = name[len("hs_lifecyclestage_"):-len("_date")]
        if stage in shown:
            continue
        at = v.instant(props(row), name)
        assert at is not None
        out.append(Change(row.system, row.object, row.record_id, "lifecyclestage", None, stage, at, STAGE_DATE))
    return out


def observed(before: Link | None, after: Link, explained: Iterable[Change]) -> list[Change]:
    """Tracked values that changed between two versions of a record with no history row
    (or stage date) for the new value between the two versions' times."""
    if before is None or before.deleted or after.deleted or before.seen_at is None or after.seen_at is None:
        return []
    if after.seen_at <= before.seen_at:
        return []
    known = list(explained)
    out = []
    for name, new in after.tracked.items():
        old = before.tracked.get(name)
        if name not in before.tracked or old == new:
            continue
        value = new or ""
        if any(c.field == name and c.to_value == value and before.seen_at - SLACK < c.at <= after.seen_at + SLACK
               for c in known):
            continue
        out.append(Change(after.key.system, after.key.object, after.key.record_id, name, old, value,
                          after.seen_at, OBSERVED))
    return out


# -- the table ------------------------------------------------------------------------------


def recorded(conn: Connection, keys: Sequence[Key]) -> list[Change]:
    """History and stage-date transitions already stored for these records."""
    t = TRANSITIONS
    out: list[Change] = []
    for (system, object_name), group in group_keys(keys).items():
        for part in chunks(sorted({k.record_id for k in group})):
            for r in conn.execute(select(t.c.record_id, t.c.field, t.c.from_value, t.c.to_value, t.c.at, t.c.source)
                                  .where(t.c.system == system, t.c.object == object_name, t.c.record_id.in_(part),
                                         t.c.source != OBSERVED)):
                out.append(Change(system, object_name, r.record_id, r.field, r.from_value, r.to_value, r.at,
                                  r.source))
    return out


def recorded_for_changes(conn: Connection, versions: Sequence[tuple[Link | None, Link]]) -> dict[Key, list[Change]]:
    """History already stored for the Salesforce records whose tracked values changed between
    two versions (the only ones ``observed`` needs to check)."""
    keys = [after.key for before, after in versions if before is not None and after.key.system == "salesforce"
            and before.tracked != after.tracked]
    out: dict[Key, list[Change]] = {}
    for change in recorded(conn, keys):
        out.setdefault(change.key, []).append(change)
    return out


def _opportunities(conn: Connection, keys: Iterable[Key]) -> dict[Key, tuple[int, int | None]]:
    o = OPPORTUNITIES
    sf = sorted({k.record_id for k in keys if k.object == "Opportunity"})
    hs = sorted({k.record_id for k in keys if k.object == "deals"})
    out: dict[Key, tuple[int, int | None]] = {}
    for part in chunks(sf):
        for r in conn.execute(select(o.c.id, o.c.salesforce_id, o.c.person_id).where(o.c.salesforce_id.in_(part))):
            out[Key("salesforce", "Opportunity", r.salesforce_id)] = (int(r.id), r.person_id)
    for part in chunks(hs):
        for r in conn.execute(select(o.c.id, o.c.hubspot_deal_id, o.c.person_id).where(o.c.hubspot_deal_id.in_(part))):
            out[Key("hubspot", "deals", r.hubspot_deal_id)] = (int(r.id), r.person_id)
    return out


def write(conn: Connection, changes: Sequence[Change]) -> None:
    """Store changes, tied to the person or opportunity their record belongs to now."""
    if not changes:
        return
    keys = {c.key for c in changes}
    people = person_ids(conn, [k for k in keys if k.object in ("Lead", "Contact", "contacts")])
    deals = _opportunities(conn, [k for k in keys if k.object in ("Opportunity", "deals")])
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for c in changes:
        opportunity = deals.get(c.key)
        row = {
            "system": c.system, "object": c.object, "record_id": c.record_id, "field": c.field,
            "at": c.at, "to_value": c.to_value, "from_value": c.from_value, "source": c.source,
            "person_id": opportunity[1] if opportunity else people.get(c.key),
            "opportunity_id": opportunity[0] if opportunity else None,
        }
        rows[(c.system, c.object, c.record_id, c.field, c.at, c.to_value)] = row
    upsert_many(conn, TRANSITIONS, list(rows.values()),
                ["system", "object", "record_id", "field", "at", "to_value"])
    history = [c for c in changes if c.source == HISTORY]
    if history:
        _drop_explained(conn, history)


def _drop_explained(conn: Connection, history: Sequence[Change]) -> None:
    """Observed changes that a history row read later explains are the same change."""
    t = TRANSITIONS
    by_record: dict[Key, dict[tuple[str, str], list[datetime]]] = {}
    for c in history:
        by_record.setdefault(c.key, {}).setdefault((c.field, c.to_value), []).append(c.at)
    gone: list[int] = []
    for (system, object_name), group in group_keys(by_record).items():
        for part in chunks(sorted({k.record_id for k in group})):
            for r in conn.execute(select(t.c.id, t.c.record_id, t.c.field, t.c.to_value, t.c.at).where(
                    t.c.system == system, t.c.object == object_name, t.c.record_id.in_(part), t.c.source == OBSERVED)):
                times = by_record[Key(system, object_name, r.record_id)].get((r.field, r.to_value), [])
                if any(r.at - LATE_HISTORY <= at <= r.at for at in times):
                    gone.append(r.id)
    for doomed in chunks(gone):
        conn.execute(delete(t).where(t.c.id.in_(doomed)))


def relink_people(conn: Connection, keys: Iterable[Key]) -> None:
    """Re-tie the transitions of these leads, contacts and HubSpot contacts to their person."""
    t, pr = TRANSITIONS, PERSON_RECORDS
    person = (select(pr.c.person_id).where(pr.c.system == t.c.system, pr.c.object == t.c.object,
                                           pr.c.record_id == t.c.record_id).scalar_subquery())
    for (system, object_name), group in group_keys(keys).items():
        for part in chunks(sorted({k.record_id for k in group})):
            conn.execute(update(t).where(t.c.system == system, t.c.object == object_name, t.c.record_id.in_(part))
                         .values(person_id=person))


def relink_opportunities(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Re-tie the transitions of these opportunities' records (``id``, ``salesforce_id``,
    ``hubspot_deal_id``, ``person_id``) to them and their person."""
    t = TRANSITIONS
    params = []
    for r in rows:
        for system, object_name, record_id in (("salesforce", "Opportunity", r.get("salesforce_id")),
                                               ("hubspot", "deals", r.get("hubspot_deal_id"))):
            if record_id:
                params.append({"k_system": system, "k_object": object_name, "k_id": record_id,
                               "k_opp": r["id"], "k_person": r.get("person_id")})
    if params:
        conn.execute(update(t).where(
            t.c.system == bindparam("k_system"), t.c.object == bindparam("k_object"),
            t.c.record_id == bindparam("k_id"),
        ).values(opportunity_id=bindparam("k_opp"), person_id=bindparam("k_person")), params)
