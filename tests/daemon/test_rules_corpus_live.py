"""The malformed-rules corpus (tests/rules/corpus) against a live daemon: every file written
over the watched rules file is rejected with its located problem, /readyz and the metrics say
the rules are invalid, the daemon keeps running its jobs with the last good rules, and the good
file written back makes it ready again. And the watch never judges a file caught half-written."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from detente.daemon.rulewatch import SETTLE_SECONDS, RulesWatch
from detente.rules import load_rules
from detente.sandbox.server import Sandbox
from tests.daemon.support import RULES, Daemon, runs, sample, store, wait_until, write_settings

CORPUS = sorted((Path(__file__).parents[1] / "rules" / "corpus").glob("*.yaml"))
EXPECT = re.compile(rb"^# expect: (\d+):(\d+): (.+)$", re.MULTILINE)


def _write_settled(path: Path, content: bytes) -> None:
    """Write ``content`` and date it past the watch's settle time, as if the editor had finished
    a moment ago; the modification time still moves forward from one edit to the next."""
    before = path.stat().st_mtime_ns
    path.write_bytes(content)
    when = max(time.time_ns() - int((SETTLE_SECONDS + 0.5) * 1e9), before + 1_000_000)
    os.utime(path, ns=(when, when))


def _rejection(daemon: Daemon, seen: int) -> tuple[dict[str, Any], list[str]]:
    """The rules.invalid event past the first ``seen`` of them, with the problems logged after it."""

    def find() -> tuple[dict[str, Any], list[str]] | None:
        if daemon.proc.poll() is not None:
            raise AssertionError(f"the daemon exited ({daemon.proc.returncode}):\n{daemon.tail()}")
        events = daemon.events()
        invalid = [i for i, e in enumerate(events) if e.get("event") == "rules.invalid"]
        if len(invalid) <= seen:
            return None
        event = events[invalid[seen]]
        problems = [e["problem"] for e in events[invalid[seen] + 1:] if e.get("event") == "rules.problem"]
        problems = problems[:event["problems"]]
        return (event, problems) if len(problems) == event["problems"] else None

    return wait_until(find, 20, f"rejection number {seen + 1}", every=0.05)


def test_every_corpus_file_is_rejected_live_and_the_last_good_rules_keep_working(
        world: Sandbox, rules_file: Path, tmp_path: Path, spawn: Callable[[Path], Daemon]) -> None:
    assert len(CORPUS) >= 30, CORPUS
    url = f"sqlite:///{tmp_path / 'detente.db'}"
    engine = store(url)
    good = rules_file.read_bytes()
    version = load_rules(rules_file).version
    daemon = spawn(write_settings(world, tmp_path / "detente.yaml", url, rules_file, writeback=False,
                                  pull_seconds=600, audit_seconds=1, writeback_seconds=600))
    wait_until(lambda: [r for r in runs(engine, "audit") if r["outcome"] == "ok"], 60, "a first audit")
    assert daemon.get("/readyz").status_code == 200
    before = len(runs(engine, "audit"))

    tried = []
    for seen, path in enumerate(CORPUS):
        content = path.read_bytes()
        expected = EXPECT.findall(content)
        assert len(expected) == 1, path.name
        line, col, text = (part.decode() for part in expected[0])
        _write_settled(rules_file, content)
        event, problems = _rejection(daemon, seen)
        assert event["kept_version"] == version and event["level"] == "error", (path.name, event)
        # Each problem is logged located in the watched file, as `detente rules check` shows it.
        where = f"{rules_file}:{line}:{col}: "
        assert any(p.startswith(where) and text in p for p in problems), (path.name, where, text, problems)
        ready = daemon.get("/readyz")
        body = ready.json()
        assert ready.status_code == 503 and body["role"] == "leader", (path.name, body)
        assert body["rules"]["valid"] is False and body["rules"]["version"] == version, (path.name, body["rules"])
        assert any("rules" in reason for reason in body["reasons"]), (path.name, body["reasons"])
        tried.append(path.name)
    assert tried == [p.name for p in CORPUS]
    assert len(daemon.events("rules.invalid")) == len(CORPUS)  # one rejection per edit, no other
    assert sample(daemon.metrics(), "detente_rules_valid") == 0

    # The audits went on all the while, each with the last good rules, and go on still.
    during = len(runs(engine, "audit"))
    wait_until(lambda: [r for r in runs(engine, "audit")[during:] if r["outcome"] == "ok"], 15,
               "an audit after the last bad edit")
    audits = [r for r in runs(engine, "audit")[before:] if r["outcome"] != "running"]
    assert len(audits) >= 2 and all(r["outcome"] == "ok" and r["counts"].get("rules_version") == version
                                    for r in audits), audits
    assert not daemon.events("job.failed") and not daemon.events("rules.reloaded"), daemon.tail()

    # The good file back: valid and ready again, with the same version.
    _write_settled(rules_file, good)
    wait_until(lambda: daemon.get("/readyz").status_code == 200, 15, "/readyz ready with the good rules back")
    assert daemon.get("/readyz").json()["rules"] == {"path": str(rules_file), "version": version, "valid": True,
                                                      "problems": []}
    assert sample(daemon.metrics(), "detente_rules_valid") == 1
    assert "Traceback" not in daemon.log_path.read_text(errors="replace")
    code, _ = daemon.stop()
    assert code == 0
    engine.dispose()


def test_a_file_rewritten_while_the_watch_reads_it_is_never_judged_half_written(tmp_path: Path) -> None:
    """An editor saves corpus files one after another, each once the last was judged; the watch
    refreshes all the time. A refresh that lands while a save has truncated the file sees it
    empty before it sees its new modification time: that must not be judged (it was, as an
    empty rules file, about once in four saves)."""
    path = tmp_path / "rules.yaml"
    path.write_bytes(RULES.read_bytes())
    watch = RulesWatch(path)
    good = watch.refresh()
    assert good is not None
    stop = threading.Event()

    def refresh_all_the_time() -> None:
        while not stop.is_set():
            watch.refresh()
            time.sleep(0.001)

    edits = CORPUS[:16]
    with capture_logs() as logs:

        def judged(edits: int) -> bool:
            return len([e for e in logs if e["event"] == "rules.invalid"]) >= edits

        spinner = threading.Thread(target=refresh_all_the_time, daemon=True)
        spinner.start()
        try:
            for seen, edit in enumerate(edits):
                path.write_bytes(edit.read_bytes())  # once the edit before it was judged
                wait_until(partial(judged, seen + 1), 10, f"the rejection of {edit.name}", every=0.002)
        finally:
            stop.set()
            spinner.join(5)
    problems = [e["problem"] for e in logs if e["event"] == "rules.problem"]
    assert not [p for p in problems if "is empty" in p], problems
    assert len([e for e in logs if e["event"] == "rules.invalid"]) == len(edits)
    assert watch.rules is good
