"""The rules after validation: plain frozen objects the rest of detente reads.

Everything here has been checked: names resolve, conditions are typed trees, durations are
parsed, stages are in funnel order. ``Rules.version`` is the content hash every finding and
write carries, so anyone can tell which rules produced it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from detente.agreement import CalendarSpec
from detente.calendars import BusinessCalendar
from detente.rules.conditions import Condition
from detente.rules.durations import Duration
from detente.rules.fields import Catalog

EventKind = Literal["stage", "owner_team", "first_activity", "condition"]

# The values detente computes and may write back, and what each one is.
DETENTE_VALUES: Mapping[str, str] = {
    "status": "the alignment status (Aligned, Drift, Missed Label, Disagreement, SLA Running, SLA Breached, "
              "Feedback Gap)",
    "reason": "why, in one sentence with the values seen",
    "stage": "the agreed stage by the definitions",
    "sla": "the SLA whose clock is running or breached",
    "sla_due": "when the running SLA is due",
    "lead_value": "the expected value of the lead",
    "rules_version": "the version of the rules that produced the values",
}
PLACEHOLDERS: Mapping[str, str] = {
    "person.email": "the person's email",
    "person.name": "first and last name",
    "person.company": "company",
    "person.owner": "the owner's email",
    "person.stage": "the agreed stage",
    "sla.id": "the SLA id",
    "sla.meaning": "what the SLA promises",
    "sla.within": "how long the owner has",
    "clock.started": "when the clock started",
    "clock.due": "when the SLA is due",
    "reason": "why the task exists, with the values seen",
    "rules.version": "the rules version",
    "link.salesforce": "a link to the Salesforce record",
    "link.hubspot": "a link to the HubSpot record",
}


@dataclass(frozen=True)
class Team:
    name: str
    meaning: str | None
    members: frozenset[str]
    condition: Condition | None


@dataclass(frozen=True)
class Trace:
    """How a label shows in the transitions: a CRM field taking one of these values."""

    system: str
    crm_field: str
    unified_field: str
    values: frozenset[str]  # ASCII-lower-cased


@dataclass(frozen=True)
class Stage:
    name: str
    meaning: str
    owner: str
    definition: Condition
    labels: Mapping[str, Condition]
    after: tuple[str, ...]
    grace: Duration | None
    traces: tuple[Trace, ...] = ()

    @property
    def dated(self) -> bool:
        """Whether ``<stage>_at`` exists: some label can be dated from the transitions."""
        return bool(self.traces)


@dataclass(frozen=True)
class Event:
    """When a clock starts or stops."""

    kind: EventKind
    stages: tuple[str, ...] = ()
    team: str | None = None
    condition: Condition | None = None

    def describe(self) -> str:
        if self.kind == "stage":
            return "enters " + " or ".join(self.stages)
        if self.kind == "owner_team":
            return f"gets an owner from {self.team}"
        if self.kind == "first_activity":
            return "the owner logs a first activity"
        assert self.condition is not None
        return f"{self.condition}"


@dataclass(frozen=True)
class Requirement:
    condition: Condition
    before: tuple[str, ...]


@dataclass(frozen=True)
class Action:
    """What happens before the due time (warning) or at breach."""

    task: str | None
    write: tuple[str, ...]
    before: Duration | None = None


@dataclass(frozen=True)
class Sla:
    id: str
    meaning: str | None
    owner: str
    applies_to: Condition | None
    start: Event
    stop: Event
    within: Duration
    calendar: str | None
    require: Requirement | None
    on_warning: Action | None
    on_breach: Action | None


@dataclass(frozen=True)
class Calendar:
    name: str
    spec: CalendarSpec
    extra_dates: frozenset[date]

    def business(self) -> BusinessCalendar:
        return BusinessCalendar(self.spec, self.extra_dates)

    @property
    def hours_per_day(self) -> int:
        return self.spec.end_hour - self.spec.start_hour


@dataclass(frozen=True)
class LeadValue:
    method: Literal["history", "fixed"]
    window: Duration
    by: tuple[str, ...]
    values: Mapping[str, float]


@dataclass(frozen=True)
class Goals:
    period: Literal["month", "quarter", "year"]
    bookings: float
    currency: str
    average_selling_price: float | None
    lead_value: LeadValue


@dataclass(frozen=True)
class TaskTemplate:
    name: str
    subject: str
    body: str
    due: Duration
    priority: Literal["low", "normal", "high"]
    owner: str


@dataclass(frozen=True)
class Writeback:
    fields: Mapping[str, Mapping[str, tuple[str, ...]]]  # detente value -> system -> CRM fields
    tasks: Mapping[str, TaskTemplate]


@dataclass(frozen=True)
class Feedback:
    idle_with_sales: Duration
    team: str


@dataclass(frozen=True)
class Rules:
    """A complete, valid rules set."""

    version: str
    files: tuple[str, ...]
    catalog: Catalog
    teams: Mapping[str, Team]
    stages: Mapping[str, Stage]  # in funnel order
    slas: tuple[Sla, ...]
    calendars: Mapping[str, Calendar]
    goals: Goals | None
    writeback: Writeback | None
    disagreements: tuple[tuple[str, str], ...]  # (HubSpot stage, Salesforce stage)
    feedback: Feedback | None
    digest: str = field(default="", compare=False)

    def stage_index(self, name: str) -> int:
        return list(self.stages).index(name)

    def calendar_for(self, sla: Sla) -> Calendar | None:
        if sla.calendar is not None:
            return self.calendars[sla.calendar]
        return next(iter(self.calendars.values()), None) if len(self.calendars) == 1 else None
