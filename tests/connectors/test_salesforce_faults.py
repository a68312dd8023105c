# ruff: noqa: F401, F811 - the fixtures are imported from sf_support
"""Throttling, server errors, expired sessions, slow pages, call budgets and the daily quota:
the pull either completes with the same store as a clean pull, or stops cleanly and resumes."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from detente.connectors.base import BudgetExhausted, CallBudget
from detente.connectors.salesforce import SalesforceConnector
from detente.connectors.sf_http import parse_limit_info
from detente.pull import pull
from detente.sandbox.control import FaultProfile
from detente.sandbox.server import Sandbox
from detente.store.engine import create_schema, make_engine
from tests.connectors.sf_support import (
    ACCOUNT,
    LEAD,
    T0,
    _close_connectors,
    assert_store_matches,
    connector,
    cursor,
    insert,
    leads,
    set_clock,
    sf,
    sf_server,
    stored_rows,
)

OBJECTS = ("Account", "Lead")


def _world(sf: Sandbox) -> None:
    insert(sf, ACCOUNT, [{"Name": f"Account {i}"} for i in range(150)], T0 - timedelta(hours=2))
    insert(sf, LEAD, leads(500), T0 - timedelta(hours=1))


def _faults(sf: Sandbox, **profile: Any) -> None:
    sf.sf_control.set_faults(FaultProfile(seed=3, **profile))


FAULTS = {
    "429 with Retry-After": {"rate_limited": 0.15, "retry_after_seconds": 1},
    "429 without Retry-After": {"rate_limited": 0.4, "without_retry_after": 1.0},
    "5xx": {"server_errors": 0.4},
    "expired session every 3 calls": {"expire_session_every": 3},
    "slow pages past the timeout": {"slow": 0.3, "slow_seconds": 1.0},
}


def _pull_under(sf: Sandbox, engine: Engine, profile: dict[str, Any]) -> tuple[SalesforceConnector, float]:
    _world(sf)
    _faults(sf, **profile)
    conn = connector(sf, objects=OBJECTS, timeout_seconds=0.3)
    started = time.monotonic()
    report = pull(engine, conn, now=T0, full=True)
    elapsed = time.monotonic() - started
    assert report.stopped is None
    assert_store_matches(engine, sf, OBJECTS)
    assert sum(sf.sf_control.faults_injected.values()) > 0
    # Every attempt, retries included, was counted: the sandbox saw each one (logins aside).
    assert conn.calls == sf.sf_control.total_calls + conn.logins
    assert sum(o.calls for o in report.objects) == conn.calls
    return conn, elapsed


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_pull_under_each_fault_stores_what_a_clean_pull_stores(sf: Sandbox, fault: str, tmp_path: Path) -> None:
    """The connector's part does not depend on the store, so one backend is enough here."""
    engine = make_engine(f"sqlite:///{tmp_path / 'faults.db'}")
    create_schema(engine)
    conn, elapsed = _pull_under(sf, engine, FAULTS[fault])
    if fault == "429 with Retry-After":
        assert elapsed >= 0.9 * sf.sf_control.faults_injected["rate_limited"]
    if fault == "expired session every 3 calls":
        assert conn.logins == 1 + sf.sf_control.faults_injected["expired_session"]
    engine.dispose()


def test_a_pull_under_every_fault_at_once_stores_what_a_clean_pull_stores(store: Engine, sf: Sandbox) -> None:
    _pull_under(sf, store, {"rate_limited": 0.15, "without_retry_after": 1.0, "server_errors": 0.15,
                            "expire_session_every": 4, "slow": 0.1, "slow_seconds": 1.0})


def test_a_run_budget_that_runs_out_stops_cleanly_and_the_next_run_resumes(store: Engine, sf: Sandbox) -> None:
    _world(sf)
    # login, 2 describes, the Account page, 1 getDeleted-free first pull: Lead gets 2 of its 4 pages
    report = pull(store, connector(sf, objects=OBJECTS, budget=CallBudget(per_run=6)), now=T0)
    assert report.stopped is not None and "per-run budget of 6" in report.stopped
    accounts, lead = report.objects
    assert accounts.stopped is None and accounts.fetched == 150
    assert lead.stopped and lead.fetched == 400
    position = cursor(store, "Lead")
    assert position is not None and position.last_id == max(stored_rows(store, "Lead"))
    resumed = pull(store, connector(sf, objects=OBJECTS), now=T0 + timedelta(minutes=1))
    assert resumed.stopped is None
    assert resumed.objects[1].inserted == 100
    assert_store_matches(store, sf, OBJECTS)


def test_the_daily_quota_stops_the_pull_until_the_next_day(store: Engine, sf: Sandbox) -> None:
    _world(sf)
    _faults(sf, daily_limit=5)
    conn = connector(sf, objects=OBJECTS)
    report = pull(store, conn, now=T0)
    assert report.stopped is not None and "daily API" in report.stopped
    assert conn.api_usage is not None and conn.api_usage.limit == 5
    assert stored_rows(store, "Lead")  # the pages before the quota ran out are kept
    set_clock(sf, T0 + timedelta(days=1))  # the next day the quota starts afresh
    _faults(sf, daily_limit=100)
    resumed = pull(store, connector(sf, objects=OBJECTS), now=T0 + timedelta(days=1))
    assert resumed.stopped is None
    assert_store_matches(store, sf, OBJECTS)


def test_a_quota_reserve_stops_before_the_org_runs_dry(sf: Sandbox) -> None:
    _world(sf)
    _faults(sf, daily_limit=8)
    conn = connector(sf, objects=OBJECTS, quota_reserve=3)
    with pytest.raises(BudgetExhausted, match="kept in reserve"):
        for name in OBJECTS:
            list(conn.pull(name, None, until=T0))
    assert sf.sf_control.calls_today == 5  # never past the reserve, never a 403


def test_limit_info_is_parsed_with_and_without_per_app_usage() -> None:
    assert parse_limit_info("api-usage=18/15000") == parse_limit_info(
        "api-usage=18/15000; per-app-api-usage=17/250(appName=sample-connected-app)"
    )
    usage = parse_limit_info("api-usage=18/15000")
    assert usage is not None and (usage.used, usage.limit, usage.remaining) == (18, 15000, 14982)
    assert parse_limit_info(None) is None and parse_limit_info("nonsense") is None
