"""Reading values out of raw CRM records: typed, or a ``BadRecord`` that names the field and
what was wrong with it (never the value itself: values are personal data).

Salesforce raw data holds JSON types (numbers, booleans, ``2024-05-20T20:49:32.000+0000``
datetimes, ``YYYY-MM-DD`` dates); HubSpot holds every property as a string (ISO-8601 or
epoch-millisecond instants). Readers accept both spellings so one reader serves both CRMs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from detente.errors import shape as shape  # re-exported: the normalizer names bad values with it

_EPOCH_MS = re.compile(r"^-?\d{10,15}$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SF_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
_HS_ID = re.compile(r"^[0-9]{1,30}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class BadRecord(ValueError):
    """A record whose fields cannot be interpreted; it is quarantined with this reason."""


def _bad(name: str, expected: str, value: Any) -> BadRecord:
    return BadRecord(f"{name}: expected {expected}, got {shape(value)}")


def parse_instant(text: str) -> datetime | None:
    """An aware UTC datetime from ISO-8601 (``Z``, ``+0000`` or ``+00:00``) or epoch ms; None if neither."""
    value = text.strip()
    if _EPOCH_MS.match(value):
        try:
            # Integer arithmetic: int / 1000 as a float lands a microsecond off (...001 ms -> 999 us).
            return _EPOCH + timedelta(milliseconds=int(value))
        except (OverflowError, OSError, ValueError):
            return None
    try:
        parsed = datetime.fromisoformat(value)  # Python 3.11 reads Z and +0000 too
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # year 1 east of UTC, or year 9999 west of it
        return None


def text(data: Mapping[str, Any], name: str) -> str | None:
    """A text value (trimmed; empty is None). Numbers are accepted and written as text."""
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool | dict | list):
        raise _bad(name, "text", value)
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise _bad(name, "text", value)
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    if not isinstance(value, str):
        raise _bad(name, "text", value)
    value = value.strip()
    return value or None


def number(data: Mapping[str, Any], name: str) -> float | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise _bad(name, "a number", value)
    if isinstance(value, int | float):
        try:
            result = float(value)
        except OverflowError:  # an integer beyond any float
            raise _bad(name, "a finite number", value) from None
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            raise _bad(name, "a number", value) from None
    else:
        raise _bad(name, "a number", value)
    if not math.isfinite(result):
        raise _bad(name, "a finite number", value)
    return result


def boolean(data: Mapping[str, Any], name: str) -> bool | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        return value.strip().lower() == "true"
    raise _bad(name, "true or false", value)


def instant(data: Mapping[str, Any], name: str) -> datetime | None:
    """A datetime (or a bare date, read as midnight UTC)."""
    value = data.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        stripped = value.strip()
        if _DAY.match(stripped):
            day = _day(stripped)
            if day is not None:
                return datetime.combine(day, time(), tzinfo=UTC)
        parsed = parse_instant(stripped)
        if parsed is not None:
            return parsed
    raise _bad(name, "a timestamp", value)


def day(data: Mapping[str, Any], name: str) -> date | None:
    """A calendar date (``YYYY-MM-DD``; a timestamp is read as its UTC date)."""
    value = data.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        stripped = value.strip()
        if _DAY.match(stripped):
            parsed_day = _day(stripped)
            if parsed_day is not None:
                return parsed_day
        parsed = parse_instant(stripped)
        if parsed is not None:
            return parsed.date()
    raise _bad(name, "a date", value)


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def salesforce_id(data: Mapping[str, Any], name: str) -> str | None:
    """A Salesforce record id (15 or 18 characters)."""
    value = text(data, name)
    if value is not None and not _SF_ID.match(value):
        raise BadRecord(f"{name}: expected a Salesforce id, got {shape(value)}")
    return value


def is_salesforce_id(value: str | None) -> bool:
    return value is not None and bool(_SF_ID.match(value))


def hubspot_id(value: Any, name: str) -> str | None:
    """A HubSpot record id (digits), from a property or an association."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    # ASCII digits only: str.isdigit() also takes '²', which int() refuses.
    if isinstance(value, str) and _HS_ID.match(value.strip()):
        return str(int(value.strip()))
    raise BadRecord(f"{name}: expected a HubSpot id, got {shape(value)}")


def normal_email(value: str | None) -> str | None:
    """An email as detente compares it: trimmed, lower case; None unless it has one @ with
    something on both sides."""
    if value is None:
        return None
    email = value.strip().lower()
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain or " " in email:
        return None
    return email


def email_domain(email: str | None) -> str | None:
    return email.rpartition("@")[2] if email else None


def id_order(value: str) -> tuple[int, int, str]:
    """Sort key that puts HubSpot's numeric ids in numeric order and others as text."""
    return (0, int(value), "") if value.isdigit() else (1, 0, value)
