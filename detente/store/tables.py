"""The store's tables.

Raw layer: every record exactly as its CRM returned it, keyed by (system, object, id), with
its modification time and deleted flag; the cursor per object advances in the same
transaction as the rows it covers. Records that cannot be processed are quarantined with the
reason. Unified layer: people (a lead, a contact and a HubSpot contact linked into one real
person), owners mapped across systems by email, opportunities, activities, campaigns, and
stage transitions with timestamps. Beside them, ``record_links`` keeps what each CRM record
says about whom it belongs to, so the normalizer can re-link only what a change affects, and
``people_pending`` the people whose activity counts it must recount.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Column, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from detente.store.types import JSONDoc, UTCDateTime


def _ts(**kw: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kw)


# -- raw layer ------------------------------------------------------------------------------


class RawRecord(SQLModel, table=True):
    __tablename__ = "raw_records"
    __table_args__ = (
        Index("raw_records_dirty", "dirty", "system", "object"),
        Index("raw_records_pulled", "pulled_at"),  # what changed since the last audit
        # The normalizer pages through one object's dirty rows in id order.
        Index("raw_records_dirty_keys", "system", "object", "record_id",
              sqlite_where=text("dirty = 1"), postgresql_where=text("dirty")),
    )

    system: str = Field(primary_key=True, max_length=16)
    object: str = Field(primary_key=True, max_length=64)
    record_id: str = Field(primary_key=True, max_length=64)
    modified_at: datetime = _ts()
    deleted: bool = False
    merged_into: str | None = Field(default=None, max_length=64)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONDoc, nullable=False))
    first_pulled_at: datetime = _ts()
    pulled_at: datetime = _ts()
    dirty: bool = Field(default=True, description="changed since the unified model last read it")


class Cursor(SQLModel, table=True):
    __tablename__ = "cursors"

    system: str = Field(primary_key=True, max_length=16)
    object: str = Field(primary_key=True, max_length=64)
    modified_at: datetime | None = _ts(default=None)
    last_id: str | None = Field(default=None, max_length=64)
    deletes_checked_at: datetime | None = _ts(default=None)
    full_pull_at: datetime | None = _ts(default=None)
    updated_at: datetime = _ts()


class NormalizeState(SQLModel, table=True):
    """What the last normalize read the CRM fields with: a fingerprint of the field mappings
    (the rules' ``fields``), so that a change to them re-reads every person."""

    __tablename__ = "normalize_state"

    id: int = Field(default=1, primary_key=True)
    mappings: str = Field(max_length=64)
    updated_at: datetime = _ts()


class Quarantine(SQLModel, table=True):
    __tablename__ = "quarantine"
    __table_args__ = (UniqueConstraint("system", "object", "record_id", "stage"),)

    id: int | None = Field(default=None, primary_key=True)
    system: str = Field(max_length=16)
    object: str = Field(max_length=64)
    record_id: str = Field(max_length=64)
    stage: str = Field(max_length=32, description="pull, normalize, ...")
    reason: str
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONDoc, nullable=False))
    seen_at: datetime = _ts()
    resolved_at: datetime | None = _ts(default=None)


class Run(SQLModel, table=True):
    __tablename__ = "runs"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32, index=True)
    system: str | None = Field(default=None, max_length=16)
    started_at: datetime = _ts()
    ended_at: datetime | None = _ts(default=None)
    outcome: str = Field(default="running", max_length=16)
    counts: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONDoc, nullable=False))
    error: str | None = None
    host: str | None = Field(default=None, max_length=255, description="the host of the process that ran it")
    pid: int | None = Field(default=None, description="that process's id (a killed run is found by it)")


class ApiUsage(SQLModel, table=True):
    __tablename__ = "api_usage"

    system: str = Field(primary_key=True, max_length=16)
    day: date = Field(primary_key=True)
    calls: int = 0
    remaining: int | None = Field(default=None, description="what the CRM last reported")
    limit: int | None = None


# -- unified layer ----------------------------------------------------------------------------


class Owner(SQLModel, table=True):
    """A user or owner, mapped across systems by email."""

    __tablename__ = "owners"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True)
    name: str | None = None
    team: str | None = Field(default=None, max_length=64, description="as the CRMs say (department, teams)")
    salesforce_user_id: str | None = Field(default=None, max_length=18, index=True)
    hubspot_owner_id: str | None = Field(default=None, max_length=32, index=True)
    active: bool = True


class Campaign(SQLModel, table=True):
    __tablename__ = "campaigns"

    id: int | None = Field(default=None, primary_key=True)
    salesforce_id: str | None = Field(default=None, max_length=18, unique=True)
    name: str
    type: str | None = None
    status: str | None = None
    channel: str | None = None
    offer: str | None = None
    actual_cost: float | None = None
    budgeted_cost: float | None = None
    start_date: date | None = None
    end_date: date | None = None


class Person(SQLModel, table=True):
    """One real person: a Salesforce lead and/or contact and a HubSpot contact, linked."""

    __tablename__ = "people"
    __table_args__ = (
        Index("people_email", "email"),
        Index("people_created", "created_at"),
        # The metrics read a period's people, sliced and grouped, from this index alone.
        Index("people_cohort", "created_at", "deleted", "source", "offer", "channel", "campaign_id",
              "salesforce_owner_id", "hubspot_owner_id", "activity_count"),
    )

    id: int | None = Field(default=None, primary_key=True)
    email: str | None = Field(default=None, max_length=320)
    email_domain: str | None = Field(default=None, max_length=255)
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    title: str | None = None
    country: str | None = None
    source: str | None = None
    channel: str | None = None
    offer: str | None = None
    campaign_id: int | None = Field(default=None, foreign_key="campaigns.id")
    score: float | None = None
    salesforce_lead_id: str | None = Field(default=None, max_length=18, index=True)
    salesforce_contact_id: str | None = Field(default=None, max_length=18, index=True)
    hubspot_contact_id: str | None = Field(default=None, max_length=32, index=True)
    salesforce_status: str | None = None
    salesforce_converted: bool = False
    hubspot_lifecyclestage: str | None = None
    hubspot_lead_status: str | None = None
    disqualified_reason: str | None = None
    salesforce_owner_id: int | None = Field(default=None, foreign_key="owners.id")
    hubspot_owner_id: int | None = Field(default=None, foreign_key="owners.id")
    activity_count: int = 0
    first_activity_at: datetime | None = _ts(default=None)
    last_activity_at: datetime | None = _ts(default=None)
    created_at: datetime | None = _ts(default=None)
    modified_at: datetime | None = _ts(default=None)
    identity_conflict: str | None = Field(default=None, description="why the links are in doubt")
    deleted: bool = False
    attributes: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=Column(JSONDoc, nullable=False, server_default=text("'{}'")),
        description="admin-mapped fields by unified name (detente.rules.fields.encode_attribute)",
    )


class PersonRecord(SQLModel, table=True):
    """Which CRM record belongs to which person, and why they were linked."""

    __tablename__ = "person_records"

    system: str = Field(primary_key=True, max_length=16)
    object: str = Field(primary_key=True, max_length=64)
    record_id: str = Field(primary_key=True, max_length=64)
    person_id: int = Field(foreign_key="people.id", index=True)
    linked_by: str = Field(max_length=32, description="self, salesforce id, conversion, email, merge")


class Opportunity(SQLModel, table=True):
    """A Salesforce opportunity and/or the HubSpot deal that mirrors it."""

    __tablename__ = "opportunities"
    __table_args__ = (
        Index("opportunities_sf_contact", "salesforce_contact_id"),
        Index("opportunities_sf_lead", "salesforce_lead_id"),
        Index("opportunities_hs_contact", "hubspot_contact_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    salesforce_id: str | None = Field(default=None, max_length=18, unique=True)
    hubspot_deal_id: str | None = Field(default=None, max_length=32, unique=True)
    person_id: int | None = Field(default=None, foreign_key="people.id", index=True)
    name: str | None = None
    stage: str | None = None
    hubspot_stage: str | None = None
    amount: float | None = None
    close_date: date | None = None
    is_closed: bool = False
    is_won: bool = False
    loss_reason: str | None = None
    salesforce_loss_reason: str | None = Field(default=None, description="Loss_Reason__c as Salesforce has it")
    hubspot_loss_reason: str | None = Field(default=None, description="closed_lost_reason as HubSpot has it")
    source: str | None = None
    campaign_id: int | None = Field(default=None, foreign_key="campaigns.id")
    owner_id: int | None = Field(default=None, foreign_key="owners.id")
    created_at: datetime | None = _ts(default=None)
    closed_at: datetime | None = _ts(default=None)
    deleted: bool = False
    # The CRM records the person link comes from (kept so a re-link is one UPDATE).
    salesforce_contact_id: str | None = Field(default=None, max_length=18, description="primary contact role")
    salesforce_lead_id: str | None = Field(default=None, max_length=18, description="the lead converted into it")
    hubspot_contact_id: str | None = Field(default=None, max_length=32, description="the deal's first contact")


class Activity(SQLModel, table=True):
    """A task, call, email, meeting or event from either system."""

    __tablename__ = "activities"
    __table_args__ = (
        UniqueConstraint("system", "object", "record_id", name="activities_record"),
        Index("activities_person", "person_id", "occurred_at"),
        Index("activities_who", "system", "who_id"),
        Index("activities_what", "system", "what_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    system: str = Field(max_length=16)
    object: str = Field(max_length=32)
    record_id: str = Field(max_length=64)
    person_id: int | None = Field(default=None, foreign_key="people.id")
    opportunity_id: int | None = Field(default=None, foreign_key="opportunities.id")
    owner_id: int | None = Field(default=None, foreign_key="owners.id")
    kind: str = Field(max_length=16, description="call, email, meeting, task, event")
    subject: str | None = None
    occurred_at: datetime | None = _ts(default=None)
    completed: bool = True
    copy_of: int | None = Field(default=None, description="the original when the native connector copied it")
    deleted: bool = False
    who_object: str | None = Field(default=None, max_length=32, description="Lead, Contact or contacts")
    who_id: str | None = Field(default=None, max_length=64, description="WhoId, or the first associated contact")
    what_id: str | None = Field(default=None, max_length=64, description="WhatId, or the first associated deal")
    detente_key: str | None = Field(default=None, max_length=255, description="set on tasks detente wrote itself")


class Transition(SQLModel, table=True):
    """A stage, status or owner change with its time, from history, dates or observation."""

    __tablename__ = "transitions"
    __table_args__ = (
        UniqueConstraint("system", "object", "record_id", "field", "at", "to_value", name="transitions_change"),
        Index("transitions_person", "person_id", "at"),
        Index("transitions_opportunity", "opportunity_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    person_id: int | None = Field(default=None, foreign_key="people.id")
    opportunity_id: int | None = Field(default=None, foreign_key="opportunities.id")
    system: str = Field(max_length=16)
    object: str = Field(default="", max_length=64, sa_column_kwargs={"server_default": ""})
    record_id: str = Field(max_length=64)
    field: str = Field(max_length=64, description="Status, OwnerId, lifecyclestage, StageName, ...")
    from_value: str | None = None
    to_value: str | None = None
    at: datetime = _ts()
    source: str = Field(max_length=16, description="history, stage_date, observed")


class PersonPending(SQLModel, table=True):
    """People whose connector copies and activity counts must be worked out again."""

    __tablename__ = "people_pending"

    person_id: int = Field(primary_key=True)


class RecordLink(SQLModel, table=True):
    """What one CRM record says about whom it belongs to, as the normalizer last read it.

    Leads, contacts and HubSpot contacts carry an email and the ids they claim; leads their
    conversion; contact roles, campaign members and deals the records they join. ``tracked``
    holds the status, stage and owner values last seen, so a change between pulls that no
    history row explains can be recorded; ``view`` the values a person takes from the record.
    ``pending`` marks records whose person or opportunity must be worked out again.
    """

    __tablename__ = "record_links"
    __table_args__ = (
        # Object first: SQLite, without statistics, prefers the index that matches most columns.
        Index("record_links_email", "email"),
        Index("record_links_lead", "system", "object", "ref_lead"),
        Index("record_links_contact", "system", "object", "ref_contact"),
        Index("record_links_opportunity", "ref_opportunity"),
        Index("record_links_merged", "system", "object", "merged_into"),
        Index("record_links_pending", "system", "object", "record_id",
              sqlite_where=text("pending = 1"), postgresql_where=text("pending")),
    )

    system: str = Field(primary_key=True, max_length=16)
    object: str = Field(primary_key=True, max_length=64)
    record_id: str = Field(primary_key=True, max_length=64)
    email: str | None = Field(default=None, max_length=320, description="normalized: trimmed, lower case")
    ref_lead: str | None = Field(default=None, max_length=64, description="salesforceleadid, LeadId")
    ref_contact: str | None = Field(default=None, max_length=64,
                                    description="salesforcecontactid, ConvertedContactId, ContactId")
    ref_opportunity: str | None = Field(default=None, max_length=64,
                                        description="salesforceopportunityid, ConvertedOpportunityId, OpportunityId")
    ref_campaign: str | None = Field(default=None, max_length=64, description="CampaignId of a member")
    is_primary: bool = False
    created_at: datetime | None = _ts(default=None)
    deleted: bool = False
    merged_into: str | None = Field(default=None, max_length=64)
    tracked: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONDoc, nullable=False))
    view: dict[str, Any] = Field(default_factory=dict,
                                 sa_column=Column(JSONDoc, nullable=False, server_default=text("'{}'")),
                                 description="the values a person takes from this lead or contact")
    seen_at: datetime | None = _ts(default=None)
    pending: bool = False
