"""The demo world, pulled over HTTPS and normalized, against the generator's ground truth."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from sqlalchemy import text

from detente.normalize.run import normalize
from tests.normalize.conftest import NOW, World
from tests.normalize.support import snapshot

Key = tuple[str, str, str]


def _rows(world: World, sql: str) -> list[Any]:
    with world.engine.connect() as conn:
        return list(conn.execute(text(sql)))


def _person_of(world: World) -> dict[Key, int]:
    return {(r.system, r.object, r.record_id): r.person_id for r in _rows(world, "SELECT * FROM person_records")}


def _records(p: dict[str, Any]) -> list[Key]:
    keys: list[Key] = []
    if p["salesforce_lead_id"]:
        keys.append(("salesforce", "Lead", p["salesforce_lead_id"]))
    if p["salesforce_contact_id"]:
        keys.append(("salesforce", "Contact", p["salesforce_contact_id"]))
    if p["hubspot_contact_id"]:
        keys.append(("hubspot", "contacts", p["hubspot_contact_id"]))
    return keys


def _manifest_people(world: World) -> dict[str, int]:
    """Manifest person key → people.id (each person's records all sit in one row)."""
    person_of = _person_of(world)
    out: dict[str, int] = {}
    for p in world.manifest["people"]:
        ids = {person_of.get(k) for k in _records(p)}
        assert len(ids) == 1 and None not in ids, (p["key"], ids)
        found = ids.pop()
        assert found is not None
        out[p["key"]] = found
    return out


def test_every_manifest_person_is_one_row_holding_exactly_its_records(world: World) -> None:
    people = {r.id: r for r in _rows(world, "SELECT * FROM people WHERE NOT deleted")}
    mapped = _manifest_people(world)
    assert len(set(mapped.values())) == len(mapped), "two manifest people share a row"
    for p in world.manifest["people"]:
        row = people[mapped[p["key"]]]
        assert (row.salesforce_lead_id, row.salesforce_contact_id, row.hubspot_contact_id) == (
            p["salesforce_lead_id"], p["salesforce_contact_id"], p["hubspot_contact_id"]), p["key"]


def test_rows_beyond_the_manifest_people_are_the_planted_duplicates(world: World) -> None:
    mapped = set(_manifest_people(world).values())
    extra = {r.id for r in _rows(world, "SELECT id FROM people WHERE NOT deleted")} - mapped
    person_of = _person_of(world)
    duplicates = {person_of[("salesforce", "Lead", x)] for p in world.manifest["people"]
                  for x in p["duplicate_salesforce_lead_ids"]}
    duplicates |= {person_of[("hubspot", "contacts", x)] for p in world.manifest["people"]
                   for x in p["duplicate_hubspot_contact_ids"]}
    assert extra == duplicates


def test_merged_away_hubspot_contacts_resolve_to_the_survivor(world: World) -> None:
    person_of = _person_of(world)
    merged = [(p, m) for p in world.manifest["people"] for m in p["hubspot_merged_ids"]]
    assert merged, "the demo world should hold a merged contact"
    for p, merged_id in merged:
        survivor = ("hubspot", "contacts", p["hubspot_contact_id"])
        assert person_of[("hubspot", "contacts", merged_id)] == person_of[survivor]
    linked_by = {r.record_id: r.linked_by for r in _rows(world, "SELECT * FROM person_records")}
    assert all(linked_by[m] == "merge" for _, m in merged)


def test_planted_identity_problems_are_flagged_and_nothing_else_is(world: World) -> None:
    person_of = _person_of(world)
    mapped = _manifest_people(world)
    expected: dict[int, str] = {}
    by_key = {p["key"]: p for p in world.manifest["people"]}
    for problem in world.manifest["problems"]:
        p = by_key[problem["person"]]
        kind = problem["kind"]
        if kind == "duplicate_lead_email":
            expected[mapped[p["key"]]] = kind
            for dup in p["duplicate_salesforce_lead_ids"]:
                expected[person_of[("salesforce", "Lead", dup)]] = kind
        elif kind == "hubspot_contacts_share_lead":
            expected[mapped[p["key"]]] = kind
            for dup in p["duplicate_hubspot_contact_ids"]:
                expected[person_of[("hubspot", "contacts", dup)]] = kind
        elif kind in ("hubspot_lead_deleted", "hubspot_lead_converted"):
            expected[mapped[p["key"]]] = kind
    flagged = {r.id: r.identity_conflict
               for r in _rows(world, "SELECT * FROM people WHERE identity_conflict IS NOT NULL")}
    assert set(flagged) == set(expected)
    words = {"duplicate_lead_email": "one email address is on Salesforce leads",
             "hubspot_contacts_share_lead": "all claim Salesforce lead",
             "hubspot_lead_deleted": "which is deleted", "hubspot_lead_converted": "which is converted"}
    for person_id, kind in expected.items():
        assert words[kind] in flagged[person_id], (kind, flagged[person_id])


def test_the_deleted_lead_a_contact_points_at_belongs_to_nobody(world: World) -> None:
    person_of = _person_of(world)
    deleted = [p["deleted_salesforce_lead_id"] for p in world.manifest["people"] if p["deleted_salesforce_lead_id"]]
    assert deleted
    assert all(("salesforce", "Lead", x) not in person_of for x in deleted)


def test_opportunities_belong_to_the_right_person_and_deal(world: World) -> None:
    mapped = _manifest_people(world)
    opportunities = _rows(world, "SELECT * FROM opportunities WHERE NOT deleted")
    by_sf = {o.salesforce_id: o for o in opportunities if o.salesforce_id}
    by_deal = {o.hubspot_deal_id: o for o in opportunities if o.hubspot_deal_id}
    checked = 0
    for p in world.manifest["people"]:
        sf_id, deal_id = p["salesforce_opportunity_id"], p["hubspot_deal_id"]
        if not sf_id and not deal_id:
            continue
        row = by_sf[sf_id] if sf_id else by_deal[deal_id]
        assert (row.salesforce_id, row.hubspot_deal_id, row.person_id) == (sf_id, deal_id, mapped[p["key"]]), p["key"]
        checked += 1
    assert checked == len(opportunities)


def test_connector_copies_are_marked_exactly_as_the_manifest_says(world: World) -> None:
    activities = _rows(world, "SELECT * FROM activities")
    by_id = {a.id: a for a in activities}
    found = {a.record_id: {"type": by_id[a.copy_of].object, "id": by_id[a.copy_of].record_id}
             for a in activities if a.copy_of is not None}
    assert found == world.manifest["connector_copies"]
    assert all(a.system == "salesforce" and a.object == "Task" for a in activities if a.copy_of is not None)


def test_activity_counts_count_each_real_activity_once(world: World) -> None:
    """Per person: Salesforce tasks and events on its lead or contact plus HubSpot engagements
    on its contact, less the connector's copies (counted from the raw records)."""
    mapped = _manifest_people(world)
    copies = set(world.manifest["connector_copies"])
    expected: Counter[int] = Counter()
    owner: dict[tuple[str, str], int] = {}
    for p in world.manifest["people"]:
        for system, _, record_id in _records(p):
            owner[(system, record_id)] = mapped[p["key"]]
    for r in _rows(world, "SELECT system, object, record_id, data FROM raw_records WHERE NOT deleted AND object IN "
                          "('Task', 'Event', 'tasks', 'calls', 'emails', 'meetings')"):
        data = r.data if isinstance(r.data, dict) else json.loads(r.data)
        if r.system == "salesforce":
            who = owner.get(("salesforce", data.get("WhoId") or ""))
            if who is not None and r.record_id not in copies:
                expected[who] += 1
        else:
            contacts = data["associations"]["contacts"]
            who = owner.get(("hubspot", contacts[0])) if contacts else None
            if who is not None:
                expected[who] += 1
    counts = {r.id: r.activity_count for r in _rows(world, "SELECT id, activity_count FROM people WHERE NOT deleted")}
    assert {pid: n for pid, n in counts.items() if n} == dict(expected)


def test_first_and_last_activity_times_skip_the_copies(world: World) -> None:
    rows = _rows(world, "SELECT p.id, p.first_activity_at AS first, p.last_activity_at AS last, "
                        "min(a.occurred_at) AS lo, max(a.occurred_at) AS hi FROM people p JOIN activities a "
                        "ON a.person_id = p.id AND a.copy_of IS NULL AND NOT a.deleted GROUP BY p.id, "
                        "p.first_activity_at, p.last_activity_at")
    assert rows
    for r in rows:
        assert (str(r.first)[:19], str(r.last)[:19]) == (str(r.lo)[:19], str(r.hi)[:19])


def test_owners_are_one_row_per_email_across_both_systems(world: World) -> None:
    owners = {r.email: r for r in _rows(world, "SELECT * FROM owners")}
    assert len(owners) == len(world.manifest["owners"])
    for o in world.manifest["owners"]:
        row = owners[o["email"]]
        assert (row.salesforce_user_id, row.hubspot_owner_id, row.team, bool(row.active)) == (
            o["salesforce_user_id"], o["hubspot_owner_id"], o["team"], o["active"]), o["email"]


def test_people_take_owners_campaigns_and_fields_by_precedence(world: World) -> None:
    rows = _rows(world, "SELECT p.*, o.salesforce_user_id AS sf_owner, h.hubspot_owner_id AS hs_owner "
                        "FROM people p LEFT JOIN owners o ON o.id = p.salesforce_owner_id "
                        "LEFT JOIN owners h ON h.id = p.hubspot_owner_id WHERE NOT p.deleted")
    raw = {(r.system, r.record_id): (r.data if isinstance(r.data, dict) else json.loads(r.data))
           for r in _rows(world, "SELECT system, record_id, data FROM raw_records WHERE object IN "
                                 "('Lead', 'Contact', 'contacts')")}
    for r in rows:
        hs = raw[("hubspot", r.hubspot_contact_id)]["properties"] if r.hubspot_contact_id else {}
        lead = raw[("salesforce", r.salesforce_lead_id)] if r.salesforce_lead_id else {}
        contact = raw[("salesforce", r.salesforce_contact_id)] if r.salesforce_contact_id else {}
        assert r.hubspot_lifecyclestage == hs.get("lifecyclestage")
        assert r.salesforce_status == lead.get("Status")
        assert r.hs_owner == hs.get("hubspot_owner_id")
        assert r.sf_owner == (contact.get("OwnerId") or lead.get("OwnerId"))
        score = hs.get("hubspotscore") or contact.get("Lead_Score__c") or lead.get("Lead_Score__c")
        assert r.score == (float(score) if score is not None else None)
        email = (contact.get("Email") or lead.get("Email") or hs.get("email") or "").lower() or None
        assert (r.email, r.email_domain) == (email, email.rpartition("@")[2] if email else None)
    with_campaign = sum(1 for r in rows if r.campaign_id is not None)
    assert with_campaign > len(rows) // 3


def test_transitions_hold_the_history_of_each_person(world: World) -> None:
    person_of = _person_of(world)
    history = [json.loads(r.data) if isinstance(r.data, str) else r.data
               for r in _rows(world, "SELECT data FROM raw_records WHERE object = 'LeadHistory' AND NOT deleted")]
    status = [h for h in history if h["Field"] == "Status"]
    stored = {(r.record_id, r.to_value, str(r.at)[:19]): r for r in _rows(
        world, "SELECT * FROM transitions WHERE system = 'salesforce' AND field = 'Status'")}
    assert status
    for h in status:
        at = h["CreatedDate"][:19].replace("T", " ")
        row = stored[(h["LeadId"], h["NewValue"], at)]
        assert (row.from_value, row.source, row.person_id) == (
            h["OldValue"], "history", person_of.get(("salesforce", "Lead", h["LeadId"])))
    lifecycle = _rows(world, "SELECT * FROM transitions WHERE field = 'lifecyclestage'")
    assert lifecycle and all(r.person_id is not None for r in lifecycle)
    deals = _rows(world, "SELECT * FROM transitions WHERE field IN ('dealstage', 'StageName')")
    assert deals and all(r.opportunity_id is not None for r in deals)


def test_a_run_with_nothing_dirty_changes_nothing(world: World) -> None:
    before = snapshot(world.engine)
    report = normalize(world.engine, now=NOW)
    assert not report.counts
    assert snapshot(world.engine) == before


def test_a_full_rebuild_derives_the_same_model_with_the_same_ids(world: World) -> None:
    before = snapshot(world.engine)
    normalize(world.engine, now=NOW, full=True)
    assert snapshot(world.engine) == before
