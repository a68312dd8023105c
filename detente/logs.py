"""Structured logging: events with key-value fields, JSON off a terminal, secrets redacted.

Redaction works at two levels: any field whose name looks like a credential is masked
whatever its value, and every string value is scanned for known secret values (registered
from the settings) and for the shapes credentials take on the wire (bearer tokens, Salesforce
session ids, HubSpot private-app tokens, PEM private keys, ``password=`` in query strings).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

REDACTED = "[redacted]"

_SECRET_KEY = re.compile(
    r"(token|password|passwd|secret|session|authorization|private_?key|api_?key|assertion|cookie)",
    re.IGNORECASE,
)
_SECRET_SHAPES = [
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/!=-]{8,}"),
    re.compile(r"\b00D[A-Za-z0-9]{12,15}![A-Za-z0-9._]{10,}"),  # Salesforce session id
    re.compile(r"\bpat-[a-z]{2,3}\d?-[0-9a-f-]{8,}", re.IGNORECASE),  # HubSpot private-app token
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL),
    re.compile(
        r"(?i)((?:access_token|refresh_token|client_secret|password|assertion|session_id)=)[^&\s\"']+"
    ),
]


class Redactor:
    """A structlog processor that masks credentials wherever they appear in an event."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        # Very short values would mask ordinary words; real credentials are longer.
        self._secrets.update(s for s in secrets if s and len(s) >= 6)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for shape in _SECRET_SHAPES:
            replacement: Any = (lambda m: m.group(1) + REDACTED) if shape.groups else REDACTED
            text = shape.sub(replacement, text)
        return text

    def _clean(self, key: str, value: Any) -> Any:
        if _SECRET_KEY.search(key) and value not in (None, "", 0, False):
            return REDACTED
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {k: self._clean(str(k), v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._clean(key, v) for v in value]
        if isinstance(value, BaseException):
            return self.scrub(f"{type(value).__name__}: {value}")
        return value

    def __call__(
        self, logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key in list(event_dict):
            event_dict[key] = self._clean(key, event_dict[key])
        return event_dict


redactor = Redactor()


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of writing, so that a stream swapped
    in and closed later (a test runner's capture) never leaves logging writing to a closed file."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure_logging(
    level: str = "info",
    *,
    json: bool | None = None,
    stream: TextIO | None = None,
    secrets: Iterable[str] = (),
) -> None:
    """Set up structlog once for the process; JSON unless writing to a terminal."""
    out: Any = stream or _CurrentStderr()
    if json is None:
        json = not out.isatty()
    redactor.add(secrets)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redactor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


def describe(exc: BaseException) -> str:
    """An error for the log and /readyz: detente's own messages whole (they are written to be
    safe), anything else by its first line only (a driver's message may quote SQL and values)."""
    from sqlalchemy.exc import StatementError

    from detente.errors import DetenteError

    if isinstance(exc, DetenteError):
        return f"{type(exc).__name__}: {exc}"
    if isinstance(exc, StatementError) and exc.orig is not None:
        exc = exc.orig
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return redactor.scrub(f"{type(exc).__name__}: {first}")
