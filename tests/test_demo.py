"""The README's first command keeps working: the demo runs the cycle end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_demo_pulls_links_and_audits_and_finds_what_was_planted() -> None:
    result = subprocess.run([sys.executable, "-m", "detente", "demo", "--size", "300", "--seed", "5"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Salesforce, read with simple-salesforce:" in out
    assert "HubSpot, read with hubspot-api-client:" in out
    cycle = out.split("One detente cycle with write-back on")[1].splitlines()[1:4]
    assert [line.split()[:2] for line in cycle] == [["pull", "ok"], ["audit", "ok"], ["writeback", "ok"]]
    assert "The funnel," in out and "SLA compliance" in out and "Open findings:" in out
    written = out.split("Written back")[1].splitlines()[1:3]
    assert all(int(line.split()[1]) > 0 for line in written), written  # field values in both CRMs
    table = out.split("what detente's audit found:")[1].split("\nAPI calls served")[0].splitlines()[2:]
    audited = [line.split() for line in table if line.startswith("  ")]
    assert all(len(cols) == 3 for cols in audited), audited  # no "(not planted)" line: nothing unexplained
    assert {cols[0] for cols in audited} >= {"definition_drift", "missed_label", "stage_disagreement",
                                             "mql_handed_over_late", "first_contact_missing", "idle_with_sales",
                                             "closed_lost_without_reason", "duplicate_lead_email"}
    for kind, planted, found in audited:
        assert planted == found, f"{kind}: planted {planted}, found {found}"


def test_demo_keep_running_serves_the_dashboard_of_its_world_until_stopped() -> None:
    import re
    import signal
    import time

    import requests

    proc = subprocess.Popen([sys.executable, "-m", "detente", "demo", "--size", "150", "--seed", "3",
                             "--keep-running"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            cwd=ROOT)
    try:
        assert proc.stdout is not None
        url = None
        deadline = time.monotonic() + 240
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "the demo ended before serving the dashboard"
            found = re.search(r"the dashboard of this world: (http://127\.0\.0\.1:\d+/\?period=\S+)", line)
            url = found[1] if found else None
        assert url is not None
        session = requests.Session()
        session.trust_env = False
        page = session.get(url, timeout=60)
        assert page.status_code == 200 and 'data-metric="' in page.text
        api = session.get(url.replace("/?", "/api/report?"), timeout=60).json()
        assert api["funnel"]["cohort"] > 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
