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

from sqlalchemy import Engine, and_, bindparam, or_, select, update

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


def op_of(row: dict[str, Any], task_id: str | None = None) -> Op:
    """The transport's write for one outbox row; ``task_id``: the CRM id of the task this row
    changes, when an earlier version of it was applied (HubSpot then updates it by id; so does
    Salesforce to complete it: an upsert by key would make the task again if someone, or a
    deleted lead, took it away, and a completed copy helps no one)."""
    if row["kind"] == "field":
        return Op(row["key"], row["system"], row["object"], dict(row["payload"]), record_id=row["record_id"])
    if task_id is not None and (row["system"] == "hubspot" or row["kind"] == "complete"):
        return Op(row["key"], row["system"], row["object"], dict(row["payload"]), record_id=task_id)
    key_field = TASK_KEY_FIELD[row["system"]]
    associate = ("contacts", row["record_id"]) if row["system"] == "hubspot" and row["kind"] == "task" \
        and row["record_id"] else None
    return Op(row["key"], row["system"], row["object"], dict(row["payload"]),
              upsert_key=(key_field, row["task_key"]), associate_with=associate)


def known_tasks(engine: Engine, task_keys: list[str]) -> dict[str, str]:
    """Task key -> the CRM id an applied write of it came back with."""
    w = WRITES
    out: dict[str, str] = {}
    with engine.connect() as conn:
        for i in range(0, len(task_keys), 2000):
            stmt = select(w.c.task_key, w.c.result_id).where(
                w.c.task_key.in_(task_keys[i:i + 2000]), w.c.state == "applied", w.c.result_id.is_not(None))
            out.update((str(k), str(r)) for k, r in conn.execute(stmt))
    return out


# The CRMs' codes for a record that no longer exists (Salesforce; HubSpot); and Salesforce's
# answer to a task about (``WhoId``) a lead or contact that no longer exists.
RECORD_GONE = frozenset({"ENTITY_IS_DELETED", "OBJECT_NOT_FOUND"})


def pending(engine: Engine, max_attempts: int) -> list[dict[str, Any]]:
    """The rows to send: planned ones with attempts left, and every row still marked sent (the
    run sending it died before recording the result; the CRM refused nothing, and sending again
    is harmless), whatever its attempts, or it would stay sent, and maybe unsent, for good."""
    w = WRITES
    stmt = select(w).where(or_(and_(w.c.state == "planned", w.c.attempts < max_attempts), w.c.state == "sent")) \
        .order_by(w.c.planned_at, w.c.key)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]


def _result(row: dict[str, Any], o: Outcome | None, max_attempts: int, now: datetime,
            applied: Applied) -> dict[str, Any]:
    """The outbox columns recording one write's outcome."""
    if o is not None and o.ok:
        applied.counts["applied"] += 1
        return {"_key": row["key"], "state": "applied", "applied_at": now, "error": None, "result_id": o.record_id}
    error = (o.error if o is not None else None) or "no result came back for this write"
    code = error.partition(":")[0].strip()
    if code in RECORD_GONE or (code == "INVALID_CROSS_REFERENCE_KEY" and "WhoId" in error):
        # Deleted (or merged away) between the pull that planned it and this send: nothing is
        # left to write to, and no later attempt would find it.
        applied.counts["skipped"] += 1
        applied.errors.append(f"{row['key']}: the record was deleted in the CRM ({error})")
        return {"_key": row["key"], "state": "skipped", "applied_at": None, "result_id": row.get("result_id"),
                "error": f"the record was deleted in the CRM before this write reached it ({error})"}
    again = (o is None or o.retryable) and row["attempts"] + 1 < max_attempts
    applied.counts["retry" if again else "failed"] += 1
    applied.errors.append(f"{row['key']}: {error}")
    return {"_key": row["key"], "state": "planned" if again else "failed", "applied_at": None, "error": error,
            "result_id": row.get("result_id")}


def _newest_per_field(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows to send, keeping the last planned of several pending writes to one field (an
    older one is still pending when a run died before recording it and a newer value was
    planned since); and the keys of the older ones."""
    last: dict[tuple[str, str, str | None, str | None], str] = {}
    for r in rows:  # in planned order
        if r["kind"] == "field":
            last[(r["system"], r["object"], r["record_id"], r["field"])] = r["key"]
    older = [r["key"] for r in rows if r["kind"] == "field"
             and last[(r["system"], r["object"], r["record_id"], r["field"])] != r["key"]]
    gone = set(older)
    return [r for r in rows if r["key"] not in gone], older


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
    rows, older = _newest_per_field(rows)
    if older:  # one call would carry both values and the newer would win: say so, not "applied"
        with engine.begin() as conn:
            conn.execute(update(w).where(w.c.key.in_(older), w.c.state.in_(("planned", "sent"))).values(
                state="skipped", error="superseded by a newer value for the same field before it was sent again"))
        result.counts["skipped"] += len(older)
    for system in ("salesforce", "hubspot"):
        mine = [r for r in rows if r["system"] == system]
        if not mine:
            continue
        with engine.begin() as conn:
            conn.execute(update(w).where(w.c.key.in_([r["key"] for r in mine]))
                         .values(state="sent", sent_at=now, attempts=w.c.attempts + 1))
        failpoint("before_send")
        tasks = known_tasks(engine, sorted({r["task_key"] for r in mine if r["task_key"]}))
        outcomes = {o.ref: o for o in senders[system]([op_of(r, tasks.get(r["task_key"] or "")) for r in mine])}
        failpoint("after_send")
        result.sent += len(mine)
        results = [_result(r, outcomes.get(r["key"]), wb.max_attempts, now, result) for r in mine]
        half = len(results) // 2
        for n, part in enumerate((results[:half], results[half:])):
            if n:  # half the results recorded: a crash here leaves the rest "sent"
                failpoint("mid_record")
            if part:
                with engine.begin() as conn:
                    conn.execute(update(w).where(w.c.key == bindparam("_key")).values(
                        state=bindparam("state"), applied_at=bindparam("applied_at"), error=bindparam("error"),
                        result_id=bindparam("result_id")), part)
    log.info("writeback.applied", sent=result.sent, **dict(result.counts))
    return result
