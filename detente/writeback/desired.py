"""What the CRMs should hold, from the open findings and the rules' ``writeback`` section (pure).

Per person and CRM, a **target record**: the Salesforce lead, or the contact it was converted
into; the HubSpot contact (a merged contact's survivor, as the store links it). On it:

- **fields**, only those the rules allow-list (``writeback.fields``): ``status`` (the most
  pressing open finding: SLA Breached, Disagreement, Drift, Missed Label, Feedback Gap, SLA
  Running; Aligned when none), ``reason`` (that finding's explanation), ``sla_due`` (the
  earliest due time of an SLA clock that writes it) and ``rules_version``. An SLA finding
  contributes only the values its ``on_warning`` (from the warning time) or ``on_breach``
  action lists; other findings contribute status and reason.
- **tasks**, one per open SLA clock whose action names a task: the warning task from the
  warning time while the clock runs, the breach task once breached. A task goes to the CRM
  the owing team works in (settings ``writeback.task_system``), on the person's record
  there, assigned to the person's owner in that CRM, rendered from the template, due the
  template's ``due`` after the clock's due time. Its key names the SLA, the template, the
  person and the clock's start, so the same clock never gets a second task.
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from detente.calendars import BusinessCalendar
from detente.rules import checked as c

STATUS_ORDER = ("SLA Breached", "Disagreement", "Drift", "Missed Label", "Feedback Gap", "SLA Running")
STATUS_OF_KIND = {"disagreement": "Disagreement", "definition_drift": "Drift", "missed_label": "Missed Label",
                  "feedback_gap": "Feedback Gap", "identity": None}
ALIGNED = "Aligned"
SF_PRIORITY = {"low": "Low", "normal": "Normal", "high": "High"}
HS_PRIORITY = {"low": "LOW", "normal": "MEDIUM", "high": "HIGH"}


@dataclass(frozen=True)
class Target:
    """The CRM record detente writes a person's values on."""

    system: str
    object: str
    record_id: str


@dataclass(frozen=True)
class PersonView:
    """What the desired state needs to know about one person (from the store)."""

    id: int
    email: str | None
    name: str
    company: str | None
    salesforce: Target | None  # the live lead, or the contact it became
    hubspot: Target | None
    owner_user: Mapping[str, str]  # system -> the owner's CRM user id (active owners only)
    owner_email: str | None
    stage: str | None = None


@dataclass(frozen=True)
class OpenFinding:
    key: str
    kind: str
    rule: str
    person_id: int
    state: str | None
    due_at: datetime | None
    started_at: datetime | None
    stopped_at: datetime | None
    explanation: str


@dataclass(frozen=True)
class DesiredTask:
    key: str  # deterministic: SLA, template, person, clock start
    target: Target
    template: str
    finding_key: str
    fields: Mapping[str, Any]  # CRM fields, without the key field
    reason: str

    @property
    def digest(self) -> str:
        return digest(self.fields)


@dataclass
class Desired:
    fields: dict[Target, dict[str, Any]] = field(default_factory=dict)  # CRM field -> wire value
    reasons: dict[Target, str] = field(default_factory=dict)  # why the values are what they are
    tasks: dict[str, DesiredTask] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # what could not be placed, and why


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def wire_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def crm_fields(rules: c.Rules, value: str, target: Target) -> list[str]:
    """The CRM fields the rules map ``value`` to on the target's object."""
    if rules.writeback is None:
        return []
    names = rules.writeback.fields.get(value, {}).get(target.system, ())
    if target.system == "hubspot":
        return list(names)
    return [n.split(".", 1)[1] for n in names if n.split(".", 1)[0] == target.object]


def _sla_action(sla: c.Sla, f: OpenFinding, calendar: BusinessCalendar | None, hours: int,
                now: datetime) -> c.Action | None:
    """The SLA action in force for an open clock finding now: warning (from its time) or breach."""
    if f.state == "breached":
        return sla.on_breach
    warning = sla.on_warning
    if f.state != "running" or warning is None or f.due_at is None:
        return None
    if warning.before is None:
        return warning
    if warning.before.business:
        if calendar is None:
            return None
        hours_left = calendar.hours_between(now, f.due_at) if now < f.due_at else 0.0
        return warning if hours_left <= warning.before.business_hours(hours) else None
    return warning if f.due_at - warning.before.calendar <= now else None


def desired_state(rules: c.Rules, people: Mapping[int, PersonView], findings: Sequence[OpenFinding],
                  now: datetime, task_system: Mapping[str, str],
                  links: Mapping[str, str] | None = None) -> Desired:
    """Fields and tasks for every person in ``people`` (those without findings: Aligned)."""
    out = Desired()
    if rules.writeback is None:
        return out
    slas = {s.id: s for s in rules.slas}
    by_person: dict[int, list[OpenFinding]] = {}
    for f in findings:
        by_person.setdefault(f.person_id, []).append(f)
    for pid, person in sorted(people.items()):
        mine = sorted(by_person.get(pid, []), key=lambda f: f.key)
        values: dict[str, Any] = {}
        candidates: list[tuple[int, str, OpenFinding]] = []
        due: datetime | None = None
        for f in mine:
            if f.kind == "sla":
                sla = slas.get(f.rule)
                if sla is None:
                    continue
                cal = rules.calendar_for(sla)
                business = cal.business() if cal is not None else None
                hours = cal.hours_per_day if cal is not None else 8
                action = _sla_action(sla, f, business, hours, now)
                if action is None:
                    continue
                status = "SLA Breached" if f.state == "breached" else "SLA Running"
                if "status" in action.write:
                    candidates.append((STATUS_ORDER.index(status), status, f))
                if "sla_due" in action.write and f.due_at is not None:
                    due = f.due_at if due is None else min(due, f.due_at)
                if action.task is not None:
                    _task(out, rules, sla, action.task, f, person, task_system, business, hours, links or {})
            elif (label := STATUS_OF_KIND.get(f.kind)) is not None:
                candidates.append((STATUS_ORDER.index(label), label, f))
        if candidates:
            _, status, top = min(candidates, key=lambda x: (x[0], x[2].key))
            values = {"status": status, "reason": top.explanation, "rules_version": rules.version}
            why = f"{top.kind} {top.rule}: {top.explanation}"
        else:
            values = {"status": ALIGNED, "reason": None, "rules_version": rules.version}
            why = "no open finding"
        values["sla_due"] = wire_time(due) if due is not None else None
        for target in (person.salesforce, person.hubspot):
            if target is None:
                continue
            wanted: dict[str, Any] = {}
            for value, wire in values.items():
                for name in crm_fields(rules, value, target):
                    wanted[name] = wire
            if wanted:
                out.fields[target] = wanted
                out.reasons[target] = why
    return out


class _Render(string.Formatter):
    """Only the placeholders the rules checker accepts, looked up by their whole dotted name."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values

    def get_field(self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[Any, str]:
        return self.values.get(field_name, ""), field_name


def render(template: str, values: Mapping[str, str]) -> str:
    return _Render(values).format(template)


def _task(out: Desired, rules: c.Rules, sla: c.Sla, name: str, f: OpenFinding, person: PersonView,
          task_system: Mapping[str, str], calendar: BusinessCalendar | None, hours: int,
          links: Mapping[str, str]) -> None:
    assert rules.writeback is not None
    template = rules.writeback.tasks.get(name)
    if template is None or f.due_at is None or f.started_at is None:
        return
    preferred = task_system.get(sla.owner, "salesforce")
    order = [preferred, "hubspot" if preferred == "salesforce" else "salesforce"]
    target = next((t for s in order if (t := getattr(person, s)) is not None), None)
    if target is None:
        out.skipped.append(f"{f.key}: the person has no record to put the {name} task on")
        return
    owner: str | None = person.owner_user.get(target.system)
    if template.owner != "person_owner":
        owner = None  # an owner named by email: resolved by the caller's owner map (not supported yet)
    if owner is None:
        out.skipped.append(f"{f.key}: no active owner in {target.system} to assign the {name} task to "
                           "(none set, or the owner is deactivated)")
        return
    if template.due.business and calendar is not None:
        task_due = calendar.add_hours(f.due_at, template.due.business_hours(hours))
    elif template.due.business:
        task_due = f.due_at
    else:
        task_due = f.due_at + template.due.calendar
    values = {
        "person.email": person.email or "", "person.name": person.name, "person.company": person.company or "",
        "person.owner": person.owner_email or "", "person.stage": person.stage or "", "sla.id": sla.id,
        "sla.meaning": sla.meaning or "", "sla.within": str(sla.within),
        "clock.started": f"{f.started_at:%Y-%m-%d %H:%M} UTC", "clock.due": f"{f.due_at:%Y-%m-%d %H:%M} UTC",
        "reason": f.explanation, "rules.version": rules.version,
        "link.salesforce": links.get(f"salesforce:{person.salesforce.record_id}", "") if person.salesforce else "",
        "link.hubspot": links.get(f"hubspot:{person.hubspot.record_id}", "") if person.hubspot else "",
    }
    subject, body = render(template.subject, values)[:255], render(template.body, values)
    key = f"{sla.id}|{name}|person:{person.id}|{f.started_at.astimezone(UTC):%Y%m%dT%H%M%S}"
    if target.system == "salesforce":
        fields: dict[str, Any] = {"Subject": subject, "Description": body, "ActivityDate": task_due.date().isoformat(),
                                  "Priority": SF_PRIORITY[template.priority], "Status": "Not Started",
                                  "OwnerId": owner, "WhoId": target.record_id}
    else:
        fields = {"hs_task_subject": subject, "hs_task_body": body, "hs_timestamp": wire_time(task_due),
                  "hs_task_priority": HS_PRIORITY[template.priority], "hs_task_status": "NOT_STARTED",
                  "hs_task_type": "TODO", "hubspot_owner_id": owner}
    out.tasks[key] = DesiredTask(key, target, name, f.key, fields, f.explanation)
