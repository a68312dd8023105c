"""Apply: send the outbox's planned writes in batches and record every result on its row.

Rows go ``planned`` → ``sent`` (committed before anything is sent) → ``applied`` or back to
``planned`` for another attempt (a transient refusal, while attempts remain) or ``failed``
(with the CRM's message). A run that dies after sending finds its rows ``sent`` and sends
them again: field writes are idempotent and tasks are upserts by their key, so the CRM ends
up with each write once. Nothing is sent when write-back is disabled; in dry-run mode the
writes are listed and left planned.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select, update

from detente.errors import DetenteError
from detente.logs import get_logger
from detente.settings import Settings
from detente.writeback.failpoints import failpoint
from detente.writeback.plan import TASK_KEY_FIELD, WRITES
from detente.writeback.send import Op, Outcome

log = get_logger("detente.writeback")
Sender = Callable[[Sequence[Op]], list[Outcome]]


class WritebackDisabled(DetenteError):
    """Write-back is off in the settings."""


@dataclass
class Applied:
    counts: Counter[str] = field(default_factory=Counter)  # applied, retry, failed
    errors: list[str] = field(default_factory=list)
    sent: int = 0


def op_of(row: dict[str, Any]) -> Op:
    """The transport's write for one outbox row."""
    if row["kind"] == "field":
        return Op(row["key"], row["system"], row["object"], dict(row["payload"]), record_id=row["record_id"])
    key_field = TASK_KEY_FIELD[row["system"]]
    associate = ("contacts", row["record_id"]) if row["system"] == "hubspot" and row["kind"] == "task" \
        and row["record_id"] else None
    return Op(row["key"], row["system"], row["object"], dict(row["payload"]),
              upsert_key=(key_field, row["task_key"]), associate_with=associate)


def pending(engine: Engine, max_attempts: int) -> list[dict[str, Any]]:
    w = WRITES
    stmt = select(w).where(w.c.state.in_(("planned", "sent")), w.c.attempts < max_attempts) \
        .order_by(w.c.planned_at, w.c.key)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]


def apply_writes(engine: Engine, settings: Settings, senders: dict[str, Sender], now: datetime) -> Applied:
    """Send every pending write through ``senders`` (system -> send function) and record the results."""
    wb = settings.writeback
    if not wb.enabled:
        raise WritebackDisabled("write-back is disabled; set writeback.enabled: true in the settings to let "
                                "detente write to the CRMs (`detente plan` shows what it would write)")
    rows = pending(engine, wb.max_attempts)
    result = Applied()
    if wb.dry_run or not rows:
        return result
    w = WRITES
    for system in ("salesforce", "hubspot"):
        mine = [r for r in rows if r["system"] == system]
        if not mine:
            continue
        with engine.begin() as conn:
            conn.execute(update(w).where(w.c.key.in_([r["key"] for r in mine]))
                         .values(state="sent", sent_at=now, attempts=w.c.attempts + 1))
        failpoint("before_send")
        outcomes = {o.ref: o for o in senders[system]([op_of(r) for r in mine])}
        failpoint("after_send")
        result.sent += len(mine)
        with engine.begin() as conn:
            for i, r in enumerate(mine):
                if i == len(mine) // 2:
                    failpoint("mid_record")
                o = outcomes.get(r["key"])
                attempts = r["attempts"] + 1
                if o is not None and o.ok:
                    values: dict[str, Any] = {"state": "applied", "applied_at": now, "error": None,
                                              "result_id": o.record_id}
                    result.counts["applied"] += 1
                else:
                    error = o.error if o is not None else "no result came back for this write"
                    again = (o is None or o.retryable) and attempts < wb.max_attempts
                    values = {"state": "planned" if again else "failed", "error": error}
                    result.counts["retry" if again else "failed"] += 1
                    result.errors.append(f"{r['key']}: {error}")
                conn.execute(update(w).where(w.c.key == r["key"]).values(**values))
    log.info("writeback.applied", sent=result.sent, **dict(result.counts))
    return result
