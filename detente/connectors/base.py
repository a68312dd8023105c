"""The seam between detente and a CRM: a small Protocol and the plain data that crosses it.

A connector turns a CRM's API into pages of ``Record``s in (modified_at, id) order and
knows nothing of the store. The pull stage writes each page and its ``Position`` in one
transaction, so a crash loses nothing and duplicates nothing.

Errors a connector raises (vendor exceptions are translated at the boundary):

    DetenteError
    ├── FatalError
    │   └── AuthError            credentials refused: stop, a person must fix settings
    ├── RetriableError           the call may succeed later (429/5xx after retries, timeouts)
    │   └── BudgetExhausted      the run's or day's call budget, or the CRM's daily quota,
    │                            is spent: stop cleanly at the last committed page
    ├── SkippableError           (records that cannot be parsed are returned as Rejects
    │                            inside pages instead, so the page still commits)
    └── FullPullRequired         not a failure: the change feed no longer reaches back to
                                 the cursor, so only a full pull can find the deletions
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from detente.errors import DetenteError, RetriableError


@dataclass(frozen=True, order=True)
class Position:
    """The compound cursor: everything at or before (modified_at, last_id) is stored."""

    modified_at: datetime
    last_id: str


@dataclass(frozen=True)
class Record:
    """One record as its CRM returned it."""

    object: str
    id: str
    modified_at: datetime
    data: dict[str, Any]
    deleted: bool = False
    merged_into: str | None = None


@dataclass(frozen=True)
class Reject:
    """A record the connector could not parse; it is quarantined with the reason."""

    object: str
    id: str
    reason: str
    payload: dict[str, Any]


@dataclass
class Page:
    """One unit of progress: what was read, and where the pull may resume after it."""

    object: str
    records: list[Record] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    position: Position | None = None
    calls: int = 0


class BudgetExhausted(RetriableError):
    """The call budget (per run or per day) or the CRM's own daily quota is spent."""


class FullPullRequired(DetenteError):
    """The CRM's change feed no longer reaches back to the cursor (Salesforce keeps deletes
    for about 15 days and may purge its delete log sooner), so deletions since then can only
    be found by a full pull that reconciles the stored ids with the CRM's."""

    def __init__(self, object_name: str, reason: str) -> None:
        super().__init__(f"{object_name}: {reason}; a full pull of {object_name} is needed to find its deletions")
        self.object = object_name
        self.reason = reason


class CallBudget:
    """Counts API calls against a per-run and a per-day allowance; shared by a run's threads."""

    def __init__(self, per_run: int | None = None, per_day: int | None = None, used_today: int = 0) -> None:
        self.per_run = per_run
        self.per_day = per_day
        self.used_today = used_today
        self.used = 0
        self._lock = threading.Lock()

    def spend(self, calls: int = 1) -> None:
        """Record calls about to be made; raise BudgetExhausted when none are left."""
        with self._lock:
            if self.per_run is not None and self.used + calls > self.per_run:
                raise BudgetExhausted(f"the per-run budget of {self.per_run} API calls is spent")
            if self.per_day is not None and self.used_today + calls > self.per_day:
                raise BudgetExhausted(f"the daily budget of {self.per_day} API calls is spent")
            self.used += calls
            self.used_today += calls

    def remaining(self) -> int | None:
        left = [b - u for b, u in ((self.per_run, self.used), (self.per_day, self.used_today)) if b is not None]
        return min(left) if left else None


class Connector(Protocol):
    """What the pull stage needs from a CRM."""

    system: str

    @property
    def budget(self) -> CallBudget | None:
        """What this run may still spend (a connector kept between runs gets each run's own)."""
        ...

    @budget.setter
    def budget(self, budget: CallBudget | None) -> None: ...

    def objects(self) -> Sequence[str]:
        """The objects this connector pulls, in dependency order."""
        ...

    def pull(self, object: str, since: Position | None, *, until: datetime, full: bool = False) -> Iterator[Page]:
        """Pages of records modified after ``since`` and not after ``until``, in
        (modified_at, id) order; ``full`` re-reads everything."""
        ...

    def deleted(self, object: str, since: datetime, *, until: datetime) -> Iterator[Page]:
        """Pages of records deleted, archived or merged away in the window."""
        ...
