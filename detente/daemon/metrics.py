"""The daemon's Prometheus metrics, in a registry of its own (never the process-global one).

Counters of what this process did (runs, seconds, records pulled) live in memory; what the
store knows (open findings, the outbox, API calls) is read from it at each scrape, so every
instance, leader or standby, reports the same store-wide numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import Engine, func, select

from detente.logs import get_logger
from detente.settings import Settings
from detente.status import USAGE
from detente.store.findings import FindingRow
from detente.store.writes import WriteRow

log = get_logger("detente.daemon")

FINDINGS = FindingRow.__table__  # type: ignore[attr-defined]
WRITES = WriteRow.__table__  # type: ignore[attr-defined]
RUN_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class StoreCollector:
    """Reads the store's own numbers at scrape time."""

    def __init__(self, engine: Callable[[], Engine], settings: Callable[[], Settings],
                 today: Callable[[], date] = lambda: datetime.now(UTC).date()) -> None:
        self._engine, self._settings, self._today = engine, settings, today

    def describe(self) -> Iterable[Metric]:
        return []  # keeps the registry from querying the store when the collector is registered

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("detente_store_up", "1 when the store answered the metrics queries of this scrape")
        try:
            families = self._read()
        except Exception as exc:  # a scrape must not fail because the store is down
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            log.warning("metrics.store_unavailable", error=f"{type(exc).__name__}: {first}")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self) -> list[Metric]:
        settings, today = self._settings(), self._today()
        with self._engine().connect() as conn:
            open_findings = conn.execute(select(FINDINGS.c.kind, func.count()).where(FINDINGS.c.status == "open")
                                         .group_by(FINDINGS.c.kind)).all()
            writes = conn.execute(select(WRITES.c.system, WRITES.c.state, func.count())
                                  .group_by(WRITES.c.system, WRITES.c.state)).all()
            calls = conn.execute(select(USAGE.c.system, func.sum(USAGE.c.calls)).group_by(USAGE.c.system)).all()
            usage_today = {r.system: r for r in conn.execute(select(USAGE).where(USAGE.c.day == today))}
        findings = GaugeMetricFamily("detente_findings_open", "Open findings by kind", labels=["kind"])
        for kind, n in sorted(open_findings):
            findings.add_metric([kind], n)
        # A gauge despite the name: the outbox rows now in each state (a row moves planned → sent → applied).
        outbox = GaugeMetricFamily("detente_writes_total", "Write-back outbox rows by system and state",
                                   labels=["system", "state"])
        for system, state, n in sorted(writes):
            outbox.add_metric([system, state], n)
        api = CounterMetricFamily("detente_api_calls", "API calls detente made, retries included", labels=["system"])
        for system, n in sorted(calls):
            api.add_metric([system], float(n or 0))
        budget = GaugeMetricFamily(
            "detente_api_budget_remaining",
            "API calls detente may still spend today: the lower of calls_per_day left and the CRM's reported "
            "quota left minus quota_reserve", labels=["system"])
        for system in ("salesforce", "hubspot"):
            left = budget_left(getattr(settings, system), usage_today.get(system))
            if left is not None:
                budget.add_metric([system], left)
        return [findings, outbox, api, budget]


def budget_left(section: Any, usage: Any) -> int | None:
    """Calls left today for one system, or None when neither detente nor the CRM sets a limit."""
    candidates = []
    used = int(usage.calls) if usage is not None else 0
    if section.calls_per_day is not None:
        candidates.append(section.calls_per_day - used)
    if usage is not None and usage.remaining is not None:
        candidates.append(int(usage.remaining) - section.quota_reserve)
    return max(0, min(candidates)) if candidates else None


class DaemonMetrics:
    """Everything /metrics serves."""

    def __init__(self, engine: Callable[[], Engine], settings: Callable[[], Settings]) -> None:
        self.registry = CollectorRegistry()
        self.runs = Counter("detente_runs", "Job runs by outcome (ok, failed, stopped, skipped)",
                            ["step", "outcome"], registry=self.registry)
        # "step", not "job": Prometheus sets its own "job" label on every scraped series.
        self.run_seconds = Histogram("detente_run_seconds", "How long each job run took", ["step"],
                                     buckets=RUN_BUCKETS, registry=self.registry)
        self.records_pulled = Counter("detente_records_pulled", "Records pulled and committed, by system",
                                      ["system"], registry=self.registry)
        self.rules_valid = Gauge("detente_rules_valid", "1 when the rules file as it is now is valid",
                                 registry=self.registry)
        self.leader = Gauge("detente_leader", "1 when this instance holds the store's lock and runs jobs",
                            registry=self.registry)
        self.registry.register(StoreCollector(engine, settings))

    def observe(self, job: str, outcome: str, seconds: float) -> None:
        self.runs.labels(job, outcome).inc()
        self.run_seconds.labels(job).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
