"""Fixtures for the notify tests: the demo world pulled, normalized and audited per module (on
SQLite and PostgreSQL), and the local SMTP and webhook servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from detente.reconcile.ledger import reconcile
from detente.rules import Rules
from tests.normalize.conftest import NOW, World
from tests.notify.support import Hook, SmtpServer, smtp_server, webhook_server
from tests.reconcile.conftest import module_store_url, pulled, rules, world  # noqa: F401 - fixtures reused


@pytest.fixture(scope="module")
def audited(world: World, rules: Rules) -> World:  # noqa: F811 - the fixtures imported above
    """The world with its findings, stages and SLA clocks as the audit judges them at NOW."""
    reconcile(world.engine, rules, NOW)
    return world


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def hook() -> Iterator[Hook]:
    with webhook_server() as server:
        yield server
