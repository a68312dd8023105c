"""Shared fixtures: a running sandbox (real HTTPS on 127.0.0.1) and real clients for it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
import structlog
from hubspot import HubSpot
from simple_salesforce import Salesforce
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from urllib3.util.retry import Retry

from detente.sandbox.server import Sandbox, SandboxInfo

# Every generated world in the tests is anchored here, so runs are reproducible.
AS_OF = datetime(2026, 11, 16, 15, 0, tzinfo=UTC)
SEED = 7
SIZE = 300


def trusting_session(info: SandboxInfo) -> requests.Session:
    """A requests session that trusts the sandbox CA (and ignores REQUESTS_CA_BUNDLE)."""
    session = requests.Session()
    session.verify = str(info.ca)
    session.trust_env = False
    return session


def sf_token(sandbox: Sandbox) -> dict[str, str]:
    """OAuth password grant against the sandbox's token endpoint."""
    assert sandbox.info is not None
    c = sandbox.credentials
    response = trusting_session(sandbox.info).post(
        f"{sandbox.info.salesforce}/services/oauth2/token",
        data={"grant_type": "password", "client_id": c.sf_client_id, "client_secret": c.sf_client_secret,
              "username": c.sf_username, "password": c.sf_password},
        timeout=10,
    )
    response.raise_for_status()
    body: dict[str, str] = response.json()
    return body


def sf_client(sandbox: Sandbox) -> Salesforce:
    """simple-salesforce, unmodified, given a session that trusts the sandbox CA."""
    assert sandbox.info is not None
    token = sf_token(sandbox)
    return Salesforce(
        instance_url=token["instance_url"], session_id=token["access_token"],
        session=trusting_session(sandbox.info), version="59.0",
    )


def hs_client(sandbox: Sandbox, retry: Retry | None = None) -> HubSpot:
    """hubspot-api-client, unmodified, pointed at the sandbox with host= and its CA."""
    assert sandbox.info is not None
    kwargs = {"retry": retry} if retry is not None else {}
    return HubSpot(access_token=sandbox.credentials.hs_token, host=sandbox.info.hubspot,
                   ssl_ca_cert=str(sandbox.info.ca), **kwargs)


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A generated demo world shared by the session. Tests must not change its records;
    tests that write use ``empty_sandbox`` or create their own records."""
    sb = Sandbox(state_dir=tmp_path_factory.mktemp("sandbox"), dataset="demo", size=SIZE, seed=SEED, as_of=AS_OF)
    sb.start()
    yield sb
    sb.stop()


@pytest.fixture
def empty_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A fresh sandbox with owners only, for tests that write."""
    sb = Sandbox(state_dir=tmp_path_factory.mktemp("empty"), dataset="empty", size=0, seed=SEED, as_of=AS_OF)
    sb.start()
    yield sb
    sb.stop()


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """A command run in this process sets up logging (level, format) for the whole process;
    the next test finds logging as it was, whatever order the tests run in."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture(autouse=True)
def _calm_sandbox(request: pytest.FixtureRequest) -> None:
    """Faults and frozen clocks set by one test never leak into the next one that shares
    the session's sandbox (``empty_sandbox`` is fresh for every test anyway)."""
    if "sandbox" in request.fixturenames:
        sb: Sandbox = request.getfixturevalue("sandbox")
        for control in (sb.sf_control, sb.hs_control):
            control.reset()


# -- the store on SQLite and on PostgreSQL ------------------------------------------------------

POSTGRES_URL = os.environ.get("DETENTE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _postgres_admin() -> Engine | None:
    """An engine on the PostgreSQL server for the tests, or None when there is none.

    On CI (CI=true) a missing server is an error, not a skip.
    """
    engine = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        engine.dispose()
        if os.environ.get("CI", "").lower() == "true":
            raise RuntimeError(
                f"CI needs PostgreSQL at {POSTGRES_URL} (set DETENTE_TEST_POSTGRES_URL): {exc}"
            ) from exc
        return None
    return engine


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Engine | None]:
    admin = _postgres_admin()
    yield admin
    if admin is not None:
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path, postgres_server: Engine | None) -> Iterator[str]:
    """A fresh, empty store on each backend (one database per test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'detente.db'}"
        return
    if postgres_server is None:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}; set DETENTE_TEST_POSTGRES_URL to run these")
    name = f"detente_test_{uuid.uuid4().hex[:12]}"
    with postgres_server.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_URL).set(database=name)
    yield url.render_as_string(hide_password=False)
    with postgres_server.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def store(store_url: str) -> Iterator[Engine]:
    """An engine on a fresh store whose schema is migrated to the latest version."""
    from detente.store.engine import create_schema, make_engine

    engine = make_engine(store_url)
    create_schema(engine)
    yield engine
    engine.dispose()
