"""The dashboard over the demo world, pulled, normalized and audited (SQLite and PostgreSQL): its
API is ``detente report``'s JSON, every number on its page is the report's, the explanation
page shows a person's findings with their rules, and bad parameters get a 400 that says why."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape
from sqlalchemy import func, select, update
from starlette.applications import Starlette
from starlette.testclient import TestClient
from typer.testing import CliRunner

from detente.cli import app as cli
from detente.metrics.compute import report
from detente.metrics.periods import period_of
from detente.rules import Rules
from detente.store.findings import AuditState, FindingRow
from detente.store.tables import Person
from detente.web.app import build_dashboard
from tests.normalize.conftest import NOW, World
from tests.reconcile.conftest import RULES
from tests.web.conftest import PERIOD
from tests.web.support import assert_numbers_are_the_reports, expected_metrics, numbers

FINDINGS = FindingRow.__table__  # type: ignore[attr-defined]
AUDIT_STATE = AuditState.__table__  # type: ignore[attr-defined]
AS_OF = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def dashboard(audited: World, rules: Rules) -> Starlette:
    """The dashboard as ``detente serve --as-of NOW`` builds it, on loopback."""
    return build_dashboard(audited.engine, lambda: rules, listen="127.0.0.1:0", token=lambda: None,
                           now=lambda: NOW, as_of=NOW)


@pytest.fixture(scope="module")
def client(dashboard: Starlette) -> Iterator[TestClient]:
    with TestClient(dashboard) as c:
        yield c


def as_json(value: Any) -> Any:
    return json.loads(json.dumps(value))


def test_the_api_serves_the_report_the_cli_prints(client: TestClient, audited: World, rules: Rules,
                                                  tmp_path: Path) -> None:
    period = period_of(PERIOD, NOW)
    for by in (None, "source", "owner"):
        query = f"/api/report?period={PERIOD}" + (f"&by={by}" if by else "")
        got = client.get(query)
        assert got.status_code == 200 and got.headers["content-type"].startswith("application/json")
        assert got.json() == as_json(report(audited.engine, rules, period, NOW, by=by))
    settings = tmp_path / "detente.yaml"
    settings.write_text("log:\n  level: warning\n")
    printed = CliRunner().invoke(cli, ["--config", str(settings), "report", "--period", PERIOD, "--by", "source",
                                       "--as-of", AS_OF, "--rules", str(RULES), "--format", "json"],
                                 env={"DETENTE_STORE__URL": audited.engine.url.render_as_string(hide_password=False),
                                      "DETENTE_CONFIG": ""})
    assert printed.exit_code == 0, printed.output
    assert client.get(f"/api/report?period={PERIOD}&by=source&as_of={AS_OF}").text == printed.stdout


def test_every_number_on_the_dashboard_is_the_reports(client: TestClient) -> None:
    page = client.get(f"/?period={PERIOD}&by=source")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    expected = client.get(f"/api/report?period={PERIOD}&by=source").json()
    shown = numbers(page.text)
    metrics = assert_numbers_are_the_reports(shown, expected)
    assert expected_metrics(expected) <= metrics
    assert expected["funnel"]["stages"][0]["reached"] > 0 and len(shown) > 200


def test_the_default_period_is_the_goals_period_that_holds_now(client: TestClient, rules: Rules) -> None:
    assert rules.goals is not None
    holding = period_of(rules.goals.period, NOW)
    page = client.get("/")
    assert page.status_code == 200
    assert f"<h1>{holding.label} " in page.text
    assert_numbers_are_the_reports(numbers(page.text), client.get(f"/api/report?period={holding.label}&by=source")
                                   .json())
    assert client.get("/api/report").json()["period"]["label"] == holding.label


def test_a_page_loaded_again_reuses_the_report_until_the_audit_runs_again(dashboard: Starlette,
                                                                          client: TestClient, audited: World) -> None:
    cache = dashboard.state.dashboard.cache
    before = (cache.hits, cache.misses)
    client.get("/api/report?period=2026-08&by=source")
    client.get("/?period=2026-08&by=source")
    client.get("/api/report?period=2026-08&by=source")
    assert (cache.hits - before[0], cache.misses - before[1]) == (2, 1)
    with audited.engine.begin() as conn:
        was = conn.execute(select(AUDIT_STATE.c.evaluated_at)).scalar_one()
        conn.execute(update(AUDIT_STATE).values(evaluated_at=was + timedelta(seconds=1)))
    try:
        client.get("/?period=2026-08&by=source")
        assert cache.misses - before[1] == 2
    finally:
        with audited.engine.begin() as conn:
            conn.execute(update(AUDIT_STATE).values(evaluated_at=was))


def _open_finding(world: World, kind: str) -> dict[str, Any]:
    with world.engine.connect() as conn:
        row = conn.execute(select(FINDINGS).where(FINDINGS.c.status == "open", FINDINGS.c.kind == kind,
                                                  FINDINGS.c.person_id.is_not(None))
                           .order_by(FINDINGS.c.key)).first()
    assert row is not None, f"the world has no open {kind} finding"
    return dict(row._mapping)


@pytest.mark.parametrize("kind", ["definition_drift", "sla"])
def test_the_explanation_of_a_person_shows_their_finding_and_its_rule(client: TestClient, audited: World,
                                                                      kind: str) -> None:
    finding = _open_finding(audited, kind)
    listed = client.get(f"/findings?kind={kind}&limit=5000")
    assert listed.status_code == 200
    start = listed.text.index(f'data-finding-key="{escape(finding["key"])}"')
    href = listed.text[listed.text.index('href="', start) + 6:]
    href = href[:href.index('"')].replace("&amp;", "&")
    assert href.startswith("/explain/") and f"id={finding['person_id']}" in href
    page = client.get(href)
    assert page.status_code == 200
    text = page.text
    assert f'data-finding-key="{escape(finding["key"])}"' in text
    assert str(escape(finding["explanation"])) in text
    assert (f"rule: stage {finding['rule']}" if kind == "definition_drift" else f"rule: SLA {finding['rule']}") in text
    assert "Timeline (" in text and "Stages as of" in text


def test_an_email_two_people_share_offers_each_of_them(client: TestClient, audited: World) -> None:
    people = Person.__table__  # type: ignore[attr-defined]
    email = func.lower(people.c.email)
    with audited.engine.connect() as conn:
        shared = conn.execute(select(email).where(people.c.deleted.is_(False), people.c.email.is_not(None))
                              .group_by(email).having(func.count() > 1).order_by(email)).scalars().first()
        assert shared is not None, "the world has no email two live people share"
        ids = sorted(conn.execute(select(people.c.id).where(email == shared, people.c.deleted.is_(False))).scalars())
    page = client.get(f"/explain/{shared}")
    assert page.status_code == 200 and "Several people match" in page.text
    for pid in ids:
        assert f'/explain/{shared}?id={pid}"' in page.text
        chosen = client.get(f"/explain/{shared}?id={pid}")
        assert chosen.status_code == 200 and f"person #{pid} " in chosen.text
    assert client.get(f"/explain/{shared}?id=999999").status_code == 404


def test_the_findings_page_filters_by_kind_and_team(client: TestClient, audited: World) -> None:
    with audited.engine.connect() as conn:
        want = {r.key for r in conn.execute(select(FINDINGS.c.key).where(
            FINDINGS.c.status == "open", FINDINGS.c.kind == "sla", FINDINGS.c.team == "sales"))}
    page = client.get("/findings?kind=sla&team=sales&limit=5000")
    assert page.status_code == 200
    shown = {part.split('"', 1)[0] for part in page.text.split('<tr data-finding-key="')[1:]}
    assert shown == {str(escape(k)) for k in want} and want


def test_bad_parameters_are_a_400_that_says_what_is_expected(client: TestClient) -> None:
    page = client.get("/?period=2026-13")
    assert page.status_code == 400
    assert "period: &#39;2026-13&#39; is not a period; expected a year (2026), a quarter (2026-Q3)" in page.text
    api = client.get("/api/report?period=soon")
    assert api.status_code == 400 and api.json()["error"].startswith("period: 'soon' is not a period; expected")
    assert client.get("/api/report?by=colour").json() == {
        "error": "by: 'colour' is not a slice; expected one of source, channel, offer, campaign, team, owner"}
    assert client.get("/api/report?as_of=yesterday").status_code == 400
    assert client.get("/findings?limit=0").status_code == 400
    assert client.get("/explain/x?id=one").status_code == 400


def test_an_unknown_person_is_a_404_and_what_they_typed_is_escaped(client: TestClient) -> None:
    page = client.get("/explain/<script>alert(1)</script>@example.com")
    assert page.status_code == 404
    assert "<script>alert(1)" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


def test_pages_forbid_scripts_and_framing(client: TestClient) -> None:
    headers = client.get("/findings").headers
    assert "default-src 'none'" in headers["content-security-policy"] and "script-src" not in \
        headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"


def test_the_keeper_computes_the_default_page_before_anyone_loads_it(audited: World, rules: Rules) -> None:
    """``detente serve`` keeps the default page's report warm on a thread: the first page
    load is served from the cache."""
    import threading

    app = build_dashboard(audited.engine, lambda: rules, listen="127.0.0.1:0", token=lambda: None,
                          now=lambda: NOW, as_of=NOW)
    board = app.state.dashboard
    stop = threading.Event()
    keeper = threading.Thread(target=board.keep_warm, args=(stop, 0.05))
    keeper.start()
    try:
        deadline = time.monotonic() + 60
        while board.cache.misses == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert board.cache.misses == 1
        with TestClient(app) as c:
            assert c.get("/").status_code == 200
        assert board.cache.misses == 1 and board.cache.hits >= 1
    finally:
        stop.set()
        keeper.join(10)
    assert not keeper.is_alive()
