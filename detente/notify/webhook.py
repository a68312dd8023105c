"""SLA breaches posted to a Slack-compatible incoming webhook, each breach once.

After an audit, the open SLA findings in state ``breached`` that have no row in
``breach_notices`` are pending. They are posted oldest due first, batched: up to
``webhook.breaches_per_message`` breaches per message (a header, one section per breach, a
footer: ``{"text": ..., "blocks": [...]}``), at most ``webhook.max_messages_per_run`` messages
per run; the rest wait for the next run. Each message's breaches are recorded right after the
webhook accepted it, so a failed post loses nothing (it is retried next run) and a posted
breach is not posted again, across restarts too. A crash between the webhook's answer and the
record would post that one message again: at least once, never lost.

A breach is a finding key and the moment it opened: one that resolves and opens again is new.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from sqlalchemy import Engine, exists, select

from detente.connectors.retry import BackoffRetry
from detente.errors import DetenteError, FatalError, RetriableError
from detente.logs import get_logger, redactor
from detente.settings import WebhookSettings
from detente.store.bulk import upsert
from detente.store.findings import FindingRow
from detente.store.notices import BreachNotice

log = get_logger("detente.notify")

FINDINGS = FindingRow.__table__  # type: ignore[attr-defined]
NOTICES = BreachNotice.__table__  # type: ignore[attr-defined]
RETRY_STATUSES = (429, 500, 502, 503, 504)
SECTION_CHARS = 2900  # Slack refuses a section's text over 3,000 characters

Post = Callable[[dict[str, Any]], None]  # raises RetriableError or FatalError


@dataclass(frozen=True)
class Breach:
    """One open SLA breach, as posted."""

    key: str
    opened_at: datetime
    rule: str
    team: str | None
    owner_email: str | None
    email: str | None
    salesforce_id: str | None
    hubspot_id: str | None
    due_at: datetime | None
    explanation: str


@dataclass(frozen=True)
class NotifyResult:
    pending: int  # breaches not yet posted when the run began
    posted: int
    messages: int

    @property
    def left(self) -> int:
        return self.pending - self.posted

    def counts(self) -> dict[str, int]:
        return {"pending": self.pending, "posted": self.posted, "messages": self.messages, "left": self.left}


def pending_breaches(engine: Engine) -> list[Breach]:
    """Open SLA findings in state breached with no notice yet, oldest due first."""
    f, n = FINDINGS, NOTICES
    stmt = (select(f.c.key, f.c.opened_at, f.c.rule, f.c.team, f.c.owner_email, f.c.email, f.c.salesforce_id,
                   f.c.hubspot_id, f.c.due_at, f.c.explanation)
            .where(f.c.kind == "sla", f.c.status == "open", f.c.state == "breached",
                   ~exists().where(n.c.finding_key == f.c.key, n.c.opened_at == f.c.opened_at))
            .order_by(f.c.due_at, f.c.key))
    with engine.connect() as conn:
        return [Breach(**row._mapping) for row in conn.execute(stmt)]


def record_posted(engine: Engine, breaches: Sequence[Breach], now: datetime) -> None:
    rows = [{"finding_key": b.key, "opened_at": b.opened_at, "notified_at": now} for b in breaches]
    with engine.begin() as conn:
        upsert(conn, NOTICES, rows, keys=("finding_key", "opened_at"), update=())


def notify_breaches(engine: Engine, post: Post, now: datetime, *, per_message: int = 10, max_messages: int = 20,
                    dashboard_url: str | None = None) -> NotifyResult:
    """Post the pending breaches, batched, recording each message's breaches once accepted.

    A failing post stops the run; what was posted before it stays recorded, the rest stays
    pending. Raises the post's RetriableError or FatalError, saying how many were posted.
    """
    pending = pending_breaches(engine)
    batches = [pending[i:i + per_message] for i in range(0, len(pending), per_message)][:max_messages]
    posted = messages = 0
    for batch in batches:
        try:
            post(breach_message(batch, dashboard_url=dashboard_url))
        except DetenteError as exc:
            left = len(pending) - posted
            log.error("notify.failed", posted=posted, left=left, error=str(exc))
            kind = RetriableError if isinstance(exc, RetriableError) else FatalError
            raise kind(f"{exc}; {posted} breach(es) posted this run, {left} stay pending for the next run") from exc
        record_posted(engine, batch, now)
        posted += len(batch)
        messages += 1
    result = NotifyResult(len(pending), posted, messages)
    if pending:
        log.info("notify.posted", **result.counts())
    return result


# -- the message ------------------------------------------------------------------------------------


def breach_message(breaches: Sequence[Breach], *, dashboard_url: str | None = None) -> dict[str, Any]:
    """One Slack-compatible message about ``breaches``: ``text`` for notifications and clients
    without blocks, ``blocks`` for the layout."""
    n = len(breaches)
    title = f"SLA breached: {breaches[0].rule}" if n == 1 else f"{n} SLA breaches"
    lines = [title, *(f"• {_summary(b)}" for b in breaches)]
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": title[:150]}}]
    for b in breaches:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _section(b)[:SECTION_CHARS]}})
    footer = "detente: each breach is posted once; it stays open until the SLA is met or the rules change"
    if dashboard_url:
        footer += f" · <{_escape(dashboard_url)}|Open the dashboard>"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]})
    return {"text": "\n".join(lines), "blocks": blocks}


def _who(b: Breach) -> str:
    return b.email or (f"Salesforce {b.salesforce_id}" if b.salesforce_id else None) or \
        (f"HubSpot {b.hubspot_id}" if b.hubspot_id else "an unidentified person")


def _due(b: Breach) -> str:
    return b.due_at.strftime("%Y-%m-%d %H:%M UTC") if b.due_at is not None else "-"


def _summary(b: Breach) -> str:
    return (f"{b.rule} (owed by {b.team or '-'}): {_who(b)}, owner {b.owner_email or 'none'}, "
            f"due {_due(b)}")


def _section(b: Breach) -> str:
    ids = ", ".join(x for x in (f"Salesforce {b.salesforce_id}" if b.salesforce_id else "",
                                f"HubSpot {b.hubspot_id}" if b.hubspot_id else "") if x)
    return (f"*{_escape(b.rule)}* breached, owed by {_escape(b.team or '-')} · owner "
            f"{_escape(b.owner_email or 'none')}\n"
            f"*{_escape(_who(b))}*{f' ({_escape(ids)})' if ids and b.email else ''} · due {_due(b)}\n"
            f"{_escape(b.explanation)}")


def _escape(text: str) -> str:
    """Slack's mrkdwn control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- the transport -----------------------------------------------------------------------------------


class _Scrub(logging.Filter):
    """urllib3 names the request path in its retry warnings; a webhook's path is its secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redactor.scrub(record.getMessage()), ()
        return True


def _quiet_urllib3() -> None:
    library = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, _Scrub) for f in library.filters):
        library.addFilter(_Scrub())


class WebhookPoster:
    """Posts JSON to the webhook with a timeout, retrying 429 (honouring Retry-After, capped),
    5xx and dropped connections with backoff (urllib3's Retry). Errors name the host only."""

    def __init__(self, settings: WebhookSettings) -> None:
        if settings.url is None or not settings.url.get_secret_value():
            raise FatalError("webhook.url is not set; set DETENTE_WEBHOOK__URL to the incoming-webhook URL")
        self._url = settings.url.get_secret_value()
        parts = urlsplit(self._url)
        self.host = parts.hostname or "?"
        redactor.add([self._url, parts.path])
        _quiet_urllib3()
        self.settings = settings
        retry = BackoffRetry(
            total=settings.retries, other=0, redirect=0,
            allowed_methods=None,  # POST too: a duplicate message is better than a lost one
            status_forcelist=RETRY_STATUSES, backoff_factor=settings.backoff_factor,
            backoff_max=settings.backoff_max_seconds, retry_after_max=settings.retry_after_max_seconds,
            respect_retry_after_header=True, raise_on_status=False,
        )
        self._session = requests.Session()
        adapter = HTTPAdapter(max_retries=retry)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)

    def __call__(self, payload: Mapping[str, Any]) -> None:
        timeout = self.settings.timeout_seconds
        tries = f"{self.settings.retries + 1} tries"
        try:
            response = self._session.post(self._url, json=payload, timeout=(min(5.0, timeout), timeout))
        # requests' messages quote the URL's path, the secret: name the failure, not the message.
        except requests.Timeout:
            raise RetriableError(f"the webhook at {self.host} did not answer within {timeout:g} s ({tries}); "
                                 "check the network, or raise webhook.timeout_seconds") from None
        except requests.ConnectionError:
            raise RetriableError(f"cannot reach the webhook at {self.host} ({tries}); check webhook.url's host "
                                 "and the network (a proxy through HTTPS_PROXY?)") from None
        except requests.RequestException as exc:
            raise RetriableError(f"posting to the webhook at {self.host} failed ({type(exc).__name__})") from None
        status = response.status_code
        response.close()
        if 200 <= status < 300:
            return
        if status in RETRY_STATUSES:
            raise RetriableError(f"the webhook at {self.host} answered {status} ({tries}); it is tried again "
                                 "at the next run")
        raise FatalError(f"the webhook at {self.host} refused the message ({status} {response.reason}); check "
                         "webhook.url (a revoked or mistyped Slack webhook answers 403, 404 or 410)")

    def close(self) -> None:
        self._session.close()
