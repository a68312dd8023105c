"""Fixtures for the audit tests: the session's demo world, pulled and normalized per module
(on SQLite and PostgreSQL), from the normalize tests' fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from detente.rules import Rules, load_rules
from tests.normalize.conftest import module_store_url, pulled, world  # noqa: F401 - fixtures reused

RULES = Path(__file__).resolve().parents[2] / "config" / "rules.yaml"


@pytest.fixture(scope="session")
def rules() -> Rules:
    return load_rules(RULES)
