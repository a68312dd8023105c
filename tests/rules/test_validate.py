"""Validation: every error class located at file:line:col with what is wrong and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from detente.rules import RulesError, check_rules, load_rules, reload_rules
from tests.rules.helpers import BASE, problems, write

TEAMS = """\
version: 1
teams:
  sales:
    condition: owner_department = 'Sales'
"""


def test_unknown_key_names_the_nearest_valid_one(tmp_path: Path) -> None:
    path = write(tmp_path, TEAMS + """\
stages:
  mql:
    meaning: m
    owner: sales
    definiton: score >= 50
""")
    found = problems(path)
    assert f"{path}:9:5: stages.mql: unknown key 'definiton'; did you mean 'definition'? expected one of the keys: " \
           "after, definition, grace, labels, meaning, owner" in found
    assert f"{path}:6:3: stages.mql: missing key 'definition'; expected definition: a condition over unified " \
           "fields, e.g. score >= 50" in found


def test_unknown_section_names_the_nearest_one(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "slass: []\n")
    assert problems(path)[0].startswith(f"{path}:22:1: unknown section 'slass'; did you mean 'slas'?")


def test_unknown_field_in_a_condition_points_at_the_name(tmp_path: Path) -> None:
    path = write(tmp_path, TEAMS + """\
stages:
  mql:
    meaning: m
    owner: sales
    definition: score >= 50 AND contry = 'US'
""")
    [found] = problems(path)
    assert found.startswith(f"{path}:9:33: stages.mql.definition: unknown field 'contry'; did you mean 'country'?")


def test_unknown_stage_in_an_sla(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + """\
slas:
  - id: handoff
    owner: marketing
    start: {stage: mqll}
    stop: {owner_team: sales}
    within: 24h
""")
    [found] = problems(path)
    assert found.startswith(f"{path}:25:20: slas[0].start.stage: unknown stage 'mqll'; did you mean 'mql'? "
                            "expected a stage defined in the rules: lead, mql")


def test_sla_stop_at_a_stage_that_does_not_exist(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + """\
slas:
  - id: outcome
    owner: sales
    start: {owner_team: sales}
    stop:
      stage: [mql, disqualified]
    within: 30 days
""")
    [found] = problems(path)
    assert found.startswith(f"{path}:27:20: slas[0].stop.stage[1]: unknown stage 'disqualified'; "
                            "expected a stage defined in the rules: lead, mql")


def test_bad_duration_lists_the_accepted_forms(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + """\
slas:
  - id: handoff
    owner: marketing
    start: {stage: mql}
    stop: {owner_team: sales}
    within: 1.5 hours
""")
    [found] = problems(path)
    assert found == (f"{path}:27:13: slas[0].within: bad duration: '1.5 hours' has a fraction (write 90m rather "
                     "than 1.5h); expected a whole number and a unit: 30m, 24h, 3 days, 2 weeks, or business time "
                     "on a calendar: 24 business hours, 3 business days")


@pytest.mark.parametrize(("within", "why"), [
    ("PT24H", "'PT24H' is ISO-8601, which rules files do not use"),
    ("3 months", "'3 months': months and years have no fixed length"),
    ("24", "'24' is not a duration"),
    ("24 business minutes", "'24 business minutes': business time is counted in hours or days, not 'minutes'"),
    ("-2h", "'-2h' is negative"),
])
def test_each_kind_of_bad_duration_says_why(tmp_path: Path, within: str, why: str) -> None:
    path = write(tmp_path, BASE + f"""\
slas:
  - id: handoff
    owner: marketing
    start: {{stage: mql}}
    stop: {{owner_team: sales}}
    within: "{within}"
""")
    [found] = problems(path)
    assert found.startswith(f"{path}:27:13: slas[0].within: bad duration: {why}; expected a whole number")


def test_a_condition_that_does_not_parse_points_into_it(tmp_path: Path) -> None:
    path = write(tmp_path, TEAMS + """\
stages:
  mql:
    meaning: m
    owner: sales
    definition: "score >= 50 AND (country = 'US'"
""")
    [found] = problems(path)
    assert found.startswith(f"{path}:9:34: stages.mql.definition: a '(' is never closed")
    assert found.endswith("; expected a matching ')'")


def test_a_condition_in_a_folded_block_is_located_on_its_own_line(tmp_path: Path) -> None:
    path = write(tmp_path, TEAMS + """\
stages:
  mql:
    meaning: m
    owner: sales
    definition: >-
      score >= 50
      AND email_domian NOT IN ('gmail.com')
""")
    [found] = problems(path)
    assert found.startswith(f"{path}:11:11: stages.mql.definition: unknown field 'email_domian'; "
                            "did you mean 'email_domain'?")


def test_writeback_field_not_declared(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + """\
slas:
  - id: handoff
    owner: marketing
    start: {stage: mql}
    stop: {owner_team: sales}
    within: 24h
    on_breach: {write: [status, reasons]}
writeback:
  fields:
    status: {hubspot: detente_status}
    reason: {hubspot: detente_reason}
""")
    [found] = problems(path)
    assert found == (f"{path}:28:33: slas[0].on_breach.write[1]: writeback field 'reasons' is not declared; "
                     "did you mean 'reason'? expected a value declared under writeback.fields: reason, status")


def test_writeback_of_a_value_detente_does_not_compute(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + """\
writeback:
  fields:
    score: {hubspot: hubspotscore}
""")
    [found] = problems(path)
    assert found.startswith(f"{path}:24:5: writeback.fields.score: 'score' is not a value detente computes; "
                            "expected one of the detente values: lead_value, reason, rules_version, sla, sla_due, "
                            "stage, status")


@pytest.mark.parametrize(("system", "target"), [
    ("salesforce", "Lead.Status"),                     # the CRM's own field
    ("salesforce", "Lead.Lead_Score__c"),              # another tool's custom field
    ("salesforce", "Opportunity.Detente_Status__c"),   # an object detente does not write
    ("salesforce", "Account.Detente_Status__c"),
    ("salesforce", "User.Detente_Status__c"),
    ("salesforce", "Detente_Status__c"),               # no object: it would be written nowhere
    ("hubspot", "lifecyclestage"),
    ("hubspot", "hubspot_owner_id"),
    ("hubspot", "deals.detente_status"),
    ("hubspot", "companies.detente_status"),
])
def test_writeback_beyond_detente_s_own_fields_is_refused_at_check_time(tmp_path: Path, system: str,
                                                                         target: str) -> None:
    """Least privilege: whatever the rules ask, write-back touches only fields of its own on
    leads and contacts (and its own tasks); anything else is refused by `detente rules check`."""
    path = write(tmp_path, BASE + f"""\
writeback:
  fields:
    status: {{{system}: {target}}}
""")
    [found] = problems(path)
    assert found.startswith(f"{path}:24:") and f"writeback.fields.status.{system}: detente may not write {target}" \
        in found, found
    assert "expected a field such as" in found


def test_detente_s_own_fields_on_leads_and_contacts_are_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + """\
writeback:
  fields:
    status: {salesforce: [Lead.Detente_Status__c, Contact.Detente_Status__c], hubspot: detente_status}
""")
    assert problems(path) == []


def _warning(tmp_path: Path, before: str) -> Path:
    return write(tmp_path, BASE + f"""\
slas:
  - id: handoff
    owner: marketing
    start: {{stage: mql}}
    stop: {{owner_team: sales}}
    within: 24h
    on_warning: {{before: {before}, write: [status]}}
writeback:
  fields:
    status: {{hubspot: detente_status}}
""")


def test_a_warning_may_last_the_whole_window_but_not_longer(tmp_path: Path) -> None:
    assert problems(_warning(tmp_path, "24h")) == []  # warn from the start
    path = _warning(tmp_path, "25h")
    [found] = problems(path)
    assert found == (f"{path}:28:26: slas[0].on_warning.before: warning 25 hours before the due time is longer "
                     "than 24 hours, so it would start before the clock does; expected at most 24 hours (as long "
                     "as within: warn from the start)")


def test_cycle_in_stage_order(tmp_path: Path) -> None:
    path = write(tmp_path, TEAMS + """\
stages:
  lead:
    meaning: l
    owner: sales
    after: sql
    definition: email IS NOT NULL
  mql:
    meaning: m
    owner: sales
    after: lead
    definition: score >= 50
  sql:
    meaning: s
    owner: sales
    after: mql
    definition: score >= 80
""")
    [found] = problems(path)
    assert found == (f"{path}:9:12: stages.lead.after: stage order has a cycle: lead -> mql -> sql -> lead; "
                     "expected each stage to come after earlier stages only")


def test_stage_after_itself_and_after_an_unknown_stage(tmp_path: Path) -> None:
    path = write(tmp_path, TEAMS + """\
stages:
  lead:
    meaning: l
    owner: sales
    after: [lead, inquiry]
    definition: email IS NOT NULL
""")
    found = problems(path)
    assert f"{path}:9:13: stages.lead.after[0]: stage 'lead' comes after itself; expected an earlier stage" in found
    assert any(p.startswith(f"{path}:9:19: stages.lead.after[1]: unknown stage 'inquiry'") for p in found)


def test_unknown_team_and_unknown_calendar(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + """\
slas:
  - id: handoff
    owner: marketting
    start: {stage: mql}
    stop: {owner_team: sals}
    within: 24 business hours
    calendar: ofice
calendars:
  office: {timezone: America/New_York, holidays: US}
""")
    found = problems(path)
    assert any(p.startswith(f"{path}:24:12: slas[0].owner: unknown team 'marketting'; did you mean 'marketing'?")
               for p in found)
    assert any(p.startswith(f"{path}:26:24: slas[0].stop.owner_team: unknown team 'sals'; did you mean 'sales'?")
               for p in found)
    assert any(p.startswith(f"{path}:28:15: slas[0].calendar: unknown calendar 'ofice'; did you mean 'office'?")
               for p in found)


def test_business_time_needs_a_calendar(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + """\
slas:
  - id: handoff
    owner: marketing
    start: {stage: mql}
    stop: {owner_team: sales}
    within: 24 business hours
""")
    [found] = problems(path)
    assert found == (f"{path}:27:13: slas[0].within: '24 business hours' is business time but the SLA names no "
                     "calendar; expected calendar: one of the calendars (none defined)")


def test_calendar_problems_are_all_reported(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + """\
calendars:
  office:
    timezone: America/New_Yrok
    hours: "09:30-17:00"
    days: [mon, tue, funday]
    holidays: XX
""")
    found = problems(path)
    assert f"{path}:24:15: calendars.office.timezone: unknown time zone 'America/New_Yrok'; expected an IANA zone " \
           "such as America/New_York or Europe/Berlin" in found
    assert f"{path}:25:12: calendars.office.hours: '09:30-17:00' does not start and end on the hour; expected whole " \
           "hours such as 09:00-17:00" in found
    assert any(p.startswith(f"{path}:26:22: calendars.office.days[2]: unknown day 'funday'") for p in found)
    assert any(p.startswith(f"{path}:27:15: calendars.office.holidays: unknown holiday country 'XX'") for p in found)


def test_task_placeholders_are_checked(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + """\
writeback:
  fields:
    status: {hubspot: detente_status}
  tasks:
    call-them:
      subject: "Call {person.emial} today"
      body: "{person.__class__}"
""")
    found = problems(path)
    assert any(p.startswith(f"{path}:27:22: writeback.tasks.call-them.subject: unknown placeholder "
                            "{person.emial}; did you mean 'person.email'?") for p in found)
    assert any(p.startswith(f"{path}:28:14: writeback.tasks.call-them.body: unknown placeholder {{person.__class__}}")
               for p in found)


def test_type_errors_in_a_condition(tmp_path: Path) -> None:
    path = write(tmp_path, TEAMS + """\
stages:
  mql:
    meaning: m
    owner: sales
    definition: score >= 'fifty'
""")
    [found] = problems(path)
    assert found == (f"{path}:9:17: stages.mql.definition: score is a number and 'fifty' is text; "
                     "expected both sides of a comparison to be of one kind")


def test_wrong_value_types_are_located(tmp_path: Path) -> None:
    path = write(tmp_path, TEAMS + """\
stages:
  mql:
    meaning: [not, text]
    owner: sales
    definition: score >= 50
    grace: 3
""")
    found = problems(path)
    assert f"{path}:7:14: stages.mql.meaning: got a list; expected text" in found
    assert f"{path}:10:12: stages.mql.grace: got 3; expected text" in found


def test_missing_sections_and_wrong_version(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 2\nteams:\n  sales: {members: [a@b.co]}\n")
    found = problems(path)
    assert f"{path}:1:10: version: got 2; expected 1, the only rules format so far" in found
    assert f"{path}:1:1: missing section 'stages'; expected stages: the funnel vocabulary" in found


def test_an_sla_on_a_stage_without_a_datable_label(tmp_path: Path) -> None:
    path = write(tmp_path, TEAMS + """\
stages:
  sal:
    meaning: s
    owner: sales
    definition: activity_count >= 1
slas:
  - id: work
    owner: sales
    start: {stage: sal}
    stop: {first_activity: owner}
    within: 1 day
""")
    [found] = problems(path)
    assert found.startswith(f"{path}:13:20: slas[0].start.stage: stage 'sal' has no label detente can date")


def test_an_event_with_two_kinds_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + """\
slas:
  - id: handoff
    owner: marketing
    start: {stage: mql, owner_team: sales}
    stop: {first_activity: owner}
    within: 1 day
""")
    [found] = problems(path)
    assert found == (f"{path}:25:5: slas[0].start: has stage and owner_team; "
                     "expected exactly one of: stage, owner_team, condition")


def test_require_before_must_be_a_stop_stage(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + """\
slas:
  - id: outcome
    owner: sales
    start: {owner_team: sales}
    stop: {stage: mql}
    within: 30 days
    require: {condition: activity_count >= 6, before: lead}
""")
    [found] = problems(path)
    assert found == (f"{path}:28:55: slas[0].require.before: 'lead' is not a stage this SLA stops at; "
                     "expected a stage from stop.stage: mql")


def test_duplicate_sla_ids(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + """\
slas:
  - {id: a, owner: sales, start: {stage: mql}, stop: {owner_team: sales}, within: 1h}
  - {id: a, owner: sales, start: {stage: mql}, stop: {owner_team: sales}, within: 2h}
""")
    [found] = problems(path)
    assert found == f"{path}:24:10: slas[1].id: SLA id 'a' is used twice (also slas[0]); expected each SLA id once"


def test_disagreement_needs_labels_in_both_systems(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + """\
disagreements:
  - {hubspot: mql, salesforce: lead}
""")
    [found] = problems(path)
    assert found == (f"{path}:23:32: disagreements[0].salesforce: stage 'lead' has no Salesforce label; "
                     "expected a stage with labels.salesforce")


def test_every_problem_is_reported_in_one_run(tmp_path: Path) -> None:
    path = write(tmp_path, TEAMS + """\
stages:
  mql:
    meaning: m
    owner: saless
    definition: scor >= 50 OR pg_sleep(1) = 0
    grace: 3 fortnights
    labels: {hubspot: "lifecyclestage = ", salesfroce: "Status = 'x'"}
""")
    found = problems(path)
    assert len(found) == 6, found
    assert [p.split(": ")[0] for p in found] == [
        f"{path}:8:12", f"{path}:9:17", f"{path}:9:31", f"{path}:10:12", f"{path}:11:39", f"{path}:11:44"]


def test_shipped_rules_are_valid() -> None:
    from tests.rules.helpers import SHIPPED

    result = check_rules(SHIPPED)
    assert result.problems == ()
    assert result.rules is not None
    assert list(result.rules.stages) == ["inquiry", "lead", "mql", "sal", "sql", "opportunity", "customer",
                                         "nurture", "disqualified"]


def test_load_rules_raises_with_every_problem(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("score >= 50", "score >="))
    with pytest.raises(RulesError) as info:
        load_rules(path)
    assert len(info.value.problems) == 1
    assert "the condition is incomplete" in str(info.value)


def test_a_failed_reload_keeps_the_last_good_rules(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    first = reload_rules(path, None)
    assert first.rules is not None and first.changed
    write(tmp_path, BASE.replace("score >= 50", "score >= 'x'"))
    second = reload_rules(path, first.rules)
    assert second.rules is first.rules
    assert not second.changed and second.problems
    write(tmp_path, BASE.replace("score >= 50", "score >= 60"))
    third = reload_rules(path, first.rules)
    assert third.changed and third.rules is not None and third.rules.version != first.rules.version


def test_version_ignores_comments_and_layout_but_not_content(tmp_path: Path) -> None:
    a = load_rules(write(tmp_path, BASE, "a.yaml")).version
    b = load_rules(write(tmp_path, "# a comment\n" + BASE.replace("owner: marketing", "owner:   marketing"),
                         "b.yaml")).version
    c = load_rules(write(tmp_path, BASE.replace("score >= 50", "score >= 51"), "c.yaml")).version
    assert a == b != c
    assert len(a) == 16


def test_values_translate_text_fields_only_each_value_once_and_never_to_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + """\
fields:
  source:
    values:
      hubspot:
        SOCIAL_MEDIA: Social
        social_media: Social Media
        OFFLINE: ''
  score:
    values:
      salesforce: {High: '90'}
""")
    found = problems(path)
    assert any(p.startswith(f"{path}:") and "fields.source.values.hubspot.social_media: 'social_media' is "
               "'SOCIAL_MEDIA' again (values match whatever their case); expected each value once" in p
               for p in found), found
    assert any("fields.source.values.hubspot.OFFLINE: a value and what it means may not be empty" in p
               for p in found), found
    assert any("fields.score.values: values can only translate a text field; this one is number" in p
               for p in found), found


def test_values_reach_the_normalizer_casefolded(tmp_path: Path) -> None:
    from detente.normalize.mapping import from_rules

    path = write(tmp_path, BASE + """\
fields:
  source:
    values:
      hubspot: {SOCIAL_MEDIA: Social, Organic_Search: Organic Search}
""")
    source = from_rules(load_rules(path)).builtins["source"]
    assert source.translate("hubspot", "SOCIAL_MEDIA") == "Social"
    assert source.translate("hubspot", " organic_search ") == "Organic Search"
    assert source.translate("hubspot", "OFFLINE") == "OFFLINE"  # not listed: as the CRM keeps it
    assert source.translate("salesforce", "SOCIAL_MEDIA") == "SOCIAL_MEDIA"  # only HubSpot's are listed
