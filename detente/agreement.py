"""The reference agreement a typical B2B sales and marketing team starts from.

This is the single written source of the agreement that the sandbox generator plants its
problems against and that the shipped rules file encodes, so the two can never disagree:
an MQL is a person with score >= 50 and a business email domain; marketing hands an MQL to
sales within 24 business hours; sales makes first contact within 24 business hours of
receiving it; a lead gets six activities before it may be disqualified.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FREE_EMAIL_DOMAINS: tuple[str, ...] = (
    "gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "aol.com", "icloud.com",
    "proton.me", "gmx.de", "mail.com", "yandex.ru",
)


@dataclass(frozen=True)
class CalendarSpec:
    """Working time against which business-hour SLAs run."""

    timezone: str = "America/New_York"
    start_hour: int = 9
    end_hour: int = 17
    workdays: tuple[int, ...] = (0, 1, 2, 3, 4)  # Monday=0
    holiday_country: str = "US"


# The funnel vocabulary in order, and how each CRM labels each stage.
STAGES: tuple[str, ...] = (
    "inquiry", "lead", "mql", "sal", "sql", "opportunity", "customer", "nurture", "disqualified",
)

HUBSPOT_LIFECYCLE: dict[str, str] = {
    "inquiry": "subscriber",
    "lead": "lead",
    "mql": "marketingqualifiedlead",
    "sql": "salesqualifiedlead",
    "opportunity": "opportunity",
    "customer": "customer",
}
HUBSPOT_LIFECYCLE_ORDER: tuple[str, ...] = (
    "subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity",
    "customer", "evangelist", "other",
)
HUBSPOT_LEAD_STATUSES: tuple[str, ...] = (
    "NEW", "OPEN", "IN_PROGRESS", "OPEN_DEAL", "UNQUALIFIED", "ATTEMPTED_TO_CONTACT",
    "CONNECTED", "BAD_TIMING",
)

SALESFORCE_LEAD_STATUS: dict[str, str] = {
    "lead": "Open - Not Contacted",
    "mql": "Marketing Qualified",
    "sal": "Working - Contacted",
    "sql": "Sales Qualified",
    "nurture": "Nurture",
    "opportunity": "Closed - Converted",
    "disqualified": "Closed - Not Converted",
}
SALESFORCE_LEAD_STATUSES: tuple[str, ...] = (
    "Open - Not Contacted", "Marketing Qualified", "Working - Contacted", "Sales Qualified",
    "Nurture", "Closed - Converted", "Closed - Not Converted",
)

# Stages that the two systems may not show at the same time for one person.
INCOMPATIBLE: tuple[tuple[str, str], ...] = (
    ("salesqualifiedlead", "Open - Not Contacted"),
    ("salesqualifiedlead", "Marketing Qualified"),
    ("opportunity", "Open - Not Contacted"),
)


@dataclass(frozen=True)
class Agreement:
    """The numbers both teams signed."""

    mql_min_score: int = 50
    free_email_domains: tuple[str, ...] = FREE_EMAIL_DOMAINS
    handoff_business_hours: int = 24
    first_contact_business_hours: int = 24
    min_activities_before_disqualify: int = 6
    missed_label_grace_days: int = 3
    idle_with_sales_days: int = 14
    outcome_window_days: int = 30
    calendar: CalendarSpec = field(default_factory=CalendarSpec)

    def is_mql(self, score: float | None, email: str | None) -> bool:
        """The MQL definition: score at or above the bar and a business email domain."""
        if score is None or not email or "@" not in email:
            return False
        domain = email.rsplit("@", 1)[1].strip().lower()
        return score >= self.mql_min_score and domain not in self.free_email_domains


REFERENCE = Agreement()
