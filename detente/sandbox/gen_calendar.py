"""Business-time arithmetic for the world generator, fast enough for millions of calls.

``BusinessCalendar`` walks day by day; the generator schedules hundreds of thousands of rep
activities, so it precomputes every working day of its window once and answers
``add_hours`` and ``hours_between`` with a binary search. The results equal
``BusinessCalendar``'s inside the window (a test checks it); outside it, it falls back.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from datetime import UTC, datetime, time, timedelta

from detente.calendars import BusinessCalendar


class FastCalendar:
    """``BusinessCalendar.add_hours`` and ``hours_between`` over a precomputed window."""

    def __init__(self, calendar: BusinessCalendar, start: datetime, end: datetime) -> None:
        self.calendar = calendar
        spec = calendar.spec
        zone = calendar.zone
        self._opens: list[float] = []  # epoch seconds of each working day's opening
        self._closes: list[float] = []
        self._before: list[float] = []  # working seconds in the window before each day opens
        day = start.astimezone(zone).date() - timedelta(days=1)
        last = end.astimezone(zone).date() + timedelta(days=1)
        total = 0.0
        while day <= last:
            if calendar.is_workday(day):
                open_at = datetime.combine(day, time(spec.start_hour), zone).timestamp()
                close_at = (
                    datetime.combine(day + timedelta(days=1), time(0), zone).timestamp()
                    if spec.end_hour == 24
                    else datetime.combine(day, time(spec.end_hour), zone).timestamp()
                )
                self._opens.append(open_at)
                self._closes.append(close_at)
                self._before.append(total)
                total += close_at - open_at
            day += timedelta(days=1)
        self._ends = [b + (c - o) for b, o, c in zip(self._before, self._opens, self._closes, strict=True)]

    def _offset(self, moment: float) -> float | None:
        """Working seconds of the window elapsed at ``moment`` (None outside the window)."""
        i = bisect_right(self._closes, moment)
        if i == 0 or i >= len(self._closes):
            return None
        return self._before[i] + max(0.0, moment - self._opens[i])

    def add_hours(self, start: datetime, hours: float) -> datetime:
        """The moment ``hours`` working hours after ``start`` (``hours`` > 0)."""
        offset = self._offset(start.timestamp())
        if offset is None or hours <= 0:
            return self.calendar.add_hours(start, hours)
        target = offset + hours * 3600
        i = bisect_left(self._ends, target)
        if i >= len(self._ends):
            return self.calendar.add_hours(start, hours)
        return datetime.fromtimestamp(self._opens[i] + (target - self._before[i]), UTC)

    def hours_between(self, start: datetime, end: datetime) -> float:
        """Working hours from ``start`` to ``end`` (0 when ``end`` is earlier)."""
        if end <= start:
            return 0.0
        a, b = self._offset(start.timestamp()), self._offset(end.timestamp())
        if a is None or b is None:
            return self.calendar.hours_between(start, end)
        return (b - a) / 3600

    def next_open(self, moment: datetime) -> datetime:
        """``moment`` itself when inside working hours, else the next opening."""
        i = bisect_right(self._closes, moment.timestamp())
        if i >= len(self._opens):
            return self.calendar.add_hours(moment, 0)
        return datetime.fromtimestamp(max(moment.timestamp(), self._opens[i]), UTC)
