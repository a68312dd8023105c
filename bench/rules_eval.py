"""How long the shipped stage definitions and labels take over a million people in SQLite.

Builds a migrated SQLite store and fills it set-based (one INSERT ... SELECT over a
recursive sequence, no Python loop): people with scores, domains (a fifth on free email
domains), statuses and lifecycle stages in both CRMs, owners on three teams, and an
opportunity for one person in twenty. Then, in a fresh process so its memory is its own,
evaluates every definition and label of ``config/rules.yaml`` in the one set-based
statement detente runs, streams all rows into Python and counts people per stage.
Reports the time and the evaluating process's peak memory (target: <= 10 s for 1,000,000
people on a 2-core machine).

    python bench/rules_eval.py --people 1000000
    python bench/rules_eval.py --store sqlite:////tmp/rules-bench.db --keep   # reuse a store
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detente.rules import load_rules  # noqa: E402
from detente.rules.evaluate import StageEvaluator, unpack  # noqa: E402
from detente.store.engine import create_schema, make_engine  # noqa: E402

NOW = "2026-11-16T15:00:00+00:00"
FREE = ("gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "aol.com")

# A deterministic pseudo-random number in [0, m) from the row number n and a salt k.
def _h(k: int, m: int) -> str:
    return f"(((n * 2654435761 + {k * 40503}) % 1000003) % {m})"


def _pick(k: int, values: tuple[str | None, ...]) -> str:
    whens = " ".join(f"WHEN {i} THEN {_sql(v)}" for i, v in enumerate(values))
    return f"(CASE {_h(k, len(values))} {whens} END)"


def _sql(value: str | None) -> str:
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"


PEOPLE = f"""
WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < :people)
INSERT INTO people (id, email, email_domain, country, source, channel, offer, score, salesforce_status,
    salesforce_converted, hubspot_lifecyclestage, hubspot_lead_status, disqualified_reason, salesforce_owner_id,
    hubspot_owner_id, activity_count, created_at, modified_at, deleted, attributes)
SELECT n,
    'p' || n || '@' || d.domain,
    d.domain,
    {_pick(3, ("US", "CA", "GB", "DE", None))},
    {_pick(4, ("Web", "Event", "Partner", "Outbound"))},
    {_pick(5, ("Organic", "Paid", "Event", "Referral"))},
    {_pick(6, ("Demo Request", "Ebook", "Webinar", "Free Trial"))},
    CASE WHEN {_h(7, 20)} = 0 THEN NULL ELSE {_h(8, 101)} END,
    {_pick(9, ("Open - Not Contacted", "Marketing Qualified", "Working - Contacted", "Sales Qualified",
                "Nurture", "Closed - Converted", "Closed - Not Converted", None))},
    CASE WHEN {_h(10, 10)} = 0 THEN 1 ELSE 0 END,
    {_pick(11, ("subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity",
                 "customer", None))},
    {_pick(12, ("NEW", "OPEN", "IN_PROGRESS", "BAD_TIMING", None))},
    CASE WHEN {_h(13, 20)} = 0 THEN 'No Budget' END,
    CASE WHEN {_h(14, 10)} < 7 THEN 1 + {_h(15, 60)} END,
    CASE WHEN {_h(14, 10)} >= 7 THEN 1 + {_h(16, 60)} END,
    {_h(17, 13)},
    '2026-01-01 00:00:00.000000',
    '2026-11-01 00:00:00.000000',
    0,
    '{{}}'
FROM seq JOIN (SELECT 0 AS k, 'gmail.com' AS domain UNION ALL SELECT 1, 'yahoo.com' UNION ALL
               SELECT 2, 'acme.com' UNION ALL SELECT 3, 'corp.io' UNION ALL SELECT 4, 'example.org' UNION ALL
               SELECT 5, 'globex.com' UNION ALL SELECT 6, 'initech.com' UNION ALL SELECT 7, 'umbrella.co' UNION ALL
               SELECT 8, 'hooli.com' UNION ALL SELECT 9, 'stark.io') AS d ON d.k = {_h(2, 10)}
"""
OWNERS = """
WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 60)
INSERT INTO owners (id, email, name, team, active)
SELECT n, 'owner' || n || '@acme.com', 'Owner ' || n,
       CASE WHEN n <= 30 THEN 'Sales' WHEN n <= 50 THEN 'Marketing' ELSE 'Partner' END, n % 29 <> 0
FROM seq
"""
OPPORTUNITIES = """
INSERT INTO opportunities (person_id, name, stage, amount, is_closed, is_won, created_at, deleted)
SELECT id, 'Deal ' || id,
       CASE (id / 20) % 5 WHEN 0 THEN 'Closed Won' WHEN 1 THEN 'Closed Lost' ELSE 'Prospecting' END,
       1000 + id % 50000, (id / 20) % 5 IN (0, 1), (id / 20) % 5 = 0, '2026-06-01 00:00:00.000000', 0
FROM people WHERE id % 20 = 0
"""


def build(url: str, people: int) -> dict[str, float]:
    engine = make_engine(url)
    create_schema(engine)
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM opportunities"))
        conn.execute(text("DELETE FROM people"))
        conn.execute(text("DELETE FROM owners"))
        conn.execute(text(OWNERS))
        conn.execute(text(PEOPLE), {"people": people})
        conn.execute(text(OPPORTUNITIES))
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
    engine.dispose()
    return {"build_seconds": round(time.perf_counter() - started, 2)}


def evaluate(url: str, rules_path: Path) -> dict[str, Any]:
    """Run in its own process: evaluate every stage over the store, report time and peak memory."""
    from datetime import datetime

    rules = load_rules(rules_path)
    engine = make_engine(url)
    evaluator = StageEvaluator(rules)
    names = evaluator.names
    counts = dict.fromkeys(names, 0)
    labelled = {"salesforce": dict.fromkeys(names, 0), "hubspot": dict.fromkeys(names, 0)}
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with engine.connect() as conn:
        # Every person's three masks reach Python; people with the same masks are tallied together.
        combos = Counter(row[1:] for row in evaluator.rows(conn, datetime.fromisoformat(NOW)))
    for (definitions, salesforce, hubspot), people in combos.items():
        for name in unpack(definitions, names):
            counts[name] += people
        for name in unpack(salesforce, names):
            labelled["salesforce"][name] += people
        for name in unpack(hubspot, names):
            labelled["hubspot"][name] += people
    rows = sum(combos.values())
    seconds = time.perf_counter() - started
    engine.dispose()
    return {
        "people_evaluated": rows, "evaluate_seconds": round(seconds, 2),
        "people_per_second": round(rows / seconds) if seconds else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_evaluation_mb": round(rss_before / 1024, 1),
        "rules_version": rules.version, "definitions": counts, "labels": labelled,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--store", help="SQLite URL of the bench store (default: a temporary file)")
    parser.add_argument("--rules", type=Path, default=ROOT / "config" / "rules.yaml")
    parser.add_argument("--keep", action="store_true", help="reuse the store if it already has the people")
    parser.add_argument("--evaluate-only", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.evaluate_only:
        print(json.dumps(evaluate(args.evaluate_only, args.rules)))
        return
    workdir = tempfile.mkdtemp(prefix="rules-bench-")
    url = args.store or f"sqlite:///{Path(workdir) / 'bench.db'}"
    report: dict[str, Any] = {"people": args.people, "store": url}
    if not args.keep or not _has_people(url, args.people):
        report.update(build(url, args.people))
    child = subprocess.run([sys.executable, __file__, "--evaluate-only", url, "--rules", str(args.rules)],
                           capture_output=True, text=True, check=False)
    if child.returncode != 0:
        raise SystemExit(child.stderr)
    report.update(json.loads(child.stdout))
    report["target_seconds"] = 10
    report["within_target"] = report["evaluate_seconds"] <= 10 * args.people / 1_000_000
    print(json.dumps(report, indent=2))


def _has_people(url: str, people: int) -> bool:
    try:
        engine = make_engine(url)
        with engine.connect() as conn:
            found = conn.execute(text("SELECT count(*) FROM people")).scalar()
        engine.dispose()
        return bool(found == people)
    except Exception:
        return False


if __name__ == "__main__":
    main()
