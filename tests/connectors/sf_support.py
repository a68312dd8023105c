"""Fixtures and helpers shared by the Salesforce connector tests (imported by each module).

One empty sandbox per test module, emptied again (users kept) before each test, with the
clock frozen, so tests stay fast while each starts from a known world.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from detente.connectors.base import CallBudget, Page, Position
from detente.connectors.salesforce import OBJECTS, SalesforceConnector
from detente.sandbox.schema import SALESFORCE_OBJECTS, SfObject
from detente.sandbox.server import Sandbox
from detente.settings import SalesforceSettings
from detente.store.raw import RAW
from tests.conftest import AS_OF, SEED

T0 = AS_OF + timedelta(days=1)
LEAD = SALESFORCE_OBJECTS["Lead"]
CONTACT = SALESFORCE_OBJECTS["Contact"]
ACCOUNT = SALESFORCE_OBJECTS["Account"]
OPPORTUNITY = SALESFORCE_OBJECTS["Opportunity"]
TASK = SALESFORCE_OBJECTS["Task"]


@pytest.fixture(scope="module")
def sf_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sb = Sandbox(state_dir=tmp_path_factory.mktemp("sf"), dataset="empty", size=0, seed=SEED, as_of=AS_OF)
    sb.start()
    yield sb
    sb.stop()


_OPEN: list[SalesforceConnector] = []


@pytest.fixture(autouse=True)
def _close_connectors() -> Iterator[None]:
    """Connections left open would hold up the sandbox's shutdown."""
    yield
    while _OPEN:
        _OPEN.pop().close()


@pytest.fixture
def sf(sf_server: Sandbox) -> Sandbox:
    """The module's sandbox: users only, no faults, the clock frozen at T0."""
    with sf_server.world.transaction() as c:
        for name in SALESFORCE_OBJECTS:
            if name != "User":
                c.execute(f'DELETE FROM "sf_{name}"')
        c.execute("DELETE FROM sf_deleted")
    sf_server.sf_control.reset()
    sf_server.sf_control.clock.set(T0)
    return sf_server


def set_clock(sb: Sandbox, now: datetime) -> None:
    sb.sf_control.clock.set(now)


def settings(sb: Sandbox, **overrides: Any) -> SalesforceSettings:
    """Settings that reach the sandbox, with small pages and short waits for tests."""
    assert sb.info is not None
    c = sb.credentials
    values: dict[str, Any] = {
        "login_url": sb.info.salesforce, "auth": "password", "client_id": c.sf_client_id,
        "client_secret": c.sf_client_secret, "username": c.sf_username, "password": c.sf_password,
        "refresh_token": c.sf_refresh_token, "ca_file": sb.info.ca, "page_size": 200,
        "bulk_poll_seconds": 0.01, "backoff_factor": 0.01, "backoff_max_seconds": 0.05, "retries": 8,
        "timeout_seconds": 5,
    }
    values.update(overrides)
    return SalesforceSettings(**values)


def connector(
    sb: Sandbox, *, budget: CallBudget | None = None, objects: tuple[str, ...] = OBJECTS, **overrides: Any
) -> SalesforceConnector:
    conn = SalesforceConnector(
        settings(sb, **overrides), budget=budget, clock=sb.sf_control.clock.now, objects=objects
    )
    _OPEN.append(conn)
    return conn


def insert(sb: Sandbox, obj: SfObject, rows: list[dict[str, Any]], now: datetime | None = None) -> list[str]:
    """Records written straight into the world, stamped ``now`` (default: the sandbox clock)."""
    return sb.world.sf_insert(obj, rows, now or sb.sf_control.clock.now())


def leads(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"LastName": f"Lead{i}", "Company": f"Co{i}", "Email": f"l{i}@example.com",
             "Status": "Open - Not Contacted", "Lead_Score__c": float(i % 90)} for i in range(start, start + n)]


def purge(sb: Sandbox, obj: SfObject, record_id: str) -> None:
    """Empty the recycle bin of one record: queryAll no longer sees it, getDeleted still does."""
    with sb.world.transaction() as c:
        c.execute(f'DELETE FROM "sf_{obj.name}" WHERE "Id" = ?', (record_id,))


# -- comparing the store with the sandbox --------------------------------------------------------


def _expected(obj: SfObject, name: str, value: Any) -> Any:
    f = obj.field(name)
    if value is None or f is None:
        return value
    if f.type == "boolean":
        return bool(value)
    if f.type == "int":
        return int(value)
    if f.type in {"double", "currency", "percent"}:
        return float(value)
    if value == "":
        return None
    return value


def world_rows(sb: Sandbox, name: str) -> dict[str, tuple[bool, dict[str, Any]]]:
    obj = SALESFORCE_OBJECTS[name]
    rows = sb.world.query(f'SELECT * FROM "sf_{name}"')
    return {
        r["Id"]: (bool(r["IsDeleted"]), {k: _expected(obj, k, r[k]) for k in r.keys()})  # noqa: SIM118
        for r in rows
    }


def stored_rows(engine: Engine, name: str) -> dict[str, tuple[bool, dict[str, Any]]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(RAW.c.record_id, RAW.c.deleted, RAW.c.data).where(RAW.c.system == "salesforce", RAW.c.object == name)
        ).all()
    return {r.record_id: (bool(r.deleted), r.data) for r in rows}


def assert_store_matches(engine: Engine, sb: Sandbox, objects: tuple[str, ...] = OBJECTS) -> None:
    """Every live record stored with the sandbox's values; every deleted or purged one stored deleted."""
    for name in objects:
        world = world_rows(sb, name)
        stored = stored_rows(engine, name)
        live_world = {rid: data for rid, (deleted, data) in world.items() if not deleted}
        live_stored = {rid: data for rid, (deleted, data) in stored.items() if not deleted}
        assert live_stored.keys() == live_world.keys(), f"{name}: live ids differ"
        for rid, data in live_world.items():
            assert live_stored[rid] == data, f"{name} {rid}: values differ"
        gone = {rid for rid, (deleted, _) in world.items() if deleted}
        assert gone <= {rid for rid, (deleted, _) in stored.items() if deleted}, f"{name}: a deletion was missed"


def cursor(engine: Engine, name: str) -> Position | None:
    from detente.store.raw import read_position

    return read_position(engine, "salesforce", name)


class Interleaved:
    """A connector whose pages pass through ``between`` before the next is read: lets a test
    change the CRM while a pull is under way."""

    def __init__(self, inner: SalesforceConnector, between: Any) -> None:
        self.inner = inner
        self.system = inner.system
        self.between = between
        self.pages = 0

    def objects(self) -> Any:
        return self.inner.objects()

    def pull(self, object: str, since: Position | None, *, until: datetime, full: bool = False) -> Iterator[Page]:
        for page in self.inner.pull(object, since, until=until, full=full):
            yield page
            self.pages += 1
            self.between(object, self.pages)

    def deleted(self, object: str, since: datetime, *, until: datetime) -> Iterator[Page]:
        return self.inner.deleted(object, since, until=until)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]
