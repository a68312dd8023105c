"""Who may read the dashboard: anyone when it listens on loopback only; beyond it, whoever holds
``dashboard.token``.

The token comes as ``Authorization: Bearer <token>``, or once as ``?token=<token>``: that request
is answered with a cookie (HttpOnly, SameSite=Strict) and a redirect to the same address without
the token, so the token leaves the address bar, the history and any Referer. The cookie holds an
HMAC of the token, not the token itself, and stops working when the token changes. Every
comparison is constant-time; the token is never echoed in a page, a header or an error.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Callable
from urllib.parse import quote, urlencode

from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from detente.errors import SettingsError

COOKIE = "detente_dashboard"
MIN_TOKEN_CHARS = 16
TOKEN_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) reaches this machine only."""
    name = host.strip().removeprefix("[").removesuffix("]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def required_token(host: str, token: SecretStr | None, *, listen_setting: str) -> bool:
    """Whether requests need the token; raise SettingsError when they would but none fits.

    ``listen_setting`` names the setting the host came from, for the message.
    """
    if is_loopback(host):
        return False
    secret = token.get_secret_value() if token is not None else ""
    if not secret:
        raise SettingsError([
            f"{listen_setting}: the dashboard would listen on {host}, beyond loopback, without a token; set "
            f"dashboard.token (environment: DETENTE_DASHBOARD__TOKEN), for example to the output of {TOKEN_HINT}, "
            "or listen on 127.0.0.1"])
    if len(secret) < MIN_TOKEN_CHARS:
        raise SettingsError([
            f"dashboard.token: too short to guard a dashboard on {host} ({len(secret)} characters); use at least "
            f"{MIN_TOKEN_CHARS} random characters, for example the output of {TOKEN_HINT}"])
    return True


def _session(secret: str) -> str:
    """The cookie's value: derived from the token, useless without it, void once it changes."""
    return hmac.new(secret.encode(), b"detente dashboard session", hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


class Guard:
    """Checks each dashboard request; ``token`` is asked each time, so a reloaded token applies at once."""

    def __init__(self, required: bool, token: Callable[[], SecretStr | None]) -> None:
        self.required = required
        self._token = token

    def refuse(self, request: Request) -> Response | None:
        """None when the request may go on; otherwise the answer to send instead."""
        if not self.required:
            return None
        token = self._token()
        secret = token.get_secret_value() if token is not None else ""
        if not secret:
            return _unauthorized("the server has no dashboard.token set; ask its operator")
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if header:
            if scheme.lower() == "bearer" and _same(given.strip(), secret):
                return None
            return _unauthorized("the Authorization header does not hold the dashboard's token")
        cookie = request.cookies.get(COOKIE)
        if cookie is not None and _same(cookie, _session(secret)):
            return None
        query = request.query_params.get("token")
        if query is not None:
            if not _same(query, secret):
                return _unauthorized("the token in the address is not the dashboard's token")
            kept = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
            path = quote(request.url.path, safe="/:@!$&'()*+,;=-._~")
            answer = RedirectResponse(path + (f"?{kept}" if kept else ""), status_code=303)
            answer.set_cookie(COOKIE, _session(secret), httponly=True, samesite="strict", path="/",
                              secure=request.url.scheme == "https")
            return answer
        return _unauthorized("this dashboard needs its token: send Authorization: Bearer <token>, or open the "
                             "address once with ?token=<token>")


def _unauthorized(reason: str) -> Response:
    return PlainTextResponse(f"401 unauthorized: {reason}\n", status_code=401,
                             headers={"WWW-Authenticate": 'Bearer realm="detente"', "Cache-Control": "no-store"})
