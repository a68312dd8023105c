"""``detente run`` against a private sandbox: it pulls, audits and writes back on schedule, and
/healthz, /readyz and /metrics report what it really did."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
import yaml
from sqlalchemy import Engine, text

from detente.sandbox.server import Sandbox
from tests.daemon.support import RULES, Daemon, count, runs, sample, store, wait_until, write_settings


@dataclass
class Running:
    daemon: Daemon
    engine: Engine
    first_pull_seconds: float


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One daemon, shared by this module's tests (they only look), after a full cycle and more."""
    tmp = tmp_path_factory.mktemp("daemon")
    as_of = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    sb = Sandbox(state_dir=tmp / "sandbox", dataset="demo", size=100, seed=23, as_of=as_of)
    sb.start()
    rules = tmp / "rules.yaml"
    shutil.copy(RULES, rules)
    url = f"sqlite:///{tmp / 'detente.db'}"
    daemon = Daemon(write_settings(sb, tmp / "detente.yaml", url, rules), tmp / "daemon.log")
    engine = store(url)
    try:
        first = daemon.wait_for("job.finished", 60, lambda e: e["job"].startswith("pull-"))
        # Every job ran, the outbox was applied, and each system was pulled again on schedule.
        daemon.wait_for("job.finished", 60, lambda e: e["job"] == "writeback" and e["counts"].get("applied"))
        def pulled_twice(system: str) -> bool:
            return len([r for r in runs(engine, "pull") if r["system"] == system and r["outcome"] == "ok"]) >= 2

        for system in ("salesforce", "hubspot"):
            wait_until(partial(pulled_twice, system), 30, f"a second {system} pull")
        wait_until(lambda: len([r for r in runs(engine, "audit") if r["outcome"] == "ok"]) >= 2, 30,
                   "a second audit")
        yield Running(daemon, engine, daemon.at(first))
    finally:
        daemon.kill()
        engine.dispose()
        sb.stop()


def test_pulls_audits_and_writes_back_on_schedule(running: Running) -> None:
    """Each job records its runs in the store, again and again; findings and applied writes follow."""
    engine = running.engine
    pulls = runs(engine, "pull")
    assert {r["system"] for r in pulls} == {"salesforce", "hubspot"}
    assert all(r["outcome"] == "ok" for r in pulls if r["outcome"] != "running")
    audits = [r for r in runs(engine, "audit") if r["outcome"] == "ok"]
    assert len(audits) >= 2 and audits[0]["counts"]["opened"] > 0
    assert [r for r in runs(engine, "writeback") if r["outcome"] == "ok" and r["counts"].get("applied")]
    assert count(engine, "SELECT count(*) FROM findings WHERE status = 'open'") > 0
    assert count(engine, "SELECT count(*) FROM writes WHERE state = 'applied'") > 0
    assert count(engine, "SELECT count(*) FROM writes WHERE state NOT IN ('applied', 'skipped')") == 0
    # The first pull starts at once, not one interval later.
    assert running.first_pull_seconds < 15, running.first_pull_seconds


def test_healthz_answers_ok(running: Running) -> None:
    response = running.daemon.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_is_ready_when_leading_with_valid_rules_and_no_failed_job(running: Running) -> None:
    response = running.daemon.get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["role"] == "leader" and body["reasons"] == [] and body["store"]["reachable"] is True
    assert body["rules"]["valid"] is True and body["rules"]["version"]
    assert set(body["jobs"]) <= {"pull-salesforce", "pull-hubspot", "audit", "writeback", "metrics"}
    assert set(body["jobs"]) >= {"pull-salesforce", "pull-hubspot", "audit", "writeback"}
    assert all(job["outcome"] == "ok" for job in body["jobs"].values())


def test_metrics_report_real_values(running: Running) -> None:
    daemon, engine = running.daemon, running.engine
    m = daemon.metrics()
    assert (sample(m, "detente_records_pulled_total", system="salesforce") or 0) > 0
    assert (sample(m, "detente_records_pulled_total", system="hubspot") or 0) > 0
    for job in ("pull-salesforce", "pull-hubspot", "audit", "writeback"):
        assert (sample(m, "detente_runs_total", step=job, outcome="ok") or 0) >= 1, job
        assert (sample(m, "detente_run_seconds_count", step=job) or 0) >= 1, job
    with engine.connect() as conn:
        kinds: dict[str, int] = dict(conn.execute(text(
            "SELECT kind, count(*) FROM findings WHERE status = 'open' GROUP BY kind")).all())
        applied = conn.execute(text(
            "SELECT system, count(*) FROM writes WHERE state = 'applied' GROUP BY system")).all()
        calls: dict[str, int] = dict(conn.execute(text(
            "SELECT system, sum(calls) FROM api_usage GROUP BY system")).all())
    assert len(kinds) >= 2
    # The store's numbers as of the scrape (another audit may run in between: compare a fresh scrape).
    m = daemon.metrics()
    for kind in kinds:
        assert sample(m, "detente_findings_open", kind=kind) is not None, kind
    for system, n in applied:
        assert (sample(m, "detente_writes_total", system=system, state="applied") or 0) >= n
    for system, n in calls.items():
        assert (sample(m, "detente_api_calls_total", system=system) or 0) >= n > 0
        assert sample(m, "detente_api_budget_remaining", system=system) is not None
    assert sample(m, "detente_rules_valid") == 1 and sample(m, "detente_leader") == 1
    assert sample(m, "detente_store_up") == 1


def test_no_secret_reaches_the_log_or_the_endpoints(running: Running) -> None:
    daemon = running.daemon
    seen = daemon.log_path.read_text() + daemon.get("/readyz").text + daemon.get("/metrics").text
    settings = yaml.safe_load((daemon.log_path.parent / "detente.yaml").read_text())
    for section, key in (("salesforce", "client_secret"), ("salesforce", "password"), ("hubspot", "token")):
        assert settings[section][key] not in seen, (section, key)


def test_the_dashboard_is_served_warm_after_each_audit(running: Running) -> None:
    """The metrics job computes the dashboard's report after an audit, on its own thread, so a
    page load finds it ready; the page shows the report the API serves."""
    warmed = running.daemon.wait_for("job.finished", 60, lambda e: e["job"] == "metrics"
                                     and e["counts"].get("warmed") == 1)
    assert warmed["counts"]["period"]
    page = running.daemon.get("/")
    assert page.status_code == 200 and 'data-metric="' in page.text
    api = running.daemon.get(f"/api/report?period={warmed['counts']['period']}&by=source").json()
    assert api["period"]["label"] == warmed["counts"]["period"]
