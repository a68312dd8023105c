"""The world generator: deterministic, scaled, consistent in time and references, realistic
enough to audit, and planting every problem kind it promises."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from detente.agreement import REFERENCE
from detente.calendars import BusinessCalendar
from detente.sandbox.gen_calendar import FastCalendar
from detente.sandbox.gen_people import make_owners
from detente.sandbox.generate import DEFAULT_SHARES, PROBLEM_KINDS, generate_world, plant_counts
from detente.sandbox.schema import HUBSPOT_OBJECTS, SALESFORCE_OBJECTS
from detente.sandbox.store import World, parse_datetime
from tests.conftest import AS_OF

SIZE = 300


def build(size: int = SIZE, seed: int = 7, dataset: str = "demo", **kw: Any) -> tuple[World, dict[str, Any]]:
    world = World()
    return world, generate_world(world, dataset=dataset, size=size, seed=seed, as_of=AS_OF, **kw)


def digests(world: World) -> dict[str, str]:
    """A hash of every table's content, in insertion order."""
    tables = [r[0] for r in world.query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    out = {}
    for table in tables:
        rows = world.query(f'SELECT * FROM "{table}" ORDER BY rowid')
        out[table] = hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest()
    return out


@pytest.fixture(scope="module")
def demo() -> tuple[World, dict[str, Any]]:
    return build()


@pytest.fixture(scope="module")
def timed() -> tuple[World, dict[str, Any], float]:
    started = time.perf_counter()
    world, manifest = build(2000, seed=3)
    return world, manifest, time.perf_counter() - started


def rows(world: World, obj: str, where: str = "") -> list[dict[str, Any]]:
    return [dict(r) for r in world.query(f'SELECT * FROM "sf_{obj}" {where} ORDER BY rowid')]


def hs_records(world: World, obj: str) -> list[dict[str, Any]]:
    return [{**dict(r), "props": json.loads(r["props"])} for r in world.query(f"SELECT * FROM hs_{obj} ORDER BY id")]


# -- determinism and scale ------------------------------------------------------------------


def test_same_parameters_give_identical_records_and_manifest(demo: tuple[World, dict[str, Any]]) -> None:
    world, manifest = demo
    again_world, again = build()
    assert again == manifest
    assert digests(again_world) == digests(world)


def test_another_seed_gives_another_world(demo: tuple[World, dict[str, Any]]) -> None:
    world, manifest = demo
    other_world, other = build(seed=8)
    assert other["people"] != manifest["people"]
    changed = {t for t, h in digests(other_world).items() if digests(world)[t] != h}
    assert {"sf_Lead", "hs_contacts", "sf_Task"} <= changed


WORLD_HASH = """
import hashlib, json, sys
from datetime import datetime
from detente.sandbox.generate import generate_world
from detente.sandbox.store import World
world = World()
manifest = generate_world(world, dataset="demo", size=150, seed=5, as_of=datetime.fromisoformat(sys.argv[1]))
digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode())
for (table,) in world.query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
    digest.update(repr([tuple(r) for r in world.query(f'SELECT * FROM "{table}" ORDER BY rowid')]).encode())
print(digest.hexdigest())
"""


def test_worlds_do_not_depend_on_the_process() -> None:
    """String hashing differs between processes; no set order may leak into the world."""
    digests = {
        subprocess.run([sys.executable, "-c", WORLD_HASH, AS_OF.isoformat()], capture_output=True, text=True,
                       check=True, env={**os.environ, "PYTHONHASHSEED": hash_seed}).stdout
        for hash_seed in ("1", "2")
    }
    assert len(digests) == 1


def test_manifest_survives_json(demo: tuple[World, dict[str, Any]]) -> None:
    _, manifest = demo
    assert json.loads(json.dumps(manifest)) == manifest


def test_record_counts_scale_with_size(demo: tuple[World, dict[str, Any]]) -> None:
    _, small = demo
    _, big = build(1200)
    for system, obj in (("salesforce", "Lead"), ("hubspot", "contacts"), ("salesforce", "Task"),
                        ("salesforce", "Opportunity"), ("hubspot", "deals")):
        ratio = big["counts"][system][obj] / small["counts"][system][obj]
        assert 3 < ratio < 5.5, (obj, ratio)
    assert len(big["people"]) == 1200


def test_reps_scale_with_size_and_teams_are_complete() -> None:
    """About one sales rep per 150 people, at least a handful; every team is staffed."""
    for size in (0, 3000, 30000):
        owners = make_owners(random.Random(1), __import__("faker").Faker(), size, AS_OF)
        reps = [o for o in [*owners.sdrs, *owners.aes] if o.deactivated is None]
        assert len(reps) >= 5
        if size >= 3000:
            assert size / 200 <= len(reps) <= size / 100
        assert owners.marketing and owners.partners and owners.integration
        assert sum(1 for o in owners.sdrs if o.deactivated) == 1


def test_empty_dataset_has_owners_only_in_both_systems() -> None:
    world, manifest = build(0, dataset="empty")
    counts = manifest["counts"]
    assert all(n == 0 for obj, n in counts["salesforce"].items() if obj != "User")
    assert all(n == 0 for obj, n in counts["hubspot"].items() if obj != "owners")
    users = {r["Email"]: r for r in rows(world, "User")}
    owners = {r["email"]: r for r in world.query("SELECT * FROM hs_owners")}
    assert set(users) == set(owners) and len(users) == len(manifest["owners"]) >= 10
    assert manifest["people"] == [] and manifest["problems"] == []
    for email, user in users.items():
        teams = [t["name"] for t in json.loads(owners[email]["teams"])]
        assert teams == ([user["Department"]] if user["Department"] != "Operations" else [])
        assert bool(owners[email]["archived"]) == (not user["IsActive"])
    assert "integration@detente-sandbox.example" in users
    assert sum(1 for u in users.values() if not u["IsActive"]) == 1
    assert {u["UserType"] for u in users.values() if u["Department"] == "Partner"} == {"PowerPartner"}


# -- planted problems -------------------------------------------------------------------------


def test_every_problem_kind_is_planted_in_a_few_hundred_people(demo: tuple[World, dict[str, Any]]) -> None:
    _, manifest = demo
    assert manifest["problem_counts"] == plant_counts(SIZE, DEFAULT_SHARES)
    assert set(manifest["problem_counts"]) == set(PROBLEM_KINDS)
    assert all(n >= 2 for n in manifest["problem_counts"].values())
    assert Counter(p["kind"] for p in manifest["problems"]) == manifest["problem_counts"]


def test_problems_are_stated_completely(demo: tuple[World, dict[str, Any]]) -> None:
    """Each problem names its records, team, owner, a detail and when it became true."""
    _, manifest = demo
    keys = {p["key"] for p in manifest["people"]}
    for problem in manifest["problems"]:
        assert problem["person"] in keys
        assert problem["salesforce"] or problem["hubspot"]
        assert problem["team"] in {"marketing", "sales"}
        assert problem["owner"]["email"] and problem["detail"]
        assert parse_datetime(problem["true_as_of"]) <= AS_OF


def test_shares_choose_which_problems_are_planted() -> None:
    _, manifest = build(200, shares={"missed_label": 0.05})
    assert {p["kind"] for p in manifest["problems"]} == {"missed_label"}
    assert len(manifest["problems"]) == 10


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown dataset"):
        build(10, dataset="huge")
    with pytest.raises(ValueError, match="unknown problem kinds"):
        build(10, shares={"typo": 0.1})
    with pytest.raises(ValueError, match="timezone-aware"):
        generate_world(World(), dataset="demo", size=10, seed=1, as_of=datetime(2026, 1, 1))


# -- consistency ---------------------------------------------------------------------------------


PLANNED = {("Opportunity", "CloseDate"), ("Campaign", "EndDate")}  # plans may lie ahead


def test_nothing_happens_after_as_of(demo: tuple[World, dict[str, Any]]) -> None:
    world, _ = demo
    for obj in SALESFORCE_OBJECTS.values():
        for f in obj.fields:
            if f.type not in ("datetime", "date") or (obj.name, f.name) in PLANNED:
                continue
            for (value,) in world.query(f'SELECT "{f.name}" FROM "sf_{obj.name}" WHERE "{f.name}" IS NOT NULL'):
                if f.type == "datetime":
                    assert parse_datetime(value) <= AS_OF, (obj.name, f.name, value)
                else:
                    assert date.fromisoformat(value) <= AS_OF.date(), (obj.name, f.name, value)
    for name, hs_obj in HUBSPOT_OBJECTS.items():
        moments = [p.name for p in hs_obj.properties if p.type == "datetime"]
        for r in hs_records(world, name):
            open_deal = name == "deals" and r["props"].get("hs_is_closed") == "false"
            for prop in moments:
                if prop in r["props"] and r["props"][prop] and not (open_deal and prop == "closedate"):
                    assert parse_datetime(r["props"][prop]) <= AS_OF, (name, prop, r["props"][prop])
            assert parse_datetime(r["created_at"]) <= AS_OF and parse_datetime(r["updated_at"]) <= AS_OF
    for (stamp,) in world.query("SELECT timestamp FROM hs_history"):
        assert parse_datetime(stamp) <= AS_OF


def test_audit_fields_follow_field_history(demo: tuple[World, dict[str, Any]]) -> None:
    """Created ≤ every change ≤ last modified, in both systems; stage dates at stage entry."""
    world, _ = demo
    for sf_obj in SALESFORCE_OBJECTS.values():
        if sf_obj.field("LastModifiedDate") is None:
            continue
        for r in rows(world, sf_obj.name):
            assert parse_datetime(r["CreatedDate"]) <= parse_datetime(r["LastModifiedDate"]) <= \
                parse_datetime(r["SystemModstamp"]), (sf_obj.name, r["Id"])
    for table, parent, name in (("LeadHistory", "LeadId", "Lead"), ("OpportunityFieldHistory", "OpportunityId",
                                                                      "Opportunity")):
        latest = {r[0]: r[1] for r in world.query(
            f'SELECT "{parent}", max("CreatedDate") FROM "sf_{table}" GROUP BY "{parent}"')}
        for r in rows(world, name):
            assert parse_datetime(r["CreatedDate"]) <= parse_datetime(latest[r["Id"]]) <= \
                parse_datetime(r["LastModifiedDate"])
    history: dict[int, list[tuple[str, str, str]]] = {}
    for h in world.query("SELECT id, property, value, timestamp FROM hs_history WHERE object = 'contacts'"
                         " ORDER BY timestamp, rowid"):
        history.setdefault(h["id"], []).append((h["property"], h["value"], h["timestamp"]))
    for c in hs_records(world, "contacts"):
        modified = parse_datetime(c["props"]["lastmodifieddate"])
        assert parse_datetime(c["props"]["createdate"]) <= modified
        entered: dict[str, str] = {}
        for prop, value, stamp in history[c["id"]]:
            assert parse_datetime(stamp) <= modified
            if prop == "lifecyclestage":
                entered.setdefault(value, stamp)
        for stage, stamp in entered.items():
            assert c["props"][f"hs_lifecyclestage_{stage}_date"] == stamp
        assert c["props"]["lifecyclestage"] == [v for p, v, _ in history[c["id"]] if p == "lifecyclestage"][-1]


def test_references_point_at_existing_records(demo: tuple[World, dict[str, Any]]) -> None:
    world, _ = demo
    live = {name: {r[0] for r in world.query(f'SELECT "Id" FROM "sf_{name}" WHERE NOT "IsDeleted"')}
            for name in SALESFORCE_OBJECTS}
    every = {name: {r[0] for r in world.query(f'SELECT "Id" FROM "sf_{name}"')} for name in SALESFORCE_OBJECTS}
    checked: Counter[str] = Counter()
    for obj in SALESFORCE_OBJECTS.values():
        history = obj.name.endswith("History")
        for f in obj.fields:
            if f.type != "reference":
                continue
            for r in world.query(f'SELECT "Id", "{f.name}" FROM "sf_{obj.name}" WHERE NOT "IsDeleted"'
                                 f' AND "{f.name}" IS NOT NULL'):
                pool = every if history else live
                assert any(r[1] in pool[target] for target in f.reference_to), (obj.name, f.name, r[1])
                checked[f"{obj.name}.{f.name}"] += 1
    assert checked["Task.WhoId"] and checked["Lead.ConvertedContactId"] and checked["Lead.OwnerId"]
    hs_ids = {name: {r[0] for r in world.query(f"SELECT id FROM hs_{name} WHERE NOT archived")}
              for name in HUBSPOT_OBJECTS}
    owners = {str(r[0]) for r in world.query("SELECT id FROM hs_owners")}
    for r in world.query("SELECT from_object, from_id, to_object, to_id FROM hs_assoc"):
        assert r[1] in hs_ids[r[0]] and r[3] in hs_ids[r[2]], tuple(r)
    links = {"salesforceleadid": "Lead", "salesforcecontactid": "Contact", "salesforceaccountid": "Account",
             "salesforceownerid": "User", "salesforceopportunityid": "Opportunity"}
    for name in HUBSPOT_OBJECTS:
        for rec in hs_records(world, name):
            props = rec["props"]
            if props.get("hubspot_owner_id"):
                assert props["hubspot_owner_id"] in owners
            for prop, target in links.items():
                if props.get(prop):
                    # a contact may still point at a lead deleted since: that is a planted problem
                    assert props[prop] in (every if prop == "salesforceleadid" else live)[target], (name, prop)


def test_connector_copies_mirror_hubspot_engagements(demo: tuple[World, dict[str, Any]]) -> None:
    world, manifest = demo
    copies = manifest["connector_copies"]
    assert copies
    integration = rows(world, "User", "WHERE \"Username\" LIKE 'integration@%'")[0]["Id"]
    tasks = {t["Id"]: t for t in rows(world, "Task")}
    subject = {"tasks": "hs_task_subject", "calls": "hs_call_title", "emails": "hs_email_subject",
               "meetings": "hs_meeting_title"}
    owners = {r["id"]: r["email"] for r in world.query("SELECT id, email FROM hs_owners")}
    users = {r["Id"]: r["Email"] for r in rows(world, "User")}
    for sf_id, target in copies.items():
        task = tasks[sf_id]
        engagement = json.loads(world.query(f"SELECT props FROM hs_{target['type']} WHERE id = ?",
                                            (int(target["id"]),))[0][0])
        assert task["CreatedById"] == integration
        assert task["Subject"] == engagement[subject[target["type"]]]
        assert parse_datetime(task["CompletedDateTime"]) == parse_datetime(engagement["hs_timestamp"])
        assert users[task["OwnerId"]] == owners[int(engagement["hubspot_owner_id"])]


# -- realism ------------------------------------------------------------------------------------


def test_people_move_through_the_funnel_in_both_systems(timed: tuple[World, dict[str, Any], float]) -> None:
    world, manifest, _ = timed
    people = manifest["people"]
    both = [p for p in people if p["salesforce_lead_id"] and p["hubspot_contact_id"]]
    assert len(both) > 0.7 * len(people)
    assert any(p["origin"] == "outbound" and not p["hubspot_contact_id"] for p in people)
    assert any(p["hubspot_contact_id"] and not p["salesforce_lead_id"] and not p["deleted_salesforce_lead_id"]
               for p in people)
    assert any(p["hubspot_merged_ids"] for p in people)
    statuses = Counter(r["Status"] for r in rows(world, "Lead"))
    assert all(statuses[s] > 10 for s in ("Open - Not Contacted", "Marketing Qualified", "Working - Contacted",
                                          "Closed - Converted", "Closed - Not Converted", "Nurture"))
    stages = Counter(r["StageName"] for r in rows(world, "Opportunity"))
    assert stages["Closed Won"] > 20 and stages["Closed Lost"] > 20 and stages["Qualification"] > 0
    departments = {r["Id"]: r["Department"] for r in rows(world, "User")}
    handovers = [r for r in rows(world, "LeadHistory", "WHERE \"Field\" = 'OwnerId'")
                 if departments[r["OldValue"]] == "Marketing" and departments[r["NewValue"]] == "Sales"]
    assert len(handovers) > 200
    lifecycle = Counter(c["props"]["lifecyclestage"] for c in hs_records(world, "contacts"))
    assert all(lifecycle[s] > 10 for s in ("subscriber", "lead", "marketingqualifiedlead", "opportunity",
                                           "customer"))


def test_quality_depends_on_the_offer(timed: tuple[World, dict[str, Any], float]) -> None:
    """Demo requests qualify and win more often than ebook downloads."""
    world, _, _ = timed
    leads = rows(world, "Lead", "WHERE \"Offer__c\" IN ('Demo Request', 'Ebook')")
    won = {r["Id"] for r in rows(world, "Opportunity", "WHERE \"IsWon\"")}

    def rates(offer: str) -> tuple[float, float]:
        mine = [r for r in leads if r["Offer__c"] == offer]
        mql = sum(1 for r in mine if (r["Lead_Score__c"] or 0) >= REFERENCE.mql_min_score) / len(mine)
        wins = sum(1 for r in mine if r["ConvertedOpportunityId"] in won) / len(mine)
        return mql, wins

    demo_mql, demo_won = rates("Demo Request")
    ebook_mql, ebook_won = rates("Ebook")
    assert demo_mql > ebook_mql + 0.2 and demo_won > 2 * ebook_won


def test_two_thousand_people_generate_quickly(timed: tuple[World, dict[str, Any], float]) -> None:
    _, manifest, seconds = timed
    assert len(manifest["people"]) == 2000
    assert seconds < 20, f"generating 2,000 people took {seconds:.1f}s"


def test_fast_calendar_agrees_with_the_business_calendar() -> None:
    """The generator's precomputed calendar gives BusinessCalendar's answers (DST, holidays)."""
    calendar = BusinessCalendar(REFERENCE.calendar)
    fast = FastCalendar(calendar, AS_OF - timedelta(days=400), AS_OF + timedelta(days=40))
    rng = random.Random(5)
    for _ in range(3000):
        start = AS_OF - timedelta(seconds=rng.randint(0, 390 * 86400))
        hours = rng.choice((0.1, 1, 8, 24, rng.uniform(0.01, 90)))
        assert abs((fast.add_hours(start, hours) - calendar.add_hours(start, hours)).total_seconds()) < 0.001
        end = start + timedelta(seconds=rng.randint(0, 20 * 86400))
        assert fast.hours_between(start, end) == pytest.approx(calendar.hours_between(start, end), abs=1e-6)
    assert fast.add_hours(datetime(2026, 11, 25, 21, 0, tzinfo=UTC), 2) == \
        calendar.add_hours(datetime(2026, 11, 25, 21, 0, tzinfo=UTC), 2)  # into Thanksgiving
