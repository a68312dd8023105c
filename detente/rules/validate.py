"""Validate a rules file or folder: every problem at once, each located; or the checked Rules.

Structure is checked per item (each stage, each SLA, ...) against the strict models in
``detente.rules.model``, so one broken stage does not hide problems elsewhere. Then meaning:
names that must exist (stages, teams, calendars, task templates, write-back values), stage
order without cycles, conditions, durations, calendars and placeholders. A failed reload
keeps the last good rules (``reload_rules``).
"""

from __future__ import annotations

import hashlib
import json
import re
import string
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_lib
from pydantic import BaseModel, ValidationError

from detente.agreement import CalendarSpec
from detente.rules import checked as c
from detente.rules import ir
from detente.rules.conditions import Condition, Scope, parse_condition
from detente.rules.durations import EXPECTED as DURATION_FORMS
from detente.rules.durations import Duration, parse_duration
from detente.rules.fields import (
    BUILTIN_NAMES,
    BUILTINS,
    TRANSITION_FIELDS,
    Catalog,
    FieldDef,
    ValueType,
    custom_field,
    stage_field,
)
from detente.rules.model import (
    BreachSpec,
    CalendarModel,
    Disagreement,
    EventSpec,
    FeedbackSpec,
    FieldSpec,
    GoalsSpec,
    RulesSpec,
    SlaSpec,
    StageSpec,
    TeamSpec,
    WarningSpec,
    WritebackSpec,
)
from detente.rules.problems import Problem, RulesError, Where, expected_one_of, file_problem
from detente.rules.semantics import fold
from detente.rules.source import Doc, PathKey, digest, read_rules

M = TypeVar("M", bound=BaseModel)
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
SLA_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SALESFORCE_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9_]*\.)?[A-Za-z][A-Za-z0-9_]*$")
HUBSPOT_FIELD = re.compile(r"^([a-z][a-z0-9_]*\.)?[a-z0-9_]+$")
# Least privilege: the only fields write-back may touch (its tasks aside, which it makes itself).
WRITABLE = {"salesforce": re.compile(r"^(Lead|Contact)\.Detente_[A-Za-z0-9_]*__c$"),
            "hubspot": re.compile(r"^detente_[a-z0-9_]+$")}
WRITABLE_WHERE = {"salesforce": "leads and contacts, named Detente_...__c",
                  "hubspot": "contacts, named detente_... (no object prefix)"}
HOURS = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")
DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
MAX_STAGES = 62
REQUIRED_SECTIONS = ("version", "teams", "stages")
SYSTEM_WORDS = {"salesforce": "Salesforce", "hubspot": "HubSpot"}


@dataclass(frozen=True)
class CheckResult:
    """The rules when valid, and every problem found (empty when valid)."""

    rules: c.Rules | None
    problems: tuple[Problem, ...]


def check_rules(path: str | Path) -> CheckResult:
    """Read and validate a rules file or folder; never raises for a bad file."""
    doc, problems = read_rules(Path(path))
    rules: c.Rules | None = None
    if doc.data:
        validator = _Validator(doc)
        rules = validator.run()
        problems = [*problems, *validator.problems]
    elif not problems:
        problems = [file_problem(doc.files[0] if doc.files else str(path), "the rules file is empty",
                                 "expected a mapping with version, teams, stages, ...")]
    ordered = tuple(sorted(problems, key=Problem.sort_key))
    return CheckResult(rules if not ordered else None, ordered)


def load_rules(path: str | Path) -> c.Rules:
    """The valid rules at ``path``, or RulesError listing every problem."""
    result = check_rules(path)
    if result.rules is None:
        raise RulesError(result.problems)
    return result.rules


@dataclass(frozen=True)
class Reload:
    """The rules to use after a reload: the new ones, or the last good ones and why."""

    rules: c.Rules | None
    problems: tuple[Problem, ...]
    changed: bool


def reload_rules(path: str | Path, current: c.Rules | None) -> Reload:
    """Re-read the rules; on any problem keep ``current`` (the last good rules)."""
    result = check_rules(path)
    if result.rules is None:
        return Reload(current, result.problems, changed=False)
    changed = current is None or current.version != result.rules.version
    return Reload(result.rules, (), changed=changed)


def dotted(path: PathKey) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# -- pydantic errors, located ---------------------------------------------------------------------


def _unwrap(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        models = [a for a in options if isinstance(a, type) and issubclass(a, BaseModel)]
        return _unwrap((models or options)[0])
    return tp


def _model_at(model: type[BaseModel], loc: Iterable[str | int]) -> type[BaseModel] | None:
    tp: Any = model
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if not isinstance(part, str) or part not in tp.model_fields:
                return None
            tp = tp.model_fields[part].annotation
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        elif typing.get_origin(tp) is list:
            tp = typing.get_args(tp)[0]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _shown(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    return repr(value)


_TYPE_EXPECTED = {
    "string_type": "expected text", "float_type": "expected a number", "float_parsing": "expected a number",
    "int_type": "expected a whole number", "int_parsing": "expected a whole number",
    "bool_type": "expected true or false", "bool_parsing": "expected true or false",
    "list_type": "expected a list", "dict_type": "expected a mapping of keys",
    "model_type": "expected a mapping of keys", "model_attributes_type": "expected a mapping of keys",
    "date_type": "expected a date such as 2026-12-24", "date_parsing": "expected a date such as 2026-12-24",
    "date_from_datetime_inexact": "expected a date without a time",
}


def _pydantic_problems(doc: Doc, model: type[BaseModel], exc: ValidationError, base: PathKey) -> list[Problem]:
    out: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc: tuple[str | int, ...] = tuple(err["loc"])
        path = (*base, *loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            valid = list(parent.model_fields) if parent is not None else []
            key = str(loc[-1])
            out.append(Problem(doc.at(path, key=True), f"{dotted(path[:-1]) or 'rules'}: unknown key '{key}'",
                               expected_one_of(key, valid, "one of the keys")))
        elif kind == "missing":
            parent = _model_at(model, loc[:-1])
            name = str(loc[-1])
            info = parent.model_fields.get(name) if parent is not None else None
            hint = f": {info.description}" if info is not None and info.description else ""
            out.append(Problem(doc.at(path[:-1], key=True), f"{dotted(path[:-1]) or 'rules'}: missing key '{name}'",
                               f"expected {name}{hint}"))
        else:
            expected = _TYPE_EXPECTED.get(kind)
            ctx = err.get("ctx") or {}
            if kind == "literal_error":
                expected = f"expected {ctx.get('expected')}"
            elif kind.startswith("greater_than"):
                expected = f"expected a number greater than {ctx.get('gt', ctx.get('ge'))}"
            out.append(Problem(doc.at(path), f"{dotted(path)}: got {_shown(err.get('input'))}",
                               expected or f"expected {err['msg'][0].lower()}{err['msg'][1:]}"))
    return out


# -- the validator -----------------------------------------------------------------------------------


class _Validator:
    def __init__(self, doc: Doc) -> None:
        self.doc = doc
        self.problems: list[Problem] = []
        self.catalog = Catalog({})
        self.base_catalog = Catalog({})
        self.stage_names: list[str] = []
        self.team_names: list[str] = []
        self.calendar_names: list[str] = []
        self.canonical: dict[str, Any] = {}

    # helpers

    def fail(self, path: PathKey, what: str, expected: str, *, key: bool = False) -> None:
        self.problems.append(Problem(self.doc.at(path, key=key), f"{dotted(path)}: {what}", expected))

    def model(self, cls: type[M], data: Any, path: PathKey) -> M | None:
        """The entry as a model; when only some keys are wrong, the rest still gets checked."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            self.problems.extend(_pydantic_problems(self.doc, cls, exc, path))
            bad = [tuple(err["loc"]) for err in exc.errors() if err["type"] != "missing"]
        try:
            # Problems are already recorded, so this model only lets later checks see the rest.
            return cls.model_validate(_without(data, bad))
        except ValidationError:
            return None

    def mapping(self, cls: type[M], section: str) -> dict[str, M | None]:
        data = self.doc.data.get(section)
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.fail((section,), f"got {_shown(data)}", "expected a mapping of names to entries")
            return {}
        items: dict[str, M | None] = {}
        for name, value in data.items():
            items[name] = self.model(cls, value, (section, name))
        return items

    def listing(self, cls: type[M], section: str) -> list[M | None]:
        data = self.doc.data.get(section)
        if data is None:
            return []
        if not isinstance(data, list):
            self.fail((section,), f"got {_shown(data)}", "expected a list of entries (each starting with -)")
            return []
        return [self.model(cls, value, (section, i)) for i, value in enumerate(data)]

    def single(self, cls: type[M], section: str) -> M | None:
        data = self.doc.data.get(section)
        return None if data is None else self.model(cls, data, (section,))

    def duration(self, path: PathKey, text: str, *, business: bool = True) -> Duration | None:
        parsed = parse_duration(text)
        if isinstance(parsed, str):
            self.fail(path, f"bad duration: {parsed}", DURATION_FORMS)
            return None
        if parsed.business and not business:
            self.fail(path, f"'{text}' is business time", "expected calendar time here, such as 3 days")
            return None
        return parsed

    def condition(self, path: PathKey, text: str, scope: Scope) -> Condition | None:
        result = parse_condition(text, scope)
        if isinstance(result, list):
            for p in result:
                self.problems.append(Problem(self.doc.where_in(path, p.offset), f"{dotted(path)}: {p.what}",
                                             p.expected))
            return None
        return result

    def name_ok(self, path: PathKey, name: str, noun: str, pattern: re.Pattern[str] = NAME) -> bool:
        if pattern.match(name):
            return True
        self.fail(path, f"'{name}' is not a valid {noun} name",
                  "expected lower-case letters, digits and _ (starting with a letter)"
                  + (" or -" if pattern is SLA_ID else ""), key=True)
        return False

    def known(self, path: PathKey, name: str, choices: list[str], noun: str) -> bool:
        if name in choices:
            return True
        self.fail(path, f"unknown {noun} '{name}'", expected_one_of(name, choices, f"a {noun} defined in the rules"))
        return False

    # the run

    def run(self) -> c.Rules | None:
        self.top_level()
        fields = self.mapping(FieldSpec, "fields")
        teams = self.mapping(TeamSpec, "teams")
        stages = self.mapping(StageSpec, "stages")
        slas = self.listing(SlaSpec, "slas")
        calendars = self.mapping(CalendarModel, "calendars")
        goals = self.single(GoalsSpec, "goals")
        writeback = self.single(WritebackSpec, "writeback")
        disagreements = self.listing(Disagreement, "disagreements")
        feedback = self.single(FeedbackSpec, "feedback")

        self.team_names = list(teams)
        self.stage_names = list(stages)
        self.calendar_names = list(calendars)
        self.base_catalog = self.fields(fields)
        checked_teams = self.teams(teams)
        labels = {name: self.labels(name, spec) for name, spec in stages.items() if spec is not None}
        self.catalog = self.base_catalog.with_fields(
            stage_field(name) for name, (_, traces) in labels.items() if traces)
        self.stage_field_collisions(fields, labels)
        order = self.order(stages)
        checked_stages = self.stages(stages, labels, order)
        checked_calendars = self.calendars(calendars)
        checked_writeback = self.writeback(writeback)
        checked_slas = self.slas(slas, checked_stages, checked_calendars, checked_writeback)
        checked_goals = self.goals(goals)
        checked_disagreements = self.disagreements(disagreements, checked_stages)
        checked_feedback = self.feedback(feedback)
        if self.problems:
            return None
        self.canonical = {
            "version": 1,
            "fields": _dump(fields), "teams": _dump(teams), "stages": _dump(stages), "slas": _dump(slas),
            "calendars": _dump(calendars), "goals": _dump(goals), "writeback": _dump(writeback),
            "disagreements": _dump(disagreements), "feedback": _dump(feedback),
        }
        blob = json.dumps(self.canonical, sort_keys=True, default=str, separators=(",", ":"))
        return c.Rules(
            version=hashlib.sha256(blob.encode()).hexdigest()[:16],
            files=tuple(self.doc.files),
            catalog=self.catalog,
            teams=checked_teams,
            stages=checked_stages,
            slas=tuple(checked_slas),
            calendars=checked_calendars,
            goals=checked_goals,
            writeback=checked_writeback,
            disagreements=tuple(checked_disagreements),
            feedback=checked_feedback,
            digest=digest(self.doc),
        )

    def top_level(self) -> None:
        valid = list(RulesSpec.model_fields)
        for key in self.doc.data:
            if key not in valid:
                self.problems.append(Problem(self.doc.at((key,), key=True), f"unknown section '{key}'",
                                             expected_one_of(key, valid, "one of the sections")))
        for key in REQUIRED_SECTIONS:
            if key not in self.doc.data:
                info = RulesSpec.model_fields[key]
                self.problems.append(Problem(Where(self.doc.files[0], 1, 1), f"missing section '{key}'",
                                             f"expected {key}: {info.description}"))
        version = self.doc.data.get("version")
        if "version" in self.doc.data and (version != 1 or isinstance(version, bool)):
            self.fail(("version",), f"got {_shown(version)}", "expected 1, the only rules format so far")
        for section in ("teams", "stages"):
            if isinstance(self.doc.data.get(section), dict) and not self.doc.data[section]:
                self.fail((section,), "is empty", f"expected at least one entry under {section}")

    # fields

    def fields(self, specs: Mapping[str, FieldSpec | None]) -> Catalog:
        by_name = {f.name: f for f in BUILTINS}
        for name, spec in specs.items():
            path: PathKey = ("fields", name)
            if spec is None or not self.name_ok(path, name, "field"):
                continue
            systems = self.crm_fields(path, spec)
            if name in BUILTIN_NAMES:
                builtin = by_name[name]
                if spec.type is not None and spec.type != builtin.type.value:
                    self.fail((*path, "type"), f"{name} is a built-in {builtin.type.value} field, not {spec.type}",
                              f"expected type: {builtin.type.value}, or no type")
                merged = {**builtin.systems, **systems}
                values = self.values(path, spec, builtin.type)
                by_name[name] = FieldDef(name, builtin.type, builtin.source, spec.meaning or builtin.meaning, merged,
                                         values)
            elif spec.type is None:
                self.fail(path, f"'{name}' is not a built-in field, so it needs a type",
                          "expected type: text, number, boolean or datetime")
            else:
                made = custom_field(name, ValueType(spec.type), spec.meaning or name, systems)
                by_name[name] = replace(made, values=self.values(path, spec, made.type))
        return Catalog(by_name)

    def values(self, path: PathKey, spec: FieldSpec, type_: ValueType) -> dict[str, dict[str, str]]:
        """``values``: per CRM, its values (casefolded) and what each means here."""
        if spec.values is None:
            return {}
        if type_ is not ValueType.TEXT:
            self.fail((*path, "values"), f"values can only translate a text field; this one is {type_.value}",
                      "expected no values here")
            return {}
        out: dict[str, dict[str, str]] = {}
        for system in ("salesforce", "hubspot"):
            seen: dict[str, str] = {}
            for crm_value, ours in getattr(spec.values, system).items():
                where = (*path, "values", system, crm_value)
                key = crm_value.strip().casefold()
                if not key or not ours.strip():
                    self.fail(where, "a value and what it means may not be empty",
                              "expected e.g. SOCIAL_MEDIA: Social")
                elif key in seen:
                    self.fail(where, f"'{crm_value}' is '{seen[key]}' again (values match whatever their case)",
                              "expected each value once")
                else:
                    seen[key] = crm_value
                    out.setdefault(system, {})[key] = ours.strip()
        return out

    def crm_fields(self, path: PathKey, spec: FieldSpec) -> dict[str, str]:
        out: dict[str, str] = {}
        for system, pattern, example in (("salesforce", SALESFORCE_FIELD, "Lead.Lead_Score__c"),
                                          ("hubspot", HUBSPOT_FIELD, "hubspotscore")):
            value = getattr(spec, system)
            if value is None:
                continue
            if not pattern.match(value):
                self.fail((*path, system), f"'{value}' is not a {SYSTEM_WORDS[system]} field name",
                          f"expected a field such as {example}")
                continue
            out[system] = value
        return out

    # teams

    def teams(self, specs: Mapping[str, TeamSpec | None]) -> dict[str, c.Team]:
        out: dict[str, c.Team] = {}
        scope = Scope(self.base_catalog, owner_only=True)
        for name, spec in specs.items():
            path: PathKey = ("teams", name)
            if spec is None or not self.name_ok(path, name, "team"):
                continue
            for i, email in enumerate(spec.members):
                if not EMAIL.match(email):
                    self.fail((*path, "members", i), f"'{email}' is not an email address",
                              "expected owner emails such as ana@example.com")
            if not spec.members and spec.condition is None:
                self.fail(path, "the team has neither members nor a condition",
                          "expected members: [emails] and/or condition: owner_department = 'Sales'", key=True)
            cond = None
            if spec.condition is not None:
                cond = self.condition((*path, "condition"), spec.condition, scope)
            out[name] = c.Team(name, spec.meaning, frozenset(fold(m.strip()) for m in spec.members), cond)
        return out

    # stages

    def labels(self, name: str, spec: StageSpec) -> tuple[dict[str, Condition], tuple[c.Trace, ...]]:
        conditions: dict[str, Condition] = {}
        traces: list[c.Trace] = []
        for system in ("salesforce", "hubspot"):
            text = getattr(spec.labels, system)
            if text is None:
                continue
            cond = self.condition(("stages", name, "labels", system), text, Scope(self.base_catalog, system=system))
            if cond is not None:
                conditions[system] = cond
                traces.extend(_traces(cond))
        return conditions, tuple(traces)

    def stage_field_collisions(self, fields: Mapping[str, FieldSpec | None],
                               labels: Mapping[str, tuple[dict[str, Condition], tuple[c.Trace, ...]]]) -> None:
        for name, (_, traces) in labels.items():
            if traces and f"{name}_at" in fields:
                self.fail(("fields", f"{name}_at"), f"'{name}_at' is the built-in time stage {name} was entered",
                          "expected another name for this field", key=True)

    def order(self, specs: Mapping[str, StageSpec | None]) -> list[str]:
        """Funnel order: stages after the ones they follow, ties in file order; cycles reported."""
        after = {name: [a for a in (spec.after if spec else []) if a in specs] for name, spec in specs.items()}
        for name, spec in specs.items():
            if spec is None:
                continue
            for i, prev in enumerate(spec.after):
                path: PathKey = ("stages", name, "after", i) if len(spec.after) > 1 else ("stages", name, "after")
                if prev == name:
                    self.fail(path, f"stage '{name}' comes after itself", "expected an earlier stage")
                else:
                    self.known(path, prev, list(specs), "stage")
        done: list[str] = []
        remaining = list(specs)
        while remaining:
            ready = next((n for n in remaining if all(a in done or a == n for a in after[n])), None)
            if ready is None:
                cycle = _cycle(after, remaining)
                walk = list(reversed(cycle))
                walk = walk[walk.index(cycle[0]):] + walk[:walk.index(cycle[0])]
                self.fail(("stages", cycle[0], "after"), "stage order has a cycle: " + " -> ".join(
                    [*walk, walk[0]]), "expected each stage to come after earlier stages only")
                done.extend(remaining)
                break
            done.append(ready)
            remaining.remove(ready)
        return done

    def stages(self, specs: Mapping[str, StageSpec | None],
               labels: Mapping[str, tuple[dict[str, Condition], tuple[c.Trace, ...]]],
               order: list[str]) -> dict[str, c.Stage]:
        if len(specs) > MAX_STAGES:
            self.fail(("stages",), f"{len(specs)} stages", f"expected at most {MAX_STAGES}")
        out: dict[str, c.Stage] = {}
        scope = Scope(self.catalog)
        for name in order:
            spec = specs.get(name)
            path: PathKey = ("stages", name)
            if spec is None:
                self.raw_references(path, {"owner": self.team_names})
                continue
            if not self.name_ok(path, name, "stage"):
                continue
            self.known((*path, "owner"), spec.owner, self.team_names, "team")
            definition = self.condition((*path, "definition"), spec.definition, scope)
            grace = self.duration((*path, "grace"), spec.grace, business=False) if spec.grace else None
            conditions, traces = labels.get(name, ({}, ()))
            if definition is not None:
                out[name] = c.Stage(name, spec.meaning, spec.owner, definition, conditions, tuple(spec.after),
                                    grace, traces)
        return out

    def raw_references(self, path: PathKey, refs: Mapping[str, list[str]]) -> None:
        """Check names in an entry that failed its structure check, so no problem waits for a rerun."""
        raw: Any = self.doc.data
        for part in path:
            if isinstance(raw, dict) and isinstance(part, str):
                raw = raw.get(part)
            elif isinstance(raw, list) and isinstance(part, int) and part < len(raw):
                raw = raw[part]
            else:
                raw = None
        if not isinstance(raw, dict):
            return
        noun = {"owner": "team", "calendar": "calendar"}
        for key, choices in refs.items():
            value = raw.get(key)
            if isinstance(value, str):
                self.known((*path, key), value, choices, noun.get(key, key))

    # calendars

    def calendars(self, specs: Mapping[str, CalendarModel | None]) -> dict[str, c.Calendar]:
        out: dict[str, c.Calendar] = {}
        countries = holidays_lib.list_supported_countries()
        for name, spec in specs.items():
            path: PathKey = ("calendars", name)
            if spec is None or not self.name_ok(path, name, "calendar"):
                continue
            ok = True
            try:
                ZoneInfo(spec.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                self.fail((*path, "timezone"), f"unknown time zone '{spec.timezone}'",
                          "expected an IANA zone such as America/New_York or Europe/Berlin")
                ok = False
            hours = self.hours((*path, "hours"), spec.hours)
            workdays = self.days((*path, "days"), spec.days)
            if spec.holidays.upper() not in countries:
                self.fail((*path, "holidays"), f"unknown holiday country '{spec.holidays}'",
                          expected_one_of(spec.holidays.upper(), list(countries), "a country code"))
                ok = False
            if ok and hours is not None and workdays is not None:
                calendar_spec = CalendarSpec(spec.timezone, hours[0], hours[1], workdays, spec.holidays.upper())
                out[name] = c.Calendar(name, calendar_spec, frozenset(spec.extra_dates))
        return out

    def hours(self, path: PathKey, text: str) -> tuple[int, int] | None:
        match = HOURS.match(text.strip())
        if not match:
            self.fail(path, f"'{text}' is not a range of working hours", "expected HH:MM-HH:MM such as 09:00-17:00")
            return None
        start_h, start_m, end_h, end_m = (int(g) for g in match.groups())
        if start_m or end_m:
            self.fail(path, f"'{text}' does not start and end on the hour", "expected whole hours such as 09:00-17:00")
            return None
        if not 0 <= start_h < end_h <= 24:
            self.fail(path, f"'{text}' does not end after it starts within one day",
                      "expected 00:00 <= start < end <= 24:00")
            return None
        return start_h, end_h

    def days(self, path: PathKey, names: list[str]) -> tuple[int, ...] | None:
        out: list[int] = []
        for i, raw in enumerate(names):
            key = raw.strip().lower()[:3]
            if key not in DAYS or raw.strip().lower() not in (key, _full_day(key)):
                self.fail((*path, i), f"unknown day '{raw}'", expected_one_of(raw, list(DAYS), "a day"))
                return None
            if DAYS[key] in out:
                self.fail((*path, i), f"'{raw}' is listed twice", "expected each working day once")
                return None
            out.append(DAYS[key])
        if not out:
            self.fail(path, "there are no working days", "expected at least one day such as mon")
            return None
        return tuple(sorted(out))

    # write-back

    def writeback(self, spec: WritebackSpec | None) -> c.Writeback | None:
        if spec is None:
            return None
        fields: dict[str, dict[str, tuple[str, ...]]] = {}
        for value, target in spec.fields.items():
            path: PathKey = ("writeback", "fields", value)
            if value not in c.DETENTE_VALUES:
                self.fail(path, f"'{value}' is not a value detente computes",
                          expected_one_of(value, list(c.DETENTE_VALUES), "one of the detente values"), key=True)
                continue
            systems: dict[str, tuple[str, ...]] = {}
            for system, pattern, example in (("salesforce", SALESFORCE_FIELD, "Lead.Detente_Status__c"),
                                              ("hubspot", HUBSPOT_FIELD, "detente_status")):
                names = tuple(getattr(target, system))
                for i, crm in enumerate(names):
                    where = (*path, system, i) if len(names) > 1 else (*path, system)
                    if not pattern.match(crm):
                        self.fail(where, f"'{crm}' is not a {SYSTEM_WORDS[system]} field name",
                                  f"expected a field such as {example}")
                    elif not WRITABLE[system].match(crm):
                        self.fail(where, f"detente may not write {crm}: it writes only fields of its own, "
                                  f"on {WRITABLE_WHERE[system]}", f"expected a field such as {example} "
                                  "(create it in the CRM; detente never overwrites the CRM's own or other tools' "
                                  "fields, and makes and updates only its own tasks)")
                if names:
                    systems[system] = names
            if not systems:
                self.fail(path, f"'{value}' is written nowhere", "expected salesforce: and/or hubspot: fields",
                          key=True)
            fields[value] = systems
        tasks = {name: t for name, tmpl in spec.tasks.items()
                 if (t := self.task(("writeback", "tasks", name), name, tmpl)) is not None}
        return c.Writeback(fields, tasks)

    def task(self, path: PathKey, name: str, tmpl: Any) -> c.TaskTemplate | None:
        if not self.name_ok(path, name, "task", SLA_ID):
            return None
        ok = True
        for part in ("subject", "body"):
            ok = self.placeholders((*path, part), getattr(tmpl, part)) and ok
        if not tmpl.subject.strip():
            self.fail((*path, "subject"), "the subject is empty", "expected a short subject for the task")
            ok = False
        due = self.duration((*path, "due"), tmpl.due)
        if tmpl.owner != "person_owner" and not EMAIL.match(tmpl.owner):
            self.fail((*path, "owner"), f"'{tmpl.owner}' is not an owner", "expected person_owner or an owner email")
            ok = False
        if due is None or not ok:
            return None
        return c.TaskTemplate(name, tmpl.subject, tmpl.body, due, tmpl.priority, tmpl.owner)

    def placeholders(self, path: PathKey, text: str) -> bool:
        try:
            parts = list(string.Formatter().parse(text))
        except ValueError as exc:
            self.fail(path, f"unbalanced braces ({exc})", "expected {placeholder} pairs; write {{ for a brace")
            return False
        ok = True
        for _, name, spec, conversion in parts:
            if name is None:
                continue
            offset = max(0, text.find("{" + name))
            where = self.doc.where_in(path, offset)
            if name not in c.PLACEHOLDERS:
                self.problems.append(Problem(where, f"{dotted(path)}: unknown placeholder {{{name}}}",
                                             expected_one_of(name, list(c.PLACEHOLDERS), "a placeholder")))
                ok = False
            elif spec or conversion:
                self.problems.append(Problem(where, f"{dotted(path)}: {{{name}}} has a format or conversion",
                                             f"expected plain {{{name}}}"))
                ok = False
        return ok

    # SLAs

    def slas(self, specs: list[SlaSpec | None], stages: Mapping[str, c.Stage],
             calendars: Mapping[str, c.Calendar], writeback: c.Writeback | None) -> list[c.Sla]:
        out: list[c.Sla] = []
        seen: dict[str, int] = {}
        for i, spec in enumerate(specs):
            path: PathKey = ("slas", i)
            if spec is None:
                self.raw_references(path, {"owner": self.team_names, "calendar": self.calendar_names})
                continue
            if not SLA_ID.match(spec.id):
                self.fail((*path, "id"), f"'{spec.id}' is not a valid SLA id",
                          "expected lower-case letters, digits, _ and - such as mql-handoff")
            if spec.id in seen:
                self.fail((*path, "id"), f"SLA id '{spec.id}' is used twice (also slas[{seen[spec.id]}])",
                          "expected each SLA id once")
            seen.setdefault(spec.id, i)
            sla = self.sla(path, spec, stages, calendars, writeback)
            if sla is not None:
                out.append(sla)
        return out

    def sla(self, path: PathKey, spec: SlaSpec, stages: Mapping[str, c.Stage],
            calendars: Mapping[str, c.Calendar], writeback: c.Writeback | None) -> c.Sla | None:
        before = len(self.problems)
        self.known((*path, "owner"), spec.owner, self.team_names, "team")
        scope = Scope(self.catalog)
        applies = self.condition((*path, "applies_to"), spec.applies_to, scope) if spec.applies_to else None
        start = self.event((*path, "start"), spec.start, stages, role="start")
        stop = self.event((*path, "stop"), spec.stop, stages, role="stop")
        within = self.duration((*path, "within"), spec.within)
        calendar = self.sla_calendar(path, spec, within, calendars)
        require = None
        if spec.require is not None:
            cond = self.condition((*path, "require", "condition"), spec.require.condition, scope)
            stop_stages = stop.stages if stop is not None and stop.kind == "stage" else ()
            for j, name in enumerate(spec.require.before):
                where: PathKey = (*path, "require", "before", j) if len(spec.require.before) > 1 \
                    else (*path, "require", "before")
                if name not in stop_stages:
                    self.fail(where, f"'{name}' is not a stage this SLA stops at",
                              expected_one_of(name, list(stop_stages), "a stage from stop.stage"))
            if cond is not None:
                require = c.Requirement(cond, tuple(spec.require.before))
        warning = self.action((*path, "on_warning"), spec.on_warning, writeback, within)
        breach = self.action((*path, "on_breach"), spec.on_breach, writeback, within)
        if len(self.problems) > before or start is None or stop is None or within is None:
            return None
        return c.Sla(spec.id, spec.meaning, spec.owner, applies, start, stop, within, calendar, require,
                     warning, breach)

    def sla_calendar(self, path: PathKey, spec: SlaSpec, within: Duration | None,
                     calendars: Mapping[str, c.Calendar]) -> str | None:
        if spec.calendar is not None:
            self.known((*path, "calendar"), spec.calendar, self.calendar_names, "calendar")
            return spec.calendar
        needs = (within is not None and within.business) or (
            spec.on_warning is not None and "business" in spec.on_warning.before)
        if needs and len(self.calendar_names) != 1:
            names = ", ".join(self.calendar_names) or "none defined"
            self.fail((*path, "within"), f"'{spec.within}' is business time but the SLA names no calendar",
                      f"expected calendar: one of the calendars ({names})")
        return self.calendar_names[0] if needs and len(self.calendar_names) == 1 else None

    def event(self, path: PathKey, spec: EventSpec, stages: Mapping[str, c.Stage], role: str) -> c.Event | None:
        keys = [k for k in ("stage", "owner_team", "first_activity", "condition") if getattr(spec, k) is not None]
        allowed = ("stage", "owner_team", "condition") if role == "start" else (
            "stage", "owner_team", "first_activity", "condition")
        if len(keys) != 1:
            shown = "has " + " and ".join(keys) if keys else "is empty"
            self.fail(path, shown, "expected exactly one of: " + ", ".join(allowed), key=True)
            return None
        kind = keys[0]
        if kind not in allowed:
            self.fail((*path, kind), f"a clock cannot {role} at {kind}", "expected one of: " + ", ".join(allowed),
                      key=True)
            return None
        if kind == "stage":
            names = tuple(spec.stage or ())
            ok = bool(names)
            for j, name in enumerate(names):
                where: PathKey = (*path, "stage", j) if len(names) > 1 else (*path, "stage")
                if not self.known(where, name, self.stage_names, "stage"):
                    ok = False
                elif name in stages and not stages[name].dated:
                    self.fail(where, f"stage '{name}' has no label detente can date from the CRMs' history",
                              "expected a stage with a label such as Status = '...' or lifecyclestage = '...'")
                    ok = False
            return c.Event("stage", stages=names) if ok else None
        if kind == "owner_team":
            team = str(spec.owner_team)
            return c.Event("owner_team", team=team) if self.known((*path, kind), team, self.team_names, "team") \
                else None
        if kind == "first_activity":
            if spec.first_activity != "owner":
                self.fail((*path, kind), f"got '{spec.first_activity}'", "expected first_activity: owner")
                return None
            return c.Event("first_activity")
        cond = self.condition((*path, "condition"), str(spec.condition), Scope(self.catalog))
        return c.Event("condition", condition=cond) if cond is not None else None

    def action(self, path: PathKey, spec: WarningSpec | BreachSpec | None, writeback: c.Writeback | None,
               within: Duration | None) -> c.Action | None:
        if spec is None:
            return None
        tasks = list(writeback.tasks) if writeback is not None else []
        declared = list(writeback.fields) if writeback is not None else []
        if spec.task is not None:
            self.known((*path, "task"), spec.task, tasks, "task template")
        for j, value in enumerate(spec.write):
            where: PathKey = (*path, "write", j) if len(spec.write) > 1 else (*path, "write")
            if value not in declared:
                self.fail(where, f"writeback field '{value}' is not declared",
                          expected_one_of(value, declared, "a value declared under writeback.fields"))
        before = None
        if isinstance(spec, WarningSpec):
            before = self.duration((*path, "before"), spec.before)
            if before is not None and within is not None and before.business == within.business \
                    and _minutes(before) > _minutes(within):
                self.fail((*path, "before"), f"warning {before} before the due time is longer than {within}, "
                                             "so it would start before the clock does",
                          f"expected at most {within} (as long as within: warn from the start)")
        return c.Action(spec.task, tuple(spec.write), before)

    # the rest

    def goals(self, spec: GoalsSpec | None) -> c.Goals | None:
        if spec is None:
            return None
        path: PathKey = ("goals", "lead_value")
        window = self.duration((*path, "window"), spec.lead_value.window, business=False)
        for j, name in enumerate(spec.lead_value.by):
            where: PathKey = (*path, "by", j) if len(spec.lead_value.by) > 1 else (*path, "by")
            found = self.catalog.resolve(name)
            if found is None:
                self.fail(where, f"unknown field '{name}'", expected_one_of(name, self.catalog.names(), "a field"))
            elif found.type is not ValueType.TEXT:
                self.fail(where, f"'{name}' is {found.type.value}", "expected a text field such as source or offer")
        if spec.lead_value.method == "fixed" and not spec.lead_value.values:
            self.fail((*path, "values"), "fixed lead values are missing", "expected values: {Demo Request: 1500, "
                      "default: 100}", key=True)
        if window is None:
            return None
        lead_value = c.LeadValue(spec.lead_value.method, window, tuple(spec.lead_value.by),
                                 dict(spec.lead_value.values))
        return c.Goals(spec.period, spec.bookings, spec.currency, spec.average_selling_price, lead_value)

    def disagreements(self, specs: list[Disagreement | None],
                      stages: Mapping[str, c.Stage]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for i, spec in enumerate(specs):
            if spec is None:
                continue
            ok = True
            for system in ("hubspot", "salesforce"):
                name = getattr(spec, system)
                path: PathKey = ("disagreements", i, system)
                if not self.known(path, name, self.stage_names, "stage"):
                    ok = False
                elif name in stages and system not in stages[name].labels:
                    self.fail(path, f"stage '{name}' has no {SYSTEM_WORDS[system]} label",
                              f"expected a stage with labels.{system}")
                    ok = False
            if ok:
                out.append((spec.hubspot, spec.salesforce))
        return out

    def feedback(self, spec: FeedbackSpec | None) -> c.Feedback | None:
        if spec is None:
            return None
        idle = self.duration(("feedback", "idle_with_sales"), spec.idle_with_sales, business=False)
        team_ok = self.known(("feedback", "team"), spec.team, self.team_names, "team")
        return c.Feedback(idle, spec.team) if idle is not None and team_ok else None


# -- small pure helpers --------------------------------------------------------------------------------


def _full_day(key: str) -> str:
    return {"mon": "monday", "tue": "tuesday", "wed": "wednesday", "thu": "thursday", "fri": "friday",
            "sat": "saturday", "sun": "sunday"}[key]


def _minutes(duration: Duration) -> float:
    if duration.business:
        return duration.business_hours(8) * 60
    return duration.calendar.total_seconds() / 60


def _cycle(after: Mapping[str, list[str]], remaining: list[str]) -> list[str]:
    """One cycle among ``remaining`` stages, as the list of stages walked backwards."""
    start = remaining[0]
    path = [start]
    current = start
    while True:
        nxt = next((a for a in after[current] if a in remaining), None)
        if nxt is None:
            return path
        if nxt in path:
            return path[path.index(nxt):]
        path.append(nxt)
        current = nxt


def _traces(cond: Condition) -> list[c.Trace]:
    """How a label appears in the transitions, when it is a value match on a status field."""
    items = cond.root.items if isinstance(cond.root, ir.Or) else (cond.root,)
    found: dict[str, set[str]] = {}
    for item in items:
        matched = _value_match(item)
        if matched is None:
            return []
        name, values = matched
        found.setdefault(name, set()).update(values)
    out = []
    for name, values in found.items():
        system, crm = TRANSITION_FIELDS[name]
        out.append(c.Trace(system, crm, name, frozenset(values)))
    return out


def _value_match(node: ir.Pred) -> tuple[str, set[str]] | None:
    if isinstance(node, ir.Compare) and node.op == "=":
        field, const = (node.left, node.right) if isinstance(node.left, ir.Field) else (node.right, node.left)
        if isinstance(field, ir.Field) and isinstance(const, ir.Const) and field.field.name in TRANSITION_FIELDS:
            return field.field.name, {fold(str(const.value))}
    if isinstance(node, ir.InList) and not node.negated and isinstance(node.operand, ir.Field) \
            and node.operand.field.name in TRANSITION_FIELDS:
        return node.operand.field.name, {fold(str(v.value)) for v in node.values}
    return None


def _without(data: Any, locs: list[tuple[str | int, ...]]) -> Any:
    """A deep copy of ``data`` without the values at ``locs`` (the ones that failed their check)."""
    if not isinstance(data, (dict, list)):
        return data
    direct = {loc[0] for loc in locs if len(loc) == 1}
    nested: dict[str | int, list[tuple[str | int, ...]]] = {}
    for loc in locs:
        if len(loc) > 1:
            nested.setdefault(loc[0], []).append(loc[1:])
    if isinstance(data, dict):
        return {k: _without(v, nested.get(k, [])) for k, v in data.items() if k not in direct}
    return [_without(v, nested.get(i, [])) for i, v in enumerate(data) if i not in direct]


def _dump(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dump(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    return value

