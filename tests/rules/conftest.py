"""Fixtures for the rules tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from tests.rules.helpers import add_attributes


@pytest.fixture
def rules_store(store: Engine) -> Iterator[Engine]:
    """A migrated store (SQLite and PostgreSQL) with the JSON attributes column rules read."""
    add_attributes(store)
    yield store
