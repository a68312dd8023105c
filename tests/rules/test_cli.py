"""``detente rules ...`` as an admin runs it: a real process, its output and exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from detente.store.engine import create_schema, make_engine
from detente.store.tables import Owner
from tests.rules.helpers import BASE, NOW, SHIPPED, insert_people, insert_rows, write

ROOT = Path(__file__).parents[2]


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "detente", "rules", *args], capture_output=True, text=True,
                            timeout=120, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "Traceback" not in result.stdout + result.stderr
    return result


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = make_engine(url)
    create_schema(engine)
    with engine.begin() as conn:
        insert_rows(conn, Owner, [{"id": 1, "email": "rep@acme.com", "team": "Sales"}])
        insert_people(conn, [
            {"id": 1, "email": "ana@acme.com", "email_domain": "acme.com", "score": 72.0,
             "created_at": NOW - timedelta(days=1)},
            {"id": 2, "email": "bob@gmail.com", "email_domain": "gmail.com", "score": 35.0,
             "salesforce_owner_id": 1, "salesforce_lead_id": "00Q1"},
        ])
    engine.dispose()
    return url


def test_check_passes_on_the_shipped_rules_by_default() -> None:
    result = run("check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok: config/rules.yaml: 9 stages, 3 SLAs, 3 teams; rules version ")


def test_check_prints_every_problem_and_exits_non_zero(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("score >= 50", "scor >= 50").replace("owner: marketing\n    after",
                                                                               "owner: marketting\n    after"))
    result = run("check", str(path))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{path}:16:12: stages.mql.owner: unknown team 'marketting'")
    assert lines[1].startswith(f"{path}:18:17: stages.mql.definition: unknown field 'scor'")
    assert result.stderr.strip() == f"2 problem(s) in {path}"


@pytest.mark.parametrize("content", [b"\xff\xfe\x00junk", b"version: [", b"", b"- a\n- b\n", b"{{{{{{{{"])
def test_check_never_shows_a_traceback(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "rules.yaml"
    path.write_bytes(content)
    result = run("check", str(path))
    assert result.returncode == 1
    assert result.stdout.startswith(f"{path}:")


def test_check_of_an_empty_folder(tmp_path: Path) -> None:
    result = run("check", str(tmp_path))
    assert result.returncode == 1
    assert "the folder holds no .yaml or .yml files" in result.stdout


def test_glossary_markdown_and_html(tmp_path: Path) -> None:
    md = run("glossary", str(SHIPPED))
    assert md.returncode == 0 and md.stdout.startswith("# The agreement")
    out = tmp_path / "handbook.html"
    html = run("glossary", str(SHIPPED), "--format", "html", "--output", str(out))
    assert html.returncode == 0 and "wrote" in html.stdout
    assert out.read_text().startswith("<!doctype html>")
    assert run("glossary", "--format", "pdf").returncode == 2


def test_glossary_of_broken_rules_lists_the_problems(tmp_path: Path) -> None:
    result = run("glossary", str(write(tmp_path, BASE.replace("score >= 50", "score >="))))
    assert result.returncode == 1
    assert "the condition is incomplete" in result.stdout


def test_diff_over_a_store(tmp_path: Path, store_url: str) -> None:
    new = write(tmp_path, SHIPPED.read_text().replace("score >= 50\n", "score >= 80\n"), "new.yaml")
    result = run("diff", str(SHIPPED), str(new), "--store", store_url, "--as-of", NOW.isoformat())
    assert result.returncode == 0, result.stderr
    assert "mql: 1 -> 0  (+0 entering, -1 leaving)" in result.stdout
    assert "leaving: ana@acme.com" in result.stdout
    as_json = run("diff", str(SHIPPED), str(new), "--store", store_url, "--json", "--as-of", "2026-11-16T15:00:00Z")
    assert json.loads(as_json.stdout)["stages"][2]["leaving"]["count"] == 1


def test_diff_against_a_store_without_the_schema_is_one_line(tmp_path: Path) -> None:
    result = run("diff", str(SHIPPED), str(SHIPPED), "--store", f"sqlite:///{tmp_path / 'empty.db'}")
    assert result.returncode == 2
    assert result.stderr.startswith("rules diff over the store failed: OperationalError:")


def test_explain_one_person(store_url: str) -> None:
    result = run("explain", "bob@gmail.com", "--stage", "mql", "--rules", str(SHIPPED), "--store", store_url,
                 "--as-of", NOW.isoformat())
    assert result.returncode == 0, result.stderr
    assert "mql: failed" in result.stdout
    assert "FAILED   score 35 < 50" in result.stdout
    by_condition = run("explain", "00Q1", "--condition", "team = 'sales'", "--rules", str(SHIPPED),
                       "--store", store_url)
    assert "held     team 'sales' = 'sales'" in by_condition.stdout
    missing = run("explain", "nobody", "--rules", str(SHIPPED), "--store", store_url)
    assert missing.returncode == 2 and "no person 'nobody'" in missing.stderr
    bad = run("explain", "1", "--condition", "scor > 1", "--rules", str(SHIPPED), "--store", store_url)
    assert bad.returncode == 1 and "--condition:1: unknown field 'scor'" in bad.stdout


def test_sql_shows_the_statement_per_dialect() -> None:
    lite = run("sql", str(SHIPPED))
    pg = run("sql", str(SHIPPED), "--dialect", "postgresql")
    assert lite.returncode == pg.returncode == 0
    assert "lower(p.email_domain) NOT IN" in lite.stdout
    assert "translate(p.email_domain" in pg.stdout
