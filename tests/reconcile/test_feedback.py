"""Feedback gaps by hand-built scenarios: leads idle with sales, conversions and closed deals
that never reported back, wins HubSpot does not know about."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from detente.reconcile.facts import ActivityFact, Change, Facts, OpportunityFact, OwnerFact, PersonFact, RecordFact
from detente.reconcile.feedback import feedback_gaps
from detente.reconcile.model import DISAGREEMENT, FEEDBACK, Finding
from detente.rules import Rules

MINUTE = timedelta(minutes=1)
CREATED = datetime(2026, 10, 1, 14, 0, tzinfo=UTC)
TOUCHED = datetime(2026, 10, 20, 15, 30, tzinfo=UTC)  # the last status or owner change
IDLE_SINCE = TOUCHED + timedelta(days=14)
CLOSED = datetime(2026, 11, 2, 18, 0, tzinfo=UTC)  # when the opportunities close

MARA = OwnerFact(1, "mara@acme-corp.com", "marketing", "marketing", "005000000000MAR", "1001")
SAM = OwnerFact(2, "sam@acme-corp.com", "sales", "sales", "005000000000SAM", "2001")
OWNERS = {o.id: o for o in (MARA, SAM)}
BY_CRM = {(system, crm_id): o.id for o in OWNERS.values()
          for system, crm_id in (("salesforce", o.salesforce_user_id), ("hubspot", o.hubspot_owner_id)) if crm_id}

LEAD, CONTACT, HS_CONTACT = "00Q000000000ANA", "003000000000ANA", "101"


def person(owner: OwnerFact = SAM, *, labels: frozenset[str] = frozenset({"sal"}), converted: bool = False,
           hubspot: frozenset[str] = frozenset(), changes: tuple[Change, ...] = (),
           activities: tuple[ActivityFact, ...] = ()) -> PersonFact:
    """Ana: a Salesforce lead (labels) and a HubSpot contact (hubspot labels), last touched at TOUCHED."""
    history = [Change("salesforce", "Lead", "Status", "Marketing Qualified", CREATED + timedelta(days=1)),
               Change("salesforce", "Lead", "OwnerId", owner.salesforce_user_id, TOUCHED), *changes]
    values: dict[str, Any] = {"score": 80, "email": "ana@globex.com", "email_domain": "globex.com",
                              "activity_count": len(activities)}
    return PersonFact(1, "ana@globex.com", LEAD, CONTACT if converted else None, HS_CONTACT,
                      "Working - Contacted", converted, "salesqualifiedlead", None, owner.id, None, CREATED,
                      TOUCHED, definitions=frozenset({"inquiry", "lead", "mql", "sal"}),
                      labels={"salesforce": labels, "hubspot": hubspot}, changes=sorted(history, key=lambda c: c.at),
                      activities=list(activities), values=values)


def opportunity(*, won: bool = False, closed: bool = True, sf_reason: str | None = None,
                hs_reason: str | None = None, source: str | None = "Web") -> OpportunityFact:
    return OpportunityFact(7, "006000000000OPP", "9007", 1, "Closed Won" if won else "Closed Lost",
                           "closedwon" if won else "closedlost", closed, won, sf_reason, hs_reason, source,
                           "Globex renewal", SAM.id, LEAD, CREATED + timedelta(days=3), CLOSED if closed else None)


def facts(p: PersonFact, *, opportunities: tuple[OpportunityFact, ...] = (), records: tuple[RecordFact, ...] = (),
          lead_status_since: dict[str, datetime] | None = None) -> Facts:
    return Facts({p.id: p}, OWNERS, {o.id: o for o in opportunities}, list(records),
                 lead_status_since=lead_status_since or {}, owner_by_crm=BY_CRM)


def gaps(f: Facts, rules: Rules, rule: str, now: datetime) -> list[Finding]:
    return [g for g in feedback_gaps(f, rules, now) if g.rule == rule]


# -- idle_with_sales -----------------------------------------------------------------------------------


def test_idle_with_sales_a_minute_before_fourteen_days_is_nothing_yet(rules: Rules) -> None:
    assert gaps(facts(person()), rules, "idle_with_sales", IDLE_SINCE - MINUTE) == []


def test_idle_with_sales_a_minute_after_fourteen_days_opens_at_the_last_touch_plus_fourteen_days(
        rules: Rules) -> None:
    [gap] = gaps(facts(person()), rules, "idle_with_sales", IDLE_SINCE + MINUTE)
    assert (gap.kind, gap.opened_at, gap.person_id, gap.team, gap.owner_email) == (
        FEEDBACK, IDLE_SINCE, 1, "sales", SAM.email)
    assert "2026-10-20 15:30 UTC" in gap.explanation


def test_an_activity_in_either_crm_restarts_the_idle_time(rules: Rules) -> None:
    call = ActivityFact(TOUCHED + timedelta(days=5), SAM.id, "hubspot")
    p = person(activities=(call,))
    assert gaps(facts(p), rules, "idle_with_sales", IDLE_SINCE + MINUTE) == []
    [gap] = gaps(facts(p), rules, "idle_with_sales", call.at + timedelta(days=14, minutes=1))
    assert gap.opened_at == call.at + timedelta(days=14)


def test_a_hubspot_lifecycle_change_restarts_the_idle_time(rules: Rules) -> None:
    moved = Change("hubspot", "contacts", "lifecyclestage", "salesqualifiedlead", TOUCHED + timedelta(days=3))
    assert gaps(facts(person(changes=(moved,))), rules, "idle_with_sales", IDLE_SINCE + MINUTE) == []


def test_a_converted_lead_is_not_idle_with_sales(rules: Rules) -> None:
    assert gaps(facts(person(converted=True)), rules, "idle_with_sales", IDLE_SINCE + MINUTE) == []


def test_a_lead_sent_to_nurture_is_not_idle_with_sales(rules: Rules) -> None:
    p = person(labels=frozenset({"nurture"}))
    assert gaps(facts(p), rules, "idle_with_sales", IDLE_SINCE + MINUTE) == []


def test_a_disqualified_lead_is_not_idle_with_sales(rules: Rules) -> None:
    p = person(labels=frozenset({"disqualified"}))
    assert gaps(facts(p), rules, "idle_with_sales", IDLE_SINCE + MINUTE) == []


def test_a_lead_with_a_marketing_owner_is_not_idle_with_sales(rules: Rules) -> None:
    assert gaps(facts(person(MARA)), rules, "idle_with_sales", IDLE_SINCE + MINUTE) == []


# -- converted_without_opportunity --------------------------------------------------------------------

CONVERTED = datetime(2026, 11, 3, 16, 45, tzinfo=UTC)
NOW = datetime(2026, 11, 16, 15, 0, tzinfo=UTC)


def lead_record(opportunity_id: str | None) -> RecordFact:
    return RecordFact("salesforce", "Lead", LEAD, "ana@globex.com", None, CONTACT, opportunity_id,
                      CREATED, False, None, NOW - timedelta(hours=2))


def test_a_lead_converted_without_an_opportunity_opens_at_the_conversion(rules: Rules) -> None:
    f = facts(person(converted=True), records=(lead_record(None),), lead_status_since={LEAD: CONVERTED})
    [gap] = gaps(f, rules, "converted_without_opportunity", NOW)
    assert (gap.kind, gap.opened_at, gap.person_id) == (FEEDBACK, CONVERTED, 1)
    assert gap.records["salesforce/Contact"] == (CONTACT,) and gap.records["salesforce/Lead"] == (LEAD,)
    assert CONTACT in gap.explanation


def test_a_lead_converted_with_an_opportunity_is_no_gap(rules: Rules) -> None:
    f = facts(person(converted=True), records=(lead_record("006000000000OPP"),), lead_status_since={LEAD: CONVERTED})
    assert gaps(f, rules, "converted_without_opportunity", NOW) == []


def test_a_lead_not_converted_is_no_conversion_gap(rules: Rules) -> None:
    f = facts(person(), records=(lead_record(None),), lead_status_since={LEAD: CONVERTED})
    assert gaps(f, rules, "converted_without_opportunity", NOW) == []


# -- closed_lost_without_reason -------------------------------------------------------------------------


def test_closed_lost_without_a_hubspot_reason_names_only_hubspot(rules: Rules) -> None:
    f = facts(person(), opportunities=(opportunity(sf_reason="Price"),))
    [gap] = gaps(f, rules, "closed_lost_without_reason", NOW)
    assert (gap.kind, gap.subject, gap.opened_at, gap.opportunity_id) == (FEEDBACK, "opportunity:7", CLOSED, 7)
    assert "HubSpot closed_lost_reason" in gap.explanation and "Loss_Reason__c" not in gap.explanation
    assert gap.records == {"salesforce/Opportunity": ("006000000000OPP",), "hubspot/deals": ("9007",)}


def test_closed_lost_with_both_reasons_is_no_gap(rules: Rules) -> None:
    f = facts(person(), opportunities=(opportunity(sf_reason="Price", hs_reason="Price"),))
    assert gaps(f, rules, "closed_lost_without_reason", NOW) == []


def test_an_open_or_won_opportunity_needs_no_loss_reason(rules: Rules) -> None:
    f = facts(person(), opportunities=(opportunity(closed=False),))
    assert gaps(f, rules, "closed_lost_without_reason", NOW) == []
    f = facts(person(), opportunities=(opportunity(won=True),))
    assert gaps(f, rules, "closed_lost_without_reason", NOW) == []


# -- won_not_in_hubspot ----------------------------------------------------------------------------------

LABELLED_OPPORTUNITY = CREATED + timedelta(days=4)


def _won_world(hubspot_stage: str, hubspot_label: str, labelled: datetime = LABELLED_OPPORTUNITY) -> Facts:
    moved = Change("hubspot", "contacts", "lifecyclestage", hubspot_stage, labelled)
    p = person(converted=True, labels=frozenset({"opportunity"}), hubspot=frozenset({hubspot_label}),
               changes=(moved,))
    p.hubspot_lifecyclestage = hubspot_stage
    return facts(p, opportunities=(opportunity(won=True),))


def test_won_in_salesforce_while_hubspot_says_opportunity_is_a_disagreement_from_the_win(rules: Rules) -> None:
    [gap] = gaps(_won_world("opportunity", "opportunity"), rules, "won_not_in_hubspot", NOW)
    assert (gap.kind, gap.subject, gap.opened_at, gap.hubspot_id) == (DISAGREEMENT, "opportunity:7", CLOSED, HS_CONTACT)
    assert gap.records == {"salesforce/Opportunity": ("006000000000OPP",), "hubspot/contacts": (HS_CONTACT,)}
    assert "HubSpot still says opportunity" in gap.explanation


def test_won_not_in_hubspot_opens_at_a_hubspot_label_set_after_the_win(rules: Rules) -> None:
    relabelled = CLOSED + timedelta(days=2)
    [gap] = gaps(_won_world("salesqualifiedlead", "sql", relabelled), rules, "won_not_in_hubspot", NOW)
    assert gap.opened_at == relabelled and "HubSpot still says sql" in gap.explanation


def test_won_in_salesforce_while_hubspot_says_customer_is_no_gap(rules: Rules) -> None:
    assert gaps(_won_world("customer", "customer"), rules, "won_not_in_hubspot", NOW) == []


# -- opportunity_without_source ----------------------------------------------------------------------------


def test_an_opportunity_without_a_source_opens_at_its_creation(rules: Rules) -> None:
    f = facts(person(), opportunities=(opportunity(closed=False, source=None),))
    [gap] = gaps(f, rules, "opportunity_without_source", NOW)
    assert (gap.kind, gap.subject, gap.opened_at, gap.owner_email) == (
        FEEDBACK, "opportunity:7", CREATED + timedelta(days=3), SAM.email)


def test_an_opportunity_with_a_source_is_no_gap(rules: Rules) -> None:
    f = facts(person(), opportunities=(opportunity(closed=False),))
    assert gaps(f, rules, "opportunity_without_source", NOW) == []
