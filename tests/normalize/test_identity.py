"""The linking rules, case by case: ids first, then conversion, then email; conflicts flagged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from detente.normalize.batches import Key
from detente.normalize.identity import Cluster, assign_person_ids, link_people
from detente.normalize.links import Link

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def lead(rid: str, email: str | None = None, **kw: Any) -> Link:
    return Link(Key("salesforce", "Lead", rid), email=email, created_at=kw.pop("created_at", T0), **kw)


def contact(rid: str, email: str | None = None, **kw: Any) -> Link:
    return Link(Key("salesforce", "Contact", rid), email=email, created_at=kw.pop("created_at", T0), **kw)


def hubspot(rid: str, email: str | None = None, **kw: Any) -> Link:
    return Link(Key("hubspot", "contacts", rid), email=email, created_at=kw.pop("created_at", T0), **kw)


def people(*links: Link) -> list[tuple[str | None, str | None, str | None, bool]]:
    """(lead, contact, hubspot contact, flagged) per person, sorted."""
    return sorted(((c.lead, c.contact, c.hubspot, bool(c.conflicts)) for c in link_people(links)),
                  key=lambda t: tuple(x or "" for x in t[:3]))


def only(clusters: list[Cluster], record_id: str) -> Cluster:
    return next(c for c in clusters if any(k.record_id == record_id for k in c.members))


def test_hubspot_ids_link_before_email() -> None:
    """salesforceleadid wins over an email that matches another lead."""
    found = people(lead("L1", "a@x.com"), lead("L2", "b@x.com"), hubspot("1", "b@x.com", ref_lead="L1"))
    assert ("L1", None, "1", True) in found  # linked by id; the email is on L2 as well
    assert ("L2", None, None, True) in found


def test_salesforcecontactid_wins_over_salesforceleadid() -> None:
    clusters = link_people([lead("L1", "a@x.com"), contact("C1", "a@x.com"),
                            hubspot("1", "a@x.com", ref_lead="L1", ref_contact="C1")])
    person = only(clusters, "1")
    assert (person.contact, person.members[Key("hubspot", "contacts", "1")]) == ("C1", "salesforce id")
    assert any("different people" in x for x in person.conflicts)


def test_conversion_puts_the_lead_with_its_contact() -> None:
    clusters = link_people([lead("L1", "a@x.com", ref_contact="C1"), contact("C1", "a@x.com"),
                            hubspot("1", "a@x.com", ref_lead="L1", ref_contact="C1")])
    assert len(clusters) == 1
    c = clusters[0]
    assert (c.lead, c.contact, c.hubspot, c.conflicts) == ("L1", "C1", "1", [])
    assert c.members[Key("salesforce", "Lead", "L1")] == "conversion"


def test_email_links_records_no_id_links() -> None:
    clusters = link_people([lead("L1", "a@x.com"), hubspot("1", "A@x.com".lower())])
    assert len(clusters) == 1
    assert clusters[0].members == {Key("salesforce", "Lead", "L1"): "self", Key("hubspot", "contacts", "1"): "email"}


def test_an_email_on_several_leads_links_nothing_and_flags_all() -> None:
    found = people(lead("L1", "a@x.com"), lead("L2", "a@x.com"), hubspot("1", "a@x.com"))
    assert found == [(None, None, "1", True), ("L1", None, None, True), ("L2", None, None, True)]


def test_two_hubspot_contacts_claiming_one_lead_are_both_flagged() -> None:
    """The one whose email the lead has keeps the lead, though it is the newer one."""
    clusters = link_people([lead("L1", "a@x.com"),
                            hubspot("1", "other@gmail.com", ref_lead="L1", created_at=T0),
                            hubspot("2", "a@x.com", ref_lead="L1", created_at=T0 + timedelta(days=3))])
    assert only(clusters, "L1").hubspot == "2"
    assert only(clusters, "1").lead is None
    for c in clusters:
        assert c.conflicts == ["HubSpot contacts 1, 2 all claim Salesforce lead L1"]


def test_without_an_email_match_the_older_claimant_keeps_the_lead() -> None:
    clusters = link_people([lead("L1", "a@x.com"), hubspot("5", "p@gmail.com", ref_lead="L1", created_at=T0),
                            hubspot("3", "q@gmail.com", ref_lead="L1", created_at=T0 + timedelta(hours=1))])
    assert only(clusters, "L1").hubspot == "5"


def test_a_contact_pointing_at_a_deleted_lead_stays_alone_and_flagged() -> None:
    clusters = link_people([lead("L1", "a@x.com", deleted=True), hubspot("1", "a@x.com", ref_lead="L1")])
    assert len(clusters) == 1
    c = clusters[0]
    assert (c.lead, c.hubspot) == (None, "1")
    assert c.conflicts == ["HubSpot contact 1 points at Salesforce lead L1, which is deleted"]


def test_a_contact_pointing_at_a_converted_lead_links_through_the_conversion_and_is_flagged() -> None:
    clusters = link_people([lead("L1", "a@x.com", ref_contact="C1"), contact("C1", "a@x.com"),
                            hubspot("1", "a@x.com", ref_lead="L1")])
    assert len(clusters) == 1
    c = clusters[0]
    assert (c.lead, c.contact, c.hubspot) == ("L1", "C1", "1")
    assert c.conflicts == ["HubSpot contact 1 points at Salesforce lead L1, which is converted, "
                           "and its salesforcecontactid is empty"]


def test_an_id_detente_has_not_seen_links_nothing_and_flags_nothing() -> None:
    assert people(hubspot("1", "a@x.com", ref_lead="00Qunknown")) == [(None, None, "1", False)]


def test_merged_away_contacts_follow_the_chain_to_the_survivor() -> None:
    clusters = link_people([hubspot("1", "a@x.com"), hubspot("2", merged_into="3", deleted=True),
                            hubspot("3", merged_into="1", deleted=True)])
    assert len(clusters) == 1
    assert clusters[0].members == {Key("hubspot", "contacts", "1"): "self", Key("hubspot", "contacts", "2"): "merge",
                                   Key("hubspot", "contacts", "3"): "merge"}


def test_several_leads_converted_into_one_contact_keep_the_claimed_one_primary() -> None:
    clusters = link_people([lead("L1", ref_contact="C1", created_at=T0 + timedelta(days=9)),
                            lead("L2", ref_contact="C1", created_at=T0), contact("C1"),
                            hubspot("1", ref_lead="L2", ref_contact="C1")])
    assert len(clusters) == 1
    assert (clusters[0].lead, clusters[0].conflicts) == ("L2", [])


def test_deleted_records_belong_to_nobody() -> None:
    assert link_people([lead("L1", "a@x.com", deleted=True)]) == []


def test_people_keep_their_ids_and_the_bigger_share_wins() -> None:
    clusters = link_people([lead("L1", "a@x.com"), hubspot("1", "a@x.com"), lead("L2", "b@x.com")])
    previous = {Key("hubspot", "contacts", "1"): 7, Key("salesforce", "Lead", "L1"): 9,
                Key("salesforce", "Lead", "L2"): 9}
    ids = dict(zip([c.lead for c in clusters], assign_person_ids(clusters, previous), strict=True))
    assert ids == {"L1": 7, "L2": 9}  # a tie goes to the lower id; the other keeps its own
    assert assign_person_ids(link_people([lead("L3")]), {}) == [None]
