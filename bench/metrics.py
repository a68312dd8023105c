"""What the shared metrics cost: every metric of one period for a store of N people, and the
dashboard's page load against that store; wall time and peak memory.

A sandbox world of ``--base`` people is pulled, normalized and audited once (kept in
``--cache``), then its unified tables and what the audit keeps for the metrics (the stages
people reached, their SLA clocks, the findings) are tiled into a store of N people, as
bench/audit.py does. Each measurement runs in a child process (peak RSS is its own):

- ``report``: ``detente report`` for a month, all sections but the two views;
- ``report --by source``: the same, sliced;
- ``two views``: the per-stage reconciliation (every live person's stages evaluated);
- ``dashboard``: a cold first page load (computes the report), and page loads once the
  keeper thread of ``detente serve`` (and the daemon's metrics job) has warmed the report.

    python bench/metrics.py 1000000
    python bench/metrics.py 100000 --base 2000
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from audit import normalized_base, tile
from normalize import measured, peak_rss_mb

RULES = Path(__file__).resolve().parents[1] / "config" / "rules.yaml"
NOW = datetime(2026, 11, 16, 15, 0, tzinfo=UTC) + timedelta(days=1)
PERIOD = "2026-10"
# What the audit keeps, tiled with the people it is about.
INTS = {
    "person_stages": {"person_id": "people"},
    "person_clocks": {"person_id": "people"},
    "person_metrics": {"person_id": "people"},
    "findings": {"person_id": "people", "opportunity_id": "opportunities"},
}
IDS = {"findings": ("key", "salesforce_id", "hubspot_id")}


def audited_base(size: int, seed: int, cache: Path) -> Path:
    """The base world normalized and audited once."""
    from detente.reconcile.ledger import reconcile
    from detente.rules import load_rules
    from detente.store.engine import create_schema, make_engine
    from detente.store.migrate import current, head

    normalized = normalized_base(size, seed, cache)
    done = normalized.with_name("audited.db")
    if done.exists():  # audited under an older schema: audit again
        engine = make_engine(f"sqlite:///{done}")
        stale = current(engine) != head()
        engine.dispose()
        if stale:
            done.unlink()
    if not done.exists():
        partial = normalized.with_name("audited.partial.db")
        shutil.copyfile(normalized, partial)
        engine = make_engine(f"sqlite:///{partial}")
        create_schema(engine)
        reconcile(engine, load_rules(RULES), NOW, full=True)
        engine.dispose()
        partial.rename(done)
    return done


def measure(url: str, what: str) -> dict[str, Any]:
    from detente.logs import configure_logging
    from detente.metrics.compute import report
    from detente.metrics.periods import period_of
    from detente.rules import load_rules
    from detente.store.engine import make_engine

    configure_logging("warning", json=True)
    engine = make_engine(url)
    rules = load_rules(RULES)
    period = period_of(PERIOD, NOW)
    before = peak_rss_mb()
    out: dict[str, Any] = {}
    started = time.monotonic()
    if what == "report":
        r = report(engine, rules, period, NOW, reconciliation=False)
        out["cohort"] = r["funnel"]["cohort"]
    elif what == "by_source":
        r = report(engine, rules, period, NOW, by="source", reconciliation=False)
        out["groups"] = len(r["groups"])
    elif what == "two_views":
        r = report(engine, rules, period, NOW)
        out["stages"] = len(r["reconciliation"]["stages"])
    elif what == "dashboard":
        out.update(dashboard(engine, rules))
    out.update(seconds=time.monotonic() - started, peak_rss_mb=peak_rss_mb(), rss_before_mb=before)
    return out


def dashboard(engine: Any, rules: Any) -> dict[str, Any]:
    """The page served over real HTTP. Cold: a first load that computes the report. Then as
    ``detente serve`` and the daemon run it: the default page's report kept warm by the
    keeper thread, and loads timed once it is (the median of five)."""
    import statistics
    import threading

    import requests

    from detente.daemon.endpoints import HttpServer
    from detente.web.app import build_dashboard

    def served() -> tuple[Any, Any, Any]:
        app = build_dashboard(engine, lambda: rules, now=lambda: NOW)
        server = HttpServer(app, "127.0.0.1:0")
        server.start()
        session = requests.Session()
        session.trust_env = False
        return app, server, session

    def load(session: Any, url: str) -> tuple[float, int]:
        started = time.monotonic()
        answer = session.get(url, timeout=600)
        if answer.status_code != 200:
            raise SystemExit(f"the dashboard answered {answer.status_code}")
        return time.monotonic() - started, len(answer.content)

    out: dict[str, Any] = {}
    _, server, session = served()
    try:
        out["cold_load_s"], out["bytes"] = load(session, f"http://127.0.0.1:{server.port}/")
    finally:
        server.stop()
    app, server, session = served()
    stop = threading.Event()
    keeper = threading.Thread(target=app.state.dashboard.keep_warm, args=(stop, 30.0), daemon=True)
    started = time.monotonic()
    keeper.start()
    try:
        while app.state.dashboard.cache.misses == 0:
            time.sleep(0.05)
        out["warmed_in_s"] = time.monotonic() - started
        times = [load(session, f"http://127.0.0.1:{server.port}/")[0] for _ in range(5)]
        out["page_load_s"] = statistics.median(times)
        out["page_load_max_s"] = max(times)
    finally:
        stop.set()
        server.stop()
    return out


def child(url: str, what: str) -> dict[str, Any]:
    return measured(__file__, "--measure", url, "--what", what)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("people", nargs="?", type=int, default=100_000, help="people in the store")
    parser.add_argument("--base", type=int, default=5_000, help="people in the sandbox world that is tiled")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "detente-bench-normalize")
    parser.add_argument("--skip", action="append", default=[], help="report, by_source, two_views or dashboard")
    parser.add_argument("--keep", type=Path, help="tile the store into this folder once and reuse it after")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--what", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.what)))
        return
    base = audited_base(args.base, args.seed, args.cache)
    with tempfile.TemporaryDirectory(prefix="detente-bench-metrics-") as tmp:
        where = args.keep or Path(tmp)
        url = f"sqlite:///{where / 'audit.db'}"
        if args.keep is None or not (where / "audit.db").exists():
            where.mkdir(parents=True, exist_ok=True)
            started = time.monotonic()
            url = tile(base, args.people, where, INTS, IDS)
            print(f"store of {args.people} people tiled from a {args.base}-person world in "
                  f"{time.monotonic() - started:.0f} s", flush=True)
        # Each measurement twice, in a fresh process: the first also reads the store into the
        # operating system's cache (as a long-running server has it); the second is reported.
        results = {}
        for what in ("report", "by_source", "two_views", "dashboard"):
            if what not in args.skip:
                first = child(url, what)
                results[what] = {**child(url, what), "first_run_s": round(first["seconds"], 2)}
    print(f"\nmetrics of {PERIOD}, {args.people} people, sqlite (second of two runs; the first in first_run_s)")
    for what, r in results.items():
        extra = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()
                 if k not in ("seconds", "peak_rss_mb", "rss_before_mb")}
        print(f"  {what:12} {r['seconds']:8.2f} s  peak RSS {r['peak_rss_mb']:.0f} MB  {extra}")

if __name__ == "__main__":
    main()
