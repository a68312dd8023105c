"""Fixtures for the normalize tests: the session's demo sandbox pulled once over HTTPS, and
module-scoped stores on SQLite and PostgreSQL that hold it, normalized."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from detente.normalize.mapping import DEFAULT
from detente.normalize.run import normalize
from detente.sandbox.server import Sandbox
from detente.store.engine import create_schema, make_engine
from tests.conftest import AS_OF, POSTGRES_URL
from tests.normalize.support import load_raw, pull, raw_rows

NOW = AS_OF + timedelta(days=1)


@pytest.fixture(scope="session")
def pulled(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The raw layer of the session's demo world, pulled once through both connectors."""
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('pulled') / 'raw.db'}")
    create_schema(engine)
    pull(engine, sandbox, NOW)
    rows = raw_rows(engine)
    engine.dispose()
    return rows


def _store_url(backend: str, where: Path, admin: Engine | None) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{where / 'detente.db'}"
        return
    if admin is None:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}; set DETENTE_TEST_POSTGRES_URL to run these")
    name = f"detente_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                     postgres_server: Engine | None) -> Iterator[str]:
    """A fresh store per module and backend."""
    yield from _store_url(request.param, tmp_path_factory.mktemp("normalize"), postgres_server)


@dataclass
class World:
    engine: Engine
    manifest: dict[str, Any]


@pytest.fixture(scope="module")
def world(module_store_url: str, pulled: list[dict[str, Any]], sandbox: Sandbox) -> Iterator[World]:
    """The demo world's raw layer in a store, normalized once."""
    engine = make_engine(module_store_url)
    create_schema(engine)
    load_raw(engine, pulled)
    normalize(engine, now=NOW, maps=DEFAULT)
    yield World(engine, sandbox.manifest())
    engine.dispose()
