"""Fixtures of the dashboard tests: the session's demo world, pulled, normalized and audited once
per module (on SQLite and PostgreSQL), from the audit tests' fixtures."""

from __future__ import annotations

import pytest

from detente.reconcile.ledger import reconcile
from detente.rules import Rules
from tests.normalize.conftest import NOW, World, module_store_url, pulled, world  # noqa: F401 - fixtures reused
from tests.reconcile.conftest import rules  # noqa: F401 - fixture reused

PERIOD = "2026-10"  # a whole month of the world, before the day it was generated for


@pytest.fixture(scope="module")
def audited(world: World, rules: Rules) -> World:  # noqa: F811 - the fixtures imported above
    """The world with its findings, stages and clocks reconciled as of NOW."""
    reconcile(world.engine, rules, NOW)
    return world
