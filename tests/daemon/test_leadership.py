"""Two daemons on one store (SQLite and PostgreSQL): one leads and works, the other stands by
(healthy, not ready, running nothing); when the leader is killed, the standby takes over within
one interval and runs the jobs."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

from detente.sandbox.server import Sandbox
from tests.daemon.support import Daemon, runs, sample, store, wait_until, write_settings

INTERVAL = 2.0


def test_one_daemon_leads_the_other_stands_by_and_takes_over_when_the_leader_dies(
        world: Sandbox, rules_file: Path, tmp_path: Path, store_url: str, spawn: Callable[[Path], Daemon]) -> None:
    engine = store(store_url)
    first = spawn(write_settings(world, tmp_path / "first.yaml", store_url, rules_file,
                                 pull_seconds=INTERVAL, audit_seconds=INTERVAL, writeback_seconds=INTERVAL))
    first.wait_for("leadership.acquired", 60)
    second = spawn(write_settings(world, tmp_path / "second.yaml", store_url, rules_file,
                                  pull_seconds=INTERVAL, audit_seconds=INTERVAL, writeback_seconds=INTERVAL))
    second.wait_for("daemon.standby", 60)

    # The leader works; the standby answers health checks, is not ready, and runs nothing.
    first.wait_for("job.finished", 60, lambda e: e["job"] == "audit")
    time.sleep(2 * INTERVAL)
    assert second.get("/healthz").status_code == 200
    ready = second.get("/readyz")
    assert ready.status_code == 503 and ready.json()["role"] == "standby", ready.json()
    assert any("standby" in r for r in ready.json()["reasons"])
    m = second.metrics()
    assert sample(m, "detente_leader") == 0 and sample(m, "detente_runs_total") is None
    assert sample(first.metrics(), "detente_leader") == 1
    assert not [e for e in second.events() if e["event"].startswith(("job.", "leadership.acquired"))]
    assert first.get("/readyz").json()["role"] == "leader"
    runs_before = len(runs(engine))

    # The leader dies without a word; the standby takes over within one interval and works.
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    killed = time.time()
    took = second.wait_for("leadership.acquired", 30)
    takeover = second.at(took) - (killed - second.started)
    assert takeover <= INTERVAL, f"took over after {takeover:.2f} s"
    finished = second.wait_for("job.finished", 60, lambda e: e["job"].startswith("pull-") and e["outcome"] == "ok")
    assert second.at(finished) - (killed - second.started) < 30
    wait_until(lambda: second.get("/readyz").json()["role"] == "leader", 10, "the new leader's /readyz")
    assert len(runs(engine)) > runs_before
    # Both wrote back in turn, never together: every task detente made exists once in the CRM.
    second.wait_for("job.finished", 60, lambda e: e["job"] == "writeback")
    keys = [r[0] for r in world.world.query(
        'SELECT "Detente_Key__c" FROM "sf_Task" WHERE "Detente_Key__c" IS NOT NULL AND NOT "IsDeleted"')]
    assert keys and len(keys) == len(set(keys))
    assert second.stop()[0] == 0
    engine.dispose()
