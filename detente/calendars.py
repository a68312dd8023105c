"""Business-time arithmetic: working hours, working days and public holidays.

Holidays come from the ``holidays`` package; everything else is an explicit calendar.
Inputs and outputs are aware UTC datetimes; the calendar converts to its own zone inside.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays as holidays_lib

from detente.agreement import CalendarSpec


class BusinessCalendar:
    def __init__(self, spec: CalendarSpec, extra_holidays: frozenset[date] = frozenset()) -> None:
        if not 0 <= spec.start_hour < spec.end_hour <= 24:
            raise ValueError(f"working hours {spec.start_hour}-{spec.end_hour} are not a valid range")
        self.spec = spec
        self.zone = ZoneInfo(spec.timezone)
        self._extra = extra_holidays

    @lru_cache(maxsize=64)  # noqa: B019 - calendars live as long as the process
    def _holidays(self, year: int) -> frozenset[date]:
        country = holidays_lib.country_holidays(self.spec.holiday_country, years=year)
        return frozenset(country.keys())

    def is_workday(self, day: date) -> bool:
        return (
            day.weekday() in self.spec.workdays
            and day not in self._holidays(day.year)
            and day not in self._extra
        )

    def add_hours(self, start: datetime, hours: float) -> datetime:
        """The moment ``hours`` working hours after ``start``."""
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        remaining = timedelta(hours=hours)
        local = start.astimezone(self.zone)
        while True:
            day = local.date()
            open_at = datetime.combine(day, time(self.spec.start_hour), self.zone)
            close_at = (
                datetime.combine(day + timedelta(days=1), time(0), self.zone)
                if self.spec.end_hour == 24
                else datetime.combine(day, time(self.spec.end_hour), self.zone)
            )
            if self.is_workday(day) and local < close_at:
                begin = max(local, open_at)
                available = close_at - begin
                if remaining <= available:
                    return (begin + remaining).astimezone(ZoneInfo("UTC"))
                remaining -= available
            local = datetime.combine(day + timedelta(days=1), time(0), self.zone)

    def hours_between(self, start: datetime, end: datetime) -> float:
        """Working hours elapsed from ``start`` to ``end`` (0 when end is earlier)."""
        if end <= start:
            return 0.0
        total = timedelta()
        local = start.astimezone(self.zone)
        stop = end.astimezone(self.zone)
        while local < stop:
            day = local.date()
            open_at = datetime.combine(day, time(self.spec.start_hour), self.zone)
            close_at = (
                datetime.combine(day + timedelta(days=1), time(0), self.zone)
                if self.spec.end_hour == 24
                else datetime.combine(day, time(self.spec.end_hour), self.zone)
            )
            if self.is_workday(day):
                begin, finish = max(local, open_at), min(stop, close_at)
                if finish > begin:
                    total += finish - begin
            local = datetime.combine(day + timedelta(days=1), time(0), self.zone)
        return total.total_seconds() / 3600
