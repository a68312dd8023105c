"""Plan: the writes that make the CRMs hold the desired state, and nothing else.

For each field of each target record, the CRM's **current** value is what detente last wrote
there if the CRM has not been pulled since, else what the last pull saw. Only a desired value
different from the current one becomes a write. When the last pull shows a value other than
the one detente wrote after detente wrote it, a person changed it: the field is reported and
left alone (settings ``writeback.on_override: leave``), or written back (``restore``).

Tasks: a desired task never written (or whose contents changed) becomes a ``task`` write, an
upsert by its key; a task detente wrote that is no longer desired (its finding resolved)
becomes a ``complete`` write. Writes already planned or sent are not planned again; a planned
field write whose value is no longer wanted is skipped as superseded.

``plan_writes`` stops with ``PlanTooLarge`` before recording anything when the plan has more
writes than ``writeback.max_writes_per_run``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, insert, or_, select, tuple_, update

from detente.errors import DetenteError
from detente.rules import checked as c
from detente.settings import WritebackSettings
from detente.store.findings import FindingRow
from detente.store.tables import Owner, Person, RawRecord
from detente.store.writes import WriteRow
from detente.writeback.desired import Desired, OpenFinding, PersonView, Target, desired_state, digest

FINDINGS = FindingRow.__table__  # type: ignore[attr-defined]
PEOPLE = Person.__table__  # type: ignore[attr-defined]
OWNERS = Owner.__table__  # type: ignore[attr-defined]
RAW = RawRecord.__table__  # type: ignore[attr-defined]
WRITES = WriteRow.__table__  # type: ignore[attr-defined]
TASK_KEY_FIELD = {"salesforce": "Detente_Key__c", "hubspot": "detente_key"}
TASK_OBJECT = {"salesforce": "Task", "hubspot": "tasks"}
IN_FLIGHT = ("planned", "sent")


class PlanTooLarge(DetenteError):
    """The plan has more writes than one run may send: likely a mistake in the rules."""


@dataclass(frozen=True)
class Override:
    """A field someone changed in the CRM after detente wrote it."""

    target: Target
    field: str
    written: Any
    now: Any


@dataclass
class Plan:
    writes: list[dict[str, Any]] = field(default_factory=list)  # new outbox rows
    superseded: list[str] = field(default_factory=list)  # planned keys no longer wanted
    overrides: list[Override] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unchanged: int = 0


def same(a: Any, b: Any) -> bool:
    """Equal as the CRM keeps them: empty is empty, instants compare as instants."""
    if a in (None, "") and b in (None, ""):
        return True
    if isinstance(a, str) and isinstance(b, str):
        ta, tb = _instant(a), _instant(b)
        if ta is not None and tb is not None:
            return ta == tb
        return a.strip() == b.strip()
    return bool(a == b)


def _instant(text: str) -> datetime | None:
    if len(text) < 19 or text[4] != "-" or "T" not in text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("+0000", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC).replace(microsecond=0) if moment.tzinfo else None


# -- reading the store ---------------------------------------------------------------------------


def open_findings(conn: Connection) -> list[OpenFinding]:
    f = FINDINGS
    rows = conn.execute(select(f.c.key, f.c.kind, f.c.rule, f.c.person_id, f.c.state, f.c.due_at, f.c.started_at,
                               f.c.stopped_at, f.c.explanation)
                        .where(f.c.status == "open", f.c.person_id.is_not(None)))
    return [OpenFinding(**r._mapping) for r in rows]


def written_people(conn: Connection) -> set[int]:
    """People on whose records detente has written something (their values may need clearing)."""
    w, p = WRITES, PEOPLE
    targets = select(w.c.system, w.c.object, w.c.record_id).where(w.c.kind == "field", w.c.state == "applied") \
        .distinct().subquery()
    stmt = select(p.c.id).join(targets, or_(
        and_(targets.c.system == "salesforce", targets.c.object == "Lead", targets.c.record_id ==
             p.c.salesforce_lead_id),
        and_(targets.c.system == "salesforce", targets.c.object == "Contact", targets.c.record_id ==
             p.c.salesforce_contact_id),
        and_(targets.c.system == "hubspot", targets.c.object == "contacts", targets.c.record_id ==
             p.c.hubspot_contact_id)))
    return {int(i) for (i,) in conn.execute(stmt)}


def people_views(conn: Connection, ids: Sequence[int]) -> dict[int, PersonView]:
    p, o = PEOPLE, OWNERS
    so, ho = o.alias("so"), o.alias("ho")
    out: dict[int, PersonView] = {}
    for i in range(0, len(ids), 5000):
        stmt = select(p.c.id, p.c.email, p.c.first_name, p.c.last_name, p.c.company, p.c.salesforce_lead_id,
                      p.c.salesforce_contact_id, p.c.salesforce_converted, p.c.hubspot_contact_id,
                      so.c.salesforce_user_id, so.c.email.label("sf_owner_email"), so.c.active.label("sf_active"),
                      ho.c.hubspot_owner_id, ho.c.email.label("hs_owner_email"), ho.c.active.label("hs_active")) \
            .outerjoin(so, so.c.id == p.c.salesforce_owner_id).outerjoin(ho, ho.c.id == p.c.hubspot_owner_id) \
            .where(p.c.id.in_(list(ids[i:i + 5000])), p.c.deleted.is_(False))
        for r in conn.execute(stmt):
            sf: Target | None = None
            if r.salesforce_lead_id and not r.salesforce_converted:
                sf = Target("salesforce", "Lead", r.salesforce_lead_id)
            elif r.salesforce_contact_id:
                sf = Target("salesforce", "Contact", r.salesforce_contact_id)
            hs = Target("hubspot", "contacts", r.hubspot_contact_id) if r.hubspot_contact_id else None
            # Tasks go to active owners only: a CRM refuses a task for a deactivated user or an
            # archived owner, and would refuse it again at every run.
            users = {k: v for k, v, active in (("salesforce", r.salesforce_user_id, r.sf_active),
                                               ("hubspot", r.hubspot_owner_id, r.hs_active)) if v and active}
            name = " ".join(x for x in (r.first_name, r.last_name) if x) or (r.email or f"person {r.id}")
            out[r.id] = PersonView(r.id, r.email, name, r.company, sf, hs, users,
                                   r.sf_owner_email or r.hs_owner_email)
    return out


@dataclass(frozen=True)
class Pulled:
    values: Mapping[str, Any]
    pulled_at: datetime
    deleted: bool


def pulled_records(conn: Connection, targets: Sequence[Target]) -> dict[Target, Pulled]:
    r = RAW
    out: dict[Target, Pulled] = {}
    keys = [(t.system, t.object, t.record_id) for t in targets]
    for i in range(0, len(keys), 2000):
        stmt = select(r.c.system, r.c.object, r.c.record_id, r.c.data, r.c.pulled_at, r.c.deleted, r.c.merged_into) \
            .where(tuple_(r.c.system, r.c.object, r.c.record_id).in_(keys[i:i + 2000]))
        for row in conn.execute(stmt):
            data = row.data or {}
            values = data.get("properties", {}) if row.system == "hubspot" else data
            out[Target(row.system, row.object, row.record_id)] = Pulled(
                values, row.pulled_at, bool(row.deleted or row.merged_into))
    return out


@dataclass(frozen=True)
class Written:
    key: str
    value: Any
    state: str
    at: datetime


def field_writes(conn: Connection, targets: Sequence[Target]) -> dict[tuple[Target, str], list[Written]]:
    """Per target field, detente's writes in the order planned (applied and in flight)."""
    w = WRITES
    out: dict[tuple[Target, str], list[Written]] = {}
    keys = [(t.system, t.object, t.record_id) for t in targets]
    for i in range(0, len(keys), 2000):
        stmt = select(w.c.key, w.c.system, w.c.object, w.c.record_id, w.c.field, w.c.value, w.c.state,
                      w.c.planned_at, w.c.applied_at) \
            .where(w.c.kind == "field", w.c.state.in_(("applied", *IN_FLIGHT)),
                   tuple_(w.c.system, w.c.object, w.c.record_id).in_(keys[i:i + 2000])) \
            .order_by(w.c.planned_at, w.c.key)
        for r in conn.execute(stmt):
            out.setdefault((Target(r.system, r.object, r.record_id), r.field), []).append(
                Written(r.key, r.value, r.state, r.applied_at or r.planned_at))
    return out


def task_versions(conn: Connection) -> dict[str, list[dict[str, Any]]]:
    """Per task key, its writes (versions and completion) in the order planned."""
    w = WRITES
    stmt = select(w).where(w.c.kind.in_(("task", "complete")), w.c.state.in_(("applied", *IN_FLIGHT))) \
        .order_by(w.c.planned_at, w.c.key)
    out: dict[str, list[dict[str, Any]]] = {}
    for r in conn.execute(stmt):
        out.setdefault(r.task_key, []).append(dict(r._mapping))
    return out


# -- planning -----------------------------------------------------------------------------------


def compute_desired(conn: Connection, rules: c.Rules, settings: WritebackSettings, now: datetime) -> Desired:
    findings = open_findings(conn)
    ids = sorted({f.person_id for f in findings} | written_people(conn))
    return desired_state(rules, people_views(conn, ids), findings, now, settings.task_system)


def plan_writes(engine: Engine, rules: c.Rules, settings: WritebackSettings, now: datetime, *,
                record: bool = True) -> Plan:
    """Diff the desired state against the CRMs and (``record``) add the writes to the outbox."""
    with engine.connect() as conn:
        desired = compute_desired(conn, rules, settings, now)
        targets = sorted(set(desired.fields) | {t.target for t in desired.tasks.values()},
                         key=lambda t: (t.system, t.object, t.record_id))
        pulled = pulled_records(conn, targets)
        history = field_writes(conn, list(desired.fields))
        tasks = task_versions(conn)
    plan = Plan(skipped=list(desired.skipped))
    for target, wanted in sorted(desired.fields.items(), key=lambda kv: (kv[0].system, kv[0].record_id)):
        seen = pulled.get(target)
        if seen is not None and seen.deleted:
            plan.skipped.append(f"{target.system} {target.object} {target.record_id}: deleted or merged in the CRM")
            continue
        for name, value in sorted(wanted.items()):
            _plan_field(plan, target, name, value, seen, history.get((target, name), []), desired, settings, now)
    _plan_tasks(plan, desired, tasks, pulled, now)
    if len(plan.writes) > settings.max_writes_per_run:
        raise PlanTooLarge(
            f"the plan has {len(plan.writes)} writes, more than writeback.max_writes_per_run "
            f"({settings.max_writes_per_run}); check the rules (`detente plan` lists them), then raise the cap "
            "if they are right")
    if record:
        with engine.begin() as conn:
            if plan.superseded:
                conn.execute(update(WRITES).where(WRITES.c.key.in_(plan.superseded), WRITES.c.state == "planned")
                             .values(state="skipped", error="superseded by a newer value"))
            if plan.writes:
                _fresh_keys(conn, plan.writes, now)
                conn.execute(insert(WRITES), plan.writes)
    return plan


def _fresh_keys(conn: Connection, rows: Sequence[dict[str, Any]], now: datetime) -> None:
    """Give a new row whose key an earlier row holds (a write that failed, or was skipped as
    superseded, and is wanted again) a key of its own: the key and the moment, numbered if
    that is taken too. Without this, a write once failed would stop every later plan."""
    w = WRITES
    keys = [r["key"] for r in rows]
    taken: set[str] = set()
    for i in range(0, len(keys), 2000):
        taken.update(conn.execute(select(w.c.key).where(w.c.key.in_(keys[i:i + 2000]))).scalars())
    for row in rows:
        if row["key"] not in taken:
            continue
        base = f"{row['key']}|{now:%Y%m%dT%H%M%S}"
        used = set(conn.execute(select(w.c.key).where(w.c.key.startswith(base, autoescape=True))).scalars())
        key, n = base, 1
        while key in used or key in taken:
            n += 1
            key = f"{base}|{n}"
        taken.add(key)
        row["key"] = key


def _plan_field(plan: Plan, target: Target, name: str, value: Any, seen: Pulled | None, writes: list[Written],
                desired: Desired, settings: WritebackSettings, now: datetime) -> None:
    crm = seen.values.get(name) if seen is not None else None
    applied = [w for w in writes if w.state == "applied"]
    flying = [w for w in writes if w.state in IN_FLIGHT]
    last = applied[-1] if applied else None
    current = crm
    if last is not None and (seen is None or seen.pulled_at <= last.at):
        current = last.value  # written, not seen back yet
    elif last is not None and not same(crm, last.value):
        plan.overrides.append(Override(target, name, last.value, crm))
        if settings.on_override == "leave":
            return
    for w in flying:
        if not same(w.value, value):
            plan.superseded.append(w.key)
    if any(same(w.value, value) for w in flying):
        return
    if same(current, value):
        plan.unchanged += 1
        return
    key = f"field|{target.system}|{target.object}|{target.record_id}|{name}|{digest(value)}"
    if key in {w.key for w in writes}:  # the same value written before, then changed: write it again
        key = f"{key}|{now:%Y%m%dT%H%M%S}"
    plan.writes.append(_row(key, "field", target, now, desired.reasons.get(target, ""), field=name, value=value,
                            previous=current, payload={name: value}))


def _plan_tasks(plan: Plan, desired: Desired, tasks: Mapping[str, list[dict[str, Any]]],
                pulled: Mapping[Target, Pulled], now: datetime) -> None:
    for key, task in sorted(desired.tasks.items()):
        seen = pulled.get(task.target)
        if seen is not None and seen.deleted:
            plan.skipped.append(f"{key}: {task.target.object} {task.target.record_id} is deleted in the CRM")
            continue
        versions = [v for v in tasks.get(key, []) if v["kind"] == "task"]
        if versions and versions[-1]["payload"] == dict(task.fields) and not _completed(tasks.get(key, [])):
            plan.unchanged += 1
            continue
        row_key = f"task|{key}|{task.digest}"
        if any(v["key"] == row_key for v in tasks.get(key, [])):
            row_key = f"{row_key}|{now:%Y%m%dT%H%M%S}"
        plan.writes.append(_row(row_key, "task", Target(task.target.system, TASK_OBJECT[task.target.system],
                                                        task.target.record_id), now, task.reason,
                                task_key=key, payload=dict(task.fields), finding_key=task.finding_key))
    for key, versions in sorted(tasks.items()):
        if key in desired.tasks or _completed(versions):
            continue
        last = [v for v in versions if v["kind"] == "task"]
        if not last:
            continue
        system = last[-1]["system"]
        body_field = "Description" if system == "salesforce" else "hs_task_body"
        status = {"Status": "Completed"} if system == "salesforce" else {"hs_task_status": "COMPLETED"}
        body = f"{last[-1]['payload'].get(body_field, '')}\n\nClosed by detente {now:%Y-%m-%d %H:%M} UTC: " \
               "the finding behind this task is resolved."
        plan.writes.append(_row(f"complete|{key}", "complete", Target(system, last[-1]["object"],
                                                                     last[-1]["record_id"] or ""), now,
                                "the finding is resolved", task_key=key, payload={**status, body_field: body},
                                finding_key=last[-1]["finding_key"]))


def _completed(versions: Sequence[Mapping[str, Any]]) -> bool:
    return bool(versions) and versions[-1]["kind"] == "complete"


def _row(key: str, kind: str, target: Target, now: datetime, reason: str, **kw: Any) -> dict[str, Any]:
    return {"key": key, "kind": kind, "system": target.system, "object": target.object,
            "record_id": target.record_id or None, "field": kw.get("field"), "value": kw.get("value"),
            "previous": kw.get("previous"), "task_key": kw.get("task_key"), "payload": kw.get("payload", {}),
            "reason": reason[:2000], "finding_key": kw.get("finding_key"), "state": "planned", "attempts": 0,
            "error": None, "planned_at": now, "sent_at": None, "applied_at": None}
