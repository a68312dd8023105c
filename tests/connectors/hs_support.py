"""Fixtures and helpers shared by the HubSpot connector tests (imported by each module).

One empty sandbox per test module, emptied again (owners kept) before each test, with the
clock frozen at ``T0``, so tests stay fast while each starts from a known world. Records are
set up directly in the sandbox's world (``hs_insert`` and friends) and read back through the
real client over HTTPS.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from detente.connectors.base import CallBudget, Page, Position
from detente.connectors.hubspot import SPECS, HubSpotConnector
from detente.sandbox.control import FaultProfile
from detente.sandbox.schema import HUBSPOT_OBJECTS
from detente.sandbox.server import Sandbox
from detente.settings import HubSpotSettings
from detente.store.raw import QUARANTINE, RAW
from tests.conftest import AS_OF, SEED

T0 = AS_OF + timedelta(days=1)
RECORD_OBJECTS = tuple(SPECS)


@pytest.fixture(scope="module")
def hs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sb = Sandbox(state_dir=tmp_path_factory.mktemp("hs"), dataset="empty", size=0, seed=SEED, as_of=AS_OF)
    sb.start()
    yield sb
    sb.stop()


@pytest.fixture
def hs(hs_server: Sandbox) -> Sandbox:
    """The module's sandbox: owners only, no faults, the clock frozen at T0."""
    with hs_server.world.transaction() as c:
        for name in HUBSPOT_OBJECTS:
            c.execute(f"DELETE FROM hs_{name}")
        for table in ("hs_history", "hs_assoc", "hs_merged", "hs_custom_props"):
            c.execute(f"DELETE FROM {table}")
    hs_server.hs_control.reset()
    hs_server.hs_control.clock.set(T0)
    return hs_server


def faults(sb: Sandbox, **profile: Any) -> None:
    """Set the sandbox's fault profile (a fresh one also empties its rate windows)."""
    sb.hs_control.set_faults(FaultProfile(**profile))


def settings(sb: Sandbox, **overrides: Any) -> HubSpotSettings:
    """Settings that reach the sandbox, with short waits and loose throttles for tests."""
    assert sb.info is not None
    values: dict[str, Any] = {
        "base_url": sb.info.hubspot, "token": sb.credentials.hs_token, "ca_file": sb.info.ca,
        "timeout_seconds": 5, "backoff_factor": 0.01, "backoff_max_seconds": 0.05, "retries": 8,
        "burst_per_10s": 100_000, "search_per_second": 10_000, "lookback_seconds": 300,
    }
    values.update(overrides)
    return HubSpotSettings(**values)


def connector(sb: Sandbox, *, budget: CallBudget | None = None, **overrides: Any) -> HubSpotConnector:
    return HubSpotConnector(settings(sb, **overrides), budget=budget)


def contacts(n: int, start: int = 0, **extra: Any) -> list[dict[str, Any]]:
    return [
        {"email": f"person{i}@example.com", "firstname": f"P{i}", "lastname": "Test",
         "lifecyclestage": "lead", "hs_lead_status": "NEW", **extra}
        for i in range(start, start + n)
    ]


def tasks(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"hs_task_subject": f"Task {i}", "hs_task_status": "NOT_STARTED", "hs_timestamp": "2026-11-20T09:00:00.000Z"}
        for i in range(start, start + n)
    ]


def insert(sb: Sandbox, obj: str, rows: list[dict[str, Any]], at: datetime | list[datetime]) -> list[int]:
    """Create records last modified at ``at`` (one time for all, or one per record)."""
    times = at if isinstance(at, list) else [at] * len(rows)
    return sb.world.hs_insert(obj, rows, max(times), created=times)


class Interleaved:
    """Wraps a connector so a test can act between the pages of a pull: ``hook(object, n)``
    runs after page n (1-based) of an object has been handed to the runner."""

    def __init__(self, inner: HubSpotConnector, hook: Any) -> None:
        self.inner = inner
        self.hook = hook
        self.system = inner.system

    def objects(self) -> Any:
        return self.inner.objects()

    def pull(self, object: str, since: Position | None, *, until: datetime, full: bool = False) -> Iterator[Page]:
        for n, page in enumerate(self.inner.pull(object, since, until=until, full=full), start=1):
            yield page
            self.hook(object, n)

    def deleted(self, object: str, since: datetime, *, until: datetime) -> Iterator[Page]:
        return self.inner.deleted(object, since, until=until)


def stored_rows(engine: Engine, obj: str) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(select(RAW).where(RAW.c.system == "hubspot", RAW.c.object == obj)).all()
    return {r.record_id: r for r in rows}


def quarantined(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {r.record_id: r for r in conn.execute(select(QUARANTINE)).all()}


def cursor(engine: Engine, obj: str) -> Position | None:
    from detente.store.raw import read_position

    return read_position(engine, "hubspot", obj)


def served(sb: Sandbox, obj: str) -> dict[str, dict[str, Any]]:
    """The sandbox's live records: id → {"properties", "associations"}."""
    out: dict[str, dict[str, Any]] = {}
    for row in sb.world.query(f"SELECT id, props FROM hs_{obj} WHERE archived = 0"):
        out[str(row["id"])] = {"properties": json.loads(row["props"]), "associations": {}}
    for to in SPECS[obj].associations if obj in SPECS else ():
        for r in sb.world.query(
            "SELECT DISTINCT from_id, to_id FROM hs_assoc WHERE from_object = ? AND to_object = ? ORDER BY to_id",
            (obj, to),
        ):
            if str(r["from_id"]) in out:
                out[str(r["from_id"])]["associations"].setdefault(to, []).append(str(r["to_id"]))
    return out


def assert_store_matches(engine: Engine, sb: Sandbox, objects: tuple[str, ...] = RECORD_OBJECTS) -> None:
    """The store holds exactly the sandbox's live records (values and associations), every
    other stored record is deleted, and merged-away ones point at their survivor."""
    for obj in objects:
        want = served(sb, obj)
        rows = stored_rows(engine, obj)
        live = {rid for rid, r in rows.items() if not r.deleted}
        assert live == set(want), f"{obj}: missing {sorted(set(want) - live)[:5]}, extra {sorted(live - set(want))[:5]}"
        for rid, record in want.items():
            data = rows[rid].data
            got = {k: v for k, v in data["properties"].items() if v not in (None, "")}
            expected = {k: v for k, v in record["properties"].items() if v not in (None, "")}
            assert got == expected, f"{obj} {rid}: properties differ"
            for to in SPECS[obj].associations:
                assert data["associations"][to] == record["associations"].get(to, []), f"{obj} {rid} → {to}"
        merged = {str(r[0]): str(r[1]) for r in sb.world.tuples(
            "SELECT old_id, new_id FROM hs_merged WHERE object = ?", (obj,))}
        for rid, survivor in merged.items():
            if rid in rows:
                assert rows[rid].deleted and rows[rid].merged_into == survivor, f"{obj} {rid} merged into {survivor}"


def api_calls(sb: Sandbox) -> int:
    return sb.hs_control.total_calls
