"""What the store knows about itself: per-object counts, cursors, runs, API usage, quarantine."""

from __future__ import annotations

import os
import socket
from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine, case, func, select

from detente.store.bulk import upsert
from detente.store.tables import ApiUsage, Cursor, Quarantine, RawRecord, Run

RAW = RawRecord.__table__  # type: ignore[attr-defined]
CURSORS = Cursor.__table__  # type: ignore[attr-defined]
QUARANTINE = Quarantine.__table__  # type: ignore[attr-defined]
RUNS = Run.__table__  # type: ignore[attr-defined]
USAGE = ApiUsage.__table__  # type: ignore[attr-defined]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def store_status(engine: Engine, today: date) -> dict[str, Any]:
    """A JSON-ready summary of the store for ``detente status``."""
    with engine.connect() as conn:
        counts = conn.execute(
            select(RAW.c.system, RAW.c.object,
                   func.sum(case((RAW.c.deleted.is_(False), 1), else_=0)).label("live"),
                   func.sum(case((RAW.c.deleted.is_(True), 1), else_=0)).label("deleted"))
            .group_by(RAW.c.system, RAW.c.object)
        ).all()
        cursors = {(r.system, r.object): r for r in conn.execute(select(CURSORS)).all()}
        quarantined = dict(
            ((r.system, r.object), r.n) for r in conn.execute(
                select(QUARANTINE.c.system, QUARANTINE.c.object, func.count().label("n"))
                .where(QUARANTINE.c.resolved_at.is_(None)).group_by(QUARANTINE.c.system, QUARANTINE.c.object)
            )
        )
        usage = conn.execute(select(USAGE).where(USAGE.c.day == today)).all()
        last_runs = conn.execute(
            select(RUNS).where(RUNS.c.id.in_(
                select(func.max(RUNS.c.id)).group_by(RUNS.c.kind, RUNS.c.system)
            )).order_by(RUNS.c.kind, RUNS.c.system)
        ).all()
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for row in counts:
        objects[(row.system, row.object)] = {"live": int(row.live or 0), "deleted": int(row.deleted or 0)}
    for key in cursors:
        objects.setdefault(key, {"live": 0, "deleted": 0})
    result: dict[str, Any] = {"objects": [], "runs": [], "api_usage": []}
    for (system, name), item in sorted(objects.items()):
        cur = cursors.get((system, name))
        result["objects"].append({
            "system": system, "object": name, **item,
            "quarantined": quarantined.get((system, name), 0),
            "cursor": {"modified_at": _iso(cur.modified_at), "last_id": cur.last_id} if cur else None,
            "last_pulled_at": _iso(cur.updated_at) if cur else None,
            "last_full_pull_at": _iso(cur.full_pull_at) if cur else None,
        })
    for run in last_runs:
        result["runs"].append({
            "kind": run.kind, "system": run.system, "started_at": _iso(run.started_at),
            "ended_at": _iso(run.ended_at), "outcome": run.outcome, "counts": run.counts, "error": run.error,
        })
    for u in usage:
        result["api_usage"].append({"system": u.system, "day": u.day.isoformat(), "calls": u.calls,
                                    "remaining": u.remaining, "limit": u.limit})
    return result


def calls_today(engine: Engine, system: str, today: date) -> int:
    with engine.connect() as conn:
        value = conn.execute(
            select(USAGE.c.calls).where(USAGE.c.system == system, USAGE.c.day == today)
        ).scalar()
    return int(value or 0)


def record_usage(
    engine: Engine, system: str, today: date, calls: int, remaining: int | None, limit: int | None
) -> None:
    """Add a run's calls to the day's total; keep what the CRM last said about its quota."""
    with engine.begin() as conn:
        before = conn.execute(
            select(USAGE.c.calls).where(USAGE.c.system == system, USAGE.c.day == today)
        ).scalar()
        upsert(conn, USAGE, [{"system": system, "day": today, "calls": int(before or 0) + calls,
                              "remaining": remaining, "limit": limit}], ["system", "day"])


def start_run(engine: Engine, kind: str, system: str | None, now: datetime) -> int:
    with engine.begin() as conn:
        run_id = conn.execute(
            RUNS.insert().values(kind=kind, system=system, started_at=now, outcome="running", counts={},
                                 host=socket.gethostname(), pid=os.getpid())
            .returning(RUNS.c.id)
        ).scalar_one()
        return int(run_id)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def interrupt_runs(engine: Engine, now: datetime) -> list[dict[str, Any]]:
    """Mark ``interrupted`` the runs left ``running`` by a process of this host that is gone
    (killed, crashed, the machine restarted): a later look at ``runs`` must not show them
    still going. Runs of other hosts are left alone (their processes cannot be seen from here).
    Returns the rows marked."""
    host = socket.gethostname()
    with engine.begin() as conn:
        rows = [dict(r._mapping) for r in conn.execute(
            select(RUNS.c.id, RUNS.c.kind, RUNS.c.system, RUNS.c.pid, RUNS.c.started_at)
            .where(RUNS.c.outcome == "running", RUNS.c.host == host))]
        gone = [r for r in rows if r["pid"] is None or (r["pid"] != os.getpid() and not _alive(int(r["pid"])))]
        for r in gone:
            conn.execute(RUNS.update().where(RUNS.c.id == r["id"]).values(
                outcome="interrupted", ended_at=now,
                error=f"interrupted: process {r['pid']} on this host ended before the run finished (killed or "
                      "crashed); the next run picks up from what was committed"))
    return gone


def finish_run(engine: Engine, run_id: int, now: datetime, outcome: str, counts: dict[str, Any],
               error: str | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(RUNS.update().where(RUNS.c.id == run_id).values(
            ended_at=now, outcome=outcome, counts=counts, error=error))
