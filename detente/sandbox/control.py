"""What both sandbox servers share: the clock, the fault profile, call statistics and the
ASGI middleware that counts every call and injects the faults real APIs produce.

The control endpoints live under ``/__sandbox/`` on each server and are never counted or
faulted: ``GET stats``, ``POST faults``, ``POST clock``, ``POST reset``.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from detente.sandbox.store import World, parse_datetime


class Clock:
    """Real time, or a frozen moment set through ``POST /__sandbox/clock``."""

    def __init__(self) -> None:
        self.frozen: datetime | None = None

    def now(self) -> datetime:
        return self.frozen if self.frozen is not None else datetime.now(UTC)

    def set(self, value: datetime | None) -> None:
        self.frozen = value


class FaultProfile(BaseModel):
    """Which faults to inject into API calls, as shares of calls (0..1)."""

    model_config = ConfigDict(extra="forbid")

    rate_limited: float = Field(0.0, ge=0, le=1, description="share of calls answered 429")
    without_retry_after: float = Field(
        0.0, ge=0, le=1, description="share of those 429s that carry no Retry-After header"
    )
    retry_after_seconds: float = Field(1.0, ge=0, le=60)
    server_errors: float = Field(0.0, ge=0, le=1, description="share of calls answered 5xx")
    slow: float = Field(0.0, ge=0, le=1, description="share of calls delayed")
    slow_seconds: float = Field(2.0, ge=0, le=120)
    expire_session_every: int | None = Field(None, ge=1, description="every Nth call finds the session expired")
    partial_batch_failures: float = Field(0.0, ge=0, le=1, description="share of batch records that fail")
    daily_limit: int | None = Field(None, ge=1, description="API calls allowed per sandbox day")
    refused: list[str] = Field(
        default_factory=list,
        description="routes answered 403 as by an org or app without that feature or permission, "
                    "e.g. 'GET /services/data/v{version}/limits/recordCount' (as /__sandbox/stats names them)",
    )
    burst_per_10s: int | None = Field(
        None, ge=1, description="HubSpot: calls allowed per rolling 10 seconds (None: not enforced)"
    )
    search_per_second: int | None = Field(
        None, ge=1, description="HubSpot: search calls allowed per second (None: not enforced)"
    )
    search_lag_seconds: float = Field(
        0.0, ge=0, le=60, description="HubSpot: how long a write takes to become searchable"
    )
    seed: int = 0


@dataclass
class Control:
    """The state behind one server's control endpoints."""

    system: str
    clock: Clock = field(default_factory=Clock)
    faults: FaultProfile = field(default_factory=FaultProfile)
    calls: Counter[str] = field(default_factory=Counter)
    faults_injected: Counter[str] = field(default_factory=Counter)
    total_calls: int = 0
    day: date | None = None
    calls_today: int = 0
    rng: random.Random = field(default_factory=random.Random)
    restore_data: Callable[[], None] | None = None  # regenerate the world (POST reset {"data": true})

    def set_faults(self, profile: FaultProfile) -> None:
        self.faults = profile
        self.rng = random.Random(profile.seed)

    def count(self, key: str) -> int:
        """Count one API call against the totals and the sandbox day; return today's count."""
        self.calls[key] += 1
        self.total_calls += 1
        today = self.clock.now().date()
        if today != self.day:
            self.day, self.calls_today = today, 0
        self.calls_today += 1
        return self.calls_today

    def roll(self, share: float) -> bool:
        return share > 0 and self.rng.random() < share

    def reset(self) -> None:
        self.clock.set(None)
        self.set_faults(FaultProfile())
        self.calls.clear()
        self.faults_injected.clear()
        self.total_calls = 0
        self.day, self.calls_today = None, 0


ErrorFactory = Callable[[str, int, float | None], Response]
"""(kind, status, retry_after) → a response in the system's own error shape.
Kinds: rate_limited, server_error, quota, expired_session, refused (no access to the route)."""


@dataclass
class Hooks:
    """What a system contributes to the shared middleware."""

    error: ErrorFactory
    limit_headers: Callable[[Control], dict[str, str]]
    expire_session: Callable[[Scope], bool]  # invalidate the caller's session; False if n/a
    counted: Callable[[str], bool] = lambda path: True  # which paths are API calls


class SandboxMiddleware:
    """Counts API calls and injects faults before the request reaches its endpoint."""

    def __init__(self, app: ASGIApp, control: Control, hooks: Hooks, routes: list[Any]) -> None:
        self.app = app
        self.control = control
        self.hooks = hooks
        self.routes = routes

    def _route_key(self, scope: Scope) -> str:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return f"{scope['method']} {route.path}"
        return f"{scope['method']} {scope['path']}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith("/__sandbox/") or not self.hooks.counted(path):
            await self.app(scope, receive, send)
            return
        c = self.control
        today = c.count(self._route_key(scope))
        f = c.faults
        response: Response | None = None
        if f.daily_limit is not None and today > f.daily_limit:
            response = self.hooks.error("quota", 0, None)
        elif f.refused and self._route_key(scope) in f.refused:
            response = self.hooks.error("refused", 403, None)
        elif (
            f.expire_session_every
            and c.total_calls % f.expire_session_every == 0
            and self.hooks.expire_session(scope)
        ):
            c.faults_injected["expired_session"] += 1
            response = self.hooks.error("expired_session", 401, None)
        elif c.roll(f.rate_limited):
            retry_after = None if c.roll(f.without_retry_after) else f.retry_after_seconds
            c.faults_injected["rate_limited" if retry_after is not None else "rate_limited_no_retry_after"] += 1
            response = self.hooks.error("rate_limited", 429, retry_after)
        elif c.roll(f.server_errors):
            c.faults_injected["server_error"] += 1
            response = self.hooks.error("server_error", c.rng.choice((500, 502, 503)), None)
        elif c.roll(f.slow):
            c.faults_injected["slow"] += 1
            await asyncio.sleep(f.slow_seconds)
        if response is not None:
            for k, v in self.hooks.limit_headers(c).items():
                response.headers[k] = v
            await response(scope, receive, send)
            return
        extra = [(k.lower().encode(), v.encode()) for k, v in self.hooks.limit_headers(c).items()]

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def control_routes(
    control: Control, world: World, on_reset: Callable[[], Awaitable[None]] | None = None
) -> list[Route]:
    """The ``/__sandbox/`` endpoints of one server."""

    async def stats(request: Request) -> Response:
        counts = world.counts()
        return JSONResponse({
            "system": control.system,
            "now": control.clock.now().isoformat().replace("+00:00", "Z"),
            "clock_frozen": control.clock.frozen is not None,
            "calls": dict(sorted(control.calls.items())),
            "total_calls": control.total_calls,
            "calls_today": control.calls_today,
            "faults_injected": dict(control.faults_injected),
            "faults": control.faults.model_dump(),
            "records": counts[control.system],
        })

    async def faults(request: Request) -> Response:
        try:
            body = await request.json()
            profile = FaultProfile.model_validate(body)
        except json.JSONDecodeError:
            return JSONResponse({"error": "the body must be a JSON object (a fault profile)"}, 400)
        except ValidationError as exc:
            return JSONResponse({"error": "invalid fault profile", "details": _errors(exc)}, 400)
        control.set_faults(profile)
        return JSONResponse({"faults": profile.model_dump()})

    async def clock(request: Request) -> Response:
        try:
            body = await request.json()
            value = body["now"]
            control.clock.set(None if value is None else parse_datetime(str(value)))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            return JSONResponse(
                {"error": 'expected {"now": "<ISO-8601 datetime>"} or {"now": null}'}, 400
            )
        return JSONResponse({"now": control.clock.now().isoformat().replace("+00:00", "Z"),
                             "frozen": control.clock.frozen is not None})

    async def reset(request: Request) -> Response:
        body = await request.body()
        try:
            options = json.loads(body) if body.strip() else {}
            restore = bool(options.get("data", False)) if isinstance(options, dict) else None
        except json.JSONDecodeError:
            restore = None
        if restore is None:
            return JSONResponse({"error": 'expected no body, {} or {"data": true}'}, 400)
        control.reset()
        if on_reset is not None:
            await on_reset()
        if restore:
            if control.restore_data is None:
                return JSONResponse({"error": "this server cannot restore its data"}, 400)
            with world.lock:
                control.restore_data()
        return JSONResponse({"reset": True, "data": restore})

    async def writes(request: Request) -> Response:
        try:
            since = int(request.query_params.get("since", "0"))
        except ValueError:
            return JSONResponse({"error": "since must be a whole number (a write log sequence number)"}, 400)
        return JSONResponse({"writes": [w for w in world.writes(since) if w["system"] == control.system]})

    return [
        Route("/__sandbox/stats", stats, methods=["GET"]),
        Route("/__sandbox/writes", writes, methods=["GET"]),
        Route("/__sandbox/faults", faults, methods=["POST"]),
        Route("/__sandbox/clock", clock, methods=["POST"]),
        Route("/__sandbox/reset", reset, methods=["POST"]),
    ]


def _errors(exc: ValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
