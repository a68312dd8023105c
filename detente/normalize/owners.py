"""Owners: Salesforce users and HubSpot owners, mapped across the systems by normalized email.

The team is the user's ``Department``, else the owner's primary HubSpot team. An owner is
active only while no system says otherwise (inactive user, archived owner); inactive and
archived owners are kept, because they still own records. Owners are few, so any change
recomputes the whole mapping; rows keep their ids (matched by Salesforce user id, then
HubSpot owner id, then email), so nothing that points at an owner needs re-linking.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, or_, select

from detente.normalize import values as v
from detente.normalize.batches import (
    OWNERS,
    RAW,
    RawRow,
    Rejected,
    as_raw,
    insert_returning_ids,
    mark_read,
    quarantine,
    resolve_quarantine,
    update_by_id,
)

SOURCES = (("salesforce", "User"), ("hubspot", "owners"))


@dataclass(frozen=True)
class CrmOwner:
    """A Salesforce user or a HubSpot owner, read."""

    system: str
    id: str
    email: str
    name: str | None
    team: str | None
    active: bool


def read_owner(row: RawRow) -> CrmOwner:
    d = row.data
    if row.system == "salesforce":
        email = v.normal_email(v.text(d, "Email"))
        name = v.text(d, "Name") or " ".join(x for x in (v.text(d, "FirstName"), v.text(d, "LastName")) if x) or None
        active = v.boolean(d, "IsActive")
        return CrmOwner("salesforce", row.record_id, email or f"salesforce-user:{row.record_id}", name,
                        v.text(d, "Department"), bool(active is not False) and not row.deleted)
    email = v.normal_email(v.text(d, "email"))
    name = " ".join(x for x in (v.text(d, "firstName"), v.text(d, "lastName")) if x) or None
    teams = d.get("teams") or []
    if not isinstance(teams, list) or not all(isinstance(t, Mapping) for t in teams):
        raise v.BadRecord(f"teams: expected a list of teams, got {v.shape(teams)}")
    primary = sorted(teams, key=lambda t: not t.get("primary"))
    team = v.text(primary[0], "name") if primary else None
    archived = v.boolean(d, "archived")
    return CrmOwner("hubspot", row.record_id, email or f"hubspot-owner:{row.record_id}", name, team,
                    not archived and not row.deleted)


def merge_owners(found: Iterable[CrmOwner], existing: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per email (``id`` None for a new owner), keeping existing rows' ids."""
    by_email: dict[str, list[CrmOwner]] = {}
    for o in found:
        by_email.setdefault(o.email, []).append(o)
    by_sf = {r["salesforce_user_id"]: r["id"] for r in existing if r["salesforce_user_id"]}
    by_hs = {r["hubspot_owner_id"]: r["id"] for r in existing if r["hubspot_owner_id"]}
    by_mail = {r["email"]: r["id"] for r in existing}
    taken: set[int] = set()
    rows = []
    for email in sorted(by_email):
        group = by_email[email]
        sf = sorted((o for o in group if o.system == "salesforce"), key=lambda o: (not o.active, o.id))
        hs = sorted((o for o in group if o.system == "hubspot"), key=lambda o: (not o.active, v.id_order(o.id)))
        first_sf, first_hs = (sf[0] if sf else None), (hs[0] if hs else None)
        candidates = [by_sf.get(first_sf.id) if first_sf else None, by_hs.get(first_hs.id) if first_hs else None,
                      by_mail.get(email)]
        owner_id = next((c for c in candidates if c is not None and c not in taken), None)
        if owner_id is not None:
            taken.add(owner_id)
        rows.append({
            "id": owner_id, "email": email,
            "name": (first_sf.name if first_sf else None) or (first_hs.name if first_hs else None),
            "team": (first_sf.team if first_sf else None) or (first_hs.team if first_hs else None),
            "salesforce_user_id": first_sf.id if first_sf else None,
            "hubspot_owner_id": first_hs.id if first_hs else None,
            "active": all(o.active for o in group),
        })
    return rows


def refresh_owners(engine: Engine, now: datetime) -> int:
    """Re-map every owner when any user or owner changed. Returns the rows read."""
    with engine.begin() as conn:
        dirty = conn.execute(select(RAW.c.record_id).where(
            RAW.c.dirty, RAW.c.system.in_(["salesforce", "hubspot"]), RAW.c.object.in_(["User", "owners"]),
        ).limit(1)).first()
        if dirty is None:
            return 0
        rows = [as_raw(r) for r in conn.execute(select(RAW).where(or_(
            and_(RAW.c.system == "salesforce", RAW.c.object == "User"),
            and_(RAW.c.system == "hubspot", RAW.c.object == "owners"))))]
        found: list[CrmOwner] = []
        rejected: list[Rejected] = []
        for row in rows:
            try:
                found.append(read_owner(row))
            except v.BadRecord as exc:
                rejected.append(Rejected(row.key, str(exc), row.data))
        write_owners(conn, merge_owners(found, [dict(r._mapping) for r in conn.execute(select(OWNERS))]))
        quarantine(conn, rejected, now)
        bad = {r.key for r in rejected}
        resolve_quarantine(conn, [r.key for r in rows if r.key not in bad], now)
        mark_read(conn, rows)
        return len(rows)


def write_owners(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Write the merged owners, keeping ids; emails may move between rows, system ids too."""
    current = {r.id: r for r in conn.execute(select(OWNERS))}
    old = [r for r in rows if r["id"] is not None]
    # Park the emails that move first, so that no two rows ever share one.
    update_by_id(conn, OWNERS, [{"id": r["id"], "email": f"~moving~{r['id']}"} for r in old
                                if current[r["id"]].email != r["email"]])
    written = {r["id"] for r in old}
    for column in ("salesforce_user_id", "hubspot_owner_id"):
        claimed = {r[column] for r in rows if r[column]}
        update_by_id(conn, OWNERS, [{"id": i, column: None} for i, r in current.items()
                                    if i not in written and r._mapping[column] in claimed])
    update_by_id(conn, OWNERS, old)
    insert_returning_ids(conn, OWNERS, [{k: val for k, val in r.items() if k != "id"} for r in rows
                                        if r["id"] is None])


def owner_maps(conn: Connection) -> tuple[dict[str, int], dict[str, int]]:
    """Salesforce user id → owner id, HubSpot owner id → owner id."""
    sf: dict[str, int] = {}
    hs: dict[str, int] = {}
    for r in conn.execute(select(OWNERS.c.id, OWNERS.c.salesforce_user_id, OWNERS.c.hubspot_owner_id)):
        if r.salesforce_user_id:
            sf[r.salesforce_user_id] = int(r.id)
        if r.hubspot_owner_id:
            hs[r.hubspot_owner_id] = int(r.id)
    return sf, hs
