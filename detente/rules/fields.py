"""The unified fields conditions may use: built-ins, stage timestamps and admin-mapped fields.

A field has a name, a type and a source in the unified store. Built-ins are the columns the
normalizer already fills (people, their owner, campaign and latest opportunity), the agreed
``team`` of the owner, and ``<stage>_at``: when a CRM first labelled the person with that
stage. Fields an admin adds under ``fields:`` that are not built-ins are kept per person in
the JSON column ``people.attributes`` under their unified name, encoded by
``encode_attribute`` so SQLite, PostgreSQL and Python read the same value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType


class ValueType(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    DURATION = "duration"


@dataclass(frozen=True)
class PeopleColumn:
    column: str


@dataclass(frozen=True)
class OwnerColumn:
    """A column of the person's owner: the Salesforce owner if any, else the HubSpot owner."""

    column: str


@dataclass(frozen=True)
class CampaignColumn:
    column: str


@dataclass(frozen=True)
class OpportunityColumn:
    """A column of the person's most recently created live opportunity."""

    column: str


@dataclass(frozen=True)
class TeamOfOwner:
    """The agreed team (from ``teams:``) of the person's owner."""


@dataclass(frozen=True)
class StageEntered:
    """When a CRM first labelled the person with ``stage`` (from the transitions)."""

    stage: str


@dataclass(frozen=True)
class Attribute:
    """An admin-mapped field kept in ``people.attributes``."""

    key: str


Source = PeopleColumn | OwnerColumn | CampaignColumn | OpportunityColumn | TeamOfOwner | StageEntered | Attribute


@dataclass(frozen=True)
class FieldDef:
    """One unified field."""

    name: str
    type: ValueType
    source: Source
    meaning: str
    systems: Mapping[str, str] = field(default_factory=dict)
    # per CRM: a value as it keeps it (casefolded) -> the unified value (text fields)
    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @property
    def owner_scoped(self) -> bool:
        """True for fields about the owner itself, the only ones a team condition may use."""
        return isinstance(self.source, OwnerColumn)


T, N, B, D = ValueType.TEXT, ValueType.NUMBER, ValueType.BOOLEAN, ValueType.DATETIME


def _b(name: str, type_: ValueType, source: Source, meaning: str, sf: str | None = None,
       hs: str | None = None) -> FieldDef:
    systems = {k: v for k, v in (("salesforce", sf), ("hubspot", hs)) if v}
    return FieldDef(name, type_, source, meaning, MappingProxyType(systems))


def _p(name: str, type_: ValueType, meaning: str, sf: str | None = None, hs: str | None = None,
       column: str | None = None) -> FieldDef:
    return _b(name, type_, PeopleColumn(column or name), meaning, sf, hs)


BUILTINS: tuple[FieldDef, ...] = (
    _p("email", T, "the person's email address", "Lead.Email", "email"),
    _p("email_domain", T, "the domain of the email address, lower case", None, "hs_email_domain"),
    _p("first_name", T, "first name", "Lead.FirstName", "firstname"),
    _p("last_name", T, "last name", "Lead.LastName", "lastname"),
    _p("company", T, "company name", "Lead.Company", "company"),
    _p("title", T, "job title", "Lead.Title", "jobtitle"),
    _p("country", T, "country", "Lead.Country", "country"),
    _p("source", T, "where the person came from (lead source)", "Lead.LeadSource", "hs_analytics_source"),
    _p("channel", T, "the marketing channel"),
    _p("offer", T, "the offer the person responded to"),
    _b("campaign", T, CampaignColumn("name"), "the name of the person's campaign", "Campaign.Name"),
    _p("score", N, "the lead score"),
    _p("salesforce_status", T, "the Salesforce lead status", "Lead.Status"),
    _p("salesforce_converted", B, "whether the Salesforce lead is converted", "Lead.IsConverted"),
    _p("hubspot_lifecyclestage", T, "the HubSpot lifecycle stage", None, "lifecyclestage"),
    _p("hubspot_lead_status", T, "the HubSpot lead status", None, "hs_lead_status"),
    _p("disqualified_reason", T, "why sales disqualified the person"),
    _p("salesforce_lead_id", T, "the Salesforce lead id", "Lead.Id"),
    _p("salesforce_contact_id", T, "the Salesforce contact id", "Contact.Id"),
    _p("hubspot_contact_id", T, "the HubSpot contact id", None, "hs_object_id"),
    _p("activity_count", N, "activities logged on the person in either CRM (each counted once)"),
    _p("first_activity_at", D, "when the first activity happened"),
    _p("last_activity_at", D, "when the latest activity happened"),
    _p("created_at", D, "when the person first appeared in either CRM", "Lead.CreatedDate", "createdate"),
    _p("modified_at", D, "when the person last changed in either CRM", "Lead.LastModifiedDate", "lastmodifieddate"),
    _b("owner", T, OwnerColumn("email"), "the owner's email (Salesforce owner, else HubSpot owner)",
       "Lead.OwnerId", "hubspot_owner_id"),
    _b("owner_name", T, OwnerColumn("name"), "the owner's name"),
    _b("owner_department", T, OwnerColumn("team"), "the owner's department or team as the CRMs say it",
       "User.Department"),
    _b("owner_active", B, OwnerColumn("active"), "whether the owner is an active user"),
    _b("team", T, TeamOfOwner(), "the agreed team of the owner (from teams:)"),
    _b("opportunity_stage", T, OpportunityColumn("stage"), "the stage of the person's latest opportunity",
       "Opportunity.StageName", "dealstage"),
    _b("opportunity_amount", N, OpportunityColumn("amount"), "the amount of the person's latest opportunity",
       "Opportunity.Amount", "amount"),
    _b("opportunity_closed", B, OpportunityColumn("is_closed"), "whether the latest opportunity is closed",
       "Opportunity.IsClosed", "hs_is_closed"),
    _b("opportunity_won", B, OpportunityColumn("is_won"), "whether the latest opportunity is closed won",
       "Opportunity.IsWon", "hs_is_closed_won"),
    _b("opportunity_loss_reason", T, OpportunityColumn("loss_reason"), "why the latest opportunity was lost",
       "Opportunity.Loss_Reason__c", "closed_lost_reason"),
)
BUILTIN_NAMES = frozenset(f.name for f in BUILTINS)

# Status fields whose changes the store keeps as transitions: (system, CRM field) per field.
TRANSITION_FIELDS: Mapping[str, tuple[str, str]] = MappingProxyType({
    "salesforce_status": ("salesforce", "Status"),
    "hubspot_lifecyclestage": ("hubspot", "lifecyclestage"),
    "hubspot_lead_status": ("hubspot", "hs_lead_status"),
})
OWNER_TRANSITION_FIELDS: tuple[tuple[str, str], ...] = (("salesforce", "OwnerId"), ("hubspot", "hubspot_owner_id"))


def stage_field(stage: str) -> FieldDef:
    """The built-in ``<stage>_at`` timestamp of a stage whose labels the transitions can trace."""
    return FieldDef(f"{stage}_at", D, StageEntered(stage),
                    f"when either CRM first labelled the person {stage}")


def custom_field(name: str, type_: ValueType, meaning: str, systems: Mapping[str, str]) -> FieldDef:
    return FieldDef(name, type_, Attribute(name), meaning, MappingProxyType(dict(systems)))


def _crm_names(crm_field: str) -> Iterable[str]:
    """A CRM field by its full name and, for ``Object.Field``, by the field alone."""
    yield crm_field.lower()
    if "." in crm_field:
        yield crm_field.rsplit(".", 1)[1].lower()


@dataclass(frozen=True)
class Catalog:
    """Every field a condition may name, and each CRM's own names for them (for labels)."""

    fields: Mapping[str, FieldDef]

    def resolve(self, name: str, system: str | None = None) -> FieldDef | None:
        """The field ``name`` stands for; in a label of ``system`` CRM field names count too."""
        key = name.lower()
        if system is not None:
            for f in self.fields.values():
                crm = f.systems.get(system)
                if crm and key in set(_crm_names(crm)):
                    return f
        return self.fields.get(key)

    def names(self, system: str | None = None) -> list[str]:
        out = list(self.fields)
        if system is not None:
            out += [f.systems[system].rsplit(".", 1)[-1] for f in self.fields.values() if system in f.systems]
        return out

    def with_fields(self, extra: Iterable[FieldDef]) -> Catalog:
        merged = dict(self.fields)
        merged.update({f.name: f for f in extra})
        return Catalog(MappingProxyType(merged))


def builtin_catalog() -> Catalog:
    return Catalog(MappingProxyType({f.name: f for f in BUILTINS}))


# -- the attributes contract with the normalizer ----------------------------------------------


def encode_attribute(type_: ValueType, value: object) -> object:
    """The JSON value to keep in ``people.attributes[name]`` for a mapped field, or None.

    Numbers are JSON numbers, booleans JSON booleans, text JSON strings, and datetimes the
    string ``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC — the form the store keeps datetimes in on
    SQLite, so that attribute and column datetimes compare alike on every backend. Values
    that do not fit the type are None.
    """
    if value is None:
        return None
    if type_ is ValueType.NUMBER:
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            return value
        try:
            return float(str(value))
        except ValueError:
            return None
    if type_ is ValueType.BOOLEAN:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        return {"true": True, "false": False, "1": True, "0": False}.get(text)
    if type_ is ValueType.DATETIME:
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return None
        if not isinstance(value, datetime):
            return None
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return str(value)
