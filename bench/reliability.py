"""The README's "Reliability" figures, produced by one command.

    .venv/bin/python bench/reliability.py                  # full strength (about half an hour on 2 cores)
    .venv/bin/python bench/reliability.py --write-readme   # and replace the README's section with the result
    .venv/bin/python bench/reliability.py --kills 10 --storm-size 2000   # a quick look

What runs, each against the sandbox CRMs over HTTPS with the real client libraries:

1. The crash harness (tests/daemon/harness.py), twice: ``detente run`` on SQLite, and two
   ``detente run`` on one PostgreSQL store, each killed with SIGKILL ``--kills`` times at
   seeded random moments (a quarter of the restarts arm a write-back failpoint, so the daemon
   also dies inside a send) while the harness keeps changing the world; then the store is
   compared with a clean pull of the final world and detente's outbox with the sandbox's
   write log. PostgreSQL: DETENTE_TEST_POSTGRES_URL, or postgres@127.0.0.1:5432.
2. The fault storm (bench/fault_storm.py): a full pull, audit and write-back of a
   ``--storm-size`` world under 20% 429 (half without Retry-After), 5% 5xx, an expired session
   every 1,000 calls, 2% partial batch failures and slow pages, against a clean run of the
   same world: same store, same CRM state, and the calls it took.
3. Hostile input: the property-based tests (hypothesis) on every parser of API data, typed
   values and settings files, the malformed-rules corpus (``detente rules check`` and the
   live daemon), counted from hypothesis's statistics.
4. Secrecy: tests/test_secrecy.py, a full cycle with made-up credentials, every surface scanned.

The figures are printed as the README section, and as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:logging"]
HOSTILE = ["tests/hostile", "tests/rules/test_corpus.py", "tests/test_settings.py"]
LIVE_CORPUS = "tests/daemon/test_rules_corpus_live.py"
SECRECY = "tests/test_secrecy.py"


def say(line: str) -> None:
    print(line, flush=True)


# -- 1. crashes --------------------------------------------------------------------------------------


def postgres_url() -> str:
    return os.environ.get("DETENTE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def crashes(kills: int, size: int, seed: int) -> list[dict[str, Any]]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from tests.daemon.harness import crash_run

    out = []
    with tempfile.TemporaryDirectory(prefix="detente-crash-") as tmp:
        work = Path(tmp) / "sqlite"
        work.mkdir()
        say(f"crash harness: SQLite, one daemon, {kills} kills")
        report = crash_run(work, f"sqlite:///{work / 'detente.db'}", kills=kills, seed=seed, size=size,
                           daemons=1, say=lambda s: say("  " + s))
        out.append(_crash_figures(report))
    admin = create_engine(postgres_url(), isolation_level="AUTOCOMMIT")
    name = f"detente_crash_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        say(f"crash harness on PostgreSQL skipped: cannot reach {make_url(postgres_url()).host}: {exc}")
        return out
    try:
        with tempfile.TemporaryDirectory(prefix="detente-crash-") as tmp:
            url = make_url(postgres_url()).set(database=name).render_as_string(hide_password=False)
            say(f"crash harness: PostgreSQL, two daemons, {kills} kills")
            report = crash_run(Path(tmp), url, kills=kills, seed=seed + 1, size=size, daemons=2,
                               say=lambda s: say("  " + s))
            out.append(_crash_figures(report))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return out


def _crash_figures(report: Any) -> dict[str, Any]:
    figures = {
        "store": report.backend, "daemons": report.daemons, "seed": report.seed, "people": report.size,
        "kills": report.kills, "failpoint_kills": report.failpoint_kills, "survived": report.survived,
        "running_at_kill": dict(report.running_at_kill.most_common()), "changes": report.changes,
        "records_compared": report.records_compared, "people_compared": report.people_compared,
        "writes_checked": report.writes_checked, "log_entries_checked": report.log_entries_checked,
        "tasks_checked": report.tasks_checked, "runs_interrupted": report.interrupted,
        "seconds": round(report.seconds, 1), "problems": report.problems,
    }
    say(f"  -> {json.dumps({k: v for k, v in figures.items() if k != 'problems'})}")
    for problem in report.problems:
        say(f"  PROBLEM {problem[:2000]}")
    return figures


# -- 2. the fault storm --------------------------------------------------------------------------------


def fault_storm(size: int, seed: int, expire_every: int) -> dict[str, Any]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("fault_storm", ROOT / "bench" / "fault_storm.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with tempfile.TemporaryDirectory(prefix="detente-storm-") as tmp:
        say(f"fault storm: {size:,} people")
        figures: dict[str, Any] = module.storm(size, seed, Path(tmp), say=lambda s: say("  " + str(s)),
                                               profile={"expire_session_every": expire_every})
    figures["expire_session_every"] = expire_every
    return figures


# -- 3 and 4. hostile input and secrecy, from their tests ------------------------------------------------


def _pytest(*args: str, timeout: float = 1800) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETENTE_") or k == "DETENTE_TEST_POSTGRES_URL"}
    done = subprocess.run([*PYTEST, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    return done.returncode, done.stdout + done.stderr


def hostile() -> dict[str, Any]:
    say("hostile input: property-based tests, settings files, the malformed-rules corpus")
    code, out = _pytest(*HOSTILE, "--hypothesis-show-statistics")
    cases = [int(n) for n in re.findall(r"- (\d+) passing, \d+ failing", out)]
    failing = sum(int(n) for n in re.findall(r"- \d+ passing, (\d+) failing", out))
    corpus = len(list((ROOT / "tests" / "rules" / "corpus").glob("*.yaml")))
    live_code, live_out = _pytest(LIVE_CORPUS) if (ROOT / LIVE_CORPUS).exists() else (None, "")
    figures = {
        "property_tests": len(cases), "generated_inputs": sum(cases), "failing": failing,
        "tests_passed": _passed(out), "tests_failed": code != 0,
        "rules_corpus_files": corpus, "rules_corpus_against_the_daemon": None if live_code is None else live_code == 0,
    }
    say(f"  -> {json.dumps(figures)}")
    if code != 0:
        say(out[-3000:])
    if live_code not in (None, 0):
        say(live_out[-3000:])
    return figures


def secrecy() -> dict[str, Any]:
    say("secrecy: a full cycle with made-up credentials, every surface scanned")
    code, out = _pytest(SECRECY, "-s")
    scanned = re.search(r"scanned (\{.*?\}|Counter\(\{.*?\}\));", out)
    counts: dict[str, int] = {}
    if scanned:
        counts = {k: int(v) for k, v in re.findall(r"'([^']+)': (\d+)", scanned.group(1))}
    figures = {"passed": code == 0, "secrets_found": 0 if code == 0 else None, "scanned": counts,
               "tests_passed": _passed(out)}
    say(f"  -> {json.dumps(figures)}")
    if code != 0:
        say(out[-3000:])
    return figures


def _passed(out: str) -> int:
    found = re.search(r"(\d+) passed", out)
    return int(found.group(1)) if found else 0


# -- the README section ----------------------------------------------------------------------------------


def section(results: dict[str, Any], command: str) -> str:
    lines = ["## Reliability", "",
             f"Produced by `{command}` on {results['date']} ({results['machine']}); the short form of the crash "
             "harness runs in `make test` (tests/daemon/test_crash.py).", ""]
    lines += ["| Crash harness | kills survived | records compared | people compared | writes checked "
              "| write-log entries matched | tasks checked | runs marked interrupted | problems |",
              "|---|---|---|---|---|---|---|---|---|"]
    for c in results["crashes"]:
        label = f"{c['store']}, {c['daemons']} daemon{'s' if c['daemons'] > 1 else ''}, {c['people']} people"
        lines.append(f"| {label} | {c['survived']} ({c['kills']} SIGKILL + {c['failpoint_kills']} at write-back "
                     f"failpoints) | {c['records_compared']:,} | {c['people_compared']:,} | {c['writes_checked']:,} | "
                     f"{c['log_entries_checked']:,} | {c['tasks_checked']:,} | {c['runs_interrupted']} | "
                     f"{len(c['problems'])} |")
    running = {}
    for c in results["crashes"]:
        for k, v in c["running_at_kill"].items():
            running[k] = running.get(k, 0) + v
    if running:
        lines += ["", "Where the SIGKILLs landed (the run the store had under way): " +
                  ", ".join(f"{k} {v}" for k, v in sorted(running.items(), key=lambda kv: -kv[1])) + "."]
    storm = results.get("storm")
    if storm:
        lines += ["", "| Fault storm | people | records compared | writes compared | faults injected | calls, clean "
                  "| calls, storm | ratio | apply rounds | same store and CRM state |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        injected = storm.get("faults_injected", {})
        total_injected = sum(sum(v.values()) if isinstance(v, dict) else v for v in injected.values())
        clean, stormy = storm.get("calls_clean", {}), storm.get("calls_storm", {})
        lines.append(f"| 20% 429 (half without Retry-After), 5% 5xx, an expired session every "
                     f"{storm['expire_session_every']:,} calls, 2% partial "
                     f"batch failures, slow pages | {storm.get('people', storm.get('size')):,} | "
                     f"{storm.get('records_compared', 0):,} | {storm.get('writes_compared', 0):,} | "
                     f"{total_injected:,} | {sum(clean.values()):,} | {sum(stormy.values()):,} | "
                     f"{storm.get('ratio_total', 0):.2f}x | {storm.get('apply_rounds')} | "
                     f"{'yes' if storm.get('identical') else 'NO'} |")
        expired = sum(v.get("expired_session", 0) for v in injected.values() if isinstance(v, dict))
        lines += ["", f"Sessions found expired and renewed in the storm: {expired:,}" + (
            f" (only Salesforce sessions expire, and Salesforce answered {stormy.get('salesforce', 0):,} calls, "
            f"Bulk API 2.0 reading its large objects, fewer than one expiry interval; "
            f"`--storm-size 20000 --expire-every 25` exercises the renewal)"
            if not expired else "") + "."]
    h, s = results["hostile"], results["secrecy"]
    lines += ["", f"Hostile input: {h['generated_inputs']:,} generated inputs across {h['property_tests']} "
              f"property-based tests (hypothesis) on the parsers of API payloads, typed values and settings "
              f"files, {h['failing']} failing; {h['rules_corpus_files']} malformed rules files rejected with a "
              f"located message by `detente rules check`"
              + (" and by the running daemon, which kept its last good rules" if h["rules_corpus_against_the_daemon"]
                 else "") + ".",
              "", f"Secrecy: a full cycle (daemon, `detente cycle`, `detente sync`, digest, webhook, dashboard) with "
              f"made-up credentials; scanned {', '.join(f'{v:,} {k}' for k, v in s['scanned'].items())}: "
              f"{'0 secrets found' if s['passed'] else 'SECRETS FOUND (see the test output)'}.", ""]
    return "\n".join(lines)


def write_readme(text: str) -> None:
    readme = ROOT / "README.md"
    body = readme.read_text(encoding="utf-8")
    start = body.find("## Reliability\n")
    if start == -1:
        anchor = body.find("## Development\n")
        body = body[:anchor] + text + "\n" + body[anchor:] if anchor != -1 else body + "\n" + text
    else:
        end = body.find("\n## ", start + 1)
        body = body[:start] + text + ("\n" + body[end + 1:] if end != -1 else "")
    readme.write_text(body, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=50, help="SIGKILLs per crash-harness run (default 50)")
    parser.add_argument("--crash-size", type=int, default=300, help="people in the crash harness's world")
    parser.add_argument("--storm-size", type=int, default=100_000, help="people in the fault storm's world")
    parser.add_argument("--expire-every", type=int, default=1000,
                        help="the storm's Salesforce session expires every N calls (a small world makes few calls)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-storm", action="store_true")
    parser.add_argument("--write-readme", action="store_true", help="replace README.md's Reliability section")
    args = parser.parse_args()
    from detente.logs import configure_logging

    configure_logging("warning")
    began = time.monotonic()
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} cores"}
    results["crashes"] = crashes(args.kills, args.crash_size, args.seed)
    results["storm"] = None if args.skip_storm else fault_storm(args.storm_size, args.seed, args.expire_every)
    results["hostile"] = hostile()
    results["secrecy"] = secrecy()
    results["seconds"] = round(time.monotonic() - began, 1)
    command = "python bench/reliability.py" + "".join(
        f" --{k.replace('_', '-')} {v}" for k, v in (("kills", args.kills), ("crash_size", args.crash_size),
                                                     ("storm_size", args.storm_size),
                                                     ("expire_every", args.expire_every), ("seed", args.seed))
        if v != parser.get_default(k)) + (" --skip-storm" if args.skip_storm else "")
    text = section(results, command)
    print("\n" + text)
    print(json.dumps(results, default=str))
    if args.write_readme:
        write_readme(text)
    failed = any(c["problems"] for c in results["crashes"]) or (results["storm"] and not results["storm"].get(
        "identical")) or results["hostile"]["tests_failed"] or not results["secrecy"]["passed"]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
