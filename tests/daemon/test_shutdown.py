"""SIGTERM in the middle of a slow pull: the pull ends at its next committed page and the
process exits 0 well within daemon.shutdown_seconds; the next start resumes from the committed
cursors and ends with exactly what a clean pull of the same world holds. A job that cannot
stop in time is left behind: the process exits anyway at the bound, with a warning."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from detente.normalize.run import normalize
from detente.sandbox.control import FaultProfile
from detente.sandbox.server import Sandbox
from detente.store.engine import create_schema, make_engine
from tests.daemon.support import Daemon, contents, count, runs, store, wait_until, write_settings
from tests.normalize.support import settings_for

SHUTDOWN_SECONDS = 8


def _finished_ok(job: str, event: dict[str, Any]) -> bool:
    return bool(event["job"] == job and event["outcome"] == "ok")


def test_sigterm_mid_pull_exits_0_in_time_and_the_next_start_resumes_without_loss_or_duplicates(
        world: Sandbox, rules_file: Path, tmp_path: Path, spawn: Callable[[Path], Daemon]) -> None:
    url = f"sqlite:///{tmp_path / 'detente.db'}"
    engine = store(url)
    config = write_settings(world, tmp_path / "detente.yaml", url, rules_file, writeback=False,
                            pull_seconds=600, audit_seconds=600, writeback_seconds=600,
                            shutdown_seconds=SHUTDOWN_SECONDS)
    # Every API call takes 0.4 s: a whole pull of this world would take well over ten seconds.
    for control in (world.sf_control, world.hs_control):
        control.set_faults(FaultProfile(slow=1.0, slow_seconds=0.4))
    daemon = spawn(config)
    wait_until(lambda: count(engine, "SELECT count(*) FROM raw_records") > 0, 60, "the first committed page")
    code, seconds = daemon.stop(timeout=SHUTDOWN_SECONDS + 10)
    assert code == 0, daemon.tail()
    assert seconds < SHUTDOWN_SECONDS, seconds
    assert daemon.events("daemon.stopped") and not daemon.events("daemon.shutdown_timeout")
    # The signal is handled at once, whichever thread the kernel gave it to.
    assert daemon.at(daemon.events("daemon.stopping")[0]) - (daemon.signalled - daemon.started) < 1.0
    stopped = [r for r in runs(engine, "pull") if r["outcome"] == "stopped"]
    assert stopped and "stopping" in (stopped[0]["error"] or ""), runs(engine, "pull")
    assert not [r for r in runs(engine, "pull") if r["outcome"] == "running"]
    pulled_first = count(engine, "SELECT count(*) FROM raw_records")

    # The next start, without the slow calls, pulls the rest.
    for control in (world.sf_control, world.hs_control):
        control.set_faults(FaultProfile())
    again = spawn(config)
    for job in ("pull-salesforce", "pull-hubspot"):
        again.wait_for("job.finished", 60, partial(_finished_ok, job))
    assert again.stop()[0] == 0

    # A clean pull of the same world into a store of its own holds exactly the same.
    from detente.sync import sync

    clean = make_engine(f"sqlite:///{tmp_path / 'clean.db'}")
    create_schema(clean)
    sync(clean, settings_for(world), now=datetime.now(UTC))
    normalize(clean, now=datetime.now(UTC))
    resumed, reference = contents(engine), contents(clean)
    assert pulled_first < len(reference[0])  # the first run really stopped midway
    assert resumed == reference
    clean.dispose()
    engine.dispose()


def test_a_job_that_outlives_the_bound_is_left_behind_and_the_process_exits_0_anyway(
        world: Sandbox, rules_file: Path, tmp_path: Path, spawn: Callable[[Path], Daemon]) -> None:
    url = f"sqlite:///{tmp_path / 'detente.db'}"
    # Every call hangs for 20 s: the running pull cannot reach its next page within the bound.
    for control in (world.sf_control, world.hs_control):
        control.set_faults(FaultProfile(slow=1.0, slow_seconds=20))
    daemon = spawn(write_settings(world, tmp_path / "detente.yaml", url, rules_file, writeback=False,
                                  pull_seconds=600, audit_seconds=600, writeback_seconds=600, shutdown_seconds=1))
    daemon.wait_for("job.scheduled", 60, lambda e: e["job"].startswith("pull-"))
    wait_until(lambda: daemon.get("/readyz").json()["role"] == "leader", 10, "leadership")
    code, seconds = daemon.stop(timeout=15)
    assert code == 0 and seconds < 4, (code, seconds)
    timeout = daemon.wait_for("daemon.shutdown_timeout", 1)
    assert timeout["level"] == "warning" and timeout["running"] and timeout["running"][0].startswith("pull-")
    assert not daemon.events("daemon.stopped")
    for control in (world.sf_control, world.hs_control):
        control.set_faults(FaultProfile())
