"""``detente explain PERSON``: one person's history across both CRMs, findings and the rules behind them.

Two halves, kept apart:

- **reading** (``find_people``, ``read_timeline``): the only functions here that touch the
  store. They return plain frozen objects: the person, the stage and owner transitions, the
  activities (a connector copy folded into its original), the opportunities, every stored
  finding of the person and which stage definitions hold and which stages each CRM labels.
- **formatting** (``clause_for``, ``entries``, ``render_table``, ``to_json``): pure functions of
  those objects and the rules.

Findings are read as the audit last stored them (``detente audit`` reconciles them; when it
last ran comes from ``audit_state``); the stages are evaluated as of ``now``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, or_, select

from detente.reconcile.labels import SYSTEM_NAMES
from detente.reconcile.model import DISAGREEMENT, DRIFT, FEEDBACK, IDENTITY, MISSED_LABEL, SLA
from detente.rules import checked as c
from detente.rules.evaluate import StageEvaluator
from detente.rules.fields import OWNER_TRANSITION_FIELDS
from detente.rules.sql import AsciiLower
from detente.store.findings import AuditState, FindingRow
from detente.store.tables import Activity, Opportunity, Owner, Person, PersonRecord, Transition

PEOPLE = Person.__table__  # type: ignore[attr-defined]
RECORDS = PersonRecord.__table__  # type: ignore[attr-defined]
OWNERS = Owner.__table__  # type: ignore[attr-defined]
TRANSITIONS = Transition.__table__  # type: ignore[attr-defined]
ACTIVITIES = Activity.__table__  # type: ignore[attr-defined]
OPPORTUNITIES = Opportunity.__table__  # type: ignore[attr-defined]
FINDINGS = FindingRow.__table__  # type: ignore[attr-defined]
AUDIT_STATE = AuditState.__table__  # type: ignore[attr-defined]

OWNER_FIELDS = frozenset(OWNER_TRANSITION_FIELDS)
PERSON_OBJECTS = ("Lead", "Contact", "contacts")

# One line per rule of the checks that are not a stage or an SLA of the rules file.
RULE_DESCRIPTIONS: Mapping[str, str] = {
    "duplicate_lead_email": "two or more live Salesforce leads carry the same email",
    "hubspot_contacts_share_lead": "two or more live HubSpot contacts claim the same Salesforce lead "
                                   "(salesforceleadid)",
    "hubspot_lead_deleted": "a live HubSpot contact claims a Salesforce lead that Salesforce deleted",
    "hubspot_lead_converted": "a live HubSpot contact claims a converted Salesforce lead and carries no "
                              "salesforcecontactid",
    "idle_with_sales": "an open lead owned by {team} with no activity, status or owner change in either CRM "
                       "for {idle}",
    "converted_without_opportunity": "a Salesforce lead was converted without an opportunity",
    "closed_lost_without_reason": "a closed-lost opportunity has no loss reason (Salesforce Loss_Reason__c or "
                                  "HubSpot closed_lost_reason)",
    "opportunity_without_source": "an opportunity has no source in either CRM, so its bookings count for no "
                                  "channel",
    "won_not_in_hubspot": "the Salesforce opportunity closed won while HubSpot still shows a stage before "
                          "customer",
}


# -- what is read ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PersonRef:
    """A person of the store and the CRM records that identify them."""

    id: int
    email: str | None
    salesforce_lead_id: str | None
    salesforce_contact_id: str | None
    hubspot_contact_id: str | None
    deleted: bool = False
    name: str | None = None
    company: str | None = None
    created_at: datetime | None = None
    salesforce_status: str | None = None
    hubspot_lifecyclestage: str | None = None

    def ids(self) -> str:
        parts = [f"Salesforce lead {self.salesforce_lead_id}" if self.salesforce_lead_id else None,
                 f"Salesforce contact {self.salesforce_contact_id}" if self.salesforce_contact_id else None,
                 f"HubSpot contact {self.hubspot_contact_id}" if self.hubspot_contact_id else None]
        return ", ".join(p for p in parts if p) or "no CRM record"


@dataclass(frozen=True)
class TransitionEntry:
    at: datetime
    id: int
    system: str
    object: str
    record_id: str
    field: str
    from_value: str | None
    to_value: str | None
    source: str
    from_owner: str | None = None  # the owner's email, for owner fields
    to_owner: str | None = None


@dataclass(frozen=True)
class ActivityEntry:
    at: datetime
    id: int
    system: str
    object: str
    record_id: str
    kind: str
    subject: str | None
    owner_email: str | None
    completed: bool
    copies: tuple[tuple[str, str, str], ...] = ()  # (system, object, record id) of connector copies
    copy_of: int | None = None  # set only when the original is not among the person's activities


@dataclass(frozen=True)
class OpportunityEntry:
    id: int
    salesforce_id: str | None
    hubspot_deal_id: str | None
    name: str | None
    stage: str | None
    hubspot_stage: str | None
    amount: float | None
    is_closed: bool
    is_won: bool
    loss_reason: str | None
    created_at: datetime | None
    closed_at: datetime | None


@dataclass(frozen=True)
class OpportunityEvent:
    """An opportunity created or closed, as a point of the timeline."""

    at: datetime
    event: str  # created, closed won, closed lost
    opportunity: OpportunityEntry


Entry = TransitionEntry | ActivityEntry | OpportunityEvent


@dataclass(frozen=True)
class StageState:
    """One stage for the person: whether its definition holds and whether each CRM labels it."""

    name: str
    holds: bool
    labels: Mapping[str, bool | None]  # system -> labelled; None when the CRM has no label for the stage


@dataclass(frozen=True)
class Timeline:
    person: PersonRef
    now: datetime
    rules_version: str
    stages: tuple[StageState, ...]
    transitions: tuple[TransitionEntry, ...]
    activities: tuple[ActivityEntry, ...]
    opportunities: tuple[OpportunityEntry, ...]
    findings: tuple[Mapping[str, Any], ...]  # stored finding rows, oldest first
    last_evaluated: datetime | None  # when the audit last ran over the store (None: never)
    audited_with: str | None = None  # the rules version of that run


def find_people(conn: Connection, key: str) -> list[PersonRef]:
    """The people an email, a Salesforce lead/contact id or a HubSpot contact id names.

    Live people come first; a deleted one is returned only when no live person matches.
    """
    p = PEOPLE
    key = key.strip()
    tests = [AsciiLower(p.c.email) == key.lower(), p.c.salesforce_lead_id == key,
             p.c.salesforce_contact_id == key, p.c.hubspot_contact_id == key]
    linked = select(RECORDS.c.person_id).where(RECORDS.c.record_id == key, RECORDS.c.object.in_(PERSON_OBJECTS))
    stmt = select(*_person_columns()).where(or_(*tests, p.c.id.in_(linked))).order_by(p.c.deleted, p.c.id)
    found = [_person_ref(dict(r._mapping)) for r in conn.execute(stmt)]
    live = [x for x in found if not x.deleted]
    return live or found


def _person_columns() -> list[Any]:
    p = PEOPLE
    return [p.c.id, p.c.email, p.c.salesforce_lead_id, p.c.salesforce_contact_id, p.c.hubspot_contact_id,
            p.c.deleted, p.c.first_name, p.c.last_name, p.c.company, p.c.created_at, p.c.salesforce_status,
            p.c.hubspot_lifecyclestage]


def _person_ref(row: Mapping[str, Any]) -> PersonRef:
    name = " ".join(x for x in (row["first_name"], row["last_name"]) if x) or None
    return PersonRef(row["id"], row["email"], row["salesforce_lead_id"], row["salesforce_contact_id"],
                     row["hubspot_contact_id"], bool(row["deleted"]), name, row["company"], row["created_at"],
                     row["salesforce_status"], row["hubspot_lifecyclestage"])


def read_timeline(engine: Engine, rules: c.Rules, person: PersonRef, now: datetime) -> Timeline:
    """Everything ``explain`` shows about one person, read from the store."""
    with engine.connect() as conn:
        owners = _owners(conn)
        opportunities = _opportunities(conn, person.id)
        opp_ids = [o.id for o in opportunities]
        transitions = _transitions(conn, person.id, opp_ids, owners)
        activities = _activities(conn, person.id, opp_ids)
        findings = _findings(conn, person)
        state = conn.execute(select(AUDIT_STATE.c.evaluated_at, AUDIT_STATE.c.rules_version)).first()
        if state is None:  # a store audited before the audit kept its state
            last, audited_with = conn.execute(select(func.max(FINDINGS.c.evaluated_at))).scalar(), None
        else:
            last, audited_with = state.evaluated_at, state.rules_version
    # StageEvaluator streams with yield_per, which would leave later statements on the same
    # connection on a server-side cursor: it gets a connection of its own.
    with engine.connect() as conn:
        memberships = list(StageEvaluator(rules).memberships(conn, now, [person.id]))
    stages: tuple[StageState, ...] = ()
    if memberships:
        m = memberships[0]
        stages = tuple(StageState(name, name in m.definitions,
                                  {s: (name in m.labels.get(s, frozenset())) if s in stage.labels else None
                                   for s in ("hubspot", "salesforce")})
                       for name, stage in rules.stages.items())
    return Timeline(person, now, rules.version, stages, tuple(transitions), tuple(activities),
                    tuple(opportunities), tuple(findings), last, audited_with)


def _owners(conn: Connection) -> dict[tuple[str, str], str]:
    """Owner emails by (system, CRM user id) and ("store", owner id)."""
    o = OWNERS
    out: dict[tuple[str, str], str] = {}
    for r in conn.execute(select(o.c.id, o.c.email, o.c.salesforce_user_id, o.c.hubspot_owner_id)):
        out[("store", str(r.id))] = r.email
        if r.salesforce_user_id:
            out[("salesforce", r.salesforce_user_id)] = r.email
        if r.hubspot_owner_id:
            out[("hubspot", r.hubspot_owner_id)] = r.email
    return out


def _opportunities(conn: Connection, person_id: int) -> list[OpportunityEntry]:
    o = OPPORTUNITIES
    stmt = select(o.c.id, o.c.salesforce_id, o.c.hubspot_deal_id, o.c.name, o.c.stage, o.c.hubspot_stage,
                  o.c.amount, o.c.is_closed, o.c.is_won, o.c.loss_reason, o.c.created_at, o.c.closed_at) \
        .where(o.c.person_id == person_id, o.c.deleted.is_(False)).order_by(o.c.created_at, o.c.id)
    return [OpportunityEntry(**r._mapping) for r in conn.execute(stmt)]


def _transitions(conn: Connection, person_id: int, opp_ids: Sequence[int],
                 owners: Mapping[tuple[str, str], str]) -> list[TransitionEntry]:
    t = TRANSITIONS
    mine = t.c.person_id == person_id
    stmt = select(t.c.id, t.c.system, t.c.object, t.c.record_id, t.c.field, t.c.from_value, t.c.to_value, t.c.at,
                  t.c.source).where(or_(mine, t.c.opportunity_id.in_(list(opp_ids))) if opp_ids else mine) \
        .order_by(t.c.at, t.c.id)
    out = []
    for r in conn.execute(stmt):
        is_owner = (r.system, r.field) in OWNER_FIELDS
        out.append(TransitionEntry(
            r.at, r.id, r.system, r.object, r.record_id, r.field, r.from_value, r.to_value, r.source,
            owners.get((r.system, r.from_value or "")) if is_owner else None,
            owners.get((r.system, r.to_value or "")) if is_owner else None))
    return out


def _activities(conn: Connection, person_id: int, opp_ids: Sequence[int]) -> list[ActivityEntry]:
    a, o = ACTIVITIES, OWNERS
    mine = a.c.person_id == person_id
    stmt = select(a.c.id, a.c.system, a.c.object, a.c.record_id, a.c.kind, a.c.subject, a.c.occurred_at,
                  a.c.completed, a.c.copy_of, o.c.email.label("owner_email")) \
        .select_from(a.outerjoin(o, o.c.id == a.c.owner_id)) \
        .where(or_(mine, a.c.opportunity_id.in_(list(opp_ids))) if opp_ids else mine, a.c.deleted.is_(False),
               a.c.occurred_at.is_not(None)).order_by(a.c.occurred_at, a.c.id)
    rows = list(conn.execute(stmt))
    return fold_copies([dict(r._mapping) for r in rows])


def fold_copies(rows: Sequence[Mapping[str, Any]]) -> list[ActivityEntry]:
    """Activities with each connector copy shown once: on its original, or alone when that is not here."""
    ids = {r["id"] for r in rows}
    copies: dict[int, list[tuple[str, str, str]]] = {}
    for r in rows:
        if r["copy_of"] is not None and r["copy_of"] in ids:
            copies.setdefault(r["copy_of"], []).append((r["system"], r["object"], r["record_id"]))
    out = []
    for r in rows:
        if r["copy_of"] is not None and r["copy_of"] in ids:
            continue
        out.append(ActivityEntry(r["occurred_at"], r["id"], r["system"], r["object"], r["record_id"], r["kind"],
                                 r["subject"], r["owner_email"], bool(r["completed"]),
                                 tuple(copies.get(r["id"], ())), r["copy_of"]))
    return out


def _findings(conn: Connection, person: PersonRef) -> list[dict[str, Any]]:
    """The person's findings: those about them, and those naming one of their CRM records."""
    f = FINDINGS
    ids = [x for x in (person.salesforce_lead_id, person.salesforce_contact_id, person.hubspot_contact_id) if x]
    tests = [f.c.person_id == person.id]
    if ids:
        tests += [f.c.salesforce_id.in_(ids), f.c.hubspot_id.in_(ids)]
    if person.email:
        tests.append(AsciiLower(f.c.email) == person.email.lower())
    rows = [dict(r._mapping) for r in conn.execute(select(f).where(or_(*tests)).order_by(f.c.opened_at, f.c.key))]
    return [r for r in rows if r["person_id"] == person.id or _names_record(r.get("records") or {}, ids)]


def _names_record(records: Mapping[str, Any], ids: Sequence[str]) -> bool:
    return any(i in (records.get(obj) or ()) for obj in records for i in ids)


# -- formatting (pure) ------------------------------------------------------------------------------


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _text(cond: Any) -> str:
    return " ".join(str(cond.text).split())


def entries(tl: Timeline) -> list[Entry]:
    """Transitions, activities and opportunity events in time order (ties: that order, then id)."""
    events: list[Entry] = [*tl.transitions, *tl.activities]
    for o in tl.opportunities:
        if o.created_at is not None:
            events.append(OpportunityEvent(o.created_at, "created", o))
        if o.is_closed and o.closed_at is not None:
            events.append(OpportunityEvent(o.closed_at, "closed won" if o.is_won else "closed lost", o))
    rank = {TransitionEntry: 0, ActivityEntry: 1, OpportunityEvent: 2}
    return sorted(events, key=lambda e: (e.at, rank[type(e)],
                                         e.opportunity.id if isinstance(e, OpportunityEvent) else e.id))


@dataclass(frozen=True)
class Clause:
    """The part of the rules a finding comes from, in words and as data."""

    title: str
    lines: tuple[str, ...]
    data: Mapping[str, Any]


def clause_for(kind: str, rule: str, rules: c.Rules) -> Clause:
    """The rule clause behind a finding of ``kind`` and ``rule`` in ``rules``."""
    if kind in (DRIFT, MISSED_LABEL):
        stage = rules.stages.get(rule)
        if stage is None:
            return _missing(kind, rule, "stage")
        labels = {s: _text(cond) for s, cond in stage.labels.items()}
        lines = [f"meaning: {' '.join(stage.meaning.split())}", f"definition: {_text(stage.definition)}"]
        lines += [f"{SYSTEM_NAMES[s]} label: {text}" for s, text in labels.items()]
        if stage.grace is not None:
            lines.append(f"grace: {stage.grace} (owner: {stage.owner})")
        return Clause(f"stage {rule}", tuple(lines), {
            "stage": rule, "meaning": " ".join(stage.meaning.split()), "definition": _text(stage.definition),
            "labels": labels, "grace": None if stage.grace is None else str(stage.grace), "owner": stage.owner})
    if kind == SLA:
        sla = next((s for s in rules.slas if s.id == rule), None)
        if sla is None:
            return _missing(kind, rule, "SLA")
        calendar = rules.calendar_for(sla)
        within = f"{sla.within}" + (f" on the {calendar.name} calendar" if sla.within.business and calendar else "")
        lines = [f"meaning: {' '.join((sla.meaning or '').split()) or '-'}",
                 f"start: the person {sla.start.describe()}", f"stop: the person {sla.stop.describe()}",
                 f"within: {within} (owed by {sla.owner})"]
        if sla.applies_to is not None:
            lines.append(f"applies to: {_text(sla.applies_to)}")
        if sla.require is not None:
            at = f" when stopping at {', '.join(sla.require.before)}" if sla.require.before else ""
            lines.append(f"requires: {_text(sla.require.condition)}{at}")
        return Clause(f"SLA {rule}", tuple(lines), {
            "sla": rule, "meaning": " ".join((sla.meaning or "").split()) or None, "start": sla.start.describe(),
            "stop": sla.stop.describe(), "within": within, "owner": sla.owner,
            "require": None if sla.require is None else _text(sla.require.condition)})
    if kind == DISAGREEMENT and "~" in rule:
        hs, sf = rule.split("~", 1)
        if (hs, sf) not in rules.disagreements:
            return _missing(kind, rule, "disagreement")
        hs_label, sf_label = (rules.stages[hs].labels.get("hubspot"), rules.stages[sf].labels.get("salesforce"))
        line = (f"HubSpot {hs} ({_text(hs_label) if hs_label else 'no label'}) and Salesforce {sf} "
                f"({_text(sf_label) if sf_label else 'no label'}) must never be shown together")
        return Clause(f"disagreement {hs} ~ {sf}", (line,), {"hubspot": hs, "salesforce": sf, "description": line})
    if kind in (FEEDBACK, IDENTITY, DISAGREEMENT) and rule in RULE_DESCRIPTIONS:
        team = rules.feedback.team if rules.feedback else "sales"
        idle = str(rules.feedback.idle_with_sales) if rules.feedback else "the agreed time"
        line = RULE_DESCRIPTIONS[rule].format(team=team, idle=idle)
        return Clause(f"{kind} {rule}", (line,), {"rule": rule, "description": line})
    return _missing(kind, rule, "rule")


def _missing(kind: str, rule: str, what: str) -> Clause:
    line = f"the rules in force have no {what} '{rule}' (the finding came from other rules)"
    return Clause(f"{kind} {rule}", (line,), {"rule": rule, "description": line})


def _value(value: str | None, owner: str | None) -> str:
    if value is None or value == "":
        return "(none)"
    return f"{owner} ({value})" if owner else value


def entry_line(e: Entry) -> str:
    """One timeline entry as text (without its time)."""
    if isinstance(e, TransitionEntry):
        field_name = f"{e.field} (owner)" if (e.system, e.field) in OWNER_FIELDS else e.field
        return (f"{SYSTEM_NAMES.get(e.system, e.system):10} {e.object} {e.record_id}: {field_name} "
                f"{_value(e.from_value, e.from_owner)} -> {_value(e.to_value, e.to_owner)}")
    if isinstance(e, ActivityEntry):
        extra = ""
        if e.copies:
            extra = "  [copied to " + ", ".join(f"{SYSTEM_NAMES.get(s, s)} {o} {i}" for s, o, i in e.copies) + "]"
        elif e.copy_of is not None:
            extra = f"  [connector copy of activity #{e.copy_of}]"
        done = "" if e.completed else " (open)"
        return (f"{SYSTEM_NAMES.get(e.system, e.system):10} {e.kind}{done} {e.subject or '(no subject)'!r} "
                f"by {e.owner_email or 'nobody'} ({e.object} {e.record_id}){extra}")
    o = e.opportunity
    system = "Salesforce" if o.salesforce_id else "HubSpot"
    return f"{system:10} opportunity {e.event}: {_opportunity_words(o)}"


def _opportunity_words(o: OpportunityEntry) -> str:
    amount = "-" if o.amount is None else f"{o.amount:,.0f}"
    ids = ", ".join(x for x in (o.salesforce_id, f"deal {o.hubspot_deal_id}" if o.hubspot_deal_id else None) if x)
    return f"{o.name or '(no name)'} (stage now {o.stage or o.hubspot_stage or '-'}, amount {amount}; {ids})"


def _label_cell(value: bool | None) -> str:
    return "no label" if value is None else "labels" if value else "-"


def render_table(tl: Timeline, rules: c.Rules) -> list[str]:
    """The timeline as text lines."""
    return [line.rstrip() for line in _table(tl, rules)]


def _table(tl: Timeline, rules: c.Rules) -> list[str]:
    p = tl.person
    who = ", ".join(x for x in (p.name, p.company) if x)
    out = [f"person #{p.id} {p.email or '(no email)'}" + (f" ({who})" if who else "")
           + ("  [deleted]" if p.deleted else ""),
           f"  {p.ids()}; created {_when(p.created_at)} UTC",
           f"  Salesforce status {p.salesforce_status or '-'}; "
           f"HubSpot lifecycle stage {p.hubspot_lifecyclestage or '-'}",
           ""]
    if tl.stages:
        out.append(f"stages as of {_when(tl.now)} UTC (rules version {tl.rules_version})")
        out.append(f"  {'stage':14} {'definition':11} {'HubSpot':9} {'Salesforce':10}")
        for s in tl.stages:
            out.append(f"  {s.name:14} {'holds' if s.holds else '-':11} {_label_cell(s.labels.get('hubspot')):9} "
                       f"{_label_cell(s.labels.get('salesforce')):10}")
        out.append("  definitions that hold: " + (", ".join(s.name for s in tl.stages if s.holds) or "none"))
        for system in ("hubspot", "salesforce"):
            said = [s.name for s in tl.stages if s.labels.get(system)]
            out.append(f"  {SYSTEM_NAMES[system]} labels: {', '.join(said) or 'no stage'}")
    else:
        out.append("stages: not evaluated (the person is deleted)")
    out.append("")
    timeline = entries(tl)
    out.append(f"timeline ({len(timeline)} entries, UTC)")
    out.extend(f"  {_when(e.at)}  {entry_line(e)}" for e in timeline)
    if not timeline:
        out.append("  nothing recorded")
    out.append("")
    out.append(f"opportunities ({len(tl.opportunities)})")
    for o in tl.opportunities:
        closed = f"closed {'won' if o.is_won else 'lost'} {_when(o.closed_at)}" if o.is_closed else "open"
        out.append(f"  {_opportunity_words(o)}; created {_when(o.created_at)}, {closed}")
    out.append("")
    if tl.last_evaluated is None:
        out.append("findings: none stored yet; run detente audit to reconcile them")
        return out
    out.append(f"findings ({len(tl.findings)}; the audit last ran at {_when(tl.last_evaluated)} UTC)")
    if tl.audited_with is not None and tl.audited_with != tl.rules_version:
        out.append(f"  the audit ran with rules version {tl.audited_with}; run detente audit to apply "
                   f"{tl.rules_version}")
    for f in tl.findings:
        state = f" ({f['state']})" if f.get("state") else ""
        out.append(f"  {f['status']}{state} {f['kind']} {f['rule']}: opened {_when(f['opened_at'])}, "
                   f"due {_when(f.get('due_at'))}, resolved {_when(f.get('resolved_at'))}")
        out.append(f"    {f['explanation']}")
        if f.get("resolution"):
            out.append(f"    resolution: {f['resolution']}")
        if f.get("rules_version") and f["rules_version"] != tl.rules_version:
            out.append(f"    found under rules version {f['rules_version']}; the rules now are {tl.rules_version}")
        clause = clause_for(f["kind"], f["rule"], rules)
        out.append(f"    rule: {clause.title}")
        out.extend(f"      {line}" for line in clause.lines)
    return out


def _entry_json(e: Entry) -> dict[str, Any]:
    if isinstance(e, TransitionEntry):
        return {"type": "transition", "at": iso(e.at), "system": e.system, "object": e.object,
                "record_id": e.record_id, "field": e.field, "from": e.from_value, "to": e.to_value,
                "from_owner": e.from_owner, "to_owner": e.to_owner, "source": e.source}
    if isinstance(e, ActivityEntry):
        return {"type": "activity", "at": iso(e.at), "system": e.system, "object": e.object,
                "record_id": e.record_id, "kind": e.kind, "subject": e.subject, "owner_email": e.owner_email,
                "completed": e.completed,
                "copies": [{"system": s, "object": o, "record_id": i} for s, o, i in e.copies],
                "copy_of": e.copy_of}
    return {"type": "opportunity", "at": iso(e.at), "event": e.event, **_opportunity_json(e.opportunity)}


def _opportunity_json(o: OpportunityEntry) -> dict[str, Any]:
    return {"opportunity_id": o.id, "salesforce_id": o.salesforce_id, "hubspot_deal_id": o.hubspot_deal_id,
            "name": o.name, "stage": o.stage, "hubspot_stage": o.hubspot_stage, "amount": o.amount,
            "is_closed": o.is_closed, "is_won": o.is_won, "loss_reason": o.loss_reason,
            "created_at": iso(o.created_at), "closed_at": iso(o.closed_at)}


def to_json(tl: Timeline, rules: c.Rules) -> dict[str, Any]:
    """The timeline as a JSON-ready dict."""
    p = tl.person
    return {
        "person": {"id": p.id, "email": p.email, "name": p.name, "company": p.company,
                   "salesforce_lead_id": p.salesforce_lead_id, "salesforce_contact_id": p.salesforce_contact_id,
                   "hubspot_contact_id": p.hubspot_contact_id, "deleted": p.deleted, "created_at": iso(p.created_at),
                   "salesforce_status": p.salesforce_status, "hubspot_lifecyclestage": p.hubspot_lifecyclestage},
        "as_of": iso(tl.now), "rules_version": tl.rules_version,
        "stages": [{"stage": s.name, "definition_holds": s.holds, "hubspot": s.labels.get("hubspot"),
                    "salesforce": s.labels.get("salesforce")} for s in tl.stages],
        "timeline": [_entry_json(e) for e in entries(tl)],
        "opportunities": [_opportunity_json(o) for o in tl.opportunities],
        "audited_at": iso(tl.last_evaluated), "audited_with_rules_version": tl.audited_with,
        "findings": [finding_json(f, rules) for f in tl.findings],
    }


def finding_json(f: Mapping[str, Any], rules: c.Rules) -> dict[str, Any]:
    """One stored finding with the rule clause behind it."""
    clause = clause_for(f["kind"], f["rule"], rules)
    return {"kind": f["kind"], "rule": f["rule"], "status": f["status"], "state": f.get("state"),
            "rules_version": f.get("rules_version"), "opened_at": iso(f["opened_at"]), "due_at": iso(f.get("due_at")),
            "started_at": iso(f.get("started_at")), "stopped_at": iso(f.get("stopped_at")),
            "resolved_at": iso(f.get("resolved_at")), "resolution": f.get("resolution"),
            "explanation": f["explanation"], "clause": {"title": clause.title, **clause.data}}
