"""The Salesforce simulator over real HTTPS, driven by the unmodified simple-salesforce:
OAuth, query paging, records, sObject Collections, change feeds, Bulk API 2.0, describe,
limits and every injected fault as the client sees it."""

from __future__ import annotations

import csv
import gc
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest
import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from detente.agreement import SALESFORCE_LEAD_STATUSES
from detente.sandbox.salesforce import Cursor, Cursors, batch_size
from detente.sandbox.schema import SALESFORCE_OBJECTS
from detente.sandbox.server import Sandbox
from detente.sandbox.soql import compile_soql
from detente.sandbox.store import World, sf_datetime
from tests.conftest import AS_OF, SEED, sf_client, sf_token, trusting_session

LEADS = 2150  # more than one default batch of 2000
DELETED_LEADS = 7
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
LEAD, USER, TASK, CONTACT = (SALESFORCE_OBJECTS[n] for n in ("Lead", "User", "Task", "Contact"))


def seed(world: World) -> None:
    """Reps, leads (some without owner, some deleted, many sharing a SystemModstamp second),
    a contact and tasks; all stamped in the past so new writes sort after them."""
    reps = world.sf_insert(USER, [
        {"Username": f"rep{i}@seed.example", "Email": f"rep{i}@seed.example", "LastName": f"Rep{i}"}
        for i in range(2)
    ], BASE)
    leads = world.sf_insert(LEAD, [
        {"LastName": f"Seed{i:04d}", "Company": "Seed Co", "Status": SALESFORCE_LEAD_STATUSES[i % 3],
         "Email": f"seed{i}@seed.example", "OwnerId": reps[i % 2] if i % 5 else None,
         "Lead_Score__c": float(i % 100), "CreatedDate": sf_datetime(BASE),
         "LastModifiedDate": sf_datetime(BASE + timedelta(seconds=i // 10))}
        for i in range(LEADS)
    ], BASE)
    for lead in leads[-DELETED_LEADS:]:
        world.sf_delete(LEAD, lead, BASE + timedelta(hours=1))
    [contact] = world.sf_insert(CONTACT, [{"LastName": "Seedcontact", "OwnerId": reps[0]}], BASE)
    world.sf_insert(TASK, [
        {"Subject": "Seed call", "WhoId": leads[0], "Status": "Completed", "Priority": "High"},
        {"Subject": "Seed mail", "WhoId": contact, "Status": "Not Started", "Priority": "Low"},
        {"Subject": "Seed duplicate key", "Status": "Not Started", "Priority": "Low", "Detente_Key__c": "dup"},
        {"Subject": "Seed duplicate key", "Status": "Not Started", "Priority": "Low", "Detente_Key__c": "dup"},
    ], BASE)


@pytest.fixture(scope="module")
def sfsb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One seeded sandbox for this module; tests that write create records of their own."""
    sb = Sandbox(state_dir=tmp_path_factory.mktemp("sf"), dataset="empty", size=0, seed=SEED, as_of=AS_OF)
    seed(sb.world)
    sb.start()
    yield sb
    gc.collect()  # requests sessions live in reference cycles; free their sockets before stopping
    sb.stop()


_OPEN: list[requests.Session] = []


def tracked(session: requests.Session) -> requests.Session:
    """Closed after the test: a keep-alive TLS connection left open (say, by a session that a
    caught exception's traceback still holds) makes the server's shutdown wait for it."""
    _OPEN.append(session)
    return session


@pytest.fixture(autouse=True)
def _calm(request: pytest.FixtureRequest) -> Iterator[None]:
    """Faults and frozen clocks set by one test never leak into the next; sessions close."""
    yield
    while _OPEN:
        _OPEN.pop().close()
    if "sfsb" in request.fixturenames:
        request.getfixturevalue("sfsb").sf_control.reset()


def client(sb: Sandbox) -> Salesforce:
    sf = sf_client(sb)
    tracked(sf.session)
    return sf


@pytest.fixture
def sf(sfsb: Sandbox) -> Salesforce:
    return client(sfsb)


def base(sb: Sandbox) -> str:
    assert sb.info is not None
    return sb.info.salesforce


_TOKENS: dict[int, str] = {}


def raw(sb: Sandbox, method: str, path: str, token: str | None = "auto", **kw: Any) -> requests.Response:
    """A plain HTTPS call, for what simple-salesforce hides (statuses, headers, bodies)."""
    assert sb.info is not None
    headers = dict(kw.pop("headers", {}))
    if token == "auto":
        token = _TOKENS.get(id(sb)) or _TOKENS.setdefault(id(sb), sf_token(sb)["access_token"])
    if token:
        headers["Authorization"] = f"Bearer {token}"
    with trusting_session(sb.info) as session:
        return session.request(method, base(sb) + path, headers=headers, timeout=30, **kw)


def control(sb: Sandbox, what: str, body: dict[str, Any]) -> None:
    raw(sb, "POST", f"/__sandbox/{what}", token=None, json=body).raise_for_status()


def stats(sb: Sandbox) -> dict[str, Any]:
    result: dict[str, Any] = raw(sb, "GET", "/__sandbox/stats", token=None).json()
    return result


def responses_of(sf: Salesforce) -> list[requests.Response]:
    """Every response the client receives from now on (simple-salesforce exceptions drop headers)."""
    seen: list[requests.Response] = []
    sf.session.hooks["response"].append(lambda r, *a, **k: seen.append(r))
    return seen


class ToSandbox(HTTPAdapter):
    """Sends https://login.salesforce.com/... to the sandbox, path kept (reference §3.6)."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        parts = urlsplit(str(request.url))
        request.url = self.target + parts.path + (f"?{parts.query}" if parts.query else "")
        return super().send(request, *args, **kwargs)


def login_session(sb: Sandbox) -> requests.Session:
    assert sb.info is not None
    session = tracked(trusting_session(sb.info))
    session.mount("https://login.salesforce.com", ToSandbox(sb.info.salesforce))
    return session


def new_lead(sf: Salesforce, **fields: Any) -> str:
    record_id: str = sf.Lead.create({"LastName": "Test", "Company": "Test Co", **fields})["id"]
    return record_id


def freeze(sb: Sandbox, at: datetime) -> None:
    control(sb, "clock", {"now": at.isoformat()})


# -- OAuth --------------------------------------------------------------------------------


def test_password_grant_returns_token_and_this_servers_instance_url(sfsb: Sandbox) -> None:
    body = sf_token(sfsb)
    assert body["instance_url"] == base(sfsb) and body["token_type"] == "Bearer"
    assert body["issued_at"].isdigit() and body["id"].startswith("https://login.salesforce.com/id/00D")


def test_refresh_token_grant_returns_a_working_token(sfsb: Sandbox) -> None:
    c = sfsb.credentials
    body = raw(sfsb, "POST", "/services/oauth2/token", token=None, data={
        "grant_type": "refresh_token", "refresh_token": c.sf_refresh_token, "client_id": c.sf_client_id,
    }).json()
    assert raw(sfsb, "GET", "/services/data/v59.0/limits", token=body["access_token"]).status_code == 200


def jwt_assertion(sb: Sandbox, **claims: Any) -> str:
    c = sb.credentials
    payload = {"iss": c.sf_client_id, "sub": c.sf_username, "aud": "https://login.salesforce.com",
               "exp": int((datetime.now(UTC) + timedelta(minutes=3)).timestamp()), **claims}
    return jwt.encode(payload, c.sf_jwt_private_key, algorithm="RS256")


def jwt_grant(sb: Sandbox, assertion: str) -> requests.Response:
    return raw(sb, "POST", "/services/oauth2/token", token=None, data={
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion})


def test_jwt_bearer_grant_returns_a_token(sfsb: Sandbox) -> None:
    response = jwt_grant(sfsb, jwt_assertion(sfsb, aud=base(sfsb)))
    assert response.status_code == 200 and response.json()["access_token"]


def test_jwt_expired_by_the_sandbox_clock_is_invalid_grant(sfsb: Sandbox) -> None:
    freeze(sfsb, datetime.now(UTC) + timedelta(hours=1))
    response = jwt_grant(sfsb, jwt_assertion(sfsb))
    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")


def test_jwt_signed_with_another_key_is_invalid_grant(sfsb: Sandbox) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    c = sfsb.credentials
    forged = jwt.encode({"iss": c.sf_client_id, "sub": c.sf_username, "aud": "https://login.salesforce.com",
                         "exp": int(datetime.now(UTC).timestamp()) + 180}, other, algorithm="RS256")
    assert jwt_grant(sfsb, forged).json() == {"error": "invalid_grant", "error_description": "invalid assertion"}


def test_wrong_password_is_400_invalid_grant(sfsb: Sandbox) -> None:
    c = sfsb.credentials
    response = raw(sfsb, "POST", "/services/oauth2/token", token=None, data={
        "grant_type": "password", "client_id": c.sf_client_id, "client_secret": c.sf_client_secret,
        "username": c.sf_username, "password": "wrong"})
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_grant", "error_description": "authentication failure"}


def test_unknown_grant_type_is_unsupported_grant_type(sfsb: Sandbox) -> None:
    response = raw(sfsb, "POST", "/services/oauth2/token", token=None, data={"grant_type": "magic"})
    assert (response.status_code, response.json()["error"]) == (400, "unsupported_grant_type")


def test_simple_salesforce_password_login_through_the_login_host(sfsb: Sandbox) -> None:
    c = sfsb.credentials
    sf = Salesforce(username=c.sf_username, password=c.sf_password, consumer_key=c.sf_client_id,
                    consumer_secret=c.sf_client_secret, session=login_session(sfsb))
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == LEADS - DELETED_LEADS


def test_simple_salesforce_login_with_bad_password_fails_with_invalid_grant(sfsb: Sandbox) -> None:
    c = sfsb.credentials
    with pytest.raises(SalesforceAuthenticationFailed) as caught:
        Salesforce(username=c.sf_username, password="wrong", consumer_key=c.sf_client_id,
                   consumer_secret=c.sf_client_secret, session=login_session(sfsb))
    assert caught.value.code == "invalid_grant"


def test_simple_salesforce_jwt_login_through_the_login_host(sfsb: Sandbox) -> None:
    c = sfsb.credentials
    sf = Salesforce(username=c.sf_username, consumer_key=c.sf_client_id, privatekey=c.sf_jwt_private_key,
                    session=login_session(sfsb))
    assert sf.query("SELECT COUNT() FROM Task")["totalSize"] >= 4


def test_unknown_token_is_401_invalid_session_id(sfsb: Sandbox) -> None:
    response = raw(sfsb, "GET", "/services/data/v59.0/query?q=SELECT+Id+FROM+Lead", token="00Dbogus")
    assert response.status_code == 401
    assert response.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def test_credential_client_logs_in_again_when_sessions_expire(sfsb: Sandbox) -> None:
    """With expire_session_every, simple-salesforce built from credentials re-logs in unseen."""
    c = sfsb.credentials
    sf = Salesforce(username=c.sf_username, password=c.sf_password, consumer_key=c.sf_client_id,
                    consumer_secret=c.sf_client_secret, session=login_session(sfsb))
    control(sfsb, "faults", {"expire_session_every": 2})
    for _ in range(5):
        assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] >= 1
    assert stats(sfsb)["faults_injected"]["expired_session"] >= 2


def test_session_client_sees_expired_session(sfsb: Sandbox, sf: Salesforce) -> None:
    """A client given only a session id cannot re-login, so it raises SalesforceExpiredSession."""
    control(sfsb, "faults", {"expire_session_every": 1})
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM Lead LIMIT 1")


def test_versions_list_needs_no_token_and_carries_no_limit_header(sfsb: Sandbox) -> None:
    response = raw(sfsb, "GET", "/services/data/", token=None)
    assert {"version": "59.0", "url": "/services/data/v59.0", "label": "Winter '24"} in response.json()
    assert "Sforce-Limit-Info" not in response.headers


# -- query ---------------------------------------------------------------------------------


def assert_pages_match_stats(sb: Sandbox) -> None:
    sf = client(sb)
    counts = stats(sb)["records"]
    assert set(counts) == set(SALESFORCE_OBJECTS)
    for name, count in counts.items():
        got = sf.query_all(f"SELECT Id FROM {name}", headers={"Sforce-Query-Options": "batchSize=500"})
        ids = [r["Id"] for r in got["records"]]
        assert (name, len(ids)) == (name, count) and len(set(ids)) == count


def test_query_all_pages_every_object_to_the_stats_counts(sfsb: Sandbox) -> None:
    assert_pages_match_stats(sfsb)


def test_query_all_pages_every_object_of_the_generated_world(sandbox: Sandbox) -> None:
    """The shared demo world (read only): whatever the generator made, paging finds all of it."""
    assert_pages_match_stats(sandbox)


def test_default_batch_is_2000_with_a_path_locator(sf: Salesforce) -> None:
    page = sf.query("SELECT Id FROM Lead")
    assert (len(page["records"]), page["done"], page["totalSize"]) == (2000, False, LEADS - DELETED_LEADS)
    assert page["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
    assert page["nextRecordsUrl"].endswith("-2000")


@pytest.mark.parametrize(("asked", "served"), [("500", 500), ("50", 200), ("5000", 2000)])
def test_batch_size_header_is_honoured_within_200_to_2000(sf: Salesforce, asked: str, served: int) -> None:
    page = sf.query("SELECT Id FROM Lead", headers={"Sforce-Query-Options": f"batchSize={asked}"})
    assert len(page["records"]) == served


def test_next_records_url_returns_the_next_page(sf: Salesforce) -> None:
    headers = {"Sforce-Query-Options": "batchSize=200"}
    first = sf.query("SELECT Id FROM Lead ORDER BY LastName", headers=headers)
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True, headers=headers)
    assert second["nextRecordsUrl"].endswith("-400")
    assert [r["Id"] for r in second["records"]] == [
        r["Id"] for r in sf.query("SELECT Id FROM Lead ORDER BY LastName LIMIT 200 OFFSET 200")["records"]
    ]


def test_query_results_are_a_snapshot_taken_when_the_query_ran(sf: Salesforce) -> None:
    first = sf.query("SELECT Id FROM Lead ORDER BY LastName")
    added = new_lead(sf, LastName="Aaa snapshot")
    rest = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    ids = [r["Id"] for r in first["records"] + rest["records"]]
    assert rest["done"] and rest["totalSize"] == first["totalSize"] and added not in ids


def test_least_recently_used_locators_are_evicted() -> None:
    query = compile_soql("SELECT Id FROM Lead")
    cursors = Cursors(capacity=2)
    first = cursors.add(Cursor(query, ["a"]))
    second = cursors.add(Cursor(query, ["b"]))
    assert cursors.get(first) is not None  # touching it makes the second the oldest
    cursors.add(Cursor(query, ["c"]))
    assert cursors.get(second) is None and cursors.get(first) is not None


@pytest.mark.parametrize(("header", "size"), [
    (None, 2000), ("batchSize=700", 700), ("batchSize=1", 200), ("batchsize=9999", 2000), ("junk", 2000),
])
def test_batch_size_parsing(header: str | None, size: int) -> None:
    assert batch_size(header, 2000) == size


def test_unknown_locator_is_invalid_query_locator(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.query_more("/services/data/v59.0/query/01gNOSUCHLOCATOR00-2000", identifier_is_url=True)
    assert caught.value.content[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_query_hides_deleted_rows_and_query_all_shows_them(sf: Salesforce) -> None:
    soql = "SELECT Id FROM Lead WHERE IsDeleted = true"
    assert sf.query(soql)["totalSize"] == 0
    assert sf.query(soql, include_deleted=True)["totalSize"] >= DELETED_LEADS


def test_parent_relationship_fields_come_back_nested(sf: Salesforce) -> None:
    records = sf.query("SELECT Id, Owner.Email FROM Lead WHERE LastName IN ('Seed0000', 'Seed0001')"
                       " ORDER BY LastName")["records"]
    assert records[0]["Owner"] is None
    assert records[1]["Owner"]["Email"] == "rep1@seed.example"
    assert records[1]["Owner"]["attributes"]["type"] == "User"


def test_polymorphic_who_is_typed_by_the_record_it_points_at(sf: Salesforce) -> None:
    records = sf.query("SELECT Subject, Who.Name FROM Task WHERE Subject LIKE 'Seed %' ORDER BY Subject")["records"]
    who = {r["Subject"]: r["Who"] for r in records}
    assert who["Seed call"]["attributes"]["type"] == "Lead" and who["Seed call"]["Name"] == "Seed0000"
    assert who["Seed mail"]["attributes"]["type"] == "Contact"


def test_values_have_salesforce_json_types(sf: Salesforce) -> None:
    [rec] = sf.query("SELECT IsConverted, Lead_Score__c, CreatedDate, ConvertedDate FROM Lead"
                     " WHERE LastName = 'Seed0042'")["records"]
    assert rec["IsConverted"] is False and rec["Lead_Score__c"] == 42.0 and rec["ConvertedDate"] is None
    assert rec["CreatedDate"] == sf_datetime(BASE)


def test_keyset_cursor_query_returns_the_rows_after_the_cursor(sf: Salesforce) -> None:
    """The pull connector's tie-safe cursor over many rows sharing one SystemModstamp."""
    everything = sf.query_all("SELECT Id, SystemModstamp FROM Lead ORDER BY SystemModstamp, Id")["records"]
    cursor = everything[1234]
    stamp = cursor["SystemModstamp"]
    soql = (f"SELECT Id FROM Lead WHERE (SystemModstamp = {stamp} AND Id > '{cursor['Id']}')"
            f" OR SystemModstamp > {stamp} ORDER BY SystemModstamp, Id")
    assert [r["Id"] for r in sf.query_all(soql)["records"]] == [r["Id"] for r in everything[1235:]]


def test_count_query_returns_total_size_and_no_records(sf: Salesforce) -> None:
    page = sf.query("SELECT COUNT() FROM Lead WHERE Owner.Email = null AND LastName LIKE 'Seed%'")
    assert page["records"] == [] and page["totalSize"] == len(
        sf.query_all("SELECT Id FROM Lead WHERE OwnerId = null AND LastName LIKE 'Seed%'")["records"])


def test_history_rows_follow_an_update_of_lead_status(sf: Salesforce) -> None:
    lead = new_lead(sf)
    sf.Lead.update(lead, {"Status": "Working - Contacted"})
    rows = sf.query(f"SELECT Field, OldValue, NewValue, CreatedDate FROM LeadHistory WHERE LeadId = '{lead}'"
                    " AND CreatedDate > 2020-01-01T00:00:00Z ORDER BY CreatedDate")["records"]
    changes = [(r["Field"], r["OldValue"], r["NewValue"]) for r in rows]
    assert ("Status", "Open - Not Contacted", "Working - Contacted") in changes


@pytest.mark.parametrize(("soql", "code"), [
    ("SELECT Id FORM Lead", "MALFORMED_QUERY"),
    ("SELECT BAD FROM Lead", "INVALID_FIELD"),
    ("SELECT Id FROM Foo", "INVALID_TYPE"),
    ("SELECT Id FROM Lead WHERE CreatedDate > 'yesterday'", "INVALID_FIELD"),
])
def test_bad_soql_is_400_with_the_salesforce_error_code(sfsb: Sandbox, soql: str, code: str) -> None:
    response = raw(sfsb, "GET", "/services/data/v59.0/query/", params={"q": soql})
    assert response.status_code == 400 and response.json()[0]["errorCode"] == code


def test_missing_q_is_malformed_query(sfsb: Sandbox) -> None:
    response = raw(sfsb, "GET", "/services/data/v59.0/query")
    assert response.status_code == 400 and response.json()[0]["errorCode"] == "MALFORMED_QUERY"


# -- records -------------------------------------------------------------------------------


def test_created_record_reads_back_with_server_fields(sf: Salesforce) -> None:
    lead = new_lead(sf, Email="new@x.example", Status="Nurture")
    rec = sf.Lead.get(lead)
    assert (rec["Email"], rec["Status"], rec["IsDeleted"], rec["Name"]) == ("new@x.example", "Nurture", False, "Test")
    assert rec["SystemModstamp"] == rec["CreatedDate"] and rec["OwnerId"].startswith("005")


def test_audit_fields_may_be_set_on_create_but_system_modstamp_is_the_insert(sfsb: Sandbox, sf: Salesforce) -> None:
    freeze(sfsb, datetime(2026, 6, 1, 9, 0, tzinfo=UTC))
    rec = sf.Lead.get(new_lead(sf, CreatedDate="2020-01-02T03:04:05.000+0000"))
    assert rec["CreatedDate"] == "2020-01-02T03:04:05.000+0000"
    assert rec["SystemModstamp"] == rec["LastModifiedDate"] == "2026-06-01T09:00:00.000+0000"


def test_create_fills_picklist_defaults(sf: Salesforce) -> None:
    assert sf.Lead.get(new_lead(sf))["Status"] == "Open - Not Contacted"


def test_update_is_visible_to_the_next_query(sf: Salesforce) -> None:
    lead = new_lead(sf)
    assert sf.Lead.update(lead, {"Rating": "Hot", "Lead_Score__c": 88}) == 204
    [rec] = sf.query(f"SELECT Rating, Lead_Score__c FROM Lead WHERE Id = '{lead}'")["records"]
    assert (rec["Rating"], rec["Lead_Score__c"]) == ("Hot", 88.0)


def test_get_with_fields_returns_only_those(sf: Salesforce) -> None:
    rec = sf.Lead.get(new_lead(sf), params={"fields": "Email,Company"})
    assert list(rec) == ["attributes", "Email", "Company"]


def test_upsert_by_external_id_creates_then_updates(sfsb: Sandbox, sf: Salesforce) -> None:
    path = "/services/data/v59.0/sobjects/Task/Detente_Key__c/upsert-1"
    token = sf_token(sfsb)["access_token"]
    created = raw(sfsb, "PATCH", path, token=token, json={"Subject": "First", "Status": "Not Started"})
    updated = raw(sfsb, "PATCH", path, token=token, json={"Subject": "Second"})
    assert created.status_code == 201 and created.json()["created"] is True
    assert updated.status_code == 200 and updated.json() == {**created.json(), "created": False}
    assert sf.Task.get_by_custom_id("Detente_Key__c", "upsert-1")["Subject"] == "Second"


def test_simple_salesforce_upsert_returns_201_then_200(sf: Salesforce) -> None:
    assert sf.Task.upsert("Detente_Key__c/upsert-2", {"Subject": "a"}) == 201
    assert sf.Task.upsert("Detente_Key__c/upsert-2", {"Subject": "b"}) == 200


def test_upsert_matching_several_records_is_300(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMoreThanOneRecord):
        sf.Task.upsert("Detente_Key__c/dup", {"Subject": "which?"})


def test_upsert_on_a_field_that_is_not_an_external_id_is_invalid_field(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Lead.upsert("Email/a@b.example", {"LastName": "x", "Company": "y"})
    assert caught.value.content[0]["errorCode"] == "INVALID_FIELD"


def test_deleted_record_is_gone_for_get_update_and_delete(sf: Salesforce) -> None:
    lead = new_lead(sf)
    assert sf.Lead.delete(lead) == 204
    for call in (lambda: sf.Lead.get(lead), lambda: sf.Lead.update(lead, {"Rating": "Hot"}),
                 lambda: sf.Lead.delete(lead)):
        with pytest.raises(SalesforceResourceNotFound) as caught:
            call()
        assert caught.value.content[0]["errorCode"] == "ENTITY_IS_DELETED"


def test_unknown_record_is_404_not_found(sf: Salesforce) -> None:
    with pytest.raises(SalesforceResourceNotFound) as caught:
        sf.Lead.update("00Q5g00000ZZZZZEAA", {"Rating": "Hot"})
    assert caught.value.content[0]["errorCode"] == "NOT_FOUND"


@pytest.mark.parametrize(("body", "code"), [
    ({"LastName": "x", "Company": "y", "Nope__c": 1}, "INVALID_FIELD"),
    ({"LastName": "x", "Company": "y", "IsConverted": True}, "INVALID_FIELD_FOR_INSERT_UPDATE"),
    ({"LastName": "x", "Company": "y", "Status": "Maybe"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
    ({"FirstName": "no last name"}, "REQUIRED_FIELD_MISSING"),
    ({"LastName": "x", "Company": "y", "Lead_Score__c": "high"}, "JSON_PARSER_ERROR"),
    ({"LastName": "x", "Company": "y", "Email": "not-an-email"}, "INVALID_EMAIL_ADDRESS"),
    ({"LastName": "x", "Company": "y", "OwnerId": "00Q5g0000000001EAA"}, "FIELD_INTEGRITY_EXCEPTION"),
    ({"LastName": "x", "Company": "y", "OwnerId": "0055g00000ZZZZZAAA"}, "INVALID_CROSS_REFERENCE_KEY"),
])
def test_invalid_create_is_400_with_the_salesforce_error_code(sf: Salesforce, body: dict[str, Any], code: str) -> None:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Lead.create(body)
    assert code in [e["errorCode"] for e in caught.value.content]


def test_every_problem_of_a_write_is_reported_at_once(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Lead.create({"Status": "Maybe", "Nope__c": 1})
    codes = {e["errorCode"] for e in caught.value.content}
    assert codes == {"INVALID_FIELD", "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "REQUIRED_FIELD_MISSING"}


def test_malformed_json_body_is_json_parser_error(sfsb: Sandbox) -> None:
    response = raw(sfsb, "POST", "/services/data/v59.0/sobjects/Lead/", data="{not json",
                   headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()[0]["errorCode"] == "JSON_PARSER_ERROR"


def test_unknown_resource_and_method_get_salesforce_shaped_errors(sfsb: Sandbox) -> None:
    missing = raw(sfsb, "GET", "/services/data/v59.0/nothing/here")
    wrong = raw(sfsb, "PUT", "/services/data/v59.0/query")
    assert (missing.status_code, missing.json()[0]["errorCode"]) == (404, "NOT_FOUND")
    assert (wrong.status_code, wrong.json()[0]["errorCode"]) == (405, "METHOD_NOT_ALLOWED")


V = "/services/data/v59.0"
LEAD_ID = "00Q5g0000000001EAA"


@pytest.mark.parametrize(("method", "path", "kw"), [
    ("GET", f"{V}/query", {"params": {"q": "SELECT Id FROM Lead WHERE (" * 400 + "Id = null" + ")" * 400}}),
    ("GET", f"{V}/query", {"params": {"q": "SELECT Id FROM Lead LIMIT 99999999999999999999999"}}),
    ("GET", f"{V}/query", {"params": {"q": "SELECT Id FROM Lead WHERE NumberOfEmployees = 99999999999999999999999"}}),
    ("GET", f"{V}/query/not-a-locator", {}),
    ("GET", f"{V}/sobjects/Nope", {}),
    ("GET", f"{V}/sobjects/Lead/{LEAD_ID}", {"params": {"fields": ",,"}}),
    ("GET", f"{V}/sobjects/Lead/{LEAD_ID}", {"params": {"fields": "Owner.Email"}}),
    ("GET", f"{V}/sobjects/Lead/updated", {"params": {"start": "yesterday", "end": "today"}}),
    ("GET", f"{V}/sobjects/Lead/deleted", {}),
    ("POST", f"{V}/sobjects/Lead", {"json": ["not", "an", "object"]}),
    ("POST", f"{V}/sobjects/Lead", {"json": {"LastName": {"nested": 1}, "Company": "x"}}),
    ("POST", f"{V}/sobjects/Lead", {"json": {"LastName": "x", "Company": "x", "NumberOfEmployees": 1e30}}),
    ("POST", f"{V}/sobjects/Lead", {"data": b"\xff\xfe", "headers": {"Content-Type": "application/json"}}),
    ("POST", f"{V}/sobjects/Lead", {"data": '{"LastName": "\\ud800", "Company": "x"}',
                                    "headers": {"Content-Type": "application/json"}}),
    ("POST", f"{V}/sobjects/LeadHistory", {"json": {"Field": "Status"}}),
    ("PATCH", f"{V}/sobjects/Lead/not-an-id", {"json": {}}),
    ("PATCH", f"{V}/sobjects/Lead/{LEAD_ID}", {"json": {"Id": "00Q5g0000000002EAA"}}),
    ("PATCH", f"{V}/sobjects/Lead/Email/a@b.example", {"json": {}}),
    ("PATCH", f"{V}/composite/sobjects", {"json": {"records": "nope"}}),
    ("PATCH", f"{V}/composite/sobjects/Task/Detente_Key__c", {"json": {"records": [
        {"attributes": {"type": "Task"}, "Detente_Key__c": {"x": 1}}, 7, None]}}),
    ("POST", f"{V}/composite/sobjects", {"json": {"allOrNone": "yes", "records": []}}),
    ("DELETE", f"{V}/composite/sobjects", {}),
    ("GET", f"{V}/composite/sobjects/Lead", {"params": {"ids": LEAD_ID}}),
    ("POST", f"{V}/jobs/query", {"json": {"operation": "query", "query": "SELECT COUNT() FROM Lead"}}),
    ("GET", f"{V}/jobs/query/750nope/results", {"params": {"locator": "!!"}}),
    ("POST", "/services/oauth2/token", {"data": b"\xff=\xfe&grant_type=password"}),
])
def test_odd_requests_never_get_a_500_and_errors_keep_salesforce_shape(
    sfsb: Sandbox, method: str, path: str, kw: Any
) -> None:
    response = raw(sfsb, method, path, **kw)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert ("error" in body) if isinstance(body, dict) else ("errorCode" in body[0])


def test_any_api_version_with_or_without_trailing_slash(sfsb: Sandbox) -> None:
    token = sf_token(sfsb)["access_token"]
    for path in ("/services/data/v52.0/limits", "/services/data/v61.0/limits/", "/services/data/v59.0/sobjects/Lead/"):
        assert raw(sfsb, "GET", path, token=token).status_code == 200, path
    assert raw(sfsb, "GET", "/services/data/vX/limits", token=token).status_code == 404


# -- sObject Collections ------------------------------------------------------------------


def collection(sf: Salesforce, method: str, body: Any, path: str = "composite/sobjects") -> Any:
    return sf.restful(path, method=method, json=body)


def task(subject: str, **fields: Any) -> dict[str, Any]:
    return {"attributes": {"type": "Task"}, "Subject": subject, **fields}


def test_collection_create_reports_each_record_in_request_order(sf: Salesforce) -> None:
    results = collection(sf, "POST", {"allOrNone": False, "records": [
        task("Coll ok 1"), task("Coll bad", Status="Nope"), task("Coll ok 2")]})
    assert [r["success"] for r in results] == [True, False, True]
    assert results[1]["id"] is None
    assert results[1]["errors"][0]["statusCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert results[1]["errors"][0]["fields"] == ["Status"]
    assert sf.Task.get(results[2]["id"])["Subject"] == "Coll ok 2"


def test_collection_update_reports_each_record(sf: Salesforce) -> None:
    ok, gone = new_lead(sf), new_lead(sf)
    sf.Lead.delete(gone)
    results = collection(sf, "PATCH", {"records": [
        {"attributes": {"type": "Lead"}, "Id": ok, "Rating": "Warm"},
        {"attributes": {"type": "Lead"}, "Id": gone, "Rating": "Warm"},
        {"attributes": {"type": "Lead"}, "Rating": "Warm"}]})
    assert [r["success"] for r in results] == [True, False, False]
    assert [r["errors"][0]["statusCode"] for r in results[1:]] == ["ENTITY_IS_DELETED", "MISSING_ARGUMENT"]
    assert sf.Lead.get(ok)["Rating"] == "Warm"


def test_collection_upsert_reports_created_flags(sf: Salesforce) -> None:
    path = "composite/sobjects/Task/Detente_Key__c"
    collection(sf, "PATCH", {"records": [task("first", Detente_Key__c="coll-a")]}, path)
    results = collection(sf, "PATCH", {"allOrNone": False, "records": [
        task("again", Detente_Key__c="coll-a"), task("new", Detente_Key__c="coll-b")]}, path)
    assert [(r["success"], r["created"]) for r in results] == [(True, False), (True, True)]


def test_all_or_none_rolls_back_every_record(sf: Salesforce) -> None:
    before = sf.query("SELECT COUNT() FROM Task WHERE Subject LIKE 'Atomic%'")["totalSize"]
    results = collection(sf, "POST", {"allOrNone": True, "records": [
        task("Atomic 1"), task("Atomic 2", Priority="Urgent"), task("Atomic 3")]})
    assert [r["success"] for r in results] == [False, False, False]
    assert [r["errors"][0]["statusCode"] for r in results] == [
        "ALL_OR_NONE_OPERATION_ROLLED_BACK", "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        "ALL_OR_NONE_OPERATION_ROLLED_BACK"]
    assert sf.query("SELECT COUNT() FROM Task WHERE Subject LIKE 'Atomic%'")["totalSize"] == before


def test_more_than_200_records_is_400_exceeded_id_limit(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        collection(sf, "POST", {"records": [task(f"Many {i}") for i in range(201)]})
    assert caught.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_collection_delete_by_ids(sf: Salesforce) -> None:
    doomed = new_lead(sf)
    results = sf.restful("composite/sobjects", method="DELETE", params={"ids": f"{doomed},001nonsense"})
    assert [r["success"] for r in results] == [True, False]
    assert sf.query(f"SELECT COUNT() FROM Lead WHERE Id = '{doomed}'")["totalSize"] == 0


def test_collection_retrieve_by_ids_and_fields(sf: Salesforce) -> None:
    lead = new_lead(sf, Email="retrieve@x.example")
    got = sf.restful("composite/sobjects/Lead", params={"ids": f"{lead},00Q5g00000ZZZZZEAA", "fields": "Email"})
    assert got[0]["Email"] == "retrieve@x.example" and got[1] is None


def test_partial_batch_failure_fault_fails_records_with_unable_to_lock_row(sfsb: Sandbox, sf: Salesforce) -> None:
    control(sfsb, "faults", {"partial_batch_failures": 0.5, "seed": 3})
    results = collection(sf, "POST", {"records": [task(f"Flaky {i}") for i in range(20)]})
    failed = [r for r in results if not r["success"]]
    assert 0 < len(failed) < 20
    assert {r["errors"][0]["statusCode"] for r in failed} == {"UNABLE_TO_LOCK_ROW"}
    control(sfsb, "faults", {})
    written = sf.query("SELECT COUNT() FROM Task WHERE Subject LIKE 'Flaky %'")["totalSize"]
    assert written == 20 - len(failed)


# -- faults, limits and the clock ----------------------------------------------------------


def test_rate_limit_is_429_with_retry_after(sfsb: Sandbox, sf: Salesforce) -> None:
    control(sfsb, "faults", {"rate_limited": 1.0, "retry_after_seconds": 3})
    seen = responses_of(sf)
    with pytest.raises(SalesforceGeneralError) as caught:
        sf.query("SELECT Id FROM Lead LIMIT 1")
    assert caught.value.status == 429 and caught.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    assert seen[-1].headers["Retry-After"] == "3"


def test_rate_limit_without_retry_after_has_no_header(sfsb: Sandbox, sf: Salesforce) -> None:
    control(sfsb, "faults", {"rate_limited": 1.0, "without_retry_after": 1.0})
    seen = responses_of(sf)
    with pytest.raises(SalesforceGeneralError) as caught:
        sf.query("SELECT Id FROM Lead LIMIT 1")
    assert caught.value.status == 429 and "Retry-After" not in seen[-1].headers


def test_server_error_is_5xx_server_unavailable(sfsb: Sandbox, sf: Salesforce) -> None:
    control(sfsb, "faults", {"server_errors": 1.0})
    with pytest.raises(SalesforceGeneralError) as caught:
        sf.query("SELECT Id FROM Lead LIMIT 1")
    assert caught.value.status in {500, 502, 503}
    assert caught.value.content[0]["errorCode"] == "SERVER_UNAVAILABLE"


def test_slow_response_times_out_a_client_that_set_a_timeout(sfsb: Sandbox, sf: Salesforce) -> None:
    control(sfsb, "faults", {"slow": 1.0, "slow_seconds": 1.0})
    with pytest.raises(requests.exceptions.Timeout):
        sf.query("SELECT Id FROM Lead LIMIT 1", timeout=0.3)


def test_daily_quota_exhausted_is_403_request_limit_exceeded(sfsb: Sandbox, sf: Salesforce) -> None:
    control(sfsb, "faults", {"daily_limit": 2})
    sf.query("SELECT Id FROM Lead LIMIT 1")
    sf.query("SELECT Id FROM Lead LIMIT 1")
    with pytest.raises(SalesforceRefusedRequest) as caught:
        sf.query("SELECT Id FROM Lead LIMIT 1")
    assert caught.value.content == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]


def test_api_usage_is_parsed_from_the_limit_info_header(sfsb: Sandbox, sf: Salesforce) -> None:
    control(sfsb, "faults", {"daily_limit": 500})
    sf.query("SELECT Id FROM Lead LIMIT 1")
    sf.query("SELECT Id FROM Lead LIMIT 1")
    usage = sf.api_usage["api-usage"]
    assert (usage.used, usage.total) == (stats(sfsb)["calls_today"], 500)


def test_error_responses_carry_the_limit_header_too(sfsb: Sandbox) -> None:
    response = raw(sfsb, "GET", "/services/data/v59.0/query", params={"q": "SELECT Nope FROM Lead"})
    assert response.status_code == 400 and response.headers["Sforce-Limit-Info"].startswith("api-usage=")


def test_limits_reports_daily_api_requests(sfsb: Sandbox, sf: Salesforce) -> None:
    limits = sf.limits()
    daily = limits["DailyApiRequests"]
    assert daily["Max"] == 100_000 and daily["Remaining"] == 100_000 - stats(sfsb)["calls_today"]
    assert "DailyBulkV2QueryJobs" in limits


def test_frozen_clock_sets_system_modstamp(sfsb: Sandbox, sf: Salesforce) -> None:
    frozen = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
    freeze(sfsb, frozen)
    lead = new_lead(sf)
    assert sf.Lead.get(lead)["SystemModstamp"] == "2026-03-04T05:06:07.890+0000"
    freeze(sfsb, frozen + timedelta(minutes=1))
    sf.Lead.update(lead, {"Rating": "Cold"})
    assert sf.Lead.get(lead)["SystemModstamp"] == "2026-03-04T05:07:07.890+0000"


# -- change feeds ---------------------------------------------------------------------------


def test_get_updated_covers_whole_minutes_up_to_the_clock(sfsb: Sandbox, sf: Salesforce) -> None:
    """Seconds are truncated: a change shows once the clock has passed its minute."""
    at = datetime.now(UTC).replace(second=30, microsecond=0)
    freeze(sfsb, at)
    lead = new_lead(sf)
    window = (at - timedelta(minutes=5), at + timedelta(minutes=5))
    early = sf.Lead.updated(*window)
    freeze(sfsb, at + timedelta(minutes=2))
    late = sf.Lead.updated(*window)
    assert lead not in early["ids"] and early["latestDateCovered"] == sf_datetime(at.replace(second=0))
    assert lead in late["ids"]


def test_get_deleted_lists_a_deleted_record(sfsb: Sandbox, sf: Salesforce) -> None:
    at = datetime.now(UTC).replace(second=10, microsecond=0)
    freeze(sfsb, at)
    lead = new_lead(sf)
    sf.Lead.delete(lead)
    freeze(sfsb, at + timedelta(minutes=1))
    got = sf.Lead.deleted(at - timedelta(minutes=5), at + timedelta(minutes=5))
    assert {"id": lead, "deletedDate": sf_datetime(at)} in got["deletedRecords"]
    assert got["earliestDateAvailable"] < sf_datetime(at)


@pytest.mark.parametrize(("feed", "days"), [("updated", 31), ("deleted", 16)])
def test_feed_start_before_its_window_is_invalid_replication_date(sf: Salesforce, feed: str, days: int) -> None:
    now = datetime.now(UTC)
    with pytest.raises(SalesforceMalformedRequest) as caught:
        getattr(sf.Lead, feed)(now - timedelta(days=days), now)
    assert caught.value.content[0]["errorCode"] == "INVALID_REPLICATION_DATE"


# -- Bulk API 2.0 -----------------------------------------------------------------------------


def bulk_rows(sf: Salesforce, soql: str, max_records: int = 50_000) -> list[list[dict[str, str]]]:
    chunks = sf.bulk2.Lead.query(soql, max_records=max_records, wait=0)
    return [list(csv.DictReader(io.StringIO(str(chunk)))) for chunk in chunks]


def test_bulk2_query_returns_the_same_rows_as_rest(sf: Salesforce) -> None:
    soql = "SELECT Id, LastName, Owner.Email FROM Lead WHERE LastName LIKE 'Seed00%'"
    [chunk] = bulk_rows(sf, soql)
    rest = sf.query_all(soql)["records"]
    assert [(r["Id"], r["LastName"], r["Owner.Email"]) for r in chunk] == [
        (r["Id"], r["LastName"], (r["Owner"] or {}).get("Email") or "") for r in rest]


def test_bulk2_query_pages_by_max_records_with_locators(sf: Salesforce) -> None:
    total = sf.query("SELECT COUNT() FROM Lead")["totalSize"]
    chunks = bulk_rows(sf, "SELECT Id FROM Lead", max_records=1000)
    assert [len(c) for c in chunks] == [1000, 1000, total - 2000]


JOBS = "/services/data/v59.0/jobs/query"


def test_bulk2_results_are_quoted_csv_with_headers_and_no_nulls(sfsb: Sandbox) -> None:
    soql = "SELECT LastName, Email, IsConverted, OwnerId FROM Lead WHERE LastName = 'Seed0000'"
    job = raw(sfsb, "POST", JOBS, json={"operation": "query", "query": soql}).json()
    assert job["state"] == "UploadComplete"
    assert raw(sfsb, "GET", f"{JOBS}/{job['id']}").json()["state"] == "JobComplete"
    result = raw(sfsb, "GET", f"{JOBS}/{job['id']}/results")
    assert result.text == '"LastName","Email","IsConverted","OwnerId"\n"Seed0000","seed0@seed.example","false",""\n'
    assert (result.headers["Sforce-Locator"], result.headers["Sforce-NumberOfRecords"]) == ("null", "1")


def test_bulk2_job_can_be_aborted_then_deleted(sfsb: Sandbox) -> None:
    job = raw(sfsb, "POST", JOBS, json={"operation": "queryAll", "query": "SELECT Id FROM Lead"}).json()
    aborted = raw(sfsb, "PATCH", f"{JOBS}/{job['id']}", json={"state": "Aborted"}).json()
    assert aborted["state"] == "Aborted"
    assert raw(sfsb, "DELETE", f"{JOBS}/{job['id']}").status_code == 204
    assert raw(sfsb, "GET", f"{JOBS}/{job['id']}").status_code == 404


def test_bulk2_invalid_query_is_rejected_when_the_job_is_created(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        list(sf.bulk2.Lead.query("SELECT Nope FROM Lead", wait=0))
    assert caught.value.content[0]["errorCode"] == "INVALID_FIELD"


# -- describe ------------------------------------------------------------------------------


def test_describe_global_lists_the_catalog(sf: Salesforce) -> None:
    described = sf.describe()
    assert described["maxBatchSize"] == 200
    assert {o["name"] for o in described["sobjects"]} == set(SALESFORCE_OBJECTS)
    lead = next(o for o in described["sobjects"] if o["name"] == "Lead")
    assert (lead["keyPrefix"], lead["queryable"], lead["createable"]) == ("00Q", True, True)


def test_describe_object_fields_follow_the_catalog(sf: Salesforce) -> None:
    fields = {f["name"]: f for f in sf.Lead.describe()["fields"]}
    assert list(fields) == [f.name for f in LEAD.fields]
    assert [p["value"] for p in fields["Status"]["picklistValues"]] == list(SALESFORCE_LEAD_STATUSES)
    assert fields["OwnerId"]["referenceTo"] == ["User"] and fields["OwnerId"]["relationshipName"] == "Owner"
    assert fields["IsConverted"]["updateable"] is False and fields["Detente_Reason__c"]["filterable"] is False


def test_sobject_basic_info(sf: Salesforce) -> None:
    info = sf.Task.metadata()
    assert info["objectDescribe"]["name"] == "Task" and info["recentItems"] == []


def test_record_count_leaves_out_the_recycle_bin_and_history_objects(sfsb: Sandbox, sf: Salesforce) -> None:
    answer = sf.restful("limits/recordCount", params={"sObjects": "Lead,LeadHistory,Contact,Nothing__c"})
    counts = {item["name"]: item["count"] for item in answer["sObjects"]}
    live = sf.query("SELECT COUNT() FROM Lead")["totalSize"]
    assert counts == {"Lead": live, "Contact": sf.query("SELECT COUNT() FROM Contact")["totalSize"]}
    assert sf.query("SELECT COUNT() FROM Lead", include_deleted=True)["totalSize"] > live
    everything = sf.restful("limits/recordCount")
    assert {item["name"] for item in everything["sObjects"]} >= {"Lead", "Task", "Account"}


def _composite(sf: Salesforce, subs: list[dict[str, str]], all_or_none: bool = False) -> list[dict[str, Any]]:
    answer = sf.restful("composite", method="POST", json={"allOrNone": all_or_none, "compositeRequest": subs})
    return list(answer["compositeResponse"])


def test_composite_answers_describes_and_queries_as_one_call(sfsb: Sandbox, sf: Salesforce) -> None:
    before = stats(sfsb)["total_calls"]
    v = sf.sf_version
    answers = _composite(sf, [
        {"method": "GET", "url": f"/services/data/v{v}/sobjects/Lead/describe", "referenceId": "lead"},
        {"method": "GET", "url": f"/services/data/v{v}/sobjects/Task/describe", "referenceId": "task"},
        {"method": "GET", "url": f"/services/data/v{v}/queryAll?q=SELECT+COUNT()+FROM+Lead", "referenceId": "n"},
        {"method": "GET", "url": f"/services/data/v{v}/sobjects/Nope/describe", "referenceId": "nope"},
        {"method": "GET", "url": f"/services/data/v{v}/query?q=SELECT+Id+FROM+Lead+ORDER+BY+Id", "referenceId": "q"},
    ])
    assert stats(sfsb)["total_calls"] == before + 1
    assert [a["referenceId"] for a in answers] == ["lead", "task", "n", "nope", "q"]
    assert answers[0]["httpStatusCode"] == 200 and answers[0]["body"] == sf.Lead.describe()
    assert answers[1]["body"]["name"] == "Task"
    assert answers[2]["body"]["totalSize"] == sf.query("SELECT COUNT() FROM Lead", include_deleted=True)["totalSize"]
    assert answers[3]["httpStatusCode"] == 404 and answers[3]["body"][0]["errorCode"] == "NOT_FOUND"
    page = answers[4]["body"]
    assert len(page["records"]) == 2000 and not page["done"]
    live = sf.query("SELECT COUNT() FROM Lead")["totalSize"]
    assert len(sf.query_more(page["nextRecordsUrl"], identifier_is_url=True)["records"]) == live - 2000


def test_composite_all_or_none_halts_after_a_failure(sf: Salesforce) -> None:
    v = sf.sf_version
    answers = _composite(sf, [
        {"method": "GET", "url": f"/services/data/v{v}/sobjects/Nope/describe", "referenceId": "nope"},
        {"method": "GET", "url": f"/services/data/v{v}/sobjects/Lead/describe", "referenceId": "lead"},
    ], all_or_none=True)
    assert [a["httpStatusCode"] for a in answers] == [404, 400]
    assert answers[1]["body"][0]["errorCode"] == "PROCESSING_HALTED"


@pytest.mark.parametrize(("subs", "message"), [
    ([], "non-empty list"),
    ([{"method": "GET", "url": "/services/data/v59.0/sobjects/Lead/describe", "referenceId": f"r{i}"}
      for i in range(26)], "at most 25 subrequests"),
    ([{"method": "GET", "url": "/services/data/v59.0/query?q=SELECT+Id+FROM+Lead", "referenceId": f"r{i}"}
      for i in range(6)], "at most 5 query subrequests"),
])
def test_composite_refuses_what_salesforce_refuses(sf: Salesforce, subs: list[dict[str, str]], message: str) -> None:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        _composite(sf, subs)
    assert message in str(caught.value.content)


def test_composite_subrequests_outside_the_sandbox_s_reach_are_refused_one_by_one(sf: Salesforce) -> None:
    v = sf.sf_version
    answers = _composite(sf, [
        {"method": "PATCH", "url": f"/services/data/v{v}/sobjects/Lead/describe", "referenceId": "patch"},
        {"method": "GET", "url": f"/services/data/v{v}/limits", "referenceId": "limits"},
        {"method": "GET", "url": "/services/data/v1.0/sobjects/Lead/describe", "referenceId": "version"},
        {"method": "GET", "url": f"/services/data/v{v}/sobjects/Lead/describe"},
    ])
    assert [a["httpStatusCode"] for a in answers] == [405, 404, 400, 400]
