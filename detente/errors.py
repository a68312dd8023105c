"""The one exception tree of detente, grouped by what the caller does next.

    DetenteError
    ├── FatalError          stop: a person must change something (settings, credentials, rules)
    │   ├── SettingsError   the settings file or environment is wrong
    │   └── AuthError       a CRM refused the credentials
    ├── RetriableError      try again later: the same call may succeed (429, 5xx, timeouts)
    └── SkippableError      this one record cannot be processed; quarantine it and go on

Messages say what failed, which record or key, and what to do next. They never carry
secrets, response bodies or personal data.
"""

from __future__ import annotations

from typing import Any


class DetenteError(Exception):
    """Base of every error detente raises on purpose."""


class FatalError(DetenteError):
    """A person must change something before detente can go on."""


class SettingsError(FatalError):
    """The settings file or the DETENTE_ environment variables are invalid."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid settings:\n" + "\n".join(f"  {p}" for p in problems))


class AuthError(FatalError):
    """A CRM refused detente's credentials."""


class RetriableError(DetenteError):
    """The same call may succeed later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SkippableError(DetenteError):
    """One record cannot be processed; it is quarantined with this reason."""


def shape(value: Any) -> str:
    """What a value looks like, without showing it: safe to put in a message, a reason or a log."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return f"a string of {len(value)} characters" if value else "an empty string"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"
