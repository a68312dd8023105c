"""What writing back costs in API calls: write calls per 10,000 changed fields against the
fewest the CRMs' batch APIs allow (Salesforce sObject Collections, 200 records per call;
HubSpot batch, 100 per call), with wall time and peak memory.

A sandbox world (``detente sandbox``, its own process) provides live Salesforce leads and
HubSpot contacts. Three measurements, each in a child process (so the peak resident memory
reported is the sender's own), each counting calls twice: by the writers' own counters and by
the sandbox's ``/__sandbox/stats`` (difference before and after):

- fields, direct: one ``Op`` per field (Detente_Status__c and Detente_Reason__c on leads,
  detente_status and detente_reason on contacts), sent by ``SalesforceWriter.send`` and
  ``HubSpotWriter.send``; the writers merge the fields of each record into one wire record;
- fields, outbox: the same field writes (other values) as planned rows of a fresh SQLite
  store's ``writes`` table, sent by ``apply_writes``;
- tasks: task upserts by their detente key (Salesforce Task on a lead, owned by the lead's
  owner; HubSpot task associated with a contact), then the same tasks sent again, which must
  update them, not make new ones.

The minimum is ceil(records / batch) per system; logins are counted but left out of it.

    python bench/writeback.py
    python bench/writeback.py --records 4000 --size 10000
    python bench/writeback.py --attach /tmp/sandbox.yaml   # a sandbox already running
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from normalize import peak_rss_mb

SF_OBJECT, HS_OBJECT = "Lead", "contacts"
SF_FIELDS = ("Detente_Status__c", "Detente_Reason__c")
HS_FIELDS = ("detente_status", "detente_reason")
STATUSES = ("Aligned", "Drift", "Missed Label", "Disagreement", "SLA Running", "SLA Breached", "Feedback Gap")
BATCH = {"salesforce": 200, "hubspot": 100}
TARGET = 1.05


# -- the sandbox ------------------------------------------------------------------------------


def start_sandbox(size: int, seed: int, state: Path) -> tuple[subprocess.Popen[str], Path, float]:
    config = state / "sandbox.yaml"
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "detente", "sandbox", "--size", str(size), "--seed", str(seed),
         "--state-dir", str(state / "world"), "--write-config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert proc.stdout is not None
    if not proc.stdout.readline():
        proc.wait(timeout=60)
        raise SystemExit("the sandbox did not start")
    deadline = time.monotonic() + 30
    while not config.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc, config, time.monotonic() - started


class Stats:
    """The sandbox's call counters (its control endpoints are not counted themselves)."""

    def __init__(self, settings: Any) -> None:
        self.session = requests.Session()
        self.session.trust_env = False
        ca = settings.salesforce.ca_file or settings.hubspot.ca_file
        self.session.verify = str(ca) if ca else True
        self.bases = {"salesforce": str(settings.salesforce.instance_url).rstrip("/"),
                      "hubspot": settings.hubspot.base_url.rstrip("/")}

    def get(self) -> dict[str, dict[str, Any]]:
        out = {}
        for system, base in self.bases.items():
            answer = self.session.get(f"{base}/__sandbox/stats", timeout=30)
            answer.raise_for_status()
            out[system] = answer.json()
        return out

    @staticmethod
    def calls(before: dict[str, Any], after: dict[str, Any]) -> tuple[int, dict[str, int]]:
        """Calls between two snapshots of one system: the total and per route."""
        routes = Counter(after["calls"])
        routes.subtract(before["calls"])
        return after["total_calls"] - before["total_calls"], {k: v for k, v in sorted(routes.items()) if v}


# -- choosing the records (in the parent, before any measurement) -------------------------------


def pick_records(config: Path, records: int, tasks: int) -> dict[str, Any]:
    """Live unconverted leads with an active owner, live contacts (with their owner when it is
    active), and the calls it took to find them."""
    from detente.logs import configure_logging
    from detente.settings import load_settings
    from detente.writeback.send import HubSpotWriter, SalesforceWriter

    configure_logging("warning", json=True)
    settings = load_settings(config)
    sf_writer, hs_writer = SalesforceWriter(settings.salesforce), HubSpotWriter(settings.hubspot)
    try:
        sf = sf_writer.connector.connect()
        users = {r["Id"] for r in sf.query_all("SELECT Id FROM User WHERE IsActive = true")["records"]}
        leads = [(r["Id"], r["OwnerId"]) for r in sf.query_all(
            f"SELECT Id, OwnerId FROM {SF_OBJECT} WHERE IsConverted = false ORDER BY Id")["records"]
            if r["OwnerId"] in users]
        owners: set[str] = set()
        after: str | None = None
        while True:
            page = hs_writer.http.owners(after=after, archived=False)
            owners |= {str(o["id"]) for o in page.get("results") or []}
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                break
        contacts: list[tuple[str, str | None]] = []
        after = None
        while len(contacts) < max(records, tasks):
            params: dict[str, Any] = {"limit": 100, "properties": ["hubspot_owner_id"]}
            if after:
                params["after"] = after
            page = hs_writer.http.list_page(HS_OBJECT, **params)
            for c in page.get("results") or []:
                owner = (c.get("properties") or {}).get("hubspot_owner_id")
                contacts.append((str(c["id"]), owner if owner in owners else None))
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                break
        found = {"salesforce": sf_writer.calls, "salesforce_logins": sf_writer.connector.logins,
                 "hubspot": hs_writer.calls}
    finally:
        sf_writer.close()
        hs_writer.close()
    if len(leads) < max(records, tasks) or len(contacts) < max(records, tasks):
        raise SystemExit(f"the world has {len(leads)} usable leads and {len(contacts)} contacts; "
                         f"{max(records, tasks)} of each are needed (raise --size)")
    return {"leads": leads[:max(records, tasks)], "contacts": contacts[:max(records, tasks)], "setup_calls": found}


# -- the writes -------------------------------------------------------------------------------


def field_values(records: dict[str, Any], n: int, variant: int) -> list[tuple[str, str, str, str, str]]:
    """(system, object, record id, field, value) per field write, field by field, so that the
    writes to one record are far apart in the list and the writers must merge them."""
    out = []
    for system, obj, fields, ids in (("salesforce", SF_OBJECT, SF_FIELDS, [i for i, _ in records["leads"][:n]]),
                                     ("hubspot", HS_OBJECT, HS_FIELDS, [i for i, _ in records["contacts"][:n]])):
        status, reason = fields
        for k, rid in enumerate(ids):
            out.append((system, obj, rid, status, STATUSES[(k + variant) % len(STATUSES)]))
        for k, rid in enumerate(ids):
            out.append((system, obj, rid, reason, f"bench {variant}: write {k}, SLA clock started "
                                                  f"{datetime(2026, 1, 1, tzinfo=UTC):%Y-%m-%d}, owner not told"))
    return out


def field_ops(values: list[tuple[str, str, str, str, str]], variant: int) -> dict[str, list[Any]]:
    from detente.writeback.send import Op

    ops: dict[str, list[Any]] = {"salesforce": [], "hubspot": []}
    for system, obj, rid, name, value in values:
        ops[system].append(Op(f"field|{system}|{obj}|{rid}|{name}|{variant}", system, obj, {name: value},
                              record_id=rid))
    return ops


def outbox_rows(values: list[tuple[str, str, str, str, str]], now: datetime) -> list[dict[str, Any]]:
    """The outbox rows ``plan_writes`` would make for these field writes."""
    from detente.writeback.desired import digest

    return [{"key": f"field|{system}|{obj}|{rid}|{name}|{digest(value)}", "kind": "field", "system": system,
             "object": obj, "record_id": rid, "field": name, "value": value, "previous": None, "task_key": None,
             "payload": {name: value}, "reason": "bench", "finding_key": None, "state": "planned", "attempts": 0,
             "error": None, "planned_at": now, "sent_at": None, "applied_at": None}
            for system, obj, rid, name, value in values]


def task_ops(records: dict[str, Any], n: int, run: str) -> dict[str, list[Any]]:
    from detente.writeback.send import Op

    due = datetime(2026, 12, 1, 17, tzinfo=UTC)
    sf, hs = [], []
    for k, (lead, owner) in enumerate(records["leads"][:n]):
        key = f"bench-{run}|sf|{k}"
        sf.append(Op(f"task|{key}", "salesforce", "Task", {
            "Subject": f"Follow up on lead {lead}", "Description": "The first-contact SLA is running (bench).",
            "ActivityDate": (due + timedelta(days=k % 5)).date().isoformat(), "Priority": "Normal",
            "Status": "Not Started", "OwnerId": owner, "WhoId": lead,
        }, upsert_key=("Detente_Key__c", key)))
    for k, (contact, owner) in enumerate(records["contacts"][:n]):
        key = f"bench-{run}|hs|{k}"
        fields: dict[str, Any] = {
            "hs_task_subject": f"Follow up on contact {contact}", "hs_task_body": "The MQL SLA is running (bench).",
            "hs_timestamp": (due + timedelta(days=k % 5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "hs_task_priority": "MEDIUM", "hs_task_status": "NOT_STARTED", "hs_task_type": "TODO",
        }
        if owner:
            fields["hubspot_owner_id"] = owner
        hs.append(Op(f"task|{key}", "hubspot", "tasks", fields, upsert_key=("detente_key", key),
                     associate_with=(HS_OBJECT, contact)))
    return {"salesforce": sf, "hubspot": hs}


# -- one measured scenario, in its own process -------------------------------------------------


def outcome_summary(outcomes: list[Any]) -> dict[str, Any]:
    failed = [o for o in outcomes if not o.ok]
    return {"ok": len(outcomes) - len(failed), "failed": len(failed), "created": sum(o.created for o in outcomes),
            "errors": sorted({str(o.error)[:200] for o in failed})[:3]}


class Session:
    """Both writers, logged in, and the sandbox's counters."""

    def __init__(self, config: Path) -> None:
        from detente.settings import load_settings
        from detente.writeback.send import HubSpotWriter, SalesforceWriter

        self.settings = load_settings(config)
        self.sf = SalesforceWriter(self.settings.salesforce)
        self.writers: dict[str, SalesforceWriter | HubSpotWriter] = {
            "salesforce": self.sf, "hubspot": HubSpotWriter(self.settings.hubspot)}
        self.stats = Stats(self.settings)
        self.sf.connect()  # the login, counted apart from the writes
        self.login_calls = {s: w.calls for s, w in self.writers.items()}

    def snapshot(self) -> dict[str, Any]:
        return {"stats": self.stats.get(), "writer": {s: w.calls for s, w in self.writers.items()},
                "logins": self.sf.connector.logins}

    def calls(self, before: dict[str, Any], after: dict[str, Any], system: str) -> dict[str, Any]:
        sandbox, routes = Stats.calls(before["stats"][system], after["stats"][system])
        logins = after["logins"] - before["logins"] if system == "salesforce" else 0
        return {"writer": after["writer"][system] - before["writer"][system] - logins, "logins": logins,
                "sandbox": sandbox, "routes": routes}

    def close(self) -> None:
        for w in self.writers.values():
            w.close()


def measure_direct(config: Path, records: dict[str, Any], n: int) -> dict[str, Any]:
    s = Session(config)
    ops = field_ops(field_values(records, n, 1), 1)
    rss_before = peak_rss_mb()
    out: dict[str, Any] = {"login_calls": s.login_calls, "systems": {}}
    started = time.monotonic()
    for system, writer in s.writers.items():
        before = s.snapshot()
        began = time.monotonic()
        outcomes = writer.send(ops[system])
        seconds = time.monotonic() - began
        after = s.snapshot()
        out["systems"][system] = {"fields": len(ops[system]), "records": len({o.record_id for o in ops[system]}),
                                  "seconds": seconds, **s.calls(before, after, system),
                                  **outcome_summary(outcomes)}
    out |= {"seconds": time.monotonic() - started, "peak_rss_mb": peak_rss_mb(), "rss_before_mb": rss_before}
    s.close()
    return out


def measure_outbox(config: Path, records: dict[str, Any], n: int, store: Path) -> dict[str, Any]:
    from sqlalchemy import func, insert, select

    from detente.store.engine import create_schema, make_engine
    from detente.writeback.apply import apply_writes
    from detente.writeback.plan import WRITES

    s = Session(config)
    settings = s.settings.model_copy(update={"writeback": s.settings.writeback.model_copy(update={"enabled": True})})
    engine = make_engine(f"sqlite:///{store}")
    create_schema(engine)
    now = datetime.now(UTC)
    values = field_values(records, n, 2)
    began = time.monotonic()
    with engine.begin() as conn:
        conn.execute(insert(WRITES), outbox_rows(values, now))
    inserted = time.monotonic() - began
    rss_before = peak_rss_mb()
    before = s.snapshot()
    started = time.monotonic()
    sending = {system: 0.0 for system in s.writers}

    def timed(system: str) -> Any:
        def send(ops: Any) -> Any:
            began = time.monotonic()
            try:
                return s.writers[system].send(ops)
            finally:
                sending[system] += time.monotonic() - began
        return send

    applied = apply_writes(engine, settings, {system: timed(system) for system in s.writers}, now)
    seconds = time.monotonic() - started
    after = s.snapshot()
    with engine.connect() as conn:
        states = {state: count for state, count in
                  conn.execute(select(WRITES.c.state, func.count()).group_by(WRITES.c.state))}
    engine.dispose()
    out: dict[str, Any] = {"login_calls": s.login_calls, "systems": {}, "states": states,
                           "counts": dict(applied.counts), "errors": applied.errors[:3], "insert_seconds": inserted}
    for system in s.writers:
        mine = [v for v in values if v[0] == system]
        out["systems"][system] = {"fields": len(mine), "records": len({v[2] for v in mine}),
                                  "seconds": sending[system], **s.calls(before, after, system)}
    out |= {"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "rss_before_mb": rss_before}
    s.close()
    return out


def measure_tasks(config: Path, records: dict[str, Any], n: int) -> dict[str, Any]:
    s = Session(config)
    ops = task_ops(records, n, uuid.uuid4().hex[:8])
    rss_before = peak_rss_mb()
    out: dict[str, Any] = {"login_calls": s.login_calls, "sends": []}
    started = time.monotonic()
    for attempt in ("first", "again"):
        for system, writer in s.writers.items():
            obj = "Task" if system == "salesforce" else "tasks"
            before = s.snapshot()
            began = time.monotonic()
            outcomes = writer.send(ops[system])
            seconds = time.monotonic() - began
            after = s.snapshot()
            made = after["stats"][system]["records"][obj] - before["stats"][system]["records"][obj]
            out["sends"].append({"send": attempt, "system": system, "tasks": len(ops[system]), "seconds": seconds,
                                 "new_in_crm": made, **s.calls(before, after, system), **outcome_summary(outcomes)})
    out |= {"seconds": time.monotonic() - started, "peak_rss_mb": peak_rss_mb(), "rss_before_mb": rss_before}
    s.close()
    return out


def measure(kind: str, config: Path, records_file: Path, n: int) -> dict[str, Any]:
    from detente.logs import configure_logging

    configure_logging("warning", json=True)
    records = json.loads(records_file.read_text())
    if kind == "direct":
        return measure_direct(config, records, n)
    if kind == "outbox":
        return measure_outbox(config, records, n, records_file.with_name("outbox.db"))
    return measure_tasks(config, records, n)


def child(kind: str, config: Path, records_file: Path, n: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--measure", kind, "--attach", str(config), "--records-file", str(records_file),
           "--records", str(n)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"the {kind} run failed:\n{out.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# -- report -----------------------------------------------------------------------------------


def minimum(records: int, system: str) -> int:
    return math.ceil(records / BATCH[system])


def routes(calls: dict[str, Any]) -> str:
    return ", ".join(f"{k.split(' ', 1)[0]} {k.split(' ', 1)[1].split('/v{version}', 1)[-1]} {v}"
                     for k, v in calls["routes"].items())


def field_report(title: str, result: dict[str, Any]) -> float:
    systems = result["systems"]
    fields = sum(x["fields"] for x in systems.values())
    least = sum(minimum(x["records"], s) for s, x in systems.items())
    counted: int = sum(max(x["writer"], x["sandbox"]) for x in systems.values())
    ratio = counted / least
    print(f"\n{title}: {fields} fields on {sum(x['records'] for x in systems.values())} records")
    for system, x in systems.items():
        agree = "" if x["writer"] == x["sandbox"] else "  (the counts disagree)"
        seconds = f"  {x['seconds']:.2f} s" if "seconds" in x else ""
        failed = f"  {x['failed']} FAILED: {x['errors']}" if x.get("failed") else ""
        print(f"  {system:10} {x['fields']:6} fields {x['records']:5} records  calls: writer {x['writer']:3}, "
              f"sandbox {x['sandbox']:3} ({routes(x)}); minimum {minimum(x['records'], system):3}{agree}"
              f"{seconds}{failed}")
    logins = sum(result["login_calls"].values()) + sum(x["logins"] for x in systems.values())
    print(f"  {counted} write calls = {counted * 10_000 / fields:.1f} per 10,000 fields; minimum {least}; "
          f"ratio {ratio:.3f} ({'meets' if ratio <= TARGET else 'MISSES'} the {TARGET} target); "
          f"{logins} login call(s) left out")
    extra = ""
    if "states" in result:
        sending = sum(x["seconds"] for x in systems.values())
        extra = (f"; sending {sending:.2f} s, the outbox's own work {result['seconds'] - sending:.2f} s; "
                 f"outbox rows {result['states']} (inserted beforehand in {result['insert_seconds']:.2f} s)")
        if result["errors"]:
            extra += f"; errors: {result['errors']}"
    print(f"  wall {result['seconds']:.2f} s, peak RSS {result['peak_rss_mb']:.0f} MB "
          f"(before sending {result['rss_before_mb']:.0f} MB){extra}")
    return ratio


def task_report(result: dict[str, Any]) -> None:
    print(f"\ntask upserts by detente key ({result['sends'][0]['tasks']} per system), sent twice:")
    for x in result["sends"]:
        least = minimum(x["tasks"], x["system"])
        agree = "" if x["writer"] == x["sandbox"] else "  (the counts disagree)"
        failed = f"  {x['failed']} FAILED: {x['errors']}" if x["failed"] else ""
        print(f"  {x['send']:5} {x['system']:10} calls: writer {x['writer']:3}, sandbox {x['sandbox']:3} "
              f"({routes(x)}); minimum {least:3}; ratio {max(x['writer'], x['sandbox']) / least:.2f}; "
              f"created {x['created']}, new in the CRM {x['new_in_crm']}; {x['seconds']:.2f} s{agree}{failed}")
    print(f"  wall {result['seconds']:.2f} s, peak RSS {result['peak_rss_mb']:.0f} MB "
          f"(before sending {result['rss_before_mb']:.0f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=6_000, help="people in the sandbox world")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--records", type=int, default=2_500,
                        help="records per system with two fields changed (2,500: 10,000 fields in all)")
    parser.add_argument("--tasks", type=int, default=1_000, help="task upserts per system (0: none)")
    parser.add_argument("--no-outbox", action="store_true", help="skip the run through the outbox")
    parser.add_argument("--attach", type=Path, help="the config file of a sandbox already running (it gets written)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--records-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.attach, args.records_file, args.records)))
        return
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="detente-bench-writeback-") as tmp:
        proc = None
        if args.attach is None:
            proc, config, ready = start_sandbox(args.size, args.seed, Path(tmp))
            print(f"sandbox of {args.size} people ready in {ready:.0f} s", flush=True)
        else:
            config = args.attach
        try:
            records = pick_records(config, args.records, args.tasks)
            records_file = Path(tmp) / "records.json"
            records_file.write_text(json.dumps(records))
            setup = records["setup_calls"]
            print(f"setup (not measured): Salesforce {setup['salesforce']} calls ({setup['salesforce_logins']} "
                  f"login, queries for leads and active users), HubSpot {setup['hubspot']} calls "
                  f"(owners, contact pages)", flush=True)
            direct = child("direct", config, records_file, args.records)
            ratio = field_report("field writes sent by the writers", direct)
            if not args.no_outbox:
                field_report("the same field writes through the outbox (apply_writes)",
                             child("outbox", config, records_file, args.records))
            if args.tasks:
                task_report(child("tasks", config, records_file, args.tasks))
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=60)
    print(f"\nratio (direct field writes) {ratio:.3f}; whole run {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
