"""``detente report``: the shared numbers of a period, as a table, JSON or CSV."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from detente.reconcile.cli import DEFAULT_RULES, _parse_as_of, load_rules_or_exit


def report_command(
    ctx: typer.Context,
    period: Annotated[str | None, typer.Option(
        "--period", help="week, month, quarter or year (the one that holds now), or 2026-Q3, 2026-07, 2026-W27, "
                         "2026; default: the goals' period that holds now")] = None,
    by: Annotated[str | None, typer.Option(
        "--by", help="slice by source, channel, offer, campaign, team or owner")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv")] = "table",
    as_of: Annotated[str | None, typer.Option("--as-of", help="the moment the report is for (ISO)")] = None,
    rules_path: Annotated[Path, typer.Option("--rules", help="rules file or folder")] = DEFAULT_RULES,
) -> None:
    """Funnel, lead value, SLA compliance, cost and the two views reconciled, for one period.

    The numbers are the ones the dashboard and the digest show: all three read this report.
    The stages and clocks are the audit's: run `detente audit` (or the daemon) first.
    """
    from detente.cli import _settings_and_store
    from detente.metrics.compute import DIMENSIONS, report
    from detente.metrics.periods import period_of
    from detente.metrics.render import table, to_csv

    if fmt not in ("table", "json", "csv"):
        raise typer.BadParameter("--format must be table, json or csv")
    if by is not None and by not in DIMENSIONS:
        raise typer.BadParameter(f"--by must be one of {', '.join(DIMENSIONS)}")
    moment = datetime.now(UTC) if as_of is None else _parse_as_of(as_of)
    rules = load_rules_or_exit(rules_path)
    try:
        chosen = period_of(period or rules.goals.period, moment)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--period") from exc
    _, engine = _settings_and_store(ctx)
    result = report(engine, rules, chosen, moment, by=by)
    if fmt == "json":
        typer.echo(json.dumps(result, indent=2))
    elif fmt == "csv":
        typer.echo(to_csv(result), nl=False)
    else:
        typer.echo("\n".join(table(result)))
