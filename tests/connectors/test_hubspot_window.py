"""The keyset walk over HubSpot search (pure): where each query starts, what a page proves
stored, and how a millisecond shared by more than a page is split by id."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from detente.connectors.base import Position
from detente.connectors.hs_window import Window, first_window, from_ms, search_body, step, to_ms
from detente.errors import RetriableError

T = to_ms(datetime(2026, 11, 17, 12, tzinfo=UTC))


def test_milliseconds_round_trip_and_floor() -> None:
    moment = datetime(2026, 11, 17, 12, 0, 0, 123987, tzinfo=UTC)
    assert from_ms(to_ms(moment)) == datetime(2026, 11, 17, 12, 0, 0, 123000, tzinfo=UTC)


def test_a_pull_starts_after_since_and_stops_at_until() -> None:
    until = from_ms(T + 5000)
    assert first_window(None, until) == Window(None, T + 5000)
    assert first_window(Position(from_ms(T), ""), until) == Window(T, T + 5000)
    assert first_window(Position(from_ms(T), "42"), until) == Window(T, T + 5000, after_id=42)
    assert first_window(Position(from_ms(T + 9000), ""), until) is None
    assert first_window(None, None) == Window(None, None)


def test_search_bodies_filter_by_time_or_by_id_inside_one_millisecond() -> None:
    body = search_body(Window(T, T + 10), "lastmodifieddate", ["email"], 200)
    assert body["filterGroups"][0]["filters"] == [
        {"propertyName": "lastmodifieddate", "operator": "GTE", "value": str(T)},
        {"propertyName": "lastmodifieddate", "operator": "LTE", "value": str(T + 10)},
    ]
    assert body["sorts"] == [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}]
    assert (body["limit"], body["after"]) == (200, "0")
    sliced = search_body(Window(T, T + 10, after_id=7), "lastmodifieddate", ["email"], 200)
    assert sliced["filterGroups"][0]["filters"][2] == {"propertyName": "hs_object_id", "operator": "GT", "value": "7"}
    assert sliced["sorts"] == [{"propertyName": "hs_object_id", "direction": "ASCENDING"}]
    assert search_body(Window(None, None), "m", [], 10)["filterGroups"] == []


def test_a_full_page_moves_the_next_query_to_its_last_time_and_skips_what_it_read() -> None:
    hits = [(T, 1), (T + 1, 2), (T + 2, 5), (T + 2, 3)]
    moved = step(Window(T, T + 100), hits, True, frozenset(), 4)
    assert moved.emit == [0, 1, 2, 3]
    assert moved.next == Window(T + 2, T + 100)
    assert moved.position == Position(from_ms(T + 2), "")  # everything before T+2 is read
    assert moved.edge == {3, 5}
    again = step(moved.next, [(T + 2, 3), (T + 2, 5), (T + 2, 6), (T + 3, 4)], False, moved.edge, 4)
    assert again.emit == [2, 3]
    assert again.next is None and again.position == Position(from_ms(T + 3), "4")


def test_a_page_that_shares_one_millisecond_is_split_by_id() -> None:
    hits = [(T, i) for i in (9, 4, 7)]
    moved = step(Window(T, T + 100), hits, True, frozenset({2}), 3)
    assert moved.next == Window(T, T + 100, after_id=0)
    assert moved.position is None and moved.edge == {2, 4, 7, 9}
    sliced = step(moved.next, [(T, 2), (T, 4), (T, 5)], True, moved.edge, 3)
    assert sliced.emit == [2]
    assert sliced.next == Window(T, T + 100, after_id=5)
    assert sliced.position == Position(from_ms(T), "5")
    done = step(sliced.next, [(T, 7), (T, 8), (T, 9)], False, moved.edge, 3)
    assert done.emit == [1]
    assert done.next == Window(T + 1, T + 100) and done.position == Position(from_ms(T), "9")


def test_the_first_page_of_an_open_window_sharing_one_millisecond_moves_to_it() -> None:
    moved = step(Window(None, None), [(T, 1), (T, 2)], True, frozenset(), 2)
    assert moved.next == Window(T, None) and moved.position == Position(from_ms(T), "")


def test_results_outside_the_window_are_dropped_and_do_not_steer() -> None:
    hits = [(T - 5, 1), (T, 2), (T + 500, 3), (None, 4), (T + 1, None), (T + 2, 6)]
    moved = step(Window(T, T + 100), hits, True, frozenset(), 6)
    assert moved.emit == [1, 3, 4, 5]  # unreadable ones are emitted, to be quarantined
    assert moved.next == Window(T + 2, T + 100)


def test_a_record_read_at_the_edge_that_changed_since_is_read_again() -> None:
    moved = step(Window(T, None), [(T, 1), (T + 50, 1), (T + 60, 2)], False, frozenset({1}), 10)
    assert moved.emit == [1, 2]


def test_a_page_with_nothing_usable_steps_over_by_offset_within_the_cap() -> None:
    moved = step(Window(T, T + 100), [(T + 500, 1), (T + 600, 2)], True, frozenset(), 2)
    assert moved.next == Window(T, T + 100, offset=2) and moved.emit == []
    with pytest.raises(RetriableError):
        step(Window(T, T + 100, offset=9_998), [(T + 500, 1), (T + 600, 2)], True, frozenset(), 2)


def test_an_id_slice_moves_by_id_even_past_stale_times() -> None:
    moved = step(Window(T, None, after_id=3), [(T, 4), (T + 9, 6)], True, frozenset(), 2)
    assert moved.emit == [0] and moved.next == Window(T, None, after_id=6)
    last = step(Window(T, T, after_id=6), [], False, frozenset(), 2)
    assert last.next is None and last.position == Position(from_ms(T), "6")
