"""HubSpot's error bodies, so every refusal of the simulator reads like the real API's.

The shape is ``{"status":"error","message","correlationId","category", "subCategory"?,
"context"?, "errors"?}``; rate-limit refusals carry ``errorType``, ``policyName`` and
``groupName`` instead of a category. Endpoints raise ``HsError``; the app turns it into a
response.
"""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

from starlette.responses import JSONResponse

AUTH_MESSAGE = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you"
    " can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)
PORTAL_ID = 6748263  # the sandbox's one HubSpot account


def correlation_id() -> str:
    return str(uuid.uuid4())


class HsError(Exception):
    """A refusal in HubSpot's shape; ``raise`` it anywhere inside an endpoint."""

    def __init__(
        self,
        status: int,
        message: str,
        category: str,
        *,
        sub_category: str | None = None,
        context: dict[str, list[str]] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.category = category
        self.sub_category = sub_category
        self.context = context
        self.errors = errors

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": "error",
            "message": self.message,
            "correlationId": correlation_id(),
            "category": self.category,
        }
        if self.sub_category:
            body["subCategory"] = self.sub_category
        if self.context:
            body["context"] = self.context
        if self.errors:
            body["errors"] = self.errors
        return body

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), self.status)


def validation(message: str, **kw: Any) -> HsError:
    return HsError(400, message, "VALIDATION_ERROR", **kw)


def not_found(message: str = "resource not found") -> HsError:
    return HsError(404, message, "OBJECT_NOT_FOUND")


def conflict(message: str) -> HsError:
    return HsError(409, message, "CONFLICT")


def property_errors(details: list[dict[str, Any]]) -> HsError:
    """400 for invalid property values: HubSpot inlines the per-property list as JSON text."""
    return validation("Property values were not valid: " + json.dumps(details, separators=(",", ":")))


def property_error(name: str, code: str, message: str) -> dict[str, Any]:
    """One entry of the list in ``property_errors``."""
    detail: dict[str, Any] = {"isValid": False, "message": message, "error": code, "name": name}
    if code == "PROPERTY_DOESNT_EXIST":
        detail["localizedErrorMessage"] = message
        detail["portalId"] = PORTAL_ID
    return detail


def unauthorized() -> JSONResponse:
    return HsError(401, AUTH_MESSAGE, "INVALID_AUTHENTICATION").response()


def rate_limited(policy: str, retry_after: float | None = None) -> JSONResponse:
    """429 as HubSpot sends it: TEN_SECONDLY_ROLLING, SECONDLY (search) or DAILY."""
    message, group = {
        "TEN_SECONDLY_ROLLING": ("You have reached your ten_secondly_rolling limit.", "burst"),
        "SECONDLY": ("You have reached your secondly limit.", "search"),
        "DAILY": ("You have reached your daily limit.", "daily"),
    }[policy]
    body = {
        "status": "error",
        "message": message,
        "errorType": "RATE_LIMIT",
        "correlationId": correlation_id(),
        "policyName": policy,
        "groupName": f"publicapi:private-app:{group}:{PORTAL_ID}",
    }
    headers = {"Retry-After": str(math.ceil(retry_after))} if retry_after is not None else None
    return JSONResponse(body, 429, headers=headers)


def server_error(status: int) -> JSONResponse:
    messages = {500: "internal error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
    return JSONResponse(
        {
            "status": "error",
            "message": messages.get(status, "internal error"),
            "correlationId": correlation_id(),
            "category": "INTERNAL_ERROR",
        },
        status,
    )
