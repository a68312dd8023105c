"""The write-back outbox: one row per write detente plans, sends and records.

``key`` is deterministic: a field write is keyed by its record, field and value; a task
version by the task's own key (SLA, template, person, clock start) and a digest of its
contents; a task's completion by the task key. Planning the same desired state again finds
the same keys, so nothing is planned twice; a crash between sending and recording leaves
the row ``sent``, and sending it again is harmless (field writes are idempotent, tasks are
upserted by their key).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index
from sqlmodel import Field, SQLModel

from detente.store.types import JSONDoc, UTCDateTime


def _ts(**kw: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kw)


class WriteRow(SQLModel, table=True):
    __tablename__ = "writes"
    __table_args__ = (
        Index("writes_state", "state", "system"),
        Index("writes_target", "system", "object", "record_id", "field"),
        Index("writes_task", "task_key"),
    )

    key: str = Field(primary_key=True, max_length=600)
    kind: str = Field(max_length=16, description="field, task (create or update) or complete")
    system: str = Field(max_length=16)
    object: str = Field(max_length=64)
    record_id: str | None = Field(default=None, max_length=64,
                                  description="the record written; tasks: the lead or contact the task is about")
    field: str | None = Field(default=None, max_length=128, description="field writes: the CRM field")
    value: Any = Field(default=None, sa_column=Column(JSONDoc, nullable=True))
    previous: Any = Field(default=None, sa_column=Column(JSONDoc, nullable=True))
    task_key: str | None = Field(default=None, max_length=255, description="tasks: the key the CRM holds")
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONDoc, nullable=False))
    reason: str
    finding_key: str | None = Field(default=None, max_length=400)
    state: str = Field(max_length=16, description="planned, sent, applied, failed, skipped")
    attempts: int = 0
    error: str | None = None
    result_id: str | None = Field(default=None, max_length=64, description="the CRM id written (a task's id)")
    planned_at: datetime = _ts()
    sent_at: datetime | None = _ts(default=None)
    applied_at: datetime | None = _ts(default=None)
