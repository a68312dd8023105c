"""``detente audit --counts``: Marketing's and Sales' funnel numbers for one cohort, reconciled.

The cohort is the live people created in a period (``2026-Q3``, ``2026-07``, ``2026-W27``,
``2026``; UTC, start included, end excluded), or every live person without one. For each
stage, in the rules' funnel order, three counts of the cohort "at or past" the stage (the
stage itself or any stage that follows it, ``later_stages``):

- **HubSpot**: HubSpot labels it (Marketing's system);
- **Salesforce**: Salesforce labels it (Sales' system);
- **definition**: the agreed definition of it holds.

and four reconciliation lines, each broken down by reason so they add up: counted by HubSpot
but not Salesforce, by Salesforce but not HubSpot, by the definition but by neither label, by
a label but not by the definition. A person's reason is the first open finding of theirs that
explains the line (``REASON_KINDS``); failing that, a fact: a record missing in one CRM, a
CRM that has no label for the stages the other shows, what each CRM says instead, a grace period still
running, a label the audit does not check against its definition.

``read_cohort`` is the only function here that reads the store; the rest is pure.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from detente.reconcile.labels import SYSTEM_NAMES, later_stages
from detente.reconcile.model import DISAGREEMENT, DRIFT, IDENTITY, MISSED_LABEL
from detente.rules import checked as c
from detente.rules.evaluate import StageEvaluator
from detente.store.tables import Person

PEOPLE = Person.__table__  # type: ignore[attr-defined]
COHORT_CHUNK = 10_000  # people evaluated per statement
PERIOD_FORMS = "a year (2026), a quarter (2026-Q3), a month (2026-07) or an ISO week (2026-W27)"
HS, SF = "hubspot", "salesforce"

# Which kinds of open finding explain each line, in order of preference. Stage kinds
# (drift, missed label) explain a line of stage S only when their stage is S or a later one.
ONE_SIDE = "one_side"
DEFINITION_ONLY = "definition_not_labelled"
LABEL_ONLY = "labelled_not_definition"
REASON_KINDS: Mapping[str, tuple[str, ...]] = {
    ONE_SIDE: (DISAGREEMENT, DRIFT, IDENTITY),
    DEFINITION_ONLY: (MISSED_LABEL, IDENTITY),
    LABEL_ONLY: (DRIFT, DISAGREEMENT, IDENTITY),
}
STAGE_KINDS = frozenset({DRIFT, MISSED_LABEL})


# -- periods ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    label: str
    start: datetime  # included
    end: datetime  # excluded


def _at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def parse_period(text: str) -> Period:
    """``2026``, ``2026-Q3``, ``2026-07`` or ``2026-W27`` as a half-open UTC interval.

    Raises ValueError naming the accepted forms.
    """
    value = text.strip().upper()
    try:
        if m := re.fullmatch(r"(\d{4})", value):
            year = int(m[1])
            return Period(value, _at(date(year, 1, 1)), _at(date(year + 1, 1, 1)))
        if m := re.fullmatch(r"(\d{4})-Q([1-4])", value):
            year, quarter = int(m[1]), int(m[2])
            start = date(year, 3 * quarter - 2, 1)
            end = date(year + 1, 1, 1) if quarter == 4 else date(year, 3 * quarter + 1, 1)
            return Period(value, _at(start), _at(end))
        if m := re.fullmatch(r"(\d{4})-(\d{2})", value):
            year, month = int(m[1]), int(m[2])
            start = date(year, month, 1)
            end = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
            return Period(value, _at(start), _at(end))
        if m := re.fullmatch(r"(\d{4})-W(\d{2})", value):
            monday = date.fromisocalendar(int(m[1]), int(m[2]), 1)
            return Period(value, _at(monday), _at(monday + timedelta(days=7)))
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a period: {exc}; expected {PERIOD_FORMS}") from exc
    raise ValueError(f"{text!r} is not a period; expected {PERIOD_FORMS}")


# -- what is counted -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CohortPerson:
    """One person of the cohort: the CRM records, the definitions that hold, the labels."""

    id: int
    salesforce_lead_id: str | None
    hubspot_contact_id: str | None
    definitions: frozenset[str] = frozenset()
    labels: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class OpenFinding:
    kind: str
    rule: str


def read_cohort(engine: Engine, rules: c.Rules, period: Period | None, now: datetime) -> list[CohortPerson]:
    """The live people created in ``period`` (all live people without one), with their stages as of ``now``."""
    p = PEOPLE
    stmt = select(p.c.id, p.c.salesforce_lead_id, p.c.hubspot_contact_id).where(p.c.deleted.is_(False))
    if period is not None:
        stmt = stmt.where(p.c.created_at >= period.start, p.c.created_at < period.end)
    with engine.connect() as conn:
        people = {r.id: (r.salesforce_lead_id, r.hubspot_contact_id) for r in conn.execute(stmt.order_by(p.c.id))}
    # The evaluator streams (yield_per) on a connection of its own. A period's cohort is
    # evaluated alone, in chunks (no statement carries an unbounded IN list); without a period,
    # every live person.
    out: list[CohortPerson] = []
    evaluator = StageEvaluator(rules)
    ordered = sorted(people)
    parts: list[list[int] | None] = [ordered[i:i + COHORT_CHUNK] for i in range(0, len(ordered), COHORT_CHUNK)] \
        if period is not None else [None]
    for part in parts:
        with engine.connect() as conn:
            for m in evaluator.memberships(conn, now, part):
                ids = people.get(m.person_id)
                if ids is not None:
                    out.append(CohortPerson(m.person_id, ids[0], ids[1], m.definitions, m.labels))
    return sorted(out, key=lambda x: x.id)


def open_findings(rows: Iterable[Mapping[str, Any]]) -> dict[int, list[OpenFinding]]:
    """The open findings of each person, from finding rows (stored or evaluated)."""
    out: dict[int, list[OpenFinding]] = {}
    for r in rows:
        if r["status"] == "open" and r.get("person_id") is not None:
            out.setdefault(int(r["person_id"]), []).append(OpenFinding(r["kind"], r["rule"]))
    for found in out.values():
        found.sort(key=lambda f: (f.kind, f.rule))
    return out


# -- counting (pure) -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One reconciliation line: how many, and why, by reason (most frequent first)."""

    total: int
    reasons: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class StageCount:
    stage: str
    hubspot: int
    salesforce: int
    definition: int
    hubspot_has_label: bool  # whether HubSpot has a label for the stage itself
    salesforce_has_label: bool
    hubspot_not_salesforce: Line
    salesforce_not_hubspot: Line
    definition_not_labelled: Line
    labelled_not_definition: Line


@dataclass(frozen=True)
class Counts:
    period: Period | None
    now: datetime
    rules_version: str
    cohort: int
    stages: tuple[StageCount, ...]


def _line(counted: Counter[str]) -> Line:
    return Line(sum(counted.values()), tuple(sorted(counted.items(), key=lambda kv: (-kv[1], kv[0]))))


def _finding_reason(found: Sequence[OpenFinding], line: str, at: frozenset[str]) -> str | None:
    for kind in REASON_KINDS[line]:
        for f in found:
            if f.kind == kind and (kind not in STAGE_KINDS or f.rule in at):
                return f"{kind} {f.rule}"
    return None


def _says(person: CohortPerson, system: str, order: Sequence[str]) -> str:
    labels = [s for s in order if s in person.labels.get(system, frozenset())]
    return f"{SYSTEM_NAMES[system]} says {', '.join(labels)}" if labels else f"{SYSTEM_NAMES[system]} labels no stage"


def _missing_record(person: CohortPerson, system: str) -> str | None:
    if system == SF and person.salesforce_lead_id is None:
        return "no Salesforce lead"
    if system == HS and person.hubspot_contact_id is None:
        return "no HubSpot contact"
    return None


class _Reasons:
    """Why a person of the cohort sits on a reconciliation line of a stage."""

    def __init__(self, rules: c.Rules, findings: Mapping[int, Sequence[OpenFinding]]) -> None:
        self.rules = rules
        self.order = list(rules.stages)
        self.findings = findings

    def one_side(self, person: CohortPerson, stage: str, at: frozenset[str], counted: str, missing: str) -> str:
        found = _finding_reason(self.findings.get(person.id, ()), ONE_SIDE, at)
        if found is not None:
            return found
        absent = _missing_record(person, missing)
        if absent is not None:
            return absent
        shown = [s for s in self.order if s in at and s in person.labels.get(counted, frozenset())]
        if not any(missing in self.rules.stages[s].labels for s in shown):
            return f"{SYSTEM_NAMES[missing]} does not label {', '.join(shown) or stage}"
        return f"{SYSTEM_NAMES[counted]} says {shown[-1]}; {_says(person, missing, self.order)}"

    def definition_only(self, person: CohortPerson, stage: str, at: frozenset[str]) -> str:
        found = _finding_reason(self.findings.get(person.id, ()), DEFINITION_ONLY, at)
        if found is not None:
            return found
        if not self.rules.stages[stage].labels:
            return f"neither CRM labels {stage}"
        graced = [s for s in self.order if s in at and s in person.definitions and self.rules.stages[s].grace]
        if graced:
            name = graced[-1]
            return f"within the {name} grace of {self.rules.stages[name].grace}"
        parts = [_missing_record(person, s) or _says(person, s, self.order) for s in (HS, SF)]
        return "; ".join(parts)

    def label_only(self, person: CohortPerson, at: frozenset[str]) -> str:
        found = _finding_reason(self.findings.get(person.id, ()), LABEL_ONLY, at)
        if found is not None:
            return found
        parts, unchecked = [], True
        for system in (HS, SF):
            labelled = [s for s in self.order if s in at and s in person.labels.get(system, frozenset())]
            if labelled:
                parts.append(f"{SYSTEM_NAMES[system]} says {labelled[-1]}")
                unchecked = unchecked and self.rules.stages[labelled[-1]].grace is None
        return "; ".join(parts) + (" (a label the audit does not check: no grace)" if unchecked else "")


def count_stages(rules: c.Rules, cohort: Sequence[CohortPerson],
                 findings: Mapping[int, Sequence[OpenFinding]]) -> list[StageCount]:
    """The three counts and four reconciliation lines of every stage, in funnel order."""
    after = later_stages(rules)
    why = _Reasons(rules, findings)
    # People whom every count and reason sees alike (same definitions, labels, missing
    # records and open findings) are judged once and counted by their number.
    alike: Counter[tuple[Any, ...]] = Counter()
    one_of: dict[tuple[Any, ...], CohortPerson] = {}
    for person in cohort:
        key = (person.definitions, person.labels.get(HS, frozenset()), person.labels.get(SF, frozenset()),
               person.salesforce_lead_id is None, person.hubspot_contact_id is None,
               tuple(findings.get(person.id, ())))
        alike[key] += 1
        one_of.setdefault(key, person)
    out = []
    for name, stage in rules.stages.items():
        at = frozenset({name}) | after[name]
        hs_only: Counter[str] = Counter()
        sf_only: Counter[str] = Counter()
        def_only: Counter[str] = Counter()
        label_only: Counter[str] = Counter()
        hs_n = sf_n = def_n = 0
        for key, n in alike.items():
            person = one_of[key]
            hs = bool(key[1] & at)
            sf = bool(key[2] & at)
            defined = bool(key[0] & at)
            hs_n, sf_n, def_n = hs_n + hs * n, sf_n + sf * n, def_n + defined * n
            if hs and not sf:
                hs_only[why.one_side(person, name, at, HS, SF)] += n
            if sf and not hs:
                sf_only[why.one_side(person, name, at, SF, HS)] += n
            if defined and not (hs or sf):
                def_only[why.definition_only(person, name, at)] += n
            if (hs or sf) and not defined:
                label_only[why.label_only(person, at)] += n
        out.append(StageCount(name, hs_n, sf_n, def_n, HS in stage.labels, SF in stage.labels, _line(hs_only),
                              _line(sf_only), _line(def_only), _line(label_only)))
    return out


# -- output (pure) ---------------------------------------------------------------------------------


def iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


LINES = (("hubspot_not_salesforce", "HubSpot but not Salesforce"),
         ("salesforce_not_hubspot", "Salesforce but not HubSpot"),
         ("definition_not_labelled", "the definition but neither label"),
         ("labelled_not_definition", "a label but not the definition"))


def cohort_words(counts: Counts) -> str:
    if counts.period is None:
        return f"{counts.cohort} live people (every creation date)"
    p = counts.period
    return (f"{counts.cohort} live people created in {p.label} "
            f"[{p.start:%Y-%m-%d}, {p.end:%Y-%m-%d}) UTC")


def render_table(counts: Counts) -> list[str]:
    out = [f"cohort: {cohort_words(counts)}",
           f"stages as of {counts.now:%Y-%m-%d %H:%M} UTC, rules version {counts.rules_version}; "
           "each count is at or past the stage", ""]
    out.append(f"{'stage':14} {'HubSpot':>8} {'Salesforce':>10} {'definition':>10}   {'HS only':>7} {'SF only':>7} "
               f"{'def only':>8} {'label only':>10}")
    for s in counts.stages:
        hs = f"{s.hubspot}{'' if s.hubspot_has_label else '*'}"
        sf = f"{s.salesforce}{'' if s.salesforce_has_label else '*'}"
        out.append(f"{s.stage:14} {hs:>8} {sf:>10} {s.definition:>10}   {s.hubspot_not_salesforce.total:>7} "
                   f"{s.salesforce_not_hubspot.total:>7} {s.definition_not_labelled.total:>8} "
                   f"{s.labelled_not_definition.total:>10}")
    out.append("* the CRM has no label for the stage itself; counted through the labels of later stages")
    for s in counts.stages:
        lines = [(title, getattr(s, attr)) for attr, title in LINES if getattr(s, attr).total]
        if not lines:
            continue
        out.append("")
        out.append(f"{s.stage}: HubSpot {s.hubspot}, Salesforce {s.salesforce}, definition {s.definition}")
        for title, line in lines:
            out.append(f"  counted by {title}: {line.total}")
            out.extend(f"    {n:>5}  {reason}" for reason, n in line.reasons)
    return out


def to_json(counts: Counts) -> dict[str, Any]:
    p = counts.period
    return {
        "period": None if p is None else {"label": p.label, "start": iso(p.start), "end": iso(p.end)},
        "as_of": iso(counts.now), "rules_version": counts.rules_version, "cohort": counts.cohort,
        "stages": [{"stage": s.stage, "hubspot": s.hubspot, "salesforce": s.salesforce, "definition": s.definition,
                    "hubspot_has_label": s.hubspot_has_label, "salesforce_has_label": s.salesforce_has_label,
                    **{attr: {"total": getattr(s, attr).total,
                              "reasons": [{"reason": r, "count": n} for r, n in getattr(s, attr).reasons]}
                       for attr, _ in LINES}}
                   for s in counts.stages],
    }
