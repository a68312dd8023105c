"""What the metrics aggregate, kept by the audit: the stages each person reached and every SLA
clock, met ones included, judged exactly as the findings were.

A person has **reached** a stage when its definition holds now, or the definition of a stage
that can only be reached through it holds (a nurture lead was an MQL: nurture follows MQL or
SAL, and both follow MQL). The **current** stage is the last reached one in funnel order whose
own definition holds. A stage was **entered** at the first moment either CRM labelled it or a
stage that implies it; None when neither CRM ever labelled it.

``stage_rows`` and ``clock_rows`` are pure; ``save`` replaces the rows of a chunk of people.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, exists, insert, select

from detente.calendars import BusinessCalendar
from detente.reconcile.facts import Facts, PersonFact
from detente.reconcile.labels import later_stages
from detente.reconcile.model import SLA, Finding
from detente.reconcile.sla import PersonClocks, label_index
from detente.rules import checked as c
from detente.store.findings import PersonClock, PersonMetric, PersonStage
from detente.store.tables import Opportunity, Person

STAGES = PersonStage.__table__  # type: ignore[attr-defined]
CLOCKS = PersonClock.__table__  # type: ignore[attr-defined]
METRICS = PersonMetric.__table__  # type: ignore[attr-defined]
PEOPLE = Person.__table__  # type: ignore[attr-defined]
OPPS = Opportunity.__table__  # type: ignore[attr-defined]
SYSTEMS = ("salesforce", "hubspot")
# What person_metrics copies from people: its columns that people has too.
COPIED = tuple(column.name for column in METRICS.c if column.name in PEOPLE.c)


def implied_stages(rules: c.Rules) -> dict[str, frozenset[str]]:
    """For each stage, the earlier stages every path to it passes through."""
    out: dict[str, frozenset[str]] = {}

    def through(name: str, seen: frozenset[str]) -> frozenset[str]:
        if name in out:
            return out[name]
        after = [a for a in rules.stages[name].after if a in rules.stages and a not in seen]
        if not after:
            result: frozenset[str] = frozenset()
        else:
            paths = [through(a, seen | {name}) | {a} for a in after]
            result = frozenset.intersection(*paths)
        out[name] = result
        return result

    for name in rules.stages:
        through(name, frozenset())
    return out


def reached(definitions: Iterable[str], implied: Mapping[str, frozenset[str]]) -> set[str]:
    held = set(definitions)
    out = set(held)
    for stage in held:
        out |= implied.get(stage, frozenset())
    return out


def current_stage(definitions: frozenset[str], order: Sequence[str]) -> str | None:
    held = [s for s in order if s in definitions]
    return held[-1] if held else None


def stage_rows(facts: Facts, rules: c.Rules, implied: Mapping[str, frozenset[str]]) -> list[dict[str, Any]]:
    """One row per person and reached stage."""
    order = tuple(rules.stages)
    after, labels = later_stages(rules), label_index(rules)
    implies: dict[str, set[str]] = {s: {s} for s in order}  # stage -> the stages whose labels show it
    for later, earlier in implied.items():
        for s in earlier:
            implies[s].add(later)
    rows = []
    for person in facts.people.values():
        got = reached(person.definitions, implied)
        if not got:
            continue
        entries = PersonClocks(person, facts, rules, after, labels).entries()
        current = current_stage(person.definitions, order)
        for stage in order:
            if stage not in got:
                continue
            times = [entries[s][0] for s in implies[stage] if s in entries]
            rows.append({"person_id": person.id, "stage": stage, "entered_at": min(times) if times else None,
                         "is_current": stage == current})
    return rows


def outcome(f: Finding) -> str:
    if f.state in ("running", "met"):
        return str(f.state)
    if f.stopped_at is None:
        return "missed"
    return "late" if f.due_at is not None and f.stopped_at > f.due_at else "requirement"


class ClockTime:
    """Hours from start to stop in each SLA's own time (business hours on its calendar)."""

    def __init__(self, rules: c.Rules) -> None:
        self._cal: dict[str, BusinessCalendar | None] = {}
        for sla in rules.slas:
            cal = rules.calendar_for(sla)
            self._cal[sla.id] = cal.business() if cal is not None and sla.within.business else None

    def hours(self, sla: str, start: datetime, stop: datetime) -> float:
        business = self._cal.get(sla)
        if business is not None:
            return round(business.hours_between(start, stop), 4)
        return round(max((stop - start).total_seconds(), 0) / 3600, 4)


def clock_rows(found: Iterable[Finding], clock_time: ClockTime) -> list[dict[str, Any]]:
    rows = []
    for f in found:
        if f.kind != SLA or f.person_id is None or f.started_at is None or f.due_at is None:
            continue
        stopped = f.stopped_at
        rows.append({"person_id": f.person_id, "sla": f.rule, "team": f.team, "owner_email": f.owner_email,
                     "started_at": f.started_at, "due_at": f.due_at, "stopped_at": stopped, "outcome": outcome(f),
                     "hours": None if stopped is None else clock_time.hours(f.rule, f.started_at, stopped)})
    return rows


def save(conn: Connection, person_ids: Sequence[int], stages: list[dict[str, Any]],
         clocks: list[dict[str, Any]], people: Mapping[int, PersonFact]) -> None:
    """Replace the stages, clocks and metrics rows of ``person_ids``; a metrics row is the
    live person's copied fields, opportunity and MQL flags, and what ``people`` (the audit's
    evaluation) says of their stages."""
    for start in range(0, len(person_ids), 5_000):
        part = person_ids[start:start + 5_000]
        for table in (STAGES, CLOCKS, METRICS):
            conn.execute(delete(table).where(table.c.person_id.in_(part)))
    if stages:
        conn.execute(insert(STAGES), stages)
    if clocks:
        conn.execute(insert(CLOCKS), clocks)
    p, o, s_ = PEOPLE, OPPS, STAGES
    has_opportunity = exists().where(o.c.person_id == p.c.id, o.c.deleted.is_(False))
    mql = exists().where(s_.c.person_id == p.c.id, s_.c.stage == "mql")
    for start in range(0, len(person_ids), 5_000):
        part = person_ids[start:start + 5_000]
        stmt = select(p.c.id, *(p.c[name] for name in COPIED), has_opportunity, mql) \
            .where(p.c.id.in_(part), p.c.deleted.is_(False))
        rows = [{"person_id": r[0], **dict(zip(COPIED, r[1:-2], strict=True)), "has_opportunity": bool(r[-2]),
                 "mql": bool(r[-1]), **judged(people.get(r[0]))} for r in conn.execute(stmt)]
        if rows:
            conn.execute(insert(METRICS), rows)


def judged(person: PersonFact | None) -> dict[str, str]:
    """The stages whose definitions hold for ``person`` and the stages each CRM labels, as
    space-separated names (stage names are identifiers)."""
    if person is None:
        return {"definitions": "", **{f"{system}_labels": "" for system in SYSTEMS}}
    return {"definitions": " ".join(sorted(person.definitions)),
            **{f"{system}_labels": " ".join(sorted(person.labels.get(system, ()))) for system in SYSTEMS}}
