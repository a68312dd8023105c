"""Quota exhaustion: Salesforce's daily API quota runs out in the middle of the daemon's first
pull. The pull stops cleanly and keeps the pages it committed; the daemon runs on; /readyz
says why nothing is pulled (503, a reason naming the spent quota) and /metrics shows no budget
left; while the quota stays spent each pull makes one call at most. The next (sandbox) day the
same process resumes on its own and ends with exactly what a clean pull holds.

The connectors trust an observed spent quota for ``USAGE_FRESH_SECONDS`` (five minutes) before
a call checks again; this test's daemon runs with one second (a ``sitecustomize`` of its own
on PYTHONPATH), as its pull interval is two seconds instead of a minute.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from detente.normalize.run import normalize
from detente.sandbox.control import FaultProfile
from detente.sandbox.server import Sandbox
from detente.store.engine import create_schema, make_engine
from detente.sync import sync
from tests.daemon.support import Daemon, contents, runs, sample, store, wait_until, write_settings
from tests.normalize.support import settings_for

# A full pull of the demo world (100 people) makes 24 Salesforce calls (a describe and one page
# for each of its 12 objects): 10 pull User, Campaign, Account, Lead and Contact, then stop.
DAILY_LIMIT = 10
SALESFORCE_OBJECTS = 12
RECHECK_SECONDS = 1.0

SITECUSTOMIZE = f"""\
import sys
import detente.connectors.sf_http as sf_http
assert hasattr(sf_http, "USAGE_FRESH_SECONDS"), "detente.connectors.sf_http.USAGE_FRESH_SECONDS is gone"
sf_http.USAGE_FRESH_SECONDS = {RECHECK_SECONDS}
print('{{"event": "test.quota_recheck", "seconds": {RECHECK_SECONDS}}}', file=sys.stderr, flush=True)
"""


def _pulls(daemon: Daemon, outcome: str) -> list[dict[str, Any]]:
    return [e for e in daemon.events("job.finished") if e["job"] == "pull-salesforce" and e["outcome"] == outcome]


def test_a_spent_daily_quota_stops_the_pull_shows_on_readyz_and_the_next_day_resumes_without_loss(
        world: Sandbox, rules_file: Path, tmp_path: Path, spawn: Callable[[Path], Daemon],
        monkeypatch: pytest.MonkeyPatch) -> None:
    seam = tmp_path / "seam"
    seam.mkdir()
    (seam / "sitecustomize.py").write_text(SITECUSTOMIZE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(seam), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    url = f"sqlite:///{tmp_path / 'detente.db'}"
    engine = store(url)
    world.sf_control.set_faults(FaultProfile(daily_limit=DAILY_LIMIT))
    daemon = spawn(write_settings(world, tmp_path / "detente.yaml", url, rules_file, writeback=False,
                                  pull_seconds=2, audit_seconds=600, writeback_seconds=600))

    # The first pull runs out partway: stopped, not failed, with the pages before it committed.
    first = daemon.wait_for("job.finished", 60, lambda e: e["job"] == "pull-salesforce")
    assert daemon.events("test.quota_recheck"), "the daemon ran without the test's recheck interval"
    assert first["outcome"] == "stopped" and "daily API" in (first.get("error") or ""), first
    assert "daily API" in first["counts"]["salesforce"]["stopped"], first
    with engine.connect() as conn:
        kept = {("salesforce", r.object, r.record_id, bool(r.deleted)) for r in conn.execute(text(
            "SELECT object, record_id, deleted FROM raw_records WHERE system = 'salesforce'"))}
        cursors = {r.object for r in conn.execute(text("SELECT object FROM cursors WHERE system = 'salesforce'"))}
    pulled = {name for _, name, _, _ in kept}
    assert {"User", "Lead", "Contact"} <= pulled and len(pulled) < SALESFORCE_OBJECTS, pulled
    assert cursors == pulled
    run = next(r for r in runs(engine, "pull") if r["system"] == "salesforce")
    assert run["outcome"] == "stopped" and "daily API" in run["error"], run
    # detente read the quota's end from the last answer and stopped there, before a refused call
    assert f"({DAILY_LIMIT} of {DAILY_LIMIT} calls used)" in first["error"], first

    # The daemon runs on and says why nothing comes from Salesforce.
    daemon.wait_for("job.finished", 60, lambda e: e["job"] == "pull-hubspot")  # the pulls run one at a time
    assert daemon.proc.poll() is None and daemon.get("/healthz").status_code == 200
    ready = daemon.get("/readyz")
    body = ready.json()
    assert ready.status_code == 503 and body["role"] == "leader", body
    assert [r for r in body["reasons"] if r.startswith("salesforce: the daily API quota is spent")], body["reasons"]
    assert body["jobs"]["pull-salesforce"]["outcome"] == "stopped", body["jobs"]
    assert "daily API" in body["jobs"]["pull-salesforce"]["error"], body["jobs"]
    assert body["jobs"]["pull-hubspot"]["outcome"] == "ok", body["jobs"]  # the other CRM is pulled as before
    metrics = daemon.metrics()
    assert sample(metrics, "detente_api_budget_remaining", system="salesforce") == 0, metrics
    assert (sample(metrics, "detente_runs_total", step="pull-salesforce", outcome="stopped") or 0) >= 1, metrics

    # While the quota stays spent, a pull makes one call at most (it checks, then stops).
    seen = len(_pulls(daemon, "stopped"))
    wait_until(lambda: len(_pulls(daemon, "stopped")) >= seen + 3, 30, "three more stopped pulls")
    assert not _pulls(daemon, "ok") and not daemon.events("job.failed"), daemon.tail()
    probes = world.sf_control.calls_today - DAILY_LIMIT
    assert 1 <= probes <= len(_pulls(daemon, "stopped")), probes  # the first pull made none; one may be under way
    assert daemon.get("/readyz").status_code == 503

    # The next day the quota starts afresh: the same process resumes at its next pull.
    world.sf_control.clock.set(datetime.now(UTC) + timedelta(days=1))
    world.sf_control.set_faults(FaultProfile(daily_limit=1000))
    resumed = daemon.wait_for("job.finished", 30, lambda e: e["job"] == "pull-salesforce" and e["outcome"] == "ok")
    assert resumed["counts"]["salesforce"]["fetched"] > 0, resumed
    wait_until(lambda: daemon.get("/readyz").status_code == 200, 15, "/readyz ready once the pull resumed")
    assert not [r for r in daemon.get("/readyz").json()["reasons"] if "quota" in r]
    assert (sample(daemon.metrics(), "detente_api_budget_remaining", system="salesforce") or 0) > 0
    assert len(daemon.events("daemon.started")) == 1 and "Traceback" not in daemon.log_path.read_text()
    code, _ = daemon.stop()
    assert code == 0, daemon.tail()

    # Exactly what a clean pull of the same world holds: nothing lost, nothing twice.
    clean = make_engine(f"sqlite:///{tmp_path / 'clean.db'}")
    create_schema(clean)
    sync(clean, settings_for(world), now=datetime.now(UTC))
    normalize(clean, now=datetime.now(UTC))
    reference = contents(clean)
    assert contents(engine) == reference
    assert kept <= reference[0]
    assert {r[1] for r in reference[0] if r[0] == "salesforce"} > pulled  # the first pull really stopped midway
    clean.dispose()
    engine.dispose()
