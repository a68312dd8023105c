"""Label findings: definition drift, missed labels and cross-system disagreement (pure).

- **definition drift**: a CRM labels a stage whose definition does not hold, and no later
  stage's definition holds either (a label left behind by progress is not drift). Only
  stages the agreement qualifies by definition are checked: those with a ``grace`` (such as
  mql). Lifecycle labels of the other stages are sticky by design (HubSpot keeps ``lead``
  for a free-mail address, Salesforce keeps Closed - Converted after the deal closed).
- **missed label**: a stage with a grace period whose definition holds, while neither CRM
  labels it or any later stage, for longer than the grace. The store keeps no history of
  the fields a definition reads, so the definition is taken to hold since the person's last
  modification (the latest it can have started): a missed label is never reported early.
- **disagreement**: the two CRMs label a pair of stages the agreement says may never be
  shown together; open since the later of the two labels was set.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime

from detente.reconcile.facts import Facts, PersonFact
from detente.reconcile.model import DISAGREEMENT, DRIFT, MISSED_LABEL, Finding
from detente.rules import checked as c
from detente.rules.explain import HELD, Step, explain

SYSTEM_NAMES = {"salesforce": "Salesforce", "hubspot": "HubSpot"}


def later_stages(rules: c.Rules) -> dict[str, frozenset[str]]:
    """For each stage, the stages that follow it in the funnel (transitively through ``after``)."""
    follows: dict[str, set[str]] = {name: set() for name in rules.stages}
    for name, stage in rules.stages.items():
        todo, seen = list(stage.after), set()
        while todo:
            earlier = todo.pop()
            if earlier in seen or earlier not in rules.stages:
                continue
            seen.add(earlier)
            follows[earlier].add(name)
            todo.extend(rules.stages[earlier].after)
    return {k: frozenset(v) for k, v in follows.items()}


def why_not(step: Step) -> str:
    """The clauses that kept a condition from holding, with the values seen."""
    if step.outcome == HELD:
        return step.detail
    failing = [child for child in step.children if child.outcome != HELD]
    if step.children and step.detail.startswith("all of"):
        return "; ".join(why_not(child) for child in failing)
    if step.children:
        return " and ".join(why_not(child) for child in failing)
    return step.detail


def label_since(person: PersonFact, stage: c.Stage, system: str) -> datetime | None:
    """When the system's current label of ``stage`` was set (the final run of its value)."""
    since: datetime | None = None
    for trace in stage.traces:
        if trace.system != system:
            continue
        run: datetime | None = None
        for change in person.history(system, trace.crm_field):
            held = change.value is not None and change.value.lower() in trace.values
            run = (run or change.at) if held else None
        if run is not None and (since is None or run < since):
            since = run
    return since


def base_fields(person: PersonFact, facts: Facts, team: str | None) -> dict[str, object]:
    """The finding fields that name a person: ids in both systems, owner, team, records."""
    owner = facts.owner(person.owner_id)
    return {"person_id": person.id, "email": person.email,
            "salesforce_id": person.salesforce_lead_id or person.salesforce_contact_id,
            "hubspot_id": person.hubspot_contact_id, "team": team,
            "owner_email": owner.email if owner is not None else None,
            "records": person_records(person)}


def person_records(person: PersonFact) -> Mapping[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    if person.salesforce_lead_id:
        out["salesforce/Lead"] = (person.salesforce_lead_id,)
    if person.hubspot_contact_id:
        out["hubspot/contacts"] = (person.hubspot_contact_id,)
    return out


def _said(person: PersonFact, stage: str, system: str, rules: c.Rules) -> str:
    labels = rules.stages[stage].labels
    condition = labels.get(system)
    shown = f" ({condition})" if condition is not None else ""
    return f"{SYSTEM_NAMES[system]} says {stage}{shown}"


def drift(facts: Facts, rules: c.Rules, now: datetime) -> Iterator[Finding]:
    after = later_stages(rules)
    for person in facts.people.values():
        for name, stage in rules.stages.items():
            if stage.grace is None:
                continue
            systems = [s for s in ("hubspot", "salesforce") if name in person.labels.get(s, frozenset())]
            if not systems or name in person.definitions or after[name] & person.definitions:
                continue
            sinces = [t for t in (label_since(person, stage, s) for s in systems) if t is not None]
            opened = min(sinces) if sinces else person.modified_at or now
            reason = why_not(explain(stage.definition, person.values, now))
            said = " and ".join(_said(person, name, s, rules) for s in systems)
            yield Finding(DRIFT, name, f"person:{person.id}", f"{said}, but the {name} definition does not hold: "
                          f"{reason}", min(opened, now), **base_fields(person, facts, stage.owner))  # type: ignore[arg-type]


def missed_label(facts: Facts, rules: c.Rules, now: datetime) -> Iterator[Finding]:
    after = later_stages(rules)
    for person in facts.people.values():
        labelled = person.labels.get("hubspot", frozenset()) | person.labels.get("salesforce", frozenset())
        for name, stage in rules.stages.items():
            if stage.grace is None or name not in person.definitions:
                continue
            if name in labelled or after[name] & labelled:
                continue
            since = person.modified_at or person.created_at or now
            due = since + stage.grace.calendar
            if due > now:
                facts.wake_at(person.id, due)
                continue
            held = explain(stage.definition, person.values, now).detail
            yield Finding(MISSED_LABEL, name, f"person:{person.id}",
                          f"the {name} definition holds ({_held(stage, person, now) or held}) since "
                          f"{since:%Y-%m-%d %H:%M} UTC at the latest, longer than the grace of {stage.grace}, "
                          f"and neither CRM labels it", due, **base_fields(person, facts, stage.owner))  # type: ignore[arg-type]


def _held(stage: c.Stage, person: PersonFact, now: datetime) -> str:
    step = explain(stage.definition, person.values, now)
    parts = [child.detail for child in step.children] if step.children else [step.detail]
    return "; ".join(parts)


def disagreement(facts: Facts, rules: c.Rules, now: datetime) -> Iterator[Finding]:
    order = list(rules.stages)
    for person in facts.people.values():
        hs, sf = person.labels.get("hubspot", frozenset()), person.labels.get("salesforce", frozenset())
        for hs_stage, sf_stage in rules.disagreements:
            if hs_stage not in hs or sf_stage not in sf:
                continue
            sinces = [label_since(person, rules.stages[hs_stage], "hubspot"),
                      label_since(person, rules.stages[sf_stage], "salesforce")]
            known = [t for t in sinces if t is not None]
            opened = max(known) if known else person.modified_at or now
            ahead = max(hs_stage, sf_stage, key=order.index)
            yield Finding(DISAGREEMENT, f"{hs_stage}~{sf_stage}", f"person:{person.id}",
                          f"HubSpot says {hs_stage} ({person.hubspot_lifecyclestage}) while Salesforce says "
                          f"{sf_stage} ({person.salesforce_status}); the agreement never allows both",
                          min(opened, now), **base_fields(person, facts, rules.stages[ahead].owner))  # type: ignore[arg-type]
