"""The report cache: one computation per key however many ask, a live report recomputed once it
is old, a report as of a fixed moment kept until pushed out."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from detente.web.cache import ReportCache, ReportKey

LIVE = ReportKey("2026-10", "source", None, "v1", ("2026-11-17T15:00:00+00:00",))
FIXED = ReportKey("2026-10", "source", datetime(2026, 11, 17, tzinfo=UTC), "v1", ("2026-11-17T15:00:00+00:00",))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def counting() -> tuple[list[int], Any]:
    calls: list[int] = []

    def compute() -> dict[str, Any]:
        calls.append(1)
        return {"n": len(calls)}

    return calls, compute


def test_a_key_is_computed_once_and_another_audit_stamp_is_another_key() -> None:
    cache = ReportCache(max_age=300)
    calls, compute = counting()
    assert cache.get(LIVE, compute) == cache.get(LIVE, compute) == {"n": 1}
    later = ReportKey(*LIVE.__dict__.values())
    assert cache.get(later, compute) == {"n": 1}  # an equal key
    moved = ReportKey(LIVE.period, LIVE.by, None, LIVE.rules_version, ("2026-11-17T15:05:00+00:00",))
    assert cache.get(moved, compute) == {"n": 2}
    assert (cache.hits, cache.misses, len(calls)) == (2, 2, 2)


def test_a_live_report_is_recomputed_once_old_and_a_fixed_one_is_not() -> None:
    clock = Clock()
    cache = ReportCache(max_age=60, clock=clock)
    _, compute = counting()
    cache.get(LIVE, compute)
    cache.get(FIXED, compute)
    clock.now = 61
    assert cache.get(LIVE, compute) == {"n": 3}
    assert cache.get(FIXED, compute) == {"n": 2}


def test_the_oldest_keys_are_dropped_beyond_the_size() -> None:
    cache = ReportCache(max_age=300, size=2)
    calls, compute = counting()
    keys = [ReportKey(f"2026-0{i}", None, None, "v1", ()) for i in range(1, 4)]
    for key in keys:
        cache.get(key, compute)
    cache.get(keys[2], compute)
    cache.get(keys[0], compute)
    assert len(calls) == 4


def test_loads_of_one_key_at_the_same_time_wait_for_one_computation() -> None:
    cache = ReportCache(max_age=300)
    calls: list[int] = []

    def slow() -> dict[str, Any]:
        calls.append(1)
        time.sleep(0.2)
        return {"n": 1}

    results: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(LIVE, slow))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and results == [{"n": 1}] * 8


def test_a_failed_computation_is_not_kept() -> None:
    cache = ReportCache(max_age=300)
    attempts: list[int] = []

    def flaky() -> dict[str, Any]:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("the store went away")
        return {"n": 2}

    with pytest.raises(RuntimeError):
        cache.get(LIVE, flaky)
    assert cache.get(LIVE, flaky) == {"n": 2}


def test_a_keeper_recomputes_at_half_age_while_page_loads_get_the_entry_it_replaces() -> None:
    clock = Clock()
    cache = ReportCache(max_age=60, clock=clock)
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow() -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 2:  # the keeper's recomputation, held until the page load is served
            started.set()
            release.wait(5)
        return {"n": len(calls)}

    assert cache.get(LIVE, slow, max_age=30) == {"n": 1}
    clock.now = 20
    assert cache.get(LIVE, slow, max_age=30) == {"n": 1}  # younger than the keeper's half age: kept
    clock.now = 40
    keeper = threading.Thread(target=cache.get, args=(LIVE, slow, 30))
    keeper.start()
    assert started.wait(5)
    before = time.monotonic()
    assert cache.get(LIVE, slow) == {"n": 1}  # a page load is served the old entry at once
    assert time.monotonic() - before < 1
    release.set()
    keeper.join(5)
    assert cache.get(LIVE, slow) == {"n": 2}  # and the next one the keeper's
    assert len(calls) == 2
