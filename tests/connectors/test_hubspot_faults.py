# ruff: noqa: F811 - the fixtures are imported from hs_support
"""HubSpot pulls under faults end with the same store as a clean pull; budgets and HubSpot's
daily limit stop them cleanly at the last committed page, and the next pull resumes."""

from __future__ import annotations

import random
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from urllib3.exceptions import ReadTimeoutError

from detente.connectors.base import BudgetExhausted, CallBudget, Position
from detente.connectors.hs_transport import Meter, make_retry, translate
from detente.errors import AuthError, FatalError, RetriableError
from detente.pull import pull
from detente.sandbox.server import Sandbox
from detente.sandbox.store import parse_datetime
from detente.settings import HubSpotSettings
from detente.store.engine import create_schema, make_engine
from detente.store.raw import RAW
from tests.connectors.hs_support import (  # noqa: F401 - fixtures
    T0,
    assert_store_matches,
    connector,
    contacts,
    cursor,
    faults,
    hs,
    hs_server,
    insert,
    stored_rows,
    tasks,
)

OBJECTS = ["owners", "contacts", "companies", "tasks"]
LOOKBACK = timedelta(minutes=5)


def world(sb: Sandbox) -> list[int]:
    """Contacts (with history), a company and tasks, linked; about 20 calls to pull."""
    start = T0 - timedelta(hours=2)
    people = insert(sb, "contacts", contacts(250), [start + timedelta(seconds=i) for i in range(250)])
    company = insert(sb, "companies", [{"name": "Acme", "domain": "acme.example"}], start)[0]
    todo = insert(sb, "tasks", tasks(150), [start + timedelta(seconds=2 * i) for i in range(150)])
    sb.world.hs_associate([("contacts", p, "companies", company, 279) for p in people[:40]])
    sb.world.hs_associate([("tasks", t, "contacts", p, 204) for t, p in zip(todo, people, strict=False)])
    for p in people[::25]:
        sb.world.hs_update("contacts", p, {"lifecyclestage": "marketingqualifiedlead"}, start + timedelta(hours=1))
    return people


def snapshot(engine: Engine) -> dict[tuple[str, str], Any]:
    with engine.connect() as conn:
        rows = conn.execute(select(RAW).where(RAW.c.system == "hubspot")).all()
    return {(r.object, r.record_id): (r.deleted, r.merged_into, r.data, r.modified_at) for r in rows}


def clean_snapshot(sb: Sandbox, tmp_path: Path) -> dict[tuple[str, str], Any]:
    engine = make_engine(f"sqlite:///{tmp_path / 'clean.db'}")
    create_schema(engine)
    with connector(sb) as c:
        pull(engine, c, now=T0, objects=OBJECTS, full=True)
    shot = snapshot(engine)
    engine.dispose()
    return shot


def run(engine: Engine, sb: Sandbox, *, budget: CallBudget | None = None, full: bool = True,
        lookback: timedelta = LOOKBACK, at: Any = T0, **overrides: Any) -> Any:
    with connector(sb, budget=budget, **overrides) as c:
        return pull(engine, c, now=at, objects=OBJECTS, full=full, lookback=lookback)


def seed_where(share: float, outcomes: list[bool]) -> int:
    """A fault seed whose successive rolls against ``share`` come out as ``outcomes``."""
    for seed in range(100_000):
        rng = random.Random(seed)
        if all((rng.random() < share) is hit for hit in outcomes):
            return seed
    raise AssertionError("no such seed")


@pytest.mark.parametrize(
    "profile",
    [
        pytest.param({"rate_limited": 0.3, "retry_after_seconds": 0, "seed": 3}, id="429-retry-after-0"),
        pytest.param({"rate_limited": 0.3, "without_retry_after": 1.0, "seed": 4}, id="429-without-retry-after"),
        pytest.param({"server_errors": 0.3, "seed": 5}, id="5xx"),
        pytest.param({"slow": 0.3, "slow_seconds": 0.05, "seed": 6}, id="slow"),
    ],
)
def test_a_pull_under_faults_stores_what_a_clean_pull_stores(
    store: Engine, hs: Sandbox, tmp_path: Path, profile: dict[str, Any]
) -> None:
    world(hs)
    clean = clean_snapshot(hs, tmp_path)
    faults(hs, **profile)
    before = hs.hs_control.total_calls
    budget = CallBudget()
    report = run(store, hs, budget=budget)
    assert report.stopped is None
    assert hs.hs_control.faults_injected, "the profile injected nothing"
    assert snapshot(store) == clean
    # Every attempt, retries included, was counted: against the budget and in the pages.
    assert budget.used == hs.hs_control.total_calls - before == sum(o.calls for o in report.objects)


def test_a_429_with_retry_after_is_waited_out(store: Engine, hs: Sandbox) -> None:
    world(hs)
    faults(hs, rate_limited=0.1, retry_after_seconds=1, seed=seed_where(0.1, [True] + [False] * 40))
    started = time.monotonic()
    run(store, hs)
    assert hs.hs_control.faults_injected["rate_limited"] == 1
    assert time.monotonic() - started >= 1.0
    assert_store_matches(store, hs, ("contacts", "companies", "tasks"))


def test_a_timed_out_page_is_read_again(store: Engine, hs: Sandbox) -> None:
    world(hs)
    faults(hs, slow=0.15, slow_seconds=0.6, seed=1)
    run(store, hs, timeout_seconds=0.25)
    assert hs.hs_control.faults_injected["slow"] > 0
    assert_store_matches(store, hs, ("contacts", "companies", "tasks"))


def test_retries_that_run_out_are_a_retriable_error_without_the_body(store: Engine, hs: Sandbox) -> None:
    world(hs)
    faults(hs, rate_limited=1.0, retry_after_seconds=0)
    budget = CallBudget()
    with pytest.raises(RetriableError) as caught:
        run(store, hs, budget=budget, retries=2)
    assert "429" in str(caught.value) and "{" not in str(caught.value)
    assert budget.used == hs.hs_control.total_calls == 3  # the first attempt and two retries


def test_the_search_throttle_keeps_under_the_portal_limit(hs: Sandbox) -> None:
    insert(hs, "tasks", tasks(1_000), [T0 - timedelta(seconds=i) for i in range(1_000)])
    faults(hs, search_per_second=5)
    started = time.monotonic()
    with connector(hs, search_per_second=4, page_size=100) as c:
        pages = list(c.pull("tasks", None, until=T0))
    assert sum(len(p.records) for p in pages) == 1_000
    assert "limit_secondly" not in hs.hs_control.faults_injected
    assert time.monotonic() - started >= 2.0  # 11 searches at 4 per second


def truthful(engine: Engine, sb: Sandbox, obj: str) -> Position | None:
    """The stored cursor, after checking it claims nothing that is not stored."""
    position = cursor(engine, obj)
    if position is None:
        return None
    rows = sb.world.query(f"SELECT id, updated_at FROM hs_{obj} WHERE archived = 0")
    stored = {k for k, r in stored_rows(engine, obj).items() if not r.deleted}
    for r in rows:
        at = parse_datetime(r["updated_at"])
        claimed = at < position.modified_at or (
            at == position.modified_at and position.last_id and r["id"] <= int(position.last_id)
        )
        if claimed:
            assert str(r["id"]) in stored, f"{obj} {r['id']} is behind the cursor but not stored"
    return position


def test_a_run_budget_stops_at_the_last_committed_page_and_the_next_pull_resumes(
    store: Engine, hs: Sandbox
) -> None:
    people = world(hs)
    run(store, hs, full=True, page_size=50, records_per_page=100)
    later = T0 + timedelta(minutes=1)
    for p in people:
        hs.world.hs_update("contacts", p, {"jobtitle": "Changed"}, later + timedelta(milliseconds=p % 7))
    first = run(store, hs, budget=CallBudget(per_run=12), full=False, lookback=timedelta(0),
                at=later + timedelta(minutes=1), page_size=50, records_per_page=100)
    assert first.stopped and "per-run budget of 12" in first.stopped
    stopped_at = truthful(store, hs, "contacts")
    assert stopped_at is not None and stopped_at.modified_at >= later
    changed = [r for r in stored_rows(store, "contacts").values() if r.data["properties"]["jobtitle"] == "Changed"]
    assert 0 < len(changed) < len(people)
    second = run(store, hs, full=False, lookback=timedelta(0), at=later + timedelta(minutes=2),
                 page_size=50, records_per_page=100)
    assert second.stopped is None
    assert_store_matches(store, hs, ("contacts", "companies", "tasks"))
    resumed = next(o for o in second.objects if o.object == "contacts")
    assert resumed.fetched + len(changed) <= len(people) + 50  # no more than a page read twice


def test_the_daily_limit_stops_cleanly_and_the_next_pull_resumes(store: Engine, hs: Sandbox) -> None:
    world(hs)
    faults(hs, daily_limit=9)
    report = run(store, hs, page_size=50, records_per_page=100)
    assert report.stopped and "daily" in report.stopped.lower()
    truthful(store, hs, "contacts")
    assert hs.hs_control.faults_injected.get("quota", 0) <= 1
    faults(hs)
    hs.hs_control.calls_today = 0
    again = run(store, hs, full=False, page_size=50, records_per_page=100)
    assert again.stopped is None
    assert_store_matches(store, hs, ("contacts", "companies", "tasks"))


def test_a_daily_429_is_not_retried(store: Engine, hs: Sandbox) -> None:
    world(hs)
    faults(hs, daily_limit=1)
    hs.hs_control.calls_today = 5  # spent by someone else today
    hs.hs_control.day = hs.hs_control.clock.now().date()
    report = run(store, hs)
    assert report.stopped and "DAILY" in report.stopped
    assert hs.hs_control.total_calls == 1


def test_retries_back_off_from_the_first_one_and_keep_the_meter() -> None:
    retry = make_retry(HubSpotSettings(token="t", backoff_factor=0.5, backoff_max_seconds=3), Meter())
    assert retry.get_backoff_time() == 0.0
    waits = []
    for _ in range(4):
        retry = retry.increment("POST", "/crm/v3/objects/contacts/search", error=ReadTimeoutError(None, "/", "slow"))  # type: ignore[arg-type]
        waits.append(retry.get_backoff_time())
    assert waits == [0.5, 1.0, 2.0, 3.0]
    assert retry.meter is not None and retry.search


def test_refusals_name_the_status_and_what_to_do_but_not_the_body() -> None:
    class Refusal(Exception):
        def __init__(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
            self.status, self.body, self.headers = status, body, headers or {}

    body = '{"category":"MISSING_SCOPES","message":"secret stuff"}'
    forbidden = translate(Refusal(403, body), "search deals", "deals")
    assert isinstance(forbidden, AuthError)
    assert "403 MISSING_SCOPES" in str(forbidden) and "crm.objects.deals.read" in str(forbidden)
    assert "secret stuff" not in str(forbidden)
    daily = translate(Refusal(429, '{"policyName":"DAILY"}'), "search deals", "deals")
    assert isinstance(daily, BudgetExhausted)
    burst = translate(Refusal(429, '{"policyName":"TEN_SECONDLY_ROLLING"}', {"Retry-After": "3"}), "x", "deals")
    assert isinstance(burst, RetriableError) and burst.retry_after == 3.0
    assert isinstance(translate(Refusal(400, "{}"), "x", "deals"), FatalError)
