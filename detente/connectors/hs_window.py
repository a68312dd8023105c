"""How the HubSpot connector walks a search by modification time without losing a record.

HubSpot's search sorts by one property, stops at 10,000 results per query and is eventually
consistent; records change while a pull pages through it. So the walk never pages with
``after`` offsets (a record that leaves the window would shift every later one past the
reader): every query starts afresh at the last modification time read (keyset paging).

- **Time mode**: ``modified >= lo AND modified <= hi``, sorted by ``modified`` ascending. A
  full page whose last time ``m`` is later than ``lo`` proves every record before ``m`` read;
  the next query starts at ``m``, and the records at ``m`` already read are skipped.
- **Id mode**: when a whole page shares one millisecond (``m == lo``, as after a bulk
  update), the order inside it is not defined, so that millisecond is paged by
  ``hs_object_id > last id`` sorted by id, then the walk resumes at ``m + 1 ms``.

Neither mode ever pages past 200 results of one query, so the 10,000 cap is never met.
Everything here is pure: results in, the next query and the position reached out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from detente.connectors.base import Position
from detente.errors import RetriableError

MAX_RESULTS = 10_000  # per search query, HubSpot's hard cap
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds (floored), as search filters take them."""
    return (moment - EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    return EPOCH + ms * _MS


@dataclass(frozen=True)
class Window:
    """One search query: modified in ``[lo, hi]`` (epoch ms; ``None`` is open). With
    ``after_id`` set it is id mode: modified == ``lo`` and id > ``after_id``, sorted by id.
    ``offset`` is only used when keyset paging cannot move (see ``step``)."""

    lo: int | None
    hi: int | None
    after_id: int | None = None
    offset: int = 0


@dataclass(frozen=True)
class Step:
    """What one page of results means: which results to emit (indexes, in order), where the
    next query starts (None: done), the position proven stored once they are, and the ids
    already emitted at the next query's ``lo`` (to skip when they come back)."""

    emit: list[int]
    next: Window | None
    position: Position | None
    edge: frozenset[int]


def first_window(since: Position | None, until: datetime | None) -> Window | None:
    """Where a pull starts: after ``since`` (resuming inside a millisecond when it names an
    id), up to ``until`` (None: no upper bound)."""
    hi = to_ms(until) if until is not None else None
    if since is None:
        return Window(None, hi)
    lo = to_ms(since.modified_at)
    if hi is not None and lo > hi:
        return None
    after = int(since.last_id) if since.last_id.isdigit() else None
    return Window(lo, hi, after_id=after)


def search_body(
    window: Window, modified: str, properties: Sequence[str], limit: int
) -> dict[str, Any]:
    """The search request for a window (dicts pass through hubspot-api-client unchanged)."""
    filters: list[dict[str, str]] = []
    if window.after_id is not None:
        assert window.lo is not None
        filters = [
            {"propertyName": modified, "operator": "GTE", "value": str(window.lo)},
            {"propertyName": modified, "operator": "LTE", "value": str(window.lo)},
            {"propertyName": "hs_object_id", "operator": "GT", "value": str(window.after_id)},
        ]
        sort = "hs_object_id"
    else:
        if window.lo is not None:
            filters.append({"propertyName": modified, "operator": "GTE", "value": str(window.lo)})
        if window.hi is not None:
            filters.append({"propertyName": modified, "operator": "LTE", "value": str(window.hi)})
        sort = modified
    return {
        "filterGroups": [{"filters": filters}] if filters else [],
        "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
        "properties": list(properties),
        "limit": limit,
        "after": str(window.offset),
    }


def step(
    window: Window, hits: Sequence[tuple[int | None, int | None]], more: bool, edge: frozenset[int], limit: int
) -> Step:
    """Digest one page of search results, given as (modified ms, id) in the order HubSpot
    returned them (None where a value is missing or unreadable: such results are emitted, to
    be quarantined, but never steer the walk). ``more``: the response had a next page."""
    inside = [_inside(window, m) for m, _ in hits]
    emit: list[int] = []
    taken: set[int] = set()
    for i, (m, rid) in enumerate(hits):
        # Ids already emitted at ``lo`` come back at ``lo``; at a later time they are a newer version.
        again = rid is not None and (rid in taken or (rid in edge and m in (None, window.lo)))
        if not inside[i] or again:
            continue
        emit.append(i)
        if rid is not None:
            taken.add(rid)
    kept = [(m, rid) for (m, rid), ok in zip(hits, inside, strict=True) if ok and m is not None and rid is not None]
    if window.after_id is not None:
        return _id_step(window, hits, kept, more, edge, emit)
    return _time_step(window, hits, kept, more, edge, emit, limit)


def _inside(window: Window, modified: int | None) -> bool:
    if modified is None:
        return True  # unreadable: let the record parser quarantine it
    if window.after_id is not None:
        return modified == window.lo
    return (window.lo is None or modified >= window.lo) and (window.hi is None or modified <= window.hi)


def _time_step(
    window: Window,
    hits: Sequence[tuple[int | None, int | None]],
    kept: list[tuple[int, int]],
    more: bool,
    edge: frozenset[int],
    emit: list[int],
    limit: int,
) -> Step:
    if not more:
        if not kept:
            return Step(emit, None, None, frozenset())
        last = max(m for m, _ in kept)
        last_id = max(rid for m, rid in kept if m == last)
        return Step(emit, None, Position(from_ms(last), str(last_id)), frozenset())
    if not kept:
        # A full page with nothing usable inside the window (stale index entries): keyset
        # paging cannot move, so step over it by offset, within the 10,000 cap.
        offset = window.offset + len(hits)
        if offset + limit > MAX_RESULTS:
            raise RetriableError(
                "HubSpot search kept returning records outside the requested time window;"
                " its index is catching up, so the pull will resume from its last position later"
            )
        return Step(emit, replace(window, offset=offset), None, edge)
    last = max(m for m, _ in kept)
    at_last = frozenset(rid for m, rid in kept if m == last)
    if window.lo is not None and last == window.lo:
        # A whole page in one millisecond: page that millisecond by id.
        return Step(emit, Window(last, window.hi, after_id=0), None, edge | at_last)
    # Everything before ``last`` is read; records at ``last`` may continue on the next page.
    return Step(emit, Window(last, window.hi), Position(from_ms(last), ""), at_last)


def _id_step(
    window: Window,
    hits: Sequence[tuple[int | None, int | None]],
    kept: list[tuple[int, int]],
    more: bool,
    edge: frozenset[int],
    emit: list[int],
) -> Step:
    assert window.lo is not None and window.after_id is not None
    ids = [rid for _, rid in hits if rid is not None]
    if more:
        # Sorted by id, so the walk moves by id even past results whose time is stale.
        last_id = max(ids, default=window.after_id)
        if last_id <= window.after_id:
            raise RetriableError("HubSpot search returned ids out of order; the pull will resume later")
        return Step(emit, replace(window, after_id=last_id), Position(from_ms(window.lo), str(last_id)), edge)
    done_id = max([rid for _, rid in kept] + [i for i in edge] + [window.after_id])
    following = window.lo + 1
    after = None if window.hi is not None and following > window.hi else Window(following, window.hi)
    return Step(emit, after, Position(from_ms(window.lo), str(done_id)) if done_id else None, frozenset())
