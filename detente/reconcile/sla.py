"""SLA clock findings: one per SLA and person whose clock has started (pure).

A clock starts at the first moment its start event happened (a stage first labelled in
either CRM, an owner of a team first assigned in either CRM, a condition true), is due
``within`` after that (business time on the SLA's calendar), and stops at the first stop
event at or after the start:

- ``stage``: the stage, or any stage after it in the funnel, labelled in either CRM (a lead
  that jumped from MQL to opportunity did report an outcome);
- ``owner_team``: an owner of the team assigned, or already owning the person at the start;
- ``first_activity``: the first activity logged by the person's current owner or by a member
  of the team that owes the SLA, in either CRM; connector copies are the same activity.

A CRM that kept no owner change has had its current owner since the person was created.

The finding is, as of ``now``:

- **running** (open, due_at set) while unstopped and not yet due; a clock started by a
  stage only runs while that stage's definition (or a later one's) holds: a label the
  definition does not back is definition drift, reported as such;
- **breached** (open) once due and still unstopped, opened at the due time;
- **breached late** (resolved at the stop) when it stopped after the due time, opened at
  the due time: the breach happened and can no longer be fixed;
- **requirement not met** (open, opened when the clock stopped) when it stopped at a stage
  that ``require`` names while the requirement does not hold (a lead disqualified after
  fewer activities than agreed, counting those logged up to the stop);
- **met** (resolved): only closes a finding recorded while the clock ran.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from detente.calendars import BusinessCalendar
from detente.reconcile.facts import Facts, PersonFact
from detente.reconcile.labels import base_fields, later_stages
from detente.reconcile.model import SLA, Finding
from detente.rules import checked as c
from detente.rules.clocks import due_at
from detente.rules.explain import explain, holds
from detente.rules.fields import OWNER_TRANSITION_FIELDS

OWNER_FIELDS = frozenset(OWNER_TRANSITION_FIELDS)


def _fmt(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


@dataclass(frozen=True)
class Moment:
    at: datetime
    stage: str | None = None  # the stage entered, for stage events


class PersonClocks:
    """The moments of one person's history that SLA events are made of."""

    def __init__(self, person: PersonFact, facts: Facts, rules: c.Rules, after: dict[str, frozenset[str]],
                 labels: LabelIndex | None = None) -> None:
        self.person, self.facts, self.rules, self.after = person, facts, rules, after
        self.labels = labels if labels is not None else label_index(rules)
        self._entries: dict[str, list[datetime]] | None = None
        self._owners: list[tuple[datetime, int | None]] | None = None

    # -- what happened ---------------------------------------------------------------------

    def entries(self) -> dict[str, list[datetime]]:
        """Per stage, every moment a CRM set a label of it (sorted)."""
        if self._entries is None:
            out: dict[str, list[datetime]] = {}
            index = self.labels
            for ch in self.person.changes:
                if ch.value is None:
                    continue
                for stage in index.get((ch.system, ch.field, ch.value.lower()), ()):
                    out.setdefault(stage, []).append(ch.at)
            for times in out.values():
                times.sort()
            self._entries = out
        return self._entries

    def owner_changes(self) -> list[tuple[datetime, int | None]]:
        """Every owner assignment in either CRM, as (moment, owner), sorted."""
        if self._owners is None:
            by_crm = self.facts.owner_by_crm
            self._owners = [(ch.at, by_crm.get((ch.system, ch.value)) if ch.value else None)
                            for ch in self.person.changes if (ch.system, ch.field) in OWNER_FIELDS]
        return self._owners

    def past_team(self, owner_id: int | None) -> str | None:
        owner = self.facts.owner(owner_id)
        return owner.past_team if owner is not None else None

    def owners_since_creation(self) -> dict[str, int]:
        """The current owner in each CRM that kept no owner change: the owner from the start."""
        changed = {ch.system for ch in self.person.changes if (ch.system, ch.field) in OWNER_FIELDS}
        current = {"salesforce": self.person.salesforce_owner_id, "hubspot": self.person.hubspot_owner_id}
        return {system: owner for system, owner in current.items() if owner is not None and system not in changed}

    def team_moments(self, team: str) -> list[Moment]:
        times = [at for at, owner in self.owner_changes() if self.past_team(owner) == team]
        if self.person.created_at and any(self.past_team(o) == team for o in self.owners_since_creation().values()):
            times = [self.person.created_at, *times]  # owned by the team from the start, no history kept
        return [Moment(t) for t in times]

    def owned_by_team_at(self, team: str, moment: datetime) -> bool:
        current: dict[str, int | None] = dict(self.owners_since_creation())
        for ch in self.person.changes:
            if ch.at > moment:
                break
            if (ch.system, ch.field) in OWNER_FIELDS:
                current[ch.system] = self.facts.owner_by_crm.get((ch.system, ch.value)) if ch.value else None
        return any(self.past_team(o) == team for o in current.values())

    def stage_moments(self, stages: tuple[str, ...], *, with_later: bool) -> list[Moment]:
        names = set(stages)
        if with_later:
            for s in stages:
                names |= self.after.get(s, frozenset())
        entries = self.entries()
        return sorted((Moment(t, s) for s in names for t in entries.get(s, [])), key=lambda m: m.at)

    def activity_moments(self, team: str) -> list[Moment]:
        """Activities by a member of the team that owes the SLA (judged as while they were
        active), or by the person's current owner."""
        return [Moment(a.at) for a in self.person.activities if a.owner_id is not None and (
            a.owner_id == self.person.owner_id or self.past_team(a.owner_id) == team)]

    def moments(self, event: c.Event, sla: c.Sla, now: datetime, *, stop: bool) -> list[Moment]:
        if event.kind == "stage":
            return self.stage_moments(event.stages, with_later=stop)
        if event.kind == "owner_team":
            return self.team_moments(str(event.team))
        if event.kind == "first_activity":
            return self.activity_moments(sla.owner)
        if event.condition is not None and holds(event.condition, self.person.values, now):
            moment = self.person.modified_at or self.person.created_at
            return [Moment(moment)] if moment is not None else []
        return []

    def owner_at(self, moment: datetime) -> int | None:
        owner = None
        for at, who in self.owner_changes():
            if at > moment:
                break
            if who is not None:
                owner = who
        return owner if owner is not None else self.person.owner_id


LabelIndex = dict[tuple[str, str, str], tuple[str, ...]]


def label_index(rules: c.Rules) -> LabelIndex:
    """(system, CRM field, lower-cased value) -> the stages that value labels."""
    out: dict[tuple[str, str, str], list[str]] = {}
    for name, stage in rules.stages.items():
        for t in stage.traces:
            for value in t.values:
                out.setdefault((t.system, t.crm_field, value), []).append(name)
    return {k: tuple(v) for k, v in out.items()}


def _within(sla: c.Sla) -> str:
    return str(sla.within)


def sla_findings(facts: Facts, rules: c.Rules, now: datetime) -> Iterator[Finding]:
    """Every started SLA clock that is running, breached or failed its requirement."""
    after, labels = later_stages(rules), label_index(rules)
    calendars: dict[str, tuple[BusinessCalendar | None, int]] = {}
    for sla in rules.slas:
        cal = rules.calendar_for(sla)
        calendars[sla.id] = (cal.business(), cal.hours_per_day) if cal is not None else (None, 8)
    for person in facts.people.values():
        clocks = PersonClocks(person, facts, rules, after, labels)
        for sla in rules.slas:
            business, hours = calendars[sla.id]
            found = clock_finding(sla, clocks, business, hours, now)
            if found is not None:
                yield found


def clock_finding(sla: c.Sla, clocks: PersonClocks, business: BusinessCalendar | None, hours: int,
                  now: datetime) -> Finding | None:
    person = clocks.person
    if sla.applies_to is not None and not holds(sla.applies_to, person.values, now):
        return None
    starts = [m for m in clocks.moments(sla.start, sla, now, stop=False) if m.at <= now]
    if not starts:
        return None
    started = starts[0].at
    due = due_at(sla, business, started, hours)
    stop: Moment | None = None
    if sla.stop.kind == "owner_team" and clocks.owned_by_team_at(str(sla.stop.team), started):
        stop = Moment(started)
    else:
        stop = next((m for m in clocks.moments(sla.stop, sla, now, stop=True) if started <= m.at <= now), None)
    started_by = _started_by(sla, starts[0])
    if stop is None:
        if sla.start.kind == "stage" and not _still_holds(sla.start.stages, person, clocks.after):
            return None  # the label is not backed by the definition: drift, reported as such
        owner = clocks.owner_at(min(due, now))
        if now <= due:
            clocks.facts.wake_at(person.id, due)
            return _finding(sla, clocks, owner, started, due, "running", None, started,
                            f"{started_by} {_fmt(started)}; {_stop_words(sla)} due by {_fmt(due)} "
                            f"({_within(sla)} agreed)")
        return _finding(sla, clocks, owner, started, due, "breached", None, due,
                        f"{started_by} {_fmt(started)}; not {_stop_words(sla)} by the due time {_fmt(due)} "
                        f"({_within(sla)} agreed)")
    owner = clocks.owner_at(min(stop.at, due))
    stopped = f"{_stop_done(sla, stop)} {_fmt(stop.at)}"
    if stop.at > due:
        late = _overdue(business if sla.within.business else None, due, stop.at)  # late in the SLA's own time
        return _finding(sla, clocks, owner, started, due, "breached", stop, due,
                        f"{started_by} {_fmt(started)}; {stopped}, {late} after the due time {_fmt(due)} "
                        f"({_within(sla)} agreed)", resolved=f"stopped late: {stopped}")
    if sla.require is not None and (not sla.require.before or stop.stage in sla.require.before):
        values = values_when(person, stop.at)
        step = explain(sla.require.condition, values, now)
        if not holds(sla.require.condition, values, now):
            return _finding(sla, clocks, owner, started, due, "breached", stop, stop.at,
                            f"{stopped} while the agreement requires {sla.require.condition} first "
                            f"({step.detail})")
    return _finding(sla, clocks, owner, started, due, "met", stop, stop.at, f"{stopped}, before {_fmt(due)}",
                    resolved=f"met: {stopped}")


def values_when(person: PersonFact, moment: datetime) -> Mapping[str, Any]:
    """The person's values for a requirement judged when the clock stopped: the activities
    counted are those logged up to ``moment`` (work done after a lead was disqualified does
    not make up for too little before it)."""
    if "activity_count" not in person.values:
        return person.values
    return {**person.values, "activity_count": sum(1 for a in person.activities if a.at <= moment)}


def _still_holds(stages: tuple[str, ...], person: PersonFact, after: dict[str, frozenset[str]]) -> bool:
    names = set(stages)
    for s in stages:
        names |= after.get(s, frozenset())
    return bool(names & person.definitions)


def _started_by(sla: c.Sla, start: Moment) -> str:
    if sla.start.kind == "stage":
        return f"{start.stage or '/'.join(sla.start.stages)} since"
    if sla.start.kind == "owner_team":
        return f"with {sla.start.team} since"
    return "started"


def _stop_words(sla: c.Sla) -> str:
    stop = sla.stop
    if stop.kind == "stage":
        return f"reached {' or '.join(stop.stages)}"
    if stop.kind == "owner_team":
        return f"assigned to a {stop.team} owner"
    if stop.kind == "first_activity":
        return "contacted (first activity)"
    return "stopped"


def _stop_done(sla: c.Sla, stop: Moment) -> str:
    if sla.stop.kind == "stage":
        return f"reached {stop.stage}"
    if sla.stop.kind == "owner_team":
        return f"assigned to {sla.stop.team}"
    if sla.stop.kind == "first_activity":
        return "first activity"
    return "stopped"


def _overdue(business: BusinessCalendar | None, due: datetime, moment: datetime) -> str:
    if business is not None:
        return f"{business.hours_between(due, moment):.1f} business hours"
    hours = (moment - due).total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} hours"


def _finding(sla: c.Sla, clocks: PersonClocks, owner_id: int | None, started: datetime, due: datetime, state: str,
             stop: Moment | None, opened: datetime, explanation: str, resolved: str | None = None) -> Finding:
    person, facts = clocks.person, clocks.facts
    fields = base_fields(person, facts, sla.owner)
    owner = facts.owner(owner_id)
    fields["owner_email"] = owner.email if owner is not None else fields["owner_email"]
    return Finding(SLA, sla.id, f"person:{person.id}", explanation, opened, due_at=due, state=state,
                   started_at=started, stopped_at=stop.at if stop is not None else None,
                   status="resolved" if resolved else "open",
                   resolved_at=stop.at if resolved and stop is not None else None, resolution=resolved,
                   **fields)  # type: ignore[arg-type]
