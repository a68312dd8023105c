"""Durations as admins write them: ``30m``, ``24h``, ``3 days``, ``2 weeks``, ``24 business hours``.

Grammar (case-insensitive, one whole number and one unit)::

    duration := NUMBER [" "] UNIT | NUMBER " business " ("hour" | "hours" | "day" | "days")
    UNIT     := m | min | mins | minute | minutes | h | hr | hrs | hour | hours
              | d | day | days | w | week | weeks

Calendar durations are exact lengths of time. Business durations count working time on a
calendar: ``N business hours`` are N working hours, ``N business days`` are N times the
calendar's working hours per day. Months, years, fractions and ISO-8601 (``PT24H``) are
rejected with the forms above, because a month has no fixed length and ``1.5h`` reads
differently to different people (write ``90m``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

EXPECTED = (
    "expected a whole number and a unit: 30m, 24h, 3 days, 2 weeks, "
    "or business time on a calendar: 24 business hours, 3 business days"
)
MAX_MINUTES = 3660 * 24 * 60  # about ten years

_UNITS: dict[str, str] = {
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), "minutes"),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), "hours"),
    **dict.fromkeys(("d", "day", "days"), "days"),
    **dict.fromkeys(("w", "week", "weeks"), "weeks"),
}
_MINUTES = {"minutes": 1, "hours": 60, "days": 24 * 60, "weeks": 7 * 24 * 60}
_CALENDAR = re.compile(r"^\s*(\d+)\s*([a-z]+)\s*$")
_BUSINESS = re.compile(r"^\s*(\d+)\s+business\s+([a-z]+)\s*$")


@dataclass(frozen=True)
class Duration:
    """A parsed duration: calendar time, or business time counted on a calendar."""

    amount: int
    unit: str  # minutes | hours | days | weeks
    business: bool = False

    def __str__(self) -> str:
        unit = self.unit[:-1] if self.amount == 1 else self.unit
        return f"{self.amount} business {unit}" if self.business else f"{self.amount} {unit}"

    @property
    def calendar(self) -> timedelta:
        """The exact length of a calendar duration."""
        if self.business:
            raise ValueError(f"{self} is business time; it needs a calendar")
        return timedelta(minutes=self.amount * _MINUTES[self.unit])

    def business_hours(self, hours_per_day: float) -> float:
        """Working hours of a business duration, given the calendar's working day length."""
        if not self.business:
            raise ValueError(f"{self} is calendar time")
        return float(self.amount * hours_per_day) if self.unit == "days" else float(self.amount)


def parse_duration(text: object) -> Duration | str:
    """A Duration, or a message saying what is wrong with ``text`` (EXPECTED says the forms)."""
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        return f"{text!r} is not a duration"
    if isinstance(text, int):
        return f"{text} has no unit"
    raw = text.strip().lower()
    if raw.startswith(("p", "-p")) and re.fullmatch(r"-?p[0-9tdhmsw.]*", raw):
        return f"'{text}' is ISO-8601, which rules files do not use"
    if raw.startswith("-"):
        return f"'{text}' is negative"
    if re.search(r"\d[.,]\d", raw):
        return f"'{text}' has a fraction (write 90m rather than 1.5h)"
    business = _BUSINESS.match(raw)
    if business:
        amount, unit = int(business.group(1)), business.group(2)
        canonical = _UNITS.get(unit)
        if canonical not in ("hours", "days") or unit in ("h", "hr", "hrs", "d"):
            return f"'{text}': business time is counted in hours or days, not '{unit}'"
        return _bounded(Duration(amount, canonical, business=True), text)
    if "business" in raw:
        return f"'{text}' is not a business duration such as '24 business hours'"
    match = _CALENDAR.match(raw)
    if not match:
        return f"'{text}' is not a duration"
    amount, unit = int(match.group(1)), match.group(2)
    if unit in ("mo", "mon", "month", "months", "y", "yr", "year", "years"):
        return f"'{text}': months and years have no fixed length"
    if unit in ("s", "sec", "secs", "second", "seconds"):
        return f"'{text}': seconds are finer than any CRM timestamp detente compares"
    if unit not in _UNITS:
        return f"'{text}': unknown unit '{unit}'"
    return _bounded(Duration(amount, _UNITS[unit]), text)


def _bounded(duration: Duration, text: str) -> Duration | str:
    if duration.amount * _MINUTES[duration.unit] > MAX_MINUTES:
        return f"'{text}' is longer than ten years"
    return duration


def describe(delta: timedelta) -> str:
    """A timedelta in words, for explanations: ``3 days 4 hours``, ``-2 hours 5 minutes``."""
    sign = "-" if delta < timedelta(0) else ""
    rest = abs(delta)
    days, seconds = rest.days, rest.seconds
    hours, minutes, secs = seconds // 3600, seconds % 3600 // 60, seconds % 60
    parts = [f"{n} {unit}{'' if n == 1 else 's'}" for n, unit in
             ((days, "day"), (hours, "hour"), (minutes, "minute"), (secs, "second")) if n]
    if rest.microseconds and not parts:
        parts.append(f"{rest.microseconds} microseconds")
    return sign + (" ".join(parts) if parts else "0 minutes")
