"""Reports kept in memory between page loads, so a dashboard opened again costs one small query.

A report is computed once per key: the period, the slice (``by``), the as-of moment when one is
fixed, the rules version, and the store's audit stamp (when the audit last ran, its watermark
and rules version). A new audit, which is what changes the stages, clocks and findings the report
counts, changes the stamp, and the next page load computes afresh. A report as of "now" is also
recomputed once it is ``max_age`` seconds old, so its as-of moves on while nothing is audited.
Concurrent loads of the same key wait for one computation; the oldest keys are dropped beyond
``size``. A keeper (the daemon's metrics job, ``detente serve``'s warm-up thread) asks with a
shorter ``max_age`` and recomputes an entry before it expires, while page loads go on being
served the entry it replaces: a page load then never waits for a computation.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class ReportKey:
    period: str
    by: str | None
    as_of: datetime | None  # None: as of the moment it is computed
    rules_version: str
    audit: tuple[str | None, ...]  # the store's audit stamp (``reads.audit_stamp``)


class ReportCache:
    """Computed reports by key; thread-safe."""

    def __init__(self, max_age: float, size: int = 32, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self.size = size
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[ReportKey, tuple[float, dict[str, Any]]] = OrderedDict()
        self._computing: dict[ReportKey, threading.Lock] = {}
        self.hits = 0
        self.misses = 0

    def _fresh(self, key: ReportKey, max_age: float | None = None) -> dict[str, Any] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        made, value = entry
        if key.as_of is None and self._clock() - made > (self.max_age if max_age is None else max_age):
            if max_age is None:
                del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def get(self, key: ReportKey, compute: Callable[[], dict[str, Any]],
            max_age: float | None = None) -> dict[str, Any]:
        """The report of ``key``: kept, or computed now (once, however many ask at the same time).
        ``max_age`` below the cache's own recomputes an older entry, which others are served
        meanwhile."""
        with self._lock:
            value = self._fresh(key, max_age)
            if value is not None:
                self.hits += 1
                return value
            gate = self._computing.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                value = self._fresh(key, max_age)
                if value is not None:  # another request computed it while this one waited
                    self.hits += 1
                    return value
            try:
                value = compute()
            except BaseException:
                with self._lock:
                    self._computing.pop(key, None)
                raise
            with self._lock:
                self._computing.pop(key, None)
                self.misses += 1
                self._entries[key] = (self._clock(), value)
                self._entries.move_to_end(key)
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
        return value
