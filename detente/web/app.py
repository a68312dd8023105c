"""The dashboard's routes: ``/`` (a period's shared numbers), ``/api/report`` (the same report as
``detente report --format json``), ``/findings`` (the open findings, by kind and team) and
``/explain/{person}`` (one person's timeline and findings, with the rules behind them).

Pages are rendered on the server from Jinja2 templates shipped in this package, with autoescape
on; there is no JavaScript and nothing is fetched from elsewhere. Reports are cached (see
``detente.web.cache``). Every route passes the ``Guard`` first (see ``detente.web.auth``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from pydantic import SecretStr
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from detente.daemon.endpoints import parse_listen
from detente.logs import describe, get_logger
from detente.metrics.compute import DIMENSIONS, report
from detente.metrics.periods import period_of
from detente.reconcile.counts import Period
from detente.reconcile.timeline import find_people, read_timeline
from detente.rules import Rules
from detente.web.auth import Guard, required_token
from detente.web.cache import ReportCache, ReportKey
from detente.web.present import dashboard_view, explain_view, when
from detente.web.reads import FindingLine, audit_stamp, open_findings

log = get_logger("detente.web")

DEFAULT_BY = "source"  # the dashboard's slice when none is asked for (the API's default is none, as the CLI's)
DASHBOARD_FINDINGS = 15
MAX_FINDINGS = 5000
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class BadRequest(Exception):
    """A query parameter the dashboard cannot use; the message says which and what it expects."""


class Unavailable(Exception):
    """The dashboard cannot answer now (no valid rules)."""


def explain_href(finding: FindingLine) -> str:
    """Where a finding's person is explained (their store id picks them when the key names several)."""
    if finding.person_key is None:
        return ""
    href = "/explain/" + quote(finding.person_key, safe="@")
    return href + (f"?id={finding.person_id}" if finding.person_id is not None else "")


def _as_of(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"as_of: {text!r} is not an ISO timestamp such as 2026-11-16T15:00:00Z") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


class Dashboard:
    """The dashboard over one store; ``rules`` gives the rules in use (None: no valid rules yet)."""

    def __init__(self, engine: Engine, rules: Callable[[], Rules | None], *, guard: Guard,
                 now: Callable[[], datetime], as_of: datetime | None = None, cache: ReportCache) -> None:
        self.engine = engine
        self._rules = rules
        self.guard = guard
        self.now = now
        self.as_of = as_of
        self.cache = cache
        self.env = Environment(loader=PackageLoader("detente.web", "templates"),
                               autoescape=select_autoescape(default=True, default_for_string=True),
                               undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.env.globals.update(when=when, explain_href=explain_href)

    def routes(self) -> list[BaseRoute]:
        return [Route("/", self._page("dashboard", self.home)),
                Route("/api/report", self._page("api_report", self.api_report, api=True)),
                Route("/findings", self._page("findings", self.findings)),
                Route("/explain/{person:path}", self._page("explain", self.explain))]

    # -- plumbing ------------------------------------------------------------------------------------

    def _page(self, name: str, handler: Callable[[Request], Response], *, api: bool = False
              ) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            try:
                refused = self.guard.refuse(request)
                answer = refused if refused is not None else handler(request)
            except BadRequest as exc:
                answer = self._problem(400, "Bad request", str(exc), api=api)
            except Unavailable as exc:
                answer = self._problem(503, "Not available", str(exc), api=api)
            except Exception as exc:  # the page fails, the server goes on; the log says why
                log.error("dashboard.failed", page=name, error=describe(exc))
                answer = self._problem(500, "Something failed", "the dashboard could not read the store; the "
                                       "server's log says why (event dashboard.failed)", api=api)
            answer.headers.update(HEADERS)
            return answer

        endpoint.__name__ = name
        return endpoint

    def _problem(self, status: int, title: str, message: str, *, api: bool) -> Response:
        if api:
            return JSONResponse({"error": message}, status_code=status)
        return self._render("message.html", status, title=title, message=message, choices=())

    def _render(self, template: str, status: int = 200, **context: Any) -> Response:
        return HTMLResponse(self.env.get_template(template).render(status=status, **context), status_code=status)

    def rules(self) -> Rules:
        rules = self._rules()
        if rules is None:
            raise Unavailable("no valid rules are loaded; fix the rules file (its problems are in the server's log)")
        return rules

    def moment(self, as_of: datetime | None) -> datetime:
        return as_of or self.as_of or self.now()

    def period(self, rules: Rules, text: str | None, moment: datetime) -> Period:
        default = rules.goals.period if rules.goals is not None else "month"
        try:
            return period_of(text or default, moment)
        except ValueError as exc:
            raise BadRequest(f"period: {exc}") from None

    def report(self, rules: Rules, period: Period, by: str | None, as_of: datetime | None,
               max_age: float | None = None) -> dict[str, Any]:
        """The report of ``period``: kept from an earlier load while the store's audit stamp holds."""
        fixed = as_of or self.as_of
        key = ReportKey(period.label, by, fixed, rules.version, audit_stamp(self.engine))
        return self.cache.get(key, lambda: report(self.engine, rules, period, fixed or self.now(), by=by), max_age)

    def warm(self) -> dict[str, Any]:
        """Compute the default page's report (the daemon does after each audit, ``detente serve``
        at start and then every little while) unless the cache holds one less than half its
        age old, so a load of the dashboard finds it in the cache and never waits."""
        rules = self._rules()
        if rules is None:
            return {"warmed": 0, "why": "no valid rules"}
        period = self.period(rules, None, self.moment(None))
        started = time.monotonic()
        self.report(rules, period, DEFAULT_BY, None, max_age=self.cache.max_age / 2)
        return {"warmed": 1, "period": period.label, "seconds": round(time.monotonic() - started, 3)}

    def keep_warm(self, stop: threading.Event, every: float = 30.0) -> None:
        """``warm`` now and every ``every`` seconds until ``stop`` is set (a thread of its own)."""
        while True:
            try:
                self.warm()
            except Exception as exc:  # a keeper that dies leaves page loads to compute; say why, go on
                log.warning("dashboard.warm_failed", error=describe(exc))
            if stop.wait(every):
                return

    @staticmethod
    def _by(text: str | None, default: str | None) -> str | None:
        if not text:
            return default
        if text not in DIMENSIONS:
            raise BadRequest(f"by: {text!r} is not a slice; expected one of {', '.join(DIMENSIONS)}")
        return text

    # -- the pages -----------------------------------------------------------------------------------

    def home(self, request: Request) -> Response:
        q = request.query_params
        rules = self.rules()
        as_of = _as_of(q.get("as_of"))
        by = self._by(q.get("by"), DEFAULT_BY)
        period = self.period(rules, q.get("period"), self.moment(as_of))
        result = self.report(rules, period, by, as_of)
        findings = open_findings(self.engine, limit=DASHBOARD_FINDINGS)
        api = {"period": period.label, **({"by": by} if by else {}), **({"as_of": q["as_of"]} if as_of else {})}
        return self._render("dashboard.html", r=result, v=dashboard_view(result), findings=findings,
                            period_text=q.get("period") or period.label, by_options=DIMENSIONS,
                            as_of_param=q.get("as_of") if as_of else None, api_href="/api/report?" + urlencode(api))

    def api_report(self, request: Request) -> Response:
        q = request.query_params
        rules = self.rules()
        as_of = _as_of(q.get("as_of"))
        by = self._by(q.get("by"), None)
        period = self.period(rules, q.get("period"), self.moment(as_of))
        # Byte for byte what `detente report --format json` prints, so the two can be diffed.
        return Response(json.dumps(self.report(rules, period, by, as_of), indent=2) + "\n",
                        media_type="application/json")

    def findings(self, request: Request) -> Response:
        q = request.query_params
        kinds, teams = _values(q.getlist("kind")), _values(q.getlist("team"))
        limit_text = q.get("limit") or "200"
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_FINDINGS:
            raise BadRequest(f"limit: {limit_text!r} is not a number of findings from 1 to {MAX_FINDINGS}")
        listed = open_findings(self.engine, kinds=kinds, teams=teams, limit=int(limit_text))
        audited = audit_stamp(self.engine)[0]
        return self._render("findings.html", findings=listed, kinds=kinds, teams=teams, limit=int(limit_text),
                            audited_at=when(datetime.fromisoformat(audited)) if audited else None)

    def explain(self, request: Request) -> Response:
        key = request.path_params["person"]
        pick_text = request.query_params.get("id")
        if pick_text is not None and not pick_text.isdigit():
            raise BadRequest(f"id: {pick_text!r} is not a person's number in the store")
        rules = self.rules()
        with self.engine.connect() as conn:
            matches = find_people(conn, key)
        if pick_text is not None:
            matches = [m for m in matches if m.id == int(pick_text)]
        if not matches:
            return self._render(
                "message.html", 404, title="No such person", choices=(),
                message=f"No person matches {key!r}: searched the emails, Salesforce lead and contact ids and "
                        "HubSpot contact ids of the people in the store (and the person number, when given).")
        if len(matches) > 1:
            base = "/explain/" + quote(key, safe="@")
            return self._render(
                "message.html", 200, title="Several people match", message=f"{len(matches)} people match {key!r}:",
                choices=[(f"{base}?id={m.id}", f"#{m.id} {m.email or '(no email)'}: {m.ids()}") for m in matches])
        timeline = read_timeline(self.engine, rules, matches[0], self.moment(_as_of(request.query_params.get("as_of"))))
        return self._render("explain.html", e=explain_view(timeline, rules))


def _values(raw: Sequence[str]) -> list[str]:
    return [v for v in raw if v]


def dashboard(engine: Engine, rules: Callable[[], Rules | None], *, host: str, listen_setting: str,
              token: Callable[[], SecretStr | None], now: Callable[[], datetime], as_of: datetime | None = None,
              cache_seconds: float = 300.0) -> Dashboard:
    """The dashboard for a server listening on ``host``: open on loopback, behind the token beyond it.

    Raises SettingsError (naming ``listen_setting`` and dashboard.token) when the host is beyond
    loopback and no usable token is set.
    """
    guard = Guard(required_token(host, token(), listen_setting=listen_setting), token)
    return Dashboard(engine, rules, guard=guard, now=now, as_of=as_of, cache=ReportCache(cache_seconds))


def _no_token() -> SecretStr | None:
    return None


def build_dashboard(engine: Engine, rules: Callable[[], Rules | None], *, now: Callable[[], datetime],
                    listen: str = "127.0.0.1:0", token: Callable[[], SecretStr | None] = _no_token,
                    as_of: datetime | None = None, cache_seconds: float = 300.0,
                    listen_setting: str = "dashboard.listen") -> Starlette:
    """The dashboard as an app of its own (``detente serve``), with an open /healthz.

    ``listen`` is where it will be served (loopback unless given), which decides whether
    requests need the token; ``now`` is the clock of reports that are not as of a fixed moment.
    """
    host, _ = parse_listen(listen)
    board = dashboard(engine, rules, host=host, listen_setting=listen_setting, token=token, now=now,
                      as_of=as_of, cache_seconds=cache_seconds)

    def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app = Starlette(routes=[Route("/healthz", healthz), *board.routes()])
    app.state.dashboard = board
    return app

