"""What the audit costs: a full audit of N people (as after a rules change), an incremental
audit after 1% of the people changed, and a run with nothing to do; wall time and peak memory.

A sandbox world of ``--base`` people is pulled over HTTPS and normalized once (kept in
``--cache``), then its unified tables are tiled into a store of N people: each copy gets its
own ids, record ids and emails, so the copies are distinct people with the same realistic
histories, owners and clocks. Each measurement runs in a child process, so the peak
resident memory reported is the audit's own.

    python bench/audit.py 1000000
    python bench/audit.py 100000 --base 2000
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, inspect, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from normalize import measured, peak_rss_mb, pulled_store

RULES = Path(__file__).resolve().parents[1] / "config" / "rules.yaml"
# Per table: the integer columns that point at a tiled table (by which table) and the text
# columns holding CRM record ids (made unique per copy with a suffix).
INTS = {
    "people": {"id": "people"},
    "person_records": {"person_id": "people"},
    "transitions": {"id": "transitions", "person_id": "people", "opportunity_id": "opportunities"},
    "activities": {"id": "activities", "person_id": "people", "opportunity_id": "opportunities",
                   "copy_of": "activities"},
    "opportunities": {"id": "opportunities", "person_id": "people"},
    "record_links": {"person_id": "people"},
}
IDS = {
    "people": ("salesforce_lead_id", "salesforce_contact_id", "hubspot_contact_id"),
    "person_records": ("record_id",),
    "transitions": ("record_id",),
    "activities": ("record_id", "who_id", "what_id"),
    "opportunities": ("salesforce_id", "hubspot_deal_id", "salesforce_contact_id", "salesforce_lead_id",
                      "hubspot_contact_id"),
    "record_links": ("record_id", "ref_lead", "ref_contact", "ref_opportunity", "merged_into"),
}
EMAILS = {"people": ("email",), "record_links": ("email",)}
COPIED = ("owners", "campaigns", "normalize_state")


def normalized_base(size: int, seed: int, cache: Path) -> Path:
    """The base world pulled and normalized once."""
    from detente.normalize.run import normalize
    from detente.store.engine import create_schema, make_engine

    raw, _ = pulled_store(size, seed, cache)
    done = raw.with_name("normalized.db")
    if not done.exists():
        partial = raw.with_name("normalized.partial.db")
        shutil.copyfile(raw, partial)
        engine = make_engine(f"sqlite:///{partial}")
        create_schema(engine)
        normalize(engine, now=datetime.now(UTC))
        engine.dispose()
        partial.rename(done)
    return done


def tile(base: Path, people: int, into: Path, ints: dict[str, dict[str, str]] | None = None,
         ids: dict[str, tuple[str, ...]] | None = None) -> str:
    """A store of ``people`` people: copies of the base world's unified tables (``ints`` and
    ``ids`` name more tables to copy, as ``INTS`` and ``IDS`` do)."""
    ints, ids = {**INTS, **(ints or {})}, {**IDS, **(ids or {})}
    from detente.store.engine import create_schema, make_engine

    url = f"sqlite:///{into / 'audit.db'}"
    engine = make_engine(url)
    create_schema(engine)
    columns = {t: [c["name"] for c in inspect(engine).get_columns(t)] for t in ints}
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    db = sqlite3.connect(into / "audit.db", isolation_level=None)
    db.execute("PRAGMA foreign_keys = OFF")  # a bulk copy: rows refer to rows of the same copy not yet in
    db.execute(f"ATTACH DATABASE '{base}' AS base")
    db.execute("BEGIN")
    base_people = db.execute("SELECT count(*) FROM base.people").fetchone()[0]
    maxima = {t: db.execute(f"SELECT coalesce(max(id), 0) FROM base.{t}").fetchone()[0] + 1
              for t in ("people", "transitions", "activities", "opportunities")}
    copies = -(-people // base_people)
    in_base = {name for (name,) in db.execute("SELECT name FROM base.sqlite_master WHERE type = 'table'")}
    for table in COPIED:
        if table in tables and table in in_base:  # a base made under an older schema may lack one
            db.execute(f"INSERT INTO {table} SELECT * FROM base.{table}")
    for k in range(copies):
        for table, cols in columns.items():
            exprs = []
            for col in cols:
                if col in ints[table]:
                    exprs.append(f"{col} + {k * maxima[ints[table][col]]}")
                elif col in ids.get(table, ()):
                    exprs.append(f"CASE WHEN {col} IS NULL THEN NULL ELSE {col} || '~{k}' END")
                elif col in EMAILS.get(table, ()):
                    exprs.append(f"replace({col}, '@', '+{k}@')")
                else:
                    exprs.append(col)
            db.execute(f"INSERT INTO {table} ({', '.join(cols)}) SELECT {', '.join(exprs)} FROM base.{table}")
    # The raw layer only needs the person records' keys and pull times (what changed when).
    db.execute("INSERT INTO raw_records (system, object, record_id, modified_at, deleted, data, first_pulled_at,"
               " pulled_at, dirty) SELECT system, object, record_id, '2026-01-01 00:00:00.000000', 0, '{}',"
               " '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000', 0 FROM person_records")
    db.execute("COMMIT")
    db.execute("ANALYZE")
    db.close()
    return url


def change(url: str, share: float, seed: int) -> int:
    """Re-pull ``share`` of the people's records, a day later, with a new status on each lead."""
    from detente.store.engine import make_engine

    engine = make_engine(url)
    with engine.begin() as conn:
        ids = [r[0] for r in conn.execute(text("SELECT id FROM people WHERE NOT deleted"))]
        picked = sorted(random.Random(seed).sample(ids, max(1, int(len(ids) * share))))
        later = "2026-01-02 00:00:00.000000"
        for i in range(0, len(picked), 5000):
            part = ",".join(str(x) for x in picked[i:i + 5000])
            conn.exec_driver_sql(f"UPDATE raw_records SET pulled_at = '{later}' WHERE (system, object, record_id) IN"
                                 f" (SELECT system, object, record_id FROM person_records WHERE person_id IN ({part}))")
            conn.exec_driver_sql(f"UPDATE people SET salesforce_status = 'Working - Contacted' WHERE id IN ({part})"
                                 " AND salesforce_lead_id IS NOT NULL AND NOT salesforce_converted")
    engine.dispose()
    return len(picked)


def measure(url: str, full: bool) -> dict[str, Any]:
    from detente.logs import configure_logging
    from detente.reconcile.ledger import reconcile
    from detente.rules import load_rules
    from detente.store.engine import make_engine

    configure_logging("warning", json=True)
    engine: Engine = make_engine(url)
    rules = load_rules(RULES)
    now = datetime(2026, 11, 16, 15, 0, tzinfo=UTC) + timedelta(days=1)
    before = peak_rss_mb()
    started = time.monotonic()
    counts = reconcile(engine, rules, now, full=full)
    seconds = time.monotonic() - started
    with engine.connect() as conn:
        people = conn.execute(select(func.count()).select_from(text("people"))).scalar_one()
        findings = conn.execute(text("SELECT count(*) FROM findings WHERE status = 'open'")).scalar_one()
    return {"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "rss_before_mb": before, "counts": counts,
            "people": people, "open_findings": findings}


def child(url: str, full: bool = False) -> dict[str, Any]:
    return measured(__file__, "--measure", url, *(["--full"] if full else []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("people", nargs="?", type=int, default=100_000, help="people in the audited store")
    parser.add_argument("--base", type=int, default=5_000, help="people in the sandbox world that is tiled")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "detente-bench-normalize")
    parser.add_argument("--share", type=float, default=0.01, help="share of people changed before the incremental run")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--full", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.full)))
        return
    base = normalized_base(args.base, args.seed, args.cache)
    with tempfile.TemporaryDirectory(prefix="detente-bench-audit-") as tmp:
        started = time.monotonic()
        url = tile(base, args.people, Path(tmp))
        print(f"store of {args.people} people tiled from a {args.base}-person world in "
              f"{time.monotonic() - started:.0f} s", flush=True)
        first = child(url, full=True)
        changed = change(url, args.share, args.seed)
        again = child(url)
        idle = child(url)
    print(f"\naudit, {first['people']} people, sqlite: {first['open_findings']} open findings")
    print(f"  full audit (rules changed)     {first['seconds']:8.1f} s  peak RSS {first['peak_rss_mb']:.0f} MB  "
          f"{first['counts']}")
    print(f"  after {changed} people changed ({args.share:.0%}) {again['seconds']:6.1f} s  "
          f"peak RSS {again['peak_rss_mb']:.0f} MB  {again['counts']}")
    print(f"  nothing to do                  {idle['seconds']:8.2f} s  {idle['counts']}")


if __name__ == "__main__":
    main()
