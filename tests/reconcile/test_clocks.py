"""SLA clocks by hand-built scenarios: the shipped agreement's three SLAs, minute by minute.

mql-handoff: 24 business hours (America/New_York, 09:00-17:00 Mon-Fri, US holidays) from
the first MQL label to a sales owner. first-contact: 24 business hours from the first sales
owner to the first activity by an owner. outcome: 30 days from the first sales owner to
sql, nurture or disqualified, with activity_count >= 6 before disqualified.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, insert

from detente.reconcile.facts import ActivityFact, Change, Facts, OwnerFact, PersonFact, load_facts
from detente.reconcile.ledger import evaluate, plan, row_of
from detente.reconcile.model import DRIFT, SLA, Finding
from detente.reconcile.sla import sla_findings
from detente.rules import Rules
from detente.store.tables import Activity, Owner, Person

NY = ZoneInfo("America/New_York")
MINUTE = timedelta(minutes=1)


def ny(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """A wall-clock time in New York, as the UTC instant the store keeps."""
    return datetime(year, month, day, hour, minute, tzinfo=NY).astimezone(UTC)


MARA = OwnerFact(1, "mara@acme-corp.com", "marketing", "marketing", "005000000000MAR", "1001")
SAM = OwnerFact(2, "sam@acme-corp.com", "sales", "sales", "005000000000SAM", "2001")
LEE = OwnerFact(3, "lee@acme-corp.com", None, "sales", "005000000000LEE", "2003")  # left; was in sales
MO = OwnerFact(4, "mo@acme-corp.com", "marketing", "marketing", None, "1004")  # never owns anyone here
OWNERS = {o.id: o for o in (MARA, SAM, LEE, MO)}
BY_CRM = {(system, crm_id): o.id for o in OWNERS.values()
          for system, crm_id in (("salesforce", o.salesforce_user_id), ("hubspot", o.hubspot_owner_id)) if crm_id}

# Monday 2026-11-16 10:00 New York; 24 business hours later is Thursday 10:00 (7 + 8 + 8 + 1).
MQL_AT = ny(2026, 11, 16, 10)
DUE = ny(2026, 11, 19, 10)
CREATED = ny(2026, 11, 10, 9)
MQL_HOLDS = frozenset({"inquiry", "lead", "mql"})


def mql(at: datetime) -> Change:
    return Change("hubspot", "contacts", "lifecyclestage", "marketingqualifiedlead", at)


def sf_status(value: str, at: datetime) -> Change:
    return Change("salesforce", "Lead", "Status", value, at)


def hs_stage(value: str, at: datetime) -> Change:
    return Change("hubspot", "contacts", "lifecyclestage", value, at)


def sf_owner(owner: OwnerFact, at: datetime) -> Change:
    return Change("salesforce", "Lead", "OwnerId", owner.salesforce_user_id, at)


def hs_owner(owner: OwnerFact, at: datetime) -> Change:
    return Change("hubspot", "contacts", "hubspot_owner_id", owner.hubspot_owner_id, at)


def person(*changes: Change, activities: Sequence[ActivityFact] = (), definitions: frozenset[str] = MQL_HOLDS,
           labels: frozenset[str] = frozenset(), score: float = 80, activity_count: int = 0,
           hubspot_history: bool = True, salesforce_owner: OwnerFact | None = None) -> PersonFact:
    """Person 1, owned by Mara in HubSpot since creation (with that history unless told otherwise) and by
    ``salesforce_owner`` in Salesforce (no history kept); current owners and values follow the changes."""
    history = sorted([*([hs_owner(MARA, CREATED)] if hubspot_history else []), *changes], key=lambda ch: ch.at)
    current: dict[tuple[str, str], str | None] = {(ch.system, ch.field): ch.value for ch in history}
    sf_id = current.get(("salesforce", "OwnerId"), salesforce_owner.salesforce_user_id if salesforce_owner else None)
    hs_id = current.get(("hubspot", "hubspot_owner_id"))
    values: dict[str, Any] = {"score": score, "email": "ana@globex.com", "email_domain": "globex.com",
                              "activity_count": activity_count}
    return PersonFact(1, "ana@globex.com", "00Q000000000ANA", None, "101",
                      current.get(("salesforce", "Status")), False, current.get(("hubspot", "lifecyclestage")),
                      None, BY_CRM.get(("salesforce", sf_id)) if sf_id else None,
                      BY_CRM.get(("hubspot", hs_id)) if hs_id else None, CREATED, max(ch.at for ch in history),
                      definitions=definitions, labels={"hubspot": labels, "salesforce": frozenset()}, changes=history,
                      activities=sorted(activities, key=lambda a: a.at), values=values)


def facts(*people: PersonFact) -> Facts:
    return Facts({p.id: p for p in people}, OWNERS, {}, [], owner_by_crm=BY_CRM)


def clock(p: PersonFact, rules: Rules, rule: str, now: datetime) -> Finding | None:
    found = [f for f in sla_findings(facts(p), rules, now) if f.rule == rule]
    assert len(found) <= 1
    return found[0] if found else None


def the_clock(p: PersonFact, rules: Rules, rule: str, now: datetime) -> Finding:
    found = clock(p, rules, rule, now)
    assert found is not None, f"no {rule} finding"
    return found


# -- mql-handoff ---------------------------------------------------------------------------------


def test_handover_a_minute_before_due_is_met_and_not_recorded(rules: Rules) -> None:
    handed = DUE - MINUTE
    f = the_clock(person(mql(MQL_AT), sf_owner(SAM, handed)), rules, "mql-handoff", DUE + timedelta(hours=1))
    assert (f.state, f.status, f.stopped_at, f.resolved_at) == ("met", "resolved", handed, handed)
    assert f.resolution is not None and f.resolution.startswith("met")
    assert plan([f], {}, DUE + timedelta(hours=1), rules.version) == []


def test_handover_a_minute_after_due_is_breached_late(rules: Rules) -> None:
    handed = DUE + MINUTE
    f = the_clock(person(mql(MQL_AT), sf_owner(SAM, handed)), rules, "mql-handoff", DUE + timedelta(hours=1))
    assert (f.status, f.state) == ("resolved", "breached")
    assert f.opened_at == f.due_at == DUE
    assert f.resolved_at == f.stopped_at == handed
    assert f.resolution is not None and f.resolution.startswith("stopped late")
    [write] = plan([f], {}, DUE + timedelta(hours=1), rules.version)
    assert write.event == "recorded"


def test_no_handover_a_minute_past_due_is_an_open_breach(rules: Rules) -> None:
    f = the_clock(person(mql(MQL_AT)), rules, "mql-handoff", DUE + MINUTE)
    assert (f.status, f.state, f.opened_at, f.due_at, f.stopped_at) == ("open", "breached", DUE, DUE, None)
    assert f.owner_email == MARA.email and f.team == "marketing"


def test_no_handover_a_minute_before_due_is_running(rules: Rules) -> None:
    f = the_clock(person(mql(MQL_AT)), rules, "mql-handoff", DUE - MINUTE)
    assert (f.status, f.state, f.due_at, f.started_at, f.opened_at) == ("open", "running", DUE, MQL_AT, MQL_AT)


def test_the_clock_does_not_start_before_the_mql_label(rules: Rules) -> None:
    assert clock(person(mql(MQL_AT)), rules, "mql-handoff", MQL_AT - MINUTE) is None


def test_the_first_mql_label_in_either_crm_starts_the_clock(rules: Rules) -> None:
    earlier = MQL_AT - timedelta(days=1)  # Sunday: counts from Monday 09:00, due Wednesday 17:00
    f = the_clock(person(sf_status("Marketing Qualified", earlier), mql(MQL_AT)), rules, "mql-handoff", MQL_AT)
    assert (f.started_at, f.due_at) == (earlier, ny(2026, 11, 18, 17))


def test_a_sales_owner_before_the_label_meets_the_handover_at_the_label(rules: Rules) -> None:
    f = the_clock(person(hs_owner(SAM, MQL_AT - timedelta(days=2)), mql(MQL_AT)), rules, "mql-handoff", DUE)
    assert (f.state, f.stopped_at) == ("met", MQL_AT)


def test_a_sales_owner_since_creation_without_owner_history_meets_the_handover_at_the_label(rules: Rules) -> None:
    p = person(mql(MQL_AT), hubspot_history=False, salesforce_owner=SAM)
    f = the_clock(p, rules, "mql-handoff", DUE + MINUTE)
    assert (f.state, f.status, f.stopped_at) == ("met", "resolved", MQL_AT)


def test_a_salesforce_owner_since_creation_counts_though_hubspot_kept_owner_history(rules: Rules) -> None:
    p = person(mql(MQL_AT), salesforce_owner=SAM)
    assert the_clock(p, rules, "mql-handoff", DUE + MINUTE).state == "met"
    assert the_clock(p, rules, "first-contact", MQL_AT).started_at == CREATED


def test_a_queue_or_marketing_owner_does_not_stop_the_handover(rules: Rules) -> None:
    queue = Change("salesforce", "Lead", "OwnerId", "00G000000000QUE", MQL_AT + timedelta(hours=1))
    p = person(mql(MQL_AT), queue, sf_owner(MARA, MQL_AT + timedelta(hours=2)))
    f = the_clock(p, rules, "mql-handoff", DUE + MINUTE)
    assert (f.state, f.status) == ("breached", "open")


# -- the business calendar -------------------------------------------------------------------------


def test_due_time_skips_the_weekend(rules: Rules) -> None:
    friday = ny(2026, 11, 13, 15)  # 2 hours on Friday, 8 Monday, 8 Tuesday, 6 Wednesday
    f = the_clock(person(mql(friday)), rules, "mql-handoff", friday + timedelta(hours=1))
    assert f.due_at == ny(2026, 11, 18, 15) == datetime(2026, 11, 18, 20, 0, tzinfo=UTC)
    office = rules.calendars["office"].business()
    assert f.due_at == office.add_hours(friday, 24)


def test_a_label_on_saturday_counts_from_monday_morning(rules: Rules) -> None:
    saturday = ny(2026, 11, 14, 12)
    f = the_clock(person(mql(saturday)), rules, "mql-handoff", saturday)
    assert f.due_at == ny(2026, 11, 18, 17)


def test_due_time_skips_thanksgiving(rules: Rules) -> None:
    wednesday = ny(2026, 11, 25, 16)  # 1 hour Wednesday, Thursday off, 8 Friday, 8 Monday, 7 Tuesday
    f = the_clock(person(mql(wednesday)), rules, "mql-handoff", wednesday)
    assert f.due_at == ny(2026, 12, 1, 16) == datetime(2026, 12, 1, 21, 0, tzinfo=UTC)


def test_due_time_skips_the_observed_independence_day(rules: Rules) -> None:
    thursday = ny(2026, 7, 2, 10)  # 7 hours Thursday, Friday July 3 off, 8 Monday, 8 Tuesday, 1 Wednesday
    f = the_clock(person(mql(thursday)), rules, "mql-handoff", thursday)
    assert f.due_at == ny(2026, 7, 8, 10) == datetime(2026, 7, 8, 14, 0, tzinfo=UTC)


def test_due_time_keeps_office_hours_across_the_end_of_daylight_saving(rules: Rules) -> None:
    friday = ny(2026, 10, 30, 15)  # 19:00 UTC on EDT; due Wednesday 15:00 EST, 20:00 UTC
    f = the_clock(person(mql(friday)), rules, "mql-handoff", friday)
    assert f.due_at == datetime(2026, 11, 4, 20, 0, tzinfo=UTC)


# -- first-contact -------------------------------------------------------------------------------------

HANDED = MQL_AT + timedelta(hours=1)  # Monday 11:00 New York
CONTACT_DUE = ny(2026, 11, 19, 11)


def test_first_contact_logged_in_hubspot_on_a_salesforce_lead_is_met(rules: Rules) -> None:
    call = ActivityFact(HANDED + timedelta(hours=2), SAM.id, "hubspot")
    p = person(mql(MQL_AT), sf_owner(SAM, HANDED), activities=[call])
    f = the_clock(p, rules, "first-contact", CONTACT_DUE + MINUTE)
    assert (f.state, f.status, f.started_at, f.due_at, f.stopped_at) == (
        "met", "resolved", HANDED, CONTACT_DUE, call.at)


def test_no_contact_a_minute_past_due_is_an_open_breach_owed_by_sales(rules: Rules) -> None:
    f = the_clock(person(mql(MQL_AT), sf_owner(SAM, HANDED)), rules, "first-contact", CONTACT_DUE + MINUTE)
    assert (f.state, f.status, f.opened_at) == ("breached", "open", CONTACT_DUE)
    assert (f.team, f.owner_email) == ("sales", SAM.email)


def test_an_activity_by_a_marketer_who_never_owned_the_person_does_not_stop_first_contact(rules: Rules) -> None:
    email = ActivityFact(HANDED + timedelta(hours=2), MO.id, "hubspot")
    p = person(mql(MQL_AT), sf_owner(SAM, HANDED), activities=[email])
    f = the_clock(p, rules, "first-contact", CONTACT_DUE + MINUTE)
    assert (f.state, f.status, f.stopped_at) == ("breached", "open", None)


def test_an_activity_before_the_sales_owner_does_not_stop_first_contact(rules: Rules) -> None:
    early = ActivityFact(HANDED - timedelta(minutes=30), SAM.id, "salesforce")
    p = person(mql(MQL_AT), sf_owner(SAM, HANDED), activities=[early])
    f = the_clock(p, rules, "first-contact", CONTACT_DUE + MINUTE)
    assert (f.state, f.status) == ("breached", "open")


def test_an_activity_by_an_owner_who_has_since_left_sales_counts(rules: Rules) -> None:
    call = ActivityFact(HANDED + timedelta(hours=2), LEE.id, "salesforce")
    p = person(mql(MQL_AT), sf_owner(LEE, HANDED), activities=[call])
    f = the_clock(p, rules, "first-contact", CONTACT_DUE + MINUTE)
    assert (f.state, f.started_at, f.stopped_at) == ("met", HANDED, call.at)


def test_an_activity_by_a_sales_colleague_who_has_since_left_counts(rules: Rules) -> None:
    call = ActivityFact(HANDED + timedelta(hours=2), LEE.id, "hubspot")
    p = person(mql(MQL_AT), sf_owner(SAM, HANDED), activities=[call])
    f = the_clock(p, rules, "first-contact", CONTACT_DUE + MINUTE)
    assert (f.state, f.stopped_at) == ("met", call.at)


def test_a_connector_copy_of_an_activity_is_read_once(store: Engine, rules: Rules) -> None:
    at = HANDED + timedelta(hours=2)
    with store.begin() as conn:
        conn.execute(insert(Owner.__table__), [  # type: ignore[attr-defined]
            {"id": SAM.id, "email": SAM.email, "team": "Sales", "salesforce_user_id": SAM.salesforce_user_id,
             "hubspot_owner_id": SAM.hubspot_owner_id, "active": True}])
        conn.execute(insert(Person.__table__).values(  # type: ignore[attr-defined]
            id=1, email="ana@globex.com", email_domain="globex.com", salesforce_lead_id="00Q000000000ANA",
            hubspot_contact_id="101", salesforce_owner_id=SAM.id, activity_count=1, created_at=CREATED,
            modified_at=at))
        activity = {"person_id": 1, "owner_id": SAM.id, "kind": "call", "occurred_at": at, "completed": True,
                    "deleted": False}
        conn.execute(insert(Activity.__table__).values(  # type: ignore[attr-defined]
            id=10, system="hubspot", object="calls", record_id="9001", **activity))
        conn.execute(insert(Activity.__table__).values(  # type: ignore[attr-defined]
            id=11, system="salesforce", object="Task", record_id="00T000000000CPY", copy_of=10, **activity))
    with store.connect() as conn:
        loaded = load_facts(conn, rules, at + timedelta(hours=1))
    assert loaded.people[1].activities == [ActivityFact(at, SAM.id, "hubspot")]


# -- definitions ------------------------------------------------------------------------------------------


def test_no_clock_runs_on_an_mql_label_the_definition_does_not_back(rules: Rules) -> None:
    drifted = person(mql(MQL_AT), definitions=frozenset({"inquiry", "lead"}), labels=frozenset({"mql"}), score=35)
    assert clock(drifted, rules, "mql-handoff", DUE - MINUTE) is None
    assert clock(drifted, rules, "mql-handoff", DUE + MINUTE) is None
    assert [f.kind for f in evaluate(facts(drifted), rules, DUE + MINUTE)] == [DRIFT]


# -- outcome -------------------------------------------------------------------------------------------------

OUTCOME_DUE = HANDED + timedelta(days=30)  # calendar time


def worked(n: int, start: datetime) -> list[ActivityFact]:
    """``n`` calls by Sam, an hour apart from ``start``."""
    return [ActivityFact(start + timedelta(hours=i), SAM.id, "salesforce") for i in range(n)]


def test_disqualified_after_three_activities_is_an_open_breach_at_the_disqualification(rules: Rules) -> None:
    out = HANDED + timedelta(days=5)
    p = person(mql(MQL_AT), sf_owner(SAM, HANDED), sf_status("Closed - Not Converted", out), activity_count=3,
               activities=worked(3, HANDED + timedelta(hours=1)))
    f = the_clock(p, rules, "outcome", out + timedelta(days=1))
    assert (f.status, f.state, f.opened_at, f.stopped_at, f.due_at) == ("open", "breached", out, out, OUTCOME_DUE)
    assert "activity_count >= 6" in f.explanation


def test_disqualified_after_six_activities_is_met(rules: Rules) -> None:
    out = HANDED + timedelta(days=5)
    p = person(mql(MQL_AT), sf_owner(SAM, HANDED), sf_status("Closed - Not Converted", out), activity_count=6,
               activities=worked(6, HANDED + timedelta(hours=1)))
    f = the_clock(p, rules, "outcome", out + timedelta(days=1))
    assert (f.status, f.state, f.stopped_at) == ("resolved", "met", out)


def test_calls_logged_after_the_disqualification_do_not_make_up_for_too_few_before(rules: Rules) -> None:
    out = HANDED + timedelta(days=5)
    p = person(mql(MQL_AT), sf_owner(SAM, HANDED), sf_status("Closed - Not Converted", out), activity_count=6,
               activities=[*worked(3, HANDED + timedelta(hours=1)), *worked(3, out + timedelta(hours=1))])
    f = the_clock(p, rules, "outcome", out + timedelta(days=2))
    assert (f.status, f.state, f.opened_at, f.stopped_at) == ("open", "breached", out, out)
    assert "activity_count >= 6" in f.explanation and "3" in f.explanation


def test_nurture_needs_no_six_activities(rules: Rules) -> None:
    out = HANDED + timedelta(days=5)
    p = person(mql(MQL_AT), sf_owner(SAM, HANDED), sf_status("Nurture", out), activity_count=1)
    f = the_clock(p, rules, "outcome", out + timedelta(days=1))
    assert (f.status, f.state, f.stopped_at) == ("resolved", "met", out)


def test_reaching_opportunity_stops_the_outcome_clock(rules: Rules) -> None:
    out = HANDED + timedelta(days=10)
    p = person(mql(MQL_AT), sf_owner(SAM, HANDED), hs_stage("opportunity", out), activity_count=2)
    f = the_clock(p, rules, "outcome", OUTCOME_DUE + timedelta(days=10))
    assert (f.status, f.state, f.stopped_at) == ("resolved", "met", out)
    assert "reached opportunity" in f.explanation


def test_no_outcome_in_thirty_days_is_breached(rules: Rules) -> None:
    p = person(mql(MQL_AT), sf_owner(SAM, HANDED), activity_count=2)
    assert the_clock(p, rules, "outcome", OUTCOME_DUE - MINUTE).state == "running"
    f = the_clock(p, rules, "outcome", OUTCOME_DUE + MINUTE)
    assert (f.status, f.state, f.opened_at, f.due_at) == ("open", "breached", OUTCOME_DUE, OUTCOME_DUE)


def test_a_late_outcome_says_how_late_in_calendar_time(rules: Rules) -> None:
    handed = ny(2026, 10, 16, 12)  # Friday; due Sunday 2026-11-15 11:00 EST, 30 x 24 hours later
    out = handed + timedelta(days=31)
    p = person(mql(handed - timedelta(hours=1)), sf_owner(SAM, handed), sf_status("Sales Qualified", out))
    f = the_clock(p, rules, "outcome", out + timedelta(days=1))
    assert (f.status, f.state, f.opened_at, f.resolved_at) == ("resolved", "breached", handed + timedelta(days=30), out)
    assert "24.0 hours after the due time" in f.explanation


# -- the ledger ------------------------------------------------------------------------------------------------


def _store(found: list[Finding], rules: Rules, now: datetime) -> dict[str, dict[str, Any]]:
    return {w.row["key"]: dict(w.row) for w in plan(found, {}, now, rules.version)}


def _sla_key(rule: str) -> str:
    return f"{SLA}|{rule}|person:1"


def test_a_running_clock_then_met_resolves_as_met(rules: Rules) -> None:
    stored = _store(evaluate(facts(person(mql(MQL_AT))), rules, MQL_AT), rules, MQL_AT)
    assert stored[_sla_key("mql-handoff")]["state"] == "running"
    later = MQL_AT + timedelta(hours=3)
    writes = plan(evaluate(facts(person(mql(MQL_AT), sf_owner(SAM, HANDED))), rules, later), stored, later,
                  rules.version)
    [done] = [w for w in writes if w.row["key"] == _sla_key("mql-handoff")]
    assert (done.event, done.row["status"], done.row["state"]) == ("resolved", "resolved", "met")
    assert done.row["resolution"].startswith("met") and done.row["resolved_at"] == HANDED


def test_a_running_clock_then_past_due_is_updated_to_breached(rules: Rules) -> None:
    p = person(mql(MQL_AT))
    stored = _store(evaluate(facts(p), rules, MQL_AT), rules, MQL_AT)
    writes = plan(evaluate(facts(p), rules, DUE + MINUTE), stored, DUE + MINUTE, rules.version)
    [w] = [w for w in writes if w.row["key"] == _sla_key("mql-handoff")]
    assert (w.event, w.row["status"], w.row["state"], w.row["due_at"]) == ("updated", "open", "breached", DUE)


def _world() -> Facts:
    """Five people whose clocks are running, breached, met, late and failing the requirement."""
    running = person(mql(MQL_AT))
    breached = person(mql(MQL_AT - timedelta(days=7)))
    met = person(mql(MQL_AT), sf_owner(SAM, HANDED),
                 activities=[ActivityFact(HANDED + timedelta(hours=1), SAM.id, "salesforce")])
    late = person(mql(MQL_AT - timedelta(days=9)), sf_owner(SAM, MQL_AT - timedelta(days=2)))
    failed = person(mql(MQL_AT - timedelta(days=3)), sf_owner(SAM, MQL_AT - timedelta(days=3)),
                    sf_status("Closed - Not Converted", MQL_AT - timedelta(days=1)), activity_count=2)
    people = [running, breached, met, late, failed]
    for number, p in enumerate(people, start=1):
        p.id = number
    return Facts({p.id: p for p in people}, OWNERS, {}, [], owner_by_crm=BY_CRM)


def test_evaluating_the_same_data_again_writes_nothing(rules: Rules) -> None:
    now = MQL_AT + timedelta(hours=2)
    found = evaluate(_world(), rules, now)
    assert {f.state for f in found if f.kind == SLA} == {"running", "breached", "met"}
    stored = _store(found, rules, now)
    assert plan(evaluate(_world(), rules, now), stored, now, rules.version) == []


def test_an_open_breach_is_not_rewritten_as_it_grows_older(rules: Rules) -> None:
    p = person(mql(MQL_AT))
    stored = _store(evaluate(facts(p), rules, DUE + MINUTE), rules, DUE + MINUTE)
    later = DUE + timedelta(hours=5)
    assert plan(evaluate(facts(p), rules, later), stored, later, rules.version) == []


def test_row_of_keeps_the_clock(rules: Rules) -> None:
    f = the_clock(person(mql(MQL_AT)), rules, "mql-handoff", MQL_AT)
    row = row_of(f, rules.version, MQL_AT)
    assert (row["state"], row["started_at"], row["due_at"], row["stopped_at"]) == ("running", MQL_AT, DUE, None)
