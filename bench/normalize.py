"""What normalizing costs: wall time and peak memory to build the unified model from a store
pulled from a sandbox world of N people, then an incremental run after 1% of the records
changed, then a run with nothing to do.

The raw layer is pulled once per (N, seed) over HTTPS from ``detente sandbox`` (its own
process) and kept in ``--cache``; each measurement runs in a child process on a fresh copy,
so the peak resident memory reported is the normalizer's own.

    python bench/normalize.py 20000
    python bench/normalize.py 100000 --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, create_engine, func, select, text, update
from sqlalchemy.engine import make_url

# A harmless field to change per object (1% of the records), as a pull would bring in.
TOUCH = {
    ("salesforce", "Lead"): "Title", ("salesforce", "Contact"): "Title", ("salesforce", "Opportunity"): "NextStep",
    ("salesforce", "Task"): "Description", ("salesforce", "Event"): "Description",
    ("salesforce", "CampaignMember"): "Status", ("salesforce", "OpportunityContactRole"): "Role",
    ("hubspot", "contacts"): "jobtitle", ("hubspot", "deals"): "dealname", ("hubspot", "tasks"): "hs_task_body",
    ("hubspot", "calls"): "hs_call_body", ("hubspot", "emails"): "hs_email_text",
    ("hubspot", "meetings"): "hs_meeting_body",
}


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- the raw layer, pulled once -------------------------------------------------------------


def pulled_store(size: int, seed: int, cache: Path) -> tuple[Path, float]:
    """A SQLite store holding the pulled raw layer of the world (size, seed)."""
    from detente.settings import load_settings
    from detente.store.engine import create_schema, make_engine
    from detente.sync import sync

    where = cache / f"{size}-{seed}"
    raw = where / "raw.db"
    if raw.exists():
        return raw, float("nan")
    where.mkdir(parents=True, exist_ok=True)
    config = where / "sandbox.yaml"
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "detente", "sandbox", "--size", str(size), "--seed", str(seed),
         "--state-dir", str(where / "world"), "--write-config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        if not proc.stdout.readline():
            raise SystemExit("the sandbox did not start")
        print(f"sandbox of {size} people ready in {time.monotonic() - started:.0f} s", flush=True)
        settings = load_settings(config)
        partial = where / "raw.partial.db"
        engine = make_engine(f"sqlite:///{partial}")
        create_schema(engine)
        began = time.monotonic()
        for result in sync(engine, settings, now=datetime.now(UTC)):
            if result.error or result.report.stopped:
                raise SystemExit(f"pull failed: {result.error or result.report.stopped}")
        pulled = time.monotonic() - began
        engine.dispose()
        partial.rename(raw)
        return raw, pulled
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def working_copy(raw: Path, postgres: str | None, into: Path) -> str:
    """A fresh store holding the raw layer (all dirty) and an empty unified model."""
    from detente.store.engine import create_schema, make_engine

    if postgres is None:
        target = into / "work.db"
        shutil.copyfile(raw, target)
        url = f"sqlite:///{target}"
        engine = make_engine(url)
        create_schema(engine)
        engine.dispose()
        return url
    admin = create_engine(postgres, isolation_level="AUTOCOMMIT")
    name = f"detente_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(postgres).set(database=name).render_as_string(hide_password=False)
    source, target_engine = make_engine(f"sqlite:///{raw}"), make_engine(url)
    create_schema(source)
    create_schema(target_engine)
    from detente.store.raw import RAW

    with source.connect() as src, target_engine.begin() as dst:
        result = src.execution_options(stream_results=True).execute(select(RAW))
        for part in result.mappings().partitions(5_000):
            dst.execute(RAW.insert(), [dict(r) for r in part])
    source.dispose()
    target_engine.dispose()
    return url


def drop(url: str, postgres: str | None) -> None:
    if postgres is None:
        return
    admin = create_engine(postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


def touch(url: str, share: float, seed: int) -> int:
    """Change one harmless field of ``share`` of the records of each object, as a pull would."""
    from detente.store.engine import make_engine
    from detente.store.raw import RAW

    engine = make_engine(url)
    rng = random.Random(seed)
    now = datetime.now(UTC)
    changed = 0
    with engine.begin() as conn:
        for (system, object_name), field in TOUCH.items():
            ids = sorted(conn.execute(select(RAW.c.record_id).where(
                RAW.c.system == system, RAW.c.object == object_name, RAW.c.deleted.is_(False))).scalars())
            chosen = rng.sample(ids, max(1, int(len(ids) * share))) if ids else []
            rows = conn.execute(select(RAW.c.record_id, RAW.c.data, RAW.c.modified_at).where(
                RAW.c.system == system, RAW.c.object == object_name, RAW.c.record_id.in_(chosen))).all()
            params = []
            for r in rows:
                data = dict(r.data)
                if system == "hubspot":
                    data["properties"] = {**data.get("properties", {}), field: f"touched {rng.random():.6f}"}
                else:
                    data[field] = f"touched {rng.random():.6f}"
                params.append({"k_id": r.record_id, "k_data": data,
                               "k_modified": r.modified_at + timedelta(seconds=1)})
            if params:
                conn.execute(update(RAW).where(RAW.c.system == system, RAW.c.object == object_name,
                                               RAW.c.record_id == bindparam("k_id"))
                             .values(data=bindparam("k_data"), modified_at=bindparam("k_modified"),
                                     dirty=True, pulled_at=now), params)
            changed += len(params)
    engine.dispose()
    return changed


# -- one measured run, in its own process ---------------------------------------------------


def measure(url: str) -> dict[str, Any]:
    from detente.logs import configure_logging
    from detente.normalize.run import normalize
    from detente.store.engine import make_engine

    configure_logging("warning", json=True)
    engine = make_engine(url)
    before = peak_rss_mb()
    started = time.monotonic()
    report = normalize(engine, now=datetime.now(UTC))
    seconds = time.monotonic() - started
    with engine.connect() as conn:
        sizes = {t: conn.execute(select(func.count()).select_from(text(t))).scalar() for t in (
            "raw_records", "people", "activities", "transitions", "opportunities")}
    return {"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "rss_before_mb": before,
            "stages": report.seconds, "sizes": sizes, "counts": dict(report.counts)}


def measured(script: str, *args: str) -> dict[str, Any]:
    """Run ``script`` with ``args`` in a child process (so its peak memory is its own) and
    return the JSON it prints last; the benches' measured runs go through here."""
    out = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"the measured run failed:\n{out.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def child(url: str) -> dict[str, Any]:
    return measured(__file__, "--measure", url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("size", nargs="?", type=int, default=20_000, help="people in the sandbox world")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "detente-bench-normalize")
    parser.add_argument("--postgres", help="also (only) run on this PostgreSQL server (a database is created)")
    parser.add_argument("--share", type=float, default=0.01, help="share of records changed before the incremental run")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    raw, pull_seconds = pulled_store(args.size, args.seed, args.cache)
    if pull_seconds == pull_seconds:
        print(f"pulled over HTTPS in {pull_seconds:.0f} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="detente-bench-") as tmp:
        url = working_copy(raw, args.postgres, Path(tmp))
        try:
            first = child(url)
            changed = touch(url, args.share, args.seed)
            again = child(url)
            idle = child(url)
        finally:
            drop(url, args.postgres)
    backend = "postgresql" if args.postgres else "sqlite"
    sizes = first["sizes"]
    rows = sizes["raw_records"]
    print(f"\nnormalize, {args.size} people, {backend}: {rows} raw rows -> {sizes['people']} people, "
          f"{sizes['activities']} activities, {sizes['transitions']} transitions, "
          f"{sizes['opportunities']} opportunities")
    print(f"  first run (everything)   {first['seconds']:8.1f} s  {rows / first['seconds']:8.0f} raw rows/s  "
          f"peak RSS {first['peak_rss_mb']:.0f} MB (at start {first['rss_before_mb']:.0f} MB)")
    print("    stages: " + ", ".join(f"{k} {s:.1f} s" for k, s in first["stages"].items()))
    print(f"  after {changed} records changed ({args.share:.0%}) {again['seconds']:6.1f} s  "
          f"peak RSS {again['peak_rss_mb']:.0f} MB")
    print("    stages: " + ", ".join(f"{k} {s:.1f} s" for k, s in again["stages"].items()))
    print(f"  nothing to do            {idle['seconds']:8.2f} s")


if __name__ == "__main__":
    main()
