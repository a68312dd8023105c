"""HubSpot CRM v3 API simulator (placeholder: control endpoints only)."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, Response

from detente.sandbox.control import Control, Hooks, SandboxMiddleware, control_routes
from detente.sandbox.credentials import SandboxCredentials
from detente.sandbox.store import World


def build_hubspot_app(world: World, control: Control, creds: SandboxCredentials, sandbox: Any = None) -> Starlette:
    routes = control_routes(control, world)

    def error(kind: str, status: int, retry_after: float | None) -> Response:
        return JSONResponse([{"message": kind, "errorCode": kind.upper()}], status or 403)

    hooks = Hooks(error=error, limit_headers=lambda c: {}, expire_session=lambda scope: False)
    return Starlette(routes=routes, middleware=[Middleware(SandboxMiddleware, control=control, hooks=hooks, routes=routes)])
