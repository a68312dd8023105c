"""``detente audit --counts --period P`` as a user runs it, over the demo world pulled and normalized
(SQLite and PostgreSQL): the counts agree with the store counted directly, the reconciliation
lines add up by reason, and the reasons are the open findings where one applies."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from detente.cli import app
from detente.reconcile.labels import later_stages
from detente.reconcile.ledger import FINDINGS, reconcile
from detente.rules import Rules
from detente.rules.evaluate import ConditionQuery
from detente.store.tables import Person
from tests.conftest import AS_OF
from tests.normalize.conftest import World
from tests.reconcile.conftest import RULES

PEOPLE = Person.__table__  # type: ignore[attr-defined]
Q3 = (datetime(2026, 7, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC))
# How each CRM labels the stages in config/rules.yaml (lower case), written out independently.
HUBSPOT = {"inquiry": "subscriber", "lead": "lead", "mql": "marketingqualifiedlead", "sql": "salesqualifiedlead",
           "opportunity": "opportunity", "customer": "customer"}
SALESFORCE = {"lead": "open - not contacted", "mql": "marketing qualified", "sal": "working - contacted",
              "sql": "sales qualified", "opportunity": "closed - converted", "nurture": "nurture",
              "disqualified": "closed - not converted"}
LINES = ("hubspot_not_salesforce", "salesforce_not_hubspot", "definition_not_labelled", "labelled_not_definition")
FORMS = "expected a year (2026), a quarter (2026-Q3), a month (2026-07) or an ISO week (2026-W27)"


@pytest.fixture(scope="module")
def settings_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("counts") / "detente.yaml"
    path.write_text("log:\n  level: warning\n")
    return path


def audit(world: World, settings_file: Path, *args: str) -> Result:
    url = world.engine.url.render_as_string(hide_password=False)
    return CliRunner().invoke(app, ["--config", str(settings_file), "audit", *args, "--rules", str(RULES)],
                              env={"DETENTE_STORE__URL": url, "DETENTE_CONFIG": ""})


def counts(world: World, settings_file: Path, *args: str) -> dict[str, Any]:
    result = audit(world, settings_file, "--counts", "--format", "json", *args)
    assert result.exit_code == 0, result.output
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def cohort(world: World, start: datetime, end: datetime) -> dict[int, Any]:
    """The live people created in [start, end), read directly."""
    p = PEOPLE
    with world.engine.connect() as conn:
        rows = conn.execute(select(p).where(p.c.deleted.is_(False), p.c.created_at >= start, p.c.created_at < end))
        return {r.id: r for r in rows}


def at_or_past(rules: Rules, stage: str) -> set[str]:
    return {stage} | set(later_stages(rules)[stage])


def labelled(person: Any, labels: dict[str, str], column: str, stages: set[str]) -> bool:
    value = getattr(person, column)
    return value is not None and value.lower() in {labels[s] for s in stages if s in labels}


def open_findings(world: World) -> dict[int, set[tuple[str, str]]]:
    with world.engine.connect() as conn:
        rows = conn.execute(select(FINDINGS.c.person_id, FINDINGS.c.kind, FINDINGS.c.rule)
                            .where(FINDINGS.c.status == "open", FINDINGS.c.person_id.is_not(None)))
        out: dict[int, set[tuple[str, str]]] = {}
        for r in rows:
            out.setdefault(r.person_id, set()).add((r.kind, r.rule))
        return out


def plain(text: str) -> str:
    """An error message without the frame drawn around it, on one line."""
    return " ".join(text.replace("│", " ").split())


def reasons(stage: dict[str, Any], line: str) -> dict[str, int]:
    return {r["reason"]: r["count"] for r in stage[line]["reasons"]}


def test_counts_reconcile_the_findings_first(world: World, settings_file: Path) -> None:
    """First in this module: the store has never been audited, so every finding-based reason
    shown must come from the audit that ``--counts`` ran before counting."""
    with world.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(FINDINGS)).scalar() == 0, "runs on an unaudited store"
    found = counts(world, settings_file, "--period", "2026-Q3")
    findings = open_findings(world)
    assert findings
    people = cohort(world, *Q3)
    drift = sum(1 for i in people if ("definition_drift", "mql") in findings.get(i, set()))
    mql = next(s for s in found["stages"] if s["stage"] == "mql")
    assert drift and reasons(mql, "labelled_not_definition").get("definition_drift mql") == drift


def test_counts_agree_with_the_store_counted_directly(world: World, rules: Rules, settings_file: Path) -> None:
    reconcile(world.engine, rules, AS_OF, full=True)  # the stored findings the reasons must agree with
    found = counts(world, settings_file, "--period", "2026-Q3", "--as-of", "2026-11-16T15:00:00Z")
    people = cohort(world, *Q3)
    assert found["cohort"] == len(people) > 20
    assert found["period"] == {"label": "2026-Q3", "start": "2026-07-01T00:00:00Z", "end": "2026-10-01T00:00:00Z"}
    assert [s["stage"] for s in found["stages"]] == list(rules.stages)
    with world.engine.connect() as conn:
        holds = {name: set(ConditionQuery(rules, stage.definition).matching(conn, AS_OF)) & set(people)
                 for name, stage in rules.stages.items()}
    findings = open_findings(world)
    for s in found["stages"]:
        past = at_or_past(rules, s["stage"])
        hs = {i for i, p in people.items() if labelled(p, HUBSPOT, "hubspot_lifecyclestage", past)}
        sf = {i for i, p in people.items() if labelled(p, SALESFORCE, "salesforce_status", past)}
        defined = set().union(*(holds[x] for x in past))
        assert (s["hubspot"], s["salesforce"], s["definition"]) == (len(hs), len(sf), len(defined)), s["stage"]
        assert s["hubspot_not_salesforce"]["total"] == len(hs - sf)
        assert s["salesforce_not_hubspot"]["total"] == len(sf - hs)
        assert s["definition_not_labelled"]["total"] == len(defined - hs - sf)
        assert s["labelled_not_definition"]["total"] == len((hs | sf) - defined)
        for line in LINES:
            assert sum(reasons(s, line).values()) == s[line]["total"], (s["stage"], line)
    by_stage = {s["stage"]: s for s in found["stages"]}
    # The two stages nothing follows, by their definitions written as SQL.
    nurture = {i for i, p in people.items() if (p.salesforce_status or "").lower() == "nurture"
               and p.disqualified_reason is None}
    disqualified = {i for i, p in people.items() if p.disqualified_reason is not None
                    or (p.salesforce_status or "").lower() == "closed - not converted"}
    assert (by_stage["nurture"]["definition"], by_stage["disqualified"]["definition"]) == (
        len(nurture), len(disqualified))
    # HubSpot-only at the top of the funnel: the labelled people with no Salesforce lead, unless
    # an open finding explains them first.
    explaining = {"disagreement", "definition_drift", "identity"}
    no_lead = {i for i, p in people.items() if p.salesforce_lead_id is None
               and labelled(p, HUBSPOT, "hubspot_lifecyclestage", set(rules.stages))
               and not labelled(p, SALESFORCE, "salesforce_status", set(rules.stages))
               and not {k for k, _ in findings.get(i, set())} & explaining}
    assert no_lead and reasons(by_stage["inquiry"], "hubspot_not_salesforce")["no Salesforce lead"] == len(no_lead)
    # HubSpot has no sal label: whoever Salesforce alone counts there is explained by that,
    # by a missing contact, or by a finding.
    assert not by_stage["sal"]["hubspot_has_label"]
    assert all(r.startswith(("HubSpot does not label", "no HubSpot contact", "disagreement", "identity",
                             "definition_drift")) for r in reasons(by_stage["sal"], "salesforce_not_hubspot"))
    # The planted mql problems of the cohort are the reasons on the mql lines.
    drift = sum(1 for i in people if ("definition_drift", "mql") in findings.get(i, set()))
    missed = sum(1 for i in people if ("missed_label", "mql") in findings.get(i, set()))
    assert drift and missed
    assert reasons(by_stage["mql"], "labelled_not_definition").get("definition_drift mql") == drift
    assert reasons(by_stage["mql"], "definition_not_labelled").get("missed_label mql") == missed


def test_the_table_shows_the_same_numbers(world: World, settings_file: Path) -> None:
    args = ("--period", "2026-Q3", "--as-of", "2026-11-16T15:00:00Z")
    found = counts(world, settings_file, *args)
    result = audit(world, settings_file, "--counts", *args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"cohort: {found['cohort']} live people created in 2026-Q3 [2026-07-01, 2026-10-01) UTC"
    for s in found["stages"]:
        row = next(line for line in lines if line.split() and line.split()[0] == s["stage"])
        cells = [c.rstrip("*") for c in row.split()[1:]]
        assert cells == [str(s[k]) for k in ("hubspot", "salesforce", "definition")] + [
            str(s[line]["total"]) for line in LINES], row
        for line in LINES:
            for reason, n in reasons(s, line).items():
                assert f"    {n:>5}  {reason}" in lines
    assert "sal" in [line.split()[0] for line in lines if line.split()] and any(
        line.startswith("sal ") and line.split()[1].endswith("*") for line in lines)


@pytest.mark.parametrize(("period", "start", "end"), [
    ("2026-07", datetime(2026, 7, 1, tzinfo=UTC), datetime(2026, 8, 1, tzinfo=UTC)),
    ("2026-W27", datetime(2026, 6, 29, tzinfo=UTC), datetime(2026, 7, 6, tzinfo=UTC)),
    ("2026", datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    ("2025-q4", datetime(2025, 10, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)),
])
def test_each_period_form_picks_the_people_created_in_it(world: World, settings_file: Path, period: str,
                                                         start: datetime, end: datetime) -> None:
    found = counts(world, settings_file, "--period", period, "--as-of", "2026-11-16T15:00:00Z")
    assert found["cohort"] == len(cohort(world, start, end))
    assert (found["period"]["start"], found["period"]["end"]) == (
        start.strftime("%Y-%m-%dT%H:%M:%SZ"), end.strftime("%Y-%m-%dT%H:%M:%SZ"))
    top = found["stages"][0]
    assert top["definition"] <= found["cohort"]


@pytest.mark.parametrize("period", ["2026-Q5", "2026-13", "2026-W54", "Q3-2026", "last quarter"])
def test_a_bad_period_is_rejected_naming_the_accepted_forms(world: World, settings_file: Path, period: str) -> None:
    result = audit(world, settings_file, "--counts", "--period", period)
    assert result.exit_code == 2
    message = plain(result.stderr)
    assert f"Invalid value for --period: '{period}' is not a period" in message and FORMS in message
    assert result.stdout == ""


def test_a_period_without_counts_is_rejected(world: World, settings_file: Path) -> None:
    result = audit(world, settings_file, "--period", "2026-Q3")
    assert result.exit_code == 2
    assert "Invalid value for --period: applies only with --counts" in plain(result.stderr)
