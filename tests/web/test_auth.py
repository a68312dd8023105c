"""Who may read the dashboard: anyone on loopback; beyond it only a holder of dashboard.token
(a Bearer header, or ?token= once and then a cookie), and it refuses to start without one. The
token never shows in a page, a redirect, an error or the log."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.testclient import TestClient
from structlog.testing import capture_logs
from typer.testing import CliRunner

from detente.cli import app as cli
from detente.daemon.endpoints import build_app
from detente.errors import SettingsError
from detente.rules import Rules
from detente.store.engine import create_schema, make_engine
from detente.web.app import build_dashboard, dashboard
from detente.web.auth import COOKIE, is_loopback
from tests.reconcile.conftest import RULES

TOKEN = "s3cret-Token-for-the-dashboard-42"
NOW = datetime(2026, 11, 17, 15, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """An empty store: these tests are about the gate, not the numbers."""
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('auth') / 'detente.db'}")
    create_schema(engine)
    yield engine
    engine.dispose()


def board(engine: Engine, rules: Rules, listen: str, token: str | None) -> Starlette:
    secret = SecretStr(token) if token is not None else None
    return build_dashboard(engine, lambda: rules, listen=listen, token=lambda: secret, now=lambda: NOW)


@pytest.fixture
def guarded(engine: Engine, rules: Rules) -> Iterator[TestClient]:
    """The dashboard listening on every interface, with a token."""
    with TestClient(board(engine, rules, "0.0.0.0:8478", TOKEN), base_url="http://dashboard.example") as c:
        yield c


def test_loopback_names_and_addresses_are_told_apart() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.9.1", "localhost", "::1", "[::1]", "LOCALHOST"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.5", "dashboard.example", ""))


@pytest.mark.parametrize("listen", ["127.0.0.1:8478", "localhost:0", "[::1]:8478"])
def test_on_loopback_no_token_is_needed(engine: Engine, rules: Rules, listen: str) -> None:
    with TestClient(board(engine, rules, listen, None)) as c:
        assert c.get("/findings").status_code == 200
        assert c.get("/").status_code == 200


@pytest.mark.parametrize("token", [None, "", "short"])
def test_beyond_loopback_it_refuses_to_start_without_a_usable_token(engine: Engine, rules: Rules,
                                                                   token: str | None) -> None:
    with pytest.raises(SettingsError) as caught:
        board(engine, rules, "0.0.0.0:8478", token)
    assert "dashboard.token" in str(caught.value)
    if not token:
        assert "dashboard.listen: the dashboard would listen on 0.0.0.0, beyond loopback" in str(caught.value)
        assert "DETENTE_DASHBOARD__TOKEN" in str(caught.value)


def test_detente_serve_beyond_loopback_without_a_token_exits_2_naming_the_setting(tmp_path: Path) -> None:
    settings = tmp_path / "detente.yaml"
    settings.write_text(f"store:\n  url: sqlite:///{tmp_path / 'detente.db'}\nlog:\n  level: warning\n")
    result = CliRunner().invoke(cli, ["--config", str(settings), "serve", "--listen", "0.0.0.0:0", "--rules",
                                      str(RULES)], env={"DETENTE_CONFIG": "", "DETENTE_DASHBOARD__TOKEN": ""})
    assert result.exit_code == 2, result.output
    assert "--listen: the dashboard would listen on 0.0.0.0, beyond loopback, without a token; set " \
           "dashboard.token (environment: DETENTE_DASHBOARD__TOKEN)" in result.stderr


def test_beyond_loopback_a_request_without_the_token_is_refused(guarded: TestClient) -> None:
    for path in ("/", "/findings", "/api/report", "/explain/someone@example.com"):
        answer = guarded.get(path)
        assert answer.status_code == 401, path
        assert answer.headers["www-authenticate"] == 'Bearer realm="detente"'
        assert TOKEN not in answer.text
    assert guarded.get("/findings", headers={"Authorization": "Bearer not-the-token"}).status_code == 401
    assert guarded.get("/findings", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    assert guarded.get("/findings", headers={"Cookie": f"{COOKIE}={TOKEN}"}).status_code == 401
    assert guarded.get(f"/findings?token={TOKEN}x", follow_redirects=False).status_code == 401
    assert guarded.get("/healthz").json() == {"status": "ok"}


def test_the_bearer_header_opens_every_page_and_the_token_is_in_none(guarded: TestClient) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with capture_logs() as logs:
        for path in ("/", "/findings", "/api/report", "/explain/someone@example.com", "/?period=bad"):
            answer = guarded.get(path, headers=auth)
            assert answer.status_code in (200, 400, 404), (path, answer.status_code)
            assert TOKEN not in answer.text and TOKEN not in str(answer.headers)
    assert TOKEN not in str(logs)


def test_a_token_in_the_address_sets_a_cookie_and_leaves_the_address(guarded: TestClient) -> None:
    answer = guarded.get(f"/findings?kind=sla&token={TOKEN}&team=sales", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/findings?kind=sla&team=sales"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert TOKEN not in cookie and TOKEN not in answer.text
    # The client keeps the cookie: the page itself, and every other page, now open without the token.
    page = guarded.get("/findings?kind=sla&team=sales")
    assert page.status_code == 200 and TOKEN not in page.text
    assert guarded.get("/").status_code == 200


def test_the_cookie_stops_working_when_the_token_changes(engine: Engine, rules: Rules) -> None:
    token: dict[str, Any] = {"value": SecretStr(TOKEN)}
    app = Starlette(routes=dashboard(engine, lambda: rules, host="0.0.0.0", listen_setting="dashboard.listen",
                                     token=lambda: token["value"], now=lambda: NOW).routes())
    with TestClient(app) as c:
        assert c.get(f"/findings?token={TOKEN}").status_code == 200  # redirected, then let in by the cookie
        token["value"] = SecretStr(TOKEN + "-rotated")
        assert c.get("/findings").status_code == 401


class _Probe:
    def readiness(self) -> tuple[bool, dict[str, Any]]:
        return True, {"status": "ready"}

    def metrics_text(self) -> bytes:
        return b"detente_up 1\n"


def test_the_daemon_serves_the_dashboard_behind_the_token_and_its_probes_open(engine: Engine,
                                                                               rules: Rules) -> None:
    routes = dashboard(engine, lambda: rules, host="0.0.0.0", listen_setting="daemon.listen",
                       token=lambda: SecretStr(TOKEN), now=lambda: NOW).routes()
    with TestClient(build_app(_Probe(), routes)) as c:
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200
        assert c.get("/metrics").text == "detente_up 1\n"
        assert c.get("/").status_code == 401
        assert c.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
