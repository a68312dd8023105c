"""Who is who across the two CRMs: the linking rules, as a pure function of link facts.

A person holds at most one Salesforce contact, one HubSpot contact and one primary
Salesforce lead (several leads may have been converted into one contact). Records are linked,
strongest evidence first:

1. **Conversion.** A lead converted into a contact (``ConvertedContactId``) belongs with it.
2. **Ids the HubSpot contact carries.** ``salesforcecontactid``, else ``salesforceleadid``
   (the native connector writes both), put the HubSpot contact with that Salesforce record.
3. **Email.** Records still apart whose normalized emails are equal are linked when the
   match is unambiguous: the records sharing the email would make one person (no two leads,
   contacts or HubSpot contacts).
4. **Merges.** A HubSpot contact merged into another belongs to the survivor's person.

Conflicts are kept and flagged (``Cluster.conflicts``), never merged silently:

- two HubSpot contacts claim one Salesforce record: the one whose email the Salesforce
  record has (else the older, else the lower id) is linked, the other stands alone; both
  people are flagged;
- an email shared by records that cannot be one person (two leads, ...): nothing is linked
  by that email and every person holding it is flagged;
- a HubSpot contact that points at a deleted lead or contact (not linked), at a converted
  lead with ``salesforcecontactid`` empty (linked through the conversion), or at a lead and
  a contact that Salesforce keeps apart (linked to the contact).

An id that points at a record detente has not seen links nothing and flags nothing: the
record may simply not have been pulled yet. Deleted records belong to nobody.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from detente.normalize.batches import Key
from detente.normalize.links import Link
from detente.normalize.values import id_order

LEAD = ("salesforce", "Lead")
CONTACT = ("salesforce", "Contact")
HUBSPOT = ("hubspot", "contacts")
_LATEST = datetime.max.replace(tzinfo=UTC)
SHOWN_IDS = 5  # record ids named in one conflict; a shared placeholder email may join thousands

# linked_by values
SELF = "self"
CONVERSION = "conversion"
CLAIM = "salesforce id"
EMAIL = "email"
MERGE = "merge"


@dataclass
class Cluster:
    """One person: the records linked into it, why each was linked, and any doubts."""

    members: dict[Key, str] = field(default_factory=dict)  # record -> linked_by
    lead: str | None = None
    contact: str | None = None
    hubspot: str | None = None
    conflicts: list[str] = field(default_factory=list)

    @property
    def conflict(self) -> str | None:
        return "; ".join(self.conflicts) if self.conflicts else None


@dataclass
class _Build:
    members: dict[Key, str] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    merged_into: _Build | None = None

    def root(self) -> _Build:
        build = self
        while build.merged_into is not None:
            build = build.merged_into
        return build

    def has(self, kind: tuple[str, str]) -> bool:
        return any((k.system, k.object) == kind for k in self.members)

    def ids(self, kind: tuple[str, str]) -> list[str]:
        return sorted((k.record_id for k in self.members if (k.system, k.object) == kind), key=id_order)


def _sort(links: Iterable[Link]) -> list[Link]:
    return sorted(links, key=lambda link: id_order(link.key.record_id))


def _describe(keys: Iterable[Key]) -> str:
    words = {LEAD: ("Salesforce lead", "Salesforce leads"), CONTACT: ("Salesforce contact", "Salesforce contacts"),
             HUBSPOT: ("HubSpot contact", "HubSpot contacts")}
    parts = []
    keys = list(keys)
    for kind in (LEAD, CONTACT, HUBSPOT):
        ids = sorted({k.record_id for k in keys if (k.system, k.object) == kind}, key=id_order)
        if ids:
            one, many = words[kind]
            shown = ", ".join(ids[:SHOWN_IDS]) + (f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else "")
            parts.append(f"{one if len(ids) == 1 else many} {shown}")
    return " and ".join(parts)


def link_people(links: Iterable[Link]) -> list[Cluster]:
    """The people that a closed set of records makes (every record that any of them points
    at, shares an email with, or was linked with before is in the set)."""
    by_key = {link.key: link for link in links}
    live = [link for link in by_key.values() if not link.deleted and (link.key.system, link.key.object)
            in (LEAD, CONTACT, HUBSPOT)]
    builds: list[_Build] = []
    home: dict[Key, _Build] = {}

    def new(key: Key, how: str) -> _Build:
        build = _Build({key: how})
        builds.append(build)
        home[key] = build
        return build

    def add(build: _Build, key: Key, how: str) -> None:
        build.members[key] = how
        home[key] = build

    def kind_of(link: Link) -> tuple[str, str]:
        return link.key.system, link.key.object

    # 1. Contacts, and the leads converted into them.
    for link in _sort(x for x in live if kind_of(x) == CONTACT):
        new(link.key, SELF)
    for link in _sort(x for x in live if kind_of(x) == LEAD):
        target = home.get(Key(*CONTACT, link.ref_contact)) if link.ref_contact else None
        if target is not None:
            add(target, link.key, CONVERSION)
        else:
            new(link.key, SELF)

    # 2. The ids HubSpot contacts carry.
    claims: dict[int, tuple[_Build, list[Link]]] = {}
    notes: dict[Key, list[str]] = {}
    for link in _sort(x for x in live if kind_of(x) == HUBSPOT):
        target, found = _claim_target(link, by_key, home)
        notes[link.key] = found
        if target is None:
            new(link.key, SELF)
        else:
            claims.setdefault(id(target), (target, []))[1].append(link)
    for target, claimants in claims.values():
        if len(claimants) == 1:
            add(target, claimants[0].key, CLAIM)
            continue
        sf_emails = {by_key[k].email for k in target.members if by_key[k].email}
        ranked = sorted(claimants, key=lambda h: (h.email not in sf_emails, h.created_at or _LATEST,
                                                   id_order(h.key.record_id)))
        message = (f"{_describe(h.key for h in claimants)} all claim "
                   f"{_describe(k for k in target.members if k.system == 'salesforce')}")
        add(target, ranked[0].key, CLAIM)
        target.conflicts.append(message)
        for loser in ranked[1:]:
            new(loser.key, SELF).conflicts.append(message)
    for key, found in notes.items():
        home[key].conflicts.extend(found)

    # 3. Email, where it is unambiguous.
    by_email: dict[str, list[_Build]] = {}
    for link in live:
        if link.email:
            by_email.setdefault(link.email, []).append(home[link.key])
    for email in sorted(by_email):
        group: list[_Build] = []
        for build in by_email[email]:
            root = build.root()
            if all(root is not g for g in group):
                group.append(root)
        if len(group) < 2:
            continue
        if all(sum(1 for g in group if g.has(kind)) <= 1 for kind in (LEAD, CONTACT, HUBSPOT)):
            target = next((g for g in group if g.has(CONTACT)), None) or next(
                (g for g in group if g.has(LEAD)), group[0])
            for other in group:
                if other is target:
                    continue
                for key, how in other.members.items():
                    add(target, key, EMAIL if how == SELF else how)
                target.conflicts.extend(other.conflicts)
                other.members, other.conflicts, other.merged_into = {}, [], target
        else:
            sharing = [k for g in group for k in g.members if by_key[k].email == email]
            message = f"one email address is on {_describe(sharing)}"
            for g in group:
                g.conflicts.append(message)

    # 4. Merged-away HubSpot contacts go with their survivor.
    for link in _sort(x for x in by_key.values() if kind_of(x) == HUBSPOT and x.deleted and x.merged_into):
        survivor = _survivor(link, by_key)
        if survivor is not None and survivor in home:
            home[survivor].root().members[link.key] = MERGE

    return [_finish(b, by_key) for b in builds if b.merged_into is None and b.members]


def _claim_target(
    link: Link, by_key: Mapping[Key, Link], home: Mapping[Key, _Build]
) -> tuple[_Build | None, list[str]]:
    """Where a HubSpot contact's Salesforce ids put it, and what is wrong with them."""
    me = f"HubSpot contact {link.key.record_id}"
    notes: list[str] = []
    by_contact: _Build | None = None
    by_lead: _Build | None = None
    if link.ref_contact:
        contact = by_key.get(Key(*CONTACT, link.ref_contact))
        if contact is not None and contact.deleted:
            notes.append(f"{me} points at Salesforce contact {link.ref_contact}, which is deleted")
        elif contact is not None:
            by_contact = home.get(contact.key)
    if link.ref_lead:
        lead = by_key.get(Key(*LEAD, link.ref_lead))
        if lead is not None and lead.deleted:
            notes.append(f"{me} points at Salesforce lead {link.ref_lead}, which is deleted")
        elif lead is not None:
            by_lead = home.get(lead.key)
            if lead.ref_contact and not link.ref_contact:
                notes.append(f"{me} points at Salesforce lead {link.ref_lead}, which is converted, "
                             "and its salesforcecontactid is empty")
    if by_contact is not None and by_lead is not None and by_contact is not by_lead:
        notes.append(f"{me} points at Salesforce lead {link.ref_lead} and contact {link.ref_contact}, "
                     "which Salesforce keeps as different people")
    return by_contact or by_lead, notes


def _survivor(link: Link, by_key: Mapping[Key, Link]) -> Key | None:
    """The live HubSpot contact a merged-away one ended up in, following merge chains."""
    seen: set[Key] = set()
    current = link
    while current.deleted and current.merged_into:
        nxt = Key(*HUBSPOT, current.merged_into)
        found = by_key.get(nxt)
        if nxt in seen or found is None:
            return None
        seen.add(nxt)
        current = found
    return None if current.deleted else current.key


def _finish(build: _Build, by_key: Mapping[Key, Link]) -> Cluster:
    hubspot = build.ids(HUBSPOT)
    contacts = build.ids(CONTACT)
    leads = build.ids(LEAD)
    claimed = {by_key[Key(*HUBSPOT, h)].ref_lead for h in hubspot}
    primary = [x for x in leads if x in claimed] or sorted(
        leads, key=lambda x: (by_key[Key(*LEAD, x)].created_at or _LATEST, id_order(x)), reverse=True)
    return Cluster(
        members=dict(sorted(build.members.items(), key=lambda item: (item[0].system, item[0].object,
                                                                       id_order(item[0].record_id)))),
        lead=primary[0] if primary else None,
        contact=contacts[0] if contacts else None,
        hubspot=hubspot[0] if hubspot else None,
        conflicts=sorted(set(build.conflicts)),
    )


def assign_person_ids(clusters: Sequence[Cluster], previous: Mapping[Key, int]) -> list[int | None]:
    """Keep people's ids stable: each cluster takes the id most of its records had (ties: the
    lower id), bigger clusters first; None means a new person."""
    order = sorted(range(len(clusters)), key=lambda i: (-len(clusters[i].members), min(clusters[i].members)))
    taken: set[int] = set()
    out: list[int | None] = [None] * len(clusters)
    for i in order:
        counts = Counter(previous[k] for k in clusters[i].members if k in previous)
        for person_id, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
            if person_id not in taken:
                out[i] = person_id
                taken.add(person_id)
                break
    return out
