"""HubSpot's rate limits in the simulator: the rolling ten-second burst window, the search
limit per second, the ``X-HubSpot-RateLimit-*`` headers, and the two ASGI middlewares that
enforce the limits and keep the headers off search responses.
"""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from detente.sandbox import hs_errors
from detente.sandbox.control import Control, FaultProfile

DEFAULT_DAILY_LIMIT = 1_000_000
DEFAULT_BURST = 190
BURST_WINDOW_SECONDS = 10.0
SEARCH_PATH = re.compile(r"^/crm/v3/objects/[^/]+/search/?$")


@dataclass
class RateWindows:
    """Calls inside HubSpot's rolling windows: ten seconds for the API, one for search.

    A new fault profile (set or reset) starts with empty windows, so a limit counts from the
    moment it is configured and calls made before it cannot trip it.
    """

    burst: deque[float] = field(default_factory=deque)
    search: deque[float] = field(default_factory=deque)
    profile: FaultProfile | None = None

    def forget(self) -> None:
        """Empty both windows (on ``POST /__sandbox/reset``)."""
        self.burst.clear()
        self.search.clear()

    def _trim(self, faults: FaultProfile, now: float) -> None:
        if faults is not self.profile:
            self.forget()
            self.profile = faults
        while self.burst and self.burst[0] <= now - BURST_WINDOW_SECONDS:
            self.burst.popleft()
        while self.search and self.search[0] <= now - 1.0:
            self.search.popleft()

    def admit(self, is_search: bool, faults: FaultProfile, now: float) -> str | None:
        """Record a call; the policy it breaks (and is refused for), or None."""
        self._trim(faults, now)
        if is_search:
            if faults.search_per_second is not None and len(self.search) >= faults.search_per_second:
                return "SECONDLY"
            self.search.append(now)
            return None
        if faults.burst_per_10s is not None and len(self.burst) >= faults.burst_per_10s:
            return "TEN_SECONDLY_ROLLING"
        self.burst.append(now)
        return None

    def headers(self, control: Control, now: float) -> dict[str, str]:
        faults = control.faults
        self._trim(faults, now)
        daily = faults.daily_limit or DEFAULT_DAILY_LIMIT
        burst = faults.burst_per_10s or DEFAULT_BURST
        return {
            "X-HubSpot-RateLimit-Daily": str(daily),
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, daily - control.calls_today)),
            "X-HubSpot-RateLimit-Max": str(burst),
            # This call is not in the window yet when the headers are computed.
            "X-HubSpot-RateLimit-Remaining": str(max(0, burst - len(self.burst) - 1)),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(BURST_WINDOW_SECONDS * 1000)),
        }


class RateLimitMiddleware:
    """Refuses calls over ``burst_per_10s`` or ``search_per_second`` (inside the counting
    middleware, so refused calls are counted as HubSpot counts them)."""

    def __init__(self, app: ASGIApp, control: Control, windows: RateWindows) -> None:
        self.app = app
        self.control = control
        self.windows = windows

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith("/__sandbox/"):
            await self.app(scope, receive, send)
            return
        is_search = scope["method"] == "POST" and SEARCH_PATH.match(path) is not None
        policy = self.windows.admit(is_search, self.control.faults, time.monotonic())
        if policy is not None:
            self.control.faults_injected[f"limit_{policy.lower()}"] += 1
            await hs_errors.rate_limited(policy)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class SearchHeaderFilter:
    """Search responses carry no rate-limit headers (search has its own limit)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not SEARCH_PATH.match(scope.get("path", "")):
            await self.app(scope, receive, send)
            return

        async def strip(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [
                        (k, v)
                        for k, v in message.get("headers", [])
                        if not k.lower().startswith(b"x-hubspot-ratelimit")
                    ],
                }
            await send(message)

        await self.app(scope, receive, strip)
