"""Fixtures of the daemon tests: a private sandbox world, a rules file of the test's own, and
daemon processes that never outlive their test."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from detente.sandbox.server import Sandbox
from tests.daemon.support import RULES, Daemon


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Sandbox]:
    """A demo world of this test's own, anchored an hour ago: the daemon reads the real clock."""
    as_of = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    sb = Sandbox(state_dir=tmp_path / "sandbox", dataset="demo", size=100, seed=23, as_of=as_of)
    sb.start()
    yield sb
    sb.stop()


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    """A copy of config/rules.yaml the test may edit."""
    path = tmp_path / "rules.yaml"
    shutil.copy(RULES, path)
    return path


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[[Path], Daemon]]:
    """Start ``detente run`` processes; any still running at the end of the test is killed."""
    started: list[Daemon] = []

    def start(config: Path) -> Daemon:
        daemon = Daemon(config, tmp_path / f"daemon-{len(started) + 1}.log")
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()
