"""SLA clocks: when each started, stopped and is due, and whether it was met or breached.

The arithmetic is pure (``due_at``, ``clock_state``, ``clock_for``): it takes the moments a
clock's events happened and ``now``. ``gather_facts`` reads those moments from the store
once per rules set — stage entries and owner changes from the transitions, activities by
the owner, and conditions true now. A condition has no history in the store, so the moment
a condition start or stop became true is taken as the person's last modification (the
reconciler, which sees every change, records it exactly).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from sqlalchemy import Connection, false, func, or_, select

from detente.calendars import BusinessCalendar
from detente.rules import checked as c
from detente.rules import store_view as sv
from detente.rules.conditions import Condition
from detente.rules.evaluate import ConditionQuery, team_case, trace_test
from detente.rules.fields import OWNER_TRANSITION_FIELDS
from detente.rules.sql import Params

ClockState = Literal["not_started", "running", "met", "breached"]


@dataclass(frozen=True)
class Clock:
    """One SLA clock for one person."""

    sla: str
    person_id: int
    state: ClockState
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    due_at: datetime | None = None
    stopped_at_stage: str | None = None
    requirement_failed: bool = False


@dataclass
class PersonFacts:
    """The moments that matter to SLA clocks for one person, each list sorted."""

    person_id: int
    modified_at: datetime | None = None
    created_at: datetime | None = None
    owner_id: int | None = None
    stage_entries: dict[str, list[datetime]] = field(default_factory=dict)
    team_assignments: dict[str, list[datetime]] = field(default_factory=dict)
    owner_activities: list[datetime] = field(default_factory=list)
    current_team: str | None = None
    conditions: set[str] = field(default_factory=set)  # keys of conditions true now


def due_at(sla: c.Sla, calendar: BusinessCalendar | None, started: datetime, hours_per_day: int = 8) -> datetime:
    """When a clock started at ``started`` is due."""
    if sla.within.business:
        if calendar is None:
            raise ValueError(f"SLA {sla.id} runs on business time and needs a calendar")
        return calendar.add_hours(started, sla.within.business_hours(hours_per_day))
    return started + sla.within.calendar


def clock_state(started: datetime | None, stopped: datetime | None, due: datetime | None,
                requirement_ok: bool, now: datetime) -> ClockState:
    """not_started, running, met or breached, as of ``now``."""
    if started is None or due is None:
        return "not_started"
    if stopped is not None:
        return "met" if stopped <= due and requirement_ok else "breached"
    return "running" if now <= due else "breached"


def event_moments(event: c.Event, facts: PersonFacts, key: str) -> list[tuple[datetime, str | None]]:
    """Every moment the event happened for the person, sorted, with the stage it was (if any)."""
    if event.kind == "stage":
        out = [(t, s) for s in event.stages for t in facts.stage_entries.get(s, [])]
        return sorted(out, key=lambda pair: pair[0])
    if event.kind == "owner_team":
        team = str(event.team)
        times = facts.team_assignments.get(team, [])
        if not times and facts.current_team == team and facts.created_at is not None:
            times = [facts.created_at]  # owned by the team from the start
        return [(t, None) for t in times]
    if event.kind == "first_activity":
        return [(t, None) for t in facts.owner_activities]
    if key in facts.conditions and facts.modified_at is not None:
        return [(facts.modified_at, None)]
    return []


def clock_for(sla: c.Sla, facts: PersonFacts, calendar: BusinessCalendar | None, hours_per_day: int,
              now: datetime) -> Clock:
    """The clock of one SLA for one person, from the facts."""
    if sla.applies_to is not None and f"{sla.id}:applies_to" not in facts.conditions:
        return Clock(sla.id, facts.person_id, "not_started")
    starts = [t for t, _ in event_moments(sla.start, facts, f"{sla.id}:start") if t <= now]
    if not starts:
        return Clock(sla.id, facts.person_id, "not_started")
    started = starts[0]
    due = due_at(sla, calendar, started, hours_per_day)
    stops = [(t, s) for t, s in event_moments(sla.stop, facts, f"{sla.id}:stop") if started <= t <= now]
    stopped, stage = stops[0] if stops else (None, None)
    failed = False
    if stopped is not None and sla.require is not None and (not sla.require.before or stage in sla.require.before):
        failed = f"{sla.id}:require" not in facts.conditions
    state = clock_state(started, stopped, due, not failed, now)
    return Clock(sla.id, facts.person_id, state, started, stopped, due, stage, failed)


def clocks(rules: c.Rules, facts: Mapping[int, PersonFacts], now: datetime) -> dict[str, dict[int, Clock]]:
    """Every SLA's clock for every person in ``facts``."""
    out: dict[str, dict[int, Clock]] = {}
    for sla in rules.slas:
        calendar = rules.calendar_for(sla)
        business = calendar.business() if calendar is not None else None
        hours = calendar.hours_per_day if calendar is not None else 8
        out[sla.id] = {pid: clock_for(sla, f, business, hours, now) for pid, f in facts.items()}
    return out


# -- reading the facts from the store ------------------------------------------------------------


def _conditions(rules: c.Rules) -> dict[str, Condition]:
    found: dict[str, Condition] = {}
    for sla in rules.slas:
        if sla.applies_to is not None:
            found[f"{sla.id}:applies_to"] = sla.applies_to
        for role, event in (("start", sla.start), ("stop", sla.stop)):
            if event.condition is not None:
                found[f"{sla.id}:{role}"] = event.condition
        if sla.require is not None:
            found[f"{sla.id}:require"] = sla.require.condition
    return found


def gather_facts(conn: Connection, rules: c.Rules, now: datetime,
                 person_ids: Sequence[int] | None = None) -> dict[int, PersonFacts]:
    """What SLA clocks need, per live person, read from the store in a few set-based queries."""
    p = sv.people
    stmt = select(p.c.id, p.c.modified_at, p.c.created_at,
                  func.coalesce(p.c.salesforce_owner_id, p.c.hubspot_owner_id)).where(p.c.deleted == false())
    if person_ids is not None:
        stmt = stmt.where(p.c.id.in_(list(person_ids)))
    facts = {int(r[0]): PersonFacts(int(r[0]), r[1], r[2], r[3]) for r in conn.execute(stmt)}
    teams = _owner_teams(conn, rules, now)
    for f in facts.values():
        f.current_team = teams.by_id.get(f.owner_id) if f.owner_id is not None else None
    _stage_entries(conn, rules, facts)
    _team_assignments(conn, teams, facts)
    _owner_activities(conn, facts)
    for key, cond in _conditions(rules).items():
        for pid in ConditionQuery(rules, cond).matching(conn, now):
            if pid in facts:
                facts[pid].conditions.add(key)
    return facts


@dataclass
class _Teams:
    by_id: dict[int, str]
    by_crm_id: dict[tuple[str, str], str]


def _owner_teams(conn: Connection, rules: c.Rules, now: datetime) -> _Teams:
    o = sv.owners
    params = Params()
    rows = conn.execute(select(o.c.id, o.c.salesforce_user_id, o.c.hubspot_owner_id,
                               team_case(rules, o, params).label("team")), params.bind(now))
    teams = _Teams({}, {})
    for owner_id, sf_id, hs_id, team in rows:
        if team is None:
            continue
        teams.by_id[int(owner_id)] = str(team)
        if sf_id:
            teams.by_crm_id[("salesforce", str(sf_id))] = str(team)
        if hs_id:
            teams.by_crm_id[("hubspot", str(hs_id))] = str(team)
    return teams


def _stage_entries(conn: Connection, rules: c.Rules, facts: dict[int, PersonFacts]) -> None:
    t = sv.transitions
    for stage in rules.stages.values():
        if not stage.traces:
            continue
        test = or_(*(trace_test(tr, t) for tr in stage.traces))
        stmt = select(t.c.person_id, t.c.at).where(t.c.person_id.is_not(None), test).order_by(t.c.person_id, t.c.at)
        for pid, at in conn.execute(stmt):
            if pid in facts:
                facts[pid].stage_entries.setdefault(stage.name, []).append(at)


def _team_assignments(conn: Connection, teams: _Teams, facts: dict[int, PersonFacts]) -> None:
    t = sv.transitions
    tests = [(t.c.system == system) & (t.c.field == crm) for system, crm in OWNER_TRANSITION_FIELDS]
    stmt = select(t.c.person_id, t.c.system, t.c.to_value, t.c.at) \
        .where(t.c.person_id.is_not(None), or_(*tests)).order_by(t.c.person_id, t.c.at)
    for pid, system, to_value, at in conn.execute(stmt):
        team = teams.by_crm_id.get((str(system), str(to_value)))
        if pid in facts and team is not None:
            facts[pid].team_assignments.setdefault(team, []).append(at)


def _owner_activities(conn: Connection, facts: dict[int, PersonFacts]) -> None:
    a = sv.activities
    stmt = select(a.c.person_id, a.c.owner_id, a.c.occurred_at) \
        .where(a.c.person_id.is_not(None), a.c.deleted == false(), a.c.copy_of.is_(None),
               a.c.occurred_at.is_not(None)).order_by(a.c.person_id, a.c.occurred_at)
    for pid, owner_id, at in conn.execute(stmt):
        f = facts.get(pid)
        if f is not None and owner_id is not None and owner_id == f.owner_id:
            f.owner_activities.append(at)
