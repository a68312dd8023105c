"""``detente serve``: the dashboard on its own HTTP server, until SIGINT or SIGTERM."""

from __future__ import annotations

import re
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from detente.errors import SettingsError
from detente.reconcile.cli import DEFAULT_RULES, _parse_as_of

if TYPE_CHECKING:
    from detente.daemon.endpoints import HttpServer

WARM_EVERY = 30.0  # seconds between checks that the default page's report is fresh
LISTEN = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^:\s\[\]]+):\d{1,5}$")


def serve_command(
    ctx: typer.Context,
    listen: Annotated[str | None, typer.Option(
        "--listen", help="host:port to serve on (default: dashboard.listen, 127.0.0.1:8478; port 0 picks a free "
                         "one); beyond loopback, requests need dashboard.token")] = None,
    rules_path: Annotated[Path, typer.Option("--rules", help="rules file or folder (edits apply on the next "
                                             "page load)")] = DEFAULT_RULES,
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="show every page as of this moment (ISO) instead of now")] = None,
) -> None:
    """Serve the dashboard: a period's shared numbers, the open findings and each person's explanation.

    The numbers are `detente report`'s (/api/report serves its JSON); stages, clocks and findings are the audit's.

    Prints the address when ready. Exit codes: 0 stopped, 1 could not listen, 2 invalid settings, rules or options.
    """
    from detente.daemon.endpoints import HttpServer
    from detente.daemon.rulewatch import RulesWatch
    from detente.daemon.scheduler import configure
    from detente.logs import get_logger
    from detente.settings import load_settings
    from detente.store.engine import create_schema, make_engine
    from detente.web.app import build_dashboard

    if listen is not None and not LISTEN.match(listen):
        raise typer.BadParameter(f"{listen!r} is not host:port such as 127.0.0.1:8478 or [::1]:8478",
                                 param_hint="--listen")
    moment = None if as_of is None else _parse_as_of(as_of)
    try:
        settings = load_settings(ctx.obj["config"])
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    configure(settings)
    rules = RulesWatch(rules_path)
    if rules.refresh() is None:
        typer.echo(f"{len(rules.problems)} problem(s) in {rules_path} (listed above); fix them or pass --rules",
                   err=True)
        raise typer.Exit(2)
    address = listen or settings.dashboard.listen
    engine = make_engine(settings.store.url)
    try:
        create_schema(engine)
        try:
            app = build_dashboard(engine, rules.refresh, listen=address, token=lambda: settings.dashboard.token,
                                  now=lambda: datetime.now(UTC), as_of=moment,
                                  cache_seconds=settings.dashboard.cache_seconds,
                                  listen_setting="--listen" if listen else "dashboard.listen")
        except SettingsError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
        try:
            server = HttpServer(app, address)
        except OSError as exc:
            typer.echo(f"{address}: cannot listen ({exc.strerror or exc}); is another process using that port?",
                       err=True)
            raise typer.Exit(1) from None
        _serve(server, get_logger("detente.web"), app.state.dashboard)
    finally:
        engine.dispose()


def _serve(server: HttpServer, log: Any, board: Any) -> None:
    stop = threading.Event()
    # The default page's report is computed at start and kept fresh, so a page load finds it.
    keeper = threading.Thread(target=board.keep_warm, args=(stop, WARM_EVERY), name="dashboard-warm", daemon=True)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    server.start()
    keeper.start()
    host = f"[{server.host}]" if ":" in server.host else server.host
    log.info("dashboard.listening", host=server.host, port=server.port)
    typer.echo(f"detente dashboard at http://{host}:{server.port}/")
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    server.stop()
    log.info("dashboard.stopped")
