"""One normalize run: every stage in dependency order, each reading only what is dirty or
pending (``full`` marks everything dirty first, so everything is derived again).

Order: owners and campaigns (looked up by everything else) → Salesforce field history
(so that changes it explains are not taken for observed ones) → people (read, then link)
→ opportunities (read, then build) → activities → copies and counts of the people whose
activities changed (queued in ``people_pending`` by the stages before). Every chunk
commits with the dirty flags it clears, so a run that stops part-way loses nothing: the
next run picks up where it stopped. One run at a time per store (the scheduler's lock).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, select, update

from detente.logs import get_logger
from detente.normalize import activities, links, opportunities, people
from detente.normalize import transitions as tr
from detente.normalize import values as v
from detente.normalize.batches import LINKS, RAW, RawRow, Rejected, each_dirty_chunk, quarantine, resolve_quarantine
from detente.normalize.campaigns import campaign_maps, refresh_campaigns
from detente.normalize.lookups import Lookups
from detente.normalize.mapping import DEFAULT, Mappings
from detente.normalize.owners import owner_maps, refresh_owners
from detente.normalize.report import Report
from detente.store.bulk import upsert
from detente.store.tables import NormalizeState

log = get_logger("detente.normalize")
STATE = NormalizeState.__table__  # type: ignore[attr-defined]
# Objects the stages read; whatever else was pulled (accounts, companies; pipelines are read
# whole at the start of every run) is marked read, so that "dirty" keeps meaning "not yet read".
READ = frozenset({
    ("salesforce", "User"), ("hubspot", "owners"), ("salesforce", "Campaign"), *tr.SF_HISTORY_OBJECTS,
    *links.PEOPLE_OBJECTS, ("salesforce", "CampaignMember"), *links.DEAL_OBJECTS,
    ("salesforce", "OpportunityContactRole"), *activities.OBJECTS,
})


def normalize(engine: Engine, *, now: datetime, full: bool = False, maps: Mappings = DEFAULT,
              record_run: bool = True) -> Report:
    """Bring the unified model up to date with the raw layer."""
    from detente.status import finish_run, start_run

    report = Report()
    started = time.monotonic()
    run_id = start_run(engine, "normalize", None, now) if record_run else None
    try:
        fingerprint = maps.fingerprint()
        if not full and _mappings_changed(engine, fingerprint):
            log.info("normalize.mappings_changed", why="the rules' fields read other CRM fields or translate "
                     "values otherwise than the last normalize did; every person is read again")
            full = True
        if full:
            _stage(report, "mark", lambda: mark_everything(engine))
        _stage(report, "owners", lambda: report.add("read.owners", refresh_owners(engine, now)))
        _stage(report, "campaigns", lambda: report.add("read.salesforce.Campaign", refresh_campaigns(engine, now)))
        lookups = _lookups(engine, maps)
        _stage(report, "history", lambda: read_history(engine, now, report))
        _stage(report, "people.read", lambda: people.read_people(engine, now, lookups, report))
        _stage(report, "people.link", lambda: people.link_pending(engine, lookups, report))
        _stage(report, "opportunities.read", lambda: opportunities.read_opportunities(engine, now, report))
        _stage(report, "opportunities.build", lambda: opportunities.build_pending(engine, lookups, report))
        _stage(report, "activities", lambda: activities.write_activities(
            engine, now, (lookups.salesforce_owners, lookups.hubspot_owners), report))
        _stage(report, "recount", lambda: activities.recount(engine, report))
        _stage(report, "unused", lambda: mark_unused_read(engine))
        _save_mappings(engine, fingerprint, now)
    except Exception as exc:
        if run_id is not None:
            finish_run(engine, run_id, _later(now, started), "failed", report.as_dict(), f"{type(exc).__name__}")
        raise
    if run_id is not None:
        finish_run(engine, run_id, _later(now, started), "ok", report.as_dict())
    log.info("normalize.done", duration_ms=round((time.monotonic() - started) * 1000),
             **{k.replace(".", "_"): n for k, n in sorted(report.counts.items())})
    return report


def _later(now: datetime, started: float) -> datetime:
    return now + timedelta(seconds=time.monotonic() - started)


def _stage(report: Report, name: str, work: Callable[[], object]) -> None:
    started = time.monotonic()
    work()
    report.seconds[name] = time.monotonic() - started
    log.debug("normalize.stage", stage=name, duration_ms=round(report.seconds[name] * 1000))


def _lookups(engine: Engine, maps: Mappings) -> Lookups:
    with engine.connect() as conn:
        sf_owners, hs_owners = owner_maps(conn)
        by_sf, by_name = campaign_maps(conn)
        stages = opportunities.read_pipelines(conn)
    return Lookups(sf_owners, hs_owners, by_sf, by_name, maps, stages)


def _mappings_changed(engine: Engine, fingerprint: str) -> bool:
    """Whether the last normalize read with other mappings (unknown, before the first: no)."""
    with engine.connect() as conn:
        last = conn.execute(select(STATE.c.mappings).where(STATE.c.id == 1)).scalar_one_or_none()
    return last is not None and last != fingerprint


def _save_mappings(engine: Engine, fingerprint: str, now: datetime) -> None:
    with engine.begin() as conn:
        upsert(conn, STATE, [{"id": 1, "mappings": fingerprint, "updated_at": now}], ["id"])


def mark_everything(engine: Engine) -> None:
    """Make every raw row dirty and every link pending: the next stages derive it all again."""
    with engine.begin() as conn:
        conn.execute(update(RAW).where(RAW.c.dirty.is_(False)).values(dirty=True))
        conn.execute(update(LINKS).where(LINKS.c.pending.is_(False)).values(pending=True))


def mark_unused_read(engine: Engine) -> None:
    with engine.connect() as conn:
        found = conn.execute(select(RAW.c.system, RAW.c.object).where(RAW.c.dirty).distinct()).all()
    for system, object_name in found:
        if (system, object_name) not in READ:
            n = each_dirty_chunk(engine, system, object_name, lambda _conn, _rows: None)
            log.debug("normalize.unused", system=system, object=object_name, count=n)


def read_history(engine: Engine, now: datetime, report: Report) -> None:
    """Salesforce field history rows become transitions."""
    for object_name in tr.SF_HISTORY:
        def work(conn: Connection, rows: list[RawRow]) -> None:
            changes: list[tr.Change] = []
            rejected: list[Rejected] = []
            for row in rows:
                try:
                    changes += tr.salesforce_history(row)
                except v.BadRecord as exc:
                    rejected.append(Rejected(row.key, str(exc), row.data))
            tr.write(conn, changes)
            quarantine(conn, rejected, now)
            bad = {r.key for r in rejected}
            resolve_quarantine(conn, [r.key for r in rows if r.key not in bad], now)
            report.add("quarantined", len(rejected))
            report.add("transitions.read", len(changes))

        report.add(f"read.salesforce.{object_name}", each_dirty_chunk(engine, "salesforce", object_name, work))
