# ruff: noqa: F811 - the fixtures are imported from hs_support
"""HubSpot full pulls store exactly what the portal serves, at the documented call cost;
bad credentials and bad records are reported the way an operator can act on."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from detente.connectors.base import Record, Reject
from detente.connectors.hs_records import PropertyDef, build, safe_payload, value_problem
from detente.connectors.hubspot import SPECS, HubSpotConnector
from detente.errors import AuthError
from detente.pull import PullReport, pull
from detente.sandbox.server import Sandbox
from tests.connectors.hs_support import (  # noqa: F401 - fixtures
    T0,
    assert_store_matches,
    connector,
    contacts,
    hs,
    hs_server,
    insert,
    quarantined,
    settings,
    stored_rows,
)


def full_pull(engine: Engine, sb: Sandbox, **overrides: Any) -> PullReport:
    with connector(sb, **overrides) as c:
        return pull(engine, c, now=datetime.now(UTC), full=True)


def test_a_full_pull_stores_every_object_as_the_sandbox_serves_it(store: Engine, sandbox: Sandbox) -> None:
    """Counts, property values, associations and merges of every object match the portal."""
    report = full_pull(store, sandbox)
    assert report.stopped is None
    assert_store_matches(store, sandbox)
    assert quarantined(store) == {}
    counts = sandbox.world.counts()["hubspot"]
    for obj in SPECS:
        live = [r for r in stored_rows(store, obj).values() if not r.deleted]
        assert len(live) == counts[obj] > 0, obj


def test_owners_include_archived_ones_and_pipelines_carry_their_stages(store: Engine, sandbox: Sandbox) -> None:
    full_pull(store, sandbox)
    owners = stored_rows(store, "owners")
    expected = {str(r["id"]): bool(r["archived"]) for r in sandbox.world.query("SELECT id, archived FROM hs_owners")}
    assert {k: v.data["archived"] for k, v in owners.items()} == expected
    assert any(expected.values()), "the demo world has an owner who left"
    pipeline = stored_rows(store, "pipelines")["default"].data
    assert pipeline["objectType"] == "deals"
    assert "closedwon" in [s["id"] for s in pipeline["stages"]]


def test_contacts_and_deals_carry_stage_and_owner_history(store: Engine, sandbox: Sandbox) -> None:
    full_pull(store, sandbox)
    for obj, prop in (("contacts", "lifecyclestage"), ("contacts", "hubspot_owner_id"), ("deals", "dealstage")):
        rows = [r for r in stored_rows(store, obj).values() if not r.deleted]
        checked = 0
        for row in rows:
            truth = sandbox.world.hs_history(obj, int(row.record_id), prop)
            if not truth:
                continue
            got = [(e["value"], e["timestamp"], e["sourceType"]) for e in row.data["history"][prop]]
            assert got == truth, f"{obj} {row.record_id} {prop}"
            checked += 1
        assert checked > 0, f"no {obj} with {prop} history"


def test_merged_away_contacts_are_deletions_that_point_at_their_survivor(store: Engine, sandbox: Sandbox) -> None:
    full_pull(store, sandbox)
    merged = sandbox.world.tuples("SELECT old_id, new_id FROM hs_merged WHERE object = 'contacts'")
    assert merged, "the demo world merges some duplicates"
    rows = stored_rows(store, "contacts")
    for old, new in merged:
        assert rows[str(old)].deleted and rows[str(old)].merged_into == str(new)


def test_a_full_pull_costs_the_documented_calls_and_a_second_one_writes_nothing(
    store: Engine, sandbox: Sandbox
) -> None:
    """Per object: 1 properties call, N/200 searches, N/100 history reads (contacts, deals),
    one associations read per linked object type (N <= 1,000); owners 2 lists, pipelines 1."""
    full_pull(store, sandbox)
    again = full_pull(store, sandbox)
    counts = sandbox.world.counts()["hubspot"]
    for item in again.objects:
        assert (item.inserted, item.updated, item.deleted) == (0, 0, 0), item.object
        if item.object in SPECS:
            n, spec = counts[item.object], SPECS[item.object]
            expected = 1 + math.ceil(n / 200) + (math.ceil(n / 100) if spec.history else 0) + len(spec.associations)
            assert item.calls == expected, item.object
    calls = {i.object: i.calls for i in again.objects}
    assert calls["owners"] == 2 and calls["pipelines"] == 1


def test_a_rejected_token_is_an_auth_error_that_says_what_to_set(store: Engine, hs: Sandbox) -> None:
    wrong = "pat-na1-00000000-1111-2222-3333-444444444444"
    with HubSpotConnector(settings(hs, token=wrong)) as c, pytest.raises(AuthError) as caught:
        pull(store, c, now=T0)
    message = str(caught.value)
    assert "401" in message and "DETENTE_HUBSPOT__TOKEN" in message
    assert wrong not in message and hs.credentials.hs_token not in message


def test_a_missing_token_is_an_auth_error_before_any_call(hs: Sandbox) -> None:
    with pytest.raises(AuthError, match="DETENTE_HUBSPOT__TOKEN"):
        HubSpotConnector(settings(hs, token=None))
    assert hs.hs_control.total_calls == 0


def test_bad_records_are_quarantined_with_the_property_and_the_page_goes_on(store: Engine, hs: Sandbox) -> None:
    at = T0 - timedelta(hours=1)
    good = insert(hs, "contacts", contacts(3), at)
    bad = {
        "hubspotscore": {"hubspotscore": "lots"},
        "lifecyclestage": {"lifecyclestage": "bogus"},
        "firstname": {"firstname": "Ann\x00Marie"},
        "company": {"company": "x" * 70_000},
        "notes_last_contacted": {"notes_last_contacted": "yesterday"},
    }
    ids = {}
    for i, (prop, values) in enumerate(bad.items()):
        ids[prop] = insert(hs, "contacts", contacts(1, 100 + i, **values), at)[0]
    typed = insert(hs, "contacts", contacts(1, 200), at)[0]
    stamp = insert(hs, "contacts", contacts(1, 201), at)[0]
    with hs.world.transaction() as c:
        c.execute("UPDATE hs_contacts SET props = json_set(props, '$.jobtitle', json('[1, 2]')) WHERE id = ?", (typed,))
        c.execute("UPDATE hs_contacts SET props = json_set(props, '$.lastmodifieddate', 'soon') WHERE id = ?", (stamp,))
    ids["jobtitle"], ids["lastmodifieddate"] = typed, stamp
    report = full_pull(store, hs)
    rows = stored_rows(store, "contacts")
    assert {k for k, r in rows.items() if not r.deleted} == {str(i) for i in good}
    held = quarantined(store)
    assert set(held) == {str(i) for i in ids.values()}
    for prop, rid in ids.items():
        reason = held[str(rid)].reason
        assert reason.startswith(f"{prop}:"), reason
        for secret in ("lots", "bogus", "Ann", "xxxx", "yesterday", "soon"):
            assert secret not in reason
    assert "\x00" not in json.dumps(held[str(ids["firstname"])].payload)
    contacts_report = next(o for o in report.objects if o.object == "contacts")
    assert contacts_report.quarantined == len(ids)


def test_a_record_without_an_id_is_rejected_under_a_stable_key() -> None:
    raw = {"properties": {"lastmodifieddate": "2026-11-17T10:00:00.000Z", "email": "a@b.example"}}
    first = build("contacts", raw, modified="lastmodifieddate", defs={}, max_chars=100)
    second = build("contacts", dict(raw), modified="lastmodifieddate", defs={}, max_chars=100)
    assert isinstance(first, Reject) and isinstance(second, Reject)
    assert first.reason == "id: missing" and first.id == second.id and first.id.startswith("no-id-")


def test_values_are_checked_against_their_property_definitions() -> None:
    number = PropertyDef("amount", "number", "number", None)
    day = PropertyDef("birthday", "date", "date", None)
    stage = PropertyDef("stage", "enumeration", "select", frozenset({"lead", "customer"}))
    many = PropertyDef("tags", "enumeration", "checkbox", frozenset({"a", "b"}))
    assert value_problem(number, "12.5", 10) is None
    assert value_problem(number, "NaN", 10) == "is not a finite number"
    assert value_problem(number, 3, 10) is None
    assert value_problem(day, "2026-02-30", 10) == "is not a calendar date"
    assert value_problem(day, "2026-02-03", 10) is None
    assert value_problem(stage, "customer", 10) is None
    assert value_problem(stage, "other", 10) == "is not one of the 2 options the property defines"
    assert value_problem(many, "a;b", 10) is None
    assert value_problem(None, "abc" * 5, 10) == "is 15 characters long, more than the 10 allowed"
    assert value_problem(None, {"a": 1}, 10) == "holds a JSON object, not a value"
    assert value_problem(None, True, 10) == "is a JSON bool, expected a string as a string"


def test_quarantined_payloads_fit_any_store() -> None:
    cut = safe_payload({"a": "x\x00y", "b": ["z" * 5000], "c": float("inf")})
    assert cut["a"] == "x\ufffdy" and cut["c"] == "inf"
    assert len(cut["b"][0]) < 2100 and cut["b"][0].endswith("5000 characters in all]")


def test_a_good_record_keeps_what_hubspot_returned() -> None:
    raw = {
        "id": "7", "properties": {"lastmodifieddate": "2026-11-17T10:00:00.000Z", "hs_merged_object_ids": "3;5"},
        "createdAt": "2026-11-01T00:00:00.000Z", "updatedAt": "2026-11-17T10:00:00.000Z", "archived": False,
        "propertiesWithHistory": {"lifecyclestage": [{"value": "lead", "timestamp": "2026-11-01T00:00:00.000Z",
                                                      "sourceType": "CRM_UI"}]},
    }
    record = build("contacts", raw, modified="lastmodifieddate", defs={}, max_chars=100,
                   associations={"deals": ["9"], "companies": []})
    assert isinstance(record, Record)
    assert record.modified_at == datetime(2026, 11, 17, 10, tzinfo=UTC)
    assert record.data["associations"] == {"companies": [], "deals": ["9"]}
    assert record.data["history"]["lifecyclestage"][0]["value"] == "lead"
    assert "propertiesWithHistory" not in record.data
