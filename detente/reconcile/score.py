"""Which planted problem of the sandbox's manifest a finding answers (for the demo and the
score against ground truth)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

# Manifest kind -> (finding kind, rule); a rule of None matches any rule of the kind.
PLAIN: dict[str, tuple[str, str | None]] = {
    "definition_drift": ("definition_drift", "mql"),
    "missed_label": ("missed_label", "mql"),
    "stage_disagreement": ("disagreement", None),
    "won_not_in_hubspot": ("disagreement", "won_not_in_hubspot"),
    "duplicate_lead_email": ("identity", "duplicate_lead_email"),
    "hubspot_contacts_share_lead": ("identity", "hubspot_contacts_share_lead"),
    "hubspot_lead_deleted": ("identity", "hubspot_lead_deleted"),
    "hubspot_lead_converted": ("identity", "hubspot_lead_converted"),
    "closed_lost_without_reason": ("feedback_gap", "closed_lost_without_reason"),
    "converted_without_opportunity": ("feedback_gap", "converted_without_opportunity"),
    "idle_with_sales": ("feedback_gap", "idle_with_sales"),
}
# SLA clocks: (rule, how it was breached) -> manifest kind; running and met clocks are not problems.
CLOCKS: dict[tuple[str, str], str] = {
    ("mql-handoff", "missing"): "mql_not_handed_over",
    ("mql-handoff", "late"): "mql_handed_over_late",
    ("first-contact", "missing"): "first_contact_missing",
    ("first-contact", "late"): "first_contact_late",
    ("outcome", "requirement"): "disqualified_too_early",
}
KINDS: tuple[str, ...] = (*PLAIN, *CLOCKS.values())


class FindingLike(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def rule(self) -> str: ...
    @property
    def state(self) -> str | None: ...
    @property
    def stopped_at(self) -> datetime | None: ...
    @property
    def due_at(self) -> datetime | None: ...


def manifest_kind(f: FindingLike) -> str | None:
    """The planted kind ``f`` stands for; None for a clock still running or met; otherwise
    ``unplanned <kind> <rule>`` (a finding the manifest does not explain)."""
    if f.kind == "sla":
        if f.state in ("running", "met"):
            return None
        late = f.stopped_at is not None and f.due_at is not None and f.stopped_at > f.due_at
        how = "missing" if f.stopped_at is None else "late" if late else "requirement"
        return CLOCKS.get((f.rule, how), f"unplanned sla {f.rule} {how}")
    if (f.kind, f.rule) == ("disagreement", "won_not_in_hubspot"):
        return "won_not_in_hubspot"
    kinds = [k for k, (kind, rule) in PLAIN.items() if kind == f.kind and rule in (None, f.rule)]
    return kinds[0] if len(kinds) == 1 else f"unplanned {f.kind} {f.rule}"
