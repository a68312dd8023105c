"""How fast the sandbox serves paged reads, so later benchmarks can tell detente's cost from
the sandbox's.

Starts ``detente sandbox`` as its own process (so client and server each get a core),
then pages objects of both APIs with a bare ``requests`` loop and reports records per
second per endpoint, the generation time, and the sandbox's peak memory.

    python bench/sandbox_rate.py --size 10000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
import yaml


def start_sandbox(
    size: int, seed: int, state: Path
) -> tuple[subprocess.Popen[str], dict[str, Any], dict[str, Any], float]:
    config = state / "sandbox.yaml"
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "detente", "sandbox", "--size", str(size), "--seed", str(seed),
         "--state-dir", str(state / "world"), "--write-config", str(config)],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit("the sandbox did not start")
    ready = json.loads(line)
    return proc, ready, yaml.safe_load(config.read_text()), time.monotonic() - started


def session(ca: str, token: str) -> requests.Session:
    s = requests.Session()
    s.verify = ca
    s.trust_env = False
    s.headers["Authorization"] = f"Bearer {token}"
    return s


def sf_rest(s: requests.Session, base: str, obj: str) -> tuple[int, int, float]:
    fields = [f["name"] for f in s.get(f"{base}/services/data/v59.0/sobjects/{obj}/describe/").json()["fields"]]
    t0 = time.perf_counter()
    body = s.get(f"{base}/services/data/v59.0/query/", params={"q": f"SELECT {', '.join(fields)} FROM {obj}"},
                 headers={"Sforce-Query-Options": "batchSize=2000"}).json()
    n, calls = len(body["records"]), 1
    while not body["done"]:
        body = s.get(base + body["nextRecordsUrl"]).json()
        n += len(body["records"])
        calls += 1
    return n, calls, time.perf_counter() - t0


def sf_bulk(s: requests.Session, base: str, obj: str) -> tuple[int, int, float]:
    fields = [f["name"] for f in s.get(f"{base}/services/data/v59.0/sobjects/{obj}/describe/").json()["fields"]]
    t0 = time.perf_counter()
    job = s.post(f"{base}/services/data/v59.0/jobs/query",
                 json={"operation": "query", "query": f"SELECT {', '.join(fields)} FROM {obj}"}).json()
    calls = 1
    while True:
        state = s.get(f"{base}/services/data/v59.0/jobs/query/{job['id']}").json()["state"]
        calls += 1
        if state in {"JobComplete", "Failed", "Aborted"}:
            break
        time.sleep(0.05)
    n, locator = 0, None
    while True:
        params: dict[str, Any] = {"maxRecords": 50000}
        if locator:
            params["locator"] = locator
        r = s.get(f"{base}/services/data/v59.0/jobs/query/{job['id']}/results", params=params)
        calls += 1
        n += int(r.headers["Sforce-NumberOfRecords"])
        locator = r.headers.get("Sforce-Locator")
        if not locator or locator == "null":
            break
    return n, calls, time.perf_counter() - t0


def hs_list(s: requests.Session, base: str, obj: str, properties: list[str]) -> tuple[int, int, float]:
    t0 = time.perf_counter()
    n, calls, after = 0, 0, None
    while True:
        params: dict[str, Any] = {"limit": 100, "properties": ",".join(properties)}
        if after:
            params["after"] = after
        body = s.get(f"{base}/crm/v3/objects/{obj}", params=params).json()
        calls += 1
        n += len(body["results"])
        after = (body.get("paging") or {}).get("next", {}).get("after")
        if not after:
            return n, calls, time.perf_counter() - t0


def hs_search(s: requests.Session, base: str, obj: str, properties: list[str]) -> tuple[int, int, float]:
    """Search ordered by id, windowed by id so the 10,000 cap never bites."""
    t0 = time.perf_counter()
    n, calls, last = 0, 0, "0"
    while True:
        body = s.post(f"{base}/crm/v3/objects/{obj}/search", json={
            "filterGroups": [{"filters": [{"propertyName": "hs_object_id", "operator": "GT", "value": last}]}],
            "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
            "properties": properties, "limit": 200,
        }).json()
        calls += 1
        n += len(body["results"])
        if len(body["results"]) < 200:
            return n, calls, time.perf_counter() - t0
        last = body["results"][-1]["id"]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=10_000, help="people in the generated world")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="detente-bench-") as tmp:
        proc, ready, config, startup = start_sandbox(args.size, args.seed, Path(tmp))
        try:
            sf_cfg, hs_cfg = config["salesforce"], config["hubspot"]
            plain = requests.Session()
            plain.verify, plain.trust_env = ready["ca"], False
            token = plain.post(f"{ready['salesforce']}/services/oauth2/token", data={
                "grant_type": "password", "client_id": sf_cfg["client_id"],
                "client_secret": sf_cfg["client_secret"], "username": sf_cfg["username"],
                "password": sf_cfg["password"]}).json()["access_token"]
            sf = session(ready["ca"], token)
            hs = session(ready["ca"], hs_cfg["token"])
            rows = []
            for obj in ("Lead", "Contact", "Opportunity", "Task", "LeadHistory"):
                rows.append((f"salesforce REST query {obj}", *sf_rest(sf, ready["salesforce"], obj)))
            for obj in ("Lead", "Task"):
                rows.append((f"salesforce Bulk 2.0 {obj}", *sf_bulk(sf, ready["salesforce"], obj)))
            contact_props = ["email", "lifecyclestage", "hs_lead_status", "hubspotscore", "hubspot_owner_id",
                             "salesforceleadid", "lastmodifieddate"]
            rows.append(("hubspot list contacts", *hs_list(hs, ready["hubspot"], "contacts", contact_props)))
            rows.append(("hubspot list tasks", *hs_list(hs, ready["hubspot"], "tasks", ["hs_task_subject"])))
            rows.append(("hubspot search contacts", *hs_search(hs, ready["hubspot"], "contacts", contact_props)))
            print(f"sandbox: {args.size} people, seed {args.seed}; generated and ready in {startup:.1f} s")
            print(f"{'endpoint':<34} {'records':>9} {'calls':>6} {'seconds':>8} {'records/s':>10} {'ms/call':>8}")
            total_n = total_t = 0.0
            for name, n, calls, secs in rows:
                total_n += n
                total_t += secs
                print(f"{name:<34} {n:>9} {calls:>6} {secs:>8.2f} {n / secs if secs else 0:>10.0f} "
                      f"{1000 * secs / max(calls, 1):>8.1f}")
            print(f"{'all paged reads':<34} {int(total_n):>9} {'':>6} {total_t:>8.2f} {total_n / total_t:>10.0f}")
            print(f"sandbox peak memory: {peak_rss_mb(proc.pid):.0f} MB")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    os._exit(0)


if __name__ == "__main__":
    main()
