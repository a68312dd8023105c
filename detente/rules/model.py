"""The shape of a rules file: strict pydantic models, kept apart from what the rules mean.

These models check structure only (known keys, value types). What the values mean —
conditions, durations, references between stages, teams, SLAs, calendars and write-back —
is checked in ``detente.rules.validate``. Unknown keys are errors; text fields that are
conditions or durations stay text here and are parsed later with their file positions.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

System = Literal["salesforce", "hubspot"]
SYSTEMS: tuple[System, ...] = ("salesforce", "hubspot")


def _as_list(value: Any) -> Any:
    """Let a single name stand for a list of one (``after: mql``)."""
    return [value] if isinstance(value, str) else value


Names = Annotated[list[str], BeforeValidator(_as_list)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ValuesSpec(_Strict):
    """Per CRM: a value as that CRM keeps it -> the value detente uses (others pass unchanged)."""

    salesforce: dict[str, str] = Field(default_factory=dict, description="e.g. {Web: Website}")
    hubspot: dict[str, str] = Field(default_factory=dict, description="e.g. {ORGANIC_SEARCH: Organic Search}")


class FieldSpec(_Strict):
    """A unified field and where each CRM keeps it."""

    type: Literal["text", "number", "boolean", "datetime"] | None = Field(
        None, description="text, number, boolean or datetime (required for a field detente does not know)")
    salesforce: str | None = Field(None, description="the Salesforce field, e.g. Lead.Lead_Score__c")
    hubspot: str | None = Field(None, description="the HubSpot property, e.g. hubspotscore")
    meaning: str | None = Field(None, description="what the field says, in one sentence")
    values: ValuesSpec | None = Field(
        None, description="for a text field: a CRM's values and what each means here, e.g. hubspot: "
                          "{SOCIAL_MEDIA: Social}, so both CRMs' people share one spelling")


class TeamSpec(_Strict):
    """Who belongs to a team: owner emails, a condition on the owner, or both."""

    meaning: str | None = Field(None, description="who the team is")
    members: list[str] = Field(default_factory=list, description="owner emails")
    condition: str | None = Field(None, description="a condition over owner fields, e.g. owner_department = 'Sales'")


class Labels(_Strict):
    """How each CRM says a person is in a stage: a condition in that CRM's field names."""

    salesforce: str | None = Field(None, description="e.g. Status = 'Marketing Qualified'")
    hubspot: str | None = Field(None, description="e.g. lifecyclestage = 'marketingqualifiedlead'")


class StageSpec(_Strict):
    """One funnel stage of the common vocabulary."""

    meaning: str = Field(description="what the stage means, in plain language")
    owner: str = Field(description="the team that owns the stage")
    definition: str = Field(description="a condition over unified fields, e.g. score >= 50")
    after: Names = Field(default_factory=list, description="the stage(s) this one follows in the funnel")
    labels: Labels = Field(default_factory=Labels, description="how each CRM labels the stage")
    grace: str | None = Field(None, description="how long the definition may hold unlabelled, e.g. 3 days")


class EventSpec(_Strict):
    """A moment an SLA clock starts or stops at: exactly one of the keys."""

    stage: Names | None = Field(None, description="the person enters one of these stages")
    owner_team: str | None = Field(None, description="an owner from this team is assigned")
    first_activity: str | None = Field(None, description="'owner': the first activity by the person's owner")
    condition: str | None = Field(None, description="a condition becomes true (an outcome is reported)")


class Requirement(_Strict):
    """A condition that must hold when the clock stops, e.g. enough activities before disqualifying."""

    condition: str = Field(description="e.g. activity_count >= 6")
    before: Names = Field(default_factory=list, description="only when the clock stops at these stages")


class WarningSpec(_Strict):
    """What detente does shortly before an SLA is due."""

    before: str = Field(description="how long before the due time, e.g. 4 business hours")
    task: str | None = Field(None, description="a task template from writeback.tasks")
    write: Names = Field(default_factory=list, description="detente values from writeback.fields to write")


class BreachSpec(_Strict):
    """What detente does when an SLA is breached."""

    task: str | None = Field(None, description="a task template from writeback.tasks")
    write: Names = Field(default_factory=list, description="detente values from writeback.fields to write")


class SlaSpec(_Strict):
    """A service level one team owes the other."""

    id: str = Field(description="a short name such as mql-handoff")
    meaning: str | None = Field(None, description="what the SLA promises, in plain language")
    owner: str = Field(description="the team that owes it")
    applies_to: str | None = Field(None, description="a condition limiting who the SLA covers")
    start: EventSpec = Field(description="when the clock starts: stage or condition")
    stop: EventSpec = Field(description="when the clock stops: stage, owner_team, first_activity or condition")
    within: str = Field(description="how long the owner has, e.g. 24 business hours")
    calendar: str | None = Field(None, description="the calendar business time runs on")
    require: Requirement | None = Field(None, description="a condition checked when the clock stops")
    on_warning: WarningSpec | None = Field(None, description="what happens shortly before the due time")
    on_breach: BreachSpec | None = Field(None, description="what happens on breach")


class CalendarModel(_Strict):
    """Working time for business-hour SLAs."""

    timezone: str = Field(description="an IANA time zone such as America/New_York")
    hours: str = Field("09:00-17:00", description="working hours, e.g. 09:00-17:00")
    days: Names = Field(default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"],
                        description="working days: mon, tue, wed, thu, fri, sat, sun")
    holidays: str = Field(description="the country whose public holidays are days off, e.g. US")
    extra_dates: list[date] = Field(default_factory=list, description="more days off, e.g. 2026-12-24")


class LeadValueSpec(_Strict):
    """How much a lead is worth, so a bookings goal becomes a lead-value goal."""

    method: Literal["history", "fixed"] = Field(description="history or fixed")
    window: str = Field("365 days", description="how far back history looks, e.g. 365 days")
    by: Names = Field(default_factory=lambda: ["source"], description="unified text fields to group by")
    values: dict[str, float] = Field(default_factory=dict,
                                     description="fixed values per value of the first 'by' field, plus default")


class GoalsSpec(_Strict):
    """The bookings goal and the numbers that turn it into lead goals."""

    period: Literal["month", "quarter", "year"] = Field(description="month, quarter or year")
    bookings: float = Field(gt=0, description="the bookings goal per period")
    currency: str = Field("USD", description="ISO currency code")
    average_selling_price: float | None = Field(None, gt=0, description="fixed; empty means from won history")
    lead_value: LeadValueSpec = Field(description="how lead value is derived")


class WritebackTarget(_Strict):
    """The CRM fields one detente value is written to."""

    salesforce: Names = Field(default_factory=list, description="e.g. Lead.Detente_Status__c")
    hubspot: Names = Field(default_factory=list, description="e.g. detente_status")


class TaskTemplate(_Strict):
    """A CRM task detente creates, with {placeholders}."""

    subject: str = Field(description="the task subject, with placeholders such as {person.email}")
    body: str = Field("", description="the task description")
    due: str = Field("0h", description="how long after it is created the task is due, e.g. 4 business hours")
    priority: Literal["low", "normal", "high"] = Field("normal", description="low, normal or high")
    owner: str = Field("person_owner", description="person_owner or an owner email")


class WritebackSpec(_Strict):
    """The only values detente ever writes, and where; and its task templates."""

    fields: dict[str, WritebackTarget] = Field(description="detente value -> CRM fields")
    tasks: dict[str, TaskTemplate] = Field(default_factory=dict, description="task templates by name")


class Disagreement(_Strict):
    """Two labels the CRMs must never show at the same time for one person."""

    hubspot: str = Field(description="a stage by its HubSpot label")
    salesforce: str = Field(description="a stage by its Salesforce label")


class FeedbackSpec(_Strict):
    """When silence from a team becomes a feedback gap."""

    idle_with_sales: str = Field(description="e.g. 14 days without activity, status or owner change")
    team: str = Field("sales", description="the team whose silence counts")


class RulesSpec(_Strict):
    """A whole rules file (or folder of files, merged)."""

    version: Literal[1] = Field(description="the rules format version: 1")
    fields: dict[str, FieldSpec] = Field(default_factory=dict, description="unified fields and CRM mappings")
    teams: dict[str, TeamSpec] = Field(description="who is sales, marketing, partner")
    stages: dict[str, StageSpec] = Field(description="the funnel vocabulary")
    slas: list[SlaSpec] = Field(default_factory=list, description="service levels")
    calendars: dict[str, CalendarModel] = Field(default_factory=dict, description="working time")
    goals: GoalsSpec | None = Field(None, description="bookings and lead goals")
    writeback: WritebackSpec | None = Field(None, description="what detente writes to the CRMs")
    disagreements: list[Disagreement] = Field(default_factory=list, description="labels never shown together")
    feedback: FeedbackSpec | None = Field(None, description="when silence becomes a feedback gap")
