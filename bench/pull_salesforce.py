"""What a Salesforce pull costs against a sandbox world of N people.

Starts ``detente sandbox`` as its own process, then reports:

- calls: the API calls of a full pull, as the org counts them against its daily allocation
  (the sandbox's own count: every REST and Bulk request; the OAuth token request is not an
  API call), divided by the fewest the API allows (per object: records / 2000 for REST, or
  job creation + one poll + result chunks for Bulk API 2.0); the connector's HTTP requests,
  login included, are printed beside them;
- churn: records fetched by an incremental pull after 1% of records changed, divided by the
  records that changed (field-history rows the changes created count as changes);
- time: the full pull (parse, check, store), and the connector alone (pages read and
  parsed, not stored), against a bare loop that makes the same requests and throws the
  answers away;
- memory: this process's peak RSS over the full pull (the sandbox runs elsewhere).

    python bench/pull_salesforce.py --size 10000
    bench_salesforce(size=100_000) -> dict   (for a shared bench)
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
import yaml

from detente.connectors.salesforce import OBJECTS, SalesforceConnector
from detente.logs import configure_logging
from detente.pull import pull
from detente.sandbox.schema import SALESFORCE_OBJECTS
from detente.sandbox.store import World
from detente.settings import SalesforceSettings
from detente.store.engine import create_schema, make_engine

# What a day of work changes: (field, new value) per object; Lead status and opportunity
# amount are history-tracked, so those changes also create history rows.
CHANGES: dict[str, tuple[str, Any]] = {
    "Lead": ("Status", lambda rng: rng.choice(("Working - Contacted", "Closed - Not Converted"))),
    "Contact": ("Title", lambda rng: f"Director {rng.randint(1, 99)}"),
    "Opportunity": ("Amount", lambda rng: float(rng.randint(1, 500) * 100)),
    "Task": ("Subject", lambda rng: f"Follow up {rng.randint(1, 99)}"),
    "Account": ("Website", lambda rng: f"https://example{rng.randint(1, 999)}.com"),
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
    return proc, yaml.safe_load(config.read_text())["salesforce"], time.monotonic() - started


def api_calls(config: dict[str, Any]) -> int:
    """The API calls the sandbox has counted so far, as Salesforce counts them."""
    session = requests.Session()
    session.trust_env = False
    session.verify = config["ca_file"]
    answer = session.get(f"{config['instance_url'].rstrip('/')}/__sandbox/stats", timeout=60)
    answer.raise_for_status()
    return int(answer.json()["total_calls"])


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def minimum_calls(counts: dict[str, int], threshold: int, max_records: int) -> dict[str, int]:
    """The fewest calls that can read each object: REST pages of 2000, or a Bulk job."""
    return {
        name: (2 + max(1, math.ceil(n / max_records))) if n > threshold else max(1, math.ceil(n / 2000))
        for name, n in counts.items()
    }


def bare_loop(connector: SalesforceConnector, threshold: int, max_records: int) -> float:
    """The same requests as the connector's full pull, answers thrown away."""
    sf = connector.connect()
    started = time.perf_counter()
    sizes = connector.expected_sizes(datetime.now(UTC))  # the record counts and the composite describe
    for name in OBJECTS:
        schema = connector.schema(name)
        select = f"SELECT {', '.join(schema.names)} FROM {name}"
        if sizes.get(name, 0) > threshold:
            for _chunk in getattr(sf.bulk2, name).query_all(select, max_records=max_records, wait=0.1):
                pass
            continue
        headers = {"Sforce-Query-Options": "batchSize=2000"}
        body = sf.query(f"{select} ORDER BY {schema.cursor}, Id", include_deleted=True, headers=headers)
        if body["totalSize"] > threshold and not body["done"]:
            for _chunk in getattr(sf.bulk2, name).query_all(select, max_records=max_records, wait=0.1):
                pass
            continue
        while not body["done"]:
            body = sf.query_more(body["nextRecordsUrl"], identifier_is_url=True, headers=headers)
    return time.perf_counter() - started


def change_one_percent(world: World, seed: int) -> int:
    """Change 1% of all records (spread over the objects people edit); return how many
    records changed, history rows the changes created included."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    before = world.counts()["salesforce"]
    target = max(1, sum(before[n] for n in OBJECTS) // 100)
    weights = {n: before[n] for n in CHANGES}
    changed = 0
    for name, weight in weights.items():
        obj = SALESFORCE_OBJECTS[name]
        field, value = CHANGES[name]
        ids = [r[0] for r in world.tuples(f'SELECT "Id" FROM "sf_{name}" WHERE NOT "IsDeleted"')]
        with world.transaction():
            for rid in rng.sample(ids, min(len(ids), round(target * weight / sum(weights.values())))):
                changed += world.sf_update(obj, rid, {field: value(rng)}, now)
    after = world.counts()["salesforce"]
    return changed + sum(after[h] - before[h] for h in ("LeadHistory", "OpportunityFieldHistory"))


def bench_salesforce(size: int, seed: int = 1, threshold: int = 10_000, max_records: int = 50_000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="detente-bench-") as tmp:
        state = Path(tmp)
        proc, config, generated = start_sandbox(size, seed, state)
        try:
            settings = SalesforceSettings(**config, bulk_threshold=threshold, bulk_max_records=max_records,
                                          bulk_poll_seconds=0.1)
            world = World(state / "world" / "world.sqlite3")
            counts = {n: len(world.tuples(f'SELECT "Id" FROM "sf_{n}"')) for n in OBJECTS}  # queryAll: deleted too
            engine = make_engine(f"sqlite:///{state / 'detente.db'}")
            create_schema(engine)

            connector = SalesforceConnector(settings)
            rss_before = peak_rss_mb()
            counted_before = api_calls(config)
            started = time.perf_counter()
            full = pull(engine, connector, now=datetime.now(UTC), full=True)
            full_seconds = time.perf_counter() - started
            rss_peak = peak_rss_mb()
            assert full.stopped is None, full.stopped
            used = {o.object: o.calls for o in full.objects}
            used_total = api_calls(config) - counted_before
            requests_made, logins = connector.calls, connector.logins
            fewest = minimum_calls(counts, threshold, max_records)

            bare_seconds = bare_loop(SalesforceConnector(settings), threshold, max_records)
            pages_only = SalesforceConnector(settings)
            started = time.perf_counter()
            for name in OBJECTS:
                for _page in pages_only.pull(name, None, until=datetime.now(UTC), full=True):
                    pass
            connector_seconds = time.perf_counter() - started

            time.sleep(1.1)  # the changes get later stamps than anything the full pull saw
            changed = change_one_percent(world, seed)
            incremental = pull(engine, connector, now=datetime.now(UTC) + timedelta(seconds=1))
            fetched = sum(o.fetched for o in incremental.objects)
            stored = sum(o.inserted + o.updated for o in incremental.objects)
            return {
                "people": size,
                "records": sum(counts.values()),
                "generate_seconds": round(generated, 1),
                "full_pull": {
                    "calls": used_total,
                    "http_requests": requests_made,
                    "logins": logins,
                    "minimum_calls": sum(fewest.values()),
                    "calls_ratio": round(used_total / sum(fewest.values()), 2),
                    "per_object": {n: {"records": counts[n], "calls": used[n], "minimum": fewest[n]} for n in OBJECTS},
                    "seconds": round(full_seconds, 2),
                    "connector_seconds": round(connector_seconds, 2),
                    "bare_loop_seconds": round(bare_seconds, 2),
                    "time_ratio": round(full_seconds / bare_seconds, 2),
                    "connector_time_ratio": round(connector_seconds / bare_seconds, 2),
                    "peak_rss_mb": round(rss_peak, 1),
                    "rss_growth_mb": round(rss_peak - rss_before, 1),
                },
                "incremental": {
                    "changed": changed,
                    "fetched": fetched,
                    "written": stored,
                    "fetched_per_changed": round(fetched / max(1, changed), 2),
                    "calls": sum(o.calls for o in incremental.objects),
                },
            }
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=10_000, help="people in the sandbox world")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threshold", type=int, default=10_000, help="records above which Bulk API 2.0 is used")
    args = parser.parse_args()
    configure_logging("warning", stream=sys.stderr)
    print(json.dumps(bench_salesforce(args.size, args.seed, args.threshold), indent=1))


if __name__ == "__main__":
    main()
