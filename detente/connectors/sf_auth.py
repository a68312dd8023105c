"""Salesforce OAuth for the connector: the password, refresh-token and JWT-bearer grants,
posted to ``login_url/services/oauth2/token`` with the connector's own session.

Refusals become ``AuthError`` messages that name the settings to fix and never carry a
secret or the response body (only the OAuth ``error`` code, which is a fixed word).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import jwt
import requests

from detente.errors import AuthError, FatalError, RetriableError
from detente.settings import SalesforceSettings

JWT_LIFETIME = timedelta(minutes=3)
GRANT_JWT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_ENV = "DETENTE_SALESFORCE__"
_CODE = re.compile(r"[a-z_]{1,40}")


@dataclass(frozen=True)
class Token:
    """An access token and the instance it is valid for."""

    access_token: str = field(repr=False)
    instance_url: str


def env(name: str) -> str:
    """The environment variable that sets ``salesforce.<name>``."""
    return _ENV + name.upper()


def jwt_assertion(client_id: str, username: str, audience: str, private_key: str, now: datetime) -> str:
    """The RS256 assertion of the JWT-bearer flow, valid for a few minutes from ``now``."""
    claims = {"iss": client_id, "sub": username, "aud": audience,
              "exp": int((now + JWT_LIFETIME).timestamp())}
    return jwt.encode(claims, private_key, algorithm="RS256")


def _require(settings: SalesforceSettings, names: tuple[str, ...]) -> None:
    missing = []
    for name in names:
        value = getattr(settings, name)
        if value is None or (hasattr(value, "get_secret_value") and not value.get_secret_value()) or value == "":
            missing.append(name)
    if missing:
        hint = ", ".join(f"salesforce.{n} ({env(n)})" for n in missing)
        raise AuthError(f"Salesforce {settings.auth} login needs {hint}; set them in the settings file or environment")


def token_form(settings: SalesforceSettings, now: datetime) -> dict[str, str]:
    """The form to post for the configured grant; AuthError when a setting it needs is missing."""
    if settings.auth == "password":
        _require(settings, ("client_id", "client_secret", "username", "password"))
        assert settings.client_secret is not None and settings.password is not None
        return {"grant_type": "password", "client_id": str(settings.client_id),
                "client_secret": settings.client_secret.get_secret_value(),
                "username": str(settings.username), "password": settings.password.get_secret_value()}
    if settings.auth == "refresh_token":
        _require(settings, ("client_id", "refresh_token"))
        assert settings.refresh_token is not None
        form = {"grant_type": "refresh_token", "client_id": str(settings.client_id),
                "refresh_token": settings.refresh_token.get_secret_value()}
        if settings.client_secret is not None and settings.client_secret.get_secret_value():
            form["client_secret"] = settings.client_secret.get_secret_value()
        return form
    _require(settings, ("client_id", "username", "private_key_file"))
    assert settings.private_key_file is not None
    key = _read_key(settings.private_key_file)
    audience = settings.login_url.rstrip("/")
    try:
        assertion = jwt_assertion(str(settings.client_id), str(settings.username), audience, key, now)
    except (ValueError, TypeError, jwt.PyJWTError) as exc:
        raise AuthError(
            f"salesforce.private_key_file ({settings.private_key_file}) is not an RSA private key in PEM form; "
            f"point {env('private_key_file')} at the key whose certificate is uploaded to the connected app"
        ) from exc
    return {"grant_type": GRANT_JWT, "assertion": assertion}


def _read_key(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthError(
            f"cannot read salesforce.private_key_file ({path}): {type(exc).__name__}; "
            f"set {env('private_key_file')} to a readable PEM file"
        ) from exc


_HINTS = {
    ("password", "invalid_grant"): f"check {env('username')} and {env('password')} "
                                   "(the password followed by the user's security token)",
    ("refresh_token", "invalid_grant"): f"the refresh token is expired or revoked; set {env('refresh_token')} "
                                        "to a fresh one",
    ("jwt", "invalid_grant"): f"check {env('username')}, that the connected app is pre-authorized for that user, "
                              f"and that {env('private_key_file')} matches the app's certificate",
    ("*", "invalid_client_id"): f"set {env('client_id')} to the connected app's consumer key",
    ("*", "invalid_client"): f"check {env('client_id')} and {env('client_secret')} (the consumer key and secret)",
    ("*", "unsupported_grant_type"): "the connected app does not allow this flow; "
                                     f"choose another with {env('auth')} (password, refresh_token or jwt)",
}


def _refusal(settings: SalesforceSettings, code: str) -> AuthError:
    hint = _HINTS.get((settings.auth, code)) or _HINTS.get(("*", code)) or (
        f"check the salesforce.* credentials and salesforce.login_url ({settings.login_url})"
    )
    return AuthError(f"Salesforce refused the {settings.auth} login ({code}); {hint}")


def fetch_token(session: requests.Session, settings: SalesforceSettings, now: datetime) -> Token:
    """Run the configured OAuth grant; AuthError when the credentials are refused."""
    form = token_form(settings, now)
    url = settings.login_url.rstrip("/") + "/services/oauth2/token"
    try:
        response = session.post(url, data=form, headers={"Accept": "application/json"})
    except requests.exceptions.SSLError as exc:
        raise FatalError(
            f"cannot verify the TLS certificate of {settings.login_url}; set {env('ca_file')} to the CA bundle "
            "that signed it"
        ) from exc
    except requests.RequestException as exc:
        raise RetriableError(f"the Salesforce login at {settings.login_url} failed ({type(exc).__name__})") from exc
    if response.status_code in (400, 401, 403):
        code = "refused"
        try:
            body = response.json()
            given = body.get("error") if isinstance(body, dict) else None
            if isinstance(given, str) and _CODE.fullmatch(given):
                code = given
        except ValueError:
            pass
        raise _refusal(settings, code)
    if response.status_code != 200:
        raise RetriableError(
            f"the Salesforce login at {settings.login_url} answered {response.status_code}; try again later"
        )
    try:
        body = response.json()
        access_token = str(body["access_token"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RetriableError(f"the Salesforce login at {settings.login_url} returned no access token") from exc
    instance_url = body.get("instance_url") or settings.instance_url
    if not instance_url:
        raise AuthError(f"the Salesforce login returned no instance_url; set {env('instance_url')}")
    return Token(access_token, str(instance_url))
