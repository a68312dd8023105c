"""The shipped config/rules.yaml encodes exactly the reference agreement in detente/agreement.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detente.agreement import (
    FREE_EMAIL_DOMAINS,
    HUBSPOT_LIFECYCLE,
    INCOMPATIBLE,
    REFERENCE,
    SALESFORCE_LEAD_STATUS,
    STAGES,
)
from detente.rules import Rules, ir, load_rules
from detente.rules.checked import Sla
from detente.rules.durations import Duration
from detente.rules.explain import holds
from tests.rules.helpers import NOW, SHIPPED


@pytest.fixture(scope="module")
def shipped() -> Rules:
    return load_rules(SHIPPED)


def _label_value(rules: Rules, stage: str, system: str) -> str | None:
    label = rules.stages[stage].labels.get(system)
    if label is None:
        return None
    root = label.root
    assert isinstance(root, ir.Compare) and root.op == "=", f"{stage} {system} label is not a simple value match"
    assert isinstance(root.right, ir.Const)
    return str(root.right.value)


def _sla(rules: Rules, sla_id: str) -> Sla:
    return next(s for s in rules.slas if s.id == sla_id)


def test_stage_vocabulary_and_order(shipped: Rules) -> None:
    assert tuple(shipped.stages) == STAGES


def test_hubspot_labels(shipped: Rules) -> None:
    labels = {s: _label_value(shipped, s, "hubspot") for s in STAGES}
    assert {s: v for s, v in labels.items() if v is not None} == HUBSPOT_LIFECYCLE
    for stage in HUBSPOT_LIFECYCLE:
        assert shipped.stages[stage].labels["hubspot"].fields == {"hubspot_lifecyclestage"}


def test_salesforce_labels(shipped: Rules) -> None:
    labels = {s: _label_value(shipped, s, "salesforce") for s in STAGES}
    assert {s: v for s, v in labels.items() if v is not None} == SALESFORCE_LEAD_STATUS
    for stage in SALESFORCE_LEAD_STATUS:
        assert shipped.stages[stage].labels["salesforce"].fields == {"salesforce_status"}


def test_mql_definition_is_score_and_business_domain(shipped: Rules) -> None:
    root = shipped.stages["mql"].definition.root
    assert isinstance(root, ir.And) and len(root.items) == 2
    score, domain = root.items
    assert isinstance(score, ir.Compare) and score.op == ">=" and isinstance(score.left, ir.Field)
    assert score.left.field.name == "score"
    assert isinstance(score.right, ir.Const) and score.right.value == REFERENCE.mql_min_score
    assert isinstance(domain, ir.InList) and domain.negated and isinstance(domain.operand, ir.Field)
    assert domain.operand.field.name == "email_domain"
    assert tuple(v.value for v in domain.values) == FREE_EMAIL_DOMAINS == REFERENCE.free_email_domains


def test_slas_carry_the_agreed_numbers(shipped: Rules) -> None:
    handoff = _sla(shipped, "mql-handoff")
    first = _sla(shipped, "first-contact")
    outcome = _sla(shipped, "outcome")
    assert handoff.within == Duration(REFERENCE.handoff_business_hours, "hours", business=True)
    assert handoff.start.stages == ("mql",) and handoff.stop.team == "sales"
    assert first.within == Duration(REFERENCE.first_contact_business_hours, "hours", business=True)
    assert first.stop.kind == "first_activity"
    assert outcome.within.calendar == timedelta(days=REFERENCE.outcome_window_days)
    require = outcome.require
    assert require is not None
    assert require.before == ("disqualified",)
    assert str(require.condition) == f"activity_count >= {REFERENCE.min_activities_before_disqualify}"


def test_windows_and_calendar(shipped: Rules) -> None:
    grace = shipped.stages["mql"].grace
    assert grace is not None and grace.calendar == timedelta(days=REFERENCE.missed_label_grace_days)
    assert shipped.feedback is not None
    assert shipped.feedback.idle_with_sales.calendar == timedelta(days=REFERENCE.idle_with_sales_days)
    assert shipped.calendars["office"].spec == REFERENCE.calendar
    assert {_sla(shipped, i).calendar for i in ("mql-handoff", "first-contact")} == {"office"}


def test_disagreements_are_the_incompatible_pairs(shipped: Rules) -> None:
    pairs = {(_label_value(shipped, hs, "hubspot"), _label_value(shipped, sf, "salesforce"))
             for hs, sf in shipped.disagreements}
    assert pairs == set(INCOMPATIBLE)


emails = st.one_of(
    st.none(), st.just(""), st.just("no-at-sign"),
    st.builds(lambda user, domain: f"{user}@{domain}", st.sampled_from(["ana", "B.Ob"]),
              st.one_of(st.sampled_from(FREE_EMAIL_DOMAINS), st.sampled_from(["acme.com", "Gmail.com", "corp.io"]))),
)


@settings(max_examples=300, deadline=None)
@given(score=st.one_of(st.none(), st.integers(0, 100), st.floats(0, 100, allow_nan=False)), email=emails)
def test_mql_definition_agrees_with_the_reference(shipped: Rules, score: float | None, email: str | None) -> None:
    """For a person as the normalizer stores it, the rules and Agreement.is_mql agree."""
    domain = email.rsplit("@", 1)[1].strip().lower() if email and "@" in email else None
    record = {"score": score, "email": email or None, "email_domain": domain}
    assert holds(shipped.stages["mql"].definition, record, NOW) == REFERENCE.is_mql(score, email)
