"""The README's first command: the whole cycle against the sandbox CRMs, in under a minute.

It generates a world, starts both sandbox CRMs over HTTPS, reads them once with the real
client libraries (simple-salesforce, hubspot-api-client), then runs one full detente cycle
with write-back enabled into a throw-away store — pull, normalize, audit, plan, apply — and
prints what a RevOps lead wants to see first: the funnel by each system and by the
agreement, the open findings by kind with examples explained, SLA compliance per team, the
writes made in each CRM, and how what was found compares with what was planted. Nothing is
left running unless ``keep_running``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from hubspot import HubSpot
from simple_salesforce.api import Salesforce

from detente.sandbox.server import Sandbox

RULES = Path("config/rules.yaml")


def _session(ca: str) -> requests.Session:
    session = requests.Session()
    session.verify = ca
    session.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise override verify
    return session


def _libraries(sb: Sandbox, out: Callable[[str], Any]) -> None:
    """What the CRMs serve, read once with the client libraries detente is built on."""
    info, c = sb.info, sb.credentials
    assert info is not None
    session = _session(str(info.ca))
    token = session.post(f"{info.salesforce}/services/oauth2/token", timeout=30, data={
        "grant_type": "password", "client_id": c.sf_client_id, "client_secret": c.sf_client_secret,
        "username": c.sf_username, "password": c.sf_password}).json()
    sf = Salesforce(instance_url=token["instance_url"], session_id=token["access_token"], session=session,
                    version="59.0")
    counts = {obj: sf.query(f"SELECT COUNT() FROM {obj}")["totalSize"]
              for obj in ("Lead", "Contact", "Opportunity", "Task", "Campaign")}
    out("Salesforce, read with simple-salesforce: " + ", ".join(f"{n} {o}s" for o, n in counts.items()))
    hs = HubSpot(access_token=c.hs_token, host=info.hubspot, ssl_ca_cert=str(info.ca))
    total, after = 0, None
    while True:
        page = hs.crm.contacts.basic_api.get_page(limit=100, after=after, _request_timeout=30)
        total += len(page.results)
        if page.paging is None or page.paging.next is None:
            break
        after = page.paging.next.after
    owners = hs.crm.owners.owners_api.get_page(limit=100, _request_timeout=30)
    out(f"HubSpot, read with hubspot-api-client: {total} contacts, {len(owners.results)} owners")


def _funnel(engine: Any, rules: Any, as_of: datetime, rows: list[dict[str, Any]], out: Callable[[str], Any]) -> None:
    from detente.reconcile.counts import count_stages, open_findings, read_cohort

    cohort = read_cohort(engine, rules, None, as_of)
    stages = count_stages(rules, cohort, open_findings(rows))
    out(f"\nThe funnel, {len(cohort)} people: at or past each stage, by each system and by the agreement")
    out(f"  {'stage':<14} {'HubSpot':>8} {'Salesforce':>11} {'agreement':>10}")
    for s in stages:
        out(f"  {s.stage:<14} {s.hubspot:>8} {s.salesforce:>11} {s.definition:>10}")
    out("  (`detente audit --counts --period 2026-Q3` explains every difference by reason)")


def _findings(rows: list[dict[str, Any]], out: Callable[[str], Any]) -> None:
    open_rows = [r for r in rows if r["status"] == "open" and r["state"] != "running"]
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in open_rows:
        by_kind[r["kind"]].append(r)
    out(f"\nOpen findings: {len(open_rows)} (and {sum(1 for r in rows if r['state'] == 'running')} SLA clocks "
        "running)")
    for kind, items in sorted(by_kind.items(), key=lambda kv: -len(kv[1])):
        out(f"  {kind} ({len(items)})")
        for r in sorted(items, key=lambda r: r["key"])[:3]:
            who = r["email"] or r["salesforce_id"] or r["hubspot_id"] or "-"
            out(f"    - {who} [{r['rule']}, {r['team'] or '-'}]: {r['explanation'][:150]}")


def _compliance(found: list[Any], rules: Any, out: Callable[[str], Any]) -> None:
    """Per SLA and owing team: clocks met in time against clocks breached (running ones aside)."""
    slas = {s.id: s for s in rules.slas}
    tally: dict[str, Counter[str]] = defaultdict(Counter)
    for f in found:
        if f.kind == "sla" and f.state in ("met", "breached"):
            tally[f.rule][f.state] += 1
    out("\nSLA compliance (clocks met in time, of all that stopped or fell due)")
    for sla_id, n in sorted(tally.items()):
        done = n["met"] + n["breached"]
        team = slas[sla_id].owner if sla_id in slas else "-"
        out(f"  {sla_id:<14} {team:<10} {n['met']:>5} of {done:<5} {n['met'] / done if done else 1:6.1%}")


def _writes(engine: Any, out: Callable[[str], Any]) -> None:
    from sqlalchemy import func, select

    from detente.writeback.plan import WRITES

    with engine.connect() as conn:
        rows = conn.execute(select(WRITES.c.system, WRITES.c.kind, WRITES.c.state, func.count())
                            .group_by(WRITES.c.system, WRITES.c.kind, WRITES.c.state)).all()
    out("\nWritten back (`detente writes` lists each one)")
    for system in ("salesforce", "hubspot"):
        mine = {(k, s): n for sys_, k, s, n in rows if sys_ == system}
        fields = sum(n for (k, s), n in mine.items() if k == "field" and s == "applied")
        tasks = sum(n for (k, s), n in mine.items() if k == "task" and s == "applied")
        failed = sum(n for (_, s), n in mine.items() if s == "failed")
        out(f"  {system:<11} {fields:>5} field values, {tasks:>4} tasks for reps" + (f", {failed} failed" if failed
                                                                                       else ""))


def _cycle(sb: Sandbox, out: Callable[[str], Any]) -> Counter[str]:
    """One full cycle into a throw-away store (``demo-store.db`` in the sandbox's state folder);
    findings counted per planted kind."""
    from sqlalchemy import select

    from detente.cycle import run_cycle
    from detente.reconcile.ledger import FINDINGS, evaluate_store
    from detente.reconcile.score import manifest_kind
    from detente.rules import RulesError, load_rules
    from detente.settings import Settings, WritebackSettings
    from detente.store.engine import create_schema, make_engine

    try:
        rules = load_rules(RULES)
    except (RulesError, OSError):
        out(f"\n({RULES} not found or invalid here: run the demo from the repository's root)")
        return Counter()
    settings = Settings.model_validate(sb.settings_dict())
    settings = settings.model_copy(update={"writeback": WritebackSettings(enabled=True, max_writes_per_run=100_000)})
    engine = make_engine(f"sqlite:///{sb.state_dir / 'demo-store.db'}")
    create_schema(engine)
    # The cycle runs as of the world's own moment, so that a clock the world left running is
    # not seen falling due while the demo runs.
    as_of = datetime.fromisoformat(sb.manifest()["generator"]["as_of"].replace("Z", "+00:00"))
    started = time.monotonic()
    steps = run_cycle(engine, settings, rules, as_of)
    out(f"\nOne detente cycle with write-back on ({time.monotonic() - started:.1f} s):")
    for step in steps:
        summary = {k: v for k, v in step.counts.items() if k != "normalized"}
        out(f"  {step.step:<10} {step.outcome:<7} {step.seconds:5.1f} s  {summary}")
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(FINDINGS))]
    found = list(evaluate_store(engine, rules, as_of))
    _funnel(engine, rules, as_of, rows, out)
    _findings(rows, out)
    _compliance(found, rules, out)
    _writes(engine, out)
    engine.dispose()
    planted: Counter[str] = Counter()
    for f in found:
        kind = manifest_kind(f)
        if kind is not None:
            planted[kind] += 1
    return planted


def _serve_dashboard(sb: Sandbox) -> str:
    """The dashboard of the demo store, as of the world's moment, on 127.0.0.1:8478 (or a free port)."""
    from detente.daemon.endpoints import HttpServer
    from detente.rules import load_rules
    from detente.store.engine import make_engine
    from detente.web.app import build_dashboard

    as_of = datetime.fromisoformat(sb.manifest()["generator"]["as_of"].replace("Z", "+00:00"))
    engine = make_engine(f"sqlite:///{sb.state_dir / 'demo-store.db'}")
    rules = load_rules(RULES)
    app = build_dashboard(engine, lambda: rules, now=lambda: as_of, as_of=as_of)
    try:
        server = HttpServer(app, "127.0.0.1:8478")
    except OSError:
        server = HttpServer(app, "127.0.0.1:0")
    server.start()
    period = f"{as_of:%Y-%m}"
    return f"http://127.0.0.1:{server.port}/?period={period}"


def run_demo(*, size: int, seed: int, out: Callable[[str], Any], keep_running: bool = False) -> None:
    started = time.monotonic()
    out(f"Generating a world of {size} people (seed {seed}) and starting the sandbox CRMs ...")
    sb = Sandbox(dataset="demo", size=size, seed=seed)
    try:
        info = sb.start()
        out(f"  Salesforce REST API {info.salesforce}   HubSpot CRM v3 API {info.hubspot}")
        out(f"  ready in {time.monotonic() - started:.1f} s\n")
        _libraries(sb, out)
        found = _cycle(sb, out)
        problems = Counter(p["kind"] for p in sb.manifest().get("problems", []))
        out("\nProblems planted in this world, and what detente's audit found:")
        out(f"  {'planted problem':<36} {'planted':>8} {'found':>8}")
        for kind, n in sorted(problems.items()):
            out(f"  {kind:<36} {n:>8} {found.get(kind, 0):>8}")
        for kind, n in sorted((k, n) for k, n in found.items() if k not in problems):
            out(f"  {kind + ' (not planted)':<36} {0:>8} {n:>8}")
        session = _session(str(info.ca))
        calls = [session.get(f"{base}/__sandbox/stats", timeout=30).json()["total_calls"]
                 for base in (info.salesforce, info.hubspot)]
        out(f"\nAPI calls served: Salesforce {calls[0]}, HubSpot {calls[1]}. Whole demo: "
            f"{time.monotonic() - started:.0f} s.")
        out("\nNext:")
        if keep_running:
            url = _serve_dashboard(sb)
            out(f"  - the dashboard of this world: {url}  (the same numbers as `detente report`)")
        else:
            out("  - the dashboard: `detente demo --keep-running` serves this world's on 127.0.0.1; on your own")
            out("    store, `detente serve` (127.0.0.1:8478); `detente report --period month` prints the same numbers")
        out("  - real CRMs: copy deploy/detente.example.yaml, put secrets in DETENTE_* variables, then")
        out("    `detente --config detente.yaml settings` and `detente --config detente.yaml cycle`")
        if keep_running:
            out(f"\nThe sandbox keeps running (state in {sb.state_dir}); Ctrl-C (or SIGTERM) stops it.")
            stop = threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            with contextlib.suppress(KeyboardInterrupt):
                while not stop.wait(0.5):
                    pass
    finally:
        sb.stop()
