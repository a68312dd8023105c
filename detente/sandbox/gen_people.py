"""Plan the generated world: owners, companies, campaigns and every person's journey through
the funnel in both CRMs, with the planted problems and the moment each becomes true.

Nothing here touches the store; ``gen_write`` writes the plan. Every random draw comes from
the context's seeded ``random.Random`` in a fixed order, so a plan is a pure function of
(size, seed, as_of, shares). Clean journeys keep every rule of the reference agreement by
construction (labels within hours, hand-over and first contact inside their SLAs, at least
the required activities before disqualifying, a touch at least every few business days);
planted journeys break exactly one rule; the builder checks that the break is true by
``as_of`` (redrawing the arrival time until it is), and the manifest audit test checks that
nothing else is.
"""

from __future__ import annotations

import contextlib
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from faker import Faker

from detente.agreement import HUBSPOT_LIFECYCLE, SALESFORCE_LEAD_STATUS, Agreement
from detente.calendars import BusinessCalendar
from detente.sandbox.gen_calendar import FastCalendar
from detente.sandbox.gen_model import (
    COST_PER_RESPONSE,
    OFFER_QUALITY,
    SOURCES,
    Activity,
    Campaign,
    Company,
    HsContact,
    Opportunity,
    Owner,
    Person,
    Problem,
    SfLead,
    Timeline,
)
from detente.sandbox.schema import DISQUALIFY_REASONS, INDUSTRIES, LOSS_REASONS

OWNER_DOMAIN = "detente-sandbox.example"
INTEGRATION_EMAIL = f"integration@{OWNER_DOMAIN}"

# Salesforce labels and HubSpot lifecycle stages the journeys use, from the agreement.
SF_OPEN = SALESFORCE_LEAD_STATUS["lead"]
SF_MQL = SALESFORCE_LEAD_STATUS["mql"]
SF_WORKING = SALESFORCE_LEAD_STATUS["sal"]
SF_SQL = SALESFORCE_LEAD_STATUS["sql"]
SF_NURTURE = SALESFORCE_LEAD_STATUS["nurture"]
SF_CONVERTED = SALESFORCE_LEAD_STATUS["opportunity"]
SF_DISQUALIFIED = SALESFORCE_LEAD_STATUS["disqualified"]
HS_SUBSCRIBER = HUBSPOT_LIFECYCLE["inquiry"]
HS_LEAD = HUBSPOT_LIFECYCLE["lead"]
HS_MQL = HUBSPOT_LIFECYCLE["mql"]
HS_SQL = HUBSPOT_LIFECYCLE["sql"]
HS_OPPORTUNITY = HUBSPOT_LIFECYCLE["opportunity"]
HS_CUSTOMER = HUBSPOT_LIFECYCLE["customer"]

OPEN_STAGES = ("Qualification", "Needs Analysis", "Proposal/Price Quote", "Negotiation/Review")
DEAL_STAGE = {
    "Prospecting": "appointmentscheduled", "Qualification": "qualifiedtobuy",
    "Needs Analysis": "presentationscheduled", "Proposal/Price Quote": "decisionmakerboughtin",
    "Negotiation/Review": "contractsent", "Closed Won": "closedwon", "Closed Lost": "closedlost",
}
TITLES = (
    "VP Marketing", "Director of Operations", "Head of Sales", "CFO", "IT Manager",
    "Revenue Operations Manager", "Marketing Manager", "Software Engineer", "Procurement Lead",
    "Chief Technology Officer", "Data Analyst", "Customer Success Manager", "Founder", "COO",
)
COUNTRIES = (("United States", 60), ("Canada", 8), ("United Kingdom", 10), ("Germany", 8),
             ("France", 5), ("Australia", 5), ("Netherlands", 4))
TLDS = (".com", ".com", ".com", ".io", ".co", ".net")

SUBJECTS = {
    "email": ("Following up on your {offer} request", "Quick question about {company}",
              "Re: next steps", "Resources for {company}", "Checking in"),
    "call": ("Call with {first} {last}", "Discovery call", "Left voicemail", "Qualification call"),
    "task": ("Follow up with {first}", "Send pricing to {first}", "Research {company}",
             "Connect on LinkedIn"),
    "meeting": ("Intro meeting: {company}", "Demo: {company}", "Scoping session", "Proposal review"),
}

class _Stop(Exception):
    """The journey reached ``as_of``: what would come next has not happened yet."""


@dataclass(frozen=True)
class Knobs:
    """Shares that shape the clean world (the planted problems have their own)."""

    outbound: float = 0.08  # people who exist only in Salesforce, prospected by SDRs
    subscriber_start: float = 0.5  # of ebook/webinar/social arrivals: start as subscribers
    subscriber_becomes_lead: float = 0.45  # of those: become a lead (and sync) later
    connector_copies: float = 0.5  # of HubSpot activities on synced people, copied to Salesforce
    merges: float = 0.01  # of clean HubSpot people: an earlier duplicate contact, merged


@dataclass
class Owners:
    marketing: list[Owner]
    sdrs: list[Owner]  # includes the deactivated one
    aes: list[Owner]
    partners: list[Owner]
    integration: Owner
    staying_sdrs: list[Owner] = field(init=False)
    departed_sdrs: list[Owner] = field(init=False)

    def __post_init__(self) -> None:
        for number, owner in enumerate(self.all()):
            owner.number = number
        self.staying_sdrs = [r for r in self.sdrs if r.deactivated is None]
        self.departed_sdrs = [r for r in self.sdrs if r.deactivated is not None]

    def all(self) -> list[Owner]:
        return [self.integration, *self.marketing, *self.sdrs, *self.aes, *self.partners]


@dataclass
class Ctx:
    """Everything a journey draws from."""

    rng: random.Random
    as_of: datetime
    start: datetime
    agreement: Agreement
    cal: FastCalendar
    knobs: Knobs
    owners: Owners
    companies: list[Company] = field(default_factory=list)
    campaigns: dict[str, list[Campaign]] = field(default_factory=dict)
    first_names: list[str] = field(default_factory=list)
    last_names: list[str] = field(default_factory=list)
    emails: set[str] = field(default_factory=set)
    activity_moments: set[int] = field(default_factory=set)  # owner number and epoch second

    def check(self, moment: datetime) -> datetime:
        """``moment`` if it has happened by ``as_of``; otherwise the journey stops here."""
        if moment > self.as_of:
            raise _Stop
        return moment

    def lag(self, moment: datetime) -> datetime:
        """When the connector mirrors a change made at ``moment`` (never after ``as_of``)."""
        return min(moment + timedelta(seconds=self.rng.randint(15, 90)), self.as_of)

    def bh(self, moment: datetime, low: float, high: float) -> datetime:
        """A moment between ``low`` and ``high`` business hours after ``moment``."""
        return _sec(self.cal.add_hours(moment, self.rng.uniform(low, high)))

    def due(self, moment: datetime, hours: float) -> datetime:
        """An SLA due time, by the agreement's own calendar arithmetic."""
        return self.cal.calendar.add_hours(moment, hours)


def _sec(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def make_ctx(
    *, seed: int, size: int, as_of: datetime, agreement: Agreement, knobs: Knobs
) -> tuple[Ctx, Faker]:
    rng = random.Random(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    start = as_of - timedelta(days=365)
    cal = FastCalendar(BusinessCalendar(agreement.calendar), start - timedelta(days=10),
                       as_of + timedelta(days=60))
    owners = make_owners(rng, fake, size, as_of)
    ctx = Ctx(rng=rng, as_of=as_of, start=start, agreement=agreement, cal=cal, knobs=knobs, owners=owners)
    ctx.first_names = sorted({fake.first_name() for _ in range(600)})
    ctx.last_names = sorted({fake.last_name() for _ in range(900)})
    return ctx, fake


# -- owners, companies, campaigns ----------------------------------------------------------


def make_owners(rng: random.Random, fake: Faker, size: int, as_of: datetime) -> Owners:
    """The marketing team, SDRs and AEs (about one rep per 150 people), partner users, the
    integration user and one SDR who left."""
    used: set[str] = set()

    def owner(key: str, team: str, role: str, title: str, first: str | None = None,
              last: str | None = None) -> Owner:
        first = first or fake.first_name()
        last = last or fake.last_name()
        local = re.sub(r"[^a-z]", "", f"{first}.{last}".lower().replace(".", "dot")).replace("dot", ".")
        email, n = f"{local}@{OWNER_DOMAIN}", 1
        while email in used:
            n += 1
            email = f"{local}{n}@{OWNER_DOMAIN}"
        used.add(email)
        created = _sec(as_of - timedelta(days=rng.uniform(420, 900)))
        return Owner(key, first, last, email, team, role, title, created,
                     hubspot_share=round(rng.uniform(0.3, 0.8), 2))

    integration = owner("integration", "Operations", "integration", "Integration User",
                        "Integration", "User")
    integration.email = INTEGRATION_EMAIL
    marketing = [owner(f"marketing-{i + 1:02d}", "Marketing", "marketing",
                       "Marketing Operations Manager" if i == 0 else "Demand Generation Manager")
                 for i in range(max(3, size // 4000))]
    sdrs = [owner(f"sdr-{i + 1:03d}", "Sales", "sdr", "Sales Development Representative")
            for i in range(max(4, size // 220))]
    aes = [owner(f"ae-{i + 1:03d}", "Sales", "ae", "Account Executive")
           for i in range(max(2, size // 450))]
    partners = [owner(f"partner-{i + 1:02d}", "Partner", "partner", "Partner Sales Manager")
                for i in range(max(2, size // 10000))]
    gone = owner("sdr-left", "Sales", "sdr", "Sales Development Representative")
    gone.deactivated = _sec(datetime.combine((as_of - timedelta(days=75)).date(), time(21, 30), UTC))
    return Owners(marketing, [*sdrs, gone], aes, partners, integration)


def make_companies(ctx: Ctx, fake: Faker, count: int) -> None:
    rng = ctx.rng
    domains: set[str] = set()
    surnames = sorted({fake.last_name() for _ in range(1500)})
    suffixes = ("Inc", "LLC", "Group", "Ltd", "PLC", "and Sons", "Labs", "Systems", "Partners")
    for _ in range(count):
        # Faker's own patterns, drawn from pools: Faker.company() is slow at 30,000 companies.
        shape = rng.random()
        if shape < 0.55:
            name = f"{rng.choice(surnames)} {rng.choice(suffixes)}"
        elif shape < 0.85:
            name = f"{rng.choice(surnames)}-{rng.choice(surnames)}"
        else:
            name = f"{rng.choice(surnames)}, {rng.choice(surnames)} and {rng.choice(surnames)}"
        stem = re.sub(r"[^a-z0-9]", "", name.split(",")[0].split(" and ")[0].lower())[:20] or "company"
        domain = stem + rng.choice(TLDS)
        n = 1
        while domain in domains or domain in ctx.agreement.free_email_domains:
            n += 1
            domain = f"{stem}{n}{rng.choice(TLDS)}"
        domains.add(domain)
        partner = rng.random() < 0.03
        employees = int(10 ** rng.uniform(1.2, 4.3))
        ctx.companies.append(Company(
            name=name, domain=domain, industry=rng.choice(INDUSTRIES), employees=employees,
            revenue=round(employees * rng.uniform(80_000, 250_000), -3),
            country=_weighted(rng, COUNTRIES),
            owner=rng.choice(ctx.owners.partners if partner else ctx.owners.aes),
            created=_sec(ctx.start - timedelta(days=rng.uniform(20, 500), seconds=rng.randint(0, 86399))),
            type="Partner" if partner else "Prospect",
        ))


def make_campaigns(ctx: Ctx, size: int) -> None:
    """One campaign per inbound source, offer and period (quarters; months for big worlds)."""
    rng = ctx.rng
    monthly = size >= 5000
    periods: list[tuple[date, date, str]] = []
    day = ctx.start.date().replace(day=1)
    if not monthly:
        day = day.replace(month=(day.month - 1) // 3 * 3 + 1)
    while day <= ctx.as_of.date():
        step = 1 if monthly else 3
        month = day.month - 1 + step
        nxt = date(day.year + month // 12, month % 12 + 1, 1)
        label = f"{day:%Y-%m}" if monthly else f"{day.year} Q{(day.month - 1) // 3 + 1}"
        periods.append((day, nxt - timedelta(days=1), label))
        day = nxt
    total_weight = sum(s.weight for s in SOURCES if s.hubspot)
    for source in SOURCES:
        if source.campaign_type is None:
            continue
        ctx.campaigns[source.name] = []
        for begin, end, label in periods:
            for offer in source.offers:
                expected = max(1.0, size * source.weight / total_weight / len(periods) / len(source.offers))
                budget = round(COST_PER_RESPONSE[source.campaign_type] * expected * rng.uniform(0.8, 1.3), -2)
                created = _sec(datetime.combine(begin - timedelta(days=14), time(15), UTC))
                done = end < ctx.as_of.date()
                elapsed = 1.0 if done else max(0.05, (ctx.as_of.date() - begin).days / ((end - begin).days + 1))
                modified = (_sec(datetime.combine(end + timedelta(days=1), time(16), UTC)) if done
                            else _sec(max(created, ctx.as_of - timedelta(days=rng.uniform(0, 6)))))
                ctx.campaigns[source.name].append(Campaign(
                    name=f"{label} {source.name} - {offer}", source=source, offer=offer,
                    type=source.campaign_type, start=begin, end=end, created=created,
                    owner=rng.choice(ctx.owners.marketing), budget=budget,
                    actual=round(budget * rng.uniform(0.85, 1.1) * elapsed, 2),
                    status="Completed" if done else "In Progress", modified=min(modified, ctx.as_of),
                ))


def _weighted(rng: random.Random, options: Sequence[tuple[str, float]]) -> str:
    return rng.choices([o for o, _ in options], weights=[w for _, w in options])[0]


# -- people: identity ---------------------------------------------------------------------


def quality(p: Person) -> float:
    offer_q = OFFER_QUALITY.get(p.offer or "", 0.55)
    return min(0.98, max(0.05, offer_q * p.source.quality))


def make_person(ctx: Ctx, index: int, *, inbound: bool, business: bool | None) -> Person:
    """Who the person is: name, email, company, where they come from."""
    rng = ctx.rng
    sources = [s for s in SOURCES if s.hubspot or not inbound]
    weights = [s.weight for s in sources]
    if not inbound:
        # Outbound's weight makes it the knob's share of the clean world.
        inbound_weight = sum(s.weight for s in sources if s.hubspot)
        share = min(ctx.knobs.outbound, 0.9)
        weights = [share / (1 - share) * inbound_weight if s.hubspot is None else s.weight for s in sources]
    source = rng.choices(sources, weights=weights)[0]
    first, last = rng.choice(ctx.first_names), rng.choice(ctx.last_names)
    if business is None:
        avg = sum(OFFER_QUALITY[o] for o in source.offers) / len(source.offers) if source.offers else 0.8
        business = source.hubspot is None or rng.random() > 0.06 + 0.45 * (1 - avg * source.quality)
    company: Company | None = None
    if business:
        company = ctx.companies[int(len(ctx.companies) * rng.random() ** 1.6)]
        domain, company_name = company.domain, company.name
    else:
        domain = rng.choice(ctx.agreement.free_email_domains)
        company_name = rng.choice(ctx.companies).name if rng.random() < 0.5 else f"{last} Consulting"
    email = unique_email(ctx, first, last, domain, numbered=not business)
    return Person(
        index=index, key=f"P{index + 1:06d}", first=first, last=last, email=email,
        title=rng.choice(TITLES), phone=f"+1 {rng.randint(201, 989)} 555 {rng.randint(0, 9999):04d}",
        country=company.country if company else _weighted(rng, COUNTRIES), company=company,
        company_name=company_name, source=source, campaign=None, offer=None, arrived=ctx.start,
        origin="inbound" if source.hubspot else "outbound",
    )


def unique_email(ctx: Ctx, first: str, last: str, domain: str, *, numbered: bool) -> str:
    local = re.sub(r"[^a-z.]", "", f"{first}.{last}".lower())
    n = ctx.rng.randint(2, 99) if numbered else 1
    email = f"{local}{n if numbered else ''}@{domain}"
    while email in ctx.emails:
        n += 1
        email = f"{local}{n}@{domain}"
    ctx.emails.add(email)
    return email


def draw_arrival(ctx: Ctx, low_days: float = 0.0, high_days: float = 365.0, *, growth: bool = True) -> datetime:
    """A form-fill moment between ``high_days`` and ``low_days`` before ``as_of``: more
    recent ones a little likelier (the business grows), fewer at weekends, US daytime."""
    rng = ctx.rng
    while True:
        r = rng.random()
        x = (-1 + math.sqrt(1 + 1.2 * 1.3 * r)) / 0.6 if growth else r  # density ~ 1 + 0.6x
        days_before = high_days - x * (high_days - low_days)
        day = (ctx.as_of - timedelta(days=days_before)).date()
        if day.weekday() >= 5 and rng.random() < 0.6:
            continue
        hour = (rng.gauss(17.5, 3.5)) % 24
        moment = _sec(datetime.combine(day, time(0), UTC) + timedelta(hours=hour))
        if ctx.as_of - timedelta(days=high_days) <= moment <= ctx.as_of - timedelta(days=low_days):
            return moment


def assign_campaign(ctx: Ctx, p: Person) -> None:
    campaigns = ctx.campaigns.get(p.source.name)
    if not campaigns:
        p.campaign, p.offer = None, None
        return
    day = p.arrived.date()
    live = [c for c in campaigns if c.start <= day <= c.end] or campaigns[:1]
    p.campaign = ctx.rng.choice(live)
    p.offer = p.campaign.offer


# -- journeys -------------------------------------------------------------------------------


@dataclass
class Plan:
    """How an inbound journey goes; the defaults are a clean journey with drawn outcomes."""

    subscriber: bool = False
    lead_after_days: float | None = 0.0  # subscribers: days until they become a lead (None: never)
    scores: list[tuple[int, datetime]] | None = None
    label: str = "auto"  # auto (when the definition holds) | never | forced (at label_at)
    label_at: datetime | None = None
    label_in: tuple[str, ...] = ("hubspot", "salesforce")
    handover: str = "on_time"  # on_time | late | never
    first_contact: str = "on_time"  # on_time | late | never
    outcome: str = "drawn"  # drawn | sql | disqualified | nurture | stop | disagree
    activities: int | None = None
    salesforce_frozen: bool = False  # the lead's status stops syncing after the label
    disagree_stage: str = HS_SQL  # what HubSpot moves to when outcome is disagree
    opportunity: str = "drawn"  # drawn | won | lost
    with_opportunity: bool = True
    loss_reason_missing: str | None = None  # salesforce | hubspot | both
    hubspot_stuck: str | None = None  # won, but HubSpot's lifecycle stays here
    contact_link: bool = True  # the connector writes salesforcecontactid after conversion
    active_reps_only: bool = False


def score_path(ctx: Ctx, t0: datetime, q: float) -> list[tuple[int, datetime]]:
    """Scores only rise in the clean world: engagement adds points over the weeks."""
    rng = ctx.rng
    score = int(min(95, max(0, round(rng.gauss(22 + 40 * q, 12)))))
    path = [(score, t0)]
    moment = t0
    for _ in range(rng.choice((0, 1, 1, 2, 2, 3, 4))):
        moment = _sec(moment + timedelta(hours=2 + rng.expovariate(1 / (24 * 9))))
        score = min(100, score + rng.randint(3, 14))
        path.append((score, moment))
    return path


def rising_path(ctx: Ctx, t0: datetime, cross_at: datetime | None, low: int = 20) -> list[tuple[int, datetime]]:
    """Below the bar at arrival; crossing it at ``cross_at`` (never when None)."""
    rng = ctx.rng
    bar = ctx.agreement.mql_min_score
    start = rng.randint(low, bar - 12)
    path = [(start, t0)]
    if cross_at is not None:
        path.append((rng.randint(bar, bar + 25), cross_at))
    return path


def high_path(ctx: Ctx, t0: datetime) -> list[tuple[int, datetime]]:
    """At or above the bar from arrival (a demo request, say), rising a little later."""
    rng = ctx.rng
    bar = ctx.agreement.mql_min_score
    score = rng.randint(bar + 2, bar + 35)
    path = [(score, t0)]
    if rng.random() < 0.5:
        path.append((min(100, score + rng.randint(3, 12)), _sec(t0 + timedelta(days=rng.uniform(1, 20)))))
    return path


def low_path(ctx: Ctx, t0: datetime) -> list[tuple[int, datetime]]:
    rng = ctx.rng
    bar = ctx.agreement.mql_min_score
    score = rng.randint(5, bar - 15)
    path = [(score, t0)]
    if rng.random() < 0.5:
        path.append((score + rng.randint(2, 10), _sec(t0 + timedelta(days=rng.uniform(1, 30)))))
    return path


def is_business(ctx: Ctx, email: str) -> bool:
    return email.rsplit("@", 1)[1].lower() not in ctx.agreement.free_email_domains


def definition_since(ctx: Ctx, email: str, scores: Sequence[tuple[int, datetime]]) -> datetime | None:
    """When the MQL definition started to hold for good (None: it does not hold at the end)."""
    since: datetime | None = None
    for score, moment in scores:
        since = (since or moment) if ctx.agreement.is_mql(score, email) else None
    return since


def pick_sdr(ctx: Ctx, at: datetime, *, active_only: bool = False) -> Owner:
    """An SDR who still works here 10 minutes after ``at`` (``active_only``: and at ``as_of``)."""
    staying = ctx.owners.staying_sdrs
    gone = ctx.owners.departed_sdrs
    if active_only or not gone or any(not r.active_at(at + timedelta(minutes=10)) for r in gone):
        return ctx.rng.choice(staying)
    return ctx.rng.choice(ctx.owners.sdrs)


def new_contact(ctx: Ctx, p: Person, email: str, at: datetime, stage: str, owner: Owner,
                scores: Sequence[tuple[int, datetime]]) -> HsContact:
    hs = HsContact(email=email, created=at, lifecycle=Timeline(stage, at), owner=Timeline(owner, at),
                   score=Timeline(scores[0][0], at))
    for score, moment in scores[1:]:
        if moment <= ctx.as_of:
            hs.score.set(score, moment)
    return hs


def inbound(ctx: Ctx, p: Person, plan: Plan) -> None:
    """An inbound journey: HubSpot first, synced to Salesforce once a lead."""
    with contextlib.suppress(_Stop):
        _inbound(ctx, p, plan)
    finish(ctx, p)


def _inbound(ctx: Ctx, p: Person, plan: Plan) -> None:
    rng = ctx.rng
    t0 = p.arrived
    marketer = rng.choice(ctx.owners.marketing)
    scores = plan.scores or score_path(ctx, t0, quality(p))
    hs = new_contact(ctx, p, p.email, t0, HS_SUBSCRIBER if plan.subscriber else HS_LEAD, marketer, scores)
    p.hs = hs
    since = definition_since(ctx, p.email, hs.score.changes)
    label: datetime | None = None
    if plan.label == "auto" and since is not None:
        label = _sec(since + timedelta(seconds=rng.randint(60, 6 * 3600)))
    elif plan.label == "forced":
        label = plan.label_at
    became_lead: datetime | None = t0
    if plan.subscriber:
        became_lead = (None if plan.lead_after_days is None
                       else _sec(t0 + timedelta(days=plan.lead_after_days)))
        if label is not None:
            became_lead = min(became_lead or label, label)
        if became_lead is not None:
            became_lead = max(became_lead, t0 + timedelta(minutes=1))
    if label is not None and became_lead is not None:
        label = max(label, became_lead + timedelta(minutes=2))
    if became_lead is None:
        return
    ctx.check(became_lead)
    hs.lifecycle.set(HS_LEAD, became_lead)
    created = ctx.lag(became_lead)
    lead = SfLead(email=p.email, created=created, created_by=ctx.owners.integration,
                  status=Timeline(SF_OPEN, created), owner=Timeline(marketer, created), score=None,
                  source=p.source, channel=p.channel, offer=p.offer, campaign=p.campaign)
    p.lead = lead
    hs.lead = lead
    hs.lead_linked = ctx.lag(created)
    hs.synced.append(hs.lead_linked)
    if label is None:
        return
    ctx.check(label)
    if "hubspot" in plan.label_in:
        hs.lifecycle.set(HS_MQL, label)
    if "salesforce" in plan.label_in:
        lead.status.set(SF_MQL, ctx.lag(label) if "hubspot" in plan.label_in else label)
        hs.synced.append(lead.status.since)
    if plan.handover == "never":
        return
    handed = ctx.bh(label, 0.25, 20) if plan.handover == "on_time" else ctx.bh(label, 26, 70)
    ctx.check(handed)
    rep = pick_sdr(ctx, handed, active_only=plan.active_reps_only)
    lead.owner.set(rep, handed)
    mirrored = ctx.lag(handed)
    hs.owner.set(rep, mirrored)
    hs.set_lead_status("NEW", mirrored)
    hs.synced.append(mirrored)
    if plan.first_contact == "never":
        return
    first = ctx.bh(handed, 0.1, 20) if plan.first_contact == "on_time" else ctx.bh(handed, 26, 50)
    sales_phase(ctx, p, first, plan)


def outbound(ctx: Ctx, p: Person) -> None:
    """An SDR prospects someone in Salesforce; HubSpot never sees them."""
    try:
        t0 = ctx.check(_sec(ctx.cal.next_open(p.arrived)))
        rep = pick_sdr(ctx, t0)
        p.lead = SfLead(email=p.email, created=t0, created_by=rep, status=Timeline(SF_OPEN, t0),
                        owner=Timeline(rep, t0), score=None, source=p.source, channel=p.channel,
                        offer=None, campaign=None)
        sales_phase(ctx, p, ctx.bh(t0, 0.1, 3), Plan())
    except _Stop:
        pass
    finish(ctx, p)


def draw_outcome(ctx: Ctx, p: Person) -> str:
    q = quality(p)
    sql = 0.15 + 0.45 * q
    r = ctx.rng.random()
    if r < sql:
        return "sql"
    return "disqualified" if r < sql + (1 - sql) * 0.6 else "nurture"


def current_rep(ctx: Ctx, p: Person, at: datetime) -> Owner:
    """The lead's sales owner at ``at``; a rep who has left hands the lead to a colleague."""
    assert p.lead is not None
    rep = p.lead.owner.value
    if rep.deactivated is not None and at >= rep.deactivated:
        successor = pick_sdr(ctx, rep.deactivated)
        p.lead.owner.set(successor, rep.deactivated)
        if p.hs is not None:
            mirrored = ctx.lag(rep.deactivated)
            p.hs.owner.set(successor, mirrored)
            p.hs.synced.append(mirrored)
        rep = successor
    return rep


def log_activity(ctx: Ctx, p: Person, at: datetime, owner: Owner,
                 kinds: Sequence[str] = ("email", "call", "task", "meeting")) -> Activity:
    rng = ctx.rng
    kind = rng.choice(kinds)
    system = "hubspot" if p.hs is not None and rng.random() < owner.hubspot_share else "salesforce"
    minutes = 0
    if kind == "meeting":
        minutes = rng.choice((30, 30, 45, 60))
        if at + timedelta(minutes=minutes) > ctx.as_of:
            kind, minutes = "call", 0
    if kind == "call":
        minutes = rng.randint(1, 25)
    subject = rng.choice(SUBJECTS[kind]).format(
        offer=p.offer or "information", company=p.company_name, first=p.first, last=p.last)
    # A rep never logs two activities in the same second, so that owner, time and subject
    # alone tell a connector copy from a second activity.
    while owner.number * 10**10 + int(at.timestamp()) in ctx.activity_moments:
        at -= timedelta(seconds=1)
    ctx.activity_moments.add(owner.number * 10**10 + int(at.timestamp()))
    activity = Activity(at=at, owner=owner, kind=kind, system=system, subject=subject, minutes=minutes)
    if system == "hubspot" and p.hs is not None and p.hs.lead is not None and rng.random() < ctx.knobs.connector_copies:
        activity.copied = ctx.lag(at)
    p.activities.append(activity)
    return activity


def sales_phase(ctx: Ctx, p: Person, first: datetime, plan: Plan) -> None:
    """From first contact to an outcome: work the lead, then qualify, disqualify or nurture."""
    rng = ctx.rng
    lead = p.lead
    assert lead is not None
    outcome = plan.outcome if plan.outcome != "drawn" else draw_outcome(ctx, p)
    count = plan.activities or {"sql": rng.randint(2, 7), "disqualified": rng.randint(6, 10),
                                "nurture": rng.randint(3, 8), "stop": rng.randint(1, 3),
                                "disagree": rng.randint(2, 5)}[outcome]
    moment = ctx.check(first)
    last = moment
    for i in range(count):
        if i:  # close enough that even ten touches end in an outcome within the outcome window
            moment = ctx.check(ctx.bh(moment, 1, 8))
        log_activity(ctx, p, moment, current_rep(ctx, p, moment))
        last = moment
        if i == 0 and not plan.salesforce_frozen:
            working = ctx.check(moment + timedelta(seconds=rng.randint(60, 600)))
            lead.status.set(SF_WORKING, working)
            if p.hs is not None:
                mirrored = ctx.lag(working)
                p.hs.set_lead_status("IN_PROGRESS", mirrored)
                p.hs.synced.append(mirrored)
    if outcome == "stop":
        return
    decided = ctx.check(ctx.bh(last, 1, 6))
    rep = current_rep(ctx, p, decided)
    if outcome == "disagree":
        disagree(ctx, p, decided, plan)
    elif outcome == "disqualified":
        reason = rng.choice(DISQUALIFY_REASONS)
        if not is_business(ctx, p.email) and rng.random() < 0.5:
            reason = "Student"
        lead.status.set(SF_DISQUALIFIED, decided)
        lead.disqualified_reason = reason
        if p.hs is not None:
            mirrored = ctx.lag(decided)
            p.hs.set_lead_status("UNQUALIFIED", mirrored)
            p.hs.disqualification_reason = reason
            p.hs.synced.append(mirrored)
    elif outcome == "nurture":
        marketer = rng.choice(ctx.owners.marketing)
        lead.status.set(SF_NURTURE, decided)
        lead.owner.set(marketer, decided)
        if p.hs is not None:
            mirrored = ctx.lag(decided)
            p.hs.set_lead_status("BAD_TIMING", mirrored)
            p.hs.owner.set(marketer, mirrored)
            p.hs.synced.append(mirrored)
    else:
        lead.status.set(SF_SQL, decided)
        if p.hs is not None:
            mirrored = ctx.lag(decided)
            p.hs.lifecycle.set(HS_SQL, mirrored)
            p.hs.set_lead_status("CONNECTED", mirrored)
            p.hs.synced.append(mirrored)
        convert(ctx, p, ctx.check(ctx.bh(decided, 2, 40)), plan, rep)


def disagree(ctx: Ctx, p: Person, at: datetime, plan: Plan) -> None:
    """A rep moves HubSpot ahead while the Salesforce lead's status no longer syncs."""
    assert p.hs is not None and p.lead is not None
    rep = p.lead.owner.value
    p.hs.lifecycle.set(plan.disagree_stage, at)
    p.hs.set_lead_status("CONNECTED" if plan.disagree_stage == HS_SQL else "OPEN_DEAL", at)
    if plan.disagree_stage == HS_OPPORTUNITY:
        amount = deal_amount(ctx, p)
        p.opportunity = Opportunity(
            name=f"{p.company_name} - New Business", created=at, owner=rep,
            stage=Timeline("Prospecting", at), amount=Timeline(amount, at),
            close_date=Timeline((at + timedelta(days=60)).date(), at), in_salesforce=False,
            deal_created=at, deal_stage=Timeline(DEAL_STAGE["Prospecting"], at),
            deal_amount=Timeline(amount, at),
            deal_close=Timeline(_midnight((at + timedelta(days=60)).date()), at),
        )
    moment = at
    while True:  # keeps working the person until as_of
        moment = ctx.check(ctx.bh(moment, 2, 30))
        log_activity(ctx, p, moment, current_rep(ctx, p, moment))


def deal_amount(ctx: Ctx, p: Person) -> float:
    base = 8000 + 40000 * quality(p)
    return float(round(base * ctx.rng.lognormvariate(0, 0.45), -2))


def _midnight(day: date) -> str:
    return f"{day.isoformat()}T00:00:00.000Z"


def _wire(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def convert(ctx: Ctx, p: Person, at: datetime, plan: Plan, sdr: Owner) -> None:
    """Lead conversion: a contact, usually an opportunity, and the deal mirrored to HubSpot."""
    rng = ctx.rng
    lead = p.lead
    assert lead is not None and p.company is not None
    ae = rng.choice(ctx.owners.aes)
    lead.status.set(SF_CONVERTED, at)
    lead.converted = at
    lead.with_opportunity = plan.with_opportunity
    p.contact_created = at
    p.contact_owner = ae
    mirrored = ctx.lag(at)
    hs = p.hs
    if hs is not None:
        if plan.contact_link:
            hs.contact_linked = mirrored
        hs.owner.set(ae, mirrored)
        hs.synced.append(mirrored)
    if not plan.with_opportunity:
        return
    amount = deal_amount(ctx, p)
    close_plan = (at + timedelta(days=rng.randint(30, 120))).date()
    opp = Opportunity(
        name=f"{p.company_name} - New Business", created=at, owner=ae,
        stage=Timeline(OPEN_STAGES[0], at), amount=Timeline(amount, at),
        close_date=Timeline(close_plan, at),
    )
    p.opportunity = opp
    if hs is not None:
        opp.deal_created = mirrored
        opp.deal_stage = Timeline(DEAL_STAGE[OPEN_STAGES[0]], mirrored)
        opp.deal_amount = Timeline(amount, mirrored)
        opp.deal_close = Timeline(_midnight(close_plan), mirrored)
        if plan.hubspot_stuck != HS_SQL:
            hs.lifecycle.set(HS_OPPORTUNITY, mirrored)
        hs.set_lead_status("OPEN_DEAL", mirrored)
    q = quality(p)
    result = plan.opportunity
    if result == "drawn":
        result = "won" if rng.random() < 0.12 + 0.4 * q else "lost"
    lost_at = rng.randrange(len(OPEN_STAGES)) if result == "lost" else len(OPEN_STAGES)
    moment = at
    for index in range(len(OPEN_STAGES) + 1):
        for _ in range(rng.randint(0, 2)):
            moment = ctx.check(ctx.bh(moment, 4, 40))
            log_activity(ctx, p, moment, ae, ("email", "call", "meeting"))
        moment = ctx.check(ctx.bh(moment, 16, 100))
        if index == lost_at:
            close(ctx, p, opp, moment, "Closed Won" if result == "won" else "Closed Lost", plan)
            return
        stage = OPEN_STAGES[index + 1] if index + 1 < len(OPEN_STAGES) else None
        if stage is None:
            continue
        opp.stage.set(stage, moment)
        hs_moment = ctx.lag(moment)
        if opp.deal_stage is not None:
            opp.deal_stage.set(DEAL_STAGE[stage], hs_moment)
        if stage == "Proposal/Price Quote":
            revised = float(round(opp.amount.value * rng.uniform(0.8, 1.3), -2))
            opp.amount.set(revised, moment)
            if opp.deal_amount is not None:
                opp.deal_amount.set(revised, hs_moment)
        if rng.random() < 0.25:
            slipped = opp.close_date.value + timedelta(days=rng.randint(14, 30))
            opp.close_date.set(slipped, moment)
            if opp.deal_close is not None:
                opp.deal_close.set(_midnight(slipped), hs_moment)


def close(ctx: Ctx, p: Person, opp: Opportunity, at: datetime, stage: str, plan: Plan) -> None:
    rng = ctx.rng
    opp.stage.set(stage, at)
    opp.close_date.set(at.date(), at)
    mirrored = ctx.lag(at)
    if opp.deal_stage is not None and opp.deal_close is not None:
        opp.deal_stage.set(DEAL_STAGE[stage], mirrored)
        opp.deal_close.set(_wire(mirrored), mirrored)
    if stage == "Closed Lost":
        opp.loss_reason = rng.choice(LOSS_REASONS)
        missing = plan.loss_reason_missing
        opp.salesforce_reason = missing not in ("salesforce", "both")
        opp.hubspot_reason = missing not in ("hubspot", "both")
        return
    assert p.company is not None
    p.company.became_customer = min(p.company.became_customer or at, at)
    if p.hs is not None and plan.hubspot_stuck is None:
        p.hs.lifecycle.set(HS_CUSTOMER, mirrored)
        p.hs.synced.append(mirrored)


def finish(ctx: Ctx, p: Person) -> None:
    """Mirror score changes into Salesforce and note every connector write."""
    hs, lead = p.hs, p.lead
    if hs is None or lead is None:
        return
    for _, moment in hs.score.changes:
        if moment < lead.created:
            continue
        mirrored = ctx.lag(moment)
        if lead.converted is not None and moment >= lead.converted:
            p.contact_modified.append(mirrored)
        elif lead.deleted is None or mirrored < lead.deleted:
            lead.modified.append(mirrored)
        hs.synced.append(mirrored)
    at_conversion = hs.score.at(lead.converted) if lead.converted else None
    lead.score = at_conversion if at_conversion is not None else hs.score.value


# -- facts the planted problems are stated in ----------------------------------------------


def live_lead(p: Person) -> SfLead | None:
    return p.lead if p.lead is not None and p.lead.deleted is None else None


def activity_times(p: Person) -> list[datetime]:
    return sorted(a.at for a in p.activities)


def last_touch(p: Person) -> datetime:
    """The last activity, status change or owner change of the person in either system."""
    times = list(activity_times(p))
    lead = live_lead(p)
    if lead is not None:
        times += [lead.created, *lead.status.times, *lead.owner.times]
    if p.hs is not None:
        times += p.hs.lifecycle.times + p.hs.owner.times
        if p.hs.lead_status is not None:
            times += p.hs.lead_status.times
    return max(times)


def first_label(p: Person) -> datetime | None:
    times = []
    if p.hs is not None:
        times += [t for v, t in p.hs.lifecycle.changes if v == HS_MQL]
    if p.lead is not None:
        times += [t for v, t in p.lead.status.changes if v == SF_MQL]
    return min(times) if times else None


def handed_over(p: Person) -> datetime | None:
    times = []
    if p.lead is not None:
        times += [t for o, t in p.lead.owner.changes if o.team == "Sales"]
    if p.hs is not None:
        times += [t for o, t in p.hs.owner.changes if o.team == "Sales"]
    return min(times) if times else None


def fmt(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


# -- planted problems -------------------------------------------------------------------------

Planter = Callable[[Ctx, Person], Problem | None]


def _person_owner(p: Person) -> Owner:
    if p.lead is not None and p.lead.deleted is None:
        return p.lead.owner.value
    assert p.hs is not None
    return p.hs.owner.value


def plant_definition_drift(ctx: Ctx, p: Person) -> Problem | None:
    """Labelled MQL while the definition does not hold: a low score or a free email domain."""
    rng = ctx.rng
    bar = ctx.agreement.mql_min_score
    variant = rng.choice(("low_both", "free_domain", "low_hubspot", "low_salesforce", "decayed"))
    if variant == "free_domain" and is_business(ctx, p.email):
        variant = "low_both"
    if variant != "free_domain" and not is_business(ctx, p.email):
        variant = "free_domain"
    t0 = p.arrived
    label_in: tuple[str, ...] = {"low_hubspot": ("hubspot",), "low_salesforce": ("salesforce",)}.get(
        variant, ("hubspot", "salesforce"))
    if variant == "free_domain":
        scores = high_path(ctx, t0)
        label_at = _sec(t0 + timedelta(seconds=rng.randint(120, 6 * 3600)))
    elif variant == "decayed":
        scores = high_path(ctx, t0)[:1]
        label_at = _sec(t0 + timedelta(seconds=rng.randint(120, 6 * 3600)))
        scores.append((rng.randint(bar - 20, bar - 1), _sec(label_at + timedelta(hours=rng.uniform(1, 8)))))
    else:
        scores = low_path(ctx, t0)
        label_at = _sec(t0 + timedelta(hours=rng.uniform(1, 120)))
    plan = Plan(scores=scores, label="forced", label_at=label_at, label_in=label_in, handover="never")
    inbound(ctx, p, plan)
    assert p.hs is not None
    lead = p.lead
    if lead is None or (label_in == ("salesforce",) and lead.status.value != SF_MQL) or (
            "hubspot" in label_in and p.hs.lifecycle.value != HS_MQL):
        return None
    if ctx.agreement.is_mql(p.hs.score.value, p.email):
        return None
    label_since = min([t for t in (p.hs.lifecycle.since if p.hs.lifecycle.value == HS_MQL else None,
                                   lead.status.since if lead.status.value == SF_MQL else None) if t])
    score = p.hs.score.value
    false_since = p.hs.score.since if variant == "decayed" else p.hs.score.changes[0][1]
    where = {"low_hubspot": "HubSpot", "low_salesforce": "Salesforce"}.get(variant, "HubSpot and Salesforce")
    why = (f"free email domain {p.email.rsplit('@', 1)[1]}" if variant == "free_domain"
           else f"score {score} < {bar}")
    return Problem("definition_drift", f"{where} label MQL but {why}", max(label_since, false_since),
                   _person_owner(p), "marketing")


def plant_missed_label(ctx: Ctx, p: Person) -> Problem | None:
    """The definition holds past the grace period and neither system labels the person."""
    rng = ctx.rng
    grace = timedelta(days=ctx.agreement.missed_label_grace_days)
    t0 = p.arrived
    cross = _sec(t0 + timedelta(days=rng.uniform(0.5, 30)))
    hubspot_only = rng.random() < 0.35
    plan = Plan(scores=rising_path(ctx, t0, cross), label="never", subscriber=hubspot_only,
                lead_after_days=None if hubspot_only else 0.0)
    inbound(ctx, p, plan)
    assert p.hs is not None
    since = definition_since(ctx, p.email, p.hs.score.changes)
    if since is None or since + grace > ctx.as_of:
        return None
    score = p.hs.score.value
    return Problem("missed_label",
                   f"score {score} >= {ctx.agreement.mql_min_score} and business domain since {fmt(since)};"
                   f" {'HubSpot subscriber' if hubspot_only else 'HubSpot lead, Salesforce ' + SF_OPEN}",
                   since + grace, _person_owner(p), "marketing")


def plant_stage_disagreement(ctx: Ctx, p: Person) -> Problem | None:
    """HubSpot moves ahead (SQL, opportunity) while the Salesforce status stopped syncing."""
    rng = ctx.rng
    hs_stage, sf_status = rng.choice([
        (HS_SQL, SF_OPEN), (HS_SQL, SF_MQL), (HS_OPPORTUNITY, SF_OPEN)])
    plan = Plan(scores=high_path(ctx, p.arrived),
                label_in=("hubspot", "salesforce") if sf_status == SF_MQL else ("hubspot",),
                salesforce_frozen=True, outcome="disagree", disagree_stage=hs_stage, active_reps_only=True)
    inbound(ctx, p, plan)
    if p.hs is None or p.lead is None or p.hs.lifecycle.value != hs_stage or p.lead.status.value != sf_status:
        return None
    since = max(p.hs.lifecycle.since, p.lead.status.since)
    return Problem("stage_disagreement", f"HubSpot lifecyclestage {hs_stage}; Salesforce lead Status {sf_status}",
                   since, p.lead.owner.value, "sales")


def plant_mql_not_handed_over(ctx: Ctx, p: Person) -> Problem | None:
    plan = Plan(scores=high_path(ctx, p.arrived), handover="never")
    inbound(ctx, p, plan)
    label = first_label(p)
    if label is None or p.lead is None:
        return None
    due = ctx.due(label, ctx.agreement.handoff_business_hours)
    if due > ctx.as_of:
        return None
    return Problem("mql_not_handed_over",
                   f"MQL since {fmt(label)}, owner {p.lead.owner.value.email} (marketing); due {fmt(due)}",
                   due, p.lead.owner.value, "marketing")


def plant_mql_handed_over_late(ctx: Ctx, p: Person) -> Problem | None:
    plan = Plan(scores=high_path(ctx, p.arrived), handover="late")
    inbound(ctx, p, plan)
    label, handed = first_label(p), handed_over(p)
    if label is None or handed is None or p.lead is None:
        return None
    due = ctx.due(label, ctx.agreement.handoff_business_hours)
    hours = ctx.cal.calendar.hours_between(label, handed)
    marketer = p.hs.owner.changes[0][0] if p.hs is not None else p.lead.owner.changes[0][0]
    return Problem("mql_handed_over_late",
                   f"MQL since {fmt(label)}, handed to sales {fmt(handed)} after {hours:.1f} business hours"
                   f" > {ctx.agreement.handoff_business_hours}; due {fmt(due)}",
                   due, marketer, "marketing")


def plant_first_contact_missing(ctx: Ctx, p: Person) -> Problem | None:
    plan = Plan(scores=high_path(ctx, p.arrived), first_contact="never", active_reps_only=True)
    inbound(ctx, p, plan)
    handed = handed_over(p)
    if handed is None or p.lead is None:
        return None
    due = ctx.due(handed, ctx.agreement.first_contact_business_hours)
    idle_from = last_touch(p) + timedelta(days=ctx.agreement.idle_with_sales_days)
    if due > ctx.as_of or idle_from <= ctx.as_of:
        return None
    return Problem("first_contact_missing",
                   f"with sales since {fmt(handed)}, no activity; due {fmt(due)}",
                   due, p.lead.owner.value, "sales")


def plant_first_contact_late(ctx: Ctx, p: Person) -> Problem | None:
    plan = Plan(scores=high_path(ctx, p.arrived), first_contact="late", active_reps_only=True)
    inbound(ctx, p, plan)
    handed = handed_over(p)
    if handed is None or not p.activities or p.lead is None:
        return None
    first = activity_times(p)[0]
    due = ctx.due(handed, ctx.agreement.first_contact_business_hours)
    hours = ctx.cal.calendar.hours_between(handed, first)
    return Problem("first_contact_late",
                   f"with sales since {fmt(handed)}, first activity {fmt(first)} after {hours:.1f} business"
                   f" hours > {ctx.agreement.first_contact_business_hours}; due {fmt(due)}",
                   due, p.activities[0].owner, "sales")


def plant_disqualified_too_early(ctx: Ctx, p: Person) -> Problem | None:
    need = ctx.agreement.min_activities_before_disqualify
    plan = Plan(scores=high_path(ctx, p.arrived), outcome="disqualified",
                activities=ctx.rng.randint(1, need - 1), active_reps_only=True)
    inbound(ctx, p, plan)
    if p.lead is None or p.lead.status.value != SF_DISQUALIFIED:
        return None
    at = p.lead.status.since
    return Problem("disqualified_too_early",
                   f"disqualified ({p.lead.disqualified_reason}) after {len(p.activities)} activities < {need}",
                   at, p.lead.owner.value, "sales")


def _converted_plan(ctx: Ctx, p: Person, **kw: object) -> Plan:
    return Plan(scores=high_path(ctx, p.arrived), outcome="sql", active_reps_only=True, **kw)  # type: ignore[arg-type]


def plant_closed_lost_without_reason(ctx: Ctx, p: Person) -> Problem | None:
    missing = ctx.rng.choice(("both", "both", "salesforce", "hubspot"))
    inbound(ctx, p, _converted_plan(ctx, p, opportunity="lost", loss_reason_missing=missing))
    opp = p.opportunity
    if opp is None or opp.stage.value != "Closed Lost" or opp.deal_stage is None:
        return None
    if opp.deal_stage.value != "closedlost":
        return None
    where = {"both": "Loss_Reason__c and closed_lost_reason empty", "salesforce": "Loss_Reason__c empty",
             "hubspot": "HubSpot closed_lost_reason empty"}[missing]
    return Problem("closed_lost_without_reason", f"closed lost {fmt(opp.stage.since)}; {where}",
                   opp.stage.since, opp.owner, "sales")


def plant_won_not_in_hubspot(ctx: Ctx, p: Person) -> Problem | None:
    stuck = ctx.rng.choice((HS_OPPORTUNITY, HS_OPPORTUNITY, HS_SQL))
    inbound(ctx, p, _converted_plan(ctx, p, opportunity="won", hubspot_stuck=stuck))
    opp = p.opportunity
    if opp is None or opp.stage.value != "Closed Won" or p.hs is None:
        return None
    since = max(opp.stage.since, p.hs.lifecycle.since)
    return Problem("won_not_in_hubspot",
                   f"Salesforce opportunity Closed Won {fmt(opp.stage.since)}; HubSpot lifecyclestage"
                   f" still {p.hs.lifecycle.value}", since, opp.owner, "sales")


def plant_converted_without_opportunity(ctx: Ctx, p: Person) -> Problem | None:
    inbound(ctx, p, _converted_plan(ctx, p, with_opportunity=False))
    lead = p.lead
    if lead is None or lead.converted is None:
        return None
    return Problem("converted_without_opportunity",
                   f"lead converted {fmt(lead.converted)} with no opportunity", lead.converted,
                   p.contact_owner, "sales")


def plant_idle_with_sales(ctx: Ctx, p: Person) -> Problem | None:
    plan = Plan(scores=high_path(ctx, p.arrived), outcome="stop", active_reps_only=True)
    inbound(ctx, p, plan)
    lead = p.lead
    if lead is None or lead.status.value not in (SF_WORKING,) or not p.activities:
        return None
    touched = last_touch(p)
    days = ctx.agreement.idle_with_sales_days
    handed = handed_over(p)
    if touched + timedelta(days=days) > ctx.as_of or handed is None:
        return None
    if handed + timedelta(days=ctx.agreement.outcome_window_days) <= ctx.as_of:
        return None  # the outcome SLA would be breached too: one problem per person

    return Problem("idle_with_sales",
                   f"owner {lead.owner.value.email}; no activity or status change since {fmt(touched)}"
                   f" (> {days} days)", touched + timedelta(days=days), lead.owner.value, "sales")


def _clean_lead_stage(ctx: Ctx, p: Person) -> None:
    """A person who became a lead and stays one (the definition never holds)."""
    inbound(ctx, p, Plan(scores=low_path(ctx, p.arrived)))


def plant_duplicate_lead_email(ctx: Ctx, p: Person) -> Problem | None:
    rng = ctx.rng
    clean_journey(ctx, p, Plan())
    lead = live_lead(p)
    if lead is None or lead.created > ctx.as_of - timedelta(days=2):
        return None
    at = _sec(lead.created + (ctx.as_of - lead.created) * rng.uniform(0.05, 0.95))
    importer = rng.choice(ctx.owners.marketing)
    trade_show = next(s for s in SOURCES if s.name == "Trade Show")
    dup = SfLead(email=p.email, created=at, created_by=importer, status=Timeline(SF_OPEN, at),
                 owner=Timeline(importer, at), score=None, source=trade_show, channel=trade_show.channel,
                 offer=None, campaign=None)
    p.extra_leads.append(dup)
    return Problem("duplicate_lead_email", f"two Salesforce leads with email {p.email}", at, importer,
                   "marketing")


def plant_hubspot_contacts_share_lead(ctx: Ctx, p: Person) -> Problem | None:
    rng = ctx.rng
    _clean_lead_stage(ctx, p)
    lead = live_lead(p)
    if p.hs is None or lead is None or lead.created > ctx.as_of - timedelta(days=2):
        return None
    at = _sec(lead.created + (ctx.as_of - lead.created) * rng.uniform(0.05, 0.95))
    email = unique_email(ctx, p.first, p.last, rng.choice(ctx.agreement.free_email_domains), numbered=True)
    marketer = rng.choice(ctx.owners.marketing)
    other = new_contact(ctx, p, email, at, HS_LEAD, marketer, low_path(ctx, at)[:1])
    other.lead = lead
    other.lead_linked = at
    other.synced.append(at)
    p.extra_contacts.append(other)
    return Problem("hubspot_contacts_share_lead",
                   f"HubSpot contacts {p.email} and {email} both claim one Salesforce lead", at, marketer,
                   "marketing")


def plant_hubspot_lead_deleted(ctx: Ctx, p: Person) -> Problem | None:
    rng = ctx.rng
    _clean_lead_stage(ctx, p)
    lead = p.lead
    if p.hs is None or lead is None or lead.status.value != SF_OPEN:
        return None
    last = max([lead.created, *lead.modified, *lead.status.times, *lead.owner.times])
    if last > ctx.as_of - timedelta(days=1):
        return None
    lead.deleted = _sec(last + (ctx.as_of - last) * rng.uniform(0.1, 0.9))
    return Problem("hubspot_lead_deleted",
                   f"HubSpot contact {p.email} points at Salesforce lead deleted {fmt(lead.deleted)}",
                   lead.deleted, p.hs.owner.value, "marketing")


def plant_hubspot_lead_converted(ctx: Ctx, p: Person) -> Problem | None:
    inbound(ctx, p, _converted_plan(ctx, p, contact_link=False))
    lead = p.lead
    if lead is None or lead.converted is None or p.hs is None:
        return None
    return Problem("hubspot_lead_converted",
                   f"HubSpot contact points at Salesforce lead converted {fmt(lead.converted)};"
                   " salesforcecontactid empty", lead.converted, p.hs.owner.value, p.hs.owner.value.team.lower())


PLANTERS: dict[str, tuple[Planter, float, float]] = {
    # kind: (planter, arrival window: latest and earliest days before as_of)
    "definition_drift": (plant_definition_drift, 3, 330),
    "missed_label": (plant_missed_label, 5, 330),
    "stage_disagreement": (plant_stage_disagreement, 20, 200),
    "mql_not_handed_over": (plant_mql_not_handed_over, 3, 330),
    "mql_handed_over_late": (plant_mql_handed_over_late, 12, 330),
    "first_contact_missing": (plant_first_contact_missing, 4, 16),
    "first_contact_late": (plant_first_contact_late, 16, 330),
    "disqualified_too_early": (plant_disqualified_too_early, 16, 330),
    "closed_lost_without_reason": (plant_closed_lost_without_reason, 60, 340),
    "won_not_in_hubspot": (plant_won_not_in_hubspot, 60, 340),
    "converted_without_opportunity": (plant_converted_without_opportunity, 20, 330),
    "idle_with_sales": (plant_idle_with_sales, 18, 29),
    "duplicate_lead_email": (plant_duplicate_lead_email, 5, 340),
    "hubspot_contacts_share_lead": (plant_hubspot_contacts_share_lead, 5, 340),
    "hubspot_lead_deleted": (plant_hubspot_lead_deleted, 5, 340),
    "hubspot_lead_converted": (plant_hubspot_lead_converted, 30, 340),
}
NEEDS_BUSINESS = frozenset(PLANTERS) - {"definition_drift", "duplicate_lead_email",
                                        "hubspot_contacts_share_lead", "hubspot_lead_deleted"}


def plant(ctx: Ctx, p: Person, kind: str) -> None:
    """Give ``p`` a journey with the planted problem ``kind`` true by ``as_of``."""
    planter, latest, earliest = PLANTERS[kind]
    for _ in range(200):
        p.reset()
        p.arrived = draw_arrival(ctx, latest, earliest, growth=False)
        assign_campaign(ctx, p)
        problem = planter(ctx, p)
        if problem is not None:
            p.plant = kind
            p.problems = [problem]
            return
    raise RuntimeError(f"could not plant {kind} for {p.key} before {ctx.as_of}")


def clean_journey(ctx: Ctx, p: Person, plan: Plan | None = None) -> None:
    """A journey that keeps the agreement: only running clocks, nothing breached."""
    rng = ctx.rng
    if p.origin == "outbound":
        outbound(ctx, p)
        return
    if plan is None:
        plan = Plan()
        if p.offer in ("Ebook", "Webinar") and rng.random() < ctx.knobs.subscriber_start:
            plan.subscriber = True
            plan.lead_after_days = (rng.uniform(1, 45) if rng.random() < ctx.knobs.subscriber_becomes_lead
                                    else None)
    inbound(ctx, p, plan)


def add_merged_duplicate(ctx: Ctx, p: Person) -> None:
    """An earlier contact for the same person (another address), merged into theirs later."""
    rng = ctx.rng
    hs = p.hs
    if hs is None:
        return
    created = _sec(max(ctx.start, hs.created - timedelta(days=rng.uniform(1, 60))))
    if created >= hs.created:
        return
    email = unique_email(ctx, p.first, p.last, rng.choice(ctx.agreement.free_email_domains), numbered=True)
    other = new_contact(ctx, p, email, created, HS_SUBSCRIBER, rng.choice(ctx.owners.marketing),
                        low_path(ctx, created)[:1])
    base = max(hs_modified(p, hs), created)
    other.merged_into = hs
    other.merged_at = min(ctx.as_of, _sec(base + timedelta(hours=rng.uniform(1, 72))))
    p.extra_contacts.append(other)


def hs_modified(p: Person, hs: HsContact) -> datetime:
    """The contact's lastmodifieddate: its latest property write."""
    times = [hs.created, *hs.touch_times(), *hs.synced]
    for extra in (hs.lead_linked, hs.contact_linked):
        if extra is not None:
            times.append(extra)
    if hs is p.hs:
        times += [a.at for a in p.activities if a.system == "hubspot"]
    return max(times)


def sf_lead_modified(lead: SfLead) -> datetime:
    times = [lead.created, *lead.status.times, *lead.owner.times, *lead.modified]
    return max(times)
