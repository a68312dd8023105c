"""SLA breaches posted to a local webhook (SQLite and PostgreSQL): every open breach once, in
Slack's shape; nothing twice, across restarts too; 5xx retried and 429 waited out as Retry-After
says; a failing webhook loses nothing; its URL, a secret, never reaches an error or a log."""

from __future__ import annotations

import json
import logging
import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select, text, update
from structlog.testing import capture_logs
from typer.testing import CliRunner

from detente.cli import app
from detente.cycle import notify_step
from detente.errors import FatalError, RetriableError
from detente.notify.webhook import NOTICES, WebhookPoster, notify_breaches, pending_breaches
from detente.reconcile.ledger import FINDINGS
from detente.settings import Settings, StoreSettings, WebhookSettings
from detente.store.engine import make_engine
from tests.normalize.conftest import NOW, World
from tests.notify.support import HOOK_PATH, Hook, free_port

SECRET = HOOK_PATH.rsplit("/", 1)[1]
DASHBOARD = "https://detente.example.com/"


@pytest.fixture(autouse=True)
def nothing_posted_yet(audited: World) -> None:
    """Each test starts with no breach posted."""
    with audited.engine.begin() as conn:
        conn.execute(NOTICES.delete())


def hook_settings(url: str, **kw: Any) -> WebhookSettings:
    base: dict[str, Any] = {"enabled": True, "url": SecretStr(url), "retries": 2, "backoff_factor": 0.01,
                            "timeout_seconds": 5}
    return WebhookSettings(**{**base, **kw})


def run(world: World, url: str, per_message: int = 100, max_messages: int = 100, **kw: Any) -> Any:
    poster = WebhookPoster(hook_settings(url, **kw))
    try:
        return notify_breaches(world.engine, poster, NOW, per_message=per_message, max_messages=max_messages,
                               dashboard_url=DASHBOARD)
    finally:
        poster.close()


def breaches(world: World) -> list[dict[str, Any]]:
    f = FINDINGS
    with world.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(
            select(f.c.key, f.c.opened_at, f.c.rule, f.c.team, f.c.owner_email, f.c.email, f.c.salesforce_id,
                   f.c.hubspot_id).where(f.c.kind == "sla", f.c.status == "open", f.c.state == "breached"))]


def noticed(world: World) -> set[tuple[str, Any]]:
    with world.engine.connect() as conn:
        return {(r.finding_key, r.opened_at) for r in conn.execute(select(NOTICES))}


def sections(bodies: list[dict[str, Any]]) -> list[str]:
    return [b["text"]["text"] for body in bodies for b in body["blocks"] if b["type"] == "section"]


def test_each_open_breach_is_posted_once_in_slack_s_shape(audited: World, hook: Hook,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # urllib3 logs each request's path at debug
    store = breaches(audited)
    assert store, "the demo world should hold open SLA breaches"
    result = run(audited, hook.url, per_message=4)
    n = len(store)
    assert result.counts() == {"pending": n, "posted": n, "messages": math.ceil(n / 4), "left": 0}
    bodies = hook.bodies()
    assert len(bodies) == math.ceil(n / 4) and {r.path for r in hook.received} == {HOOK_PATH}
    for body in bodies:
        assert set(body) == {"text", "blocks"} and isinstance(body["text"], str)
        blocks = body["blocks"]
        assert blocks[0]["type"] == "header" and blocks[0]["text"]["type"] == "plain_text"
        assert blocks[-1] == {"type": "context", "elements": [{"type": "mrkdwn", "text": blocks[-1]["elements"][0][
            "text"]}]} and f"<{DASHBOARD}|Open the dashboard>" in blocks[-1]["elements"][0]["text"]
        middle = blocks[1:-1]
        assert 1 <= len(middle) <= 4 and all(b["type"] == "section" and b["text"]["type"] == "mrkdwn" for b in middle)
        lines = body["text"].splitlines()
        assert lines[0] == blocks[0]["text"]["text"] and len(lines) == 1 + len(middle)
    posted = sections(bodies)
    assert len(posted) == n
    for b in store:
        who = b["email"] or f"Salesforce {b['salesforce_id']}"
        head = f"*{b['rule']}* breached, owed by {b['team']} · owner {b['owner_email'] or 'none'}\n*{who}*"
        assert len([s for s in posted if s.startswith(head)]) == 1, head
    assert noticed(audited) == {(b["key"], b["opened_at"]) for b in store}
    assert SECRET not in caplog.text


def test_a_second_run_posts_nothing_even_after_a_restart(audited: World, hook: Hook) -> None:
    run(audited, hook.url)
    calls = len(hook.received)
    fresh = make_engine(audited.engine.url.render_as_string(hide_password=False))  # as a restarted daemon would
    try:
        again = notify_breaches(fresh, WebhookPoster(hook_settings(hook.url)), NOW)
    finally:
        fresh.dispose()
    assert again.counts() == {"pending": 0, "posted": 0, "messages": 0, "left": 0}
    assert len(hook.received) == calls


def test_a_500_then_success_is_retried_within_the_run_and_nothing_is_lost(audited: World, hook: Hook) -> None:
    hook.answer((500, {}), (502, {}))
    result = run(audited, hook.url)
    assert result.posted == len(breaches(audited)) and result.messages == 1
    bodies = hook.bodies()
    assert len(bodies) == 3 and bodies[0] == bodies[1] == bodies[2]
    assert len(noticed(audited)) == result.posted


def test_429_waits_as_retry_after_says(audited: World, hook: Hook) -> None:
    hook.answer((429, {"Retry-After": "1"}))
    result = run(audited, hook.url, backoff_factor=0)
    assert result.posted == len(breaches(audited))
    first, second = hook.received
    assert second.at - first.at >= 0.95


def test_a_webhook_failing_part_way_keeps_what_was_posted_and_posts_the_rest_next_run(audited: World,
                                                                                      hook: Hook) -> None:
    n = len(breaches(audited))
    hook.answer((200, {}), (503, {}), (503, {}), (503, {}))  # the second message fails all three tries
    with pytest.raises(RetriableError) as caught:
        run(audited, hook.url, per_message=2)
    message = str(caught.value)
    assert "the webhook at 127.0.0.1 answered 503 (3 tries)" in message
    assert f"2 breach(es) posted this run, {n - 2} stay pending for the next run" in message
    assert len(noticed(audited)) == 2
    result = run(audited, hook.url, per_message=2)
    assert result.posted == n - 2
    bodies = [r.body for i, r in enumerate(hook.received) if i not in (1, 2, 3)]  # the accepted posts
    assert len(sections(bodies)) == n and len(noticed(audited)) == n


def test_a_run_posts_at_most_its_messages_and_leaves_the_rest(audited: World, hook: Hook) -> None:
    n = len(breaches(audited))
    first = run(audited, hook.url, per_message=1, max_messages=2)
    assert (first.posted, first.messages, first.left) == (2, 2, n - 2)
    second = run(audited, hook.url, per_message=100)
    assert second.posted == n - 2 and len(sections(hook.bodies())) == n


def test_a_refused_url_is_fatal_not_retried_and_nothing_is_recorded(audited: World, hook: Hook) -> None:
    hook.answer((404, {}))
    with pytest.raises(FatalError, match=r"refused the message \(404 Not Found\); check webhook.url"):
        run(audited, hook.url)
    assert len(hook.received) == 1 and noticed(audited) == set()


def test_the_url_never_reaches_errors_or_logs(audited: World, capfd: pytest.CaptureFixture[str],
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"http://127.0.0.1:{free_port()}{HOOK_PATH}"  # nothing listens: urllib3 retries and warns
    with capture_logs() as logs, pytest.raises(RetriableError) as caught:
        run(audited, url)
    assert "cannot reach the webhook at 127.0.0.1 (3 tries)" in str(caught.value)
    out, err = capfd.readouterr()
    seen = [str(caught.value), repr(caught.value), repr(caught.value.__cause__), out, err, caplog.text, repr(logs)]
    assert not [s for s in seen if SECRET in s]
    assert noticed(audited) == set()


def test_a_breach_that_opens_again_is_posted_again(audited: World, hook: Hook) -> None:
    run(audited, hook.url)
    one = breaches(audited)[0]
    f = FINDINGS
    try:
        with audited.engine.begin() as conn:
            conn.execute(update(f).where(f.c.key == one["key"]).values(opened_at=one["opened_at"] + timedelta(days=1)))
        assert [b.key for b in pending_breaches(audited.engine)] == [one["key"]]
        assert run(audited, hook.url).posted == 1
    finally:
        with audited.engine.begin() as conn:
            conn.execute(update(f).where(f.c.key == one["key"]).values(opened_at=one["opened_at"]))


def test_notify_step_records_each_run(audited: World, hook: Hook) -> None:
    url = audited.engine.url.render_as_string(hide_password=False)
    settings = Settings(store=StoreSettings(url=url), webhook=hook_settings(hook.url))
    assert notify_step(audited.engine, Settings(), NOW).outcome == "skipped"
    hook.answer(*[(500, {})] * 3)
    failed = notify_step(audited.engine, settings, NOW)
    assert failed.outcome == "failed" and failed.error and "answered 500" in failed.error
    ok = notify_step(audited.engine, settings, NOW)
    n = len(breaches(audited))
    assert (ok.outcome, ok.counts) == ("ok", {"pending": n, "posted": n, "messages": 1, "left": 0})
    with audited.engine.connect() as conn:
        rows = conn.execute(text("SELECT outcome, error FROM runs WHERE kind = 'notify' ORDER BY id")).all()
    assert [r.outcome for r in rows][-2:] == ["failed", "ok"]
    assert not [r for r in rows if r.error and SECRET in r.error]


def test_the_cli_dry_run_posts_nothing_and_notify_posts(audited: World, hook: Hook, tmp_path: Path) -> None:
    config = tmp_path / "detente.yaml"
    config.write_text("log:\n  level: warning\nwebhook:\n  retries: 0\n")
    env = {"DETENTE_STORE__URL": audited.engine.url.render_as_string(hide_password=False), "DETENTE_CONFIG": "",
           "DETENTE_WEBHOOK__URL": hook.url}
    n = len(breaches(audited))
    dry = CliRunner().invoke(app, ["--config", str(config), "notify", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert f"{n} breach(es) pending; a run would post {n} in 1 message(s)" in dry.stderr
    assert len(json.loads(dry.stdout)["blocks"]) == n + 2 and hook.received == []
    posted = CliRunner().invoke(app, ["--config", str(config), "notify", "--as-of", "2026-11-17T15:00:00Z"], env=env)
    assert posted.exit_code == 0, posted.output
    assert posted.stdout == f"posted {n} breach(es) in 1 message(s); 0 left for the next run\n"
    assert len(hook.received) == 1 and SECRET not in posted.output
