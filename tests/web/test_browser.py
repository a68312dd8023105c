"""The dashboard in a real browser: ``detente serve`` as a process of its own over a SQLite store
holding the audited demo world, read by headless Chromium (Debian's, through Playwright): the
numbers it shows are the JSON ``detente report`` prints, and a finding's link opens the person's
explanation showing that finding."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.normalize.conftest import NOW, World
from tests.reconcile.conftest import RULES
from tests.web.conftest import PERIOD
from tests.web.support import assert_numbers_are_the_reports, expected_metrics

CHROMIUM = Path("/usr/bin/chromium")
AS_OF = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
READ_NUMBERS = """els => els.map(e => ({metric: e.dataset.metric, path: e.dataset.path, value: e.dataset.value,
                                        format: e.dataset.format, text: e.textContent}))"""


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's Chromium; without it the test is skipped, except on CI, where it fails."""
    if CHROMIUM.exists():
        return CHROMIUM
    message = (f"{CHROMIUM} is missing, so the browser test cannot run: install Debian's chromium "
               "(apt-get install chromium; .ci/run does so on CI)")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def module_store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The store is a SQLite file here (the package's default), for a server in another process."""
    return f"sqlite:///{tmp_path_factory.mktemp('browser') / 'detente.db'}"


@pytest.fixture(scope="module")
def settings_file(audited: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("browser-settings") / "detente.yaml"
    url = audited.engine.url.render_as_string(hide_password=False)
    path.write_text(f"store:\n  url: {url}\nlog:\n  level: warning\n  format: json\n")
    return path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETENTE_")}
    env["DETENTE_CONFIG"] = ""
    return env


def detente(settings: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "detente", "--config", str(settings), *args]


@pytest.fixture(scope="module")
def served(settings_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``detente serve`` on a free loopback port; yields its address."""
    log = tmp_path_factory.mktemp("browser-log") / "serve.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            detente(settings_file, "serve", "--listen", "127.0.0.1:0", "--rules", str(RULES), "--as-of", AS_OF),
            stdout=subprocess.PIPE, stderr=err, text=True, env=_env())
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    out = proc.stdout

    def read() -> None:
        for line in out:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        try:
            ready = lines.get(timeout=30)
        except queue.Empty:
            raise AssertionError(f"detente serve printed no address within 30 s; its log: {log.read_text()}") from None
        assert ready.startswith("detente dashboard at http://127.0.0.1:"), (ready, log.read_text())
        yield ready.split(" at ", 1)[1].strip()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, log.read_text()


@pytest.fixture(scope="module")
def printed(settings_file: Path) -> dict[str, Any]:
    """What ``detente report --format json`` prints for the period the browser opens."""
    done = subprocess.run(detente(settings_file, "report", "--period", PERIOD, "--by", "source", "--as-of", AS_OF,
                                  "--rules", str(RULES), "--format", "json"),
                          capture_output=True, text=True, env=_env(), timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_the_browser_shows_the_reports_numbers_and_a_findings_explanation(
        chromium: Path, served: str, printed: dict[str, Any], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            answer = page.goto(f"{served}?period={PERIOD}&by=source")
            assert answer is not None and answer.status == 200
            shown = page.eval_on_selector_all("[data-path]", READ_NUMBERS)
            metrics = assert_numbers_are_the_reports(shown, printed)
            assert expected_metrics(printed) <= metrics and len(shown) > 200
            assert page.request.get(f"{served}api/report?period={PERIOD}&by=source").json() == printed
            dashboard_shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(dashboard_shot), full_page=True)
            print(f"dashboard screenshot: {dashboard_shot}")

            first = page.locator("#findings li[data-finding-key]").first
            key = first.get_attribute("data-finding-key")
            explanation = first.locator(".sub").inner_text()
            with page.expect_navigation():
                first.locator("a[data-finding-key]").click()
            assert "/explain/" in page.url
            findings = page.locator("#explain-findings li[data-finding-key]")
            keys = [findings.nth(i).get_attribute("data-finding-key") for i in range(findings.count())]
            assert key in keys
            mine = findings.nth(keys.index(key))
            assert mine.locator(".explanation").inner_text() == explanation
            assert mine.locator(".clause").inner_text().startswith("rule: ")
            assert page.locator("#explain-timeline tr").count() > 0
            explain_shot = tmp_path / "explain.png"
            page.screenshot(path=str(explain_shot), full_page=True)
            print(f"explanation screenshot: {explain_shot}")
        finally:
            browser.close()
