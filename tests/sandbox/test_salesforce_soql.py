"""The sandbox's SOQL compiler, tested without a server: parsing, validation against the
catalog, Salesforce's error codes and messages, and SOQL (not SQL) semantics on a real
SQLite world."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from detente.sandbox.schema import SALESFORCE_OBJECTS
from detente.sandbox.soql import (
    SoqlError,
    compile_soql,
    csv_cells,
    decode_string,
    normalize_id,
    protect_literals,
    records,
)
from detente.sandbox.store import World, sf_datetime

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LEAD, USER, TASK, CONTACT = (SALESFORCE_OBJECTS[n] for n in ("Lead", "User", "Task", "Contact"))


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    """Two users, five leads (one without owner, one without email, one deleted), a contact
    and tasks pointing at a lead and at the contact."""
    w = World()
    users = w.sf_insert(USER, [
        {"Username": "ann@x.example", "Email": "ann@x.example", "FirstName": "Ann", "LastName": "Lee"},
        {"Username": "bo@x.example", "Email": "bo@x.example", "FirstName": "Bo", "LastName": "Ng"},
    ], T0)
    leads = w.sf_insert(LEAD, [
        {"LastName": "Alpha", "Company": "Acme", "Status": "Open - Not Contacted", "OwnerId": users[0],
         "Email": "alpha@acme.example", "Lead_Score__c": 10.5, "NumberOfEmployees": 5},
        {"LastName": "beta", "Company": "Acme", "Status": "Working - Contacted", "OwnerId": users[1],
         "Email": "beta@acme.example", "Lead_Score__c": 70.0, "NumberOfEmployees": 50},
        {"LastName": "Gamma", "Company": "O'Brien & Co", "Status": "Nurture", "OwnerId": None,
         "Email": None, "Lead_Score__c": None},
        {"LastName": "Delta", "Company": "100% Pure", "Status": "Open - Not Contacted", "OwnerId": users[0],
         "Email": "delta@pure.example", "LastModifiedDate": sf_datetime(T0 + timedelta(seconds=5))},
        {"LastName": "Epsilon", "Company": "Gone", "Status": "Nurture", "OwnerId": users[1],
         "Email": "eps@gone.example"},
    ], T0)
    w.sf_delete(LEAD, leads[4], T0 + timedelta(seconds=9))
    [contact] = w.sf_insert(CONTACT, [{"LastName": "Zed", "Email": "zed@c.example", "OwnerId": users[1]}], T0)
    w.sf_insert(TASK, [
        {"Subject": "Call alpha", "WhoId": leads[0], "Status": "Not Started", "Priority": "High"},
        {"Subject": "Mail zed", "WhoId": contact, "Status": "Completed", "Priority": "Low"},
        {"Subject": "Nobody", "Status": "Completed", "Priority": "Low"},
    ], T0)
    w.set_meta("ids", {"users": users, "leads": leads, "contact": contact})
    yield w


def run(world: World, soql: str, include_deleted: bool = False) -> list[dict[str, Any]]:
    """Compile and run a query as the server does: ids first, then the rows of those ids."""
    query = compile_soql(soql)
    sql, params = query.ids_sql(include_deleted)
    ids = [r[0] for r in world.tuples(sql, params)]
    rows = world.tuples(query.rows_sql(), (json.dumps(ids),))
    return records(query, rows, "/services/data/v59.0/sobjects/")


def names(world: World, soql: str, include_deleted: bool = False) -> list[str]:
    return [r["LastName"] for r in run(world, soql, include_deleted)]


def error(soql: str) -> SoqlError:
    with pytest.raises(SoqlError) as caught:
        compile_soql(soql)
    return caught.value


# -- literals ---------------------------------------------------------------------------


@pytest.mark.parametrize("literal", [
    "2024-05-01T12:00:00Z", "2024-05-01T12:00:00.000Z", "2024-05-01T12:00:00.000+0000",
    "2024-05-01T14:00:00+02:00", "2024-05-01T05:00:00.000-0700",
])
def test_datetime_literal_forms_normalise_to_the_stored_text(literal: str) -> None:
    """Every SOQL datetime spelling becomes the wire form the store compares against."""
    [lit] = protect_literals(f"SELECT Id FROM Lead WHERE CreatedDate = {literal}").literals
    assert (lit.kind, lit.value) == ("datetime", "2024-05-01T12:00:00.000+0000")


def test_date_literal_is_lifted_and_dates_inside_strings_are_left_alone() -> None:
    """A bare date is a date literal; the same text inside quotes stays a string."""
    prot = protect_literals("SELECT Id FROM Lead WHERE ConvertedDate = 2024-05-01 AND Company = '2024-05-01'")
    assert [(lit.kind, lit.value) for lit in prot.literals] == [("date", "2024-05-01"), ("string", "2024-05-01")]
    assert "2024" not in prot.text


def test_string_escapes_decode_as_in_soql() -> None:
    r"""\' \" \\ \n \t and \uXXXX decode; \% stays a LIKE escape only inside LIKE."""
    assert decode_string(r"O\'Brien \"x\" a\\b\n\t\u00e9") == "O'Brien \"x\" a\\b\n\t\u00e9"
    assert decode_string(r"100\% a\_b", like=True) == "100\\% a\\_b"
    assert decode_string(r"100\%") == "100%"


def test_illegal_escape_is_malformed_query() -> None:
    assert error(r"SELECT Id FROM Lead WHERE Company = 'a\qb'").error_code == "MALFORMED_QUERY"


def test_fifteen_character_ids_normalise_to_eighteen() -> None:
    eighteen = "00Q5g0000000001EAA"
    assert normalize_id(eighteen[:15]) == eighteen
    assert normalize_id("not-an-id") is None


# -- semantics ----------------------------------------------------------------------------


def test_query_excludes_deleted_rows_and_query_all_includes_them(world: World) -> None:
    assert "Epsilon" not in names(world, "SELECT LastName FROM Lead")
    assert "Epsilon" in names(world, "SELECT LastName FROM Lead", include_deleted=True)


def test_equals_null_means_is_null(world: World) -> None:
    assert names(world, "SELECT LastName FROM Lead WHERE Email = null") == ["Gamma"]


def test_not_equals_matches_nulls_as_soql_does(world: World) -> None:
    """Unlike SQL, SOQL's != returns records whose field is null."""
    got = names(world, "SELECT LastName FROM Lead WHERE Email != 'alpha@acme.example'")
    assert sorted(got) == ["Delta", "Gamma", "beta"]


def test_not_in_matches_nulls_and_not_is_two_valued(world: World) -> None:
    assert "Gamma" in names(world, "SELECT LastName FROM Lead WHERE Email NOT IN ('beta@acme.example')")
    assert "Gamma" in names(world, "SELECT LastName FROM Lead WHERE NOT Email = 'beta@acme.example'")


def test_in_list_may_contain_null(world: World) -> None:
    got = names(world, "SELECT LastName FROM Lead WHERE Email IN ('ALPHA@acme.example', null)")
    assert sorted(got) == ["Alpha", "Gamma"]


def test_string_comparison_and_like_are_case_insensitive(world: World) -> None:
    assert names(world, "SELECT LastName FROM Lead WHERE LastName = 'BETA'") == ["beta"]
    assert names(world, "SELECT LastName FROM Lead WHERE Email LIKE 'ALPHA%'") == ["Alpha"]


def test_like_escapes_match_literal_percent_and_quotes(world: World) -> None:
    assert names(world, r"SELECT LastName FROM Lead WHERE Company LIKE '100\%%'") == ["Delta"]
    assert names(world, r"SELECT LastName FROM Lead WHERE Company LIKE 'O\'Brien%'") == ["Gamma"]


def test_user_text_is_a_parameter_not_sql(world: World) -> None:
    """Quotes and SQL in a value are compared as text, never executed."""
    assert names(world, "SELECT LastName FROM Lead WHERE Company = 'x\\' OR 1=1 --'") == []


def test_numbers_booleans_and_dates_compare_by_type(world: World) -> None:
    assert names(world, "SELECT LastName FROM Lead WHERE Lead_Score__c > 50") == ["beta"]
    assert names(world, "SELECT LastName FROM Lead WHERE NumberOfEmployees <= 5 AND IsConverted = false") == ["Alpha"]
    assert len(names(world, "SELECT LastName FROM Lead WHERE CreatedDate = 2024-05-01T12:00:00Z")) == 4


def test_boolean_equals_null_means_false(world: World) -> None:
    assert len(names(world, "SELECT LastName FROM Lead WHERE IsConverted = null")) == 4


def test_and_or_not_with_parentheses(world: World) -> None:
    soql = ("SELECT LastName FROM Lead WHERE (Status = 'Nurture' OR Lead_Score__c > 50) "
            "AND NOT (LastName = 'Gamma')")
    assert names(world, soql) == ["beta"]


def test_mixing_and_or_without_parentheses_is_malformed() -> None:
    e = error("SELECT Id FROM Lead WHERE Status = 'a' AND Email = null OR LastName = 'b'")
    assert e.error_code == "MALFORMED_QUERY" and "'OR'" in e.message


def test_order_by_desc_nulls_last_limit_and_offset(world: World) -> None:
    soql = "SELECT LastName FROM Lead ORDER BY Lead_Score__c DESC NULLS LAST, LastName LIMIT 3 OFFSET 1"
    assert names(world, soql) == ["Alpha", "Delta", "Gamma"]


def test_order_by_asc_puts_nulls_first_by_default(world: World) -> None:
    assert names(world, "SELECT LastName FROM Lead ORDER BY Email")[0] == "Gamma"


def test_keyset_condition_pages_ties_by_id(world: World) -> None:
    """The pull connector's cursor: rows after (SystemModstamp, Id), in that order."""
    rows = run(world, "SELECT Id, LastName, SystemModstamp FROM Lead ORDER BY SystemModstamp, Id")
    cursor = rows[1]
    soql = (
        f"SELECT Id, LastName FROM Lead WHERE (SystemModstamp = {cursor['SystemModstamp'].replace('+0000', 'Z')} "
        f"AND Id > '{cursor['Id']}') OR SystemModstamp > {cursor['SystemModstamp']} ORDER BY SystemModstamp, Id"
    )
    assert [r["Id"] for r in run(world, soql)] == [r["Id"] for r in rows[2:]]


def test_keyset_condition_seeks_the_stamp_index(world: World) -> None:
    """The implied lower bound lets SQLite search the (SystemModstamp, Id) index, not scan it."""
    query = compile_soql(
        "SELECT Id FROM Lead WHERE (SystemModstamp = 2024-05-01T12:00:00Z AND Id > '00Q000000000000AAA') "
        "OR SystemModstamp > 2024-05-01T12:00:00Z ORDER BY SystemModstamp, Id"
    )
    sql, params = query.ids_sql(False)
    plan = " ".join(str(tuple(r)) for r in world.query("EXPLAIN QUERY PLAN " + sql, params))
    assert "SEARCH t USING INDEX sf_Lead_stamp (SystemModstamp>?)" in plan


def test_fifteen_character_id_filter_matches(world: World) -> None:
    lead = world.get_meta("ids")["leads"][0]
    assert names(world, f"SELECT LastName FROM Lead WHERE Id = '{lead[:15]}'") == ["Alpha"]


def test_field_and_object_names_are_case_insensitive_and_come_back_canonical(world: World) -> None:
    [rec] = run(world, "select id, lastname from LEAD where lastname = 'alpha'")
    assert list(rec) == ["attributes", "Id", "LastName"] and rec["attributes"]["type"] == "Lead"


# -- record shape ------------------------------------------------------------------------


def test_parent_fields_nest_with_attributes_or_null(world: World) -> None:
    got = {r["LastName"]: r["Owner"] for r in run(world, "SELECT LastName, Owner.Email, Owner.Name FROM Lead")}
    assert got["Gamma"] is None
    assert got["Alpha"]["Email"] == "ann@x.example" and got["Alpha"]["Name"] == "Ann Lee"
    assert got["Alpha"]["attributes"]["type"] == "User"
    assert got["Alpha"]["attributes"]["url"].startswith("/services/data/v59.0/sobjects/User/005")


def test_two_level_parent_path(world: World) -> None:
    [rec] = run(world, "SELECT Subject, Who.Name, Owner.Manager.Email FROM Task WHERE Subject = 'Call alpha'")
    assert rec["Owner"] is None


def test_polymorphic_who_takes_its_type_from_the_id(world: World) -> None:
    got = {r["Subject"]: r["Who"] for r in run(world, "SELECT Subject, Who.Name, Who.Email FROM Task")}
    assert got["Call alpha"]["attributes"]["type"] == "Lead" and got["Call alpha"]["Name"] == "Alpha"
    assert got["Mail zed"]["attributes"]["type"] == "Contact" and got["Mail zed"]["Email"] == "zed@c.example"
    assert got["Nobody"] is None


def test_where_on_parent_field_returns_records_without_parent_for_null(world: World) -> None:
    assert names(world, "SELECT LastName FROM Lead WHERE Owner.Email = null") == ["Gamma"]
    assert sorted(names(world, "SELECT LastName FROM Lead WHERE Owner.FirstName = 'ann'")) == ["Alpha", "Delta"]


def test_values_have_salesforce_json_types(world: World) -> None:
    [rec] = run(world, "SELECT IsConverted, Lead_Score__c, NumberOfEmployees, CreatedDate, ConvertedDate "
                       "FROM Lead WHERE LastName = 'Alpha'")
    assert rec["IsConverted"] is False and rec["Lead_Score__c"] == 10.5 and rec["NumberOfEmployees"] == 5
    assert rec["CreatedDate"] == "2024-05-01T12:00:00.000+0000" and rec["ConvertedDate"] is None


def test_fields_all_expands_to_every_field(world: World) -> None:
    [rec] = run(world, "SELECT FIELDS(ALL) FROM Lead WHERE LastName = 'Alpha' LIMIT 1")
    assert set(rec) - {"attributes"} == {f.name for f in LEAD.fields}


def test_count_and_aggregate_count() -> None:
    assert compile_soql("SELECT COUNT() FROM Lead").kind == "count"
    query = compile_soql("SELECT COUNT(Id) total FROM Lead")
    assert (query.kind, query.aggregate_alias) == ("aggregate", "total")


def test_csv_cells_render_null_empty_and_booleans_as_words(world: World) -> None:
    query = compile_soql("SELECT LastName, Email, IsConverted FROM Lead WHERE LastName = 'Gamma'")
    sql, params = query.ids_sql(False)
    ids = [r[0] for r in world.tuples(sql, params)]
    rows = world.tuples(query.rows_sql(), (json.dumps(ids),))
    assert list(csv_cells(query, rows)) == [["Gamma", "", "false"]]


@pytest.mark.parametrize("name", sorted(SALESFORCE_OBJECTS))
def test_every_catalog_field_can_be_selected_filtered_and_sorted(world: World, name: str) -> None:
    """No catalog name collides with a sqlglot keyword in a way that breaks SOQL."""
    obj = SALESFORCE_OBJECTS[name]
    filterable = [f for f in obj.fields if not (f.type == "textarea" and f.length > 255)]
    soql = (f"SELECT {', '.join(f.name for f in obj.fields)} FROM {name} WHERE "
            + " AND ".join(f"{f.name} != null" for f in filterable)
            + f" ORDER BY {', '.join(f.name for f in filterable)}")
    run(world, soql)


# -- errors ------------------------------------------------------------------------------


def test_unknown_field_is_invalid_field_in_salesforce_words() -> None:
    e = error("SELECT BAD FROM Lead")
    assert e.error_code == "INVALID_FIELD"
    assert e.message.startswith("\nSELECT BAD FROM Lead\n       ^\nERROR at Row:1:Column:8\n"
                                "No such column 'BAD' on entity 'Lead'. If you are attempting to use a custom field")


def test_error_position_counts_the_original_text_after_literals() -> None:
    e = error("SELECT Id FROM Lead WHERE Company = 'Acme' AND Nope = 1")
    assert "ERROR at Row:1:Column:48" in e.message


def test_error_on_a_later_line_reports_that_row() -> None:
    e = error("SELECT Id,\n  Nope\nFROM Lead")
    assert "\n  Nope\n  ^\nERROR at Row:2:Column:3\n" in e.message


def test_misspelt_from_is_malformed_query_naming_the_token() -> None:
    e = error("SELECT Id FORM Lead")
    assert (e.error_code, e.message) == ("MALFORMED_QUERY", "unexpected token: 'FORM'")


def test_trailing_comma_in_select_is_malformed_query() -> None:
    assert error("SELECT Id, FROM Lead").message == "unexpected token: 'FROM'"


def test_unknown_object_is_invalid_type() -> None:
    e = error("SELECT Id FROM Foo")
    assert e.error_code == "INVALID_TYPE" and "sObject type 'Foo' is not supported." in e.message


@pytest.mark.parametrize(("soql", "code", "fragment"), [
    ("SELECT Id, Owner.Nope FROM Lead", "INVALID_FIELD", "No such column 'Nope' on entity 'User'"),
    ("SELECT Id, Boss.Email FROM Lead", "INVALID_FIELD", "Didn't understand relationship 'Boss'"),
    ("SELECT Id FROM Lead WHERE CreatedDate > '2024-01-01'", "INVALID_FIELD", "must be of type dateTime"),
    ("SELECT Id FROM Lead WHERE LastName = 5", "INVALID_FIELD", "should be enclosed in quotes"),
    ("SELECT Id FROM Lead WHERE Id = 'abc'", "INVALID_QUERY_FILTER_OPERATOR", "invalid ID field: abc"),
    ("SELECT Id FROM Lead WHERE Detente_Reason__c = 'x'", "INVALID_FIELD", "can not be filtered"),
    ("SELECT Id, Id FROM Lead", "MALFORMED_QUERY", "duplicate field selected: Id"),
    ("SELECT FIELDS(ALL) FROM Lead", "MALFORMED_QUERY", "LIMIT of at most 200"),
    ("SELECT Id FROM Lead OFFSET 2001", "NUMBER_OUTSIDE_VALID_RANGE", "2000"),
    ("SELECT Status, COUNT(Id) FROM Lead GROUP BY Status", "MALFORMED_QUERY", "GROUP BY"),
    ("SELECT Id, (SELECT Id FROM Tasks) FROM Lead", "MALFORMED_QUERY", "subqueries"),
    ("SELECT Id FROM Lead WHERE CreatedDate = TODAY", "MALFORMED_QUERY", "TODAY"),
    ("SELECT Id FROM Lead WHERE Email IS NULL", "MALFORMED_QUERY", "IS"),
    ("SELECT Id FROM Lead WHERE Company = 'open", "MALFORMED_QUERY", "unterminated"),
    ("DELETE FROM Lead", "MALFORMED_QUERY", "DELETE"),
    ("", "MALFORMED_QUERY", "<EOF>"),
])
def test_rejected_queries_get_salesforce_error_codes(soql: str, code: str, fragment: str) -> None:
    e = error(soql)
    assert e.error_code == code and fragment in e.message
