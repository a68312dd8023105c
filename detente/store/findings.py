"""The audit's tables: findings (one row per fact someone must act on) and their history.

A finding is keyed deterministically by ``key`` (kind, rule and subject: the person, the
opportunity or the records in conflict), so evaluating the same data again finds the same
row. ``finding_events`` keeps every change of a finding: opened, updated, resolved, reopened.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index
from sqlmodel import Field, SQLModel

from detente.store.types import JSONDoc, UTCDateTime


def _ts(**kw: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kw)


class FindingRow(SQLModel, table=True):
    """One finding as last reconciled."""

    __tablename__ = "findings"
    __table_args__ = (
        Index("findings_status", "status", "kind"),
        Index("findings_person", "person_id"),
    )

    key: str = Field(primary_key=True, max_length=400)
    kind: str = Field(max_length=32)
    rule: str = Field(max_length=64)
    rules_version: str = Field(max_length=64)
    person_id: int | None = None
    opportunity_id: int | None = None
    records: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONDoc, nullable=False))
    email: str | None = Field(default=None, max_length=320)
    salesforce_id: str | None = Field(default=None, max_length=18)
    hubspot_id: str | None = Field(default=None, max_length=32)
    team: str | None = Field(default=None, max_length=64)
    owner_email: str | None = Field(default=None, max_length=320)
    status: str = Field(max_length=16, description="open or resolved")
    state: str | None = Field(default=None, max_length=16, description="SLA clocks: running, met or breached")
    opened_at: datetime = _ts()
    due_at: datetime | None = _ts(default=None)
    started_at: datetime | None = _ts(default=None, description="SLA clocks: when the clock started")
    stopped_at: datetime | None = _ts(default=None, description="SLA clocks: when it stopped")
    resolved_at: datetime | None = _ts(default=None)
    resolution: str | None = None
    explanation: str
    evaluated_at: datetime = _ts()


class FindingEvent(SQLModel, table=True):
    """A change of a finding, with the values it had after the change."""

    __tablename__ = "finding_events"
    __table_args__ = (Index("finding_events_key", "finding_key", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    finding_key: str = Field(max_length=400)
    at: datetime = _ts()
    event: str = Field(max_length=16, description="opened, updated, resolved, reopened, recorded")
    rules_version: str = Field(max_length=64)
    status: str = Field(max_length=16)
    state: str | None = Field(default=None, max_length=16)
    due_at: datetime | None = _ts(default=None)
    explanation: str


class AuditState(SQLModel, table=True):
    """Where the incremental audit stands: one row."""

    __tablename__ = "audit_state"

    id: int = Field(default=1, primary_key=True)
    rules_version: str = Field(max_length=64, description="the rules the findings were last evaluated with")
    watermark: datetime | None = _ts(default=None, description="raw rows pulled up to here are audited")
    evaluated_at: datetime = _ts()
    full_at: datetime | None = _ts(default=None, description="the last run that evaluated everyone")


class AuditWake(SQLModel, table=True):
    """A person whose findings change by time alone at ``at`` (a clock falls due)."""

    __tablename__ = "audit_wake"
    __table_args__ = (Index("audit_wake_at", "at"),)

    person_id: int = Field(primary_key=True)
    at: datetime = _ts()


class PersonStage(SQLModel, table=True):
    """A stage of the agreement a person has reached, as the audit last saw them.

    Written by the audit for every person it evaluates, so the metrics aggregate in SQL what
    the findings were judged by. ``entered_at`` is the first moment either CRM labelled the
    stage or a stage that implies it (None when neither CRM ever did); ``is_current`` marks the
    person's furthest stage in the funnel.
    """

    __tablename__ = "person_stages"
    __table_args__ = (Index("person_stages_stage", "stage", "person_id"),)

    person_id: int = Field(primary_key=True)
    stage: str = Field(primary_key=True, max_length=64)
    entered_at: datetime | None = _ts(default=None)
    is_current: bool = False


class PersonMetric(SQLModel, table=True):
    """One live person as the metrics count them, written by the audit beside the stages.

    A narrow copy of what the period tallies group by (the lead-value fields), with whether
    the person has an opportunity and reached MQL: a year of people is then counted from one
    index, not by looking each person up in the stages and the opportunities. With what the
    audit's evaluation said of the person, for the report's reconciliation of the two views:
    the stages whose definition holds and the stages each CRM labels (stage names, space
    separated).
    """

    __tablename__ = "person_metrics"
    __table_args__ = (Index("person_metrics_cohort", "created_at", "source", "offer", "channel", "campaign_id",
                            "has_opportunity", "mql"),)

    person_id: int = Field(primary_key=True)
    created_at: datetime | None = _ts(default=None)
    source: str | None = None
    channel: str | None = None
    offer: str | None = None
    campaign_id: int | None = None
    country: str | None = None
    email_domain: str | None = Field(default=None, max_length=255)
    company: str | None = None
    title: str | None = None
    has_opportunity: bool = False
    mql: bool = False
    definitions: str = ""
    salesforce_labels: str = ""
    hubspot_labels: str = ""


class PersonClock(SQLModel, table=True):
    """One started SLA clock of one person, whatever its state (met clocks included)."""

    __tablename__ = "person_clocks"
    __table_args__ = (Index("person_clocks_sla", "sla", "started_at"),
                      # the trends count each period's clocks by outcome from the index alone
                      Index("person_clocks_started", "started_at", "sla", "outcome", "person_id"))

    person_id: int = Field(primary_key=True)
    sla: str = Field(primary_key=True, max_length=64)
    team: str | None = Field(default=None, max_length=64, description="the team that owes the SLA")
    owner_email: str | None = Field(default=None, max_length=320)
    started_at: datetime = _ts()
    due_at: datetime = _ts()
    stopped_at: datetime | None = _ts(default=None)
    outcome: str = Field(max_length=16, description="running, met, late, missed or requirement")
    hours: float | None = Field(default=None, description="start to stop in the SLA's own time (business hours)")
