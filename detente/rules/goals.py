"""What a bookings goal implies: deals, leads and lead value needed per period (pure arithmetic).

deals needed = bookings goal / average selling price; leads needed = deals needed / the
lead-to-deal conversion rate; the lead-value goal equals the bookings goal, because the
expected value of the leads produced must add up to the bookings. A lead's value is, per
``goals.lead_value``, historical bookings per lead of its group (source, offer, ...) over
the window, or a fixed value per group with a default.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from detente.rules.checked import Goals


@dataclass(frozen=True)
class ImpliedGoals:
    bookings: float
    average_selling_price: float
    deals: int
    lead_to_deal_rate: float
    leads: int
    lead_value_goal: float


def implied_goals(goals: Goals, historical_asp: float | None, lead_to_deal_rate: float) -> ImpliedGoals:
    """The deal and lead goals that follow from the bookings goal."""
    asp = goals.average_selling_price if goals.average_selling_price is not None else historical_asp
    if asp is None or asp <= 0:
        raise ValueError("no average selling price: set goals.average_selling_price or win some deals first")
    if not 0 < lead_to_deal_rate <= 1:
        raise ValueError(f"lead-to-deal rate {lead_to_deal_rate} is not between 0 and 1")
    deals = math.ceil(goals.bookings / asp)
    return ImpliedGoals(goals.bookings, asp, deals, lead_to_deal_rate, math.ceil(deals / lead_to_deal_rate),
                        goals.bookings)


def lead_values(goals: Goals, bookings: Mapping[tuple[str, ...], float],
                leads: Mapping[tuple[str, ...], int]) -> dict[tuple[str, ...], float]:
    """Value per lead by group: historical bookings per lead, or the fixed values."""
    if goals.lead_value.method == "fixed":
        fixed = goals.lead_value.values
        return {group: fixed.get(group[0] if group else "default", fixed.get("default", 0.0)) for group in leads}
    return {group: bookings.get(group, 0.0) / count for group, count in leads.items() if count}


def value_of(goals: Goals, values: Mapping[tuple[str, ...], float], group: Sequence[str]) -> float:
    """One lead's value: its group's, else the fixed default, else 0."""
    key = tuple(group)
    if key in values:
        return values[key]
    return goals.lead_value.values.get("default", 0.0)
