"""The daemon's parts in-process: the store locks, the rules watch and the store metrics."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import Engine, text
from structlog.testing import capture_logs

from detente.daemon.lock import AdvisoryLeadership, FileLeadership, SoleLeadership, leadership_for
from detente.daemon.metrics import StoreCollector, budget_left
from detente.daemon.rulewatch import RulesWatch
from detente.settings import Settings
from detente.store.engine import make_engine
from tests.conftest import POSTGRES_URL
from tests.daemon.support import REPO, RULES

# -- locks ---------------------------------------------------------------------------------------


def test_the_store_url_chooses_the_lock(tmp_path: Path) -> None:
    lock = leadership_for(f"sqlite:///{tmp_path / 'd.db'}")
    assert isinstance(lock, FileLeadership) and lock.path == tmp_path / "d.db.lock"
    assert isinstance(leadership_for("sqlite://"), SoleLeadership)
    assert isinstance(leadership_for("postgresql+psycopg://u@127.0.0.1:1/x"), AdvisoryLeadership)


def test_a_file_lock_has_one_holder_at_a_time(tmp_path: Path) -> None:
    first, second = FileLeadership(tmp_path / "d.db.lock"), FileLeadership(tmp_path / "d.db.lock")
    assert first.try_acquire() and first.still_held()
    assert not second.try_acquire()
    first.release()
    assert second.try_acquire()
    second.release()


def test_a_file_lock_is_freed_when_its_holder_dies(tmp_path: Path) -> None:
    path = tmp_path / "d.db.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
         "from detente.daemon.lock import FileLeadership\n"
         f"assert FileLeadership(Path({str(path)!r})).try_acquire()\nprint('held', flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    waiting = FileLeadership(path)
    assert not waiting.try_acquire()
    holder.kill()
    holder.wait(10)
    assert waiting.try_acquire()
    waiting.release()


def test_an_advisory_lock_has_one_holder_and_is_freed_when_its_session_ends(
        postgres_server: Engine | None) -> None:
    if postgres_server is None:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}; set DETENTE_TEST_POSTGRES_URL to run these")
    key = random.randrange(1, 2**62)  # a key of this test's own: nothing else contends for it
    first, second = AdvisoryLeadership(POSTGRES_URL, key), AdvisoryLeadership(POSTGRES_URL, key)
    try:
        assert first.try_acquire() and first.still_held()
        assert not second.try_acquire()
        # The leader's session dies (a crash, a network cut): the server frees the lock.
        with postgres_server.connect() as conn:
            killed = conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid::bigint = :hi AND objid::bigint = :lo AND objsubid = 1"),
                {"hi": (key >> 32) & 0xFFFFFFFF, "lo": key & 0xFFFFFFFF}).all()
        assert killed == [(True,)]
        assert not first.still_held()
        assert second.try_acquire()
        assert not first.try_acquire()
    finally:
        first.release()
        second.release()


# -- the rules watch -----------------------------------------------------------------------------


def settled(*paths: Path) -> None:
    """Date the files a second back, as if the editor had finished writing them."""
    for path in paths:
        past = time.time() - 1
        os.utime(path, (past, past))


def test_the_rules_are_validated_again_only_when_their_content_changes(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_bytes(RULES.read_bytes())
    watch = RulesWatch(path)
    with capture_logs() as logs:
        first = watch.refresh()
        assert watch.refresh() is first
        path.write_text(path.read_text().replace("grace: 3 days", "grace: 4 days"))
        settled(path)
        second = watch.refresh()
    assert first is not None and second is not None and second.version != first.version
    assert [e["event"] for e in logs] == ["rules.loaded", "rules.reloaded"]


def test_an_invalid_edit_keeps_the_last_good_rules_and_says_where_it_is_wrong(tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "agreement.yaml").write_bytes(RULES.read_bytes())
    settled(folder / "agreement.yaml")
    watch = RulesWatch(folder)
    good = watch.refresh()
    assert good is not None and watch.status().valid
    (folder / "extra.yaml").write_text("stages:\n  mql:\n    grace: whenever\n")
    settled(folder / "extra.yaml")
    with capture_logs() as logs:
        assert watch.refresh() is good
    status = watch.status()
    assert not status.valid and status.version == good.version and status.problems
    assert all(p.startswith(str(folder)) for p in status.problems)
    assert logs[0]["event"] == "rules.invalid"
    assert len([e for e in logs if e["event"] == "rules.problem"]) == len(status.problems)
    (folder / "extra.yaml").unlink()
    assert watch.refresh() is not None and watch.status().valid


def test_an_edit_still_being_written_is_read_once_it_settles(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_bytes(RULES.read_bytes())
    watch = RulesWatch(path)
    good = watch.refresh()
    assert good is not None
    edited = RULES.read_text().replace("grace: 3 days", "grace: 2 days")
    with capture_logs() as logs:
        path.write_text("")  # an editor truncated the file and has not written it yet
        assert watch.refresh() is good and watch.status().valid
        path.write_text(edited)
        assert watch.refresh() is good  # written a moment ago: not read yet
        settled(path)
        newer = watch.refresh()
    assert newer is not None and newer.version != good.version
    assert [e["event"] for e in logs] == ["rules.reloaded"]  # the empty file was never judged


# -- metrics from the store ----------------------------------------------------------------------


def test_the_budget_left_is_the_lower_of_detente_s_own_and_the_crm_s() -> None:
    section = SimpleNamespace(calls_per_day=1000, quota_reserve=100)
    assert budget_left(section, None) == 1000
    assert budget_left(section, SimpleNamespace(calls=300, remaining=None)) == 700
    assert budget_left(section, SimpleNamespace(calls=300, remaining=500)) == 400
    assert budget_left(SimpleNamespace(calls_per_day=None, quota_reserve=0), None) is None
    assert budget_left(section, SimpleNamespace(calls=2000, remaining=5)) == 0


def test_a_scrape_survives_an_unreachable_store() -> None:
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 1})
    registry = CollectorRegistry()
    registry.register(StoreCollector(lambda: engine, Settings))
    with capture_logs() as logs:
        text_ = generate_latest(registry).decode()
    assert "detente_store_up 0.0" in text_ and "detente_findings_open" not in text_
    assert logs[0]["event"] == "metrics.store_unavailable" and "nobody@" not in str(logs[0])
