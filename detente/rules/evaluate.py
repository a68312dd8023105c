"""Evaluate the rules over the unified store, set-based: one SQL statement for all stages.

``PersonQuery`` builds ``people`` plus only the joins the fields in use need (the owner,
the campaign, the latest opportunity, stage-entry times from the transitions).
``StageEvaluator`` selects, per person, a bit mask of the stage definitions that hold and of
the stages each CRM labels. ``fetch_record`` reads one person's field values with the same
expressions, for explanations. The connection and ``now`` are passed in.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Select,
    and_,
    case,
    false,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import FromClause

from detente.rules import checked as c
from detente.rules import store_view as sv
from detente.rules.conditions import Condition
from detente.rules.explain import Step, explain
from detente.rules.fields import (
    Attribute,
    CampaignColumn,
    FieldDef,
    OpportunityColumn,
    OwnerColumn,
    PeopleColumn,
    StageEntered,
    TeamOfOwner,
)
from detente.rules.sql import AsciiLower, Params, SqlCompiler, holds
from detente.rules.sql import Attribute as AttributeValue
from detente.store.types import UTCDateTime

SYSTEMS = ("salesforce", "hubspot")


def team_case(rules: c.Rules, owner: FromClause, params: Params) -> ColumnElement[Any]:
    """The agreed team of an owner row: the first team whose members or condition match."""
    compiler = SqlCompiler(lambda f: _owner_column(owner, f), params)
    whens: list[tuple[ColumnElement[bool], ColumnElement[Any]]] = []
    for team in rules.teams.values():
        tests: list[ColumnElement[bool]] = []
        if team.members:
            tests.append(AsciiLower(owner.c.email).in_(sorted(team.members)))
        if team.condition is not None:
            tests.append(compiler.predicate(team.condition.root))
        whens.append((or_(*tests), literal(team.name)))
    return case(*whens, else_=null()) if whens else null()


def _owner_column(owner: FromClause, f: FieldDef) -> ColumnElement[Any]:
    if not isinstance(f.source, OwnerColumn):
        raise ValueError(f"{f.name} is not an owner field")
    return owner.c[f.source.column]


class PersonQuery:
    """``people`` and the joins a set of fields needs, and an SQL expression per field."""

    def __init__(self, rules: c.Rules, fields: Iterable[FieldDef], params: Params) -> None:
        self.rules = rules
        self.params = params
        self.people = sv.people.alias("p")
        wanted = list(fields)
        sources = [f.source for f in wanted]
        frm: FromClause = self.people
        self.owner: FromClause | None = None
        if any(isinstance(s, (OwnerColumn, TeamOfOwner)) for s in sources):
            self.owner = sv.owners.alias("o")
            owner_id = func.coalesce(self.people.c.salesforce_owner_id, self.people.c.hubspot_owner_id)
            frm = frm.outerjoin(self.owner, self.owner.c.id == owner_id)
        self.campaign: FromClause | None = None
        if any(isinstance(s, CampaignColumn) for s in sources):
            self.campaign = sv.campaigns.alias("cmp")
            frm = frm.outerjoin(self.campaign, self.campaign.c.id == self.people.c.campaign_id)
        self.opportunity: FromClause | None = None
        if any(isinstance(s, OpportunityColumn) for s in sources):
            self.opportunity = latest_opportunities()
            frm = frm.outerjoin(self.opportunity, self.opportunity.c.person_id == self.people.c.id)
        self.entered: FromClause | None = None
        stages = sorted({s.stage for s in sources if isinstance(s, StageEntered)})
        if stages:
            self.entered = stage_entries(rules, stages)
            frm = frm.outerjoin(self.entered, self.entered.c.person_id == self.people.c.id)
        self.from_clause = frm
        self._team: ColumnElement[Any] | None = None

    def column(self, f: FieldDef) -> ColumnElement[Any]:
        source = f.source
        if isinstance(source, PeopleColumn):
            return self.people.c[source.column]
        if isinstance(source, OwnerColumn) and self.owner is not None:
            return self.owner.c[source.column]
        if isinstance(source, TeamOfOwner) and self.owner is not None:
            if self._team is None:
                self._team = team_case(self.rules, self.owner, self.params)
            return self._team
        if isinstance(source, CampaignColumn) and self.campaign is not None:
            return self.campaign.c[source.column]
        if isinstance(source, OpportunityColumn) and self.opportunity is not None:
            return self.opportunity.c[source.column]
        if isinstance(source, StageEntered) and self.entered is not None:
            return type_coerce(self.entered.c[f"{source.stage}_at"], UTCDateTime())
        if isinstance(source, Attribute):
            return AttributeValue(self.people.c.attributes, source.key, f.type)
        raise ValueError(f"field {f.name} was not declared when the query was built")

    def compiler(self) -> SqlCompiler:
        return SqlCompiler(self.column, self.params)

    def live(self) -> ColumnElement[bool]:
        return self.people.c.deleted == false()


def latest_opportunities() -> FromClause:
    """Per person, the most recently created live opportunity."""
    o = sv.opportunities
    ranked = select(
        o.c.person_id, o.c.stage, o.c.amount, o.c.is_closed, o.c.is_won, o.c.loss_reason,
        func.row_number().over(partition_by=o.c.person_id,
                               order_by=(o.c.created_at.desc().nulls_last(), o.c.id.desc())).label("rank"),
    ).where(o.c.person_id.is_not(None), o.c.deleted == false()).subquery("opp_ranked")
    return select(ranked).where(ranked.c.rank == 1).subquery("opp")


def trace_test(trace: c.Trace, t: FromClause) -> ColumnElement[bool]:
    return and_(t.c.system == trace.system, t.c.field == trace.crm_field,
                AsciiLower(t.c.to_value).in_(sorted(trace.values)))


def stage_entries(rules: c.Rules, stages: Sequence[str]) -> FromClause:
    """Per person, when a CRM first labelled each stage (from the transitions)."""
    t = sv.transitions
    columns = []
    for name in stages:
        stage = rules.stages[name]
        test = or_(*(trace_test(tr, t) for tr in stage.traces))
        columns.append(func.min(case((test, t.c.at), else_=null())).label(f"{name}_at"))
    return select(t.c.person_id, *columns).where(t.c.person_id.is_not(None)).group_by(t.c.person_id) \
        .subquery("entered")


def fields_of(conditions: Iterable[Condition], rules: c.Rules) -> list[FieldDef]:
    names: set[str] = set()
    for cond in conditions:
        names |= cond.fields
    return [rules.catalog.fields[n] for n in sorted(names)]


# -- stages, set-based ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Membership:
    """Which definitions hold for a person, and which stages each CRM labels."""

    person_id: int
    definitions: frozenset[str]
    labels: Mapping[str, frozenset[str]]


def _mask(bits: Sequence[ColumnElement[bool] | None]) -> ColumnElement[Any]:
    parts = [case((bit, literal_column(str(1 << i))), else_=literal_column("0"))
             for i, bit in enumerate(bits) if bit is not None]
    return functools.reduce(operator.add, parts) if parts else literal_column("0")


def unpack(mask: int | None, names: Sequence[str]) -> frozenset[str]:
    if not mask:
        return frozenset()
    return frozenset(name for i, name in enumerate(names) if mask >> i & 1)


class StageEvaluator:
    """All stage definitions and labels of a rules set, compiled into one statement."""

    def __init__(self, rules: c.Rules) -> None:
        self.rules = rules
        self.params = Params()
        self.names = list(rules.stages)
        conditions = [s.definition for s in rules.stages.values()]
        conditions += [cond for s in rules.stages.values() for cond in s.labels.values()]
        self.query = PersonQuery(rules, fields_of(conditions, rules), self.params)
        compiler = self.query.compiler()
        self.definition_sql = [compiler.predicate(s.definition.root) for s in rules.stages.values()]
        self.label_sql: dict[str, list[ColumnElement[bool] | None]] = {
            system: [compiler.predicate(s.labels[system].root) if system in s.labels else None
                     for s in rules.stages.values()]
            for system in SYSTEMS
        }

    def statement(self, person_ids: Sequence[int] | None = None) -> Select[Any]:
        stmt = select(
            self.query.people.c.id.label("person_id"),
            _mask(self.definition_sql).label("definitions"),
            *(_mask(self.label_sql[s]).label(f"{s}_labels") for s in SYSTEMS),
        ).select_from(self.query.from_clause).where(self.query.live())
        if person_ids is not None:
            stmt = stmt.where(self.query.people.c.id.in_(list(person_ids)))
        return stmt

    def rows(self, conn: Connection, now: datetime, person_ids: Sequence[int] | None = None
             ) -> Iterator[tuple[int, int, int, int]]:
        """(person id, definitions mask, Salesforce labels mask, HubSpot labels mask) per person.

        Bit i of a mask is the i-th stage in funnel order (``names``); rows stream in batches.
        """
        result = conn.execute(
            self.statement(person_ids), self.params.bind(now), execution_options={"yield_per": 10_000}
        )
        for partition in result.tuples().partitions():
            yield from partition

    def memberships(self, conn: Connection, now: datetime, person_ids: Sequence[int] | None = None
                    ) -> Iterator[Membership]:
        for person_id, defs, sf, hs in self.rows(conn, now, person_ids):
            yield Membership(person_id, unpack(defs, self.names),
                             {"salesforce": unpack(sf, self.names), "hubspot": unpack(hs, self.names)})


# -- single conditions and single people ---------------------------------------------------------


class ConditionQuery:
    """One condition compiled over the store (used by SLAs, teams and the tests)."""

    def __init__(self, rules: c.Rules, condition: Condition) -> None:
        self.params = Params()
        self.query = PersonQuery(rules, fields_of([condition], rules), self.params)
        self.predicate = self.query.compiler().predicate(condition.root)

    def matching(self, conn: Connection, now: datetime) -> list[int]:
        stmt = select(self.query.people.c.id).select_from(self.query.from_clause) \
            .where(self.query.live(), self.predicate).order_by(self.query.people.c.id)
        return [int(r[0]) for r in conn.execute(stmt, self.params.bind(now))]

    def holds_column(self) -> ColumnElement[Any]:
        return holds(self.predicate)


def fetch_record(conn: Connection, rules: c.Rules, person_id: int, names: Iterable[str]) -> dict[str, Any] | None:
    """One person's values for the named fields, read with the same expressions rules use."""
    params = Params()
    wanted = [rules.catalog.fields[n] for n in sorted(set(names))]
    query = PersonQuery(rules, wanted, params)
    columns = [query.column(f).label(f.name) for f in wanted] or [literal(1).label("_")]
    stmt = select(*columns).select_from(query.from_clause).where(query.people.c.id == person_id)
    row = conn.execute(stmt).mappings().first()
    if row is None:
        return None
    return {f.name: row[f.name] for f in wanted}


def explain_person(conn: Connection, rules: c.Rules, person_id: int, condition: Condition,
                   now: datetime) -> Step | None:
    """Which clauses of ``condition`` hold for one person of the store, with the values seen."""
    record = fetch_record(conn, rules, person_id, condition.fields)
    return None if record is None else explain(condition, record, now)


def find_person(conn: Connection, key: str) -> int | None:
    """A person by store id, email, or a CRM record id."""
    p = sv.people
    if key.isdigit():
        found = conn.execute(select(p.c.id).where(p.c.id == int(key))).first()
        if found is not None:
            return int(found[0])
    tests = [AsciiLower(p.c.email) == key.lower(), p.c.salesforce_lead_id == key,
             p.c.salesforce_contact_id == key, p.c.hubspot_contact_id == key]
    row = conn.execute(select(p.c.id).where(or_(*tests)).order_by(p.c.deleted, p.c.id).limit(1)).first()
    return None if row is None else int(row[0])

