"""Sending the digests: one report of the period, one email per audience that has recipients.

The SMTP transport is passed in (``send``), so the daemon, the CLI and the tests share this path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from sqlalchemy import Engine

from detente.errors import DetenteError, FatalError, RetriableError
from detente.logs import get_logger
from detente.metrics.compute import report
from detente.notify.digest import AUDIENCES, Audience, Digest, last_complete, message, render_digest
from detente.reconcile.counts import Period
from detente.rules import checked as c
from detente.settings import DigestSettings

log = get_logger("detente.notify")

Send = Callable[[EmailMessage], list[str]]  # returns the recipients the server refused


@dataclass(frozen=True)
class Sent:
    audience: Audience
    period: str
    subject: str
    recipients: tuple[str, ...]
    refused: tuple[str, ...]


def recipients(settings: DigestSettings, audience: Audience) -> list[str]:
    found: list[str] = getattr(settings.audiences, audience)
    return found


def build_digests(engine: Engine, rules: c.Rules, settings: DigestSettings, period: Period, now: datetime,
                  audiences: Sequence[Audience] = AUDIENCES) -> list[Digest]:
    """The digests of ``audiences`` for ``period``, from one report."""
    numbers = report(engine, rules, period, now, reconciliation=False)
    return [render_digest(numbers, rules, a, dashboard_url=settings.dashboard_url,
                          max_per_owner=settings.max_breaches_per_owner) for a in audiences]


def send_digests(engine: Engine, rules: c.Rules, settings: DigestSettings, now: datetime, send: Send, *,
                 period: Period | None = None, audiences: Sequence[Audience] | None = None) -> list[Sent]:
    """Email each audience (of ``audiences``, default all) that has recipients its digest of
    ``period`` (default: the last complete period of ``digest.period``).

    An audience whose email fails does not stop the others; the failures are raised together
    afterwards (fatal if any is).
    """
    chosen = period or last_complete(settings.period, now)
    wanted = [a for a in (audiences or AUDIENCES) if recipients(settings, a)]
    if not wanted:
        names = ", ".join(audiences or AUDIENCES)
        raise FatalError(f"no recipients: digest.audiences lists no address for {names}; add some")
    sender = settings.smtp.from_address
    if not sender:
        raise FatalError("digest.smtp.from_address is not set; set the address the digest is sent from")
    sent: list[Sent] = []
    failed: list[tuple[Audience, DetenteError]] = []
    for digest in build_digests(engine, rules, settings, chosen, now, wanted):
        to = recipients(settings, digest.audience)
        try:
            refused = send(message(digest, sender, to, now))
        except DetenteError as exc:
            failed.append((digest.audience, exc))
            log.error("digest.failed", audience=digest.audience, period=digest.period, error=str(exc))
            continue
        log.info("digest.sent", audience=digest.audience, period=digest.period, recipients=len(to),
                 refused=len(refused), breaches=digest.breaches)
        sent.append(Sent(digest.audience, digest.period, digest.subject, tuple(to), tuple(refused)))
    if failed:
        kind = FatalError if any(not isinstance(e, RetriableError) for _, e in failed) else RetriableError
        raise kind(f"{len(sent)} of {len(sent) + len(failed)} digests sent; "
                   + "; ".join(f"{audience}: {exc}" for audience, exc in failed))
    return sent
