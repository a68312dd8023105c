"""Request plumbing shared by the HubSpot simulator's endpoints: parameter parsing in the
forms hubspot-api-client sends, JSON bodies, authentication and HubSpot-shaped failures.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from detente.sandbox import hs_errors
from detente.sandbox.control import Control
from detente.sandbox.credentials import SandboxCredentials
from detente.sandbox.hs_errors import HsError, validation
from detente.sandbox.hs_props import catalog
from detente.sandbox.hs_records import fetch
from detente.sandbox.schema import HsObject, HsProperty, hs_object
from detente.sandbox.store import World, hs_datetime

log = structlog.get_logger(__name__)

MAX_BATCH = 100

Handler = Callable[[Request], Awaitable[Response]]


def list_param(request: Request, name: str) -> list[str] | None:
    """A list parameter in either form HubSpot accepts: ``a,b`` or repeated."""
    values = request.query_params.getlist(name)
    if not values:
        return None
    return [part.strip() for v in values for part in v.split(",") if part.strip()]


def bool_param(request: Request, name: str) -> bool:
    value = request.query_params.get(name)
    if value is None or value.lower() == "false":
        return False
    if value.lower() == "true":
        return True
    raise validation(f"{name} must be true or false, got {value!r}.")


def int_param(request: Request, name: str, default: int, maximum: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise validation(f"{name} must be an integer, got {raw!r}.") from None
    if value < (1 if name == "limit" else 0):
        raise validation(f"{name} must be positive, got {value}.")
    if maximum is not None and value > maximum:
        raise validation(f"{name} must be at most {maximum}, got {value}.", context={name: [str(value)]})
    return value


async def read_json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise validation("The request body is empty; this endpoint takes JSON.")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise validation(f"Invalid input JSON on line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except UnicodeDecodeError:
        raise validation("Invalid input JSON: the body is not UTF-8.") from None


def object_type(name: str) -> HsObject:
    obj = hs_object(name)
    if obj is None:
        raise validation(f"Unable to infer object type from: {name}")
    return obj


def record_id(raw: Any) -> int | None:
    text = str(raw).strip()
    return int(text) if text.isdigit() else None


def batch_inputs(body: Any, maximum: int = MAX_BATCH) -> list[Any]:
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise validation('The body must be a JSON object with an "inputs" list.')
    inputs: list[Any] = body["inputs"]
    if len(inputs) > maximum:
        raise validation(
            f"Too many inputs: {len(inputs)} given, at most {maximum} are allowed per batch call.",
            context={"inputs": [str(len(inputs))]},
        )
    return inputs


def input_ids(inputs: Sequence[Any]) -> list[str]:
    """The ids of ``[{"id": ...}]`` inputs; 400 when an input has none."""
    if not all(isinstance(i, dict) and isinstance(i.get("id"), (str, int)) for i in inputs):
        raise validation('Each input must be a JSON object with an "id".')
    return [str(i["id"]) for i in inputs]


class ApiBase:
    """What every group of endpoints shares: the world, the control state, the credentials."""

    def __init__(self, world: World, control: Control, creds: SandboxCredentials) -> None:
        self.world = world
        self.control = control
        self.creds = creds

    def now(self) -> datetime:
        return self.control.clock.now()

    def endpoint(self, handler: Handler) -> Handler:
        """Authenticate, then turn HsError (and any slip) into HubSpot's error shape."""
        expected = f"Bearer {self.creds.hs_token}".encode()

        async def run(request: Request) -> Response:
            given = request.headers.get("authorization", "").encode()
            if not secrets.compare_digest(given, expected):
                return hs_errors.unauthorized()
            try:
                return await handler(request)
            except HsError as exc:
                return exc.response()
            except Exception:
                log.exception("sandbox.hubspot.error", method=request.method, path=request.url.path)
                return hs_errors.server_error(500)

        return run

    def props(self, obj: HsObject) -> dict[str, HsProperty]:
        return catalog(obj, self.world.hs_custom_properties(obj.name))

    def owner_ids(self) -> frozenset[str]:
        return frozenset(str(r[0]) for r in self.world.query("SELECT id FROM hs_owners WHERE NOT archived"))

    def resolve_many(self, obj: HsObject, ids: Sequence[int]) -> dict[int, int]:
        """Merged ids → surviving ids, in one query (the store keeps merge chains flat)."""
        if not ids:
            return {}
        marks = ", ".join("?" for _ in ids)
        rows = self.world.query(
            f"SELECT old_id, new_id FROM hs_merged WHERE object = ? AND old_id IN ({marks})", (obj.name, *ids)
        )
        merged = {r[0]: r[1] for r in rows}
        return {i: merged.get(i, i) for i in ids}

    def live(self, obj: HsObject, raw: Any) -> int | None:
        """The surviving id of a live record, or None."""
        rid = record_id(raw)
        if rid is None:
            return None
        rid = self.world.hs_resolve(obj.name, rid)
        return rid if fetch(self.world, obj, [rid]) else None

    def batch_response(
        self,
        results: list[dict[str, Any]],
        errors: list[dict[str, Any]],
        started: datetime,
        ok: int,
    ) -> JSONResponse:
        body: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if errors:
            body["numErrors"] = len(errors)
            body["errors"] = errors
        body["startedAt"] = hs_datetime(started)
        body["completedAt"] = hs_datetime(self.now())
        return JSONResponse(body, 207 if errors else ok)
