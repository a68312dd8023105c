# ruff: noqa: F401, F811 - the fixtures are imported from sf_support
"""Logging in to Salesforce: the three OAuth flows, and refusals that say what to set."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from structlog.testing import capture_logs

from detente.connectors.sf_auth import jwt_assertion
from detente.errors import AuthError
from detente.sandbox.server import Sandbox
from tests.connectors.sf_support import (
    LEAD,
    T0,
    _close_connectors,
    connector,
    insert,
    leads,
    sf,
    sf_server,
)


def _key_file(tmp_path: Path, pem: str) -> Path:
    path = tmp_path / "key.pem"
    path.write_text(pem)
    return path


def _other_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.mark.parametrize("flow", ["password", "refresh_token", "jwt"])
def test_each_oauth_flow_logs_in_and_pulls(sf: Sandbox, flow: str, tmp_path: Path) -> None:
    insert(sf, LEAD, leads(3), T0 - timedelta(minutes=1))
    extra = {"private_key_file": _key_file(tmp_path, sf.credentials.sf_jwt_private_key)} if flow == "jwt" else {}
    conn = connector(sf, objects=("Lead",), auth=flow, **extra)
    [page] = list(conn.pull("Lead", None, until=T0))
    assert len(page.records) == 3 and conn.logins == 1


def test_the_jwt_assertion_names_the_app_user_and_audience_and_expires_soon() -> None:
    key = _other_key()
    token = jwt_assertion("app-key", "ops@example.com", "https://login.salesforce.com", key, T0)
    public = serialization.load_pem_private_key(key.encode(), None).public_key()
    claims = jwt.decode(token, public, algorithms=["RS256"], audience="https://login.salesforce.com",  # type: ignore[arg-type]
                        options={"verify_exp": False})
    assert (claims["iss"], claims["sub"]) == ("app-key", "ops@example.com")
    assert claims["exp"] == int((T0 + timedelta(minutes=3)).timestamp())


@pytest.mark.parametrize(("flow", "wrong", "hint"), [
    ("password", {"password": "not-the-password-123"}, "DETENTE_SALESFORCE__PASSWORD"),
    ("password", {"client_secret": "not-the-secret-456"}, "DETENTE_SALESFORCE__CLIENT_SECRET"),
    ("refresh_token", {"refresh_token": "not-the-refresh-token-789"}, "DETENTE_SALESFORCE__REFRESH_TOKEN"),
    ("jwt", {}, "DETENTE_SALESFORCE__PRIVATE_KEY_FILE"),
])
def test_refused_credentials_are_an_auth_error_that_says_what_to_set(
    sf: Sandbox, tmp_path: Path, flow: str, wrong: dict[str, str], hint: str
) -> None:
    extra: dict[str, object] = dict(wrong)
    if flow == "jwt":  # signed with a key the connected app does not know
        extra["private_key_file"] = _key_file(tmp_path, _other_key())
    conn = connector(sf, objects=("Lead",), auth=flow, **extra)
    with capture_logs() as logs, pytest.raises(AuthError) as caught:
        list(conn.pull("Lead", None, until=T0))
    message = str(caught.value)
    assert hint in message
    secrets = [*wrong.values(), sf.credentials.sf_password, sf.credentials.sf_client_secret,
               sf.credentials.sf_refresh_token]
    for secret in secrets:
        assert secret not in message and secret not in repr(logs)


def test_missing_credentials_are_named_before_any_call(sf: Sandbox) -> None:
    conn = connector(sf, objects=("Lead",), client_id=None, password=None)
    with pytest.raises(AuthError, match="DETENTE_SALESFORCE__CLIENT_ID") as caught:
        list(conn.pull("Lead", None, until=T0))
    assert "DETENTE_SALESFORCE__PASSWORD" in str(caught.value)
    assert conn.calls == 0
