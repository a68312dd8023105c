"""``detente rules ...``: check, glossary, diff, explain and sql for the agreement's rules file.

This is the imperative shell around the rules package: it reads files and the clock, opens
the store, prints, and turns every failure into a message and an exit code (never a
traceback). Exit codes: 0 fine, 1 the rules have problems, 2 bad usage or an unusable store.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from detente.rules import checked as c
from detente.rules.problems import RulesError

rules_app = typer.Typer(
    help="Check, explain and preview the agreement's rules (config/rules.yaml).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEFAULT_RULES = Path("config/rules.yaml")
DEFAULT_FOLDER = Path("config/rules")
T = TypeVar("T")

RulesPath = Annotated[Path | None, typer.Argument(help="rules file or folder (default: config/rules.yaml)")]
StoreOption = Annotated[str | None, typer.Option("--store", help="store URL (default: store.url from the settings)")]
AsOfOption = Annotated[str | None, typer.Option("--as-of", help="evaluate as of this ISO time (default: now)")]


def default_path(path: Path | None) -> Path:
    if path is not None:
        return path
    return DEFAULT_FOLDER if not DEFAULT_RULES.exists() and DEFAULT_FOLDER.is_dir() else DEFAULT_RULES


def _exit(message: str, code: int) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _guard(action: Callable[[], T], what: str) -> T:
    """Run ``action``; any unexpected error becomes one line and exit code 2, never a traceback."""
    try:
        return action()
    except (typer.Exit, typer.Abort):
        raise
    except RulesError as exc:
        for problem in exc.problems:
            typer.echo(str(problem))
        _exit(f"{len(exc.problems)} problem(s) in the rules", 1)
    except Exception as exc:  # the CLI is the boundary: no traceback reaches an admin
        _exit(f"{what} failed: {type(exc).__name__}: {_first_line(exc)}", 2)
    raise AssertionError("unreachable")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else "no details"


def _load(path: Path | None) -> c.Rules:
    from detente.rules.validate import load_rules

    return load_rules(default_path(path))


def _now(as_of: str | None) -> datetime:
    if as_of is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(as_of.replace("Z", "+00:00"))
    except ValueError:
        _exit(f"--as-of: '{as_of}' is not an ISO-8601 time such as 2026-11-16T15:00:00Z", 2)
        raise
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _store_url(ctx: typer.Context, store: str | None) -> str:
    if store:
        return store
    from detente.errors import SettingsError
    from detente.settings import load_settings

    config = (ctx.find_root().obj or {}).get("config") if ctx.find_root().obj else None
    try:
        return load_settings(config).store.url
    except SettingsError as exc:
        for problem in exc.problems:
            typer.echo(problem, err=True)
        _exit("cannot read the settings for the store URL; pass --store URL", 2)
        raise


def _engine(url: str) -> Any:
    from detente.store.engine import make_engine

    return make_engine(url)


@rules_app.command()
def check(path: RulesPath = None) -> None:
    """Validate the rules: every problem as file:line:col: what is wrong; what was expected."""
    from detente.rules.validate import check_rules

    target = default_path(path)
    result = _guard(lambda: check_rules(target), "rules check")
    for problem in result.problems:
        typer.echo(str(problem))
    if result.rules is None:
        _exit(f"{len(result.problems)} problem(s) in {target}", 1)
        return
    r = result.rules
    typer.echo(f"ok: {target}: {len(r.stages)} stages, {len(r.slas)} SLAs, {len(r.teams)} teams; "
               f"rules version {r.version}")


@rules_app.command()
def glossary(
    path: RulesPath = None,
    fmt: Annotated[str, typer.Option("--format", help="md or html")] = "md",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write here instead of stdout")] = None,
) -> None:
    """The agreed vocabulary as a handbook (meaning, owner, definition in words, labels, SLAs)."""
    from detente.rules.glossary import render

    if fmt not in ("md", "html"):
        _exit(f"--format: '{fmt}' is not a format; expected md or html", 2)
    rules = _guard(lambda: _load(path), "rules glossary")
    text = render(rules, "html" if fmt == "html" else "md")
    if output is None:
        typer.echo(text, nl=False)
        return
    _guard(lambda: output.write_text(text, encoding="utf-8"), f"writing {output}")
    typer.echo(f"wrote {output} (rules version {rules.version})")


@rules_app.command()
def diff(
    ctx: typer.Context,
    old: Annotated[Path, typer.Argument(help="the rules in force")],
    new: Annotated[Path, typer.Argument(help="the proposed rules")],
    store: StoreOption = None,
    as_of: AsOfOption = None,
    examples: Annotated[int, typer.Option(min=0, max=100, help="examples per movement")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The impact of a rule change over the store: people entering and leaving, SLA clocks."""
    from detente.rules.diff import diff_rules

    old_rules = _guard(lambda: _load(old), "reading the old rules")
    new_rules = _guard(lambda: _load(new), "reading the new rules")
    now = _now(as_of)
    url = _store_url(ctx, store)

    def run() -> Any:
        engine = _engine(url)
        try:
            with engine.connect() as conn:
                return diff_rules(conn, old_rules, new_rules, now, examples)
        finally:
            engine.dispose()

    result = _guard(run, "rules diff over the store")
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        typer.echo("\n".join(result.lines()))


@rules_app.command()
def explain(
    ctx: typer.Context,
    person: Annotated[str, typer.Argument(help="store id, email, or a Salesforce/HubSpot record id")],
    stage: Annotated[str | None, typer.Option(help="explain this stage's definition (default: every stage)")] = None,
    label: Annotated[str | None, typer.Option(help="explain the stage's label in salesforce or hubspot")] = None,
    condition: Annotated[str | None, typer.Option(help="explain this condition instead")] = None,
    rules_path: Annotated[Path | None, typer.Option("--rules", help="rules file or folder")] = None,
    store: StoreOption = None,
    as_of: AsOfOption = None,
) -> None:
    """Which clauses of a definition hold for one person, with the values seen."""
    from detente.rules.conditions import Scope, parse_condition
    from detente.rules.evaluate import explain_person, find_person

    rules = _guard(lambda: _load(rules_path), "reading the rules")
    targets: list[tuple[str, Any]] = []
    if condition is not None:
        parsed = parse_condition(condition, Scope(rules.catalog))
        if isinstance(parsed, list):
            for p in parsed:
                typer.echo(f"--condition:{p.offset + 1}: {p.what}; {p.expected}")
            _exit("the condition has problems", 1)
            return
        targets.append(("condition", parsed))
    else:
        names = [stage] if stage else list(rules.stages)
        for name in names:
            if name not in rules.stages:
                _exit(f"--stage: unknown stage '{name}'; expected one of {', '.join(rules.stages)}", 2)
            s = rules.stages[name]
            if label is not None:
                if label not in s.labels:
                    _exit(f"--label: stage {name} has no {label} label", 2)
                targets.append((f"{name} ({label} label)", s.labels[label]))
            else:
                targets.append((name, s.definition))
    now = _now(as_of)
    url = _store_url(ctx, store)

    def run() -> list[str]:
        engine = _engine(url)
        try:
            with engine.connect() as conn:
                person_id = find_person(conn, person)
                if person_id is None:
                    return []
                out = [f"person #{person_id} as of {now.isoformat()}, rules version {rules.version}"]
                for title, cond in targets:
                    step = explain_person(conn, rules, person_id, cond, now)
                    if step is not None:
                        out.append(f"{title}: {step.outcome}")
                        out.extend(step.lines(1))
                return out
        finally:
            engine.dispose()

    lines = _guard(run, "explaining over the store")
    if not lines:
        _exit(f"no person '{person}' in the store", 2)
    typer.echo("\n".join(lines))


@rules_app.command()
def sql(
    path: RulesPath = None,
    dialect: Annotated[str, typer.Option(help="sqlite or postgresql")] = "sqlite",
) -> None:
    """Print the one statement that evaluates every stage definition and label."""
    from sqlalchemy.dialects import postgresql, sqlite

    from detente.rules.evaluate import StageEvaluator

    dialects = {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect()}  # type: ignore[no-untyped-call]
    if dialect not in dialects:
        _exit(f"--dialect: '{dialect}' is not supported; expected sqlite or postgresql", 2)
    rules = _guard(lambda: _load(path), "reading the rules")
    statement = StageEvaluator(rules).statement()
    typer.echo(str(statement.compile(dialect=dialects[dialect], compile_kwargs={"render_postcompile": True})))
