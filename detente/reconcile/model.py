"""A finding as the checks produce it: plain, frozen, keyed deterministically."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

# Finding kinds (the rule names which check or stage within a kind).
DRIFT = "definition_drift"
MISSED_LABEL = "missed_label"
DISAGREEMENT = "disagreement"
SLA = "sla"
FEEDBACK = "feedback_gap"
IDENTITY = "identity"
KINDS = (DRIFT, MISSED_LABEL, DISAGREEMENT, SLA, FEEDBACK, IDENTITY)


@dataclass(frozen=True)
class Finding:
    """One fact someone must act on.

    ``subject`` names what it is about (``person:12``, ``opportunity:3``, ``lead:00Q...``) and,
    with kind and rule, makes the key. ``records`` lists the CRM records concerned by
    ``system/object`` (``salesforce/Lead``, ``hubspot/contacts``). ``opened_at`` is when the
    fact became true as far as the store shows.
    """

    kind: str
    rule: str
    subject: str
    explanation: str
    opened_at: datetime
    records: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    person_id: int | None = None
    opportunity_id: int | None = None
    email: str | None = None
    salesforce_id: str | None = None
    hubspot_id: str | None = None
    team: str | None = None
    owner_email: str | None = None
    due_at: datetime | None = None
    # SLA clocks: running, met or breached, and when the clock started and stopped.
    state: str | None = None
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    # A finding may be true of the past only (an SLA stopped late): resolved when found.
    status: str = "open"
    resolved_at: datetime | None = None
    resolution: str | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}|{self.rule}|{self.subject}"
