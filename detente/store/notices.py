"""Which SLA breaches have been posted to the webhook, so each is posted once across restarts.

A breach is one open SLA finding in state ``breached``; it is identified by the finding's key
and the moment it opened, so a breach that resolves and later opens again is a new breach.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Field, SQLModel

from detente.store.types import UTCDateTime


def _ts(**kw: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kw)


class BreachNotice(SQLModel, table=True):
    """One breach posted to the webhook."""

    __tablename__ = "breach_notices"

    finding_key: str = Field(primary_key=True, max_length=400)
    opened_at: datetime = _ts(primary_key=True)
    notified_at: datetime = _ts()
