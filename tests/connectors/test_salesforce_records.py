# ruff: noqa: F401, F811 - the fixtures are imported from sf_support
"""Bad data from the API is quarantined with a reason that names the field and the value's
shape (never the value), and the page goes on."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from detente.connectors.base import Record, Reject
from detente.connectors.sf_records import SLOW, FieldSpec, ObjectSchema, convert, parse_csv, parse_row, quick
from detente.pull import pull
from detente.sandbox.server import Sandbox
from detente.store.raw import QUARANTINE
from tests.connectors.sf_support import (
    LEAD,
    T0,
    _close_connectors,
    assert_store_matches,
    connector,
    insert,
    leads,
    sf,
    sf_server,
    stored_rows,
)

SCHEMA = ObjectSchema("Lead", (
    FieldSpec("Id", "id", 18), FieldSpec("IsDeleted", "boolean"), FieldSpec("LastName", "string", 80),
    FieldSpec("Status", "picklist", 255, frozenset({"Open", "Working"})), FieldSpec("NumberOfEmployees", "int"),
    FieldSpec("Lead_Score__c", "double"), FieldSpec("ConvertedDate", "date"),
    FieldSpec("Description", "textarea", 32000), FieldSpec("SystemModstamp", "datetime"),
))
GOOD: dict[str, Any] = {
    "attributes": {"type": "Lead"}, "Id": "00Q5g0000000001AAA", "IsDeleted": False, "LastName": "Okafor",
    "Status": "Open", "NumberOfEmployees": 12, "Lead_Score__c": 40, "ConvertedDate": None,
    "Description": "line\nbreak\tand \x07 bell", "SystemModstamp": "2026-11-17T15:00:00.000+0000",
}


def _reason(**bad: Any) -> str:
    row = parse_row(SCHEMA, {**GOOD, **bad})
    assert isinstance(row, Reject)
    for value in bad.values():
        if isinstance(value, str) and len(value) > 3:
            assert value not in row.reason  # the shape, never the value
    return row.reason


def test_a_good_row_becomes_a_typed_record_and_control_characters_are_fine() -> None:
    record = parse_row(SCHEMA, GOOD)
    assert isinstance(record, Record)
    assert record.data["Lead_Score__c"] == 40.0 and isinstance(record.data["Lead_Score__c"], float)
    assert record.data["Description"] == GOOD["Description"] and "attributes" not in record.data
    assert record.modified_at == T0


def test_each_kind_of_bad_value_is_named_with_its_shape() -> None:
    assert _reason(Id=None) == "Lead.Id: missing"
    assert _reason(SystemModstamp="last Tuesday") == (
        "Lead.SystemModstamp: expected a datetime, got a string of 12 characters"
    )
    assert _reason(NumberOfEmployees="about forty") == (
        "Lead.NumberOfEmployees: expected an integer, got a string of 11 characters"
    )
    assert _reason(IsDeleted="nope") == "Lead.IsDeleted: expected a boolean, got a string of 4 characters"
    assert _reason(Status="Hot Prospect") == (
        "Lead.Status: not a value of the restricted picklist (a string of 12 characters)"
    )
    assert _reason(LastName="x" * 81) == "Lead.LastName: 81 characters, longer than the field's 80"
    assert _reason(LastName="Ok\x00afor") == "Lead.LastName: contains a NUL byte (a string of 7 characters)"
    assert _reason(ConvertedDate="2026-02-30") == "Lead.ConvertedDate: expected a date, got a string of 10 characters"
    assert _reason(Lead_Score__c={"a": 1}) == "Lead.Lead_Score__c: expected a number, got an object"


def test_every_problem_of_a_row_is_reported_and_a_row_without_id_gets_a_stable_one() -> None:
    reason = _reason(Status="Nope", NumberOfEmployees=1.5)
    assert "Lead.Status" in reason and "Lead.NumberOfEmployees" in reason
    first = parse_row(SCHEMA, {**GOOD, "Id": None})
    again = parse_row(SCHEMA, {**GOOD, "Id": None})
    assert isinstance(first, Reject) and isinstance(again, Reject)
    assert first.id == again.id and first.id.startswith("no-id-")


def test_nul_bytes_are_kept_out_of_the_quarantined_payload() -> None:
    row = parse_row(SCHEMA, {**GOOD, "LastName": "a\x00b"})
    assert isinstance(row, Reject) and row.payload["LastName"] == "a\ufffdb" and "attributes" not in row.payload


def test_a_bulk_csv_row_parses_to_the_same_record_as_rest() -> None:
    csv_text = (
        '"Id","IsDeleted","LastName","Status","NumberOfEmployees","Lead_Score__c","ConvertedDate","Description",'
        '"SystemModstamp"\n'
        '"00Q5g0000000001AAA","false","Okafor","Open","12","40","","line\nbreak\tand \x07 bell",'
        '"2026-11-17T15:00:00.000Z"\n'
    )
    [row] = parse_csv(SCHEMA, csv_text)
    assert row == parse_row(SCHEMA, GOOD)


def test_bad_rows_served_by_the_api_are_quarantined_and_the_pull_goes_on(store: Engine, sf: Sandbox) -> None:
    ids = insert(sf, LEAD, leads(6), T0 - timedelta(minutes=5))
    with sf.world.transaction() as c:  # values the API should never serve, written behind its back
        c.execute('UPDATE "sf_Lead" SET "NumberOfEmployees" = ? WHERE "Id" = ?', ("lots", ids[1]))
        c.execute('UPDATE "sf_Lead" SET "Status" = ? WHERE "Id" = ?', ("Hot Prospect", ids[2]))
        c.execute('UPDATE "sf_Lead" SET "Email" = ? WHERE "Id" = ?', ("a\x00@example.com", ids[3]))
        c.execute('UPDATE "sf_Lead" SET "Title" = ? WHERE "Id" = ?', ("t" * 200, ids[4]))
    report = pull(store, connector(sf, objects=("Lead",)), now=T0)
    assert (report.objects[0].fetched, report.objects[0].quarantined) == (2, 4)
    with store.connect() as conn:
        reasons = dict(conn.execute(select(QUARANTINE.c.record_id, QUARANTINE.c.reason)).all())
    assert reasons == {
        ids[1]: "Lead.NumberOfEmployees: expected an integer, got a string of 4 characters",
        ids[2]: "Lead.Status: not a value of the restricted picklist (a string of 12 characters)",
        ids[3]: "Lead.Email: contains a NUL byte (a string of 14 characters)",
        ids[4]: "Lead.Title: 200 characters, longer than the field's 128",
    }
    assert set(stored_rows(store, "Lead")) == {ids[0], ids[5]}
    # Once the data is fixed at the source, the next pull stores the records.
    with sf.world.transaction() as c:
        c.execute('UPDATE "sf_Lead" SET "NumberOfEmployees" = 5, "Status" = \'Open - Not Contacted\','
                  ' "Email" = NULL, "Title" = NULL')
    sf.world.sf_update(LEAD, ids[0], {"Title": "CEO"}, T0)
    for rid in ids[1:5]:
        sf.world.sf_update(LEAD, rid, {"Title": "Fixed"}, T0)
    pull(store, connector(sf, objects=("Lead",)), now=T0 + timedelta(seconds=1))
    assert_store_matches(store, sf, ("Lead",))


# -- the quick converters agree with convert ------------------------------------------------------

KINDS = [FieldSpec("Id", "id", 18), FieldSpec("WhoId", "reference", 18), FieldSpec("Name", "string", 12),
         FieldSpec("Status", "picklist", 255, frozenset({"Open", "Working"})),
         FieldSpec("Tags", "multipicklist", 255, frozenset({"a", "b"})), FieldSpec("Note", "textarea", 0),
         FieldSpec("At", "time"), FieldSpec("Flag", "boolean"), FieldSpec("N", "int"), FieldSpec("Big", "long"),
         FieldSpec("Score", "double"), FieldSpec("Cost", "currency"), FieldSpec("When", "datetime"),
         FieldSpec("Day", "date"), FieldSpec("Old", "anyType")]
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.sampled_from(["", "true", "false", "True", "1", "-3", "1e400", "nan", " 7 ", "1_0",
                                           "Open", "Closed", "a;b", "00Q5g0000000001AAA", "00Q5g00000000",
                                           "2026-11-17T15:00:00.000+0000", "2026-11-17T15:00:00.000Z",
                                           "2026-13-17T15:00:00.000Z", "2026-11-17T15:00:00+0200",
                                           "0000-01-01T00:00:00.000Z", "2026-02-30", "2026-02-28", "x\x00y"]),
    st.sampled_from([10**400, -(10**400), 2**63, 1.0e308]), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=1))


@settings(max_examples=400, deadline=None)
@given(spec=st.sampled_from(KINDS), value=VALUES, text=st.booleans())
def test_a_quick_converter_gives_what_convert_gives_or_defers_to_it(spec: FieldSpec, value: Any, text: bool) -> None:
    got = quick(spec, text)(value)
    if got is not SLOW:
        assert (got, None) == convert(spec, value, text=text)
        assert type(got) is type(convert(spec, value, text=text)[0])


def test_common_values_take_the_quick_path() -> None:
    assert quick(FieldSpec("When", "datetime"), True)("2026-11-17T15:00:00.000Z") == "2026-11-17T15:00:00.000+0000"
    assert quick(FieldSpec("Flag", "boolean"), True)("true") is True
    assert quick(FieldSpec("Score", "double"), False)(40) == 40.0
    assert quick(FieldSpec("Name", "string", 12), False)("Okafor") == "Okafor"
    assert quick(FieldSpec("Name", "string", 3), False)("Okafor") is SLOW  # too long: convert says why
