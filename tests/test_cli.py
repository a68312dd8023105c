"""The ``detente`` command as a user runs it: a real process, its output and exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from detente.settings import load_settings
from tests.conftest import AS_OF

DETENTE = [sys.executable, "-m", "detente"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DETENTE, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_settings_command_reports_located_errors_and_exits_nonzero(tmp_path: Path) -> None:
    bad = tmp_path / "d.yaml"
    bad.write_text("hubspot:\n  timeout_seconds: forever\n")
    result = run("--config", str(bad), "settings")
    assert result.returncode == 2
    assert f"{bad}:2:3: hubspot.timeout_seconds" in result.stderr
    assert "Traceback" not in result.stderr


def test_settings_command_masks_secrets(tmp_path: Path) -> None:
    good = tmp_path / "d.yaml"
    good.write_text("hubspot:\n  token: pat-na1-aaaabbbb-cccc-dddd-eeee-ffff00001111\n")
    result = run("settings", env={"DETENTE_CONFIG": str(good)})
    assert result.returncode == 0, result.stderr
    assert "ffff00001111" not in result.stdout
    assert json.loads(result.stdout)["hubspot"]["token"] == "**********"


def test_sandbox_prints_a_ready_line_writes_config_and_stops_on_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "sandbox.yaml"
    proc = subprocess.Popen(
        [*DETENTE, "sandbox", "--dataset", "empty", "--as-of", AS_OF.isoformat(),
         "--state-dir", str(tmp_path / "state"), "--write-config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert ready["event"] == "sandbox.ready"
        assert ready["salesforce"].startswith("https://127.0.0.1:")
        assert ready["hubspot"].startswith("https://127.0.0.1:")
        assert Path(ready["ca"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
        written = yaml.safe_load(config.read_text())
        assert written["salesforce"]["instance_url"] == ready["salesforce"]
        assert written["hubspot"]["base_url"] == ready["hubspot"]
        assert oct(config.stat().st_mode & 0o777) == "0o600"
        settings = load_settings(config)  # detente accepts what the sandbox wrote
        assert settings.hubspot.token is not None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sandbox_rejects_an_unknown_dataset() -> None:
    result = run("sandbox", "--dataset", "huge")
    assert result.returncode == 2
    assert "unknown dataset 'huge'; expected demo or empty" in result.stderr
