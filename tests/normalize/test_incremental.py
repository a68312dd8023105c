"""Change records in a private sandbox, pull over HTTPS, normalize: only what the changes
affect is rewritten, and a run with nothing new changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from detente.normalize.run import normalize
from detente.sandbox.schema import HS_ASSOCIATION_TYPES, SALESFORCE_OBJECTS
from detente.sandbox.server import Sandbox
from tests.conftest import AS_OF
from tests.normalize.support import changed_rows, pull, snapshot

NOW = AS_OF + timedelta(days=1)
LATER = NOW + timedelta(hours=1)
THEN = NOW + timedelta(hours=2)
SF = SALESFORCE_OBJECTS


@pytest.fixture
def private(tmp_path: Path) -> Iterator[Sandbox]:
    """A small demo world of this test's own, to change."""
    sb = Sandbox(state_dir=tmp_path / "sandbox", dataset="demo", size=60, seed=11, as_of=AS_OF)
    sb.start()
    yield sb
    sb.stop()


@pytest.fixture
def ready(private: Sandbox, store: Engine) -> tuple[Sandbox, Engine]:
    """The private world pulled and normalized once."""
    pull(store, private, NOW)
    normalize(store, now=NOW)
    return private, store


def _person(engine: Engine, system: str, object_name: str, record_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT p.* FROM people p JOIN person_records r ON r.person_id = p.id "
            "WHERE r.system = :s AND r.object = :o AND r.record_id = :i"), {"s": system, "o": object_name,
                                                                           "i": record_id}).one_or_none()


def _pick(sb: Sandbox, **want: bool) -> list[dict[str, Any]]:
    """Manifest people with (True) or without (False) a lead, contact or HubSpot contact, unflagged."""
    fields = {"lead": "salesforce_lead_id", "contact": "salesforce_contact_id", "hubspot": "hubspot_contact_id"}
    planted = {p["person"] for p in sb.manifest()["problems"]}
    return [p for p in sb.manifest()["people"] if p["key"] not in planted and not p["hubspot_merged_ids"]
            and all(bool(p[fields[k]]) == v for k, v in want.items())]


def _other_user(sb: Sandbox, not_this: str) -> str:
    return str(next(o["salesforce_user_id"] for o in sb.manifest()["owners"]
                    if o["salesforce_user_id"] != not_this and o["active"] and o["team"] == "Sales"))


def test_only_the_people_a_change_affects_are_rewritten(ready: tuple[Sandbox, Engine]) -> None:
    sb, engine = ready
    before = snapshot(engine)
    x = _pick(sb, lead=True, contact=False, hubspot=True)
    staged, worked, called = x[0], x[1], x[2]
    sb.world.hs_update("contacts", int(staged["hubspot_contact_id"]), {"lifecyclestage": "salesqualifiedlead"},
                       LATER)
    sb.world.sf_update(SF["Lead"], worked["salesforce_lead_id"], {"Status": "Working - Contacted"}, LATER)
    owner = _person(engine, "hubspot", "contacts", called["hubspot_contact_id"])
    [call] = sb.world.hs_insert("calls", [{"hs_timestamp": LATER.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                                           "hs_call_title": "Follow-up call", "hs_call_status": "COMPLETED",
                                           "hubspot_owner_id": "20002"}], LATER)
    sb.world.hs_associate([("calls", call, "contacts", int(called["hubspot_contact_id"]),
                            HS_ASSOCIATION_TYPES[("calls", "contacts")])])
    pull(engine, sb, THEN)
    normalize(engine, now=THEN)
    after = snapshot(engine)

    ids = {str(_person(engine, *k).id) for k in (("hubspot", "contacts", staged["hubspot_contact_id"]),
                                                ("salesforce", "Lead", worked["salesforce_lead_id"]),
                                                ("hubspot", "contacts", called["hubspot_contact_id"]))}
    assert changed_rows(before, after, "people") == ids
    assert _person(engine, "hubspot", "contacts", staged["hubspot_contact_id"]).hubspot_lifecyclestage == \
        "salesqualifiedlead"
    worked_now = _person(engine, "salesforce", "Lead", worked["salesforce_lead_id"])
    assert worked_now.salesforce_status == "Working - Contacted"
    assert _person(engine, "hubspot", "contacts", called["hubspot_contact_id"]).activity_count == \
        owner.activity_count + 1
    new_transitions = [after["transitions"][k] for k in changed_rows(before, after, "transitions")]
    assert len(new_transitions) == 2 and all('"history"' in t for t in new_transitions)
    assert len(changed_rows(before, after, "activities")) == 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM raw_records WHERE dirty")).scalar() == 0

    normalize(engine, now=THEN + timedelta(minutes=1))
    assert snapshot(engine) == after


def test_a_status_change_without_history_is_observed(ready: tuple[Sandbox, Engine]) -> None:
    """Contacts keep no field history: an owner change is seen between two pulls."""
    sb, engine = ready
    person = _pick(sb, contact=True)[0]
    contact_id = person["salesforce_contact_id"]
    old = sb.world.sf_get(SF["Contact"], contact_id)
    assert old is not None
    new_owner = _other_user(sb, old["OwnerId"])
    sb.world.sf_update(SF["Contact"], contact_id, {"OwnerId": new_owner}, LATER)
    pull(engine, sb, THEN)
    normalize(engine, now=THEN)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM transitions WHERE record_id = :c"), {"c": contact_id}).all()
    assert [(r.field, r.from_value, r.to_value, r.source, str(r.at)[:19]) for r in rows] == [
        ("OwnerId", old["OwnerId"], new_owner, "observed", LATER.strftime("%Y-%m-%d %H:%M:%S"))]
    assert rows[0].person_id == _person(engine, "salesforce", "Contact", contact_id).id


def test_a_merge_moves_the_merged_contact_and_its_activities_to_the_survivor(ready: tuple[Sandbox, Engine]) -> None:
    sb, engine = ready
    alone = _pick(sb, lead=False, contact=False, hubspot=True)
    keep, gone = alone[0]["hubspot_contact_id"], alone[1]["hubspot_contact_id"]
    survivor = _person(engine, "hubspot", "contacts", keep)
    dissolved = _person(engine, "hubspot", "contacts", gone)
    sb.world.hs_merge("contacts", int(keep), int(gone), LATER)
    pull(engine, sb, THEN)
    normalize(engine, now=THEN)
    assert _person(engine, "hubspot", "contacts", gone).id == survivor.id
    with engine.connect() as conn:
        linked_by = conn.execute(text("SELECT linked_by FROM person_records WHERE record_id = :g"),
                                 {"g": gone}).scalar()
        old_row = conn.execute(text("SELECT * FROM people WHERE id = :i"), {"i": dissolved.id}).one()
    assert linked_by == "merge"
    assert old_row.deleted and old_row.hubspot_contact_id is None
    assert _person(engine, "hubspot", "contacts", keep).activity_count == \
        survivor.activity_count + dissolved.activity_count


def test_a_new_lead_links_to_its_hubspot_contact_by_email(ready: tuple[Sandbox, Engine]) -> None:
    sb, engine = ready
    person = _pick(sb, lead=False, contact=False, hubspot=True)[0]
    before = _person(engine, "hubspot", "contacts", person["hubspot_contact_id"])
    [lead_id] = sb.world.sf_insert(SF["Lead"], [{"LastName": "Later", "Company": "Acme",
                                                 "Email": person["email"].upper(), "Status": "Open - Not Contacted"}],
                                   LATER)
    pull(engine, sb, THEN)
    normalize(engine, now=THEN)
    after = _person(engine, "salesforce", "Lead", lead_id)
    assert (after.id, after.salesforce_lead_id, after.hubspot_contact_id, after.identity_conflict) == (
        before.id, lead_id, person["hubspot_contact_id"], None)
    with engine.connect() as conn:
        how = {r.record_id: r.linked_by for r in conn.execute(
            text("SELECT record_id, linked_by FROM person_records WHERE person_id = :p"), {"p": after.id})}
    assert how == {lead_id: "self", person["hubspot_contact_id"]: "email"}


def test_deleting_a_lead_unlinks_it_and_flags_the_contact_that_points_at_it(ready: tuple[Sandbox, Engine]) -> None:
    sb, engine = ready
    person = _pick(sb, lead=True, contact=False, hubspot=True)[0]
    before = _person(engine, "hubspot", "contacts", person["hubspot_contact_id"])
    sb.world.sf_delete(SF["Lead"], person["salesforce_lead_id"], LATER)
    pull(engine, sb, THEN)
    normalize(engine, now=THEN)
    after = _person(engine, "hubspot", "contacts", person["hubspot_contact_id"])
    assert (after.id, after.salesforce_lead_id) == (before.id, None)
    assert "which is deleted" in after.identity_conflict
    assert _person(engine, "salesforce", "Lead", person["salesforce_lead_id"]) is None
