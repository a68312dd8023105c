"""Keep the stored findings equal to the desired ones: open, update, resolve, with history.

``plan(desired, stored, now, version)`` is pure: it compares what the checks find now with
the findings stored, and returns the writes (``Write``) that make them equal; unchanged
findings produce nothing, so running again on the same data writes nothing. ``reconcile``
reads the facts, runs every implemented check, and applies the plan in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, Engine, insert, select, update

from detente.reconcile import labels
from detente.reconcile.facts import Facts, load_facts
from detente.reconcile.identity import identity
from detente.reconcile.model import Finding
from detente.rules import checked as c
from detente.store.findings import FindingEvent, FindingRow

FINDINGS = FindingRow.__table__  # type: ignore[attr-defined]
EVENTS = FindingEvent.__table__  # type: ignore[attr-defined]
Event = Literal["opened", "updated", "resolved", "reopened"]
# What makes a stored finding differ from a desired one (opened_at is kept once open).
COMPARED = ("rule", "kind", "rules_version", "person_id", "opportunity_id", "records", "email", "salesforce_id",
            "hubspot_id", "team", "owner_email", "due_at", "explanation")


def evaluate(facts: Facts, rules: c.Rules, now: datetime) -> list[Finding]:
    """Every finding the implemented checks see in ``facts`` at ``now``."""
    found = [*labels.drift(facts, rules, now), *labels.missed_label(facts, rules, now),
             *labels.disagreement(facts, rules, now), *identity(facts, now)]
    return sorted(found, key=lambda f: f.key)


def row_of(f: Finding, version: str, now: datetime) -> dict[str, Any]:
    return {"key": f.key, "kind": f.kind, "rule": f.rule, "rules_version": version, "person_id": f.person_id,
            "opportunity_id": f.opportunity_id, "records": {k: list(v) for k, v in sorted(f.records.items())},
            "email": f.email, "salesforce_id": f.salesforce_id, "hubspot_id": f.hubspot_id, "team": f.team,
            "owner_email": f.owner_email, "status": "open", "opened_at": f.opened_at, "due_at": f.due_at,
            "resolved_at": None, "resolution": None, "explanation": f.explanation, "evaluated_at": now}


@dataclass(frozen=True)
class Write:
    event: Event
    row: Mapping[str, Any]  # the finding's full row after the write


def plan(desired: Iterable[Finding], stored: Mapping[str, Mapping[str, Any]], now: datetime,
         version: str) -> list[Write]:
    writes: list[Write] = []
    seen: set[str] = set()
    for f in desired:
        seen.add(f.key)
        row = row_of(f, version, now)
        old = stored.get(f.key)
        if old is None:
            writes.append(Write("opened", row))
        elif old["status"] != "open":
            writes.append(Write("reopened", row))
        elif any(old[k] != row[k] for k in COMPARED):
            writes.append(Write("updated", {**row, "opened_at": old["opened_at"]}))
    for key, old in sorted(stored.items()):
        if key not in seen and old["status"] == "open":
            writes.append(Write("resolved", {**old, "status": "resolved", "resolved_at": now, "evaluated_at": now,
                                             "resolution": "no longer true: the data or the rules changed"}))
    return writes


def stored_findings(conn: Connection) -> dict[str, dict[str, Any]]:
    return {r.key: dict(r._mapping) for r in conn.execute(select(FINDINGS))}


def apply(conn: Connection, writes: Iterable[Write]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for w in writes:
        row = dict(w.row)
        if w.event == "opened":
            conn.execute(insert(FINDINGS).values(**row))
        else:
            conn.execute(update(FINDINGS).where(FINDINGS.c.key == row["key"])
                         .values(**{k: v for k, v in row.items() if k != "key"}))
        conn.execute(insert(EVENTS).values(finding_key=row["key"], at=row["evaluated_at"], event=w.event,
                                           rules_version=row["rules_version"], status=row["status"],
                                           due_at=row["due_at"], explanation=row["explanation"]))
        counts[w.event] = counts.get(w.event, 0) + 1
    return counts


def reconcile(engine: Engine, rules: c.Rules, now: datetime) -> dict[str, int]:
    """Bring the stored findings up to date with the store and the rules as of ``now``.

    Every person is evaluated (incremental evaluation of changed people is not built yet).
    Returns how many findings were opened, updated, resolved and reopened.
    """
    # Facts are read on their own connection: StageEvaluator sets ``yield_per`` on the
    # connection it is given, which would make later statements on it use server-side cursors.
    with engine.connect() as conn:
        facts = load_facts(conn, rules, now)
    with engine.begin() as conn:
        writes = plan(evaluate(facts, rules, now), stored_findings(conn), now, rules.version)
        return apply(conn, writes)
