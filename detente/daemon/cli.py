"""``detente run``: start the daemon (see ``detente.daemon.scheduler``)."""

from __future__ import annotations

import typer

from detente.errors import SettingsError


def run_command(ctx: typer.Context) -> None:
    """Run detente as a daemon: pull, audit and write back on schedule; serve /healthz, /readyz, /metrics.

    One daemon per store works at a time; others wait as standbys and take over when it stops.
    SIGHUP reloads the settings and rules; SIGTERM or SIGINT stops within daemon.shutdown_seconds.
    Exit codes: 0 stopped, 1 could not start, 2 invalid settings or rules.
    """
    from detente.daemon.lock import leadership_for
    from detente.daemon.rulewatch import RulesWatch
    from detente.daemon.scheduler import Daemon, configure
    from detente.settings import load_settings
    from detente.store.engine import create_schema, make_engine

    config = ctx.obj["config"]
    try:
        settings = load_settings(config)
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    configure(settings)
    rules = RulesWatch(settings.daemon.rules)
    if rules.refresh() is None:
        typer.echo(f"{len(rules.problems)} problem(s) in {settings.daemon.rules} (listed above); the daemon "
                   "needs valid rules to start: fix them or set daemon.rules", err=True)
        raise typer.Exit(2)
    try:
        leadership = leadership_for(settings.store.url)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    engine = make_engine(settings.store.url)
    daemon = Daemon(settings, engine=engine, leadership=leadership, rules=rules, config=config,
                    migrate=create_schema)
    try:
        code = daemon.run()
    except OSError as exc:
        typer.echo(f"daemon.listen {settings.daemon.listen}: cannot listen ({exc.strerror or exc}); "
                   "is another process using that port?", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)
