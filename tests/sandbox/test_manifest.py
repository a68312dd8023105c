"""The ground-truth manifest agrees with the data served.

An audit written from the published API shapes alone (it stands in for the future one)
reads both CRMs, recomputes every planted problem kind, the people links and the
connector's task copies as of ``as_of``, and must find exactly what the manifest lists.
It reads the served data over HTTPS; the same audit also runs over a bigger in-memory world
read straight from the store's tables in the API's shapes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
import requests

from detente.agreement import INCOMPATIBLE, REFERENCE
from detente.calendars import BusinessCalendar
from detente.sandbox.server import Sandbox
from tests.conftest import AS_OF, sf_token, trusting_session

MQL_STAGE = "marketingqualifiedlead"
SF_MQL = "Marketing Qualified"
SF_OPEN = "Open - Not Contacted"
SF_DISQUALIFIED = "Closed - Not Converted"
SF_CONVERTED = "Closed - Converted"
OPEN_STATUSES = {SF_OPEN, SF_MQL, "Working - Contacted", "Sales Qualified"}
ENGAGEMENTS = {"tasks": "hs_task_subject", "calls": "hs_call_title", "emails": "hs_email_subject",
               "meetings": "hs_meeting_title"}
CONTACT_PROPS = ["email", "lifecyclestage", "hs_lead_status", "hubspotscore", "hubspot_owner_id",
                 "salesforceleadid", "salesforcecontactid", "hs_merged_object_ids", "createdate"]
CONTACT_HISTORY = ["lifecyclestage", "hs_lead_status", "hubspot_owner_id", "hubspotscore"]
DEAL_PROPS = ["dealstage", "closed_lost_reason", "salesforceopportunityid"]


def parse(text: str) -> datetime:
    text = text.strip().replace("Z", "+00:00")
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- what the audit reads -------------------------------------------------------------------


@dataclass
class Snapshot:
    """Both CRMs as their APIs return them: Salesforce rows by object, HubSpot objects with
    ``properties``, ``propertiesWithHistory`` (newest first) and ``associations``."""

    sf: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    hs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    owners: list[dict[str, Any]] = field(default_factory=list)


SOQL = {
    "User": "SELECT Id, Email, Department, IsActive FROM User",
    "Lead": "SELECT Id, Email, Status, OwnerId, Lead_Score__c, IsConverted, ConvertedContactId,"
            " ConvertedOpportunityId, CreatedDate, IsDeleted, SystemModstamp FROM Lead",
    "LeadHistory": "SELECT Id, LeadId, Field, OldValue, NewValue, CreatedDate FROM LeadHistory",
    "Opportunity": "SELECT Id, StageName, IsWon, Loss_Reason__c FROM Opportunity",
    "OpportunityFieldHistory": "SELECT Id, OpportunityId, Field, NewValue, CreatedDate"
                               " FROM OpportunityFieldHistory",
    "Task": "SELECT Id, WhoId, OwnerId, Subject, CompletedDateTime FROM Task",
    "Event": "SELECT Id, WhoId, OwnerId, Subject, StartDateTime FROM Event",
}


def snapshot_from_store(world: Any) -> Snapshot:
    """The same shapes, read from the sandbox store's tables (no server needed)."""
    snap = Snapshot()
    for obj, soql in SOQL.items():
        columns = soql.split("SELECT ")[1].split(" FROM ")[0]
        rows = world.query(f'SELECT {columns} FROM "sf_{obj}" ORDER BY rowid')
        snap.sf[obj] = [dict(r) for r in rows]
    import json

    for r in world.query("SELECT id, email, teams, archived FROM hs_owners ORDER BY id"):
        snap.owners.append({"id": str(r["id"]), "email": r["email"], "teams": json.loads(r["teams"]),
                            "archived": bool(r["archived"])})
    history: dict[tuple[str, int], dict[str, list[dict[str, str]]]] = defaultdict(lambda: defaultdict(list))
    for r in world.query("SELECT object, id, property, value, timestamp FROM hs_history"
                         " ORDER BY timestamp DESC, rowid DESC"):
        history[(r["object"], r["id"])][r["property"]].append({"value": r["value"], "timestamp": r["timestamp"]})
    assoc: dict[tuple[str, int], dict[str, list[dict[str, str]]]] = defaultdict(lambda: defaultdict(list))
    for r in world.query("SELECT from_object, from_id, to_object, to_id FROM hs_assoc ORDER BY to_id"):
        assoc[(r["from_object"], r["from_id"])][r["to_object"]].append({"id": str(r["to_id"])})
    for obj in ("contacts", "deals", *ENGAGEMENTS):
        records = []
        for r in world.query(f"SELECT id, props FROM hs_{obj} WHERE NOT archived ORDER BY id"):
            key = (obj, r["id"])
            records.append({
                "id": str(r["id"]), "properties": json.loads(r["props"]),
                "propertiesWithHistory": dict(history.get(key, {})),
                "associations": {k: {"results": v} for k, v in assoc.get(key, {}).items()},
            })
        snap.hs[obj] = records
    return snap


class Api:
    """Both sandbox APIs over HTTPS, as a client that knows only the published shapes."""

    def __init__(self, sandbox: Sandbox) -> None:
        assert sandbox.info is not None
        self.info = sandbox.info
        self.session = trusting_session(sandbox.info)
        token = sf_token(sandbox)
        self.sf_base = token["instance_url"]
        self.sf_headers = {"Authorization": f"Bearer {token['access_token']}"}
        self.hs_headers = {"Authorization": f"Bearer {sandbox.credentials.hs_token}"}

    def get(self, url: str, headers: dict[str, str]) -> requests.Response:
        response = self.session.get(url, headers=headers, timeout=60)
        if response.status_code == 404:
            pytest.skip(f"sandbox endpoint not served yet: GET {url.split('?')[0]}")
        response.raise_for_status()
        return response

    def soql(self, soql: str, *, all_rows: bool = False) -> list[dict[str, Any]]:
        resource = "queryAll" if all_rows else "query"
        url = f"{self.sf_base}/services/data/v59.0/{resource}?{urlencode({'q': soql})}"
        rows: list[dict[str, Any]] = []
        while True:
            body = self.get(url, self.sf_headers).json()
            rows += [{k: v for k, v in r.items() if k != "attributes"} for r in body["records"]]
            if body.get("done", True) or not body.get("nextRecordsUrl"):
                return rows
            url = self.sf_base + body["nextRecordsUrl"]

    def hs_list(self, obj: str, properties: list[str], history: list[str] = (),  # type: ignore[assignment]
                associations: list[str] = ()) -> list[dict[str, Any]]:  # type: ignore[assignment]
        params: list[tuple[str, str]] = [("limit", "50" if history else "100")]
        params += [("properties", p) for p in properties]
        params += [("propertiesWithHistory", p) for p in history]
        params += [("associations", a) for a in associations]
        results: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            page = params + ([("after", after)] if after else [])
            body = self.get(f"{self.info.hubspot}/crm/v3/objects/{obj}?{urlencode(page)}", self.hs_headers).json()
            results += body["results"]
            after = (body.get("paging") or {}).get("next", {}).get("after")
            if not after:
                return results

    def owners(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for archived in ("false", "true"):
            after: str | None = None
            while True:
                query = {"limit": "100", "archived": archived, **({"after": after} if after else {})}
                body = self.get(f"{self.info.hubspot}/crm/v3/owners?{urlencode(query)}", self.hs_headers).json()
                found += body["results"]
                after = (body.get("paging") or {}).get("next", {}).get("after")
                if not after:
                    break
        return found


def snapshot_from_api(sandbox: Sandbox) -> Snapshot:
    api = Api(sandbox)
    snap = Snapshot()
    for obj, soql in SOQL.items():
        snap.sf[obj] = api.soql(soql, all_rows=obj == "Lead")
    snap.owners = api.owners()
    snap.hs["contacts"] = api.hs_list("contacts", CONTACT_PROPS, CONTACT_HISTORY, list(ENGAGEMENTS))
    snap.hs["deals"] = api.hs_list("deals", DEAL_PROPS, ["dealstage"])
    for obj, subject in ENGAGEMENTS.items():
        snap.hs[obj] = api.hs_list(obj, [subject, "hs_timestamp", "hubspot_owner_id"])
    return snap


# -- the audit ------------------------------------------------------------------------------


def history(record: dict[str, Any], prop: str) -> list[tuple[str | None, datetime]]:
    """A HubSpot property's history, oldest first."""
    entries = (record.get("propertiesWithHistory") or {}).get(prop) or []
    return sorted(((e["value"], parse(e["timestamp"])) for e in entries), key=lambda x: x[1])


def run_start(entries: list[tuple[Any, datetime]], holds: Any) -> datetime | None:
    """When the final unbroken run of entries satisfying ``holds`` began (None: the last fails)."""
    since = None
    for value, at in entries:
        since = (since or at) if holds(value) else None
    return since


def value_since(entries: list[tuple[Any, datetime]]) -> datetime | None:
    """When the current (last) value was set."""
    if not entries:
        return None
    current = entries[-1][0]
    return run_start(entries, lambda v: v == current)


@dataclass
class Group:
    """The records one person has: a HubSpot contact and/or the Salesforce lead it claims."""

    contact: dict[str, Any] | None
    lead: dict[str, Any] | None


@dataclass
class Audit:
    snap: Snapshot
    as_of: datetime
    cal: BusinessCalendar = field(default_factory=lambda: BusinessCalendar(REFERENCE.calendar))
    found: dict[tuple[str, frozenset[tuple[str, str]]], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sf = self.snap.sf
        self.users = {u["Id"]: u for u in sf["User"]}
        self.sales_users = {u["Id"] for u in sf["User"] if u["Department"] == "Sales"}
        self.owner_email = {o["id"]: o["email"] for o in self.snap.owners}
        self.sales_owners = {o["id"] for o in self.snap.owners
                             if any(t["name"] == "Sales" for t in o.get("teams") or [])}
        self.leads = {r["Id"]: r for r in sf["Lead"] if not r["IsDeleted"]}
        self.deleted_leads = {r["Id"]: r for r in sf["Lead"] if r["IsDeleted"]}
        self.lead_history: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for h in sorted(sf["LeadHistory"], key=lambda h: (parse(h["CreatedDate"]), h["Id"])):
            self.lead_history[h["LeadId"]].append(h)
        self.opp_history: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for h in sorted(sf["OpportunityFieldHistory"], key=lambda h: (parse(h["CreatedDate"]), h["Id"])):
            self.opp_history[h["OpportunityId"]].append(h)
        self.contacts = {c["id"]: c for c in self.snap.hs["contacts"]}
        self.deals = self.snap.hs["deals"]
        self.activity_keys()

    # Activities count once: a Salesforce task with the owner, time and subject of a HubSpot
    # engagement is the connector's copy of it.
    def activity_keys(self) -> None:
        self.engagements: dict[tuple[str, str], tuple[str, datetime, str]] = {}
        by_key: dict[tuple[str, datetime, str], tuple[str, str]] = {}
        for obj, subject in ENGAGEMENTS.items():
            for e in self.snap.hs[obj]:
                p = e["properties"]
                key = (self.owner_email.get(p.get("hubspot_owner_id") or "", "?"), parse(p["hs_timestamp"]),
                       p.get(subject) or "")
                self.engagements[(obj, e["id"])] = key
                by_key[key] = (obj, e["id"])
        self.sf_activities: dict[str, set[tuple[str, datetime, str]]] = defaultdict(set)
        self.copies: dict[str, dict[str, str]] = {}
        for t in self.snap.sf["Task"]:
            key = (self.users[t["OwnerId"]]["Email"], parse(t["CompletedDateTime"]), t["Subject"] or "")
            if key in by_key:
                obj, hs_id = by_key[key]
                self.copies[t["Id"]] = {"type": obj, "id": hs_id}
            if t["WhoId"]:
                self.sf_activities[t["WhoId"]].add(key)
        for e in self.snap.sf["Event"]:
            key = (self.users[e["OwnerId"]]["Email"], parse(e["StartDateTime"]), e["Subject"] or "")
            if e["WhoId"]:
                self.sf_activities[e["WhoId"]].add(key)

    def groups(self) -> Iterator[Group]:
        claimed = set()
        for c in self.contacts.values():
            lead_id = c["properties"].get("salesforceleadid")
            claimed.add(lead_id)
            yield Group(c, self.leads.get(lead_id) if lead_id else None)
        for lead_id, lead in self.leads.items():
            if lead_id not in claimed:
                yield Group(None, lead)

    def add(self, kind: str, true_as_of: datetime, sf: dict[str, list[str]], hs: dict[str, list[str]]) -> None:
        assert true_as_of <= self.as_of, (kind, sf, hs, true_as_of)
        records = frozenset({("salesforce/" + o, i) for o, ids in sf.items() for i in ids}
                            | {("hubspot/" + o, i) for o, ids in hs.items() for i in ids})
        self.found[(kind, records)] = iso(true_as_of)

    # -- facts about a person ---------------------------------------------------------------

    def lead_changes(self, lead: dict[str, Any], field_name: str) -> list[dict[str, Any]]:
        return [h for h in self.lead_history[lead["Id"]] if h["Field"] == field_name]

    def sf_status_history(self, lead: dict[str, Any]) -> list[tuple[str, datetime]]:
        changes = self.lead_changes(lead, "Status")
        first = changes[0]["OldValue"] if changes else lead["Status"]
        return [(first, parse(lead["CreatedDate"]))] + [(h["NewValue"], parse(h["CreatedDate"])) for h in changes]

    def sf_owner_history(self, lead: dict[str, Any]) -> list[tuple[str, datetime]]:
        changes = self.lead_changes(lead, "OwnerId")
        first = changes[0]["OldValue"] if changes else lead["OwnerId"]
        return [(first, parse(lead["CreatedDate"]))] + [(h["NewValue"], parse(h["CreatedDate"])) for h in changes]

    def activities(self, g: Group) -> list[datetime]:
        keys: set[tuple[str, datetime, str]] = set()
        if g.contact is not None:
            for obj in ENGAGEMENTS:
                for a in (g.contact.get("associations") or {}).get(obj, {}).get("results", []):
                    keys.add(self.engagements[(obj, a["id"])])
        if g.lead is not None:
            for who in (g.lead["Id"], g.lead["ConvertedContactId"]):
                if who:
                    keys |= self.sf_activities.get(who, set())
        return sorted(k[1] for k in keys)

    def records(self, g: Group) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        sf = {"Lead": [g.lead["Id"]]} if g.lead is not None else {}
        hs = {"contacts": [g.contact["id"]]} if g.contact is not None else {}
        return sf, hs

    # -- the checks ---------------------------------------------------------------------------

    def run(self) -> dict[tuple[str, frozenset[tuple[str, str]]], str]:
        for g in self.groups():
            self.person(g)
        self.opportunities()
        self.identity()
        return self.found

    def person(self, g: Group) -> None:
        a = REFERENCE
        c, lead = g.contact, g.lead
        props = c["properties"] if c is not None else {}
        email = props.get("email") if c is not None else lead["Email"] if lead else None
        score_text = props.get("hubspotscore") if c is not None else (lead or {}).get("Lead_Score__c")
        score = float(score_text) if score_text not in (None, "") else None
        holds = a.is_mql(score, email)
        stage = props.get("lifecyclestage")
        status = lead["Status"] if lead is not None else None
        converted = bool(lead and lead["IsConverted"])
        sf_status = self.sf_status_history(lead) if lead is not None else []
        hs_stage = history(c, "lifecyclestage") if c is not None else []
        scores = ([(float(v) if v else None, t) for v, t in history(c, "hubspotscore")] if c is not None
                  else [(score, parse(lead["CreatedDate"]))] if lead is not None else [])
        sf, hs = self.records(g)

        # definition drift
        labels = []
        if stage == MQL_STAGE:
            labels.append(value_since(hs_stage))
        if status == SF_MQL:
            labels.append(value_since(sf_status))
        if labels and not holds:
            failing = run_start(scores, lambda s: not a.is_mql(s, email))
            labelled = min(t for t in labels if t)  # the earliest system still labelling
            self.add("definition_drift", max(labelled, failing or labelled), sf, hs)

        # missed label
        unlabelled = stage in (None, "subscriber", "lead") and status in (None, SF_OPEN) and not converted
        if holds and unlabelled:
            since = run_start(scores, lambda s: a.is_mql(s, email))
            assert since is not None
            grace = since + timedelta(days=a.missed_label_grace_days)
            if grace <= self.as_of:
                self.add("missed_label", grace, sf, hs)

        # cross-system disagreement
        if c is not None and lead is not None and (stage, status) in INCOMPATIBLE:
            since = max(t for t in (value_since(hs_stage), value_since(sf_status)) if t)
            self.add("stage_disagreement", since, sf, hs)

        # hand-over and first contact
        label_times = [t for v, t in hs_stage if v == MQL_STAGE] + [t for v, t in sf_status if v == SF_MQL]
        hs_owners = history(c, "hubspot_owner_id") if c is not None else []
        owner_times = [t for v, t in hs_owners if v in self.sales_owners]
        if lead is not None:
            owner_times += [t for v, t in self.sf_owner_history(lead) if v in self.sales_users]
        handed = min(owner_times) if owner_times else None
        acts = self.activities(g)
        if label_times:
            label = min(label_times)
            if holds:
                due = self.cal.add_hours(label, a.handoff_business_hours)
                if handed is None and due <= self.as_of:
                    self.add("mql_not_handed_over", due, sf, hs)
                elif handed is not None and handed > due:
                    self.add("mql_handed_over_late", due, sf, hs)
            if handed is not None:
                due = self.cal.add_hours(handed, a.first_contact_business_hours)
                first = next((t for t in acts if t >= handed), None)
                if first is None and due <= self.as_of:
                    self.add("first_contact_missing", due, sf, hs)
                elif first is not None and first > due:
                    self.add("first_contact_late", due, sf, hs)

        # disqualified before the agreed number of activities
        lead_status = history(c, "hs_lead_status") if c is not None else []
        dq_times = [t for v, t in sf_status if v == SF_DISQUALIFIED] + [t for v, t in lead_status if v == "UNQUALIFIED"]
        if status == SF_DISQUALIFIED or props.get("hs_lead_status") == "UNQUALIFIED":
            when = min(dq_times)
            if sum(1 for t in acts if t <= when) < a.min_activities_before_disqualify:
                self.add("disqualified_too_early", when, sf, hs)

        # idle with sales
        if lead is not None:
            owner_is_sales = lead["OwnerId"] in self.sales_users
            is_open = not converted and status in OPEN_STATUSES
        else:
            owner_is_sales = props.get("hubspot_owner_id") in self.sales_owners
            is_open = stage in (None, "subscriber", "lead", MQL_STAGE, "salesqualifiedlead") and \
                props.get("hs_lead_status") not in ("UNQUALIFIED", "BAD_TIMING")
        if owner_is_sales and is_open:
            touches = list(acts)
            if lead is not None:
                touches += [t for _, t in sf_status] + [t for _, t in self.sf_owner_history(lead)]
            if c is not None:
                touches += [t for prop in ("lifecyclestage", "hs_lead_status", "hubspot_owner_id")
                            for _, t in history(c, prop)]
            idle_from = max(touches) + timedelta(days=a.idle_with_sales_days)
            if idle_from <= self.as_of:
                self.add("idle_with_sales", idle_from, sf, hs)

    def opportunities(self) -> None:
        deals_by_opp = {d["properties"].get("salesforceopportunityid"): d for d in self.deals}
        lead_by_opp = {lead["ConvertedOpportunityId"]: lead for lead in self.leads.values()
                       if lead["ConvertedOpportunityId"]}
        contact_by_lead: dict[str, dict[str, Any]] = {}
        for c in self.contacts.values():
            if c["properties"].get("salesforceleadid"):
                contact_by_lead.setdefault(c["properties"]["salesforceleadid"], c)
        for opp in self.snap.sf["Opportunity"]:
            deal = deals_by_opp.get(opp["Id"])
            stage_at = [parse(h["CreatedDate"]) for h in self.opp_history[opp["Id"]]
                        if h["Field"] == "StageName" and h["NewValue"] == opp["StageName"]]
            if opp["StageName"] == "Closed Lost":
                deal_props = deal["properties"] if deal is not None else {}
                no_reason = not opp["Loss_Reason__c"] or (
                    deal_props.get("dealstage") == "closedlost" and not deal_props.get("closed_lost_reason"))
                if no_reason:
                    times = stage_at + ([t for v, t in history(deal, "dealstage") if v == "closedlost"]
                                        if deal is not None else [])
                    self.add("closed_lost_without_reason", min(times), {"Opportunity": [opp["Id"]]},
                             {"deals": [deal["id"]]} if deal is not None else {})
            converted = lead_by_opp.get(opp["Id"])
            buyer = contact_by_lead.get(converted["Id"]) if converted is not None else None
            if opp["IsWon"] and buyer is not None:
                stage = buyer["properties"].get("lifecyclestage")
                if stage in ("salesqualifiedlead", "opportunity"):
                    since = value_since(history(buyer, "lifecyclestage"))
                    self.add("won_not_in_hubspot", max([*stage_at, *([since] if since else [])]),
                             {"Opportunity": [opp["Id"]]}, {"contacts": [buyer["id"]]})
        for deal in self.deals:  # deals made in HubSpot alone
            p = deal["properties"]
            if not p.get("salesforceopportunityid") and p.get("dealstage") == "closedlost" and \
                    not p.get("closed_lost_reason"):
                times = [t for v, t in history(deal, "dealstage") if v == "closedlost"]
                self.add("closed_lost_without_reason", min(times), {}, {"deals": [deal["id"]]})
        for lead in self.leads.values():
            if lead["IsConverted"] and not lead["ConvertedOpportunityId"]:
                at = min(t for v, t in self.sf_status_history(lead) if v == SF_CONVERTED)
                claimer = contact_by_lead.get(lead["Id"])
                self.add("converted_without_opportunity", at,
                         {"Lead": [lead["Id"]], "Contact": [lead["ConvertedContactId"]]},
                         {"contacts": [claimer["id"]]} if claimer is not None else {})

    def identity(self) -> None:
        by_email: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for lead in self.leads.values():
            if lead["Email"]:
                by_email[lead["Email"].lower()].append(lead)
        for same in by_email.values():
            if len(same) > 1:
                self.add("duplicate_lead_email", max(parse(x["CreatedDate"]) for x in same),
                         {"Lead": sorted(x["Id"] for x in same)}, {})
        by_lead: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for c in self.contacts.values():
            if c["properties"].get("salesforceleadid"):
                by_lead[c["properties"]["salesforceleadid"]].append(c)
        for lead_id, claimers in by_lead.items():
            if len(claimers) > 1:
                self.add("hubspot_contacts_share_lead",
                         max(parse(x["properties"]["createdate"]) for x in claimers),
                         {"Lead": [lead_id]}, {"contacts": sorted(x["id"] for x in claimers)})
            claimed = self.leads.get(lead_id)
            for c in claimers:
                if claimed is None and lead_id in self.deleted_leads:
                    self.add("hubspot_lead_deleted", parse(self.deleted_leads[lead_id]["SystemModstamp"]),
                             {"Lead": [lead_id]}, {"contacts": [c["id"]]})
                elif claimed is not None and claimed["IsConverted"] and not c["properties"].get("salesforcecontactid"):
                    at = min(t for v, t in self.sf_status_history(claimed) if v == SF_CONVERTED)
                    self.add("hubspot_lead_converted", at, {"Lead": [lead_id]}, {"contacts": [c["id"]]})


# -- comparing with the manifest -------------------------------------------------------------


def manifest_problems(manifest: dict[str, Any]) -> dict[tuple[str, frozenset[tuple[str, str]]], str]:
    found = {}
    for p in manifest["problems"]:
        records = frozenset({("salesforce/" + o, i) for o, ids in p["salesforce"].items() for i in ids}
                            | {("hubspot/" + o, i) for o, ids in p["hubspot"].items() for i in ids})
        found[(p["kind"], records)] = p["true_as_of"]
    return found


def assert_same_problems(manifest: dict[str, Any], snap: Snapshot, as_of: datetime) -> None:
    expected = manifest_problems(manifest)
    found = Audit(snap, as_of).run()
    missing = sorted(set(expected) - set(found), key=str)
    extra = sorted(set(found) - set(expected), key=str)
    assert not missing and not extra, f"manifest only: {missing[:5]}\naudit only: {extra[:5]}"
    wrong_times = {k: (expected[k], found[k]) for k in expected if expected[k] != found[k]}
    assert not wrong_times, list(wrong_times.items())[:5]


def assert_same_people(manifest: dict[str, Any], snap: Snapshot) -> None:
    claims = {c["id"]: (c["properties"].get("salesforceleadid") or None,
                        c["properties"].get("salesforcecontactid") or None) for c in snap.hs["contacts"]}
    expected = {hs_id: (v["salesforce_lead_id"], v["salesforce_contact_id"])
                for p in manifest["people"] for hs_id, v in p["hubspot_claims"].items()}
    assert claims == expected
    merged = {c["id"]: sorted(x for x in (c["properties"].get("hs_merged_object_ids") or "").split(";") if x)
              for c in snap.hs["contacts"]}
    assert {k: v for k, v in merged.items() if v} == {
        p["hubspot_contact_id"]: sorted(p["hubspot_merged_ids"]) for p in manifest["people"] if p["hubspot_merged_ids"]}
    leads = {r["Id"]: r["Email"].lower() for r in snap.sf["Lead"] if not r["IsDeleted"]}
    by_person = {lead_id: p["email"].lower() for p in manifest["people"]
                 for lead_id in [p["salesforce_lead_id"], *p["duplicate_salesforce_lead_ids"]] if lead_id}
    assert leads == by_person


# -- tests -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(sandbox: Sandbox) -> Snapshot:
    return snapshot_from_api(sandbox)


def test_problems_recomputed_from_the_apis_match_the_manifest(sandbox: Sandbox, served: Snapshot) -> None:
    """Every planted problem, and nothing else, is found by reading both APIs."""
    assert_same_problems(sandbox.manifest(), served, AS_OF)


def test_people_links_recomputed_from_the_apis_match_the_manifest(sandbox: Sandbox, served: Snapshot) -> None:
    """HubSpot contact → Salesforce lead/contact claims, merges and lead emails agree."""
    assert_same_people(sandbox.manifest(), served)


def test_connector_copies_recomputed_from_the_apis_match_the_manifest(sandbox: Sandbox, served: Snapshot) -> None:
    """The Salesforce tasks that copy a HubSpot engagement are exactly the manifest's."""
    assert Audit(served, AS_OF).copies == sandbox.manifest()["connector_copies"]


@pytest.fixture(scope="module")
def bigger() -> tuple[dict[str, Any], Snapshot]:
    from detente.sandbox.generate import generate_world
    from detente.sandbox.store import World

    world = World()
    manifest = generate_world(world, dataset="demo", size=3000, seed=11, as_of=AS_OF)
    return manifest, snapshot_from_store(world)


def test_problems_recomputed_from_the_store_match_the_manifest(bigger: tuple[dict[str, Any], Snapshot]) -> None:
    """The same audit over a 3,000-person world read from the store's tables."""
    manifest, snap = bigger
    assert_same_problems(manifest, snap, AS_OF)


def test_people_links_from_the_store_match_the_manifest(bigger: tuple[dict[str, Any], Snapshot]) -> None:
    manifest, snap = bigger
    assert_same_people(manifest, snap)


def test_connector_copies_from_the_store_match_the_manifest(bigger: tuple[dict[str, Any], Snapshot]) -> None:
    manifest, snap = bigger
    assert Audit(snap, AS_OF).copies == manifest["connector_copies"]
