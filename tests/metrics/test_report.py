"""``detente report`` against numbers worked out here, straight from the sandbox's generated world.

The expected numbers are computed from the CRM records as the sandbox holds them (its own
SQLite file) and the generator's manifest (which records belong to one real person), with
the agreed precedence written out again below, never through detente's store or metric code:

- a person is the manifest's person, plus every duplicate lead or contact the generator
  planted (detente keeps those apart, with an identity finding); created at the earliest
  creation of its records;
- source: the Salesforce contact's, else the lead's LeadSource, else HubSpot's
  hs_analytics_source; offer: HubSpot's, else the contact's, else the lead's Offer__c;
  campaign: HubSpot's campaign property by name, else the earliest campaign membership;
- an opportunity closes on its CloseDate (HubSpot-only deals on closedate).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from detente.cli import app
from detente.metrics.compute import report
from detente.metrics.periods import period_of
from detente.rules import Rules
from detente.sandbox.server import Sandbox
from tests.normalize.conftest import NOW, World

PERIODS = ("2026-Q3", "2026-10")


def ts(text: str | None) -> datetime | None:
    if not text:
        return None
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("+0000", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass
class Human:
    created: datetime
    source: str
    offer: str
    campaign: str | None
    opportunities: list[str] = field(default_factory=list)  # keys into Truth.deals


@dataclass
class Deal:
    amount: float
    closed: bool
    won: bool
    close: datetime | None


@dataclass
class Truth:
    people: list[Human]
    deals: dict[str, Deal]
    campaigns: dict[str, dict[str, Any]]  # name -> ActualCost, StartDate, EndDate

    def created_in(self, start: datetime, end: datetime) -> list[Human]:
        return [h for h in self.people if start <= h.created < end]

    def closed_in(self, start: datetime, end: datetime) -> list[Deal]:
        return [d for d in self.deals.values() if d.closed and d.close is not None and start <= d.close < end]


def read_truth(sandbox: Sandbox) -> Truth:
    manifest = sandbox.manifest()
    db = sqlite3.connect(f"file:{sandbox.state_dir / 'world.sqlite3'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row

    def table(sql: str) -> dict[str, sqlite3.Row]:
        return {str(r[0]): r for r in db.execute(sql)}

    leads = table("SELECT Id, CreatedDate, LeadSource, Offer__c, IsDeleted FROM sf_Lead")
    contacts = table("SELECT Id, CreatedDate, LeadSource, Offer__c, IsDeleted FROM sf_Contact")
    hs = {k: json.loads(r["props"]) for k, r in table("SELECT id, props FROM hs_contacts WHERE archived = 0").items()}
    campaigns = table("SELECT Id, Name, ActualCost, StartDate, EndDate FROM sf_Campaign WHERE IsDeleted = 0")
    members: dict[str, list[tuple[datetime, str, str]]] = defaultdict(list)
    for r in db.execute("SELECT Id, CampaignId, LeadId, ContactId, FirstRespondedDate, CreatedDate "
                        "FROM sf_CampaignMember WHERE IsDeleted = 0"):
        at = ts(r["FirstRespondedDate"]) or ts(r["CreatedDate"])
        for holder in (r["LeadId"], r["ContactId"]):
            if holder and r["CampaignId"] in campaigns and at is not None:
                members[holder].append((at, r["Id"], campaigns[r["CampaignId"]]["Name"]))
    deals: dict[str, Deal] = {}
    for r in db.execute("SELECT Id, Amount, IsClosed, IsWon, CloseDate FROM sf_Opportunity WHERE IsDeleted = 0"):
        deals[r["Id"]] = Deal(float(r["Amount"] or 0), bool(r["IsClosed"]), bool(r["IsWon"]), ts(r["CloseDate"]))
    deal_rows = table("SELECT id, props FROM hs_deals WHERE archived = 0")
    deal_props = {k: json.loads(r["props"]) for k, r in deal_rows.items()}
    db.close()

    def human(lead_id: str | None, contact_id: str | None, hs_id: str | None) -> Human | None:
        lead = leads.get(lead_id or "")
        lead = lead if lead is not None and not lead["IsDeleted"] else None
        contact = contacts.get(contact_id or "")
        contact = contact if contact is not None and not contact["IsDeleted"] else None
        props = hs.get(hs_id or "")
        times = [t for t in (ts(lead["CreatedDate"]) if lead else None, ts(contact["CreatedDate"]) if contact else None,
                             ts(props.get("createdate")) if props else None) if t is not None]
        if not times:
            return None
        source = (contact["LeadSource"] if contact else None) or (lead["LeadSource"] if lead else None) or (
            props.get("hs_analytics_source") if props else None)
        offer = (props.get("offer") if props else None) or (contact["Offer__c"] if contact else None) or (
            lead["Offer__c"] if lead else None)
        campaign = props.get("campaign") if props else None
        if campaign is None:
            held = sorted(m for holder in (lead_id, contact_id) if holder for m in members.get(holder, []))
            campaign = held[0][2] if held else None
        return Human(min(times), source or "(none)", offer or "(none)", campaign)

    people = []
    for p in manifest["people"]:
        h = human(p["salesforce_lead_id"], p["salesforce_contact_id"], p["hubspot_contact_id"])
        if h is None:
            continue
        if p["salesforce_opportunity_id"] and p["salesforce_opportunity_id"] in deals:
            h.opportunities.append(p["salesforce_opportunity_id"])
        elif p["hubspot_deal_id"] and p["hubspot_deal_id"] in deal_props:
            d = deal_props[p["hubspot_deal_id"]]
            key = f"hs:{p['hubspot_deal_id']}"
            deals[key] = Deal(float(d.get("amount") or 0), d.get("hs_is_closed") == "true",
                              d.get("hs_is_closed_won") == "true", ts(d.get("closedate")))
            h.opportunities.append(key)
        people.append(h)
        for dup in p["duplicate_salesforce_lead_ids"]:
            extra = human(dup, None, None)
            if extra is not None:
                people.append(extra)
        for dup in p["duplicate_hubspot_contact_ids"]:
            extra = human(None, None, dup)
            if extra is not None:
                people.append(extra)
    named = {r["Name"]: {"cost": float(r["ActualCost"] or 0), "start": r["StartDate"], "end": r["EndDate"]}
             for r in campaigns.values()}
    return Truth(people, deals, named)


@pytest.fixture(scope="module")
def truth(sandbox: Sandbox) -> Truth:
    return read_truth(sandbox)


@pytest.fixture(scope="module")
def reports(audited: World, rules: Rules) -> dict[str, dict[str, Any]]:
    return {label: report(audited.engine, rules, period_of(label, NOW), NOW, by="source") for label in PERIODS}


def bounds(label: str) -> tuple[datetime, datetime]:
    p = period_of(label, NOW)
    return p.start, p.end


def rate(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


@pytest.mark.parametrize("label", PERIODS)
def test_the_cohort_and_its_sources(reports: dict[str, Any], truth: Truth, label: str) -> None:
    start, end = bounds(label)
    cohort = truth.created_in(start, end)
    r = reports[label]
    assert r["funnel"]["cohort"] == len(cohort) > 0
    assert r["trends"]["leads"]["current"] == len(cohort)
    by_source = Counter(h.source for h in cohort)
    assert {g["source"]: g["leads"] for g in r["groups"] if g["leads"]} == dict(by_source)
    with_opp = [h for h in cohort if h.opportunities]
    assert r["funnel"]["with_opportunity"] == len(with_opp)
    assert r["funnel"]["lead_to_opportunity"] == rate(len(with_opp), len(cohort))
    for g in r["groups"]:
        mine = [h for h in cohort if h.source == g["source"]]
        assert g["opportunities"] == sum(1 for h in mine if h.opportunities), g["source"]


@pytest.mark.parametrize("label", PERIODS)
def test_bookings_win_rate_and_selling_price(reports: dict[str, Any], truth: Truth, label: str) -> None:
    start, end = bounds(label)
    closed = truth.closed_in(start, end)
    won = [d for d in closed if d.won]
    f = reports[label]["funnel"]
    assert (f["won"], f["lost"]) == (len(won), len(closed) - len(won))
    assert f["bookings"] == pytest.approx(sum(d.amount for d in won))
    assert f["average_selling_price"] == pytest.approx(round(sum(d.amount for d in won) / len(won), 2))
    assert f["win_rate"] == rate(len(won), len(closed))
    assert len(closed) > 0


@pytest.mark.parametrize("label", PERIODS)
def test_lead_value_and_the_goals_a_bookings_goal_implies(reports: dict[str, Any], truth: Truth, rules: Rules,
                                                          label: str) -> None:
    start, end = bounds(label)
    assert rules.goals is not None
    window = (end - timedelta(days=365), end)
    leads = truth.created_in(*window)
    groups = Counter((h.source, h.offer) for h in leads)
    booked: dict[tuple[str, str], float] = defaultdict(float)
    for h in leads + [x for x in truth.people if x.created < window[0]]:
        for key in h.opportunities:
            d = truth.deals[key]
            if d.won and d.close is not None and window[0] <= d.close < window[1]:
                booked[(h.source, h.offer)] += d.amount
    value = {g: round(booked.get(g, 0.0) / n, 2) for g, n in groups.items()}
    lv = reports[label]["lead_value"]
    assert {(x["source"], x["offer"]): x["value"] for x in lv["per_lead"]} == value
    cohort = truth.created_in(start, end)
    assert lv["delivered"] == pytest.approx(round(sum(value[(h.source, h.offer)] for h in cohort), 2), abs=0.01)
    # bookings goal ÷ average selling price ÷ win rate ÷ lead→opportunity rate, over the window
    closed = truth.closed_in(*window)
    won = [d for d in closed if d.won]
    asp = sum(d.amount for d in won) / len(won)
    win = len(won) / len(closed)
    l2o = sum(1 for h in leads if h.opportunities) / len(leads)
    scale = 3.0 if label.endswith(("Q1", "Q2", "Q3", "Q4")) else 1.0
    goal = rules.goals.bookings * scale
    implied = lv["implied"]
    assert implied["average_selling_price"] == pytest.approx(round(asp, 2))
    assert implied["win_rate"] == round(win, 4)
    assert implied["lead_to_opportunity"] == round(l2o, 4)
    assert implied["deals"] == math.ceil(goal / asp)
    assert implied["opportunities"] == math.ceil(goal / asp / win)
    assert implied["leads"] == math.ceil(goal / asp / win / l2o)
    assert lv["goal"] == pytest.approx(goal)


@pytest.mark.parametrize("label", PERIODS)
def test_cost_per_lead_and_per_order_by_campaign(reports: dict[str, Any], truth: Truth, label: str) -> None:
    start, end = bounds(label)
    leads = Counter(h.campaign for h in truth.people if h.campaign)
    won = Counter(h.campaign for h in truth.people if h.campaign for k in h.opportunities if truth.deals[k].won)
    rows = {c["campaign"]: c for c in reports[label]["cost"]["campaigns"]}
    active = {name for name, c in truth.campaigns.items()
              if (c["start"] is None or c["start"] < end.date().isoformat())
              and (c["end"] is None or c["end"] >= start.date().isoformat())}
    assert set(rows) == active and active
    for name in active:
        row, cost = rows[name], truth.campaigns[name]["cost"]
        assert (row["cost"], row["leads"], row["won"]) == (pytest.approx(cost), leads[name], won[name]), name
        assert row["cost_per_lead"] == (pytest.approx(round(cost / leads[name], 2)) if leads[name] else None)
        assert row["cost_per_order"] == (pytest.approx(round(cost / won[name], 2)) if won[name] else None)


def test_sla_breaches_counted_are_the_planted_ones(audited: World, rules: Rules, sandbox: Sandbox) -> None:
    """Every late or missed clock is a problem the generator planted, and the other way round.

    The world spans late 2025 to late 2026, so the two years' reports hold every clock."""
    years = [report(audited.engine, rules, period_of(year, NOW), NOW, reconciliation=False)
             for year in ("2025", "2026")]
    planted = Counter(p["kind"] for p in sandbox.manifest()["problems"])
    slas: dict[str, Counter[str]] = defaultdict(Counter)
    for r in years:
        for s in r["slas"]:
            slas[s["sla"]].update({k: s[k] for k in ("started", "met", "late", "missed", "requirement", "running")})
            decided = s["started"] - s["running"]
            assert s["within_sla"] == rate(s["met"], decided)
    assert slas["mql-handoff"]["late"] + slas["mql-handoff"]["missed"] == (
        planted["mql_handed_over_late"] + planted["mql_not_handed_over"]) > 0
    assert slas["first-contact"]["late"] + slas["first-contact"]["missed"] == (
        planted["first_contact_late"] + planted["first_contact_missing"]) > 0
    assert slas["outcome"]["requirement"] == planted["disqualified_too_early"] > 0
    assert slas["outcome"]["late"] + slas["outcome"]["missed"] == 0  # the world plants no missing outcome


def test_report_cli_prints_the_same_numbers_as_json_csv_and_table(audited: World, rules: Rules,
                                                                 tmp_path: Any) -> None:
    config = tmp_path / "detente.yaml"
    config.write_text(f"store:\n  url: {audited.engine.url.render_as_string(hide_password=False)}\n")
    runner = CliRunner()
    as_of = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    base = ["--config", str(config), "report", "--period", "2026-Q3", "--as-of", as_of]
    out = runner.invoke(app, [*base, "--format", "json", "--by", "offer"])
    assert out.exit_code == 0, out.output
    printed = json.loads(out.stdout)
    assert printed == report(audited.engine, rules, period_of("2026-Q3", NOW), NOW, by="offer")
    csv_out = runner.invoke(app, [*base, "--format", "csv"])
    assert csv_out.exit_code == 0, csv_out.output
    lines = csv_out.stdout.splitlines()
    assert lines[0] == "period,section,group,metric,value"
    assert f"2026-Q3,funnel,,cohort,{printed['funnel']['cohort']}" in lines
    table = runner.invoke(app, base)
    assert table.exit_code == 0, table.output
    assert f"Funnel: {printed['funnel']['cohort']} people created in 2026-Q3" in table.stdout
    bad = runner.invoke(app, [*base, "--by", "colour"])
    assert bad.exit_code != 0 and "channel, offer, campaign, team, owner" in words(bad.output)
    bad = runner.invoke(app, ["--config", str(config), "report", "--period", "2026-Q5"])
    assert bad.exit_code != 0 and "is not a period" in words(bad.output)


def words(output: str) -> str:
    """Click's boxed error text as one line."""
    return " ".join(output.replace("│", " ").split())


def test_trends_compare_with_the_previous_period_and_the_baseline(audited: World, rules: Rules, truth: Truth,
                                                                  reports: dict[str, Any]) -> None:
    r = reports["2026-10"]
    months = [report(audited.engine, rules, period_of(m, NOW), NOW, reconciliation=False)["trends"]
              for m in ("2026-09", "2026-08", "2026-07", "2026-06", "2026-05", "2026-04", "2026-03")]
    # Lead value compares like for like: every month's leads at this period's values per lead.
    value = {(g["source"], g["offer"]): g["value"] for g in r["lead_value"]["per_lead"]}
    september = truth.created_in(*bounds("2026-09"))
    assert r["trends"]["lead_value_delivered"]["previous"] == pytest.approx(
        sum(value.get((h.source, h.offer), 0.0) for h in september), abs=0.01)
    for name, t in r["trends"].items():
        if name == "lead_value_delivered":
            continue
        assert t["previous"] == months[0][name]["current"], name
        past = [m[name]["current"] for m in months[1:] if m[name]["current"] is not None]
        if len(past) >= 2 and name != "lead_value_delivered":
            mu = sum(past) / len(past)
            sd = math.sqrt(sum((x - mu) ** 2 for x in past) / len(past))
            assert t["baseline_mean"] == pytest.approx(mu, abs=1e-3), name
            if sd and t["current"] is not None:
                assert t["deviation_sd"] == pytest.approx((t["current"] - mu) / sd, abs=0.01), name


def test_sla_time_and_shares_by_hand() -> None:
    from types import SimpleNamespace

    from detente.metrics.compute import clock_summary

    def clock(outcome: str, hours: float | None) -> Any:
        return SimpleNamespace(outcome=outcome, hours=hours)

    rows = [clock("met", 2.0), clock("met", 4.0), clock("met", 6.0), clock("late", 30.0), clock("missed", None),
            clock("running", None), clock("requirement", 8.0), clock("met", 1.0), clock("met", 3.0),
            clock("met", 5.0), clock("met", 7.0)]
    s = clock_summary(rows)
    assert (s["started"], s["met"], s["late"], s["missed"], s["requirement"], s["running"]) == (11, 7, 1, 1, 1, 1)
    assert s["within_sla"] == round(7 / 10, 4)
    assert s["stopped"] == round(9 / 11, 4)
    # hours of the 9 stopped clocks: 1 2 3 4 5 6 7 8 30 -> median 5; p90 by nearest rank: the 9th = 30
    assert (s["median_hours"], s["p90_hours"]) == (5.0, 30.0)
    empty = clock_summary([])
    assert (empty["within_sla"], empty["median_hours"], empty["p90_hours"]) == (None, None, None)


@pytest.mark.parametrize("label", PERIODS)
def test_the_funnel_s_last_stages_are_the_people_with_open_and_won_opportunities(
        reports: dict[str, Any], truth: Truth, label: str) -> None:
    """customer: opportunity won; opportunity: an open one, or on to customer (the agreement's
    definitions, checked on the deals as the CRMs hold them)."""
    cohort = truth.created_in(*bounds(label))
    won = {id(h) for h in cohort if any(truth.deals[k].won for k in h.opportunities)}
    open_ = {id(h) for h in cohort if any(not truth.deals[k].closed for k in h.opportunities)}
    stages = {s["stage"]: s for s in reports[label]["funnel"]["stages"]}
    assert stages["customer"]["reached"] == len(won)
    assert stages["opportunity"]["reached"] == len(won | open_)
    assert stages["customer"]["conversion"] == rate(len(won), len(won | open_))
    assert stages["inquiry"]["reached"] == len(cohort)  # everyone has an email here


@pytest.mark.parametrize("label", PERIODS)
def test_the_two_views_are_the_audits_counts(audited: World, rules: Rules, reports: dict[str, Any],
                                             label: str) -> None:
    """The report reconciles the two views from what the audit stored of each person
    (person_metrics); ``detente audit --counts`` evaluates the cohort afresh: the same
    counts and reasons when nothing changed since the audit."""
    from detente.reconcile.counts import Counts, count_stages, open_findings, read_cohort
    from detente.reconcile.counts import to_json as counts_json
    from detente.reconcile.ledger import stored_findings

    period = period_of(label, NOW)
    people = read_cohort(audited.engine, rules, period, NOW)
    with audited.engine.connect() as conn:
        found = open_findings(stored_findings(conn).values())
    fresh = counts_json(Counts(period, NOW, rules.version, len(people), tuple(count_stages(rules, people, found))))
    assert reports[label]["reconciliation"] == fresh
    assert fresh["cohort"] > 0 and any(s["definition"] for s in fresh["stages"])


def test_activities_before_disqualification_leave_out_those_after_it(audited: World, rules: Rules) -> None:
    """A rep who logs a call on a lead after disqualifying it does not change how much work
    went into it before: only activities up to the disqualification count."""
    from sqlalchemy import delete, insert, select

    from detente.store.findings import PersonStage
    from detente.store.tables import Activity, Person

    stages, activities = PersonStage.__table__, Activity.__table__  # type: ignore[attr-defined]
    people = Person.__table__  # type: ignore[attr-defined]
    period = period_of("2026-Q3", NOW)
    before = report(audited.engine, rules, period, NOW, reconciliation=False)["sales_sla"]["disqualified"]
    assert before["people"] > 0
    with audited.engine.connect() as conn:
        pid, entered = conn.execute(
            select(stages.c.person_id, stages.c.entered_at).join(people, people.c.id == stages.c.person_id)
            .where(stages.c.stage == "disqualified", stages.c.is_current.is_(True), stages.c.entered_at.is_not(None),
                   people.c.created_at >= period.start, people.c.created_at < period.end)
            .order_by(stages.c.person_id)).first()
    row = {"system": "salesforce", "object": "Task", "person_id": pid, "kind": "call", "completed": True,
           "deleted": False}
    added = [{**row, "record_id": "00TTESTAFTER000001", "occurred_at": entered + timedelta(days=2)},
             {**row, "record_id": "00TTESTBEFORE00001", "occurred_at": entered - timedelta(hours=1)}]
    with audited.engine.begin() as conn:
        conn.execute(insert(activities), added[:1])
    try:
        after_only = report(audited.engine, rules, period, NOW, reconciliation=False)["sales_sla"]["disqualified"]
        assert after_only == before
        with audited.engine.begin() as conn:
            conn.execute(insert(activities), added[1:])
        one_more = report(audited.engine, rules, period, NOW, reconciliation=False)["sales_sla"]["disqualified"]
        assert one_more["mean_activities"] == pytest.approx(before["mean_activities"] + 1 / before["people"],
                                                            abs=0.006)
    finally:
        with audited.engine.begin() as conn:
            conn.execute(delete(activities).where(activities.c.record_id.in_([a["record_id"] for a in added])))
