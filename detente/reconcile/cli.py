"""``detente audit`` (reconcile the findings and list them, or count the funnel both ways) and
``detente explain PERSON`` (one person's timeline, findings and the rules behind them)."""

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


def load_rules_or_exit(rules_path: Path) -> Any:
    """The rules, or every problem on stderr and exit code 1."""
    from detente.rules import RulesError, load_rules

    try:
        return load_rules(rules_path)
    except RulesError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        typer.echo(f"{len(exc.problems)} problem(s) in {rules_path}; fix them or pass --rules", err=True)
        raise typer.Exit(1) from exc


def audit_command(
    ctx: typer.Context,
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="evaluate as if at this moment (ISO); shows what would be found, stores nothing")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    kind: Annotated[list[str] | None, typer.Option("--kind", help="only these kinds (repeatable)")] = None,
    team: Annotated[list[str] | None, typer.Option("--team", help="only these teams (repeatable)")] = None,
    show_all: Annotated[bool, typer.Option("--all/--open", help="resolved findings too, or open only")] = False,
    rules_path: Annotated[Path, typer.Option("--rules", help="rules file or folder")] = DEFAULT_RULES,
    counts: Annotated[bool, typer.Option(
        "--counts", help="per stage, the cohort HubSpot, Salesforce and the definitions count, reconciled "
                         "with reasons, instead of listing findings (--kind, --team, --all do not apply)")] = False,
    full: Annotated[bool, typer.Option(
        "--full", help="evaluate every person, not only those whose data changed or whose clocks fell due")] = False,
    period: Annotated[str | None, typer.Option(
        "--period", help="with --counts: the people created in 2026, 2026-Q3, 2026-07 or 2026-W27 (UTC); "
                         "default: every live person")] = None,
) -> None:
    """Turn the unified store and the agreement into findings, and list them (or count the funnel)."""
    from sqlalchemy import select

    from detente.cli import _settings_and_store
    from detente.reconcile.ledger import FINDINGS, evaluate_store, reconcile, row_of

    if fmt not in ("table", "json"):
        raise typer.BadParameter("--format must be table or json")
    cohort_period = _parse_period(period, counts)
    rules = load_rules_or_exit(rules_path)
    _, engine = _settings_and_store(ctx)
    moment = datetime.now(UTC) if as_of is None else _parse_as_of(as_of)
    if as_of is not None:
        rows = [row_of(f, rules.version, moment) for f in evaluate_store(engine, rules, moment)]
    else:
        reconcile(engine, rules, moment, full=full)
        with engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(select(FINDINGS).order_by(FINDINGS.c.opened_at))]
    if counts:
        _print_counts(engine, rules, cohort_period, moment, rows, fmt)
        return
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


def _parse_period(period: str | None, counts: bool) -> Any:
    from detente.reconcile.counts import parse_period

    if period is None:
        return None
    if not counts:
        raise typer.BadParameter("applies only with --counts", param_hint="--period")
    try:
        return parse_period(period)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--period") from exc


def _print_counts(engine: Any, rules: Any, period: Any, moment: datetime, rows: list[dict[str, Any]],
                  fmt: str) -> None:
    from detente.reconcile.counts import Counts, count_stages, open_findings, read_cohort, render_table, to_json

    cohort = read_cohort(engine, rules, period, moment)
    stages = count_stages(rules, cohort, open_findings(rows))
    result = Counts(period, moment, rules.version, len(cohort), tuple(stages))
    if fmt == "json":
        typer.echo(json.dumps(to_json(result), indent=2))
    else:
        typer.echo("\n".join(render_table(result)))


def explain_command(
    ctx: typer.Context,
    person: Annotated[str, typer.Argument(
        help="an email, a Salesforce lead or contact id, or a HubSpot contact id")],
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    rules_path: Annotated[Path, typer.Option("--rules", help="rules file or folder")] = DEFAULT_RULES,
) -> None:
    """One person's timeline across both CRMs, their current stages, and every finding with its rule.

    Findings are shown as the audit last stored them (run detente audit to update them); stages are evaluated now.
    """
    from detente.cli import _settings_and_store
    from detente.reconcile.timeline import find_people

    if fmt not in ("table", "json"):
        raise typer.BadParameter("--format must be table or json")
    rules = load_rules_or_exit(rules_path)
    _, engine = _settings_and_store(ctx)
    try:
        with engine.connect() as conn:
            matches = find_people(conn, person)
        _explain_one(engine, rules, person, matches, fmt)
    finally:
        engine.dispose()


def _explain_one(engine: Any, rules: Any, person: str, matches: list[Any], fmt: str) -> None:
    from detente.reconcile.timeline import read_timeline, render_table, to_json

    if not matches:
        typer.echo(f"no person matches '{person}': searched the emails, Salesforce lead and contact ids and "
                   "HubSpot contact ids of the people in the store; pass an email, a Salesforce lead/contact id "
                   "(00Q.../003...) or a HubSpot contact id", err=True)
        raise typer.Exit(1)
    if len(matches) > 1:
        typer.echo(f"{len(matches)} people match '{person}'; pass one of their ids instead:", err=True)
        for m in matches:
            typer.echo(f"  #{m.id} {m.email or '(no email)'}: {m.ids()}", err=True)
        raise typer.Exit(1)
    timeline = read_timeline(engine, rules, matches[0], datetime.now(UTC))
    if fmt == "json":
        typer.echo(json.dumps(to_json(timeline, rules), indent=2))
    else:
        typer.echo("\n".join(render_table(timeline, rules)))
