"""``detente plan``, ``detente apply`` and ``detente writes`` as an operator runs them, against a
private sandbox and a store that has pulled and audited it: what plan shows, what apply refuses
to do (disabled, over the cap, fields missing in the org), dry runs, and the write log."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner, Result

from detente.cli import app
from detente.sandbox.server import Sandbox
from tests.writeback.test_crash import (  # noqa: F401 - fixtures: logging_restored, rules, template, private, store
    RULES,
    crm_value,
    holds,
    loaded_rules,
    outbox,
    prepared_store,
    prepared_template,
    private_sandbox,
    restored_logging,
    write_calls,
    write_config,
)

SQLITE_ONLY = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
JSON_KEYS = {"kind", "system", "object", "record_id", "field", "current", "new", "reason", "state"}
SUMMARY = re.compile(r"(\d+) write\(s\) planned, (\d+) already right, (\d+) changed by someone, (\d+) skipped")


def detente(config: Path, *args: str, rules_path: Path | None = RULES) -> Result:
    extra = ["--rules", str(rules_path)] if rules_path is not None and args[0] in ("plan", "apply") else []
    return CliRunner().invoke(app, ["--config", str(config), *args, *extra], env={"DETENTE_CONFIG": ""})


def line_of(row: dict[str, Any]) -> tuple[str, str]:
    """What ``plan`` shows of a write: where it goes, and what it changes."""
    where = f"{row['system']} {row['object']} {row['record_id'] or ''}".strip()
    if row["kind"] == "field":
        return where, f"{row['field']}: {row['previous']!r} -> {row['value']!r}"
    return where, f"task {row['task_key']}: "


@SQLITE_ONLY
def test_plan_prints_each_write_with_its_current_and_new_value(private: Sandbox, store: Engine, store_url: str,
                                                               tmp_path: Path) -> None:
    config = write_config(private, tmp_path / "detente.yaml", store_url)  # plan needs no write access
    calls = write_calls(private)
    result = detente(config, "plan")
    assert result.exit_code == 0, result.output
    rows = outbox(store)
    assert rows and {r["state"] for r in rows} == {"planned"} and {r["kind"] for r in rows} == {"field", "task"}
    lines = result.stdout.splitlines()
    for r in rows:
        where, what = line_of(r)
        assert any(line.startswith("planned") and where in line and what in line for line in lines), (where, what)
        if r["kind"] == "field":  # "current" is what the CRM holds now
            assert holds(crm_value(private, r), r["previous"]), (r["key"], crm_value(private, r), r["previous"])
    summary = SUMMARY.fullmatch(lines[-1])
    assert summary is not None, lines[-1]
    assert int(summary[1]) == len(rows) and int(summary[3]) == 0
    assert write_calls(private) == calls  # planning writes nothing to the CRMs

    again = detente(config, "plan")  # the writes are queued already: nothing new
    assert again.exit_code == 0 and again.stdout.splitlines()[-1].startswith("0 write(s) planned")
    assert len(outbox(store)) == len(rows)


def test_plan_as_json(private: Sandbox, store: Engine, store_url: str, tmp_path: Path) -> None:
    config = write_config(private, tmp_path / "detente.yaml", store_url)
    result = detente(config, "plan", "--format", "json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    rows = {r["key"]: r for r in outbox(store)}
    assert shown and len(shown) == len(rows)
    for item in shown:
        assert set(item) >= JSON_KEYS
        row = rows[item["key"]]
        assert (item["kind"], item["system"], item["object"], item["record_id"], item["field"]) == \
            (row["kind"], row["system"], row["object"], row["record_id"], row["field"])
        assert (item["current"], item["new"], item["state"]) == (row["previous"], row["value"], "planned")
        assert item["reason"] and item["reason"] == row["reason"]
        if item["kind"] == "task":
            assert item["field"] is None and item["new"] is None and item["task_key"] == row["task_key"]
    assert {i["kind"] for i in shown} == {"field", "task"}


@SQLITE_ONLY
def test_apply_with_writeback_disabled_exits_1_saying_how_to_enable_it(private: Sandbox, store: Engine,
                                                                       store_url: str, tmp_path: Path) -> None:
    config = write_config(private, tmp_path / "detente.yaml", store_url, enabled=False)
    calls = write_calls(private)
    result = detente(config, "apply", "--yes")
    assert result.exit_code == 1
    assert "writeback.enabled: true" in result.stderr
    assert outbox(store) == [] and write_calls(private) == calls


@SQLITE_ONLY
def test_a_dry_run_lists_the_writes_and_sends_none(private: Sandbox, store: Engine, store_url: str,
                                                   tmp_path: Path) -> None:
    config = write_config(private, tmp_path / "detente.yaml", store_url, enabled=True, dry_run=True)
    calls = write_calls(private)
    result = detente(config, "apply", "--yes")
    assert result.exit_code == 0, result.output
    rows = outbox(store)
    assert rows and {(r["state"], r["attempts"]) for r in rows} == {("planned", 0)}
    assert f"dry run: {len(rows)} write(s) left planned, none sent" in result.stdout
    for r in rows:
        where, what = line_of(r)
        assert any(where in line and what in line for line in result.stdout.splitlines()), (where, what)
        if r["kind"] == "field":
            assert not holds(crm_value(private, r), r["value"]), r["key"]
    assert write_calls(private) == calls  # not one call to a write endpoint


@SQLITE_ONLY
def test_a_plan_over_the_cap_stops_and_queues_nothing(private: Sandbox, store: Engine, store_url: str,
                                                      tmp_path: Path) -> None:
    config = write_config(private, tmp_path / "detente.yaml", store_url, enabled=True, max_writes_per_run=5)
    calls = write_calls(private)
    for command in (("plan",), ("apply", "--yes")):
        result = detente(config, *command)
        assert result.exit_code == 1, result.output
        assert "writeback.max_writes_per_run (5)" in result.stderr
        assert outbox(store) == []
    assert write_calls(private) == calls


@SQLITE_ONLY
def test_rules_naming_a_field_the_org_lacks_stop_apply_before_any_write(private: Sandbox, store: Engine,
                                                                        store_url: str, tmp_path: Path) -> None:
    text = RULES.read_text()
    assert "Lead.Detente_Status__c" in text
    bad = tmp_path / "rules.yaml"
    bad.write_text(text.replace("Lead.Detente_Status__c", "Lead.Detente_Nope__c"))
    config = write_config(private, tmp_path / "detente.yaml", store_url, enabled=True)
    calls = write_calls(private)
    result = detente(config, "apply", "--yes", rules_path=bad)
    assert result.exit_code == 1, result.output
    # That field alone: every other field the rules write exists in both sandbox CRMs.
    assert result.stderr.strip().endswith("from the rules' writeback section): Salesforce Lead.Detente_Nope__c")
    assert outbox(store) == [] and write_calls(private) == calls


def test_writes_since_lists_the_applied_writes_with_their_state(private: Sandbox, store: Engine, store_url: str,
                                                                tmp_path: Path) -> None:
    config = write_config(private, tmp_path / "detente.yaml", store_url, enabled=True)
    before = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    applied = detente(config, "apply", "--yes")
    assert applied.exit_code == 0, applied.output
    after = (datetime.now(UTC) + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = outbox(store)
    assert rows and f"{len(rows)} applied, 0 to retry, 0 failed" in applied.stdout

    listed = detente(config, "writes", "--since", before, "--format", "json")
    assert listed.exit_code == 0, listed.output
    shown = json.loads(listed.stdout)
    assert sorted(i["key"] for i in shown) == sorted(r["key"] for r in rows)
    assert all(i["state"] == "applied" and i["attempts"] == 1 and i["applied_at"] >= before for i in shown)
    table = detente(config, "writes", "--since", before)
    lines = table.stdout.splitlines()
    assert table.exit_code == 0 and lines[-1] == f"{len(rows)} write(s)"
    assert len(lines) == len(rows) + 1 and all(line.startswith("applied ") for line in lines[:-1])

    later = detente(config, "writes", "--since", after)
    assert later.exit_code == 0 and later.stdout.splitlines() == ["0 write(s)"]
    assert json.loads(detente(config, "writes", "--since", after, "--format", "json").stdout) == []
    bad = detente(config, "writes", "--since", "yesterday")
    assert bad.exit_code != 0 and "ISO" in bad.output
