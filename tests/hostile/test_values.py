"""Hostile raw values in the normalizer: each typed reader returns its type or raises
``BadRecord`` naming the field (never the value), and a record reader (view, links,
opportunity, activity, owner) does the same for a whole record, so the normalizer can
quarantine it; nothing else escapes."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from detente.normalize import values as v
from detente.normalize.activities import read_activity
from detente.normalize.batches import RawRow
from detente.normalize.links import associations, read_link
from detente.normalize.mapping import DEFAULT
from detente.normalize.opportunities import validate
from detente.normalize.owners import read_owner
from detente.normalize.profile import read_view
from tests.hostile.strategies import (
    FAST,
    day_only,
    epoch_instants,
    epoch_ms,
    instants,
    iso_z,
    iso_z_millis,
    json_values,
    sf_millis,
    short_text,
    without_value,
)

T0 = datetime(2026, 11, 16, 15, 0, tzinfo=UTC)
NAME = "Some_Field__c"


def _is_utc(moment: datetime) -> bool:
    offset = moment.utcoffset()
    return offset is not None and offset.total_seconds() == 0


def _checked(reader: Callable[[Any, str], Any], value: Any) -> Any:
    """The reader's result, or None after checking its BadRecord names the field and not the value."""
    try:
        return reader({NAME: value}, NAME)
    except v.BadRecord as exc:
        assert str(exc).startswith(f"{NAME}: "), exc
        assert without_value(str(exc), value)
        return None


# -- single values --------------------------------------------------------------------------


@FAST
@given(json_values)
def test_text_is_a_stripped_non_empty_string_or_a_named_bad_record(value: Any) -> None:
    out = _checked(v.text, value)
    assert out is None or (isinstance(out, str) and out == out.strip() and out)


@FAST
@given(json_values)
@example(10**400)  # OverflowError: an integer past any float
@example(-(10**400))
def test_number_is_a_finite_float_or_a_named_bad_record(value: Any) -> None:
    out = _checked(v.number, value)
    assert out is None or (type(out) is float and math.isfinite(out))


@FAST
@given(json_values)
def test_boolean_is_a_bool_or_a_named_bad_record(value: Any) -> None:
    assert _checked(v.boolean, value) in (None, True, False)


@FAST
@given(json_values)
@example("0001-01-01T00:00:00+01:00")  # OverflowError converting to UTC
@example("9999-12-31T23:59:59-01:00")
def test_instant_is_an_aware_utc_datetime_or_a_named_bad_record(value: Any) -> None:
    out = _checked(v.instant, value)
    assert out is None or (isinstance(out, datetime) and _is_utc(out))


@FAST
@given(json_values)
@example("0001-01-01T00:00:00+01:00")
def test_day_is_a_date_or_a_named_bad_record(value: Any) -> None:
    out = _checked(v.day, value)
    assert out is None or type(out) is date


@FAST
@given(json_values)
def test_salesforce_id_is_15_or_18_ascii_alphanumerics_or_a_named_bad_record(value: Any) -> None:
    out = _checked(v.salesforce_id, value)
    assert out is None or (out.isascii() and out.isalnum() and len(out) in (15, 18))


@FAST
@given(json_values)
@example("²")  # ValueError: isdigit() took it, int() did not
@example("1" * 5000)  # ValueError: int() of more than 4300 digits
def test_hubspot_id_is_ascii_digits_or_a_named_bad_record(value: Any) -> None:
    out = _checked(lambda data, name: v.hubspot_id(data[name], name), value)
    assert out is None or (out.isascii() and out.isdigit())


@FAST
@given(short_text)
def test_normal_email_is_lower_case_with_one_side_each_of_an_at(value: str) -> None:
    out = v.normal_email(value)
    if out is not None:
        local, _, domain = out.rpartition("@")
        assert out == out.strip().lower() and local and domain and " " not in out


@FAST
@given(st.one_of(instants.map(lambda m: (m, sf_millis(m))),
                 instants.map(lambda m: (m.replace(microsecond=0), iso_z(m))),
                 instants.map(lambda m: (m, iso_z_millis(m))),
                 epoch_instants.map(lambda m: (m, str(epoch_ms(m)))),
                 instants.map(lambda m: (datetime.combine(m.date(), time(), tzinfo=UTC), day_only(m)))))
@example((datetime(2243, 1, 1, 0, 0, 0, 1000, tzinfo=UTC), "8615030400001")).via(
    "epoch ms divided as a float read a microsecond early")
def test_instants_in_every_crm_spelling_read_as_the_same_utc_moment(case: tuple[datetime, str]) -> None:
    expected, text = case
    got = v.instant({NAME: text}, NAME)
    assert got == expected and got is not None and _is_utc(got)
    assert v.day({NAME: text}, NAME) == expected.date()


# -- whole records --------------------------------------------------------------------------

SF_LEAD = {"Id": "00Q5g0000000001AAA", "Email": "Ann@Acme.com", "FirstName": "Ann", "LastName": "Lee",
           "OwnerId": "0055g0000000001AAA", "Status": "Open", "IsConverted": False,
           "CreatedDate": "2026-11-01T09:30:00.000+0000", "LastModifiedDate": "2026-11-16T15:00:00.000+0000",
           "SystemModstamp": "2026-11-16T15:00:00.000+0000", "ConvertedContactId": None}
SF_OPPORTUNITY = {"Id": "0065g0000000001AAA", "Name": "Big deal", "StageName": "Prospecting", "Amount": 1200.5,
                  "CloseDate": "2026-12-01", "IsClosed": False, "IsWon": False, "OwnerId": "0055g0000000001AAA",
                  "CreatedDate": "2026-11-01T09:30:00.000+0000", "CampaignId": None}
SF_TASK = {"Id": "00T5g0000000001AAA", "Subject": "Call", "OwnerId": "0055g0000000001AAA", "TaskSubtype": "Call",
           "WhoId": "00Q5g0000000001AAA", "ActivityDate": "2026-11-16", "Status": "Completed",
           "CreatedDate": "2026-11-01T09:30:00.000+0000"}
SF_USER = {"Id": "0055g0000000001AAA", "Email": "ann@acme.com", "Name": "Ann Lee", "IsActive": True}
HS_CONTACT = {"email": "ann@acme.com", "firstname": "Ann", "lifecyclestage": "lead", "hubspot_owner_id": "11",
              "createdate": "2026-11-01T09:30:00.000Z", "hs_lastmodifieddate": "2026-11-16T15:00:00.000Z",
              "lastmodifieddate": "2026-11-16T15:00:00.000Z", "salesforceleadid": "00Q5g0000000001AAA"}
HS_DEAL = {"dealname": "Big deal", "dealstage": "appointmentscheduled", "amount": "1200.50",
           "closedate": "2026-12-01T00:00:00Z", "hs_is_closed": "false", "hubspot_owner_id": "11",
           "createdate": "2026-11-01T09:30:00.000Z", "salesforceopportunityid": None}
HS_CALL = {"hs_timestamp": "2026-11-16T15:00:00.000Z", "hs_call_title": "Call", "hubspot_owner_id": "11",
           "hs_call_status": "COMPLETED"}


def _raw(system: str, obj: str, data: dict[str, Any], deleted: bool = False) -> RawRow:
    return RawRow(system, obj, "1", T0, deleted, None, data, T0)


def _hs(props: dict[str, Any], overrides: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {"id": "1", "createdAt": "2026-11-01T09:30:00.000Z",
                            "properties": {**props, **overrides},
                            "associations": {"contacts": ["5"], "companies": ["6"]}}
    return {**data, **top}


def _names_a_field(exc: v.BadRecord, names: set[str]) -> None:
    reason = str(exc)
    field = reason.partition(":")[0].removeprefix("history of ").partition(".")[0]
    assert reason and field in names | {"properties", "associations", "teams"}, reason


def _bad_or_ok(read: Callable[[], Any], names: set[str], values: Any) -> None:
    try:
        read()
    except v.BadRecord as exc:
        _names_a_field(exc, names)
        assert without_value(str(exc), values)


SF_CASES = [("Lead", SF_LEAD), ("Contact", SF_LEAD), ("Opportunity", SF_OPPORTUNITY), ("Task", SF_TASK),
            ("Event", SF_TASK), ("OpportunityContactRole", {**SF_OPPORTUNITY, "ContactId": None, "IsPrimary": True}),
            ("CampaignMember", {**SF_LEAD, "LeadId": None, "CampaignId": None, "FirstRespondedDate": None})]


def _sf_readers(obj: str) -> list[Callable[[RawRow], Any]]:
    readers: dict[str, list[Callable[[RawRow], Any]]] = {
        "Lead": [lambda r: read_view(r, DEFAULT), read_link], "Contact": [lambda r: read_view(r, DEFAULT), read_link],
        "Opportunity": [validate, read_link], "Task": [read_activity], "Event": [read_activity],
        "OpportunityContactRole": [read_link], "CampaignMember": [read_link],
    }
    return readers[obj]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(SF_CASES), st.data())
@example(("Opportunity", SF_OPPORTUNITY), {"Amount": 10**400}).via("an int past any float crashed number()")
def test_salesforce_records_are_read_or_bad_with_a_field_named(case: tuple[str, dict[str, Any]], data: Any) -> None:
    obj, good = case
    overrides = data if isinstance(data, dict) else data.draw(
        st.dictionaries(st.sampled_from(sorted({*good, "Email", "OwnerId", "CreatedDate"})), json_values, max_size=4))
    row = _raw("salesforce", obj, {**good, **overrides})
    for reader in _sf_readers(obj):
        _bad_or_ok(lambda: reader(row), set(overrides), overrides)  # noqa: B023 - called at once


HS_CASES = [("contacts", HS_CONTACT), ("deals", HS_DEAL), ("calls", HS_CALL)]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(HS_CASES), st.data())
@example(("contacts", HS_CONTACT), ({"hubspot_owner_id": "²"}, {})).via("int() refused a digit isdigit() took")
@example(("deals", HS_DEAL), ({"amount": 10**400}, {})).via("an int past any float crashed number()")
def test_hubspot_records_are_read_or_bad_with_a_field_named(case: tuple[str, dict[str, Any]], data: Any) -> None:
    obj, good = case
    if isinstance(data, tuple):
        overrides, top = data
    else:
        overrides = data.draw(st.dictionaries(st.sampled_from(sorted(good)), json_values, max_size=4))
        top = data.draw(st.dictionaries(st.sampled_from(["properties", "associations", "createdAt"]), json_values,
                                        max_size=1))
    row = _raw("hubspot", obj, _hs(good, overrides, top))
    readers: dict[str, list[Callable[[RawRow], Any]]] = {
        "contacts": [lambda r: read_view(r, DEFAULT), read_link, lambda r: associations(r, "companies")],
        "deals": [validate, read_link, lambda r: associations(r, "contacts")],
        "calls": [read_activity],
    }
    for reader in readers[obj]:
        _bad_or_ok(lambda: reader(row), {*overrides, *top}, [overrides, top])  # noqa: B023 - called at once


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["salesforce", "hubspot"]), st.dictionaries(
    st.sampled_from(["Email", "Name", "FirstName", "LastName", "IsActive", "Department", "email", "firstName",
                     "lastName", "teams", "archived"]), json_values, max_size=4))
def test_owners_are_read_or_bad_with_a_field_named(system: str, overrides: dict[str, Any]) -> None:
    good = SF_USER if system == "salesforce" else {"email": "ann@acme.com", "teams": [{"name": "A", "primary": True}]}
    row = _raw(system, "User" if system == "salesforce" else "owners", {**good, **overrides})
    _bad_or_ok(lambda: read_owner(row), set(overrides), overrides)


@pytest.mark.parametrize("system,obj,good", [("salesforce", "Lead", SF_LEAD), ("hubspot", "contacts", {})])
def test_a_deleted_record_that_cannot_be_read_still_yields_its_deletion(system: str, obj: str, good: Any) -> None:
    data = {**good, "Email": ["not", "text"]} if system == "salesforce" else {"properties": "not an object"}
    link = read_link(_raw(system, obj, data, deleted=True))
    assert link.deleted and link.seen_at == T0
