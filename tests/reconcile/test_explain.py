"""``detente explain PERSON`` as a user runs it, over the demo world pulled, normalized and audited
(SQLite and PostgreSQL): the planted problem shows as a finding with its rule clause, the
timeline is in time order and matches the store, and the person is found by each identifier."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import or_, select
from typer.testing import CliRunner, Result

from detente.cli import app
from detente.reconcile.ledger import reconcile
from detente.rules import Rules
from detente.store.tables import Activity, Opportunity, Person, Transition
from tests.conftest import AS_OF
from tests.normalize.conftest import World
from tests.reconcile.conftest import RULES

PEOPLE = Person.__table__  # type: ignore[attr-defined]
TRANSITIONS = Transition.__table__  # type: ignore[attr-defined]
ACTIVITIES = Activity.__table__  # type: ignore[attr-defined]
OPPORTUNITIES = Opportunity.__table__  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def audited(world: World, rules: Rules) -> Iterator[World]:
    """The world with its findings reconciled as of the day it was generated for."""
    reconcile(world.engine, rules, AS_OF)
    yield world


@pytest.fixture(scope="module")
def settings_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("explain") / "detente.yaml"
    path.write_text("log:\n  level: warning\n")
    return path


def explain(world: World, settings_file: Path, *args: str) -> Result:
    url = world.engine.url.render_as_string(hide_password=False)
    return CliRunner().invoke(app, ["--config", str(settings_file), "explain", *args, "--rules", str(RULES)],
                              env={"DETENTE_STORE__URL": url, "DETENTE_CONFIG": ""})


def explain_json(world: World, settings_file: Path, key: str) -> dict[str, Any]:
    result = explain(world, settings_file, key, "--format", "json")
    assert result.exit_code == 0, result.output
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def planted(world: World, kind: str) -> dict[str, Any]:
    """The manifest's entry of the first person planted with a problem of ``kind``."""
    people = {p["key"]: p for p in world.manifest["people"]}
    return next(people[p["person"]] for p in world.manifest["problems"] if p["kind"] == kind)


def iso(value: Any) -> str:
    return str(value.strftime("%Y-%m-%dT%H:%M:%SZ"))


def test_a_drifted_mql_shows_the_finding_its_clause_and_a_timeline_in_time_order(
        audited: World, settings_file: Path) -> None:
    person = planted(audited, "definition_drift")
    result = explain(audited, settings_file, person["email"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"{person['email']}" in out.splitlines()[0]
    assert f"Salesforce lead {person['salesforce_lead_id']}" in out
    assert f"HubSpot contact {person['hubspot_contact_id']}" in out
    finding = next(line for line in out.splitlines() if "definition_drift mql" in line)
    assert finding.strip().startswith("open definition_drift mql: opened ")
    # The clause behind it: the stage's meaning and definition, from config/rules.yaml.
    assert "rule: stage mql" in out
    assert "meaning: A marketing qualified lead: engaged enough (score)" in out
    assert "definition: score >= 50 AND email_domain NOT IN ('gmail.com'" in out
    assert "HubSpot label: lifecyclestage = 'marketingqualifiedlead'" in out
    # The timeline: every line dated, in time order, holding the person's MQL label changes.
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("timeline ("))
    entries = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        entries.append(line)
    stamps = [line.split()[0] + " " + line.split()[1] for line in entries]
    assert stamps == sorted(stamps) and len(stamps) >= 2
    assert any("lifecyclestage" in line and "-> marketingqualifiedlead" in line for line in entries)
    assert any("Status" in line and "-> Marketing Qualified" in line for line in entries)
    # Stages as of now: HubSpot labels mql while the mql definition does not hold.
    row = next(line for line in lines if line.strip().startswith("mql "))
    assert row.split()[1:3] == ["-", "labels"]


def test_the_json_timeline_is_the_stores_history_in_time_order(audited: World, settings_file: Path) -> None:
    person = planted(audited, "missed_label")
    found = explain_json(audited, settings_file, person["hubspot_contact_id"])
    pid = found["person"]["id"]
    with audited.engine.connect() as conn:
        opp_ids = [r.id for r in conn.execute(select(OPPORTUNITIES.c.id).where(OPPORTUNITIES.c.person_id == pid,
                                                                               OPPORTUNITIES.c.deleted.is_(False)))]
        t = TRANSITIONS
        want = sorted((r.system, r.object, r.record_id, r.field, r.to_value, iso(r.at)) for r in conn.execute(
            select(t).where(or_(t.c.person_id == pid, t.c.opportunity_id.in_(opp_ids)))))
    timeline = found["timeline"]
    got = sorted((e["system"], e["object"], e["record_id"], e["field"], e["to"], e["at"])
                 for e in timeline if e["type"] == "transition")
    assert got == want and want
    assert [e["at"] for e in timeline] == sorted(e["at"] for e in timeline)
    [missed] = [f for f in found["findings"] if f["kind"] == "missed_label"]
    assert missed["rule"] == "mql" and missed["status"] == "open"
    assert missed["clause"]["definition"].startswith("score >= 50 AND email_domain NOT IN")
    assert missed["clause"]["meaning"].startswith("A marketing qualified lead")
    assert missed["clause"]["grace"] == "3 days"
    mql = next(s for s in found["stages"] if s["stage"] == "mql")
    assert (mql["definition_holds"], mql["hubspot"], mql["salesforce"]) == (True, False, False)


def test_the_same_person_by_email_salesforce_lead_and_hubspot_contact(audited: World, settings_file: Path) -> None:
    person = planted(audited, "stage_disagreement")
    views = [explain_json(audited, settings_file, key)
             for key in (person["email"].upper(), person["salesforce_lead_id"], person["hubspot_contact_id"])]
    assert [v["person"]["email"] for v in views] == [person["email"]] * 3
    assert len({v["person"]["id"] for v in views}) == 1
    assert views[0]["timeline"] == views[1]["timeline"] == views[2]["timeline"]
    [disagreement] = [f for f in views[0]["findings"] if f["kind"] == "disagreement"]
    hs, sf = disagreement["rule"].split("~")
    assert disagreement["clause"]["title"] == f"disagreement {hs} ~ {sf}"
    assert "must never be shown together" in disagreement["clause"]["description"]


def test_an_sla_finding_shows_the_slas_meaning_start_stop_and_within(audited: World, settings_file: Path) -> None:
    person = planted(audited, "mql_not_handed_over")
    found = explain_json(audited, settings_file, person["salesforce_lead_id"])
    [sla] = [f for f in found["findings"] if f["kind"] == "sla" and f["rule"] == "mql-handoff"]
    assert (sla["status"], sla["state"]) == ("open", "breached")
    assert sla["due_at"] is not None
    clause = sla["clause"]
    assert clause["meaning"] == "Marketing hands every MQL to a sales owner within 24 business hours."
    assert (clause["start"], clause["stop"]) == ("enters mql", "gets an owner from sales")
    assert clause["within"] == "24 business hours on the office calendar"


def test_connector_copies_show_once_on_their_original(audited: World, settings_file: Path) -> None:
    a = ACTIVITIES
    with audited.engine.connect() as conn:
        copy = conn.execute(select(a).where(a.c.copy_of.is_not(None), a.c.deleted.is_(False),
                                            a.c.person_id.is_not(None)).order_by(a.c.id).limit(1)).one()
        original = conn.execute(select(a).where(a.c.id == copy.copy_of)).one()
        person = conn.execute(select(PEOPLE).where(PEOPLE.c.id == copy.person_id)).one()
        live = [tuple(r) for r in conn.execute(select(a.c.system, a.c.object, a.c.record_id).where(
            a.c.person_id == person.id, a.c.deleted.is_(False), a.c.copy_of.is_(None), a.c.occurred_at.is_not(None)))]
    found = explain_json(audited, settings_file, person.salesforce_lead_id or person.hubspot_contact_id)
    activities = [e for e in found["timeline"] if e["type"] == "activity"]
    assert sorted((e["system"], e["object"], e["record_id"]) for e in activities) == sorted(live)
    assert (copy.system, copy.object, copy.record_id) not in {(e["system"], e["object"], e["record_id"])
                                                               for e in activities}
    [shown] = [e for e in activities if (e["system"], e["object"], e["record_id"])
               == (original.system, original.object, original.record_id)]
    assert {"system": copy.system, "object": copy.object, "record_id": copy.record_id} in shown["copies"]
    table = explain(audited, settings_file, person.salesforce_lead_id or person.hubspot_contact_id).stdout
    assert table.count(copy.record_id) == 1 and "[copied to " in table


def test_an_unknown_person_exits_1_saying_what_was_searched(audited: World, settings_file: Path) -> None:
    result = explain(audited, settings_file, "nobody@nowhere.example")
    assert result.exit_code == 1
    assert "no person matches 'nobody@nowhere.example'" in result.stderr
    assert "searched the emails, Salesforce lead and contact ids and HubSpot contact ids" in result.stderr
    assert "pass an email, a Salesforce lead/contact id" in result.stderr
    assert result.stdout == ""


def test_an_email_two_people_share_asks_for_an_id(audited: World, settings_file: Path) -> None:
    person = planted(audited, "duplicate_lead_email")
    result = explain(audited, settings_file, person["email"])
    assert result.exit_code == 1
    assert f"2 people match '{person['email']}'; pass one of their ids instead" in result.stderr
    for lead in (person["salesforce_lead_id"], *person["duplicate_salesforce_lead_ids"]):
        assert f"Salesforce lead {lead}" in result.stderr
    found = explain_json(audited, settings_file, person["duplicate_salesforce_lead_ids"][0])
    [duplicate] = [f for f in found["findings"] if f["rule"] == "duplicate_lead_email"]
    assert duplicate["clause"]["description"] == "two or more live Salesforce leads carry the same email"


def test_rules_with_problems_exit_1_before_reading_the_store(tmp_path: Path, settings_file: Path) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text("version: 1\nstages: {}\n")
    result = CliRunner().invoke(app, ["--config", str(settings_file), "explain", "ann@acme.com", "--rules", str(bad)],
                                env={"DETENTE_STORE__URL": f"sqlite:///{tmp_path / 'none.db'}"})
    assert result.exit_code == 1
    assert f"problem(s) in {bad}; fix them or pass --rules" in result.stderr
