"""Pull, audit and write-back under an API fault storm, against a clean run of the same world:
whether detente ends with the same store and the same CRM state, and what the storm costs in
API calls and wall time.

One demo world of ``--size`` people is generated once (``detente sandbox``, its own process)
and copied, so both runs start from identical worlds. Each run serves its copy with
``detente sandbox`` (its own process, HTTPS on 127.0.0.1) and drives detente in this process
against a fresh SQLite store, all at one fixed ``now`` (the world's as-of + 5 minutes):

1. pull both CRMs fully (``detente.sync.sync``); a system whose pull fails or stops is pulled
   again from where it stopped, as the daemon's next cycle would (at most 5 pulls);
2. normalize, audit (config/rules.yaml), plan the write-back (``plan_writes``);
3. apply (``apply_writes`` with the real writers) until no write is pending (at most 10 rounds;
   ``writeback.max_attempts`` is 10 here so that a write refused by chance three times, the
   default, is not given up: the daemon would plan it anew next cycle).

The storm run first sets this fault profile on both servers (``POST /__sandbox/faults``):
20% of calls answered 429 (half without Retry-After; Retry-After: 1 s otherwise), 5% answered
5xx, every 1,000th call finding the Salesforce session expired, 2% of batch write records
refused as transient (UNABLE_TO_LOCK_ROW; HubSpot "try it again"), 2% of calls delayed 0.5 s.
Only the Salesforce server expires sessions (HubSpot's private-app tokens do not), and it counts
its own calls: a world whose run takes it fewer than 1,000 calls sees no expiry (the report says
so; ``--fault expire_session_every=10`` makes it happen).
Both runs use the same settings: short backoff (0.01 s doubling, at most 0.05 s; a Retry-After
is honoured), the default retries (Salesforce 5, HubSpot 6), a 60 s timeout.

Compared, storm against clean: raw records (system, object, record id, deleted, modified_at and,
unless deleted, data); live people (email and the three CRM ids); the outbox (kind, system,
object, record id, field, value, task key), every row applied; and each world after the runs:
the Detente_* fields of Salesforce leads and contacts, the detente_* properties of HubSpot
contacts, detente's tasks by key (their content, without ids and timestamps) and, in HubSpot,
the contacts they are associated with. The sandbox's write log, counted per (system, object,
operation), is printed for information.

Calls are the sandbox's own counts (``/__sandbox/stats``: every attempt, faulted ones and
logins included), per phase and system. Peak RSS: this process (detente and the comparisons;
imported by another script, whatever that process did before too) and, apart, each run's
sandbox server (its own process).

    .venv/bin/python bench/fault_storm.py --size 2000
    .venv/bin/python bench/fault_storm.py --size 100000 --seed 1 --workdir /tmp/storm
    .venv/bin/python bench/fault_storm.py --size 2000 --fault expire_session_every=10 --keep

``storm(size, seed, workdir, say=print)`` runs the same from another script and returns the
figures (JSON-ready); the script prints them, then one JSON line, and exits 1 unless the two
runs ended identical.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "config" / "rules.yaml"
# The tests' anchor moment: the world is the same whenever the bench runs.
AS_OF = datetime(2026, 11, 16, 15, 0, tzinfo=UTC)
SYSTEMS = ("salesforce", "hubspot")
STORM = {
    "rate_limited": 0.20, "without_retry_after": 0.5, "retry_after_seconds": 1, "server_errors": 0.05,
    "expire_session_every": 1000, "partial_batch_failures": 0.02, "slow": 0.02, "slow_seconds": 0.5,
}
PULL_ROUNDS = 5
APPLY_ROUNDS = 10
MAX_WRITES = 10_000_000
TIMEOUT_SECONDS = 60.0
SHOWN = 20  # differences listed per comparison

Say = Callable[[str], Any]


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB (Linux reports ru_maxrss in KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_peak_rss_mb(pid: int) -> float:
    """A running child's peak resident memory in MB (Linux), NaN when unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _env() -> dict[str, str]:
    """The sandbox's environment: the repository importable, no detente settings from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETENTE_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return env


# -- the sandbox, its own process ---------------------------------------------------------------


class Server:
    """``detente sandbox`` serving a state directory (generating its world first if there is
    none), with its control endpoints."""

    def __init__(self, state: Path, size: int, seed: int, as_of: datetime, say: Say, what: str) -> None:
        self.state = state
        self.config = state.parent / f"{state.name}.yaml"
        self.log = state.parent / f"{state.name}.sandbox.log"
        self.peak_rss_mb = float("nan")
        began = time.monotonic()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "detente", "sandbox", "--size", str(size), "--seed", str(seed),
                 "--as-of", as_of.isoformat().replace("+00:00", "Z"), "--state-dir", str(state),
                 "--write-config", str(self.config)],
                stdout=subprocess.PIPE, stderr=log, text=True, cwd=state.parent, env=_env(),
            )
        assert self.proc.stdout is not None
        shown = began
        while True:
            ready, _, _ = select.select([self.proc.stdout], [], [], 5.0)
            if ready:
                line = self.proc.stdout.readline()
                if not line:
                    self.proc.wait(timeout=60)
                    raise RuntimeError(f"the sandbox ({what}) did not start; see {self.log}:\n"
                                       f"{self.log.read_text(errors='replace')[-3000:]}")
                if '"sandbox.ready"' in line:
                    break
            elif time.monotonic() - shown >= 30:
                shown = time.monotonic()
                world = state / "world.sqlite3"
                mb = sum(p.stat().st_size for p in state.glob("world.sqlite3*")) / 2**20 if world.exists() else 0
                say(f"  {what}: {shown - began:.0f} s, world file {mb:,.0f} MB")
        deadline = time.monotonic() + 30
        while not self.config.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.seconds = time.monotonic() - began
        import requests
        import yaml

        data = yaml.safe_load(self.config.read_text())
        self.settings_data: dict[str, Any] = data
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = data["salesforce"]["ca_file"]
        self.bases = {"salesforce": data["salesforce"]["instance_url"].rstrip("/"),
                      "hubspot": data["hubspot"]["base_url"].rstrip("/")}

    def stats(self) -> dict[str, dict[str, Any]]:
        out = {}
        for system, base in self.bases.items():
            answer = self.session.get(f"{base}/__sandbox/stats", timeout=60)
            answer.raise_for_status()
            out[system] = answer.json()
        return out

    def set_faults(self, profile: dict[str, Any]) -> None:
        from detente.sandbox.control import FaultProfile

        body = FaultProfile(**profile).model_dump()  # checked here against the model's bounds
        for base in self.bases.values():
            answer = self.session.post(f"{base}/__sandbox/faults", json=body, timeout=60)
            answer.raise_for_status()

    def stop(self) -> None:
        """SIGTERM: the sandbox closes its world (a clean SQLite file to read afterwards)."""
        self.session.close()
        self.peak_rss_mb = child_peak_rss_mb(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=60)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def calls_between(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> dict[str, int]:
    return {s: int(after[s]["total_calls"]) - int(before[s]["total_calls"]) for s in SYSTEMS}


# -- one run ------------------------------------------------------------------------------------


def settings_for(server: Server) -> Any:
    """The sandbox's settings with short waits (a backoff of seconds would make a storm run take
    hours) and write-back on."""
    from detente.settings import Settings

    data = json.loads(json.dumps(server.settings_data))
    data["salesforce"].update(timeout_seconds=TIMEOUT_SECONDS, backoff_factor=0.01, backoff_max_seconds=0.05,
                              lookback_seconds=1)
    data["hubspot"].update(timeout_seconds=TIMEOUT_SECONDS, backoff_factor=0.01, backoff_max_seconds=0.05,
                           burst_per_10s=100_000, search_per_second=10_000, lookback_seconds=1)
    data["writeback"] = {"enabled": True, "max_writes_per_run": MAX_WRITES, "max_attempts": APPLY_ROUNDS}
    return Settings(**data)


def run(label: str, server: Server, store: Path, now: datetime, faults: dict[str, Any] | None,
        say: Say) -> dict[str, Any]:
    """Pull, normalize, audit, plan and apply against ``server`` into a new store at ``store``."""
    from sqlalchemy import func, select

    from detente.normalize.run import normalize
    from detente.reconcile.ledger import reconcile
    from detente.rules import load_rules
    from detente.store.engine import create_schema, make_engine
    from detente.sync import sync
    from detente.writeback.apply import apply_writes, pending
    from detente.writeback.plan import WRITES, plan_writes
    from detente.writeback.send import HubSpotWriter, SalesforceWriter

    settings = settings_for(server)
    rules = load_rules(RULES)
    engine = make_engine(f"sqlite:///{store}")
    create_schema(engine)
    out: dict[str, Any] = {"seconds": {}, "calls": {}, "pull_rounds": {}, "pull_problems": []}
    if faults is not None:
        server.set_faults(faults)
    began = time.monotonic()
    start = server.stats()
    try:
        # Pull, again for a system that did not finish (a failed pull keeps the pages it committed).
        mark, t = start, time.monotonic()
        todo = list(SYSTEMS)
        for n in range(1, PULL_ROUNDS + 1):
            results = sync(engine, settings, now=now, systems=todo)
            for r in results:
                out["pull_rounds"][r.system] = n
                if r.error or r.report.stopped:
                    out["pull_problems"].append(f"pull {n}, {r.system}: {r.error or r.report.stopped}")
                    why = r.error or r.report.stopped or ""
                    say(f"  {label}: pull {n} of {r.system} did not finish: {why[:300]}")
            todo = [r.system for r in results if r.error or r.report.stopped]
            if not todo:
                break
        out["pull_unfinished"] = todo
        after = server.stats()
        out["calls"]["pull"], out["seconds"]["pull"] = calls_between(mark, after), time.monotonic() - t
        say(f"  {label}: pulled in {out['seconds']['pull']:.1f} s, {sum(out['calls']['pull'].values()):,} calls "
            f"({', '.join(f'{s} {n}' for s, n in out['pull_rounds'].items())} pull(s))")

        t = time.monotonic()
        normalize(engine, now=now)
        out["seconds"]["normalize"] = time.monotonic() - t
        t = time.monotonic()
        out["findings"] = reconcile(engine, rules, now)
        out["seconds"]["audit"] = time.monotonic() - t
        t = time.monotonic()
        plan = plan_writes(engine, rules, settings.writeback, now)
        out["planned"], out["seconds"]["plan"] = len(plan.writes), time.monotonic() - t
        say(f"  {label}: normalized, audited and planned in "
            f"{out['seconds']['normalize'] + out['seconds']['audit'] + out['seconds']['plan']:.1f} s: "
            f"{out['planned']:,} writes")

        mark, t = server.stats(), time.monotonic()
        sf, hs = SalesforceWriter(settings.salesforce), HubSpotWriter(settings.hubspot)
        rounds: list[dict[str, Any]] = []
        try:
            while len(rounds) < APPLY_ROUNDS and pending(engine, settings.writeback.max_attempts):
                result = apply_writes(engine, settings, {"salesforce": sf.send, "hubspot": hs.send}, now)
                rounds.append({"sent": result.sent, **dict(result.counts)})
                say(f"  {label}: apply round {len(rounds)}: sent {result.sent:,}, "
                    f"{', '.join(f'{k} {v:,}' for k, v in sorted(result.counts.items()))}")
        finally:
            sf.close()
            hs.close()
        out["apply_rounds"], out["apply"] = len(rounds), rounds
        out["still_pending"] = len(pending(engine, settings.writeback.max_attempts))
        after = server.stats()
        out["calls"]["writeback"], out["seconds"]["writeback"] = calls_between(mark, after), time.monotonic() - t
        with engine.connect() as conn:
            out["outbox"] = {s: n for s, n in conn.execute(select(WRITES.c.state, func.count()).group_by(
                WRITES.c.state))}
    finally:
        engine.dispose()
    end = server.stats()
    out["seconds"]["total"] = time.monotonic() - began
    out["calls"]["total"] = calls_between(start, end)
    out["faults_injected"] = {s: dict(sorted(end[s]["faults_injected"].items())) for s in SYSTEMS}
    out["routes"] = {s: dict(sorted(end[s]["calls"].items())) for s in SYSTEMS}
    return out


# -- comparing the stores -----------------------------------------------------------------------


def _attached(clean: Path, storm: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{clean}?mode=ro", uri=True)
    conn.execute("ATTACH DATABASE ? AS s", (f"file:{storm}?mode=ro",))
    return conn


def _one_way(conn: sqlite3.Connection, columns: str, table: str, where: str = "") -> tuple[list[Any], list[Any]]:
    """Rows of ``table`` only in the clean store, and only in the storm's."""
    only = []
    for a, b in (("main", "s"), ("s", "main")):
        only.append(conn.execute(f"SELECT {columns} FROM {a}.{table} {where} EXCEPT "
                                 f"SELECT {columns} FROM {b}.{table} {where}").fetchall())
    return only[0], only[1]


def compare_stores(clean: Path, storm: Path) -> tuple[dict[str, Any], list[str]]:
    differences: list[str] = []
    figures: dict[str, Any] = {}
    conn = _attached(clean, storm)
    try:
        # Raw records. The JSON text may order keys differently; rows that differ as text are
        # compared again as parsed documents.
        cols = "system, object, record_id, deleted, modified_at, CASE WHEN deleted THEN NULL ELSE data END"
        a, b = _one_way(conn, cols, "raw_records")
        keys = sorted({r[:3] for r in a} | {r[:3] for r in b})
        counts = [conn.execute(f"SELECT count(*) FROM {db}.raw_records").fetchone()[0] for db in ("main", "s")]
        figures["records_compared"] = counts[0]
        figures["records_by_object"] = {f"{s}.{o}": n for s, o, n in conn.execute(
            "SELECT system, object, count(*) FROM raw_records GROUP BY system, object ORDER BY system, object")}
        if counts[0] != counts[1]:
            differences.append(f"raw records: {counts[0]} after the clean run, {counts[1]} after the storm")
        real = []
        for key in keys:
            rows = [conn.execute(f"SELECT deleted, modified_at, data FROM {db}.raw_records WHERE system = ? AND "
                                 "object = ? AND record_id = ?", key).fetchone() for db in ("main", "s")]
            if None in rows:
                real.append(f"raw record {'/'.join(key)}: only in the {'clean' if rows[1] is None else 'storm'} store")
                continue
            (d1, m1, j1), (d2, m2, j2) = rows
            if (d1, m1) != (d2, m2) or (not d1 and json.loads(j1) != json.loads(j2)):
                one, two = json.loads(j1), json.loads(j2)
                fields = sorted(k for k in one.keys() | two.keys() if one.get(k) != two.get(k))
                real.append(f"raw record {'/'.join(key)}: clean deleted={d1} modified_at={m1}, storm deleted={d2} "
                            f"modified_at={m2}; data differs in {fields[:10]}")
        figures["records_differing"] = len(real)
        differences += real[:SHOWN] + ([f"... and {len(real) - SHOWN} more raw records"] if len(real) > SHOWN else [])

        cols = "email, salesforce_lead_id, salesforce_contact_id, hubspot_contact_id"
        a, b = _one_way(conn, cols, "people", "WHERE NOT deleted")
        figures["people"] = conn.execute("SELECT count(*) FROM people WHERE NOT deleted").fetchone()[0]
        figures["people_storm"] = conn.execute("SELECT count(*) FROM s.people WHERE NOT deleted").fetchone()[0]
        figures["people_differing"] = len(a) + len(b)
        for where, rows in (("clean", a), ("storm", b)):
            differences += [f"live person only in the {where} store: {r}" for r in rows[:SHOWN]]

        cols = "kind, system, object, record_id, field, json(value), task_key"
        a, b = _one_way(conn, cols, "writes")
        figures["writes_compared"] = conn.execute("SELECT count(*) FROM writes").fetchone()[0]
        figures["writes_storm"] = conn.execute("SELECT count(*) FROM s.writes").fetchone()[0]
        figures["writes_differing"] = len(a) + len(b)
        for where, rows in (("clean", a), ("storm", b)):
            differences += [f"write only in the {where} outbox: {r}" for r in rows[:SHOWN]]
        for db, where in (("main", "clean"), ("s", "storm")):
            states = dict(conn.execute(f"SELECT state, count(*) FROM {db}.writes GROUP BY state").fetchall())
            if set(states) - {"applied"}:
                rows = conn.execute(f"SELECT key, state, attempts, error FROM {db}.writes WHERE state != 'applied' "
                                    f"ORDER BY key LIMIT {SHOWN}").fetchall()
                differences.append(f"the {where} outbox has rows not applied: {states}; " +
                                   "; ".join(f"{k} {s} after {n} attempt(s): {str(e)[:300]}" for k, s, n, e in rows))
    finally:
        conn.close()
    return figures, differences


# -- comparing the worlds -----------------------------------------------------------------------

# Set by the CRM, not by what detente wrote: ids, timestamps, derived values.
SF_VOLATILE = {"Id", "CreatedDate", "LastModifiedDate", "SystemModstamp", "CreatedById", "LastModifiedById",
               "CompletedDateTime", "IsDeleted"}
HS_VOLATILE = {"hs_object_id", "hs_createdate", "hs_lastmodifieddate", "createdate", "lastmodifieddate",
               "hs_task_completion_date", "hs_updated_by_user_id", "hs_created_by_user_id"}


def world_state(path: Path) -> dict[str, Any]:
    """What detente wrote into a world: its fields per record, its tasks by key, and the
    sandbox's write log counted per (system, object, operation)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        fields: dict[str, dict[str, Any]] = {}
        for obj in ("Lead", "Contact"):
            names = [r["name"] for r in conn.execute(f'PRAGMA table_info("sf_{obj}")')
                     if r["name"].startswith("Detente_")]
            if not names:
                continue
            cols = ", ".join(f'"{n}"' for n in names)
            for r in conn.execute(f'SELECT "Id", {cols} FROM "sf_{obj}"'):
                values = {n: r[n] for n in names if r[n] not in (None, "")}
                if values:
                    fields[f"salesforce/{obj}/{r['Id']}"] = values
        for r in conn.execute("SELECT id, props FROM hs_contacts"):
            values = {k: v for k, v in json.loads(r["props"] or "{}").items()
                      if k.startswith("detente_") and v not in (None, "")}
            if values:
                fields[f"hubspot/contacts/{r['id']}"] = values
        tasks: dict[str, Any] = {}
        task_ids: dict[str, str] = {}
        for r in conn.execute('SELECT * FROM "sf_Task" WHERE "Detente_Key__c" IS NOT NULL AND NOT "IsDeleted"'):
            key = f"salesforce/{r['Detente_Key__c']}"
            if key in tasks:
                tasks[key]["_copies"] = tasks[key].get("_copies", 1) + 1
                continue
            tasks[key] = {k: v for k, v in dict(r).items() if k not in SF_VOLATILE and v is not None}
            task_ids[key] = r["Id"]
        hs_ids: dict[int, str] = {}
        for r in conn.execute("SELECT id, props FROM hs_tasks WHERE archived = 0"):
            props = json.loads(r["props"] or "{}")
            if not props.get("detente_key"):
                continue
            key = f"hubspot/{props['detente_key']}"
            if key in tasks:
                tasks[key]["_copies"] = tasks[key].get("_copies", 1) + 1
                continue
            tasks[key] = {k: v for k, v in props.items() if k not in HS_VOLATILE and v not in (None, "")}
            task_ids[key] = str(r["id"])
            hs_ids[int(r["id"])] = key
        for r in conn.execute("SELECT from_id, to_object, to_id FROM hs_assoc WHERE from_object = 'tasks'"):
            task_key = hs_ids.get(int(r["from_id"]))
            if task_key is not None:
                tasks[task_key].setdefault("_associated", []).append(f"{r['to_object']}/{r['to_id']}")
        for task in tasks.values():
            if "_associated" in task:
                task["_associated"] = sorted(task["_associated"])
        log = Counter(f"{r['system']} {r['object']} {r['op']}" for r in
                      conn.execute("SELECT system, object, op FROM write_log"))
    finally:
        conn.close()
    return {"fields": fields, "tasks": tasks, "task_ids": task_ids, "write_log": dict(sorted(log.items()))}


def compare_worlds(clean: dict[str, Any], storm: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    differences: list[str] = []
    for what in ("fields", "tasks"):
        a, b = clean[what], storm[what]
        keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        for k in keys[:SHOWN]:
            one, two = a.get(k), b.get(k)
            if one is None or two is None:
                differences.append(f"CRM {what} {k}: only in the {'clean' if two is None else 'storm'} world")
            else:
                names = sorted(n for n in one.keys() | two.keys() if one.get(n) != two.get(n))
                differences.append(f"CRM {what} {k}: " + "; ".join(
                    f"{n}: clean {str(one.get(n))[:120]!r}, storm {str(two.get(n))[:120]!r}" for n in names))
        if len(keys) > SHOWN:
            differences.append(f"... and {len(keys) - SHOWN} more CRM {what}")
    same_ids = sum(clean["task_ids"].get(k) == v for k, v in storm["task_ids"].items())
    figures = {
        "crm_records_with_detente_fields": len(clean["fields"]),
        "crm_tasks": len(clean["tasks"]),
        "crm_tasks_storm": len(storm["tasks"]),
        "crm_task_ids_same": same_ids,
        "write_log_clean": clean["write_log"],
        "write_log_storm": storm["write_log"],
    }
    return figures, differences


# -- the whole comparison ---------------------------------------------------------------------------


def storm(size: int, seed: int, workdir: Path, say: Say = print, *, as_of: datetime | None = None,
          profile: dict[str, Any] | None = None) -> dict[str, Any]:
    """Generate the world, run it clean and under the storm, compare; the figures, JSON-ready."""
    began = time.monotonic()
    as_of = (as_of or AS_OF).astimezone(UTC).replace(microsecond=0)
    now = as_of + timedelta(minutes=5)
    faults = {**STORM, "seed": seed, **(profile or {})}
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    clean_state, storm_state = workdir / "clean", workdir / "storm"
    for old in (clean_state, storm_state):  # a workdir used before starts over
        if old.exists():
            shutil.rmtree(old)
    for old in workdir.glob("*.db*"):
        if old.name.startswith(("clean.db", "storm.db")):
            old.unlink()

    say(f"generating a world of {size:,} people (seed {seed}, as of {as_of:%Y-%m-%d %H:%M} UTC)")
    server = Server(clean_state, size, seed, as_of, say, "generating")
    server.stop()
    generated = server.seconds
    say(f"  generated in {generated:.0f} s; copying it")
    shutil.copytree(clean_state, storm_state)

    runs: dict[str, dict[str, Any]] = {}
    for label, state, profile_ in (("clean", clean_state, None), ("storm", storm_state, faults)):
        say(f"{label} run" + (f": faults {json.dumps(profile_)}" if profile_ else ""))
        server = Server(state, size, seed, as_of, say, f"starting the {label} sandbox")
        try:
            runs[label] = run(label, server, workdir / f"{label}.db", now, profile_, say)
        finally:
            server.stop()
        runs[label]["peak_rss_sandbox_mb"] = server.peak_rss_mb
        r = runs[label]
        say(f"  {label}: {r['seconds']['total']:.1f} s, calls {r['calls']['total']}, "
            f"faults injected {r['faults_injected']}")

    say("comparing the stores and the worlds")
    t = time.monotonic()
    figures, differences = compare_stores(workdir / "clean.db", workdir / "storm.db")
    for label in ("clean", "storm"):
        r = runs[label]
        if r["pull_unfinished"]:
            differences.append(f"the {label} run's pull of {r['pull_unfinished']} did not finish in {PULL_ROUNDS} "
                               f"tries: {r['pull_problems'][-1]}")
        if r["still_pending"]:
            differences.append(f"the {label} run left {r['still_pending']} writes pending after {APPLY_ROUNDS} "
                               "apply rounds")
    clean_world, storm_world = (world_state(s / "world.sqlite3") for s in (clean_state, storm_state))
    world_figures, world_differences = compare_worlds(clean_world, storm_world)
    differences += world_differences
    compare_seconds = time.monotonic() - t

    clean, stormy = runs["clean"]["calls"]["total"], runs["storm"]["calls"]["total"]
    out: dict[str, Any] = {
        "size": size,
        "seed": seed,
        "as_of": as_of.isoformat(),
        **{k: figures[k] for k in ("people", "records_compared", "writes_compared")},
        "records_by_object": figures["records_by_object"],
        "faults": faults,
        "calls_clean": clean,
        "calls_storm": stormy,
        "ratio": {s: round(stormy[s] / clean[s], 3) if clean[s] else None for s in SYSTEMS},
        "ratio_total": round(sum(stormy.values()) / max(1, sum(clean.values())), 3),
        "calls_by_phase": {label: {p: runs[label]["calls"][p] for p in ("pull", "writeback")} for label in runs},
        "faults_injected": runs["storm"]["faults_injected"],
        "faults_injected_clean": runs["clean"]["faults_injected"],
        "pull_rounds": {label: runs[label]["pull_rounds"] for label in runs},
        "pull_problems": runs["storm"]["pull_problems"],
        "planned_writes": {label: runs[label]["planned"] for label in runs},
        "apply_rounds": runs["storm"]["apply_rounds"],
        "apply_rounds_clean": runs["clean"]["apply_rounds"],
        "apply": {label: runs[label]["apply"] for label in runs},
        "outbox": {label: runs[label]["outbox"] for label in runs},
        "findings": {label: runs[label]["findings"] for label in runs},
        "seconds_clean": round(runs["clean"]["seconds"]["total"], 1),
        "seconds_storm": round(runs["storm"]["seconds"]["total"], 1),
        "seconds_by_phase": {label: {k: round(v, 1) for k, v in runs[label]["seconds"].items()} for label in runs},
        "seconds_generate": round(generated, 1),
        "seconds_compare": round(compare_seconds, 1),
        "seconds": round(time.monotonic() - began, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_rss_sandbox_mb": {label: round(runs[label]["peak_rss_sandbox_mb"], 1) for label in runs},
        **world_figures,
        "identical": not differences,
        "differences": differences,
    }
    return out


def report(f: dict[str, Any], say: Say = print) -> None:
    say("")
    say(f"fault storm: {f['size']:,} people (seed {f['seed']}), {f['people']:,} live people in the store")
    say(f"  compared: {f['records_compared']:,} raw records, {f['people']:,} people, {f['writes_compared']:,} outbox "
        f"rows, {f['crm_records_with_detente_fields']:,} CRM records with detente fields, {f['crm_tasks']:,} "
        f"detente tasks ({f['crm_task_ids_same']:,} with the same CRM id in both worlds)")
    say(f"  {'calls':10} {'clean':>9} {'storm':>9} {'ratio':>7}   (pull / write-back, clean -> storm)")
    for s in SYSTEMS:
        phases = f["calls_by_phase"]
        say(f"  {s:10} {f['calls_clean'][s]:9,} {f['calls_storm'][s]:9,} {f['ratio'][s] or 0:7.2f}   "
            f"({phases['clean']['pull'][s]:,} / {phases['clean']['writeback'][s]:,} -> "
            f"{phases['storm']['pull'][s]:,} / {phases['storm']['writeback'][s]:,})")
    say(f"  {'total':10} {sum(f['calls_clean'].values()):9,} {sum(f['calls_storm'].values()):9,} "
        f"{f['ratio_total']:7.2f}")
    for s in SYSTEMS:
        injected = f["faults_injected"][s]
        say(f"  faults injected, {s}: {sum(injected.values()):,} "
            f"({', '.join(f'{k} {v:,}' for k, v in injected.items()) or 'none'})")
    every = f["faults"].get("expire_session_every")
    if every and not f["faults_injected"]["salesforce"].get("expired_session"):
        say(f"  (no Salesforce session expired: its server saw {f['calls_storm']['salesforce']:,} calls, fewer than "
            f"the {every:,} between expiries)")
    say(f"  pulls per system: clean {f['pull_rounds']['clean']}, storm {f['pull_rounds']['storm']}")
    say(f"  writes planned: clean {f['planned_writes']['clean']:,}, storm {f['planned_writes']['storm']:,}; "
        f"apply rounds: clean {f['apply_rounds_clean']}, storm {f['apply_rounds']}")
    for label in ("clean", "storm"):
        say(f"    {label}: " + "; ".join(
            f"round {n}: sent {r['sent']:,} " + ", ".join(f"{k} {v:,}" for k, v in r.items() if k != "sent")
            for n, r in enumerate(f["apply"][label], 1)))
    say(f"  sandbox write log, clean: {f['write_log_clean']}")
    say(f"  sandbox write log, storm: {f['write_log_storm']}")
    for label in ("clean", "storm"):
        say(f"  wall {label}: {f[f'seconds_{label}']:.1f} s ({f['seconds_by_phase'][label]})")
    say(f"  generating the world {f['seconds_generate']:.0f} s, comparing {f['seconds_compare']:.1f} s, "
        f"whole bench {f['seconds']:.0f} s")
    say(f"  peak RSS: this process {f['peak_rss_mb']:.0f} MB, the sandbox "
        f"(its own process) clean {f['peak_rss_sandbox_mb']['clean']:.0f} MB, storm "
        f"{f['peak_rss_sandbox_mb']['storm']:.0f} MB")
    say(f"  identical: {'yes' if f['identical'] else 'NO'}")
    for d in f["differences"]:
        say(f"    {d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000, help="people in the sandbox world")
    parser.add_argument("--seed", type=int, default=1, help="the world's seed and the faults' seed")
    parser.add_argument("--as-of", help=f"the world's anchor moment (default {AS_OF:%Y-%m-%dT%H:%MZ})")
    parser.add_argument("--workdir", type=Path, help="where the worlds and stores go (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (printed)")
    parser.add_argument("--fault", action="append", default=[], metavar="NAME=VALUE",
                        help="change one field of the storm's fault profile, e.g. expire_session_every=10 "
                             "(detente.sandbox.control.FaultProfile; repeatable)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import yaml

    from detente.logs import configure_logging
    from detente.sandbox.store import parse_datetime

    configure_logging("warning")
    as_of = parse_datetime(args.as_of) if args.as_of else None
    profile: dict[str, Any] = {}
    for item in args.fault:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--fault {item}: expected NAME=VALUE")
        profile[name.strip()] = yaml.safe_load(value)

    def say(line: str) -> None:
        print(line, flush=True)

    if args.workdir is not None:
        figures = storm(args.size, args.seed, args.workdir, say, as_of=as_of, profile=profile)
    else:
        tmp = tempfile.mkdtemp(prefix="detente-bench-storm-")
        try:
            figures = storm(args.size, args.seed, Path(tmp), say, as_of=as_of, profile=profile)
        finally:
            if args.keep:
                say(f"kept {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)
    report(figures, say)
    print(json.dumps(figures, default=str))
    sys.exit(0 if figures["identical"] else 1)


if __name__ == "__main__":
    main()
