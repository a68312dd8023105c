"""The few decisions that make SQLite, PostgreSQL and Python agree on every condition.

- **Three-valued logic.** A comparison with an empty (NULL) value is *unknown*; AND, OR and
  NOT follow SQL (Kleene) logic; a condition *holds* only when it is true, so unknown counts
  as not holding, exactly as in a SQL WHERE clause. ``IS NULL`` and ``IS TRUE`` are never
  unknown. ``= NULL`` and NULL inside IN lists are rejected because they never match.
- **Text compares case-insensitively for A-Z only** (as SOQL does): both sides are folded
  with ASCII lower-casing (SQLite ``lower``, PostgreSQL ``translate``, Python here) and then
  compared by code point (PostgreSQL uses ``COLLATE "C"`` for ordering). Other letters,
  such as É and é, compare exactly.
- **LIKE** folds both sides the same way; ``%`` is any run of characters, ``_`` exactly one,
  and ``\\`` escapes the next character on every backend.
- **Arithmetic is double precision**: + - * / and unary minus convert to floating point;
  division by zero is empty (NULL), never an error.
- **Times** are compared at microsecond precision in UTC; ``now()`` is a parameter bound at
  evaluation, never read inside. Time arithmetic is exact, in microseconds since 1970.
"""

from __future__ import annotations

import re

_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = "abcdefghijklmnopqrstuvwxyz"
_TO_LOWER = str.maketrans(_UPPER, _LOWER)
_TO_UPPER = str.maketrans(_LOWER, _UPPER)
ASCII_UPPER = _UPPER
ASCII_LOWER = _LOWER


def fold(text: str) -> str:
    """ASCII lower-casing, the same on every backend."""
    return text.translate(_TO_LOWER)


def upper(text: str) -> str:
    return text.translate(_TO_UPPER)


def like_regex(pattern: str) -> re.Pattern[str]:
    """A compiled regular expression that matches exactly what ``LIKE pattern ESCAPE '\\'`` does."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)
