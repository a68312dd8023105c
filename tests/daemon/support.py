"""Helpers for the daemon tests: settings files, ``detente run`` as a real process, its JSON log,
its HTTP endpoints and the store it works on."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import requests
import yaml
from sqlalchemy import Engine, text

from detente.sandbox.server import Sandbox
from detente.store.engine import make_engine

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "config" / "rules.yaml"
T = TypeVar("T")


def write_settings(sb: Sandbox, path: Path, store_url: str, rules: Path, *, writeback: bool = True,
                   hubspot: dict[str, Any] | None = None, **daemon: Any) -> Path:
    """A settings file: the sandbox's CRMs with short waits, the store, JSON logs, the daemon section."""
    data = sb.settings_dict()
    data["salesforce"].update(timeout_seconds=10, backoff_factor=0.01, backoff_max_seconds=0.05, lookback_seconds=1)
    data["hubspot"].update(timeout_seconds=10, backoff_factor=0.01, backoff_max_seconds=0.05, lookback_seconds=1,
                           burst_per_10s=100_000, search_per_second=10_000, **(hubspot or {}))
    data["store"] = {"url": store_url}
    data["log"] = {"level": "info", "format": "json"}
    data["writeback"] = {"enabled": writeback}
    data["daemon"] = {"rules": str(rules), "listen": "127.0.0.1:0", "pull_seconds": 2, "audit_seconds": 2,
                      "writeback_seconds": 2, "shutdown_seconds": 10, **daemon}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    os.chmod(path, 0o600)
    return path


def wait_until(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


class Daemon:
    """``python -m detente --config FILE run`` in a process of its own, its stderr in a file."""

    def __init__(self, config: Path, log: Path, extra_env: dict[str, str] | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DETENTE_")}
        env.update(extra_env or {})
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self.log_path = log
        self._log = log.open("wb")
        self.started = time.time()
        self.proc = subprocess.Popen([sys.executable, "-m", "detente", "--config", str(config), "run"],
                                     cwd=config.parent, env=env, stdout=subprocess.DEVNULL, stderr=self._log)
        self.http = requests.Session()
        self.http.trust_env = False
        self._port: int | None = None
        self.signalled = 0.0

    # -- the log ------------------------------------------------------------------------------

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and (name is None or event.get("event") == name):
                found.append(event)
        return found

    def wait_for(self, name: str, timeout: float = 30, where: Callable[[dict[str, Any]], bool] = lambda e: True,
                 after: int = 0) -> dict[str, Any]:
        """The first event ``name`` (past the first ``after`` of them) for which ``where`` holds."""

        def seek() -> dict[str, Any] | None:
            if self.proc.poll() is not None and not [e for e in self.events(name)[after:] if where(e)]:
                raise AssertionError(f"the daemon exited ({self.proc.returncode}) before {name}:\n{self.tail()}")
            return next((e for e in self.events(name)[after:] if where(e)), None)

        return wait_until(seek, timeout, f"{name} in {self.log_path}")

    def at(self, event: dict[str, Any]) -> float:
        """Seconds from the process's start to an event."""
        return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp() - self.started

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    # -- HTTP ---------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            self._port = int(self.wait_for("http.listening")["port"])
        return self._port

    def get(self, path: str) -> requests.Response:
        return self.http.get(f"http://127.0.0.1:{self.port}{path}", timeout=10)

    def metrics(self) -> dict[str, float]:
        """The /metrics samples as {'name{labels}': value} (labels as Prometheus prints them)."""
        out = {}
        for line in self.get("/metrics").text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    # -- the process --------------------------------------------------------------------------

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30) -> tuple[int, float]:
        """SIGTERM; the exit code and the seconds it took to exit."""
        began = time.monotonic()
        self.signalled = time.time()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - began

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def sample(metrics: dict[str, float], name: str, **labels: str) -> float | None:
    """One sample's value, matched on the labels given (others ignored)."""
    for key, value in metrics.items():
        base, _, rest = key.partition("{")
        if base != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if all(found.get(k) == v for k, v in labels.items()):
            return value
    return None


def store(url: str) -> Engine:
    return make_engine(url)


def runs(engine: Engine, kind: str | None = None) -> list[dict[str, Any]]:
    """The ``runs`` rows, oldest first (an empty list while the store has no schema yet)."""
    try:
        with engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(text("SELECT * FROM runs ORDER BY id"))]
    except Exception:
        return []
    for row in rows:
        if isinstance(row["counts"], str):
            row["counts"] = json.loads(row["counts"])
    return [r for r in rows if kind is None or r["kind"] == kind]


def count(engine: Engine, sql: str) -> int:
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar() or 0)
    except Exception:
        return 0


def contents(engine: Engine) -> tuple[set[tuple[str, str, str, bool]], int, int]:
    """What a store holds, to compare with a clean pull: every raw record (deleted or not), the
    people and their links to records."""
    with engine.connect() as conn:
        raw = {(r.system, r.object, r.record_id, bool(r.deleted)) for r in conn.execute(text(
            "SELECT system, object, record_id, deleted FROM raw_records"))}
        people = conn.execute(text("SELECT count(*) FROM people")).scalar_one()
        links = conn.execute(text("SELECT count(*) FROM person_records")).scalar_one()
    return raw, int(people), int(links)
