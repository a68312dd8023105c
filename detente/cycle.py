"""One pass of detente's work, step by step: pull → normalize → audit → plan → apply; and
besides them, posting SLA breaches to the webhook and emailing the digest.

The steps are what the daemon schedules (each on its own interval) and what ``detente cycle``
runs once, in order. Each step records a run in the store (``runs``: start, end, outcome,
counts, error) and returns a small summary; a failing step raises after recording itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from detente.logs import get_logger
from detente.rules import checked as c
from detente.settings import Settings
from detente.status import finish_run, start_run

log = get_logger("detente.cycle")


@dataclass
class StepResult:
    step: str
    outcome: str  # ok, failed, skipped, stopped
    seconds: float
    counts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def _recorded(engine: Engine, kind: str, system: str | None, now: datetime,
              work: Callable[[], dict[str, Any]]) -> StepResult:
    run_id = start_run(engine, kind, system, now)
    started = time.monotonic()
    try:
        counts = work()
    except Exception as exc:
        seconds = time.monotonic() - started
        # The error's first line only: a driver's message goes on to quote SQL and its values.
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        finish_run(engine, run_id, now + timedelta(seconds=seconds), "failed", {}, error)
        log.error(f"{kind}.failed", system=system, error=error)
        raise
    seconds = time.monotonic() - started
    finish_run(engine, run_id, now + timedelta(seconds=seconds), "ok", counts)
    return StepResult(kind, "ok", seconds, counts)


def pull_step(engine: Engine, settings: Settings, now: datetime, systems: Sequence[str] | None = None,
              on_page: Callable[[Any], None] | None = None, rules: c.Rules | None = None,
              keep: dict[str, Any] | None = None) -> StepResult:
    """Pull the systems (each records its own run) and normalize what came in, with the field
    mappings the rules declare."""
    from detente.normalize.mapping import DEFAULT, from_rules
    from detente.normalize.run import normalize
    from detente.sync import sync

    started = time.monotonic()
    results = sync(engine, settings, now=now, systems=systems, on_page=on_page, keep=keep)
    report = normalize(engine, now=now, maps=(from_rules(rules) if rules is not None else None) or DEFAULT)
    counts: dict[str, Any] = {r.system: {"fetched": sum(o.fetched for o in r.report.objects),
                                         "changed": sum(o.inserted + o.updated + o.deleted
                                                        for o in r.report.objects),
                                         "calls": sum(o.calls for o in r.report.objects),
                                         "error": r.error, "stopped": r.report.stopped} for r in results}
    counts["normalized"] = dict(report.counts)
    failed = [r.system for r in results if r.error]
    outcome = "failed" if failed and len(failed) == len(results) else "ok"
    return StepResult("pull", outcome, time.monotonic() - started, counts,
                      "; ".join(f"{r.system}: {r.error}" for r in results if r.error) or None)


def audit_step(engine: Engine, rules: c.Rules, now: datetime, *, full: bool = False) -> StepResult:
    from detente.reconcile.ledger import reconcile

    return _recorded(engine, "audit", None, now, lambda: {**reconcile(engine, rules, now, full=full),
                                                          "rules_version": rules.version})


def writeback_step(engine: Engine, settings: Settings, rules: c.Rules, now: datetime) -> StepResult:
    """Plan, then apply when write-back is enabled (and not a dry run)."""
    from detente.writeback.apply import apply_writes
    from detente.writeback.plan import plan_writes
    from detente.writeback.send import HubSpotWriter, SalesforceWriter

    wb = settings.writeback
    if not wb.enabled:
        return StepResult("writeback", "skipped", 0.0, {"why": "writeback.enabled is false"})

    def work() -> dict[str, Any]:
        plan = plan_writes(engine, rules, wb, now)
        counts: dict[str, Any] = {"planned": len(plan.writes), "overrides": len(plan.overrides),
                                  "skipped": len(plan.skipped)}
        if wb.dry_run:
            return {**counts, "dry_run": True}
        sf, hs = SalesforceWriter(settings.salesforce), HubSpotWriter(settings.hubspot)
        try:
            result = apply_writes(engine, settings, {"salesforce": sf.send, "hubspot": hs.send}, now)
        finally:
            for writer in (sf, hs):
                writer.close()
        return {**counts, **dict(result.counts), "calls": {"salesforce": sf.calls, "hubspot": hs.calls}}

    return _recorded(engine, "writeback", None, now, work)


def notify_step(engine: Engine, settings: Settings, now: datetime) -> StepResult:
    """Post the SLA breaches not posted yet to the webhook (when enabled). A failed post is
    recorded and returned as failed, not raised: its breaches stay pending for the next run."""
    from detente.errors import DetenteError
    from detente.notify.webhook import WebhookPoster, notify_breaches

    hook = settings.webhook
    if not hook.enabled:
        return StepResult("notify", "skipped", 0.0, {"why": "webhook.enabled is false"})

    def work() -> dict[str, Any]:
        post = WebhookPoster(hook)
        try:
            return notify_breaches(engine, post, now, per_message=hook.breaches_per_message,
                                   max_messages=hook.max_messages_per_run,
                                   dashboard_url=settings.digest.dashboard_url).counts()
        finally:
            post.close()

    started = time.monotonic()
    try:
        return _recorded(engine, "notify", None, now, work)
    except DetenteError as exc:
        return StepResult("notify", "failed", time.monotonic() - started, {}, str(exc))


def digest_step(engine: Engine, settings: Settings, rules: c.Rules, now: datetime) -> StepResult:
    """Email each audience its digest of the last complete period (when enabled). A failure is
    recorded and returned as failed, not raised."""
    from functools import partial

    from detente.errors import DetenteError
    from detente.notify.mail import send_mail
    from detente.notify.run import send_digests

    digest = settings.digest
    if not digest.enabled:
        return StepResult("digest", "skipped", 0.0, {"why": "digest.enabled is false"})

    def work() -> dict[str, Any]:
        sent = send_digests(engine, rules, digest, now, partial(send_mail, digest.smtp))
        return {"period": sent[0].period if sent else None,
                "sent": {s.audience: len(s.recipients) - len(s.refused) for s in sent},
                "refused": sum(len(s.refused) for s in sent)}

    started = time.monotonic()
    try:
        return _recorded(engine, "digest", None, now, work)
    except DetenteError as exc:
        return StepResult("digest", "failed", time.monotonic() - started, {}, str(exc))


def run_cycle(engine: Engine, settings: Settings, rules: c.Rules, now: datetime | None = None) -> list[StepResult]:
    """One full pass, in order; a failed pull of one system does not stop the rest. The SLA
    breaches the audit found are posted to the webhook when it is enabled."""
    moment = now or datetime.now(UTC)
    steps = [pull_step(engine, settings, moment, rules=rules)]
    steps.append(audit_step(engine, rules, moment))
    if settings.webhook.enabled:
        steps.append(notify_step(engine, settings, moment))
    steps.append(writeback_step(engine, settings, rules, moment))
    return steps
