"""The pull stage: read changed records from a connector into the raw layer, page by page.

Each page and the cursor it reaches commit together. The cursor never passes the moment
the pull started (``until``), so a record changed while the pull runs is read again next
time; each pull re-reads a ``lookback`` overlap below the cursor, because CRMs commit late
and clocks differ; unchanged re-reads cost no writes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from queue import Empty, Full, Queue
from typing import Any

from sqlalchemy import Engine, select

from detente.connectors.base import BudgetExhausted, Connector, FullPullRequired, Page, Position, Record
from detente.logs import get_logger
from detente.store.bulk import upsert
from detente.store.raw import CURSORS, RAW, PageResult, commit_page, live_ids, read_position

log = get_logger("detente.pull")


@dataclass
class ObjectReport:
    system: str
    object: str
    fetched: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    quarantined: int = 0
    calls: int = 0
    seconds: float = 0.0
    stopped: str | None = None  # why the pull stopped early, if it did

    def add(self, page: Page, result: PageResult) -> None:
        for name in ("fetched", "inserted", "updated", "unchanged", "deleted", "quarantined"):
            setattr(self, name, getattr(self, name) + getattr(result, name))
        self.calls += page.calls


@dataclass
class PullReport:
    objects: list[ObjectReport] = field(default_factory=list)

    @property
    def stopped(self) -> str | None:
        return next((o.stopped for o in self.objects if o.stopped), None)


def pull(
    engine: Engine,
    connector: Connector,
    *,
    now: datetime,
    objects: list[str] | None = None,
    full: bool = False,
    lookback: timedelta = timedelta(minutes=5),
    deletes_every: timedelta = timedelta(0),
    on_page: Callable[[ObjectReport], None] | None = None,
) -> PullReport:
    """Pull every object (or the ones named) of one connector; stop cleanly when the call
    budget runs out, with each cursor at its last committed page. Deletions are asked for at
    most every ``deletes_every`` (a pull between two checks reads changes only)."""
    report = PullReport()
    if hasattr(connector, "stored"):  # lets the connector skip re-reading what the store holds
        connector.stored = partial(held_versions, engine, connector.system)
    for name in objects or list(connector.objects()):
        item = ObjectReport(connector.system, name)
        report.objects.append(item)
        started = time.monotonic()
        try:
            _pull_object(engine, connector, name, item, now=now, full=full, lookback=lookback,
                         deletes_every=deletes_every, on_page=on_page)
        except BudgetExhausted as exc:
            item.stopped = str(exc)
            log.warning("pull.stopped", system=connector.system, object=name, reason=str(exc))
            item.seconds = time.monotonic() - started
            break
        item.seconds = time.monotonic() - started
        log.info("pull.object", system=connector.system, object=name, fetched=item.fetched,
                 inserted=item.inserted, updated=item.updated, deleted=item.deleted,
                 quarantined=item.quarantined, calls=item.calls, seconds=round(item.seconds, 2))
    return report


def _pull_object(
    engine: Engine, connector: Connector, name: str, item: ObjectReport, *,
    now: datetime, full: bool, lookback: timedelta, deletes_every: timedelta = timedelta(0),
    on_page: Callable[[ObjectReport], None] | None = None,
) -> None:
    system = connector.system
    if not full and name in getattr(connector, "listed_whole", ()):
        # Read whole, without a change feed (HubSpot's owners and pipelines): re-read on the
        # deletions' interval, not on every pull.
        last = _deletes_checked_at(engine, system, name)
        if last is not None and timedelta(0) <= now - last < deletes_every:
            return
    stored = None if full else read_position(engine, system, name)
    since = Position(stored.modified_at - lookback, "") if stored and lookback else stored
    ceiling = Position(now, "")
    seen: set[str] = set()
    for page in prefetched(connector.pull(name, since, until=now, full=full)):
        if page.position is not None and page.position > ceiling:
            page.position = ceiling
        if full:
            # A quarantined record still exists in the CRM: it must not be reconciled away.
            seen.update(r.id for r in page.records)
            seen.update(r.id for r in page.rejects)
        item.add(page, commit_page(engine, system, page, now))
        if on_page is not None:
            on_page(item)
    checked_now = now
    if full:
        gone = live_ids(engine, system, name) - seen
        if gone:
            page = Page(name, [Record(name, rid, now, {}, deleted=True) for rid in sorted(gone)])
            item.add(page, commit_page(engine, system, page, now))
    else:
        # Deletions are read since the last time they were checked, not since the cursor:
        # the cursor of a quiet object may lie months back, past the delete log's reach.
        checked = _deletes_checked_at(engine, system, name)
        since_deletes = ((checked or stored.modified_at) - lookback) if stored else None
        if checked is not None and timedelta(0) <= now - checked < deletes_every:
            since_deletes = None  # checked recently: the next check reads from that moment on
            checked_now = checked
        if since_deletes is not None:
            try:
                for page in connector.deleted(name, since_deletes, until=now):
                    item.add(page, commit_page(engine, system, page, now))
            except FullPullRequired as exc:
                # The change feed no longer reaches the cursor: only a full pull, which
                # reconciles stored ids with the CRM's, can find what was deleted since.
                log.warning("pull.full_required", system=system, object=name, reason=exc.reason)
                _pull_object(engine, connector, name, item, now=now, full=True, lookback=lookback)
                return
    with engine.begin() as conn:
        upsert(conn, CURSORS, [{
            "system": system, "object": name, "deletes_checked_at": checked_now, "updated_at": now,
            **({"full_pull_at": now} if full else {}),
        }], ["system", "object"])


_DONE = object()


def prefetched(pages: Iterator[Page], depth: int = 2) -> Iterator[Page]:
    """Read the next pages on a helper thread while the caller commits the current one.

    Fetching (network, parsing) and committing (the store) then overlap instead of taking
    turns. At most ``depth`` pages wait in memory; an error in the reader reaches the caller
    after the pages read before it, so everything before a failure still commits.
    """
    queue: Queue[Any] = Queue(maxsize=depth)
    stop = threading.Event()

    def read() -> None:
        try:
            for page in pages:
                while not stop.is_set():
                    try:
                        queue.put(page, timeout=0.2)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put(_DONE)
        except BaseException as exc:  # handed to the consuming thread
            queue.put(exc)

    reader = threading.Thread(target=read, name="detente-pull-reader", daemon=True)
    reader.start()
    try:
        while True:
            item = queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while reader.is_alive():
            try:
                queue.get_nowait()
            except Empty:
                reader.join(timeout=0.1)


def held_versions(engine: Engine, system: str, name: str, ids: list[str]) -> dict[str, datetime]:
    """The modification time of each of ``ids`` the raw layer holds live."""
    out: dict[str, datetime] = {}
    with engine.connect() as conn:
        for start in range(0, len(ids), 1000):
            part = ids[start:start + 1000]
            out.update((r[0], r[1]) for r in conn.execute(
                select(RAW.c.record_id, RAW.c.modified_at).where(
                    RAW.c.system == system, RAW.c.object == name, RAW.c.record_id.in_(part),
                    RAW.c.deleted.is_(False))))
    return out


def _deletes_checked_at(engine: Engine, system: str, name: str) -> datetime | None:
    with engine.connect() as conn:
        value: datetime | None = conn.execute(
            select(CURSORS.c.deletes_checked_at).where(CURSORS.c.system == system, CURSORS.c.object == name)
        ).scalar()
    return value
