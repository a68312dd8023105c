"""Hypothesis strategies for what a CRM API (or a hand-edited file) may hand detente: every
JSON type, numbers past any float, non-finite floats, unicode and control characters, very
long strings, and the datetime spellings both CRMs use, right and wrong."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st

FAST = settings(max_examples=100, deadline=None)  # the hostile tests' budget: ~100 cases each

# Characters that break naive parsers: NUL and other C0 controls, DEL, a lone surrogate (JSON's
# "\ud800" escape decodes to one), zero-width and byte-order marks, line separators, digits
# that are not ASCII (int() reads some, \d matches more, str.isdigit() more still).
NASTY_CHARS = ["\x00", "\x01", "\x07", "\x1b", "\x7f", "\ud800", "\u200b", "\ufeff", "\u2028", "\n", "\r",
               "\t", " ", "\u00b2", "\u0661", "\u0663", "\uff19", "Ⅻ", "é", "😀", "\U0010ffff"]
chars = st.characters() | st.sampled_from(NASTY_CHARS)
short_text = st.text(chars, max_size=40)
long_text = st.builds(lambda unit, n: unit * n, st.sampled_from(["x", "é", "\x00", "9", "😀", " "]),
                      st.integers(1_000, 140_000))
digit_strings = st.builds(lambda unit, n: unit * n, st.sampled_from(["1", "9", "0"]), st.integers(16, 5_000))
# JSON numbers: json.loads reads integers up to 4300 digits (and NaN, Infinity).
huge_ints = st.sampled_from([10**400, -(10**400), 2**63, -(2**63) - 1, 10**30, 10**4299])
numbers = st.integers() | huge_ints | st.floats(allow_nan=True, allow_infinity=True)

# Datetimes as the APIs give them, generated from an instant so the expected value is known.
instants = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                        timezones=st.just(UTC)).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
epoch_instants = st.datetimes(min_value=datetime(2001, 9, 10), max_value=datetime(5000, 1, 1),
                              timezones=st.just(UTC)).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))


def sf_millis(moment: datetime) -> str:
    """Salesforce REST: ``2026-11-16T15:00:00.000+0000``."""
    return f"{moment.year:04d}" + moment.strftime("-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def iso_z(moment: datetime) -> str:
    """``2026-11-16T15:00:00Z`` (whole seconds)."""
    return f"{moment.year:04d}" + moment.strftime("-%m-%dT%H:%M:%SZ")


def iso_z_millis(moment: datetime) -> str:
    """HubSpot: ``2026-11-16T15:00:00.356Z``."""
    return f"{moment.year:04d}" + moment.strftime("-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def epoch_ms(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def day_only(moment: datetime) -> str:
    return f"{moment.year:04d}" + moment.strftime("-%m-%d")


# Spellings that look like dates and are not, or that fall off the calendar in UTC.
BAD_DATES = [
    "2026-02-30", "2026-13-01", "2026-11-16T25:00:00Z", "2026-11-16T15:00:00", "2026-11-16T15:00:00.000+2500",
    "0001-01-01T00:00:00+0100", "0001-01-01T00:00:00.000+01:00", "9999-12-31T23:59:59-0100",
    "9999-12-31T23:59:59.999-01:00", "16/11/2026", "Nov 16, 2026", "last Tuesday", "T", "-", "--",
    "99999999999999999999", "-1", "1e12", "NaN",
    "\uff12\uff10\uff12\uff16-\uff11\uff11-\uff11\uff16",  # fullwidth digits
    "\u0662\u0660\u0662\u0666-\u0661\u0661-\u0661\u0666T15:00:00Z",  # Arabic-Indic digits
    "2026-11-16T15:00:00Z\x00", " 2026-11-16T15:00:00Z ", "2026-11-16\n",
]
any_date_text = st.one_of(
    instants.map(sf_millis), instants.map(iso_z), instants.map(iso_z_millis), instants.map(day_only),
    epoch_instants.map(lambda m: str(epoch_ms(m))), st.sampled_from(BAD_DATES),
)

scalars = st.one_of(st.none(), st.booleans(), numbers, short_text, long_text, digit_strings, any_date_text,
                    epoch_instants.map(epoch_ms))
json_values: st.SearchStrategy[Any] = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(short_text, inner, max_size=3),
    max_leaves=6)


def without_value(reason: str, values: Any) -> bool:
    """True when no long string among ``values`` appears in ``reason`` (reasons give shapes,
    never values: values are personal data)."""
    if isinstance(values, str):
        return len(values) < 12 or values not in reason
    if isinstance(values, dict):
        return all(without_value(reason, v) for v in values.values())
    if isinstance(values, list):
        return all(without_value(reason, v) for v in values)
    return True
