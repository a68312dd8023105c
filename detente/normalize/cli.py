"""``detente normalize``: bring the unified model up to date with the raw layer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DEFAULT_RULES = Path("config/rules.yaml")


def normalize_command(
    ctx: typer.Context,
    full: Annotated[bool, typer.Option("--full", help="derive everything again, not only what changed")] = False,
    rules: Annotated[Path | None, typer.Option(
        "--rules", help="rules file or folder whose field mappings to apply (default: config/rules.yaml if present)",
    )] = None,
) -> None:
    """Link people across Salesforce and HubSpot and rebuild what changed in the unified model."""
    from datetime import UTC, datetime

    from detente.cli import _settings_and_store
    from detente.normalize.mapping import DEFAULT, Mappings, from_rules
    from detente.normalize.run import normalize

    maps: Mappings = DEFAULT
    path = rules if rules is not None else (DEFAULT_RULES if DEFAULT_RULES.exists() else None)
    if path is not None:
        from detente.rules import RulesError, load_rules

        try:
            maps = from_rules(load_rules(path))
        except RulesError as exc:
            for problem in exc.problems:
                typer.echo(str(problem), err=True)
            typer.echo(f"{len(exc.problems)} problem(s) in {path}; fix them or pass --rules", err=True)
            raise typer.Exit(1) from exc
        except OSError as exc:
            typer.echo(f"--rules: cannot read {path}: {exc.strerror}", err=True)
            raise typer.Exit(2) from exc
    _, engine = _settings_and_store(ctx)
    report = normalize(engine, now=datetime.now(UTC), full=full, maps=maps)
    for name, count in sorted(report.counts.items()):
        typer.echo(f"{name}: {count}")
    typer.echo("took " + ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in report.seconds.items()))
