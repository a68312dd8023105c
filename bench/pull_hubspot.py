"""What a HubSpot pull costs: API calls against the minimum the API allows, records read by
an incremental pull against records changed, wall time against a bare paging loop, memory.

Starts ``detente sandbox`` as its own process with a demo world of N people (so client and
server each get a core), then:

1. a full pull of every object into a fresh SQLite store, with detente's own throttle lifted
   (the sandbox does not enforce HubSpot's limits; the time HubSpot's limits would impose is
   reported separately from the call counts);
2. the same pages read by the connector alone (no store) and by a bare loop that replays the
   full pull's calls through the same hubspot-api-client objects and only parses the JSON;
3. 1% of the records of every object changed in the sandbox, then an incremental pull.

    python bench/pull_hubspot.py 20000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from detente.connectors.hs_transport import HubSpotHttp
from detente.connectors.hubspot import SPECS, HubSpotConnector
from detente.pull import pull
from detente.sandbox.store import World
from detente.settings import HubSpotSettings
from detente.store.engine import create_schema, make_engine

SEARCH_PAGE = 200
LIST_PAGE = 100
# A harmless property to change per object (1% of the records).
TOUCH = {
    "contacts": "jobtitle", "companies": "industry", "deals": "dealname", "tasks": "hs_task_body",
    "calls": "hs_call_body", "emails": "hs_email_text", "meetings": "hs_meeting_body",
}


def start_sandbox(size: int, seed: int, state: Path) -> tuple[subprocess.Popen[str], dict[str, Any], float]:
    config = state / "sandbox.yaml"
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "detente", "sandbox", "--size", str(size), "--seed", str(seed),
         "--state-dir", str(state / "world"), "--write-config", str(config)],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    if not proc.stdout.readline():
        raise SystemExit("the sandbox did not start")
    return proc, yaml.safe_load(config.read_text()), time.monotonic() - started


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def record_calls(http: HubSpotHttp) -> list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]]:
    """Keep every call the connector makes (method, arguments) for the bare replay."""
    calls: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []
    inner = http._call

    def recording(what: str, object_name: str, search: bool, method: Callable[..., Any],
                  *args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append((method, args, kwargs))
        return inner(what, object_name, search, method, *args, **kwargs)

    http._call = recording  # type: ignore[method-assign]
    return calls


def bare_replay(calls: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]], timeout: float) -> float:
    """The same requests through the same client objects: send, read, parse; nothing else."""
    started = time.perf_counter()
    for method, args, kwargs in calls:
        response = method(*args, _preload_content=False, _request_timeout=timeout, **kwargs)
        json.loads(response.data)
        response.release_conn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("size", type=int, nargs="?", default=20_000, help="people in the generated world")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--changed", type=float, default=0.01, help="share of records changed before the incremental")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="detente-bench-") as tmp:
        proc, config, startup = start_sandbox(args.size, args.seed, Path(tmp))
        try:
            run(args, Path(tmp), config, startup)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    os._exit(0)


def run(args: argparse.Namespace, tmp: Path, config: dict[str, Any], startup: float) -> None:
    base = HubSpotSettings(**config["hubspot"])
    settings = base.model_copy(update={"burst_per_10s": 10_000_000, "search_per_second": 10_000_000})
    world_file = tmp / "world" / "world.sqlite3"
    with sqlite3.connect(world_file) as db:
        counts = {o: db.execute(f"SELECT count(*) FROM hs_{o} WHERE archived = 0").fetchone()[0] for o in SPECS}
    print(f"sandbox: {args.size} people, seed {args.seed}; generated and ready in {startup:.1f} s")
    print("records: " + ", ".join(f"{o} {counts[o]}" for o in SPECS))

    # 1. The connector alone (pages read and checked, not stored), recording its calls; then a
    # bare loop over the same calls. Peak memory is read after each step (it only grows).
    rss_start = peak_rss_mb()
    with HubSpotConnector(settings) as connector:
        calls = record_calls(connector.http)
        started = time.perf_counter()
        for name in connector.objects():
            for _page in connector.pull(name, None, until=datetime.now(UTC), full=True):
                pass
        alone = time.perf_counter() - started
        rss_alone = peak_rss_mb()
        bare = bare_replay(calls, settings.timeout_seconds)

    # 2. The full pull into a fresh store.
    engine = make_engine(f"sqlite:///{tmp / 'store.db'}")
    create_schema(engine)
    with HubSpotConnector(settings) as connector:
        started = time.perf_counter()
        report = pull(engine, connector, now=datetime.now(UTC), full=True)
        full_seconds = time.perf_counter() - started
    rss_full = peak_rss_mb()
    searches = sum(1 for m, _, _ in calls if getattr(m, "__name__", "") == "do_search")
    print(f"\nfull pull: {full_seconds:.1f} s, {len(calls)} calls ({searches} searches)")
    # "pages": the records alone, in the largest pages (200 a search, 100 a list). "with links":
    # what the API makes a pull that needs the history and associations pay at the least:
    # search answers carry neither, so add the history batch reads (100 records each) of the
    # objects whose history is read and one v4 associations batch read per 1,000 records per
    # linked object type. (Listing with history and associations inline costs more: 50 a page.)
    print(f"{'object':<10} {'records':>8} {'calls':>6} {'pages':>6} {'ratio':>6} {'with links':>10} {'ratio':>6}")
    total_calls = total_min = total_links = 0
    for item in report.objects:
        largest = SEARCH_PAGE if item.object in SPECS else LIST_PAGE
        minimum = max(1, math.ceil(item.fetched / largest))
        spec = SPECS.get(item.object)
        links = minimum + (0 if spec is None else (
            (math.ceil(item.fetched / 100) if spec.history else 0)
            + len(spec.associations) * math.ceil(item.fetched / 1000)))
        total_calls += item.calls
        total_min += minimum
        total_links += links
        print(f"{item.object:<10} {item.fetched:>8} {item.calls:>6} {minimum:>6} {item.calls / minimum:>6.2f}"
              f" {links:>10} {item.calls / links:>6.2f}")
    print(f"{'all':<10} {'':>8} {total_calls:>6} {total_min:>6} {total_calls / total_min:>6.2f} {total_links:>10}"
          f" {total_calls / total_links:>6.2f}")
    burst, search_rate = base.burst_per_10s / 10, base.search_per_second
    floor = max(searches / search_rate, len(calls) / burst)
    print(f"under detente's throttle ({base.burst_per_10s}/10 s, search {search_rate}/s) the same calls take"
          f" at least {floor:.0f} s")
    print(f"\nwall time: bare paging loop {bare:.1f} s, connector alone {alone:.1f} s ({alone / bare:.2f}x),"
          f" full pull with the store {full_seconds:.1f} s ({full_seconds / bare:.2f}x)")
    print(f"peak memory (process RSS): {rss_start:.0f} MB at start, {rss_alone:.0f} MB after the connector alone,"
          f" {rss_full:.0f} MB after the full pull with the store")

    # 3. Change 1% of every object, then pull incrementally.
    world = World(world_file)
    rng = random.Random(args.seed)
    changed: dict[str, int] = {}
    now = datetime.now(UTC)
    for obj in SPECS:
        ids = [r[0] for r in world.tuples(f"SELECT id FROM hs_{obj} WHERE archived = 0")]
        picked = rng.sample(ids, max(1, int(len(ids) * args.changed))) if ids else []
        with world.transaction():
            for i, rid in enumerate(picked):
                world.hs_update(obj, rid, {TOUCH[obj]: f"changed {i}"}, now + timedelta(milliseconds=i % 1000))
        changed[obj] = len(picked)
    time.sleep(1.1)
    with HubSpotConnector(settings) as connector:
        started = time.perf_counter()
        again = pull(engine, connector, now=datetime.now(UTC), objects=list(SPECS))
        incremental = time.perf_counter() - started
    print(f"\nincremental pull after {args.changed:.0%} changed: {incremental:.1f} s")
    print(f"{'object':<10} {'changed':>8} {'fetched':>8} {'ratio':>6} {'updated':>8} {'calls':>6}")
    total_changed = total_fetched = 0
    for item in again.objects:
        total_changed += changed[item.object]
        total_fetched += item.fetched
        ratio = item.fetched / changed[item.object] if changed[item.object] else float("nan")
        print(f"{item.object:<10} {changed[item.object]:>8} {item.fetched:>8} {ratio:>6.2f} {item.updated:>8}"
              f" {item.calls:>6}")
    print(f"{'all':<10} {total_changed:>8} {total_fetched:>8} {total_fetched / total_changed:>6.2f}")


if __name__ == "__main__":
    main()
