"""``detente sync``: pull both CRMs (or one) into the store, recording the run and its calls."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from detente.connectors.base import CallBudget, Connector
from detente.errors import DetenteError, SettingsError
from detente.logs import get_logger
from detente.pull import ObjectReport, PullReport, pull
from detente.settings import Settings
from detente.status import calls_today, finish_run, record_usage, start_run

log = get_logger("detente.sync")
SYSTEMS = ("salesforce", "hubspot")


@dataclass
class SystemResult:
    system: str
    report: PullReport
    error: str | None = None


def configured(settings: Settings) -> list[str]:
    """The systems whose settings are complete enough to try."""
    found = []
    sf = settings.salesforce
    if sf.instance_url and sf.client_id and (sf.username or sf.refresh_token):
        found.append("salesforce")
    if settings.hubspot.token is not None:
        found.append("hubspot")
    return found


def build_connector(settings: Settings, system: str, budget: CallBudget) -> Connector:
    if system == "salesforce":
        from detente.connectors.salesforce import SalesforceConnector

        return SalesforceConnector(settings.salesforce, budget=budget)
    from detente.connectors.hubspot import HubSpotConnector

    return HubSpotConnector(settings.hubspot, budget=budget)


def sync(
    engine: Engine,
    settings: Settings,
    *,
    now: datetime,
    systems: Sequence[str] | None = None,
    objects: Sequence[str] | None = None,
    full: bool = False,
    on_page: Callable[[ObjectReport], None] | None = None,
    keep: dict[str, Connector] | None = None,
) -> list[SystemResult]:
    """Pull each system; one failing system does not stop the other.

    ``keep``: connectors to reuse from one pull to the next (the daemon's), so that a session,
    the objects' describes and HubSpot's property definitions are fetched once, not per pull;
    each run still gets its own call budget.
    """
    ready = configured(settings)
    wanted = list(systems or ready)
    missing = [s for s in wanted if s not in ready]
    if missing:
        raise SettingsError([
            f"{s}: not configured; " + (
                "set salesforce.instance_url, client_id and username (or DETENTE_SALESFORCE__* variables)"
                if s == "salesforce" else "set DETENTE_HUBSPOT__TOKEN to a private-app token"
            ) for s in missing
        ])
    results = []
    for system in wanted:
        section: Any = getattr(settings, system)
        budget = CallBudget(section.calls_per_run, section.calls_per_day, calls_today(engine, system, now.date()))
        connector = keep.get(system) if keep is not None else None
        if connector is None:
            connector = build_connector(settings, system, budget)
            if keep is not None:
                keep[system] = connector
        else:
            connector.budget = budget
        chosen = [o for o in connector.objects() if not objects or o in objects]
        run_id = start_run(engine, "pull", system, now)
        report = PullReport()
        error = None
        try:
            report = pull(engine, connector, now=now, objects=chosen, full=full,
                          lookback=timedelta(seconds=section.lookback_seconds),
                          deletes_every=timedelta(seconds=section.deletes_every_seconds), on_page=on_page)
        except DetenteError as exc:
            error = str(exc)
            log.error("sync.failed", system=system, error=error)
        finally:
            close = getattr(connector, "close", None)
            if close is not None and keep is None:
                close()
        outcome = "failed" if error else ("stopped" if report.stopped else "ok")
        counts = {o.object: {"fetched": o.fetched, "inserted": o.inserted, "updated": o.updated,
                             "deleted": o.deleted, "quarantined": o.quarantined, "calls": o.calls}
                  for o in report.objects}
        finish_run(engine, run_id, datetime.now(now.tzinfo), outcome, counts, error or report.stopped)
        remaining, limit = _quota(connector)
        record_usage(engine, system, now.date(), budget.used, remaining, limit)
        results.append(SystemResult(system, report, error))
    return results


def _quota(connector: Connector) -> tuple[int | None, int | None]:
    usage = getattr(connector, "api_usage", None)
    if usage is not None:
        return int(usage.remaining), int(usage.limit)
    remaining = getattr(connector, "daily_remaining", None)
    return (remaining, None) if isinstance(remaining, int) else (None, None)
