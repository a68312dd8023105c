"""Report periods: a week, month, quarter or year (UTC, start included, end excluded).

``period_of("2026-Q3")`` or a kind for the period that holds ``now`` (``month``); ``shift``
walks back (the previous period, the baseline before it).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from detente.reconcile.counts import PERIOD_FORMS, Period, parse_period

KINDS = ("week", "month", "quarter", "year")
# How long each kind is, in days, to scale a goal set per month to another period.
DAYS = {"week": 7.0, "month": 365.25 / 12, "quarter": 365.25 / 4, "year": 365.25}


def kind_of(period: Period) -> str:
    label = period.label
    if "-W" in label:
        return "week"
    if "-Q" in label:
        return "quarter"
    return "month" if "-" in label else "year"


def containing(kind: str, moment: datetime) -> Period:
    """The period of ``kind`` that holds ``moment``."""
    day = moment.date()
    if kind == "week":
        year, week, _ = day.isocalendar()
        return parse_period(f"{year}-W{week:02d}")
    if kind == "month":
        return parse_period(f"{day.year}-{day.month:02d}")
    if kind == "quarter":
        return parse_period(f"{day.year}-Q{(day.month - 1) // 3 + 1}")
    if kind == "year":
        return parse_period(f"{day.year}")
    raise ValueError(f"{kind!r} is not a period kind; expected one of {', '.join(KINDS)}")


def period_of(text: str, now: datetime) -> Period:
    """A period named in full (``2026-Q3``), or the ``week``/``month``/``quarter``/``year`` holding now.

    Raises ValueError naming every accepted form.
    """
    value = text.strip().lower()
    if value in KINDS:
        return containing(value, now)
    try:
        return parse_period(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a period; expected {PERIOD_FORMS}, or week, month, quarter or "
                         "year for the one that holds now") from None


def shift(period: Period, back: int) -> Period:
    """The period ``back`` periods of the same kind before ``period``."""
    kind = kind_of(period)
    out = period
    for _ in range(back):
        out = containing(kind, out.start - timedelta(seconds=1))
    return out


def goal_scale(goal_kind: str, period: Period) -> float:
    """How many goal periods ``period`` is (a quarter is 3 months; a week 7/30.44 of one)."""
    kind = kind_of(period)
    if kind == goal_kind:
        return 1.0
    return DAYS[kind] / DAYS[goal_kind]
