"""The agreement as YAML: parse, validate, compile to SQL, evaluate, explain, document, diff.

Stages of the pipeline, each its own module and each usable alone::

    source      YAML -> plain data with file:line:col for every key and value
    model       strict structure (unknown keys are errors)
    conditions  condition text -> sqlglot -> allow-list -> typed tree (ir)
    validate    meaning: references, cycles, durations, calendars -> checked.Rules
    sql         typed tree -> SQLAlchemy for SQLite and PostgreSQL
    explain     typed tree -> Python evaluation and a per-record explanation
    evaluate    set-based evaluation over the store
    clocks      SLA clocks; diff: impact of a change; glossary: the handbook

Entry points: ``load_rules(path)`` (raises RulesError with every problem),
``check_rules(path)`` (never raises for a bad file) and ``reload_rules(path, current)``
(keeps the last good rules when the new ones are invalid).
"""

from __future__ import annotations

from detente.rules.checked import Rules
from detente.rules.problems import Problem, RulesError
from detente.rules.validate import CheckResult, Reload, check_rules, load_rules, reload_rules

__all__ = ["CheckResult", "Problem", "Reload", "Rules", "RulesError", "check_rules", "load_rules", "reload_rules"]
