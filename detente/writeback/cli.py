"""``detente plan``, ``detente apply`` and ``detente writes``: see and send what detente writes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

DEFAULT_RULES = Path("config/rules.yaml")


def _rules(path: Path) -> Any:
    from detente.rules import RulesError, load_rules

    try:
        return load_rules(path)
    except RulesError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        typer.echo(f"{len(exc.problems)} problem(s) in {path}; fix them or pass --rules", err=True)
        raise typer.Exit(1) from exc


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"key": row["key"], "kind": row["kind"], "system": row["system"], "object": row["object"],
            "record_id": row["record_id"], "field": row["field"], "current": row["previous"], "new": row["value"],
            "task_key": row["task_key"], "payload": row["payload"], "reason": row["reason"], "state": row["state"],
            "attempts": row["attempts"], "error": row.get("error"), "planned_at": _iso(row["planned_at"]),
            "applied_at": _iso(row.get("applied_at"))}


def _show(rows: Sequence[dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        typer.echo(json.dumps([write_json(r) for r in rows], indent=2, default=str))
        return
    for r in rows:
        where = f"{r['system']} {r['object']} {r['record_id'] or ''}".strip()
        if r["kind"] == "field":
            what = f"{r['field']}: {r['previous']!r} -> {r['value']!r}"
        elif r["kind"] == "task":
            what = f"task {r['task_key']}: {r['payload'].get('Subject') or r['payload'].get('hs_task_subject')}"
        else:
            what = f"complete task {r['task_key']}"
        typer.echo(f"{r['state']:8} {where:45} {what}  ({r['reason'][:120]})")


def _check_fields(sf: Any, hs: Any, rules: Any) -> None:
    """Every CRM field the rules write exists in the org (asked through the writers ``sf`` and
    ``hs``), or the command stops naming them."""
    if rules.writeback is None:
        return
    sf_wanted: dict[str, list[str]] = {"Task": ["Detente_Key__c"]}
    hs_wanted: dict[str, list[str]] = {"tasks": ["detente_key"], "contacts": []}
    for systems in rules.writeback.fields.values():
        for name in systems.get("salesforce", ()):
            obj, field = name.split(".", 1)
            sf_wanted.setdefault(obj, []).append(field)
        hs_wanted["contacts"] += list(systems.get("hubspot", ()))
    missing = [f"Salesforce {obj}.{f}" for obj, fs in sf.missing_fields(sf_wanted).items() for f in fs]
    missing += [f"HubSpot {obj}.{f}" for obj, fs in hs.missing_properties(hs_wanted).items() for f in fs]
    if missing:
        typer.echo("these fields do not exist in the CRMs (create them, or remove them from the rules' "
                   "writeback section): " + ", ".join(missing), err=True)
        raise typer.Exit(1)


def plan_command(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    rules_path: Annotated[Path, typer.Option("--rules", help="rules file or folder")] = DEFAULT_RULES,
) -> None:
    """Show every write detente would make now (and queue them in the outbox)."""
    from detente.cli import _settings_and_store
    from detente.writeback.plan import PlanTooLarge, plan_writes

    if fmt not in ("table", "json"):
        raise typer.BadParameter("--format must be table or json")
    rules = _rules(rules_path)
    settings, engine = _settings_and_store(ctx)
    try:
        plan = plan_writes(engine, rules, settings.writeback, datetime.now(UTC))
    except PlanTooLarge as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    _show(plan.writes, fmt)
    if fmt == "table":
        for o in plan.overrides:
            typer.echo(f"changed by someone: {o.target.system} {o.target.object} {o.target.record_id} {o.field}: "
                       f"detente wrote {o.written!r}, the CRM now has {o.now!r}")
        for s in plan.skipped:
            typer.echo(f"skipped: {s}")
        typer.echo(f"{len(plan.writes)} write(s) planned, {plan.unchanged} already right, "
                   f"{len(plan.overrides)} changed by someone, {len(plan.skipped)} skipped")


def apply_command(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask before writing")] = False,
    rules_path: Annotated[Path, typer.Option("--rules", help="rules file or folder")] = DEFAULT_RULES,
) -> None:
    """Plan, then send the outbox to the CRMs and record every result."""
    from detente.cli import _settings_and_store
    from detente.writeback.apply import WritebackDisabled, apply_writes, pending
    from detente.writeback.plan import PlanTooLarge, plan_writes
    from detente.writeback.send import HubSpotWriter, SalesforceWriter

    rules = _rules(rules_path)
    settings, engine = _settings_and_store(ctx)
    if not settings.writeback.enabled:
        typer.echo("write-back is disabled; set writeback.enabled: true in the settings "
                   "(`detente plan` shows what it would write)", err=True)
        raise typer.Exit(1)
    # One writer per CRM for the whole command (one login), closed however it ends.
    sf, hs = SalesforceWriter(settings.salesforce), HubSpotWriter(settings.hubspot)
    try:
        _check_fields(sf, hs, rules)
        now = datetime.now(UTC)
        try:
            plan_writes(engine, rules, settings.writeback, now)
        except PlanTooLarge as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from exc
        rows = pending(engine, settings.writeback.max_attempts)
        if settings.writeback.dry_run:
            _show(rows, "table")
            typer.echo(f"dry run: {len(rows)} write(s) left planned, none sent")
            return
        if rows and not yes and not typer.confirm(f"send {len(rows)} write(s) to the CRMs?"):
            raise typer.Exit(1)
        marks = sf.calls, hs.calls
        try:
            result = apply_writes(engine, settings, {"salesforce": sf.send, "hubspot": hs.send}, now)
        except WritebackDisabled as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from exc
        sf_calls, hs_calls = sf.calls - marks[0], hs.calls - marks[1]
    finally:
        sf.close()
        hs.close()
    for e in result.errors:
        typer.echo(f"not applied: {e}", err=True)
    skipped = result.counts["skipped"]
    typer.echo(f"{result.counts['applied']} applied, {result.counts['retry']} to retry, "
               f"{result.counts['failed']} failed{f', {skipped} skipped (record deleted)' if skipped else ''} "
               f"({sf_calls} Salesforce and {hs_calls} HubSpot calls)")


def writes_command(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option("--since", help="only writes planned from this moment (ISO)")] = None,
    state: Annotated[list[str] | None, typer.Option("--state", help="only these states (repeatable)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """The log of every write detente planned, sent and applied (who, what, when, result)."""
    from sqlalchemy import select

    from detente.cli import _settings_and_store
    from detente.reconcile.cli import _parse_as_of
    from detente.writeback.plan import WRITES

    _, engine = _settings_and_store(ctx)
    stmt = select(WRITES).order_by(WRITES.c.planned_at, WRITES.c.key)
    if since is not None:
        stmt = stmt.where(WRITES.c.planned_at >= _parse_as_of(since))
    if state:
        stmt = stmt.where(WRITES.c.state.in_(state))
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(stmt)]
    _show(rows, fmt)
    if fmt == "table":
        typer.echo(f"{len(rows)} write(s)")
