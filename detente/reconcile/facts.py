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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, and_, func, literal, or_, select

from detente.rules import checked as c
from detente.rules.conditions import Condition
from detente.rules.evaluate import PersonQuery, StageEvaluator, fields_of, team_case
from detente.rules.sql import Params
from detente.store.tables import Activity, Opportunity, Owner, Person, RecordLink, Transition

PEOPLE = Person.__table__  # type: ignore[attr-defined]
OWNERS = Owner.__table__  # type: ignore[attr-defined]
OPPORTUNITIES = Opportunity.__table__  # type: ignore[attr-defined]
TRANSITIONS = Transition.__table__  # type: ignore[attr-defined]
LINKS = RecordLink.__table__  # type: ignore[attr-defined]
ACTIVITIES = Activity.__table__  # type: ignore[attr-defined]


class Change(NamedTuple):
    """One value a CRM field took, and when (a tuple: millions are read per audit)."""

    system: str
    object: str
    field: str
    value: str | None
    at: datetime


class ActivityFact(NamedTuple):
    """One activity done on a person (connector copies, open tasks, deleted ones and the tasks
    detente wrote itself are left out)."""

    at: datetime
    owner_id: int | None
    system: str


@dataclass(frozen=True)
class OwnerFact:
    """An owner with the agreed team: ``team`` as of now, ``past_team`` while they were active.

    The store keeps no history of a user's active flag, so past assignments and activities
    are judged as if the owner were active then (a rep who left still worked the lead).
    """

    id: int
    email: str
    team: str | None
    past_team: str | None = None
    salesforce_user_id: str | None = None
    hubspot_owner_id: str | None = None


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
    activities: list[ActivityFact] = field(default_factory=list)  # sorted by time
    values: dict[str, Any] = field(default_factory=dict)  # the conditions' fields, by unified name

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
    salesforce_loss_reason: str | None
    hubspot_loss_reason: str | None
    source: str | None
    name: str | None
    owner_id: int | None
    salesforce_lead_id: str | None
    created_at: datetime | None
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

    owner_by_crm: dict[tuple[str, str], int] = field(default_factory=dict)  # (system, CRM user id) -> owner
    # Per person, the next moment a check's result changes by time alone (a clock falls due,
    # a grace period ends): the checks note it, the incremental audit looks again then.
    wake: dict[int, datetime] = field(default_factory=dict)

    def owner(self, owner_id: int | None) -> OwnerFact | None:
        return None if owner_id is None else self.owners.get(owner_id)

    def wake_at(self, person_id: int, moment: datetime) -> None:
        if person_id not in self.wake or moment < self.wake[person_id]:
            self.wake[person_id] = moment


def load_facts(conn: Connection, rules: c.Rules, now: datetime,
               person_ids: Sequence[int] | None = None, *, records: bool = True,
               owners: dict[int, OwnerFact] | None = None) -> Facts:
    """What the checks read about ``person_ids`` (every live person when None), as of the
    store's current contents (``now`` for conditions): the people, their opportunities and
    (``records``) every CRM record's identity claims, for the identity checks.
    """
    people = _people(conn, person_ids)
    evaluator = StageEvaluator(rules)
    for m in evaluator.memberships(conn, now, person_ids):
        p = people.get(m.person_id)
        if p is not None:
            p.definitions = m.definitions
            p.labels = m.labels
    _changes(conn, people, person_ids)
    _activities(conn, people, person_ids)
    _values(conn, rules, now, people, person_ids)
    owners = owners if owners is not None else load_owners(conn, rules, now)
    by_crm = {(system, crm_id): o.id for o in owners.values()
              for system, crm_id in (("salesforce", o.salesforce_user_id), ("hubspot", o.hubspot_owner_id)) if crm_id}
    # Without the identity checks, only converted leads' records are read (for the conversion checks).
    converted = [p.salesforce_lead_id for p in people.values() if p.salesforce_lead_id and p.salesforce_converted]
    return Facts(people=people, owners=owners, opportunities=_opportunities(conn, person_ids),
                 records=_records(conn) if records else _lead_records(conn, converted),
                 stage_names=tuple(rules.stages), lead_status_since=_status_since(people.values()),
                 owner_by_crm=by_crm)


def _status_since(people: Iterable[PersonFact]) -> dict[str, datetime]:
    """Per person's Salesforce lead, when its current Status was set, from the changes read."""
    since: dict[str, datetime] = {}
    for p in people:
        if not p.salesforce_lead_id:
            continue
        last: str | None = None
        for ch in p.changes:
            if ch.system == "salesforce" and ch.object == "Lead" and ch.field == "Status":
                if ch.value != last or p.salesforce_lead_id not in since:
                    since[p.salesforce_lead_id] = ch.at
                last = ch.value
    return since


def load_identity_facts(conn: Connection, rules: c.Rules, now: datetime,
                        owners: dict[int, OwnerFact] | None = None) -> Facts:
    """What the identity checks read: only the CRM records in a conflict (found in SQL), and
    the people holding them."""
    records = _records(conn, _conflicting_records(conn))
    lead_ids = sorted({r.record_id for r in records if r.object == "Lead"}
                      | {r.ref_lead for r in records if r.ref_lead})
    contact_ids = sorted({r.record_id for r in records if r.object == "contacts"})
    p = PEOPLE
    holders = [int(i) for (i,) in conn.execute(select(p.c.id).where(
        p.c.deleted.is_(False), or_(p.c.salesforce_lead_id.in_(lead_ids), p.c.hubspot_contact_id.in_(contact_ids))))]
    people = _people(conn, holders)
    owners = owners if owners is not None else load_owners(conn, rules, now)
    return Facts(people=people, owners=owners, opportunities={}, records=records, stage_names=tuple(rules.stages),
                 lead_status_since=_lead_status_since(conn, lead_ids))


def _conflicting_records(conn: Connection) -> list[tuple[str, str, str]]:
    """Keys of the records the identity checks can find something about, found set-wise."""
    x = LINKS
    live = and_(x.c.deleted.is_(False), x.c.merged_into.is_(None))
    leads = and_(x.c.system == "salesforce", x.c.object == "Lead")
    contacts = and_(x.c.system == "hubspot", x.c.object == "contacts")
    shared_email = select(x.c.email).where(leads, live, x.c.email.is_not(None)) \
        .group_by(x.c.email).having(func.count() > 1)
    shared_lead = select(x.c.ref_lead).where(contacts, live, x.c.ref_lead.is_not(None)) \
        .group_by(x.c.ref_lead).having(func.count() > 1)
    claimed = x.alias("claimed")
    deleted = select(claimed.c.record_id).where(
        claimed.c.system == "salesforce", claimed.c.object == "Lead", claimed.c.deleted.is_(True))
    converted = select(claimed.c.record_id).where(
        claimed.c.system == "salesforce", claimed.c.object == "Lead", claimed.c.ref_contact.is_not(None))
    keys: set[tuple[str, str, str]] = set()
    queries = [
        select(x.c.system, x.c.object, x.c.record_id).where(leads, live, x.c.email.in_(shared_email)),
        select(x.c.system, x.c.object, x.c.record_id).where(contacts, live, x.c.ref_lead.in_(shared_lead)),
        select(x.c.system, x.c.object, x.c.record_id).where(contacts, live, x.c.ref_lead.in_(deleted)),
        select(x.c.system, x.c.object, x.c.record_id).where(contacts, live, x.c.ref_contact.is_(None),
                                                            x.c.ref_lead.in_(converted)),
    ]
    for q in queries:
        keys.update((str(a), str(b), str(c_)) for a, b, c_ in conn.execute(q))
    lead_refs = select(x.c.ref_lead).where(contacts, x.c.record_id.in_([k[2] for k in keys if k[1] == "contacts"]))
    for (lead_id,) in conn.execute(lead_refs):
        if lead_id:
            keys.add(("salesforce", "Lead", str(lead_id)))
    return sorted(keys)


def _people(conn: Connection, person_ids: Sequence[int] | None) -> dict[int, PersonFact]:
    p = PEOPLE
    stmt = select(p.c.id, p.c.email, p.c.salesforce_lead_id, p.c.salesforce_contact_id, p.c.hubspot_contact_id,
                  p.c.salesforce_status, p.c.salesforce_converted, p.c.hubspot_lifecyclestage,
                  p.c.hubspot_lead_status, p.c.salesforce_owner_id, p.c.hubspot_owner_id, p.c.created_at,
                  p.c.modified_at).where(p.c.deleted.is_(False))
    if person_ids is not None:
        stmt = stmt.where(p.c.id.in_(list(person_ids)))
    return {r.id: PersonFact(**r._mapping) for r in conn.execute(stmt)}


def _scoped(column: Any, person_ids: Sequence[int] | None) -> Any:
    """``column`` among the people: a range when they are (nearly) contiguous, as a full run's
    chunks are (the caller drops rows of people outside the chunk), else the list."""
    if person_ids is None:
        return column.is_not(None)
    lo, hi = min(person_ids, default=0), max(person_ids, default=-1)
    if hi - lo + 1 <= 2 * len(person_ids):
        return column.between(lo, hi)
    return column.in_(list(person_ids))


def raw_rows(conn: Connection, stmt: Any) -> Iterator[tuple[Any, ...]]:
    """Rows as the driver returns them, without per-value type processing: the hot loops read
    millions of rows, and ``instant`` makes their timestamps aware UTC datetimes."""
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    if compiled.positiontup is not None:
        result = conn.exec_driver_sql(str(compiled), tuple(params[k] for k in compiled.positiontup))
    else:
        result = conn.exec_driver_sql(str(compiled), params)
    while rows := result.fetchmany(20_000):
        yield from rows


def instant(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime.fromisoformat(value + "+00:00")  # SQLite keeps UTC as text without an offset


def _changes(conn: Connection, people: dict[int, PersonFact], person_ids: Sequence[int] | None) -> None:
    t = TRANSITIONS
    stmt = select(t.c.person_id, t.c.system, t.c.object, t.c.field, t.c.to_value, t.c.at, t.c.id) \
        .where(_scoped(t.c.person_id, person_ids))
    rows = sorted((pid, instant(at), i, system, obj, name, value)
                  for pid, system, obj, name, value, at, i in raw_rows(conn, stmt) if pid in people)
    for pid, at, _, system, obj, name, value in rows:
        people[pid].changes.append(Change(system, obj, name, value or None, at))


def _activities(conn: Connection, people: dict[int, PersonFact], person_ids: Sequence[int] | None) -> None:
    a = ACTIVITIES
    stmt = select(a.c.person_id, a.c.occurred_at, a.c.owner_id, a.c.system, a.c.id).where(
        _scoped(a.c.person_id, person_ids), a.c.deleted.is_(False), a.c.copy_of.is_(None),
        a.c.occurred_at.is_not(None),
        a.c.completed.is_(True), a.c.detente_key.is_(None),  # work done by people, as the counts count it
    )
    rows = sorted((pid, instant(at), i, owner_id, system) for pid, at, owner_id, system, i in raw_rows(conn, stmt)
                  if pid in people)
    for pid, at, _, owner_id, system in rows:
        people[pid].activities.append(ActivityFact(at, owner_id, system))


def _values(conn: Connection, rules: c.Rules, now: datetime, people: dict[int, PersonFact],
            person_ids: Sequence[int] | None) -> None:
    """The values of every field a stage definition reads, for the explanations."""
    params = Params()
    wanted = fields_of([s.definition for s in rules.stages.values()] + sla_conditions(rules), rules)
    query = PersonQuery(rules, wanted, params)
    stmt = select(query.people.c.id, *(query.column(f).label(f.name) for f in wanted)) \
        .select_from(query.from_clause).where(query.live())
    if person_ids is not None:
        stmt = stmt.where(query.people.c.id.in_(list(person_ids)))
    for r in conn.execute(stmt, params.bind(now)):
        person = people.get(r.id)
        if person is not None:
            person.values = {f.name: r._mapping[f.name] for f in wanted}


def _lead_status_since(conn: Connection, lead_ids: Sequence[str] | None) -> dict[str, datetime]:
    """Per Salesforce lead, when its current Status was set (the final run of that value)."""
    t = TRANSITIONS
    stmt = select(t.c.record_id, t.c.to_value, t.c.at).where(
        t.c.system == "salesforce", t.c.object == "Lead", t.c.field == "Status").order_by(t.c.record_id, t.c.at, t.c.id)
    if lead_ids is not None:
        stmt = stmt.where(t.c.record_id.in_(list(lead_ids)))
    since: dict[str, datetime] = {}
    last: dict[str, str | None] = {}
    for r in conn.execute(stmt):
        if r.record_id not in last or last[r.record_id] != r.to_value:
            since[r.record_id] = r.at
        last[r.record_id] = r.to_value
    return since


def sla_conditions(rules: c.Rules) -> list[Condition]:
    """Every condition the SLAs evaluate per person (applies_to, condition events, require)."""
    found: list[Condition] = []
    for sla in rules.slas:
        found += [x for x in (sla.applies_to, sla.start.condition, sla.stop.condition) if x is not None]
        if sla.require is not None:
            found.append(sla.require.condition)
    return found


def load_owners(conn: Connection, rules: c.Rules, now: datetime) -> dict[int, OwnerFact]:
    """Every owner with their team now and while active (the same for every chunk of a run)."""
    o = OWNERS.alias("o")
    # The same owners as if every one were active: the team they belonged to while they were.
    active = select(*(literal(True).label("active") if col.name == "active" else col for col in OWNERS.c)) \
        .subquery("past")
    params = Params()
    past = select(active.c.id, team_case(rules, active, params).label("team"))
    past_team = {r.id: r.team for r in conn.execute(past, params.bind(now))}
    params = Params()
    stmt = select(o.c.id, o.c.email, o.c.salesforce_user_id, o.c.hubspot_owner_id,
                  team_case(rules, o, params).label("team"))
    return {r.id: OwnerFact(r.id, r.email, r.team, past_team.get(r.id), r.salesforce_user_id, r.hubspot_owner_id)
            for r in conn.execute(stmt, params.bind(now))}


OPPORTUNITY_COLUMNS = tuple(OPPORTUNITIES.c[name] for name in (
    "id", "salesforce_id", "hubspot_deal_id", "person_id", "stage", "hubspot_stage", "is_closed", "is_won",
    "salesforce_loss_reason", "hubspot_loss_reason", "source", "name", "owner_id", "salesforce_lead_id", "created_at",
    "closed_at"))


def _opportunities(conn: Connection, person_ids: Sequence[int] | None) -> dict[int, OpportunityFact]:
    o = OPPORTUNITIES
    stmt = select(*OPPORTUNITY_COLUMNS).where(o.c.deleted.is_(False))
    if person_ids is not None:
        stmt = stmt.where(o.c.person_id.in_(list(person_ids)))
    return {r.id: OpportunityFact(**r._mapping) for r in conn.execute(stmt)}


def load_unowned(conn: Connection, rules: c.Rules, now: datetime,
                 owners: dict[int, OwnerFact] | None = None) -> Facts:
    """The opportunities linked to no person, for the opportunity checks."""
    o = OPPORTUNITIES
    stmt = select(*OPPORTUNITY_COLUMNS).where(o.c.deleted.is_(False), o.c.person_id.is_(None))
    opportunities = {r.id: OpportunityFact(**r._mapping) for r in conn.execute(stmt)}
    owners = owners if owners is not None else load_owners(conn, rules, now)
    return Facts(people={}, owners=owners, opportunities=opportunities, records=[],
                 stage_names=tuple(rules.stages))


RECORD_COLUMNS = (LINKS.c.system, LINKS.c.object, LINKS.c.record_id, LINKS.c.email, LINKS.c.ref_lead,
                  LINKS.c.ref_contact, LINKS.c.ref_opportunity, LINKS.c.created_at, LINKS.c.deleted,
                  LINKS.c.merged_into, LINKS.c.seen_at)


def _records(conn: Connection, keys: Sequence[tuple[str, str, str]] | None = None) -> list[RecordFact]:
    x = LINKS
    if keys is None:
        stmt = select(*RECORD_COLUMNS).where(x.c.object.in_(["Lead", "Contact", "contacts"]))
        return [RecordFact(**r._mapping) for r in conn.execute(stmt)]
    out: list[RecordFact] = []
    for system, object_name in sorted({(k[0], k[1]) for k in keys}):
        ids = [k[2] for k in keys if (k[0], k[1]) == (system, object_name)]
        stmt = select(*RECORD_COLUMNS).where(x.c.system == system, x.c.object == object_name, x.c.record_id.in_(ids))
        out += [RecordFact(**r._mapping) for r in conn.execute(stmt)]
    return out


def _lead_records(conn: Connection, lead_ids: Sequence[str]) -> list[RecordFact]:
    return _records(conn, [("salesforce", "Lead", i) for i in lead_ids])


def group_by(items: Sequence[Any], key: Any) -> dict[Any, list[Any]]:
    out: dict[Any, list[Any]] = defaultdict(list)
    for item in items:
        out[key(item)].append(item)
    return out
