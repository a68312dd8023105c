"""The generator's plan of the world before it is written: owners, companies, campaigns and
people with their journeys through the funnel in both CRMs, as plain dataclasses.

Every change is a ``(value, time)`` pair in a list, oldest first, so the writer can emit
field history and the manifest can say from when a fact is true. Record ids are filled in
by the writer once the store has assigned them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Source:
    """How people arrive through one Salesforce lead source, and how good they are."""

    name: str  # Salesforce LeadSource
    hubspot: str | None  # hs_analytics_source; None: never in HubSpot (outbound)
    channel: str
    offers: tuple[str, ...]
    weight: float  # share of arrivals
    quality: float  # multiplies the offer's quality
    campaign_type: str | None


# LeadSource -> (HubSpot original source, channel, offers, arrival weight, quality, campaign type)
SOURCES: tuple[Source, ...] = (
    Source("Web", "DIRECT_TRAFFIC", "Organic", ("Contact Us", "Pricing Page", "Demo Request"), 10, 1.0, "Other"),
    Source("Paid Search", "PAID_SEARCH", "Paid", ("Demo Request", "Free Trial", "Ebook"), 14, 0.9, "Advertisement"),
    Source("Organic Search", "ORGANIC_SEARCH", "Organic", ("Ebook", "Pricing Page", "Free Trial"), 14, 1.0, "Content"),
    Source("Webinar", "EMAIL_MARKETING", "Event", ("Webinar",), 10, 0.9, "Webinar"),
    Source("Trade Show", "OFFLINE", "Event", ("Event Badge Scan",), 7, 0.85, "Conference"),
    Source("Partner Referral", "REFERRALS", "Partner", ("Demo Request", "Contact Us"), 5, 1.1, "Partners"),
    Source("Content Syndication", "OTHER_CAMPAIGNS", "Paid", ("Ebook",), 10, 0.7, "Content"),
    Source("Customer Referral", "REFERRALS", "Referral", ("Demo Request",), 4, 1.2, "Other"),
    Source("Social", "SOCIAL_MEDIA", "Social", ("Ebook", "Webinar"), 8, 0.75, "Advertisement"),
    Source("Outbound", None, "Outbound", (), 8, 0.8, None),
)
SOURCE_BY_NAME = {s.name: s for s in SOURCES}

# How likely an offer's respondents are to be real buyers (0..1): it drives score, the share
# of free email domains, qualification, win rate and deal size.
OFFER_QUALITY: dict[str, float] = {
    "Demo Request": 0.9, "Free Trial": 0.75, "Pricing Page": 0.7, "Contact Us": 0.65,
    "Webinar": 0.45, "Event Badge Scan": 0.35, "Ebook": 0.25,
}
# Campaign cost per expected response, by campaign type.
COST_PER_RESPONSE: dict[str, float] = {
    "Advertisement": 140.0, "Content": 70.0, "Conference": 260.0, "Webinar": 45.0,
    "Partners": 90.0, "Other": 25.0, "Email": 10.0,
}


@dataclass(slots=True)
class Owner:
    """A person in both CRMs: a Salesforce user and a HubSpot owner with the same email."""

    key: str
    first: str
    last: str
    email: str
    team: str  # Sales | Marketing | Partner | Operations
    role: str  # sdr | ae | marketing | partner | integration
    title: str
    created: datetime
    deactivated: datetime | None = None
    hubspot_share: float = 0.5  # how often this rep logs an activity in HubSpot
    number: int = 0  # position among all owners
    sf_id: str = ""
    hs_id: int = 0

    def active_at(self, moment: datetime) -> bool:
        return self.deactivated is None or moment < self.deactivated


@dataclass(slots=True)
class Company:
    name: str
    domain: str
    industry: str
    employees: int
    revenue: float
    country: str
    owner: Owner
    created: datetime
    type: str = "Prospect"
    became_customer: datetime | None = None
    sf_id: str = ""
    hs_id: int = 0


@dataclass(slots=True)
class Campaign:
    name: str
    source: Source
    offer: str
    type: str
    start: date
    end: date
    created: datetime
    owner: Owner
    budget: float = 0.0
    actual: float = 0.0
    status: str = "In Progress"
    modified: datetime | None = None
    sf_id: str = ""


class Timeline(Generic[T]):
    """A value that changes over time: (value, moment) pairs, oldest first."""

    __slots__ = ("changes",)

    def __init__(self, value: T, at: datetime) -> None:
        self.changes: list[tuple[T, datetime]] = [(value, at)]

    def set(self, value: T, at: datetime) -> None:
        if at < self.changes[-1][1]:
            raise ValueError(f"change at {at} precedes the last one at {self.changes[-1][1]}")
        if value != self.changes[-1][0]:
            self.changes.append((value, at))

    @property
    def value(self) -> T:
        return self.changes[-1][0]

    @property
    def since(self) -> datetime:
        return self.changes[-1][1]

    def at(self, moment: datetime) -> T | None:
        current: T | None = None
        for value, when in self.changes:
            if when > moment:
                break
            current = value
        return current

    @property
    def times(self) -> list[datetime]:
        return [t for _, t in self.changes]


@dataclass(slots=True)
class HsContact:
    """A HubSpot contact as the plan has it."""

    email: str
    created: datetime
    lifecycle: Timeline[str]
    owner: Timeline[Owner]
    score: Timeline[int]
    lead_status: Timeline[str] | None = None
    disqualification_reason: str | None = None
    lead: SfLead | None = None  # the Salesforce lead salesforceleadid points at
    lead_linked: datetime | None = None
    contact_linked: datetime | None = None  # when salesforcecontactid was written
    synced: list[datetime] = field(default_factory=list)  # connector writes
    merged_into: HsContact | None = None
    merged_at: datetime | None = None
    hs_id: int = 0

    def set_lead_status(self, value: str, at: datetime) -> None:
        if self.lead_status is None:
            self.lead_status = Timeline(value, at)
        else:
            self.lead_status.set(value, at)

    def touch_times(self) -> list[datetime]:
        """Every moment a tracked property of the contact changed."""
        times = self.lifecycle.times + self.owner.times + self.score.times
        if self.lead_status is not None:
            times += self.lead_status.times
        return times


@dataclass(slots=True)
class SfLead:
    """A Salesforce lead as the plan has it."""

    email: str
    created: datetime
    created_by: Owner
    status: Timeline[str]
    owner: Timeline[Owner]
    score: int | None
    source: Source
    channel: str | None
    offer: str | None
    campaign: Campaign | None
    modified: list[datetime] = field(default_factory=list)  # field writes besides status/owner
    disqualified_reason: str | None = None
    converted: datetime | None = None
    with_opportunity: bool = True
    deleted: datetime | None = None
    sf_id: str = ""
    member_id: str = ""  # its CampaignMember


@dataclass(slots=True)
class Opportunity:
    name: str
    created: datetime
    owner: Owner
    stage: Timeline[str]
    amount: Timeline[float]
    close_date: Timeline[date]
    loss_reason: str | None = None
    salesforce_reason: bool = True  # Loss_Reason__c filled when lost
    hubspot_reason: bool = True  # closed_lost_reason filled when lost
    deal_created: datetime | None = None  # HubSpot deal (None: no deal)
    deal_stage: Timeline[str] | None = None
    deal_amount: Timeline[float] | None = None
    deal_close: Timeline[str] | None = None  # wire datetimes
    in_salesforce: bool = True
    sf_id: str = ""
    hs_id: int = 0


@dataclass(slots=True)
class Activity:
    """One logical sales activity, logged natively in one system."""

    at: datetime
    owner: Owner
    kind: str  # call | email | meeting | task
    system: str  # hubspot | salesforce
    subject: str
    minutes: int = 0
    copied: datetime | None = None  # when the connector copied a HubSpot activity into Salesforce
    hs_id: int = 0
    sf_id: str = ""


@dataclass(slots=True)
class Problem:
    """One planted fact the audit must find."""

    kind: str
    detail: str
    true_as_of: datetime
    owner: Owner | None
    team: str


@dataclass(slots=True)
class Person:
    """One real human being, however many records the two CRMs hold for them."""

    index: int
    key: str
    first: str
    last: str
    email: str
    title: str
    phone: str
    country: str
    company: Company | None
    company_name: str
    source: Source
    campaign: Campaign | None
    offer: str | None
    arrived: datetime
    plant: str | None = None
    origin: str = "inbound"  # inbound | outbound
    hs: HsContact | None = None
    lead: SfLead | None = None
    contact_created: datetime | None = None
    contact_owner: Owner | None = None
    contact_modified: list[datetime] = field(default_factory=list)
    opportunity: Opportunity | None = None
    activities: list[Activity] = field(default_factory=list)
    extra_leads: list[SfLead] = field(default_factory=list)  # same email, another lead
    extra_contacts: list[HsContact] = field(default_factory=list)  # claimers and merged-away
    problems: list[Problem] = field(default_factory=list)
    sf_contact_id: str = ""

    @property
    def channel(self) -> str:
        return self.source.channel

    def reset(self) -> None:
        """Forget the journey (the identity stays) so it can be drawn again."""
        self.hs = None
        self.lead = None
        self.contact_created = None
        self.contact_owner = None
        self.contact_modified = []
        self.opportunity = None
        self.activities = []
        self.extra_leads = []
        self.extra_contacts = []
        self.problems = []
