"""The catalog of both simulated CRMs: Salesforce sObjects with their fields, HubSpot objects
with their properties. The store, the describe and properties endpoints, the SOQL compiler,
search and the generator all read it, so what is served is always what is described.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from detente.agreement import (
    HUBSPOT_LEAD_STATUSES,
    HUBSPOT_LIFECYCLE_ORDER,
    SALESFORCE_LEAD_STATUSES,
)

# ---------------------------------------------------------------------------------------
# Salesforce
# ---------------------------------------------------------------------------------------

SF_TYPES = {
    "id", "string", "textarea", "email", "phone", "url", "picklist", "boolean", "datetime",
    "date", "double", "currency", "percent", "int", "reference",
}


@dataclass(frozen=True)
class SfField:
    name: str
    type: str
    label: str = ""
    updateable: bool = True
    createable: bool = True
    nillable: bool = True
    external_id: bool = False
    unique: bool = False
    picklist: tuple[str, ...] = ()
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    length: int = 255
    history_tracked: bool = False

    @property
    def custom(self) -> bool:
        return self.name.endswith("__c")


@dataclass(frozen=True)
class SfObject:
    name: str
    label: str
    key_prefix: str
    fields: tuple[SfField, ...]
    history_object: str | None = None  # e.g. LeadHistory
    history_parent: str | None = None  # on a history object: LeadId
    queryable: bool = True
    createable: bool = True
    _by_name: dict[str, SfField] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update({f.name.lower(): f for f in self.fields})

    def field(self, name: str) -> SfField | None:
        """Field by name, case-insensitively as SOQL does."""
        return self._by_name.get(name.lower())

    @property
    def relationships(self) -> dict[str, SfField]:
        return {f.relationship_name.lower(): f for f in self.fields if f.relationship_name}


def _ro(name: str, type_: str, **kw: object) -> SfField:
    return SfField(name, type_, updateable=False, createable=False, **kw)  # type: ignore[arg-type]


def _ref(name: str, to: str, rel: str | None, **kw: object) -> SfField:
    return SfField(name, "reference", reference_to=(to,), relationship_name=rel, length=18, **kw)  # type: ignore[arg-type]


def _audit() -> tuple[SfField, ...]:
    # Audit fields are createable, as in orgs that grant "Set Audit Fields upon Record Creation".
    return (
        SfField("CreatedDate", "datetime", updateable=False, nillable=False),
        SfField("CreatedById", "reference", updateable=False, reference_to=("User",),
                relationship_name="CreatedBy", length=18),
        SfField("LastModifiedDate", "datetime", updateable=False, nillable=False),
        SfField("LastModifiedById", "reference", updateable=False, reference_to=("User",),
                relationship_name="LastModifiedBy", length=18),
        _ro("SystemModstamp", "datetime", nillable=False),
    )


def _sobject(name: str, label: str, prefix: str, *fields: SfField, **kw: object) -> SfObject:
    base = (_ro("Id", "id", nillable=False, length=18), _ro("IsDeleted", "boolean", nillable=False))
    return SfObject(name, label, prefix, base + tuple(fields) + _audit(), **kw)  # type: ignore[arg-type]


LEAD_SOURCES = (
    "Web", "Paid Search", "Organic Search", "Webinar", "Trade Show", "Partner Referral",
    "Content Syndication", "Outbound", "Customer Referral", "Social",
)
CHANNELS = ("Organic", "Paid", "Event", "Partner", "Outbound", "Referral", "Social")
OFFERS = ("Demo Request", "Free Trial", "Ebook", "Webinar", "Contact Us", "Pricing Page", "Event Badge Scan")
DISQUALIFY_REASONS = ("No Budget", "No Authority", "No Need", "Bad Timing", "Competitor", "Bad Data", "Student")
LOSS_REASONS = ("Price", "Competitor", "No Budget", "Timing", "No Decision", "Product Fit")
OPPORTUNITY_STAGES = (
    "Prospecting", "Qualification", "Needs Analysis", "Proposal/Price Quote",
    "Negotiation/Review", "Closed Won", "Closed Lost",
)
DETENTE_STATUSES = ("Aligned", "Drift", "Missed Label", "Disagreement", "SLA Running", "SLA Breached", "Feedback Gap")
TASK_STATUSES = ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")
INDUSTRIES = (
    "Software", "Financial Services", "Healthcare", "Manufacturing", "Retail", "Education", "Media", "Logistics",
)


def _detente_fields() -> tuple[SfField, ...]:
    """Fields an admin adds to Lead and Contact for detente's write-back."""
    return (
        SfField("Detente_Status__c", "picklist", "Alignment Status", picklist=DETENTE_STATUSES),
        SfField("Detente_Reason__c", "textarea", "Alignment Reason", length=32768),
        SfField("Detente_SLA_Due__c", "datetime", "SLA Due"),
        SfField("Detente_Lead_Value__c", "currency", "Lead Value"),
        SfField("Detente_Rules_Version__c", "string", "Rules Version", length=64),
    )


def _person_fields() -> tuple[SfField, ...]:
    return (
        SfField("FirstName", "string", "First Name", length=40),
        SfField("LastName", "string", "Last Name", nillable=False, length=80),
        _ro("Name", "string", label="Full Name", length=121),
        SfField("Email", "email", "Email", length=80),
        SfField("Phone", "phone", "Phone", length=40),
        SfField("Title", "string", "Title", length=128),
        SfField("LeadSource", "picklist", "Lead Source", picklist=LEAD_SOURCES),
        SfField("Channel__c", "picklist", "Channel", picklist=CHANNELS),
        SfField("Offer__c", "picklist", "Offer", picklist=OFFERS),
        SfField("Lead_Score__c", "double", "Lead Score"),
    )


SALESFORCE_OBJECTS: dict[str, SfObject] = {
    o.name: o
    for o in (
        _sobject(
            "User", "User", "005",
            SfField("Username", "string", "Username", nillable=False, unique=True, length=80),
            SfField("Email", "email", "Email", nillable=False, length=128),
            SfField("FirstName", "string", "First Name", length=40),
            SfField("LastName", "string", "Last Name", nillable=False, length=80),
            _ro("Name", "string", label="Full Name", length=121),
            SfField("IsActive", "boolean", "Active"),
            SfField("UserType", "picklist", "User Type", picklist=("Standard", "PowerPartner")),
            SfField("Title", "string", "Title", length=80),
            SfField("Department", "string", "Department", length=80),
            SfField("TimeZoneSidKey", "picklist", "Time Zone",
                    picklist=("America/New_York", "America/Chicago", "America/Los_Angeles", "Europe/London")),
            _ref("ManagerId", "User", "Manager"),
        ),
        _sobject(
            "Account", "Account", "001",
            SfField("Name", "string", "Account Name", nillable=False),
            SfField("Website", "url", "Website"),
            SfField("Industry", "picklist", "Industry", picklist=INDUSTRIES),
            SfField("NumberOfEmployees", "int", "Employees"),
            SfField("AnnualRevenue", "currency", "Annual Revenue"),
            SfField("BillingCountry", "string", "Billing Country", length=80),
            SfField("Type", "picklist", "Type", picklist=("Prospect", "Customer", "Partner", "Other")),
            _ref("OwnerId", "User", "Owner"),
        ),
        _sobject(
            "Lead", "Lead", "00Q",
            *_person_fields(),
            SfField("Company", "string", "Company", nillable=False),
            SfField("Status", "picklist", "Lead Status", nillable=False,
                    picklist=SALESFORCE_LEAD_STATUSES, history_tracked=True),
            SfField("Disqualified_Reason__c", "picklist", "Disqualified Reason", picklist=DISQUALIFY_REASONS),
            SfField("Rating", "picklist", "Rating", picklist=("Hot", "Warm", "Cold")),
            SfField("Industry", "picklist", "Industry", picklist=INDUSTRIES),
            SfField("NumberOfEmployees", "int", "Employees"),
            SfField("Country", "string", "Country", length=80),
            _ref("OwnerId", "User", "Owner", history_tracked=True),
            _ro("IsConverted", "boolean", label="Converted"),
            _ro("ConvertedDate", "date", label="Converted Date"),
            _ref("ConvertedAccountId", "Account", "ConvertedAccount", updateable=False, createable=False),
            _ref("ConvertedContactId", "Contact", "ConvertedContact", updateable=False, createable=False),
            _ref("ConvertedOpportunityId", "Opportunity", "ConvertedOpportunity", updateable=False, createable=False),
            _ro("LastActivityDate", "date", label="Last Activity"),
            *_detente_fields(),
            history_object="LeadHistory",
        ),
        _sobject(
            "Contact", "Contact", "003",
            *_person_fields(),
            _ref("AccountId", "Account", "Account"),
            _ref("OwnerId", "User", "Owner"),
            SfField("MailingCountry", "string", "Mailing Country", length=80),
            _ro("LastActivityDate", "date", label="Last Activity"),
            *_detente_fields(),
        ),
        _sobject(
            "Opportunity", "Opportunity", "006",
            SfField("Name", "string", "Opportunity Name", nillable=False, length=120),
            _ref("AccountId", "Account", "Account"),
            _ref("ContactId", "Contact", "Contact"),
            SfField("StageName", "picklist", "Stage", nillable=False, picklist=OPPORTUNITY_STAGES,
                    history_tracked=True),
            SfField("Amount", "currency", "Amount", history_tracked=True),
            SfField("Probability", "percent", "Probability (%)"),
            SfField("CloseDate", "date", "Close Date", nillable=False, history_tracked=True),
            _ro("IsClosed", "boolean", label="Closed"),
            _ro("IsWon", "boolean", label="Won"),
            SfField("LeadSource", "picklist", "Lead Source", picklist=LEAD_SOURCES),
            _ref("CampaignId", "Campaign", "Campaign"),
            _ref("OwnerId", "User", "Owner"),
            SfField("Type", "picklist", "Type", picklist=("New Business", "Existing Business")),
            SfField("Loss_Reason__c", "picklist", "Loss Reason", picklist=LOSS_REASONS),
            history_object="OpportunityFieldHistory",
        ),
        _sobject(
            "OpportunityContactRole", "Opportunity Contact Role", "00K",
            _ref("OpportunityId", "Opportunity", "Opportunity", nillable=False),
            _ref("ContactId", "Contact", "Contact", nillable=False),
            SfField("Role", "picklist", "Role",
                    picklist=("Decision Maker", "Economic Buyer", "Evaluator", "Influencer", "Other")),
            SfField("IsPrimary", "boolean", "Primary"),
        ),
        _sobject(
            "Task", "Task", "00T",
            SfField("Subject", "string", "Subject"),
            SfField("WhoId", "reference", "Name", reference_to=("Lead", "Contact"), relationship_name="Who", length=18),
            SfField("WhatId", "reference", "Related To", reference_to=("Account", "Opportunity", "Campaign"),
                    relationship_name="What", length=18),
            _ref("OwnerId", "User", "Owner"),
            SfField("ActivityDate", "date", "Due Date Only"),
            SfField("Status", "picklist", "Status", nillable=False, picklist=TASK_STATUSES),
            SfField("Priority", "picklist", "Priority", nillable=False, picklist=("High", "Normal", "Low")),
            _ro("IsClosed", "boolean", label="Closed"),
            SfField("Type", "picklist", "Type", picklist=("Call", "Email", "Meeting", "Other")),
            SfField("TaskSubtype", "picklist", "Task Subtype", updateable=False,
                    picklist=("Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn")),
            SfField("CompletedDateTime", "datetime", "Completed Date/Time"),
            SfField("Description", "textarea", "Comments", length=32000),
            SfField("CallDurationInSeconds", "int", "Call Duration"),
            SfField("CallDisposition", "string", "Call Result"),
            SfField("Detente_Key__c", "string", "Detente Key", external_id=True, unique=True, length=255),
        ),
        _sobject(
            "Event", "Event", "00U",
            SfField("Subject", "string", "Subject"),
            SfField("WhoId", "reference", "Name", reference_to=("Lead", "Contact"), relationship_name="Who", length=18),
            SfField("WhatId", "reference", "Related To", reference_to=("Account", "Opportunity", "Campaign"),
                    relationship_name="What", length=18),
            _ref("OwnerId", "User", "Owner"),
            SfField("StartDateTime", "datetime", "Start"),
            SfField("EndDateTime", "datetime", "End"),
            SfField("ActivityDateTime", "datetime", "Due Date Time"),
            SfField("ActivityDate", "date", "Due Date Only"),
            SfField("DurationInMinutes", "int", "Duration"),
            SfField("Type", "picklist", "Type", picklist=("Call", "Email", "Meeting", "Other")),
            SfField("Description", "textarea", "Description", length=32000),
        ),
        _sobject(
            "Campaign", "Campaign", "701",
            SfField("Name", "string", "Campaign Name", nillable=False, length=80),
            SfField("Type", "picklist", "Type",
                    picklist=("Webinar", "Conference", "Email", "Advertisement", "Content", "Partners", "Other")),
            SfField("Status", "picklist", "Status", picklist=("Planned", "In Progress", "Completed", "Aborted")),
            SfField("IsActive", "boolean", "Active"),
            SfField("StartDate", "date", "Start Date"),
            SfField("EndDate", "date", "End Date"),
            SfField("ActualCost", "currency", "Actual Cost"),
            SfField("BudgetedCost", "currency", "Budgeted Cost"),
            SfField("ExpectedRevenue", "currency", "Expected Revenue"),
            SfField("Channel__c", "picklist", "Channel", picklist=CHANNELS),
            SfField("Offer__c", "picklist", "Offer", picklist=OFFERS),
            _ref("OwnerId", "User", "Owner"),
        ),
        _sobject(
            "CampaignMember", "Campaign Member", "00v",
            _ref("CampaignId", "Campaign", "Campaign", nillable=False, updateable=False),
            _ref("LeadId", "Lead", "Lead", updateable=False),
            _ref("ContactId", "Contact", "Contact", updateable=False),
            SfField("Status", "picklist", "Status", picklist=("Sent", "Responded", "Registered", "Attended")),
            SfField("HasResponded", "boolean", "Responded", updateable=False, createable=False),
            SfField("FirstRespondedDate", "date", "First Responded Date", updateable=False, createable=False),
        ),
        SfObject(
            "LeadHistory", "Lead History", "017",
            (
                _ro("Id", "id", nillable=False, length=18),
                _ro("IsDeleted", "boolean", nillable=False),
                _ref("LeadId", "Lead", "Lead", updateable=False, createable=False),
                _ro("Field", "picklist"),
                _ro("OldValue", "string"),
                _ro("NewValue", "string"),
                _ro("DataType", "string"),
                _ro("CreatedDate", "datetime", nillable=False),
                _ref("CreatedById", "User", "CreatedBy", updateable=False, createable=False),
            ),
            history_parent="LeadId",
            createable=False,
        ),
        SfObject(
            "OpportunityFieldHistory", "Opportunity Field History", "017",
            (
                _ro("Id", "id", nillable=False, length=18),
                _ro("IsDeleted", "boolean", nillable=False),
                _ref("OpportunityId", "Opportunity", "Opportunity", updateable=False, createable=False),
                _ro("Field", "picklist"),
                _ro("OldValue", "string"),
                _ro("NewValue", "string"),
                _ro("DataType", "string"),
                _ro("CreatedDate", "datetime", nillable=False),
                _ref("CreatedById", "User", "CreatedBy", updateable=False, createable=False),
            ),
            history_parent="OpportunityId",
            createable=False,
        ),
    )
}


def sf_object(name: str) -> SfObject | None:
    """sObject by name, case-insensitively."""
    return _SF_LOWER.get(name.lower())


_SF_LOWER = {k.lower(): v for k, v in SALESFORCE_OBJECTS.items()}
SF_PREFIXES = {o.key_prefix: o.name for o in SALESFORCE_OBJECTS.values() if o.key_prefix != "017"}

# ---------------------------------------------------------------------------------------
# HubSpot
# ---------------------------------------------------------------------------------------

HS_TYPES = {"string", "number", "datetime", "date", "enumeration", "bool"}


@dataclass(frozen=True)
class HsProperty:
    name: str
    type: str
    label: str = ""
    field_type: str = "text"
    options: tuple[str, ...] = ()
    group: str = "contactinformation"
    unique: bool = False
    read_only: bool = False
    calculated: bool = False
    hubspot_defined: bool = True


@dataclass(frozen=True)
class HsObject:
    name: str  # plural path segment: contacts
    singular: str  # contact
    type_id: str  # 0-1
    modified: str  # the last-modified property
    created: str  # the create-date property
    properties: tuple[HsProperty, ...]
    defaults: tuple[str, ...]  # properties returned when none are requested
    _by_name: dict[str, HsProperty] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update({p.name: p for p in self.properties})

    def prop(self, name: str) -> HsProperty | None:
        return self._by_name.get(name)


def _p(name: str, type_: str = "string", **kw: object) -> HsProperty:
    field_type = {"string": "text", "number": "number", "datetime": "date", "date": "date",
                  "enumeration": "select", "bool": "booleancheckbox"}[type_]
    return HsProperty(name, type_, kw.pop("label", name.replace("_", " ").title()),  # type: ignore[arg-type]
                      field_type, **kw)  # type: ignore[arg-type]


def _common(modified: str, created: str) -> tuple[HsProperty, ...]:
    props = [
        _p("hs_object_id", "number", read_only=True, unique=True),
        _p(created, "datetime", read_only=True),
        _p("hs_lastmodifieddate", "datetime", read_only=True),
        _p("hubspot_owner_id", "enumeration"),
    ]
    if modified != "hs_lastmodifieddate":
        props.append(_p(modified, "datetime", read_only=True))
    return tuple(props)


HS_SOURCES = (
    "ORGANIC_SEARCH", "PAID_SEARCH", "EMAIL_MARKETING", "SOCIAL_MEDIA", "REFERRALS",
    "OTHER_CAMPAIGNS", "DIRECT_TRAFFIC", "OFFLINE", "PAID_SOCIAL",
)
HS_LIFECYCLE_DATES = tuple(f"hs_lifecyclestage_{s}_date" for s in HUBSPOT_LIFECYCLE_ORDER)
HS_DEAL_STAGES = (
    "appointmentscheduled", "qualifiedtobuy", "presentationscheduled", "decisionmakerboughtin",
    "contractsent", "closedwon", "closedlost",
)


def _detente_props() -> tuple[HsProperty, ...]:
    return (
        _p("detente_status", "enumeration", label="Alignment Status", options=DETENTE_STATUSES,
           group="detente", hubspot_defined=False),
        _p("detente_reason", label="Alignment Reason", group="detente", hubspot_defined=False),
        _p("detente_sla_due", "datetime", label="SLA Due", group="detente", hubspot_defined=False),
        _p("detente_lead_value", "number", label="Lead Value", group="detente", hubspot_defined=False),
        _p("detente_rules_version", label="Rules Version", group="detente", hubspot_defined=False),
    )


def _engagement(name: str, singular: str, type_id: str, *props: HsProperty) -> HsObject:
    return HsObject(
        name, singular, type_id, "hs_lastmodifieddate", "hs_createdate",
        (*_common("hs_lastmodifieddate", "hs_createdate"), _p("hs_timestamp", "datetime"), *props),
        ("hs_createdate", "hs_lastmodifieddate", "hs_object_id"),
    )


HUBSPOT_OBJECTS: dict[str, HsObject] = {
    o.name: o
    for o in (
        HsObject(
            "contacts", "contact", "0-1", "lastmodifieddate", "createdate",
            (
                *_common("lastmodifieddate", "createdate"),
                _p("email", unique=True),
                _p("firstname"), _p("lastname"), _p("company"), _p("jobtitle"), _p("phone"),
                _p("country"),
                _p("hs_email_domain", read_only=True, calculated=True),
                _p("lifecyclestage", "enumeration", options=HUBSPOT_LIFECYCLE_ORDER),
                *(_p(n, "datetime", read_only=True, calculated=True) for n in HS_LIFECYCLE_DATES),
                _p("hs_lead_status", "enumeration", options=HUBSPOT_LEAD_STATUSES),
                _p("hubspotscore", "number", label="HubSpot Score", read_only=True, calculated=True),
                _p("hs_analytics_source", "enumeration", label="Original Source", options=HS_SOURCES,
                   read_only=True),
                _p("channel", "enumeration", options=CHANNELS, hubspot_defined=False),
                _p("offer", "enumeration", options=OFFERS, hubspot_defined=False),
                _p("campaign", hubspot_defined=False),
                _p("disqualification_reason", "enumeration", options=DISQUALIFY_REASONS,
                   hubspot_defined=False),
                _p("salesforceleadid", group="salesforceinformation", read_only=True),
                _p("salesforcecontactid", group="salesforceinformation", read_only=True),
                _p("salesforceaccountid", group="salesforceinformation", read_only=True),
                _p("salesforceownerid", group="salesforceinformation", read_only=True),
                _p("salesforcelastsynctime", "datetime", group="salesforceinformation", read_only=True),
                _p("hs_merged_object_ids", read_only=True, calculated=True),
                _p("notes_last_contacted", "datetime", read_only=True, calculated=True),
                _p("num_contacted_notes", "number", read_only=True, calculated=True),
                *_detente_props(),
            ),
            ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"),
        ),
        HsObject(
            "companies", "company", "0-2", "hs_lastmodifieddate", "createdate",
            (
                *_common("hs_lastmodifieddate", "createdate"),
                _p("name"), _p("domain"), _p("industry"), _p("numberofemployees", "number"),
                _p("country"), _p("salesforceaccountid", group="salesforceinformation", read_only=True),
            ),
            ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"),
        ),
        HsObject(
            "deals", "deal", "0-3", "hs_lastmodifieddate", "createdate",
            (
                *_common("hs_lastmodifieddate", "createdate"),
                _p("dealname"), _p("amount", "number"),
                _p("dealstage", "enumeration", options=HS_DEAL_STAGES),
                _p("pipeline", "enumeration", options=("default",)),
                _p("closedate", "datetime"),
                _p("hs_is_closed", "bool", read_only=True, calculated=True),
                _p("hs_is_closed_won", "bool", read_only=True, calculated=True),
                _p("closed_lost_reason"),
                _p("hs_analytics_source", "enumeration", options=HS_SOURCES),
                _p("salesforceopportunityid", group="salesforceinformation", read_only=True),
            ),
            ("amount", "closedate", "createdate", "dealname", "dealstage", "hs_lastmodifieddate",
             "hs_object_id", "pipeline"),
        ),
        _engagement(
            "tasks", "task", "0-27",
            _p("hs_task_subject"), _p("hs_task_body"),
            _p("hs_task_status", "enumeration",
               options=("NOT_STARTED", "IN_PROGRESS", "WAITING", "COMPLETED", "DEFERRED")),
            _p("hs_task_priority", "enumeration", options=("NONE", "LOW", "MEDIUM", "HIGH")),
            _p("hs_task_type", "enumeration", options=("EMAIL", "CALL", "TODO")),
            _p("hs_task_completion_date", "datetime", read_only=True),
            _p("detente_key", label="Detente Key", unique=True, group="detente", hubspot_defined=False),
        ),
        _engagement(
            "calls", "call", "0-48",
            _p("hs_call_title"), _p("hs_call_body"), _p("hs_call_duration", "number"),
            _p("hs_call_direction", "enumeration", options=("INBOUND", "OUTBOUND")),
            _p("hs_call_disposition"),
            _p("hs_call_status", "enumeration", options=("COMPLETED", "BUSY", "NO_ANSWER", "FAILED", "CANCELED")),
        ),
        _engagement(
            "emails", "email", "0-49",
            _p("hs_email_subject"), _p("hs_email_text"),
            _p("hs_email_direction", "enumeration", options=("EMAIL", "INCOMING_EMAIL", "FORWARDED_EMAIL")),
            _p("hs_email_status", "enumeration", options=("SENT", "BOUNCED", "FAILED", "SCHEDULED")),
        ),
        _engagement(
            "meetings", "meeting", "0-47",
            _p("hs_meeting_title"), _p("hs_meeting_body"),
            _p("hs_meeting_start_time", "datetime"), _p("hs_meeting_end_time", "datetime"),
            _p("hs_meeting_outcome", "enumeration",
               options=("SCHEDULED", "COMPLETED", "RESCHEDULED", "NO_SHOW", "CANCELED")),
        ),
    )
}

# HUBSPOT_DEFINED association type ids (the documented table).
HS_ASSOCIATION_TYPES: dict[tuple[str, str], int] = {
    ("contacts", "companies"): 279, ("companies", "contacts"): 280,
    ("contacts", "deals"): 4, ("deals", "contacts"): 3,
    ("deals", "companies"): 341, ("companies", "deals"): 342,
    ("tasks", "contacts"): 204, ("contacts", "tasks"): 203,
    ("tasks", "companies"): 192, ("tasks", "deals"): 216, ("deals", "tasks"): 215,
    ("calls", "contacts"): 194, ("contacts", "calls"): 193,
    ("calls", "companies"): 182, ("calls", "deals"): 206, ("deals", "calls"): 205,
    ("emails", "contacts"): 198, ("contacts", "emails"): 197,
    ("emails", "companies"): 186, ("emails", "deals"): 210, ("deals", "emails"): 209,
    ("meetings", "contacts"): 200, ("contacts", "meetings"): 199,
    ("meetings", "companies"): 188, ("meetings", "deals"): 212, ("deals", "meetings"): 211,
}
HS_PRIMARY_ASSOCIATION_TYPES: dict[tuple[str, str], int] = {
    ("contacts", "companies"): 1, ("deals", "companies"): 5, ("companies", "deals"): 6,
}

# Object type names as the associations API also accepts them.
HS_OBJECT_ALIASES: dict[str, str] = {
    **{o.name: o.name for o in HUBSPOT_OBJECTS.values()},
    **{o.singular: o.name for o in HUBSPOT_OBJECTS.values()},
    **{o.type_id: o.name for o in HUBSPOT_OBJECTS.values()},
}


def hs_object(name: str) -> HsObject | None:
    canonical = HS_OBJECT_ALIASES.get(name.lower())
    return HUBSPOT_OBJECTS.get(canonical) if canonical else None
