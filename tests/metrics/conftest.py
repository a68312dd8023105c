"""The metrics tests read the audit tests' stores (the session's world, on SQLite and PostgreSQL),
audited once per module."""

from __future__ import annotations

import pytest

from detente.reconcile.ledger import reconcile
from detente.rules import Rules
from tests.normalize.conftest import NOW, World, module_store_url, pulled, world  # noqa: F401 - fixtures reused
from tests.reconcile.conftest import rules  # noqa: F401 - fixture reused


@pytest.fixture(scope="module")
def audited(world: World, rules: Rules) -> World:  # noqa: F811 - the fixtures imported above
    """The world with its findings, stages, clocks and metrics rows reconciled as of NOW."""
    reconcile(world.engine, rules, NOW)
    return world
