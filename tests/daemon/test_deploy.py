"""The deployment files agree with the code: the example settings are valid and hold no secret;
the systemd unit runs ``detente run`` and gives it longer to stop than the daemon allows itself."""

from __future__ import annotations

import os
import re

import pytest
import yaml

from detente.settings import load_settings
from tests.daemon.support import REPO

EXAMPLE = REPO / "deploy" / "detente.example.yaml"
UNIT = REPO / "deploy" / "detente.service"


def test_the_example_settings_are_valid_and_hold_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("DETENTE_")]:
        monkeypatch.delenv(name)
    settings = load_settings(EXAMPLE)
    assert settings.secret_values() == []
    assert settings.daemon.listen.startswith("127.0.0.1:") and settings.writeback.dry_run
    raw = yaml.safe_load(EXAMPLE.read_text())
    assert set(raw) == {"salesforce", "hubspot", "store", "log", "writeback", "daemon", "dashboard"}


def test_the_unit_runs_the_daemon_and_waits_longer_than_its_shutdown_bound() -> None:
    unit = UNIT.read_text()
    settings = yaml.safe_load(EXAMPLE.read_text())
    assert "ExecStart=/opt/detente/.venv/bin/detente --config /etc/detente/detente.yaml run" in unit
    assert "KillSignal=SIGTERM" in unit and "Restart=on-failure" in unit and "Type=simple" in unit
    stop = re.search(r"^TimeoutStopSec=(\d+)$", unit, re.M)
    assert stop is not None and int(stop.group(1)) > settings["daemon"]["shutdown_seconds"]
    store_dir = settings["store"]["url"].removeprefix("sqlite:///").rsplit("/", 1)[0]
    assert f"ReadWritePaths={store_dir}" in unit
