"""The ``detente`` command."""

from __future__ import annotations

import json
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from detente.errors import DetenteError, SettingsError
from detente.logs import configure_logging, get_logger
from detente.rules.cli import rules_app

app = typer.Typer(
    help="detente keeps Sales and Marketing honest with each other across Salesforce and HubSpot.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(rules_app, name="rules")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="settings file (default: $DETENTE_CONFIG or config/detente.yaml)"),
]


@app.callback()
def main(ctx: typer.Context, config: ConfigOption = None) -> None:
    ctx.obj = {"config": config}


def _fail(message: str, code: int = 2) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _parse_when(value: str | None) -> datetime | None:
    if value is None:
        return None
    from detente.sandbox.store import parse_datetime

    try:
        return parse_datetime(value)
    except ValueError:
        _fail(f"--as-of: '{value}' is not an ISO-8601 datetime such as 2026-11-16T15:00:00Z")
    return None


@app.command()
def settings(ctx: typer.Context) -> None:
    """Validate the settings file and environment; print them with secrets masked."""
    from detente.settings import load_settings

    try:
        loaded = load_settings(ctx.obj["config"])
    except SettingsError as exc:
        _fail(str(exc))
        return
    typer.echo(json.dumps(loaded.model_dump(mode="json"), indent=2))


def _settings_and_store(ctx: typer.Context) -> tuple[Any, Any]:
    from detente.settings import load_settings
    from detente.store.engine import create_schema, make_engine

    try:
        loaded = load_settings(ctx.obj["config"])
    except SettingsError as exc:
        _fail(str(exc))
    fmt = loaded.log.format
    configure_logging(loaded.log.level, json=None if fmt == "auto" else fmt == "json",
                      secrets=loaded.secret_values())
    engine = make_engine(loaded.store.url)
    create_schema(engine)
    return loaded, engine


@app.command()
def migrate(ctx: typer.Context) -> None:
    """Bring the store's schema up to date (safe to run on every upgrade)."""
    from detente.store.migrate import current

    _, engine = _settings_and_store(ctx)
    typer.echo(f"store schema at revision {current(engine)}")


@app.command()
def sync(
    ctx: typer.Context,
    system: Annotated[list[str] | None, typer.Option(help="salesforce or hubspot (default: both)")] = None,
    object_name: Annotated[list[str] | None, typer.Option("--object", help="only these objects")] = None,
    full: Annotated[bool, typer.Option(help="re-read everything and reconcile deletions")] = False,
) -> None:
    """Pull changed records from Salesforce and HubSpot into the store."""
    from datetime import UTC

    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from detente.sync import SYSTEMS
    from detente.sync import sync as run_sync

    for name in system or []:
        if name not in SYSTEMS:
            _fail(f"--system: unknown system '{name}'; expected salesforce or hubspot")
    loaded, engine = _settings_and_store(ctx)
    err = Console(stderr=True)
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), console=err, transient=True,
                        disable=not err.is_terminal)
    task = progress.add_task("pulling", total=None)

    def on_page(item: Any) -> None:
        progress.update(task, description=f"{item.system} {item.object}: {item.fetched} records, {item.calls} calls")

    try:
        with progress:
            results = run_sync(engine, loaded, now=datetime.now(UTC), systems=system, objects=object_name,
                               full=full, on_page=on_page)
    except SettingsError as exc:
        _fail(str(exc))
        return
    failed = False
    for result in results:
        for o in result.report.objects:
            typer.echo(f"{o.system} {o.object}: fetched {o.fetched}, inserted {o.inserted}, updated {o.updated}, "
                       f"deleted {o.deleted}, quarantined {o.quarantined}, calls {o.calls}, {o.seconds:.1f} s")
        if result.report.stopped:
            typer.echo(f"{result.system}: stopped early: {result.report.stopped}; the next sync resumes", err=True)
        if result.error:
            failed = True
            typer.echo(f"{result.system}: failed: {result.error}", err=True)
    raise typer.Exit(1 if failed else 0)


@app.command()
def status(
    ctx: typer.Context,
    output: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """Per-object counts, cursors, last runs and API calls used today."""
    from datetime import UTC

    from detente.status import store_status

    if output not in {"table", "json"}:
        _fail(f"--format: unknown format '{output}'; expected table or json")
    _, engine = _settings_and_store(ctx)
    report = store_status(engine, datetime.now(UTC).date())
    if output == "json":
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(f"{'system':<11} {'object':<24} {'live':>8} {'deleted':>8} {'quarant.':>8}  cursor")
    for o in report["objects"]:
        cursor = (o["cursor"] or {}).get("modified_at") or "-"
        typer.echo(f"{o['system']:<11} {o['object']:<24} {o['live']:>8} {o['deleted']:>8} "
                   f"{o['quarantined']:>8}  {cursor}")
    for r in report["runs"]:
        typer.echo(f"last {r['kind']} {r['system'] or ''}: {r['outcome']} at {r['ended_at'] or r['started_at']}"
                   + (f" ({r['error']})" if r["error"] else ""))
    for u in report["api_usage"]:
        typer.echo(f"API calls today, {u['system']}: {u['calls']}"
                   + (f" (CRM reports {u['remaining']} of {u['limit']} left)" if u["limit"] else ""))


@app.command()
def sandbox(
    dataset: Annotated[str, typer.Option(help="demo: a generated world; empty: owners only")] = "demo",
    size: Annotated[int, typer.Option(min=0, max=2_000_000, help="people in the demo world")] = 1000,
    seed: Annotated[int, typer.Option(help="the world is deterministic per seed")] = 1,
    as_of: Annotated[str | None, typer.Option(help="anchor moment of the world (default: now)")] = None,
    state_dir: Annotated[Path | None, typer.Option(help="keep the world here across restarts")] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    salesforce_port: Annotated[int, typer.Option(min=0, max=65535, help="0 picks a free port")] = 0,
    hubspot_port: Annotated[int, typer.Option(min=0, max=65535, help="0 picks a free port")] = 0,
    write_config: Annotated[Path | None, typer.Option(help="write a detente.yaml pointing at the sandbox")] = None,
) -> None:
    """Run local Salesforce and HubSpot API servers over HTTPS with generated data.

    Prints one JSON line when ready (both base URLs and the CA file), then serves until
    interrupted.
    """
    from detente.sandbox.server import Sandbox

    if dataset not in {"demo", "empty"}:
        _fail(f"--dataset: unknown dataset '{dataset}'; expected demo or empty")
    configure_logging("info")
    log = get_logger("detente.sandbox")
    try:
        sb = Sandbox(state_dir=state_dir, dataset=dataset, size=size, seed=seed,
                     as_of=_parse_when(as_of), host=host,
                     salesforce_port=salesforce_port, hubspot_port=hubspot_port)
        info = sb.start()
    except OSError as exc:
        _fail(f"cannot start the sandbox: {exc.strerror or exc}; is the port already in use?")
        return
    if write_config is not None:
        sb.write_config(write_config)
        log.info("sandbox.config_written", path=str(write_config))
    typer.echo(info.ready_line())
    sys.stdout.flush()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    log.info("sandbox.stopping")
    sb.stop()


@app.command()
def demo(
    size: Annotated[int, typer.Option(min=10, max=200_000, help="people in the demo world")] = 2000,
    seed: Annotated[int, typer.Option(help="the world is deterministic per seed")] = 1,
    keep_running: Annotated[bool, typer.Option("--keep-running", help="leave the sandbox up afterwards")] = False,
) -> None:
    """Start the sandbox CRMs and run one whole detente cycle against them, with write-back."""
    from detente.demo import run_demo

    configure_logging("warning")
    run_demo(size=size, seed=seed, out=typer.echo, keep_running=keep_running)


def run() -> Any:  # pragma: no cover - console entry for python -m
    return app()


from detente.normalize.cli import normalize_command  # noqa: E402 - registered last, see detente/normalize/cli.py

app.command("normalize")(normalize_command)

from detente.reconcile.cli import audit_command  # noqa: E402 - registered last, see detente/reconcile/cli.py

app.command("audit")(audit_command)

from detente.reconcile.cli import explain_command  # noqa: E402 - registered last, see detente/reconcile/cli.py

app.command("explain")(explain_command)

from detente.writeback.cli import apply_command, plan_command, writes_command  # noqa: E402 - registered last

app.command("plan")(plan_command)
app.command("apply")(apply_command)
app.command("writes")(writes_command)


@app.command()
def cycle(
    ctx: typer.Context,
    rules_path: Annotated[Path, typer.Option("--rules", help="rules file or folder")] = Path("config/rules.yaml"),
) -> None:
    """Run one full pass (pull, normalize, audit, plan, apply) and exit: for cron and tests."""
    from detente.cycle import run_cycle
    from detente.writeback.cli import _rules

    rules = _rules(rules_path)
    settings, engine = _settings_and_store(ctx)
    try:
        steps = run_cycle(engine, settings, rules)
    except DetenteError as exc:
        _fail(str(exc))
        return
    for step in steps:
        typer.echo(f"{step.step:10} {step.outcome:8} {step.seconds:7.1f} s  "
                   + json.dumps(step.counts, default=str, sort_keys=True))
    if any(s.outcome == "failed" for s in steps):
        raise typer.Exit(1)

from detente.daemon.cli import run_command  # noqa: E402 - registered last, see detente/daemon/cli.py

app.command("run")(run_command)

from detente.metrics.cli import report_command  # noqa: E402 - registered last, see detente/metrics/cli.py

app.command("report")(report_command)

from detente.web.cli import serve_command  # noqa: E402 - registered last, see detente/web/cli.py

app.command("serve")(serve_command)

from detente.notify.cli import digest_command, notify_command  # noqa: E402 - registered last, see detente/notify/cli.py

app.command("digest")(digest_command)
app.command("notify")(notify_command)
