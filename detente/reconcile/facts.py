"""Read what the checks need from the store into plain objects: the only module here that
reads tables. Everything else in ``detente.reconcile`` is a pure function of these facts
and ``now``.

``load_facts(conn, rules, now)`` reads every live person (or only ``person_ids``) with the
stages whose definitions hold and the stages each CRM labels (``StageEvaluator``), their
stage, status and owner transitions, the owners with their agreed team, the opportunities,
and the CRM records' identity claims (``record_links``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from detente.rules import checked as c
from detente.rules.evaluate import PersonQuery, StageEvaluator, fields_of, team_case
from detente.rules.sql import Params
from detente.store.tables import Opportunity, Owner, Person, RecordLink, Transition

PEOPLE = Person.__table__  # type: ignore[attr-defined]
OWNERS = Owner.__table__  # type: ignore[attr-defined]
OPPORTUNITIES = Opportunity.__table__  # type: ignore[attr-defined]
TRANSITIONS = Transition.__table__  # type: ignore[attr-defined]
LINKS = RecordLink.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Change:
    """One value a CRM field took, and when."""

    system: str
    field: str
    value: str | None
    at: datetime


@dataclass(frozen=True)
class OwnerFact:
    id: int
    email: str
    team: str | None


@dataclass
class PersonFact:
    """One live person: the unified row, the stages that hold and are labelled, the history."""

    id: int
    email: str | None
    salesforce_lead_id: str | None
    salesforce_contact_id: str | None
    hubspot_contact_id: str | None
    salesforce_status: str | None
    salesforce_converted: bool
    hubspot_lifecyclestage: str | None
    hubspot_lead_status: str | None
    salesforce_owner_id: int | None
    hubspot_owner_id: int | None
    created_at: datetime | None
    modified_at: datetime | None
    definitions: frozenset[str] = frozenset()
    labels: Mapping[str, frozenset[str]] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)  # the definitions' fields, by unified name

    @property
    def owner_id(self) -> int | None:
        return self.salesforce_owner_id if self.salesforce_owner_id is not None else self.hubspot_owner_id

    def history(self, system: str, field_name: str) -> list[Change]:
        return [ch for ch in self.changes if ch.system == system and ch.field == field_name]


@dataclass(frozen=True)
class OpportunityFact:
    id: int
    salesforce_id: str | None
    hubspot_deal_id: str | None
    person_id: int | None
    stage: str | None
    hubspot_stage: str | None
    is_closed: bool
    is_won: bool
    loss_reason: str | None
    owner_id: int | None
    salesforce_lead_id: str | None
    closed_at: datetime | None


@dataclass(frozen=True)
class RecordFact:
    """What one CRM record says about whom it belongs to (``record_links``)."""

    system: str
    object: str
    record_id: str
    email: str | None
    ref_lead: str | None
    ref_contact: str | None
    ref_opportunity: str | None
    created_at: datetime | None
    deleted: bool
    merged_into: str | None
    seen_at: datetime | None


@dataclass
class Facts:
    people: dict[int, PersonFact]
    owners: dict[int, OwnerFact]
    opportunities: dict[int, OpportunityFact]
    records: list[RecordFact]
    stage_names: tuple[str, ...] = ()
    lead_status_since: dict[str, datetime] = field(default_factory=dict)  # lead id -> current Status since

    def owner(self, owner_id: int | None) -> OwnerFact | None:
        return None if owner_id is None else self.owners.get(owner_id)


def load_facts(conn: Connection, rules: c.Rules, now: datetime,
               person_ids: Sequence[int] | None = None) -> Facts:
    """Everything the checks read, as of the store's current contents (``now`` for conditions)."""
    people = _people(conn, person_ids)
    evaluator = StageEvaluator(rules)
    for m in evaluator.memberships(conn, now, person_ids):
        p = people.get(m.person_id)
        if p is not None:
            p.definitions = m.definitions
            p.labels = m.labels
    _changes(conn, people, person_ids)
    _values(conn, rules, now, people, person_ids)
    return Facts(people=people, owners=_owners(conn, rules, now), opportunities=_opportunities(conn),
                 records=_records(conn), stage_names=tuple(rules.stages),
                 lead_status_since=_lead_status_since(conn))


def _people(conn: Connection, person_ids: Sequence[int] | None) -> dict[int, PersonFact]:
    p = PEOPLE
    stmt = select(p.c.id, p.c.email, p.c.salesforce_lead_id, p.c.salesforce_contact_id, p.c.hubspot_contact_id,
                  p.c.salesforce_status, p.c.salesforce_converted, p.c.hubspot_lifecyclestage,
                  p.c.hubspot_lead_status, p.c.salesforce_owner_id, p.c.hubspot_owner_id, p.c.created_at,
                  p.c.modified_at).where(p.c.deleted.is_(False))
    if person_ids is not None:
        stmt = stmt.where(p.c.id.in_(list(person_ids)))
    return {r.id: PersonFact(**r._mapping) for r in conn.execute(stmt)}


def _changes(conn: Connection, people: dict[int, PersonFact], person_ids: Sequence[int] | None) -> None:
    t = TRANSITIONS
    stmt = select(t.c.person_id, t.c.system, t.c.field, t.c.to_value, t.c.at).where(t.c.person_id.is_not(None)) \
        .order_by(t.c.person_id, t.c.at, t.c.id)
    if person_ids is not None:
        stmt = stmt.where(t.c.person_id.in_(list(person_ids)))
    for r in conn.execute(stmt):
        person = people.get(r.person_id)
        if person is not None:
            person.changes.append(Change(r.system, r.field, r.to_value or None, r.at))


def _values(conn: Connection, rules: c.Rules, now: datetime, people: dict[int, PersonFact],
            person_ids: Sequence[int] | None) -> None:
    """The values of every field a stage definition reads, for the explanations."""
    params = Params()
    wanted = fields_of([s.definition for s in rules.stages.values()], rules)
    query = PersonQuery(rules, wanted, params)
    stmt = select(query.people.c.id, *(query.column(f).label(f.name) for f in wanted)) \
        .select_from(query.from_clause).where(query.live())
    if person_ids is not None:
        stmt = stmt.where(query.people.c.id.in_(list(person_ids)))
    for r in conn.execute(stmt, params.bind(now)):
        person = people.get(r.id)
        if person is not None:
            person.values = {f.name: r._mapping[f.name] for f in wanted}


def _lead_status_since(conn: Connection) -> dict[str, datetime]:
    """Per Salesforce lead, when its current Status was set (the final run of that value)."""
    t = TRANSITIONS
    stmt = select(t.c.record_id, t.c.to_value, t.c.at).where(
        t.c.system == "salesforce", t.c.object == "Lead", t.c.field == "Status").order_by(t.c.record_id, t.c.at, t.c.id)
    since: dict[str, datetime] = {}
    last: dict[str, str | None] = {}
    for r in conn.execute(stmt):
        if r.record_id not in last or last[r.record_id] != r.to_value:
            since[r.record_id] = r.at
        last[r.record_id] = r.to_value
    return since


def _owners(conn: Connection, rules: c.Rules, now: datetime) -> dict[int, OwnerFact]:
    o = OWNERS.alias("o")
    params = Params()
    stmt = select(o.c.id, o.c.email, team_case(rules, o, params).label("team"))
    return {r.id: OwnerFact(r.id, r.email, r.team) for r in conn.execute(stmt, params.bind(now))}


def _opportunities(conn: Connection) -> dict[int, OpportunityFact]:
    o = OPPORTUNITIES
    stmt = select(o.c.id, o.c.salesforce_id, o.c.hubspot_deal_id, o.c.person_id, o.c.stage, o.c.hubspot_stage,
                  o.c.is_closed, o.c.is_won, o.c.loss_reason, o.c.owner_id, o.c.salesforce_lead_id,
                  o.c.closed_at).where(o.c.deleted.is_(False))
    return {r.id: OpportunityFact(**r._mapping) for r in conn.execute(stmt)}


def _records(conn: Connection) -> list[RecordFact]:
    x = LINKS
    stmt = select(x.c.system, x.c.object, x.c.record_id, x.c.email, x.c.ref_lead, x.c.ref_contact,
                  x.c.ref_opportunity, x.c.created_at, x.c.deleted, x.c.merged_into, x.c.seen_at) \
        .where(x.c.object.in_(["Lead", "Contact", "contacts"]))
    return [RecordFact(**r._mapping) for r in conn.execute(stmt)]


def group_by(items: Sequence[Any], key: Any) -> dict[Any, list[Any]]:
    out: dict[Any, list[Any]] = defaultdict(list)
    for item in items:
        out[key(item)].append(item)
    return out
