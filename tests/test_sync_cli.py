"""``detente sync`` and ``detente status`` as an operator runs them, against the sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from detente.sandbox.server import Sandbox
from tests.conftest import trusting_session


def detente(config: Path, store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DETENTE_STORE__URL": f"sqlite:///{store}"}
    return subprocess.run([sys.executable, "-m", "detente", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=300, env=env)


def test_sync_pulls_both_systems_and_status_reports_the_counts(sandbox: Sandbox, tmp_path: Path) -> None:
    config, store = tmp_path / "detente.yaml", tmp_path / "store.db"
    sandbox.write_config(config)
    result = detente(config, store, "sync")
    assert result.returncode == 0, result.stderr
    assert "salesforce Lead: fetched" in result.stdout
    assert "hubspot contacts: fetched" in result.stdout
    status = json.loads(detente(config, store, "status", "--format", "json").stdout)
    live = {(o["system"], o["object"]): o["live"] for o in status["objects"]}
    assert sandbox.info is not None
    http = trusting_session(sandbox.info)
    sf = http.get(f"{sandbox.info.salesforce}/__sandbox/stats", timeout=30).json()["records"]
    hs = http.get(f"{sandbox.info.hubspot}/__sandbox/stats", timeout=30).json()["records"]
    assert live[("salesforce", "Lead")] == sf["Lead"]
    assert live[("salesforce", "Task")] == sf["Task"]
    assert live[("hubspot", "contacts")] == hs["contacts"]
    assert {r["system"]: r["outcome"] for r in status["runs"]} == {"salesforce": "ok", "hubspot": "ok"}
    assert {u["system"] for u in status["api_usage"]} == {"salesforce", "hubspot"}


def test_a_second_sync_fetches_only_the_overlap(sandbox: Sandbox, tmp_path: Path) -> None:
    config, store = tmp_path / "detente.yaml", tmp_path / "store.db"
    sandbox.write_config(config)
    assert detente(config, store, "sync", "--system", "salesforce", "--object", "Lead").returncode == 0
    again = detente(config, store, "sync", "--system", "salesforce", "--object", "Lead")
    assert again.returncode == 0, again.stderr
    line = next(x for x in again.stdout.splitlines() if x.startswith("salesforce Lead"))
    assert "inserted 0, updated 0, deleted 0" in line


def test_sync_of_an_unconfigured_system_says_what_to_set(tmp_path: Path) -> None:
    config = tmp_path / "detente.yaml"
    config.write_text("log:\n  level: warning\n")
    result = detente(config, tmp_path / "s.db", "sync", "--system", "hubspot")
    assert result.returncode == 2
    assert "set DETENTE_HUBSPOT__TOKEN" in result.stderr
    assert "Traceback" not in result.stderr


def test_sync_with_refused_credentials_fails_without_leaking_them(sandbox: Sandbox, tmp_path: Path) -> None:
    config, store = tmp_path / "detente.yaml", tmp_path / "store.db"
    sandbox.write_config(config)
    env_secret = "pat-na1-00000000-dead-beef-0000-000000000000"
    os.environ["DETENTE_HUBSPOT__TOKEN"] = env_secret
    try:
        result = detente(config, store, "sync", "--system", "hubspot")
    finally:
        del os.environ["DETENTE_HUBSPOT__TOKEN"]
    assert result.returncode == 1
    assert "DETENTE_HUBSPOT__TOKEN" in result.stderr
    assert env_secret not in result.stderr + result.stdout
