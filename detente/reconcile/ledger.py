"""Keep the stored findings equal to the desired ones: open, update, resolve, with history.

``plan(desired, stored, now, version)`` is pure: it compares what the checks find now with
the findings stored, and returns the writes (``Write``) that make them equal; unchanged
findings produce nothing, so running again on the same data writes nothing. ``reconcile``
decides whom to evaluate (everyone, or who changed), reads their facts chunk by chunk, runs
the checks and applies each chunk's plan in its own transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, Engine, and_, bindparam, delete, func, insert, or_, select, update

from detente.logs import get_logger
from detente.reconcile import funnel, labels
from detente.reconcile.facts import (
    ACTIVITIES,
    OPPORTUNITIES,
    PEOPLE,
    Facts,
    OwnerFact,
    load_facts,
    load_identity_facts,
    load_owners,
    load_unowned,
)
from detente.reconcile.feedback import feedback_gaps
from detente.reconcile.identity import identity
from detente.reconcile.model import IDENTITY, Finding
from detente.reconcile.sla import sla_findings
from detente.rules import checked as c
from detente.store.findings import AuditState, AuditWake, FindingEvent, FindingRow
from detente.store.tables import PersonRecord, RawRecord

log = get_logger("detente.reconcile")
FINDINGS = FindingRow.__table__  # type: ignore[attr-defined]
EVENTS = FindingEvent.__table__  # type: ignore[attr-defined]
STATE = AuditState.__table__  # type: ignore[attr-defined]
WAKE = AuditWake.__table__  # type: ignore[attr-defined]
RAW = RawRecord.__table__  # type: ignore[attr-defined]
PERSON_RECORDS = PersonRecord.__table__  # type: ignore[attr-defined]
# recorded: found already resolved (an SLA stopped late before detente looked).
Event = Literal["opened", "updated", "resolved", "reopened", "recorded"]
# What makes a stored finding differ from a desired one (opened_at is kept once open).
COMPARED = ("rule", "kind", "rules_version", "person_id", "opportunity_id", "records", "email", "salesforce_id",
            "hubspot_id", "team", "owner_email", "due_at", "explanation", "state", "started_at", "stopped_at",
            "status", "resolved_at", "resolution")


def row_of(f: Finding, version: str, now: datetime) -> dict[str, Any]:
    return {"key": f.key, "kind": f.kind, "rule": f.rule, "rules_version": version, "person_id": f.person_id,
            "opportunity_id": f.opportunity_id, "records": {k: list(v) for k, v in sorted(f.records.items())},
            "email": f.email, "salesforce_id": f.salesforce_id, "hubspot_id": f.hubspot_id, "team": f.team,
            "owner_email": f.owner_email, "status": f.status, "opened_at": f.opened_at, "due_at": f.due_at,
            "resolved_at": f.resolved_at, "resolution": f.resolution, "explanation": f.explanation,
            "state": f.state, "started_at": f.started_at, "stopped_at": f.stopped_at, "evaluated_at": now}


@dataclass(frozen=True)
class Write:
    event: Event
    row: Mapping[str, Any]  # the finding's full row after the write


def plan(desired: Iterable[Finding], stored: Mapping[str, Mapping[str, Any]], now: datetime,
         version: str) -> list[Write]:
    writes: list[Write] = []
    seen: set[str] = set()
    for f in desired:
        seen.add(f.key)
        row = row_of(f, version, now)
        old = stored.get(f.key)
        if f.status == "resolved":  # true of the past only: an SLA clock that has stopped
            if old is None and f.state != "met":
                writes.append(Write("recorded", row))
            elif old is not None and old["status"] == "open":
                writes.append(Write("resolved", {**row, "opened_at": _opened(old, row)}))
            elif old is not None and any(old[k] != row[k] for k in COMPARED):
                writes.append(Write("updated", {**row, "opened_at": _opened(old, row)}))
        elif old is None:
            writes.append(Write("opened", row))
        elif old["status"] != "open":
            writes.append(Write("reopened", row))
        elif any(old[k] != row[k] for k in COMPARED):
            writes.append(Write("updated", {**row, "opened_at": _opened(old, row)}))
    for key, old in sorted(stored.items()):
        if key not in seen and old["status"] == "open":
            writes.append(Write("resolved", {**old, "status": "resolved", "resolved_at": now, "evaluated_at": now,
                                             "resolution": "no longer true: the data or the rules changed"}))
    return writes


def apply(conn: Connection, writes: Iterable[Write]) -> dict[str, int]:
    """Write the plan: new rows and updates in batches, and one history event per write."""
    counts: dict[str, int] = {}
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for w in writes:
        row = dict(w.row)
        (inserts if w.event in ("opened", "recorded") else updates).append(row)
        events.append({"finding_key": row["key"], "at": row["evaluated_at"], "event": w.event,
                       "rules_version": row["rules_version"], "status": row["status"], "state": row["state"],
                       "due_at": row["due_at"], "explanation": row["explanation"]})
        counts[w.event] = counts.get(w.event, 0) + 1
    if inserts:
        conn.execute(insert(FINDINGS), inserts)
    if updates:
        columns = [c.name for c in FINDINGS.c if c.name != "key"]
        stmt = update(FINDINGS).where(FINDINGS.c.key == bindparam("_key")) \
            .values({name: bindparam(name) for name in columns})
        conn.execute(stmt, [{"_key": r["key"], **{name: r[name] for name in columns}} for r in updates])
    if events:
        conn.execute(insert(EVENTS), events)
    return counts


# -- runs: everyone, or only who changed ----------------------------------------------------------

CHUNK = 10_000  # people evaluated per transaction: bounds memory, whatever the store's size


@dataclass(frozen=True)
class Scope:
    """Who a run evaluates: everyone (``people`` None) or the people who changed or fell due."""

    people: list[int] | None
    why: str
    watermark: datetime | None


def evaluate(facts: Facts, rules: c.Rules, now: datetime) -> list[Finding]:
    """Every finding the checks see in ``facts`` at ``now``."""
    return sorted([*person_findings(facts, rules, now), *identity(facts, now)], key=lambda f: f.key)


def person_findings(facts: Facts, rules: c.Rules, now: datetime) -> list[Finding]:
    """The findings about the people and opportunities in ``facts`` (all but identity)."""
    return [*labels.drift(facts, rules, now), *labels.missed_label(facts, rules, now),
            *labels.disagreement(facts, rules, now), *sla_findings(facts, rules, now),
            *feedback_gaps(facts, rules, now)]


def _facts_by_chunk(engine: Engine, rules: c.Rules, now: datetime, people: list[int], chunk: int,
                    owners: dict[int, OwnerFact]) -> Iterator[tuple[list[int], Facts]]:
    for part in _chunks(people, chunk):
        # Facts are read on their own connection: StageEvaluator sets ``yield_per`` on the
        # connection it is given, which would make later statements on it use server-side cursors.
        with engine.connect() as conn:
            yield part, load_facts(conn, rules, now, part, records=False, owners=owners)


def _shared_checks(engine: Engine, rules: c.Rules, now: datetime, owners: dict[int, OwnerFact]) -> list[Finding]:
    """Identity and opportunities linked to no person: checked whole every run."""
    with engine.connect() as conn:
        shared = load_identity_facts(conn, rules, now, owners)
        unowned = load_unowned(conn, rules, now, owners)
    return [*identity(shared, now), *feedback_gaps(unowned, rules, now)]


def _load_owners(engine: Engine, rules: c.Rules, now: datetime) -> dict[int, OwnerFact]:
    with engine.connect() as conn:
        return load_owners(conn, rules, now)


def evaluate_store(engine: Engine, rules: c.Rules, now: datetime, chunk: int = CHUNK) -> Iterator[Finding]:
    """Every finding as of ``now``, read chunk by chunk; nothing is stored (``audit --as-of``)."""
    owners = _load_owners(engine, rules, now)
    for _, facts in _facts_by_chunk(engine, rules, now, _live_people(engine), chunk, owners):
        yield from person_findings(facts, rules, now)
    yield from _shared_checks(engine, rules, now, owners)


def reconcile(engine: Engine, rules: c.Rules, now: datetime, *, full: bool = False,
              chunk: int = CHUNK) -> dict[str, int]:
    """Bring the stored findings up to date with the store and the rules as of ``now``.

    Evaluates everyone on the first run, with ``full``, or when the rules version or an
    owner changed; otherwise only the people whose CRM records were pulled since the last
    run, plus those whose clocks or grace periods fell due (``audit_wake``). Identity and
    unowned opportunities are checked every run (found set-wise in SQL, cheap). Each chunk of
    people commits on its own. Returns how many findings were opened, updated, resolved,
    reopened and recorded.
    """
    scope = plan_scope(engine, rules, now, full)
    log.info("audit.scope", why=scope.why, people="all" if scope.people is None else len(scope.people))
    counts: Counter[str] = Counter()
    people = _live_people(engine, with_open_findings=True) if scope.people is None else scope.people
    owners = _load_owners(engine, rules, now)
    implied, clock_time = funnel.implied_stages(rules), funnel.ClockTime(rules)
    for part, facts in _facts_by_chunk(engine, rules, now, people, chunk, owners):
        found = person_findings(facts, rules, now)
        with engine.begin() as conn:
            stored = stored_findings(conn, person_ids=part, keys=[f.key for f in found])
            counts.update(apply(conn, plan(found, stored, now, rules.version)))
            _save_wakes(conn, part, facts.wake)
            # What the metrics read: the stages reached and every clock, met ones included.
            funnel.save(conn, part, funnel.stage_rows(facts, rules, implied), funnel.clock_rows(found, clock_time),
                        facts.people)
    found = _shared_checks(engine, rules, now, owners)
    with engine.begin() as conn:
        counts.update(apply(conn, plan(found, _shared_findings(conn, [f.key for f in found]), now, rules.version)))
        _save_state(conn, rules.version, scope, now)
    return dict(counts)


def plan_scope(engine: Engine, rules: c.Rules, now: datetime, full: bool) -> Scope:
    with engine.connect() as conn:
        state = conn.execute(select(STATE).where(STATE.c.id == 1)).first()
        watermark = _next_watermark(conn)
        if full:
            return Scope(None, "asked for a full audit", watermark)
        if state is None:
            return Scope(None, "first audit of this store", watermark)
        if state.rules_version != rules.version:
            return Scope(None, f"rules changed ({state.rules_version} -> {rules.version})", watermark)
        since = state.watermark
        if since is not None and _owners_changed(conn, since):
            return Scope(None, "an owner changed (teams may have changed)", watermark)
        changed = _changed_people(conn, since) if since is not None else set()
        woken = {int(i) for (i,) in conn.execute(select(WAKE.c.person_id).where(WAKE.c.at <= now))}
        return Scope(sorted(changed | woken), f"{len(changed)} changed, {len(woken)} fell due", watermark)


def _next_watermark(conn: Connection) -> datetime | None:
    """The pull time up to which every raw row has been normalized (dirty rows wait)."""
    r = RAW
    latest: datetime | None = conn.execute(select(func.max(r.c.pulled_at))).scalar()
    waiting: datetime | None = conn.execute(select(func.min(r.c.pulled_at)).where(r.c.dirty.is_(True))).scalar()
    if waiting is not None and (latest is None or waiting <= latest):
        return waiting - timedelta(microseconds=1)
    return latest


def _owners_changed(conn: Connection, since: datetime) -> bool:
    r = RAW
    stmt = select(r.c.record_id).where(r.c.pulled_at > since, or_(
        and_(r.c.system == "salesforce", r.c.object == "User"), and_(r.c.system == "hubspot", r.c.object == "owners")))
    return conn.execute(stmt.limit(1)).first() is not None


def _changed_people(conn: Connection, since: datetime) -> set[int]:
    """People whose records, activities or opportunities were pulled after ``since`` (each
    pull stamps its rows with its own start time, so a later pull is always after)."""
    r = RAW.alias("r")
    changed = select(r.c.system, r.c.object, r.c.record_id).where(r.c.pulled_at > since).subquery("changed")
    pr, a, o = PERSON_RECORDS, ACTIVITIES, OPPORTUNITIES
    queries = [
        select(pr.c.person_id).join(changed, and_(changed.c.system == pr.c.system, changed.c.object == pr.c.object,
                                                  changed.c.record_id == pr.c.record_id)),
        select(a.c.person_id).join(changed, and_(changed.c.system == a.c.system, changed.c.object == a.c.object,
                                                 changed.c.record_id == a.c.record_id)),
        select(o.c.person_id).join(changed, and_(changed.c.system == "salesforce",
                                                 changed.c.object == "Opportunity", changed.c.record_id ==
                                                 o.c.salesforce_id)),
        select(o.c.person_id).join(changed, and_(changed.c.system == "hubspot", changed.c.object == "deals",
                                                 changed.c.record_id == o.c.hubspot_deal_id)),
    ]
    found: set[int] = set()
    for q in queries:
        found.update(int(i) for (i,) in conn.execute(q) if i is not None)
    return found


def _live_people(engine: Engine, *, with_open_findings: bool = False) -> list[int]:
    with engine.connect() as conn:
        ids = {int(i) for (i,) in conn.execute(select(PEOPLE.c.id).where(PEOPLE.c.deleted.is_(False)))}
        if with_open_findings:  # people deleted since keep their findings until they resolve
            ids.update(int(i) for (i,) in conn.execute(select(FINDINGS.c.person_id).where(
                FINDINGS.c.status == "open", FINDINGS.c.kind != IDENTITY, FINDINGS.c.person_id.is_not(None))))
    return sorted(ids)


def _chunks(ids: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


def _opened(old: Mapping[str, Any], row: Mapping[str, Any]) -> Any:
    """A finding keeps the moment it opened, unless an SLA clock changed state (running to
    breached opens at the due time)."""
    return old["opened_at"] if old["state"] == row["state"] else row["opened_at"]


def stored_findings(conn: Connection, *, person_ids: list[int] | None = None,
                    keys: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The stored findings about ``person_ids`` (all but identity) and those with ``keys``."""
    if person_ids is None:
        return {r.key: dict(r._mapping) for r in conn.execute(select(FINDINGS))}
    out = {r.key: dict(r._mapping) for r in conn.execute(select(FINDINGS).where(
        FINDINGS.c.person_id.in_(person_ids), FINDINGS.c.kind != IDENTITY))}
    wanted = [k for k in keys or [] if k not in out]
    for i in range(0, len(wanted), 5000):
        out.update((r.key, dict(r._mapping)) for r in conn.execute(
            select(FINDINGS).where(FINDINGS.c.key.in_(wanted[i:i + 5000]))))
    return out


def _shared_findings(conn: Connection, keys: list[str]) -> dict[str, dict[str, Any]]:
    """Identity findings and findings about opportunities linked to no person."""
    stmt = select(FINDINGS).where(or_(FINDINGS.c.kind == IDENTITY, and_(
        FINDINGS.c.person_id.is_(None), FINDINGS.c.opportunity_id.is_not(None))))
    out = {r.key: dict(r._mapping) for r in conn.execute(stmt)}
    wanted = [k for k in keys if k not in out]
    if wanted:
        out.update((r.key, dict(r._mapping)) for r in conn.execute(select(FINDINGS).where(FINDINGS.c.key.in_(wanted))))
    return out


def _save_wakes(conn: Connection, person_ids: list[int], wake: Mapping[int, datetime]) -> None:
    conn.execute(delete(WAKE).where(WAKE.c.person_id.in_(person_ids)))
    if wake:
        conn.execute(insert(WAKE), [{"person_id": pid, "at": at} for pid, at in sorted(wake.items())])


def _save_state(conn: Connection, version: str, scope: Scope, now: datetime) -> None:
    old = conn.execute(select(STATE).where(STATE.c.id == 1)).first()
    values = {"rules_version": version, "watermark": scope.watermark, "evaluated_at": now,
              "full_at": now if scope.people is None else (old.full_at if old is not None else None)}
    if old is None:
        conn.execute(insert(STATE).values(id=1, **values))
    else:
        conn.execute(update(STATE).where(STATE.c.id == 1).values(**values))
