"""Helpers for the rules tests: rules files written per test, and rows for the store."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, insert, inspect, text

from detente.rules import check_rules
from detente.store.tables import Activity, Opportunity, Owner, Person, Transition

NOW = datetime(2026, 11, 16, 15, 0, tzinfo=UTC)
SHIPPED = Path(__file__).parents[2] / "config" / "rules.yaml"

# A small valid rules file; tests write variations of it and assert exact positions.
BASE = """\
version: 1
teams:
  sales:
    condition: owner_department = 'Sales'
  marketing:
    members: [mk@example.com]
stages:
  lead:
    meaning: a lead
    owner: marketing
    definition: email IS NOT NULL
    labels:
      hubspot: lifecyclestage = 'lead'
  mql:
    meaning: qualified
    owner: marketing
    after: lead
    definition: score >= 50
    labels:
      hubspot: lifecyclestage = 'marketingqualifiedlead'
      salesforce: Status = 'Marketing Qualified'
"""


def write(directory: Path, body: str, name: str = "rules.yaml") -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    return [str(p) for p in check_rules(path).problems]


def add_attributes(engine: Engine) -> None:
    """people.attributes is proposed for the store; until its migration lands, tests add it."""
    if "attributes" in {c["name"] for c in inspect(engine).get_columns("people")}:
        return
    kind = "JSONB" if engine.dialect.name == "postgresql" else "JSON"
    with engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE people ADD COLUMN attributes {kind} NOT NULL DEFAULT '{{}}'"))


_PERSON_COLUMNS = [c.name for c in Person.__table__.columns]


def person(**values: Any) -> dict[str, Any]:
    """A people row with every column present (executemany needs uniform keys)."""
    row: dict[str, Any] = dict.fromkeys(_PERSON_COLUMNS)
    row.update(salesforce_converted=False, activity_count=0, deleted=False, attributes={})
    row.update(values)
    return row


def insert_people(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    conn.execute(insert(Person.__table__), [person(**r) for r in rows])


_DEFAULTS: dict[type[Any], dict[str, Any]] = {
    Opportunity: {"is_closed": False, "is_won": False, "deleted": False},
    Owner: {"active": True},
    Activity: {"completed": True, "deleted": False, "system": "salesforce", "object": "Task", "kind": "task"},
    Transition: {"source": "history", "record_id": "x", "object": ""},
}


def insert_rows(conn: Connection, model: type[Any], rows: Sequence[dict[str, Any]]) -> None:
    """Rows for a store table: the defaults above, the given values, None for other given keys."""
    defaults = _DEFAULTS.get(model, {})
    keys = set(defaults) | {k for r in rows for k in r}
    conn.execute(insert(model.__table__), [{**dict.fromkeys(keys), **defaults, **r} for r in rows])
