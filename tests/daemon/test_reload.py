"""Hot reloads: a rules edit is picked up before the next job; a broken edit is rejected,
reported on /readyz and in the metrics, and the last good rules keep working; SIGHUP reloads
the settings (a new interval reschedules its job; an invalid file is refused and the old kept);
invalid rules at start stop the daemon with exit code 2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from detente.rules import load_rules
from detente.sandbox.server import Sandbox
from tests.daemon.support import REPO, Daemon, runs, sample, store, wait_until, write_settings


def test_a_rules_edit_is_used_and_a_broken_one_is_rejected_keeping_the_last_good_rules(
        world: Sandbox, rules_file: Path, tmp_path: Path, spawn: Callable[[Path], Daemon]) -> None:
    url = f"sqlite:///{tmp_path / 'detente.db'}"
    engine = store(url)
    first_version = load_rules(rules_file).version
    daemon = spawn(write_settings(world, tmp_path / "detente.yaml", url, rules_file, writeback=False,
                                  pull_seconds=600, audit_seconds=1.5))

    def audits_with(version: str, after: int = 0) -> list[dict[str, object]]:
        return [r for r in runs(engine, "audit")[after:]
                if r["outcome"] == "ok" and r["counts"].get("rules_version") == version]

    wait_until(lambda: audits_with(first_version), 60, "an audit with the rules as started")

    # A valid edit: a shorter MQL grace. The next audit runs with the new version.
    rules_file.write_text(rules_file.read_text().replace("grace: 3 days", "grace: 2 days"))
    second_version = load_rules(rules_file).version
    assert second_version != first_version
    daemon.wait_for("rules.reloaded", 15, lambda e: e["version"] == second_version)
    wait_until(lambda: audits_with(second_version), 15, "an audit with the edited rules")
    assert daemon.get("/readyz").status_code == 200

    # A broken edit: an unknown key. Rejected with its location; the edited rules stay in use.
    good = rules_file.read_text()
    rules_file.write_text(good + "\nescalations:\n  - nobody\n")
    invalid = daemon.wait_for("rules.invalid", 15)
    assert invalid["kept_version"] == second_version
    problems = [e["problem"] for e in daemon.events("rules.problem")]
    assert any(p.startswith(f"{rules_file}:") and "escalations" in p for p in problems), problems
    seen = len(runs(engine, "audit"))
    ready = daemon.get("/readyz")
    body = ready.json()
    assert ready.status_code == 503 and body["role"] == "leader"
    assert body["rules"]["valid"] is False and body["rules"]["version"] == second_version
    assert any("rules" in reason for reason in body["reasons"]) and body["rules"]["problems"]
    assert sample(daemon.metrics(), "detente_rules_valid") == 0
    wait_until(lambda: audits_with(second_version, after=seen), 15, "an audit with the last good rules")

    # Broken YAML is rejected the same way, and fixing the file makes the daemon ready again.
    rules_file.write_text(good + "\nstages: [\n")
    daemon.wait_for("rules.invalid", 15, after=1)
    rules_file.write_text(good)
    wait_until(lambda: daemon.get("/readyz").status_code == 200, 15, "/readyz ready after the fix")
    assert sample(daemon.metrics(), "detente_rules_valid") == 1
    code, _ = daemon.stop()
    assert code == 0


def test_sighup_reloads_the_settings_and_keeps_them_when_the_new_file_is_invalid(
        world: Sandbox, rules_file: Path, tmp_path: Path, spawn: Callable[[Path], Daemon]) -> None:
    url = f"sqlite:///{tmp_path / 'detente.db'}"
    config = write_settings(world, tmp_path / "detente.yaml", url, rules_file, writeback=False,
                            pull_seconds=600, audit_seconds=600, writeback_seconds=600)
    daemon = spawn(config)
    daemon.wait_for("job.finished", 60, lambda e: e["job"].startswith("pull-"))
    good = config.read_text()

    config.write_text(good + "surprise: true\n")
    daemon.signal(signal.SIGHUP)
    failed = daemon.wait_for("settings.reload_failed", 15)
    assert any("surprise" in p for p in failed["problems"])
    assert daemon.proc.poll() is None and daemon.get("/healthz").status_code == 200

    data = yaml.safe_load(good)
    data["daemon"]["audit_seconds"] = 1
    config.write_text(yaml.safe_dump(data))
    daemon.signal(signal.SIGHUP)
    reloaded = daemon.wait_for("settings.reloaded", 15)
    assert reloaded["changed"] == ["daemon"]
    daemon.wait_for("job.rescheduled", 5, lambda e: e["job"] == "audit" and e["every_seconds"] == 1)
    # Without the reload the first audit would be ten minutes away.
    daemon.wait_for("job.finished", 15, lambda e: e["job"] == "audit" and e["outcome"] == "ok")
    code, _ = daemon.stop()
    assert code == 0


def test_invalid_rules_at_start_exit_2_with_every_problem_located(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nteams: {}\nstages:\n  mql: {grace: soon}\nnonsense: 1\n")
    config = tmp_path / "detente.yaml"
    config.write_text(yaml.safe_dump({"store": {"url": f"sqlite:///{tmp_path / 'd.db'}"},
                                      "log": {"format": "json"},
                                      "daemon": {"rules": str(rules), "listen": "127.0.0.1:0"}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETENTE_")}
    result = subprocess.run([sys.executable, "-m", "detente", "--config", str(config), "run"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, env={**env, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2, result.stderr
    assert f"{rules}:5:1" in result.stderr and "nonsense" in result.stderr
    assert "needs valid rules to start" in result.stderr
    assert not (tmp_path / "d.db").exists()  # nothing was started
