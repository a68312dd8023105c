"""Hostile API payloads: whatever Salesforce or HubSpot send in the fields a parser reads,
the parser returns a well-typed Record or a Reject whose reason names each bad field (never
its value), and never raises."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from detente.connectors.base import Record, Reject
from detente.connectors.hs_records import PropertyDef, build, merged_away, parse_instant
from detente.connectors.sf_records import FieldSpec, ObjectSchema, format_datetime, parse_csv, parse_row
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

# -- Salesforce -----------------------------------------------------------------------------

SF = ObjectSchema("Opportunity", (
    FieldSpec("Id", "id", 18), FieldSpec("SystemModstamp", "datetime"), FieldSpec("LastModifiedDate", "datetime"),
    FieldSpec("CreatedDate", "datetime"), FieldSpec("Email", "email", 80),
    FieldSpec("Status", "picklist", 40, frozenset({"Open", "Working"})), FieldSpec("OwnerId", "reference", 18),
    FieldSpec("IsDeleted", "boolean"), FieldSpec("Amount", "currency"), FieldSpec("CloseDate", "date"),
    FieldSpec("NumberOfEmployees", "int"), FieldSpec("Description", "textarea", 32_000),
    FieldSpec("NewValue", "anyType"),
))
SF_GOOD: dict[str, Any] = {
    "attributes": {"type": "Opportunity"}, "Id": "0065g0000000001AAA",
    "SystemModstamp": "2026-11-16T15:00:00.000+0000", "LastModifiedDate": "2026-11-16T15:00:00.000+0000",
    "CreatedDate": "2026-11-01T09:30:00.000+0000", "Email": "ann@acme.com", "Status": "Open",
    "OwnerId": "0055g0000000001AAA", "IsDeleted": False, "Amount": 1200.5, "CloseDate": "2026-12-01",
    "NumberOfEmployees": 40, "Description": "line\nbreak", "NewValue": "Working",
}
SF_FIELDS = [f.name for f in SF.fields]
sf_overrides = st.dictionaries(st.sampled_from([*SF_FIELDS, "Unknown__c"]), json_values, max_size=5)


def _sf_problem_fields(reason: str) -> list[str]:
    assert reason, "a reject needs a reason"
    fields = []
    for problem in reason.split("; "):
        obj, _, rest = problem.partition(".")
        assert obj == "Opportunity", problem
        fields.append(rest.partition(":")[0])
    return fields


def _assert_sf_record_typed(record: Record) -> None:
    data = record.data
    offset = record.modified_at.utcoffset()
    assert offset is not None and offset.total_seconds() == 0
    assert format_datetime(record.modified_at) == data["SystemModstamp"]
    for name in ("SystemModstamp", "LastModifiedDate", "CreatedDate"):
        if data.get(name) is not None:  # the canonical form, which reads back to itself
            assert parse_row(SF, {"Id": record.id, "SystemModstamp": data[name]}).modified_at is not None  # type: ignore[union-attr]
    assert data.get("IsDeleted") in (None, True, False)
    assert data.get("Amount") is None or (type(data["Amount"]) is float and math.isfinite(data["Amount"]))
    assert data.get("NumberOfEmployees") is None or type(data["NumberOfEmployees"]) is int
    if data.get("CloseDate") is not None:
        assert date.fromisoformat(data["CloseDate"]).isoformat() == data["CloseDate"]
    for name in ("Email", "Status", "OwnerId", "Description"):
        value = data.get(name)
        assert value is None or (isinstance(value, str) and "\x00" not in value)
    assert record.deleted is (data.get("IsDeleted") is True)


def _assert_storable(payload: Any) -> None:
    """A quarantined payload goes into a JSON column on PostgreSQL: no NUL, no NaN."""
    json.dumps(payload, allow_nan=False)
    assert "\\u0000" not in json.dumps(payload)


@FAST
@given(sf_overrides)
@example({"SystemModstamp": "0001-01-01T00:00:00+0100"})  # OverflowError converting to UTC
@example({"SystemModstamp": "0999-01-01T00:00:00.000+0000"})  # a year before 1000 did not read back
@example({"NumberOfEmployees": 10**400})  # OverflowError: an int past any float
@example({"Amount": -(10**400)})
@example({"Id": {"\x00": None}})  # a NUL in a key of the quarantined payload
def test_salesforce_rows_become_typed_records_or_rejects_naming_the_field(overrides: dict[str, Any]) -> None:
    raw = {**SF_GOOD, **overrides}
    row = parse_row(SF, raw)
    if isinstance(row, Record):
        _assert_sf_record_typed(row)
        assert row.id == raw["Id"]
    else:
        assert isinstance(row, Reject) and row.object == "Opportunity"
        assert set(_sf_problem_fields(row.reason)) <= set(overrides), row.reason
        assert without_value(row.reason, overrides)
        assert row.id and "\x00" not in row.id and len(row.id) <= 64
        _assert_storable(row.payload)


@FAST
@given(st.dictionaries(st.sampled_from(SF_FIELDS), json_values, max_size=4), st.sampled_from(SF_FIELDS))
def test_a_salesforce_row_missing_fields_is_rejected_for_the_id_or_stamp_only(
        overrides: dict[str, Any], dropped: str) -> None:
    raw = {k: x for k, x in {**SF_GOOD, **overrides}.items() if k != dropped}
    row = parse_row(SF, raw)
    if dropped in ("Id", "SystemModstamp"):
        assert isinstance(row, Reject) and f"Opportunity.{dropped}: missing" in row.reason
    if isinstance(row, Reject):
        assert set(_sf_problem_fields(row.reason)) <= {*overrides, dropped}, row.reason


csv_cells = st.text(st.characters() | st.sampled_from(["\x00", '"', ",", "\n", "\r"]), max_size=30)


@FAST
@given(st.dictionaries(st.sampled_from(SF_FIELDS), csv_cells, max_size=5), st.integers(-2, 2))
def test_bulk_csv_rows_become_typed_records_or_rejects_naming_the_field(
        overrides: dict[str, str], extra_cells: int) -> None:
    good = {k: ("" if x is None else str(x).lower() if isinstance(x, bool) else str(x))
            for k, x in SF_GOOD.items() if k != "attributes"}
    row = {**good, **overrides}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(row.keys())
    cells = list(row.values())
    writer.writerow(cells + ["x"] * extra_cells if extra_cells >= 0 else cells[:extra_cells])
    for parsed in parse_csv(SF, out.getvalue()):
        if isinstance(parsed, Record):
            _assert_sf_record_typed(parsed)
        else:
            assert parsed.reason and without_value(parsed.reason, overrides)
            _assert_storable(parsed.payload)


@FAST
@given(instants, st.sampled_from([sf_millis, iso_z]))
def test_salesforce_datetimes_in_every_api_spelling_read_as_the_same_utc_instant(moment: datetime, spell: Any) -> None:
    row = parse_row(SF, {**SF_GOOD, "SystemModstamp": spell(moment), "CloseDate": day_only(moment)})
    expected = moment.replace(microsecond=0) if spell is iso_z else moment
    assert isinstance(row, Record), row
    assert row.modified_at == expected and row.modified_at.tzinfo is UTC
    assert row.data["SystemModstamp"] == sf_millis(expected)
    assert row.data["CloseDate"] == day_only(moment)


@FAST
@given(instants, st.sampled_from(["SystemModstamp", "CreatedDate"]))
def test_a_salesforce_datetime_given_as_a_bare_date_is_rejected_naming_the_field(moment: datetime, name: str) -> None:
    row = parse_row(SF, {**SF_GOOD, name: day_only(moment)})
    assert isinstance(row, Reject) and row.reason.startswith(f"Opportunity.{name}: expected a datetime")


# -- HubSpot --------------------------------------------------------------------------------

MODIFIED = "hs_lastmodifieddate"
HS_DEFS = {
    "email": PropertyDef("email", "string", "text", None),
    "lifecyclestage": PropertyDef("lifecyclestage", "enumeration", "radio", frozenset({"lead", "customer"})),
    MODIFIED: PropertyDef(MODIFIED, "datetime", "date", None),
    "createdate": PropertyDef("createdate", "datetime", "date", None),
    "amount": PropertyDef("amount", "number", "number", None),
    "closedate": PropertyDef("closedate", "date", "date", None),
    "hs_is_closed": PropertyDef("hs_is_closed", "bool", "booleancheckbox", None),
    "hs_merged_object_ids": PropertyDef("hs_merged_object_ids", "enumeration", "checkbox", None),
}
HS_GOOD: dict[str, Any] = {
    "id": "101", "createdAt": "2026-11-01T09:30:00.000Z", "updatedAt": "2026-11-16T15:00:00.000Z",
    "archived": False,
    "properties": {"email": "ann@acme.com", "lifecyclestage": "lead", MODIFIED: "2026-11-16T15:00:00.000Z",
                   "createdate": "2026-11-01T09:30:00.000Z", "amount": "1200.50", "closedate": "2026-12-01",
                   "hs_is_closed": "false", "hs_merged_object_ids": "7;9"},
}
PROPS = list(HS_GOOD["properties"])
TOP = ["id", "createdAt", "updatedAt", "archived", "properties", "propertiesWithHistory"]
prop_names = st.sampled_from(PROPS) | st.from_regex(r"[a-z_]{1,12}", fullmatch=True)
history = st.dictionaries(prop_names, st.lists(st.fixed_dictionaries(
    {"value": json_values, "timestamp": json_values}) | json_values, max_size=3) | json_values, max_size=2)


def _build(raw: dict[str, Any]) -> Record | Reject:
    return build("deals", raw, modified=MODIFIED, defs=HS_DEFS, max_chars=65_536)


def _hs_problem_names(reason: str, names: Iterable[str] = ()) -> list[str]:
    """The property each problem of a reject names (``name: what is wrong``). A property name
    may itself hold a colon: the longest of ``names`` a problem starts with wins."""
    assert reason, "a reject needs a reason"
    known = sorted(names, key=len, reverse=True)
    out = []
    for p in reason.split("; "):
        if p.startswith("and "):
            continue
        p = p.removeprefix("history of ")
        out.append(next((n for n in known if p.startswith(f"{n}: ")), p.partition(":")[0]))
    return out


@FAST
@given(st.dictionaries(prop_names, json_values, max_size=5), st.dictionaries(st.sampled_from(TOP), json_values,
                                                                            max_size=3), history)
@example({}, {"id": "1" * 5000}, {})  # ValueError: int() of more than 4300 digits
@example({}, {"id": "²"}, {})
@example({MODIFIED: "0001-01-01T00:00:00+01:00"}, {}, {})
@example({"amount": math.nan}, {}, {})  # a JSON NaN fitted a number property
@example({}, {"id": None, "createdAt": None, "properties": {":": False}}, {})  # a property named ":"
@example({}, {}, {"email": None})  # TypeError: build() copied a null history as a list
def test_hubspot_records_become_typed_records_or_rejects_naming_the_property(
        props: dict[str, Any], top: dict[str, Any], past: dict[str, Any]) -> None:
    raw = {**HS_GOOD, **top, "properties": {**HS_GOOD["properties"], **props}}
    if "properties" in top:
        raw["properties"] = top["properties"]
    if past:
        raw["propertiesWithHistory"] = past
    row = _build(raw)
    if isinstance(row, Record):
        assert row.id.isascii() and row.id.isdigit() and row.data["id"] == row.id
        assert row.modified_at.tzinfo is not None and row.modified_at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
        json.dumps(row.data["properties"], allow_nan=False)
        for merged in merged_away(row):
            assert merged.deleted and merged.merged_into == row.id and merged.id.isdigit()
    else:
        given_props = top["properties"] if isinstance(top.get("properties"), dict) else {}
        given_past = top["propertiesWithHistory"] if isinstance(top.get("propertiesWithHistory"), dict) else {}
        allowed = {*props, *given_props, *top, *past, *given_past, "id", "properties", "propertiesWithHistory",
                   MODIFIED}
        assert set(_hs_problem_names(row.reason, allowed)) <= allowed, row.reason
        assert without_value(row.reason, [props, top, past])
        assert row.id and len(row.id) <= 64
        _assert_storable(row.payload)


@FAST
@given(st.one_of(epoch_instants.map(lambda m: (m, iso_z_millis(m))), epoch_instants.map(lambda m: (m, iso_z(m))),
                 epoch_instants.map(lambda m: (m, str(epoch_ms(m))))))
def test_hubspot_timestamps_in_every_api_spelling_read_as_the_same_utc_instant(case: tuple[datetime, str]) -> None:
    moment, text = case
    expected = moment.replace(microsecond=0) if text.endswith("Z") and "." not in text else moment
    row = _build({**HS_GOOD, "properties": {**HS_GOOD["properties"], MODIFIED: text, "createdate": text,
                                            "closedate": text}})
    assert isinstance(row, Record), row
    assert row.modified_at == expected and row.modified_at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


@FAST
@given(epoch_instants)
def test_a_hubspot_timestamp_as_a_json_integer_is_read_or_rejected_by_name(moment: datetime) -> None:
    """HubSpot sends property values as strings; a bare integer is tolerated or quarantined."""
    row = _build({**HS_GOOD, "updatedAt": None, "properties": {**HS_GOOD["properties"], MODIFIED: epoch_ms(moment)}})
    if isinstance(row, Record):
        assert row.modified_at == moment
    else:
        assert row.reason.startswith(f"{MODIFIED}:")


@FAST
@given(short_text)
def test_a_record_is_kept_only_with_the_modification_time_it_gave(text: str) -> None:
    """An unreadable modification time quarantines the record; it is never replaced by a guess."""
    row = _build({**HS_GOOD, "updatedAt": text, "properties": {**HS_GOOD["properties"], MODIFIED: text}})
    if isinstance(row, Record):
        assert row.modified_at == parse_instant(text)
    else:
        assert MODIFIED in _hs_problem_names(row.reason)
