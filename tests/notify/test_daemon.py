"""``detente run`` with the webhook and the digest enabled: the breaches its first audit finds are
posted right after it, each once, also across a restart; the digest job waits on its cron schedule."""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import text

from detente.sandbox.server import Sandbox
from tests.daemon.support import RULES, Daemon, runs, store, wait_until, write_settings
from tests.notify.support import HOOK_PATH, webhook_server


def test_the_daemon_posts_each_breach_once_across_a_restart_and_schedules_the_digest(tmp_path: Path) -> None:
    as_of = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    sb = Sandbox(state_dir=tmp_path / "sandbox", dataset="demo", size=100, seed=23, as_of=as_of)
    sb.start()
    rules = tmp_path / "rules.yaml"
    shutil.copy(RULES, rules)
    url = f"sqlite:///{tmp_path / 'detente.db'}"
    engine = store(url)
    daemons: list[Daemon] = []
    try:
        with webhook_server() as hook:
            config = write_settings(sb, tmp_path / "detente.yaml", url, rules, writeback=False, audit_seconds=3,
                                    pull_seconds=300)
            data = yaml.safe_load(config.read_text())
            data["webhook"] = {"enabled": True, "url": hook.url, "retries": 1, "backoff_factor": 0.01}
            data["digest"] = {"enabled": True, "schedule": {"day_of_week": "mon", "hour": 8, "minute": 0},
                              "timezone": "Europe/Berlin", "smtp": {"host": "127.0.0.1", "port": 2525,
                                                                    "from_address": "detente@example.com"},
                              "audiences": {"sales": ["cro@example.com"]}}
            config.write_text(yaml.safe_dump(data, sort_keys=False))

            first = Daemon(config, tmp_path / "daemon-1.log")
            daemons.append(first)
            done = first.wait_for("job.finished", 90, lambda e: e["job"] == "notify" and e["counts"].get("posted"))
            scheduled = first.wait_for("job.scheduled", 5, lambda e: e["job"] == "digest")
            expected = CronTrigger(day_of_week="mon", hour=8, minute=0, timezone="Europe/Berlin")
            assert scheduled["cron"] == str(expected)
            fired = datetime.fromisoformat(scheduled["first_run"])
            assert fired.weekday() == 0 and (fired.hour, fired.minute) == (8, 0) and fired > datetime.now(UTC)
            assert first.stop()[0] == 0
            before = len(runs(engine, "notify"))

            with engine.connect() as conn:
                open_breaches = int(conn.execute(text(
                    "SELECT count(*) FROM findings WHERE kind = 'sla' AND status = 'open' AND state = 'breached'"
                )).scalar() or 0)
                notices = int(conn.execute(text("SELECT count(*) FROM breach_notices")).scalar() or 0)
            assert open_breaches > 0 and done["counts"]["posted"] == notices >= open_breaches
            assert {r.path for r in hook.received} == {HOOK_PATH}

            second = Daemon(config, tmp_path / "daemon-2.log")
            daemons.append(second)
            second.wait_for("job.finished", 60, lambda e: e["job"] == "notify")
            wait_until(lambda: len([r for r in runs(engine, "notify") if r["outcome"] != "running"]) > before, 30,
                       "the second daemon's notify run")
            assert second.stop()[0] == 0

            sections = [b["text"]["text"].split("\n")[1] for body in hook.bodies() for b in body["blocks"]
                        if b["type"] == "section"]
            assert sections and max(Counter(sections).values()) == 1  # no breach posted twice
            assert all(r["outcome"] == "ok" for r in runs(engine, "notify"))
            assert "digest" not in {r["kind"] for r in runs(engine)}  # Monday 08:00 has not come
            for daemon in daemons:
                assert hook.url not in daemon.log_path.read_text() and HOOK_PATH not in daemon.log_path.read_text()
    finally:
        for daemon in daemons:
            daemon.kill()
        engine.dispose()
        sb.stop()
