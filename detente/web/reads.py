"""What the dashboard reads from the store besides the report: the audit's stamp (part of the
report cache's key) and the open findings, each with a key that names its person for ``/explain``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select

from detente.store.findings import AuditState, FindingRow
from detente.store.tables import Person

FINDINGS = FindingRow.__table__  # type: ignore[attr-defined]
AUDIT_STATE = AuditState.__table__  # type: ignore[attr-defined]
PEOPLE = Person.__table__  # type: ignore[attr-defined]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        value = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return str(value.astimezone(UTC).isoformat())
    return str(value)


def audit_stamp(engine: Engine) -> tuple[str | None, ...]:
    """When the audit last ran (first; None when the store keeps no audit state), up to which pull,
    with which rules: changes whenever the findings, stages and clocks the report counts may have."""
    a = AUDIT_STATE
    with engine.connect() as conn:
        row = conn.execute(select(a.c.evaluated_at, a.c.watermark, a.c.rules_version, a.c.full_at)).first()
        if row is None:  # never audited, or audited before the audit kept its state
            last, count = conn.execute(select(func.max(FINDINGS.c.evaluated_at), func.count())
                                       .select_from(FINDINGS)).one()
            return (None, _text(last), str(count))
    return tuple(_text(v) for v in row)


@dataclass(frozen=True)
class FindingLine:
    """One open finding as a list shows it."""

    key: str
    kind: str
    rule: str
    state: str | None
    team: str | None
    owner_email: str | None
    who: str  # the person's email, else a CRM id
    opened_at: datetime
    due_at: datetime | None
    explanation: str
    person_key: str | None  # what /explain/{person} is given: a CRM id, else an email
    person_id: int | None  # picks the person when the key names several


@dataclass(frozen=True)
class FindingList:
    lines: tuple[FindingLine, ...]
    total: int  # open findings that pass the filters (lines holds at most the limit)
    kinds: tuple[str, ...]  # of every open finding, for the filters
    teams: tuple[str, ...]


def open_findings(engine: Engine, *, kinds: Sequence[str] = (), teams: Sequence[str] = (),
                  limit: int = 200) -> FindingList:
    """Open findings, the soonest due first (then the oldest), filtered by kind and team."""
    f, p = FINDINGS, PEOPLE
    where = [f.c.status == "open"]
    if kinds:
        where.append(f.c.kind.in_(list(kinds)))
    if teams:
        where.append(f.c.team.in_(list(teams)))
    stmt = select(f.c.key, f.c.kind, f.c.rule, f.c.state, f.c.team, f.c.owner_email, f.c.email, f.c.salesforce_id,
                  f.c.hubspot_id, f.c.opened_at, f.c.due_at, f.c.explanation, f.c.person_id,
                  p.c.email.label("person_email"), p.c.salesforce_lead_id, p.c.salesforce_contact_id,
                  p.c.hubspot_contact_id) \
        .select_from(f.outerjoin(p, p.c.id == f.c.person_id)).where(*where) \
        .order_by(f.c.due_at.is_(None), f.c.due_at, f.c.opened_at, f.c.key).limit(limit)
    with engine.connect() as conn:
        rows = list(conn.execute(stmt))
        total = int(conn.execute(select(func.count()).select_from(f).where(*where)).scalar() or 0)
        all_kinds = tuple(sorted(k for (k,) in conn.execute(
            select(f.c.kind).where(f.c.status == "open").distinct()) if k))
        all_teams = tuple(sorted(t for (t,) in conn.execute(
            select(f.c.team).where(f.c.status == "open").distinct()) if t))
    lines = []
    for r in rows:
        crm_ids = (r.salesforce_lead_id, r.salesforce_contact_id, r.hubspot_contact_id)
        person_key = next((x for x in (*crm_ids, r.person_email) if x), None) if r.person_id is not None else None
        if person_key is None:  # no person row: the records the finding names
            person_key = next((x for x in (r.hubspot_id, r.salesforce_id, r.email) if x), None)
        who = r.person_email or r.email or r.salesforce_id or r.hubspot_id or "-"
        lines.append(FindingLine(r.key, r.kind, r.rule, r.state, r.team, r.owner_email, who, r.opened_at, r.due_at,
                                 r.explanation, person_key, r.person_id))
    return FindingList(tuple(lines), total, all_kinds, all_teams)
