"""Findings open, update, resolve and reopen themselves; unchanged findings write nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from detente.reconcile.facts import Facts, PersonFact
from detente.reconcile.labels import drift
from detente.reconcile.ledger import plan, row_of
from detente.reconcile.model import Finding
from detente.rules import Rules

NOW = datetime(2026, 11, 16, 15, 0, tzinfo=UTC)


def _finding(explanation: str = "HubSpot says mql") -> Finding:
    return Finding("definition_drift", "mql", "person:1", explanation, NOW - timedelta(days=2))


def test_a_new_finding_opens_and_the_same_one_again_writes_nothing() -> None:
    [write] = plan([_finding()], {}, NOW, "v1")
    assert write.event == "opened"
    stored = {write.row["key"]: dict(write.row)}
    assert plan([_finding()], stored, NOW + timedelta(hours=1), "v1") == []


def test_a_changed_explanation_updates_and_keeps_opened_at() -> None:
    stored = {(r := row_of(_finding(), "v1", NOW))["key"]: r}
    [write] = plan([_finding("HubSpot and Salesforce say mql")], stored, NOW, "v1")
    assert write.event == "updated" and write.row["opened_at"] == r["opened_at"]


def test_a_finding_no_longer_found_resolves_and_comes_back_reopened() -> None:
    stored = {(r := row_of(_finding(), "v1", NOW))["key"]: r}
    [write] = plan([], stored, NOW, "v1")
    assert (write.event, write.row["status"], write.row["resolved_at"]) == ("resolved", "resolved", NOW)
    [again] = plan([_finding()], {r["key"]: dict(write.row)}, NOW, "v1")
    assert again.event == "reopened" and again.row["status"] == "open"


def _person(hubspot_labels: frozenset[str], score: float) -> PersonFact:
    return PersonFact(1, "ana@acme.com", None, None, "101", None, False, "marketingqualifiedlead", None, None, None,
                      NOW - timedelta(days=9), NOW - timedelta(days=3), definitions=frozenset({"inquiry", "lead"}),
                      labels={"hubspot": hubspot_labels, "salesforce": frozenset()},
                      values={"score": score, "email": "ana@acme.com", "email_domain": "acme.com"})


def test_drift_explains_the_failing_clause_and_resolves_when_the_label_is_fixed(rules: Rules) -> None:
    facts = Facts({1: _person(frozenset({"mql"}), 35.0)}, {}, {}, [])
    [found] = drift(facts, rules, NOW)
    assert "HubSpot says mql" in found.explanation and "score 35 < 50" in found.explanation
    stored = {found.key: row_of(found, rules.version, NOW)}
    fixed = Facts({1: _person(frozenset({"lead"}), 35.0)}, {}, {}, [])
    [write] = plan(drift(fixed, rules, NOW), stored, NOW, rules.version)
    assert write.event == "resolved"
