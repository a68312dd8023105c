"""The crash harness: ``detente run`` killed with SIGKILL at seeded random moments while it
pulls, audits and writes back a sandbox world that keeps changing, restarted after every
kill, and at the end checked against the sandbox:

- the store holds exactly what a clean pull of the final world holds (every record, its
  modification time, deleted or not, and its data), and the people built from it;
- every write detente planned was applied, the CRM holds the last value written to each
  field, and the sandbox's write log shows nothing detente did not plan: each planned value
  sent at least once and no more often than it was attempted (a write whose answer a kill
  lost is sent again, as it must be);
- every task detente made exists once in its CRM (created once in the write log).

One to three daemons share the store (two show leadership handed over on each kill of the
leader). Some restarts arm a write-back failpoint (``DETENTE_FAILPOINT``), so that the daemon
dies inside a send (before, between batches, after the CRM answered, halfway through
recording). The moments, the victims, the failpoints and the changes come from ``seed``;
where in the work each kill lands depends on the machine's speed, and is reported.

Used by ``tests/daemon/test_crash.py`` (short form) and ``bench/reliability.py`` (50 kills and more).
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, select, text

from detente.sandbox.schema import SALESFORCE_OBJECTS
from detente.sandbox.server import Sandbox
from detente.store.engine import create_schema, make_engine
from detente.writeback.failpoints import ENV as FAILPOINT_ENV
from detente.writeback.failpoints import POINTS
from detente.writeback.plan import WRITES
from tests.daemon.support import RULES, Daemon, write_settings

LEAD = SALESFORCE_OBJECTS["Lead"]
FREE_DOMAINS = ("gmail.com", "yahoo.com")
TASK_OBJECTS = {("salesforce", "Task"), ("hubspot", "tasks")}
TASK_KEY = {"salesforce": "Detente_Key__c", "hubspot": "detente_key"}


@dataclass
class CrashReport:
    backend: str
    daemons: int
    seed: int
    size: int
    kills: int = 0  # SIGKILLs the harness sent
    failpoint_kills: int = 0  # daemons that died at an armed write-back failpoint
    restarts: int = 0
    running_at_kill: Counter[str] = field(default_factory=Counter)  # the store's runs left running, by kind
    changes: int = 0  # edits the harness made in the CRMs between kills
    records_compared: int = 0
    people_compared: int = 0
    writes_checked: int = 0  # outbox rows: applied, value held by the CRM
    log_entries_checked: int = 0  # write-log entries to detente's fields and tasks, matched to the outbox
    tasks_checked: int = 0
    interrupted: int = 0  # runs a killed daemon left, marked interrupted by the next leader
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def survived(self) -> int:
        return self.kills + self.failpoint_kills


# -- the world changing between kills ---------------------------------------------------------------


class Churn:
    """Seeded edits made straight in the sandbox's world, as users of both CRMs would make them:
    scores raised and lowered, leads handed to sales, new leads, a lead deleted, names edited."""

    def __init__(self, sb: Sandbox, rng: random.Random) -> None:
        self.sb, self.rng = sb, rng
        users = sb.world.query('SELECT "Id", "Department" FROM "sf_User" WHERE "IsActive"')
        self.marketing = [u["Id"] for u in users if u["Department"] == "Marketing"]
        self.sales = [u["Id"] for u in users if u["Department"] == "Sales"]
        self.sources = sorted({r[0] for r in sb.world.tuples(
            'SELECT DISTINCT "LeadSource" FROM "sf_Lead" WHERE "LeadSource" IS NOT NULL')}) or ["Web"]
        self.made = 0

    def _leads(self) -> list[str]:
        return [r[0] for r in self.sb.world.tuples(
            'SELECT "Id" FROM "sf_Lead" WHERE NOT "IsDeleted" AND NOT "IsConverted" ORDER BY "Id"')]

    def _contacts(self) -> list[int]:
        return [r[0] for r in self.sb.world.tuples("SELECT id FROM hs_contacts WHERE NOT archived ORDER BY id")]

    def round(self) -> int:
        """One round of edits; the number made."""
        rng, world, now = self.rng, self.sb.world, datetime.now(UTC)
        leads, contacts, edits = self._leads(), self._contacts(), 0
        for lead in rng.sample(leads, min(4, len(leads))):
            score = rng.choice((20, 45, 55, 80))
            world.sf_update(LEAD, lead, {"Lead_Score__c": score}, now, rng.choice(self.marketing))
            edits += 1
        if self.sales and leads:
            world.sf_update(LEAD, rng.choice(leads), {"OwnerId": rng.choice(self.sales)}, now, rng.choice(self.sales))
            edits += 1
        self.made += 1
        domain = rng.choice(("acme.example", "globex.example", *FREE_DOMAINS))
        world.sf_insert(LEAD, [{
            "LastName": f"Crash{self.made}", "Company": "Harness Ltd", "Email": f"crash{self.made}@{domain}",
            "Status": "Open - Not Contacted", "LeadSource": rng.choice(self.sources),
            "Lead_Score__c": rng.choice((10, 60, 90)), "OwnerId": rng.choice(self.marketing),
        }], now, rng.choice(self.marketing))
        edits += 1
        for contact in rng.sample(contacts, min(2, len(contacts))):
            world.hs_update("contacts", contact, {"firstname": f"Renamed{rng.randrange(10**6)}"}, now, "CRM_UI")
            edits += 1
        if leads and rng.random() < 0.3:
            world.sf_delete(LEAD, rng.choice(leads), now)
            edits += 1
        return edits


# -- the harness ------------------------------------------------------------------------------------


class Harness:
    def __init__(self, workdir: Path, store_url: str, *, seed: int, size: int, daemons: int,
                 failpoint_share: float, say: Callable[[str], None]) -> None:
        self.workdir, self.store_url, self.say = workdir, store_url, say
        self.rng = random.Random(seed)
        self.failpoint_share = failpoint_share
        backend = "postgresql" if store_url.startswith("postgresql") else "sqlite"
        self.report = CrashReport(backend=backend, daemons=daemons, seed=seed, size=size)
        as_of = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        self.sb = Sandbox(state_dir=workdir / "sandbox", dataset="demo", size=size, seed=seed, as_of=as_of)
        self.sb.start()
        self.rules = workdir / "rules.yaml"
        shutil.copy(RULES, self.rules)
        self.engine = make_engine(store_url)
        self.configs = [self._config(i) for i in range(daemons)]
        self.slots: list[Daemon | None] = [None] * daemons
        self.started = 0
        self.churn = Churn(self.sb, self.rng)

    def _config(self, i: int) -> Path:
        path = write_settings(self.sb, self.workdir / f"daemon-{i}.yaml", self.store_url, self.rules,
                              pull_seconds=1, audit_seconds=1, writeback_seconds=1, shutdown_seconds=5)
        data = yaml.safe_load(path.read_text())
        for system in ("salesforce", "hubspot"):
            data[system]["deletes_every_seconds"] = 3
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    # -- processes ----------------------------------------------------------------------------------

    def _spawn(self, slot: int, failpoint: str | None = None) -> Daemon:
        self.started += 1
        env = {FAILPOINT_ENV: failpoint} if failpoint else None
        daemon = Daemon(self.configs[slot], self.workdir / f"daemon-{self.started}.log", extra_env=env)
        self.slots[slot] = daemon
        return daemon

    def _leader(self) -> int | None:
        """The slot of the daemon that holds the store's lock (the one whose jobs have run)."""
        for i, d in enumerate(self.slots):
            if d is not None and d.proc.poll() is None and d.log_path.exists() \
                    and "leadership.acquired" in d.log_path.read_text(errors="replace"):
                return i
        return None

    def _running_runs(self, pid: int) -> list[str]:
        """The runs process ``pid`` has under way, as the store says."""
        with self.engine.connect() as conn:
            return [f"{kind}-{system}" if system else kind for kind, system in conn.execute(text(
                "SELECT kind, system FROM runs WHERE outcome = 'running' AND pid = :pid"), {"pid": pid})]

    def _wait_for_leader(self, timeout: float = 60) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self._leader()
            if leader is not None:
                return leader
            if all(d is None or d.proc.poll() is not None for d in self.slots):
                return None  # every daemon died (an armed failpoint) before it led
            time.sleep(0.05)
        raise AssertionError("no daemon took the lead within a minute:\n" + "\n".join(
            d.tail() for d in self.slots if d is not None))

    # -- the run ------------------------------------------------------------------------------------

    def run(self, kills: int) -> CrashReport:
        began = time.monotonic()
        r = self.report
        create_schema(self.engine)
        for slot in range(len(self.slots)):
            self._spawn(slot)
        while r.kills + r.failpoint_kills < kills:
            r.changes += self.churn.round()
            self._wait_for_leader()
            time.sleep(self.rng.uniform(0.2, 3.5))
            leader = self._leader()
            if len(self.slots) > 1 and (leader is None or self.rng.random() < 0.2):
                victim = self.rng.randrange(len(self.slots))
            else:
                victim = leader if leader is not None else 0
            for slot, daemon in enumerate(self.slots):  # failpoint deaths, whoever they were
                if daemon is not None and daemon.proc.poll() is not None and slot != victim:
                    r.failpoint_kills += daemon.proc.returncode == -signal.SIGKILL
                    self._restart(slot)
            daemon = self.slots[victim]
            assert daemon is not None
            if daemon.proc.poll() is None:
                r.running_at_kill.update(self._running_runs(daemon.proc.pid) or ["idle"])
                daemon.proc.send_signal(signal.SIGKILL)
                daemon.proc.wait(10)
                r.kills += 1
            else:
                r.failpoint_kills += daemon.proc.returncode == -signal.SIGKILL
            self._restart(victim)
            self.say(f"kill {r.kills + r.failpoint_kills}/{kills}: slot {victim} "
                     f"({'leader' if victim == leader else 'standby'}); running: {dict(r.running_at_kill)}")
        self._finish()
        r.seconds = time.monotonic() - began
        return r

    def _restart(self, slot: int) -> None:
        old = self.slots[slot]
        if old is not None:
            old.kill()
        armed = self.rng.choice(POINTS) if self.rng.random() < self.failpoint_share else None
        self._spawn(slot, armed)
        self.report.restarts += 1

    def _finish(self) -> None:
        """Unarmed daemons run until the store has caught up with the CRMs and nothing is left
        to write; then they stop (SIGTERM) and the checks run."""
        for slot, daemon in enumerate(self.slots):
            if daemon is not None:
                if daemon.proc.poll() is not None:
                    self.report.failpoint_kills += daemon.proc.returncode == -signal.SIGKILL
                daemon.kill()
                self._spawn(slot)
        settled_at = datetime.now(UTC).replace(tzinfo=None)
        deadline = time.monotonic() + 240
        while not self._settled(settled_at):
            if time.monotonic() > deadline:
                raise AssertionError("the daemons did not settle within 4 minutes:\n" + "\n".join(
                    d.tail() for d in self.slots if d is not None))
            time.sleep(0.5)
        for daemon in self.slots:
            if daemon is not None and daemon.proc.poll() is None:
                code, _ = daemon.stop(30)
                if code != 0:
                    self.report.problems.append(f"a daemon exited {code} on SIGTERM:\n{daemon.tail()}")
                daemon.kill()

    def _settled(self, since: datetime) -> bool:
        """Nothing in flight; after the last write applied, both CRMs were pulled, then audited,
        then written back with nothing new to send."""
        with self.engine.connect() as conn:
            in_flight = conn.execute(text("SELECT count(*) FROM writes WHERE state IN ('planned', 'sent')")).scalar()
            last_write = conn.execute(text("SELECT max(applied_at) FROM writes")).scalar()
            runs = [dict(m._mapping) for m in conn.execute(text(
                "SELECT kind, system, started_at, ended_at, outcome FROM runs WHERE outcome <> 'running' "
                "ORDER BY id"))]
        if in_flight:
            return False
        mark = max(since, _naive(last_write) or since)

        def first(kind: str, after: datetime, system: str | None = None) -> dict[str, Any] | None:
            return next((run for run in runs if run["kind"] == kind and run["outcome"] == "ok"
                         and (system is None or run["system"] == system) and _naive(run["started_at"]) > after), None)

        pulls = [first("pull", mark, system) for system in ("salesforce", "hubspot")]
        if not all(pulls):
            return False
        pulled = max(_naive(p["ended_at"]) for p in pulls if p)
        audit = first("audit", pulled)
        return audit is not None and first("writeback", _naive(audit["ended_at"])) is not None

    # -- the checks ---------------------------------------------------------------------------------

    def check(self) -> CrashReport:
        self._check_store()
        self._check_writes()
        self._check_runs()
        return self.report

    def _check_runs(self) -> None:
        """No run is left ``running``: each one a kill cut short is marked interrupted."""
        with self.engine.connect() as conn:
            outcomes = Counter(dict(conn.execute(text("SELECT outcome, count(*) FROM runs GROUP BY outcome")).all()))
        self.report.interrupted = outcomes["interrupted"]
        if outcomes["running"]:
            self.report.problems.append(f"{outcomes['running']} runs still marked running after the daemons stopped")
        if outcomes["failed"]:
            self.report.problems.append(f"{outcomes['failed']} runs failed")

    def _check_store(self) -> None:
        """The store holds what a clean pull of the final world holds."""
        from detente.normalize.run import normalize
        from detente.sync import sync
        from tests.normalize.support import settings_for

        clean = make_engine(f"sqlite:///{self.workdir / 'clean.db'}")
        try:
            create_schema(clean)
            now = datetime.now(UTC)
            sync(clean, settings_for(self.sb), now=now)
            normalize(clean, now=now)
            got, want = _contents(self.engine), _contents(clean)
        finally:
            clean.dispose()
        r = self.report
        r.records_compared = len(want[0])
        r.people_compared = len(want[1])
        a, b = got[0], want[0]
        missing, extra = sorted(set(b) - set(a)), sorted(set(a) - set(b))
        differ = sorted(k for k in set(a) & set(b) if a[k] != b[k])
        if missing or extra or differ:
            r.problems.append(f"records: {len(missing)} missing (e.g. {missing[:3]}), {len(extra)} extra "
                              f"(e.g. {extra[:3]}), {len(differ)} differ "
                              f"(e.g. {[(k, a[k], b[k]) for k in differ[:2]]})")
        if got[1] != want[1]:
            r.problems.append(f"people: {sorted(set(got[1]) ^ set(want[1]))[:5]} differ from a clean pull's")
        if got[2] != want[2]:
            r.problems.append(f"{got[2]} links of people to records != a clean pull's {want[2]}")

    def _check_writes(self) -> None:
        r = self.report
        with self.engine.connect() as conn:  # through the table's types: JSON values decoded on either store
            rows = [dict(m._mapping) for m in conn.execute(select(WRITES).order_by(WRITES.c.planned_at, WRITES.c.key))]
        states = Counter(w["state"] for w in rows)
        if set(states) - {"applied", "skipped"}:
            stuck = [f"{w['key']} {w['state']} {w['error']}" for w in rows if w["state"] not in ("applied", "skipped")]
            r.problems.append(f"outbox rows not applied: {dict(states)}: " + "; ".join(stuck)[:2000])
        applied = [w for w in rows if w["state"] == "applied"]
        world = self.sb.world
        # Each field holds the last value written to it (unless its record was deleted since).
        last: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        for w in sorted((w for w in applied if w["kind"] == "field"), key=lambda w: _naive(w["applied_at"])):
            last[(w["system"], w["object"], w["record_id"], w["field"])] = w
        for (system, obj, rid, name), w in last.items():
            if system == "salesforce":
                record = world.sf_get(SALESFORCE_OBJECTS[obj], rid)
            else:
                contact = world.hs_get(obj, int(rid))
                record = None if contact is None else contact["properties"]
            if record is None:  # deleted since
                continue
            held = record.get(name)
            if not _holds(held, w["value"]):
                r.problems.append(f"{w['key']}: the CRM holds {held!r}, detente applied {w['value']!r}")
        r.writes_checked = len(applied)
        # The write log: every write to detente's fields was planned; each planned value sent
        # at least once per row applied and at most once per attempt.
        sent: Counter[tuple[str, str, str, str]] = Counter()
        task_creates: Counter[tuple[str, str]] = Counter()
        task_ids: dict[tuple[str, str], str] = {}
        for entry in world.writes():
            system, obj, fields = entry["system"], entry["object"], entry["fields"] or {}
            if (system, obj) in TASK_OBJECTS:
                key = fields.get(TASK_KEY[system])
                if entry["op"] in ("insert", "create") and key:
                    task_creates[(system, key)] += 1
                    task_ids[(system, entry["record_id"])] = key
                    r.log_entries_checked += 1
                continue
            for name, value in fields.items():
                if name.lower().startswith("detente_"):
                    sent[(system, entry["record_id"], name, _canon(value))] += 1
                    r.log_entries_checked += 1
        planned: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
        for w in rows:
            if w["kind"] == "field" and w["attempts"]:
                planned.setdefault((w["system"], w["record_id"], w["field"], _canon(w["value"])), []).append(w)
        for k, n in sent.items():
            mine = planned.get(k, [])
            attempts = sum(w["attempts"] for w in mine)
            landed = sum(w["state"] == "applied" for w in mine)
            if not landed <= n <= attempts:
                shown = [(w["key"], w["state"], w["attempts"]) for w in mine]
                r.problems.append(f"{k}: sent {n} times; planned rows {shown}")
        for k, mine in planned.items():
            if k not in sent and any(w["state"] == "applied" for w in mine):
                r.problems.append(f"{k}: applied in the outbox, never sent to the CRM")
        live = Counter(("salesforce", t[0]) for t in world.tuples(
            'SELECT "Detente_Key__c" FROM "sf_Task" WHERE "Detente_Key__c" IS NOT NULL AND NOT "IsDeleted"'))
        for (props,) in world.tuples("SELECT props FROM hs_tasks WHERE NOT archived"):
            if '"detente_key"' in props:
                key = json.loads(props).get("detente_key")
                if key:
                    live[("hubspot", key)] += 1
        tasks = {(w["system"], w["task_key"]) for w in applied if w["kind"] == "task"}
        twice = [k for k, n in task_creates.items() if n > 1]
        if twice:
            r.problems.append(f"tasks created more than once: {twice[:5]}")
        if tasks - set(task_creates):
            r.problems.append(f"tasks applied in the outbox but never created: {sorted(tasks - set(task_creates))[:5]}")
        # A task created whose row is not applied: its answer was lost to a kill, and the lead it
        # was about was deleted (with its tasks) before the send again; it must not be left live.
        stray = [k for k in set(task_creates) - tasks if live[k]]
        if stray:
            r.problems.append(f"tasks live in the CRM that the outbox does not show applied: {stray[:5]}")
        if any(n > 1 for n in live.values()):
            r.problems.append(f"tasks that exist twice: {[k for k, n in live.items() if n > 1][:5]}")
        r.tasks_checked = sum(live.values())

    def close(self) -> None:
        for daemon in self.slots:
            if daemon is not None:
                daemon.kill()
        self.engine.dispose()
        self.sb.stop()


def _naive(value: Any) -> Any:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime) and value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _value(value: Any) -> Any:
    """A JSON column read as text (SQLite through plain SQL) decoded; anything else as it is."""
    return json.loads(value) if isinstance(value, str) else value


def _canon(value: Any) -> str:
    """A written value as both CRMs keep it: numbers as numbers, instants to the second."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return repr(float(value))
    text_value = str(value)
    try:
        return repr(float(text_value))
    except ValueError:
        pass
    if len(text_value) >= 19 and text_value[4] == "-" and text_value[10] in "T ":
        return text_value[:19].replace(" ", "T")
    return text_value


def _holds(got: Any, want: Any) -> bool:
    return _canon(got) == _canon(want)


def _contents(engine: Engine) -> tuple[dict[tuple[str, str, str], tuple[Any, ...]], list[tuple[str, ...]], int]:
    with engine.connect() as conn:
        # A deleted or merged-away record is compared by that fact (and the survivor): its last
        # contents and time are what detente saw last, or what the first read of it found.
        raw = {(r.system, r.object, r.record_id): (True, None, r.merged_into, None) if r.deleted else
               (False, _naive(r.modified_at), r.merged_into, _value(r.data))
               for r in conn.execute(text("SELECT system, object, record_id, deleted, modified_at, merged_into, "
                                          "data FROM raw_records"))}
        # People by the records they are made of (their ids differ from store to store); a
        # person whose every record was deleted stays as a deleted row where it had been seen.
        people = sorted(tuple(str(v) for v in r) for r in conn.execute(text(
            "SELECT email, salesforce_lead_id, salesforce_contact_id, hubspot_contact_id FROM people "
            "WHERE NOT deleted")))
        links = conn.execute(text("SELECT count(*) FROM person_records")).scalar_one()
    return raw, people, int(links)


def crash_run(workdir: Path, store_url: str, *, kills: int, seed: int, size: int = 100, daemons: int = 1,
              failpoint_share: float = 0.25, say: Callable[[str], None] = lambda _: None) -> CrashReport:
    """Run the harness and its checks; the report lists any problem found."""
    harness = Harness(workdir, store_url, seed=seed, size=size, daemons=daemons,
                      failpoint_share=failpoint_share, say=say)
    try:
        harness.run(kills)
        return harness.check()
    finally:
        harness.close()
