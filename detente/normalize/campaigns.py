"""Campaigns: Salesforce campaigns with their type, status, dates, costs and the channel and
offer custom fields. HubSpot names a contact's campaign in free text; people link to a
campaign of that name, else to their earliest Salesforce campaign membership.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select

from detente.normalize import values as v
from detente.normalize.batches import (
    CAMPAIGNS,
    RawRow,
    Rejected,
    each_dirty_chunk,
    quarantine,
    resolve_quarantine,
    upsert_many,
)

CHANNEL_FIELD = "Channel__c"
OFFER_FIELD = "Offer__c"


def campaign_row(row: RawRow) -> dict[str, Any]:
    d = row.data
    return {
        "salesforce_id": row.record_id,
        "name": v.text(d, "Name") or row.record_id,
        "type": v.text(d, "Type"),
        "status": v.text(d, "Status"),
        "channel": v.text(d, CHANNEL_FIELD),
        "offer": v.text(d, OFFER_FIELD),
        "actual_cost": v.number(d, "ActualCost"),
        "budgeted_cost": v.number(d, "BudgetedCost"),
        "start_date": v.day(d, "StartDate"),
        "end_date": v.day(d, "EndDate"),
    }


def refresh_campaigns(engine: Engine, now: datetime) -> int:
    def work(conn: Connection, rows: list[RawRow]) -> None:
        good: list[dict[str, Any]] = []
        rejected: list[Rejected] = []
        for row in rows:
            try:
                good.append(campaign_row(row))
            except v.BadRecord as exc:
                rejected.append(Rejected(row.key, str(exc), row.data))
        upsert_many(conn, CAMPAIGNS, good, ["salesforce_id"])
        quarantine(conn, rejected, now)
        bad = {r.key for r in rejected}
        resolve_quarantine(conn, [r.key for r in rows if r.key not in bad], now)

    return each_dirty_chunk(engine, "salesforce", "Campaign", work)


def campaign_maps(conn: Connection) -> tuple[dict[str, int], dict[str, int]]:
    """Salesforce campaign id → campaign id, case-folded name → campaign id (the lowest id
    when names repeat)."""
    by_sf: dict[str, int] = {}
    by_name: dict[str, int] = {}
    for r in conn.execute(select(CAMPAIGNS.c.id, CAMPAIGNS.c.salesforce_id, CAMPAIGNS.c.name)
                          .order_by(CAMPAIGNS.c.id)):
        if r.salesforce_id:
            by_sf[r.salesforce_id] = int(r.id)
        by_name.setdefault(str(r.name).casefold(), int(r.id))
    return by_sf, by_name
