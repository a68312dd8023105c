"""``detente audit``: reconcile the findings and list them as a table or JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

DEFAULT_RULES = Path("config/rules.yaml")


def finding_json(row: dict[str, Any]) -> dict[str, Any]:
    """The published JSON shape of one finding."""
    def iso(value: datetime | None) -> str | None:
        return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    return {"kind": row["kind"], "rule": row["rule"], "rules_version": row["rules_version"],
            "status": row["status"],
            "person": {"email": row["email"], "salesforce_id": row["salesforce_id"], "hubspot_id": row["hubspot_id"]},
            "owner": {"email": row["owner_email"]}, "team": row["team"], "opened_at": iso(row["opened_at"]),
            "due_at": iso(row["due_at"]), "resolved_at": iso(row.get("resolved_at")),
            "explanation": row["explanation"]}


def _parse_as_of(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is not an ISO timestamp such as 2026-11-16T15:00:00Z") from exc
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def audit_command(
    ctx: typer.Context,
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="evaluate as if at this moment (ISO); shows what would be found, stores nothing")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    kind: Annotated[list[str] | None, typer.Option("--kind", help="only these kinds (repeatable)")] = None,
    team: Annotated[list[str] | None, typer.Option("--team", help="only these teams (repeatable)")] = None,
    show_all: Annotated[bool, typer.Option("--all/--open", help="resolved findings too, or open only")] = False,
    rules_path: Annotated[Path, typer.Option("--rules", help="rules file or folder")] = DEFAULT_RULES,
) -> None:
    """Turn the unified store and the agreement into findings, and list them."""
    from sqlalchemy import select

    from detente.cli import _settings_and_store
    from detente.reconcile.facts import load_facts
    from detente.reconcile.ledger import FINDINGS, evaluate, reconcile, row_of
    from detente.rules import RulesError, load_rules

    if fmt not in ("table", "json"):
        raise typer.BadParameter("--format must be table or json")
    try:
        rules = load_rules(rules_path)
    except RulesError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        typer.echo(f"{len(exc.problems)} problem(s) in {rules_path}; fix them or pass --rules", err=True)
        raise typer.Exit(1) from exc
    _, engine = _settings_and_store(ctx)
    if as_of is not None:
        moment = _parse_as_of(as_of)
        with engine.connect() as conn:
            facts = load_facts(conn, rules, moment)
        rows = [row_of(f, rules.version, moment) for f in evaluate(facts, rules, moment)]
    else:
        reconcile(engine, rules, datetime.now(UTC))
        with engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(select(FINDINGS).order_by(FINDINGS.c.opened_at))]
    rows = [r for r in rows if (show_all or r["status"] == "open") and (not kind or r["kind"] in kind)
            and (not team or r["team"] in team)]
    if fmt == "json":
        typer.echo(json.dumps([finding_json(r) for r in rows], indent=2))
        return
    for r in rows:
        who = r["email"] or r["salesforce_id"] or r["hubspot_id"] or "-"
        typer.echo(f"{r['status']:8} {r['kind']:17} {r['rule']:28} {who:40} {r['team'] or '-':10} "
                   f"{r['opened_at']:%Y-%m-%d %H:%M}  {r['explanation']}")
    typer.echo(f"{len(rows)} finding(s)")
