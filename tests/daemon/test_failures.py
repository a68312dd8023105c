"""A failing job is recorded, counted and reported on /readyz, never stops the other jobs, and
simply runs again at its next tick: once the CRM recovers, the daemon is ready again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from detente.sandbox.control import FaultProfile
from detente.sandbox.server import Sandbox
from tests.daemon.support import Daemon, runs, sample, store, wait_until, write_settings


def test_a_failing_system_is_reported_and_retried_and_does_not_stop_the_others(
        world: Sandbox, rules_file: Path, tmp_path: Path, spawn: Callable[[Path], Daemon]) -> None:
    url = f"sqlite:///{tmp_path / 'detente.db'}"
    engine = store(url)
    world.hs_control.set_faults(FaultProfile(server_errors=1.0))  # HubSpot answers every call with a 5xx
    daemon = spawn(write_settings(world, tmp_path / "detente.yaml", url, rules_file, writeback=False,
                                  hubspot={"retries": 0}, pull_seconds=1.5, audit_seconds=1.5))
    daemon.wait_for("job.failed", 60, lambda e: e["job"] == "pull-hubspot")
    ready = daemon.get("/readyz")
    assert ready.status_code == 503
    assert any("pull-hubspot" in r for r in ready.json()["reasons"]), ready.json()
    assert ready.json()["jobs"]["pull-hubspot"]["outcome"] == "failed"
    # Salesforce is pulled again and again, and the audit runs, while HubSpot keeps failing.
    wait_until(lambda: len([r for r in runs(engine, "pull") if r["system"] == "salesforce" and r["outcome"] == "ok"])
               >= 2, 30, "two Salesforce pulls")
    daemon.wait_for("job.finished", 30, lambda e: e["job"] == "audit" and e["outcome"] == "ok")
    daemon.wait_for("job.failed", 30, lambda e: e["job"] == "pull-hubspot", after=1)
    assert (sample(daemon.metrics(), "detente_runs_total", step="pull-hubspot", outcome="failed") or 0) >= 2
    assert [r for r in runs(engine, "pull") if r["system"] == "hubspot" and r["outcome"] == "failed"]

    # HubSpot recovers: the next tick pulls it, and the daemon is ready.
    world.hs_control.set_faults(FaultProfile())
    daemon.wait_for("job.finished", 30, lambda e: e["job"] == "pull-hubspot" and e["outcome"] == "ok")
    wait_until(lambda: daemon.get("/readyz").status_code == 200, 15, "/readyz ready after the recovery")
    assert daemon.stop()[0] == 0
    engine.dispose()
