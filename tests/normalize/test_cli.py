"""``detente normalize`` as a user runs it: a real process on a store, with the rules' mappings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from detente.connectors.base import Page, Record
from detente.store.engine import create_schema, make_engine
from detente.store.raw import commit_page

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


def run(*args: str, store: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "detente", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env={**os.environ, "DETENTE_STORE__URL": store, "DETENTE_CONFIG": "",
                                        "PYTHONPATH": str(REPO)})


def test_normalize_links_people_and_fills_mapped_fields(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = make_engine(url)
    create_schema(engine)
    commit_page(engine, "salesforce", Page("Lead", [Record("Lead", "00Q000000000001AAA", T0, {
        "Id": "00Q000000000001AAA", "Email": "ann@acme.com", "Status": "Open - Not Contacted",
        "Segment__c": "Mid-market"})]), T0)
    commit_page(engine, "hubspot", Page("contacts", [Record("contacts", "101", T0, {
        "id": "101", "properties": {"email": "ann@acme.com", "lifecyclestage": "lead"}})]), T0)
    rules = tmp_path / "rules.yaml"
    rules.write_text((REPO / "config" / "rules.yaml").read_text().replace(
        "fields:\n", "fields:\n  segment:\n    type: text\n    salesforce: Lead.Segment__c\n", 1))
    (tmp_path / "d.yaml").write_text("log:\n  level: warning\n")
    result = run("--config", str(tmp_path / "d.yaml"), "normalize", "--rules", str(rules), store=url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "people.linked: 1" in result.stdout
    with engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM people")).one()
    assert (row.salesforce_lead_id, row.hubspot_contact_id) == ("00Q000000000001AAA", "101")
    attributes = row.attributes if isinstance(row.attributes, dict) else json.loads(row.attributes)
    assert attributes == {"segment": "Mid-market"}


def test_normalize_refuses_rules_with_problems(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nfields:\n  segment:\n    salesforce: Lead.Segment__c\n")
    (tmp_path / "d.yaml").write_text("log:\n  level: warning\n")
    result = run("--config", str(tmp_path / "d.yaml"), "normalize", "--rules", str(rules),
                 store=f"sqlite:///{tmp_path / 'store.db'}", cwd=tmp_path)
    assert result.returncode == 1
    assert "problem(s) in" in result.stderr
    assert "Traceback" not in result.stderr
