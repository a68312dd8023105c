"""Write-back survives crashes and partial failures: ``detente apply`` killed (SIGKILL) at every
named point of a send and run again applies every planned write exactly once, and never makes
a task twice; records a CRM refuses for a passing reason are retried alone; records it refuses
for good end ``failed`` with the CRM's message."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml
from sqlalchemy import Engine, select, update
from sqlalchemy.engine import make_url
from typer.testing import CliRunner, Result

from detente.cli import app
from detente.normalize.run import normalize
from detente.reconcile.ledger import reconcile
from detente.rules import Rules, load_rules
from detente.sandbox.schema import SALESFORCE_OBJECTS
from detente.sandbox.server import Sandbox
from detente.settings import Settings, WritebackSettings
from detente.store.engine import create_schema, make_engine
from detente.writeback.apply import apply_writes
from detente.writeback.failpoints import ENV, POINTS
from detente.writeback.plan import WRITES, plan_writes
from detente.writeback.send import HubSpotWriter, Op, Outcome, SalesforceWriter
from tests.conftest import AS_OF, trusting_session
from tests.normalize.support import pull, settings_for

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "config" / "rules.yaml"
NOW = AS_OF + timedelta(minutes=5)
SF_UPDATE = "PATCH /services/data/v{version}/composite/sobjects"
SF_UPSERT = "PATCH /services/data/v{version}/composite/sobjects/{sobject}/{field}"
HS_UPDATE = "POST /crm/v3/objects/{type}/batch/update"
HS_CREATE = "POST /crm/v3/objects/{type}/batch/create"
HS_UPSERT = "POST /crm/v3/objects/{type}/batch/upsert"
HS_ASSOCIATE = "POST /crm/v4/associations/{type}/{to_type}/batch/create"
WRITE_ROUTES = {"salesforce": (SF_UPDATE, SF_UPSERT), "hubspot": (HS_UPDATE, HS_CREATE, HS_UPSERT, HS_ASSOCIATE)}


# -- shared with test_cli.py (fixtures by name: logging_restored, rules, template, private, store) --


@pytest.fixture(autouse=True, name="logging_restored")
def restored_logging() -> Iterator[None]:
    """The commands run in this process set up logging for it (level, stream); the tests
    after this one find it as it was."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture(scope="module", name="rules")
def loaded_rules() -> Rules:
    return load_rules(RULES)


@pytest.fixture(scope="module", name="template")
def prepared_template(tmp_path_factory: pytest.TempPathFactory, rules: Rules) -> Path:
    """A demo world and a SQLite store that has pulled, normalized and audited it, made once
    per module; each test writes to copies of its own."""
    root = tmp_path_factory.mktemp("template")
    sb = Sandbox(state_dir=root / "sandbox", dataset="demo", size=100, seed=23, as_of=AS_OF)
    sb.start()
    engine = make_engine(f"sqlite:///{root / 'detente.db'}")
    try:
        create_schema(engine)
        prepare(engine, sb, rules)
    finally:
        engine.dispose()
        sb.stop()
    return root


@pytest.fixture(name="private")
def private_sandbox(template: Path, tmp_path: Path) -> Iterator[Sandbox]:
    """This test's own copy of the template's world, to write to."""
    shutil.copytree(template / "sandbox", tmp_path / "sandbox")
    sb = Sandbox(state_dir=tmp_path / "sandbox", dataset="demo", size=100, seed=23, as_of=AS_OF)
    sb.start()
    yield sb
    sb.stop()


@pytest.fixture(name="store")
def prepared_store(template: Path, private: Sandbox, store_url: str, rules: Rules) -> Iterator[Engine]:
    """A store that has pulled, normalized and audited the test's world: on SQLite a copy of
    the template's, on PostgreSQL made here."""
    url = make_url(store_url)
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        shutil.copyfile(template / "detente.db", url.database)
    engine = make_engine(store_url)
    create_schema(engine)
    if url.get_backend_name() != "sqlite":
        prepare(engine, private, rules)
    yield engine
    engine.dispose()


def write_config(sb: Sandbox, path: Path, store_url: str, **writeback: Any) -> Path:
    """A settings file for the sandbox and the store, with short waits and ``writeback``."""
    data = sb.settings_dict()
    data["salesforce"].update(timeout_seconds=10, backoff_factor=0.01, backoff_max_seconds=0.05)
    data["hubspot"].update(timeout_seconds=10, backoff_factor=0.01, backoff_max_seconds=0.05,
                           burst_per_10s=100_000, search_per_second=10_000)
    data["store"] = {"url": store_url}
    data["log"] = {"level": "warning", "format": "json"}
    data["writeback"] = writeback
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def detente(config: Path, *args: str, failpoint: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m detente --config FILE ARGS`` in a process of its own; the environment's
    DETENTE_ variables are left out, so the file alone decides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETENTE_")}
    if failpoint is not None:
        env[ENV] = failpoint
    return subprocess.run([sys.executable, "-m", "detente", "--config", str(config), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env=env)


def in_process(config: Path, *args: str) -> Result:
    """The same command run in this process (faster; for runs no failpoint kills)."""
    return CliRunner().invoke(app, ["--config", str(config), *args], env={"DETENTE_CONFIG": ""})


def prepare(engine: Engine, sb: Sandbox, rules: Rules) -> None:
    """Pull, normalize and audit the sandbox into the store, as of NOW."""
    pull(engine, sb, NOW)
    normalize(engine, now=NOW)
    reconcile(engine, rules, NOW)


def control(sb: Sandbox, system: str, what: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """GET stats or POST faults on one of the sandbox's servers."""
    assert sb.info is not None
    base = sb.info.salesforce if system == "salesforce" else sb.info.hubspot
    with trusting_session(sb.info) as session:
        if body is None:
            response = session.get(f"{base}/__sandbox/{what}", timeout=10)
        else:
            response = session.post(f"{base}/__sandbox/{what}", json=body, timeout=10)
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer


def write_calls(sb: Sandbox) -> Counter[str]:
    """The calls each write endpoint of both CRMs has answered so far."""
    out: Counter[str] = Counter()
    for system, routes in WRITE_ROUTES.items():
        calls = control(sb, system, "stats")["calls"]
        for route in routes:
            out[route] = calls.get(route, 0)
    return out


def records(sb: Sandbox) -> dict[str, dict[str, int]]:
    return {system: control(sb, system, "stats")["records"] for system in WRITE_ROUTES}


def outbox(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(WRITES).order_by(WRITES.c.key))]


def sf_tasks(sb: Sandbox) -> list[Any]:
    return sb.world.query('SELECT * FROM "sf_Task" WHERE "Detente_Key__c" IS NOT NULL AND NOT "IsDeleted"')


def hs_tasks(sb: Sandbox) -> list[dict[str, Any]]:
    rows = sb.world.query("SELECT id, props FROM hs_tasks WHERE archived = 0")
    return [{"id": r["id"], **json.loads(r["props"])} for r in rows if json.loads(r["props"]).get("detente_key")]


def crm_value(sb: Sandbox, w: dict[str, Any]) -> Any:
    """What the CRM holds now in the field a field write wrote."""
    if w["system"] == "salesforce":
        record = sb.world.sf_get(SALESFORCE_OBJECTS[w["object"]], w["record_id"])
        assert record is not None, w["key"]
        return record[w["field"]]
    contact = sb.world.hs_get("contacts", int(w["record_id"]))
    assert contact is not None, w["key"]
    return contact["properties"].get(w["field"])


def holds(got: Any, want: Any) -> bool:
    """The CRM holds the value written (instants to the second: the CRMs add milliseconds)."""
    if got in (None, "") or want in (None, ""):
        return got in (None, "") and want in (None, "")
    if isinstance(want, float | int) and not isinstance(want, bool):
        return float(got) == float(want)
    return str(got)[:19] == str(want)[:19]


def assert_applied_exactly_once(sb: Sandbox, engine: Engine, before: dict[str, dict[str, int]]) -> None:
    """Every outbox row applied, every field value in its CRM, one task per task key in the
    CRM that should hold it, and no other record made."""
    rows = outbox(engine)
    assert rows and Counter(r["state"] for r in rows) == {"applied": len(rows)}, \
        [(r["key"], r["state"], r["error"]) for r in rows if r["state"] != "applied"]
    for w in (r for r in rows if r["kind"] == "field"):
        assert holds(crm_value(sb, w), w["value"]), (w["key"], crm_value(sb, w), w["value"])
    tasks = {r["task_key"]: r for r in rows if r["kind"] == "task"}
    sf_keys = Counter(t["Detente_Key__c"] for t in sf_tasks(sb))
    hs = hs_tasks(sb)
    hs_keys = Counter(t["detente_key"] for t in hs)
    assert all(n == 1 for n in sf_keys.values()), sf_keys.most_common(3)
    assert all(n == 1 for n in hs_keys.values()), hs_keys.most_common(3)
    assert set(sf_keys) == {k for k, r in tasks.items() if r["system"] == "salesforce"}
    assert set(hs_keys) == {k for k, r in tasks.items() if r["system"] == "hubspot"}
    for t in hs:  # each HubSpot task on its contact, once
        row = tasks[t["detente_key"]]
        assert [a[0] for a in sb.world.hs_associations("tasks", t["id"], "contacts")] == [int(row["record_id"])]
    for t in sf_tasks(sb):
        assert t["WhoId"] == tasks[t["Detente_Key__c"]]["record_id"]
    # The CRMs' own counts: exactly the outbox's tasks were added, nothing else was created.
    after = records(sb)
    assert after["salesforce"]["Task"] - before["salesforce"]["Task"] == len(sf_keys)
    assert after["hubspot"]["tasks"] - before["hubspot"]["tasks"] == len(hs_keys)
    for system in ("salesforce", "hubspot"):
        others = {k: v for k, v in after[system].items() if k not in ("Task", "tasks")}
        assert others == {k: v for k, v in before[system].items() if k not in ("Task", "tasks")}


def assert_nothing_left_to_write(engine: Engine, sb: Sandbox, rules: Rules) -> None:
    """A fresh pull finds every value detente wrote: a plan now writes nothing, and sees no
    field changed by someone else."""
    now = datetime.now(UTC)
    pull(engine, sb, now)
    normalize(engine, now=now)
    plan = plan_writes(engine, rules, WritebackSettings(enabled=True), now, record=False)
    assert plan.writes == [] and plan.overrides == [], [w["key"] for w in plan.writes][:5]


# -- crashes --------------------------------------------------------------------------------------

CRASHES = [
    ("before_send", "salesforce"), ("between_batches", "salesforce"), ("after_send", "salesforce"),
    ("mid_record", "salesforce"), ("before_send", "hubspot"), ("after_send", "hubspot"), ("mid_record", "hubspot"),
]


def test_every_failpoint_is_crashed_at() -> None:
    assert {p for p, _ in CRASHES} == set(POINTS)


def _only_hubspot_left(engine: Engine, settings: Settings, rules: Rules) -> None:
    """Queue the plan and apply its Salesforce writes in-process, so that the killed run
    sends HubSpot's alone (the failpoints fire in the first system's send otherwise)."""
    plan_writes(engine, rules, settings.writeback, datetime.now(UTC))
    w = WRITES
    with engine.begin() as conn:
        conn.execute(update(w).where(w.c.system == "hubspot").values(state="skipped"))
    sf = SalesforceWriter(settings.salesforce)
    try:
        result = apply_writes(engine, settings, {"salesforce": sf.send}, datetime.now(UTC))
    finally:
        sf.close()
    assert result.counts["applied"] > 0 and set(result.counts) == {"applied"}
    with engine.begin() as conn:
        conn.execute(update(w).where(w.c.system == "hubspot").values(state="planned"))


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("point", "system"), CRASHES)
def test_apply_killed_at_a_failpoint_then_run_again_applies_everything_once(
        point: str, system: str, private: Sandbox, store: Engine, store_url: str, rules: Rules,
        tmp_path: Path) -> None:
    _crash_and_recover(point, system, private, store, store_url, rules, tmp_path)


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("point", ["between_batches", "mid_record"])
def test_a_crash_on_postgresql_recovers_as_well(point: str, private: Sandbox, store: Engine, store_url: str,
                                                rules: Rules, tmp_path: Path) -> None:
    _crash_and_recover(point, "salesforce", private, store, store_url, rules, tmp_path)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_crash_does_not_use_up_the_last_attempt(private: Sandbox, store: Engine, store_url: str, rules: Rules,
                                                  tmp_path: Path) -> None:
    """With one attempt allowed, a run killed before it sent anything leaves rows marked sent
    with that attempt counted; the run again must still send them (the CRM refused nothing)."""
    sb = private
    config = write_config(sb, tmp_path / "detente.yaml", store_url, enabled=True, max_attempts=1)
    before = records(sb)
    killed = detente(config, "apply", "--yes", "--rules", str(RULES), failpoint="before_send")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert {(r["system"], r["state"], r["attempts"]) for r in outbox(store)} == {
        ("salesforce", "sent", 1), ("hubspot", "planned", 0)}
    again = detente(config, "apply", "--yes", "--rules", str(RULES))
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{len(outbox(store))} applied, 0 to retry, 0 failed" in again.stdout, again.stdout
    assert_applied_exactly_once(sb, store, before)


def _crash_and_recover(point: str, system: str, sb: Sandbox, store: Engine, store_url: str, rules: Rules,
                       tmp_path: Path) -> None:
    config = write_config(sb, tmp_path / "detente.yaml", store_url, enabled=True)
    before = records(sb)
    if system == "hubspot":
        _only_hubspot_left(store, settings_for(sb).model_copy(
            update={"writeback": WritebackSettings(enabled=True)}), rules)
    calls0 = write_calls(sb)

    killed = detente(config, "apply", "--yes", "--rules", str(RULES), failpoint=point)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-2000:])
    calls1 = write_calls(sb)
    first = +(calls1 - calls0)
    rows = outbox(store)
    mine = [r for r in rows if r["system"] == system]  # in the order apply sent them
    assert mine and {r["kind"] for r in mine} == {"field", "task"}
    assert {r["attempts"] for r in mine} == {1}
    assert all(r["state"] == ("applied" if system == "hubspot" else "planned") for r in rows
               if r["system"] != system)
    # Died where it was told to: the rows it was sending are marked sent; at mid_record, the
    # first half of the results is recorded and the rest is not.
    recorded = len(mine) // 2 if point == "mid_record" else 0
    assert [r["state"] for r in mine] == ["applied"] * recorded + ["sent"] * (len(mine) - recorded)
    fields = [r for r in mine if r["kind"] == "field"]
    landed = [r for r in fields if holds(crm_value(sb, r), r["value"])]
    made = sf_tasks(sb) if system == "salesforce" else hs_tasks(sb)
    everything = {SF_UPDATE: 1, SF_UPSERT: 1} if system == "salesforce" else {HS_UPDATE: 1, HS_CREATE: 1}
    if point == "before_send":
        assert first == {} and not landed and not made
    elif point == "between_batches":
        # The first composite call (the field updates) went out, the task upsert did not.
        assert first == {SF_UPDATE: 1} and len(landed) == len(fields) and not made
    else:  # after_send, mid_record: the CRM has every write
        assert first == everything
        assert len(landed) == len(fields) and len(made) == sum(r["kind"] == "task" for r in mine)

    again = detente(config, "apply", "--yes", "--rules", str(RULES))
    assert again.returncode == 0, again.stderr[-2000:]
    second = +(write_calls(sb) - calls1)
    resent = [r for r in mine if r["state"] == "sent"]
    pending = len(resent) + (sum(r["system"] == "hubspot" for r in rows) if system == "salesforce" else 0)
    assert f"{pending} applied, 0 to retry, 0 failed" in again.stdout, again.stdout
    after = {r["key"]: r for r in outbox(store)}
    assert [after[r["key"]]["attempts"] for r in mine] == [1] * recorded + [2] * len(resent)
    assert_applied_exactly_once(sb, store, before)
    # The run again sent the writes left unrecorded once more, and nothing else.
    expected: Counter[str] = Counter()
    if system == "salesforce":
        expected.update({SF_UPDATE: any(r["kind"] == "field" for r in resent),
                         SF_UPSERT: any(r["kind"] == "task" for r in resent)})
        expected.update({HS_UPDATE: 1, HS_CREATE: 1})  # HubSpot's writes, sent for the first time
    else:
        expected.update({HS_UPDATE: any(r["kind"] == "field" for r in resent)})
        if any(r["kind"] == "task" for r in resent):
            # Tasks made before the crash: the create is refused (their key is taken); they go
            # through upsert and association instead, and none is made twice (checked above).
            expected.update({HS_CREATE: 1} if point == "before_send" else {HS_CREATE: 1, HS_UPSERT: 1,
                                                                           HS_ASSOCIATE: 1})
    assert second == +expected, second
    assert_nothing_left_to_write(store, sb, rules)


# -- partial failures -----------------------------------------------------------------------------


class Recorder:
    """A CRM writer's send, remembering every batch of writes it was given."""

    def __init__(self, send: Callable[[Sequence[Op]], list[Outcome]]) -> None:
        self._send = send
        self.given: list[list[str]] = []

    def __call__(self, ops: Sequence[Op]) -> list[Outcome]:
        self.given.append([op.ref for op in ops])
        return self._send(ops)


def _apply(engine: Engine, settings: Settings) -> tuple[dict[str, int], dict[str, Recorder], dict[str, int]]:
    sf, hs = SalesforceWriter(settings.salesforce), HubSpotWriter(settings.hubspot)
    senders = {"salesforce": Recorder(sf.send), "hubspot": Recorder(hs.send)}
    try:
        result = apply_writes(engine, settings, dict(senders), datetime.now(UTC))
    finally:
        sf.close()
        hs.close()
    return dict(result.counts), senders, {"salesforce": sf.calls, "hubspot": hs.calls}


def test_records_failed_in_a_batch_are_retried_alone_and_land_once(private: Sandbox, store: Engine,
                                                                  rules: Rules) -> None:
    sb = private
    settings = settings_for(sb).model_copy(update={"writeback": WritebackSettings(enabled=True)})
    before = records(sb)
    plan = plan_writes(store, rules, settings.writeback, datetime.now(UTC))
    for system in ("salesforce", "hubspot"):
        # Seed 2: in each CRM, some field writes and some tasks of each batch fail.
        control(sb, system, "faults", {"partial_batch_failures": 0.3, "seed": 2})
    calls0 = write_calls(sb)

    counts, first, _ = _apply(store, settings)
    injected = {s: control(sb, s, "stats")["faults_injected"].get("partial_batch_failure", 0)
                for s in ("salesforce", "hubspot")}
    assert injected["salesforce"] > 0 and injected["hubspot"] > 0
    first_calls = +(write_calls(sb) - calls0)
    # One send per CRM, one call per batch: the failures were per record, not per call.
    assert first_calls == {SF_UPDATE: 1, SF_UPSERT: 1, HS_UPDATE: 1, HS_CREATE: 1}, first_calls
    assert [len(b) for b in first["salesforce"].given + first["hubspot"].given] == [
        sum(w["system"] == s for w in plan.writes) for s in ("salesforce", "hubspot")]
    rows = outbox(store)
    retry = {r["key"] for r in rows if r["state"] == "planned"}
    applied = {r["key"] for r in rows if r["state"] == "applied"}
    assert counts == {"applied": len(applied), "retry": len(retry)}
    assert retry | applied == {w["key"] for w in plan.writes}
    for system in ("salesforce", "hubspot"):  # in each CRM, some records of a batch failed, the rest landed
        assert {r["kind"] for r in rows if r["key"] in retry and r["system"] == system} == {"field", "task"}
        assert {r["kind"] for r in rows if r["key"] in applied and r["system"] == system} == {"field", "task"}
    for r in rows:
        assert r["attempts"] == 1
        if r["key"] in retry:  # retryable, with the CRM's words
            assert r["error"] and ("UNABLE_TO_LOCK_ROW" in r["error"] or "try it again" in r["error"]), r["error"]
        else:
            assert r["error"] is None
        if r["kind"] == "field":  # the CRM holds what the outbox says it holds
            assert holds(crm_value(sb, r), r["value"]) == (r["key"] in applied), r["key"]
    calls1 = write_calls(sb)

    for system in ("salesforce", "hubspot"):
        control(sb, system, "faults", {})
    counts, second, _ = _apply(store, settings)
    assert counts == {"applied": len(retry)}
    # The second run sent the failed writes alone, not the batches they were in.
    assert sorted(k for batch in second["salesforce"].given + second["hubspot"].given for k in batch) == sorted(retry)
    second_calls = +(write_calls(sb) - calls1)
    assert all(n == 1 for n in second_calls.values()) and set(second_calls) <= set(first_calls), second_calls
    assert {r["attempts"] for r in outbox(store) if r["key"] in retry} == {2}
    assert {r["attempts"] for r in outbox(store) if r["key"] in applied} == {1}
    assert_applied_exactly_once(sb, store, before)
    assert_nothing_left_to_write(store, sb, rules)


def test_a_write_the_crm_refuses_for_good_fails_once_with_its_message(private: Sandbox, store: Engine,
                                                                     store_url: str, rules: Rules,
                                                                     tmp_path: Path) -> None:
    sb = private
    settings = settings_for(sb).model_copy(update={"writeback": WritebackSettings(enabled=True)})
    plan_writes(store, rules, settings.writeback, datetime.now(UTC))
    w = WRITES
    rows = outbox(store)
    bad = next(r for r in rows if r["system"] == "salesforce" and r["field"] == "Detente_Status__c")
    with store.begin() as conn:
        conn.execute(update(w).where(w.c.key == bad["key"]).values(
            value="Not A Status", payload={"Detente_Status__c": "Not A Status"}))
    # A lead deleted in the CRM after the pull: writes to it are skipped (there is nothing left
    # to write to), with the CRM's words.
    gone = next(r for r in rows if r["system"] == "salesforce" and r["object"] == "Lead"
                and r["record_id"] != bad["record_id"])
    assert sb.world.sf_delete(SALESFORCE_OBJECTS["Lead"], gone["record_id"], datetime.now(UTC))

    counts, _, _ = _apply(store, settings)
    rows = {r["key"]: r for r in outbox(store)}
    failed = {k for k, r in rows.items() if r["state"] == "failed"}
    skipped = {k for k, r in rows.items() if r["state"] == "skipped"}
    # Every write on the bad record fails with it (Salesforce takes a record whole or not at all).
    on_bad = {k for k, r in rows.items() if r["record_id"] == bad["record_id"] and r["kind"] == "field"}
    on_gone = {k for k, r in rows.items() if r["record_id"] == gone["record_id"] and r["kind"] == "field"}
    assert failed == on_bad and skipped == on_gone
    assert counts == {"applied": len(rows) - len(failed) - len(skipped), "failed": len(failed),
                      "skipped": len(skipped)}
    for k in failed | skipped:
        assert rows[k]["attempts"] == 1
    assert "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" in rows[bad["key"]]["error"]
    assert "Not A Status" in rows[bad["key"]]["error"]
    assert rows[gone["key"]]["error"].startswith("the record was deleted in the CRM before this write reached it")
    assert "ENTITY_IS_DELETED" in rows[gone["key"]]["error"], rows[gone["key"]]["error"]

    # Another apply does not try them again.
    counts, again, _ = _apply(store, settings)
    assert counts == {} and again["salesforce"].given == [] and again["hubspot"].given == []

    config = write_config(sb, tmp_path / "detente.yaml", store_url, enabled=True)
    listed = in_process(config, "writes", "--state", "failed", "--format", "json")
    assert listed.exit_code == 0, listed.output
    shown = {r["key"]: r for r in json.loads(listed.stdout)}
    assert set(shown) == failed
    assert shown[bad["key"]]["state"] == "failed" and shown[bad["key"]]["attempts"] == 1
    assert "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" in shown[bad["key"]]["error"]
    table = in_process(config, "writes", "--state", "failed")
    assert table.exit_code == 0 and f"{len(failed)} write(s)" in table.stdout
    assert bad["record_id"] in table.stdout and "failed" in table.stdout

    # Later plans still want the refused record's values: the failed rows hold their keys, and
    # the writes are planned again under keys of their own, and land. A pull shows the lead
    # deleted, so nothing is planned for it.
    now = datetime.now(UTC)
    pull(store, sb, now)
    normalize(store, now=now)
    retry = in_process(config, "apply", "--yes", "--rules", str(RULES))
    assert retry.exit_code == 0, retry.output[-2000:]
    assert f"{len(on_bad)} applied, 0 to retry, 0 failed" in retry.stdout, retry.stdout
    after = {r["key"]: r for r in outbox(store)}
    assert {k: r["state"] for k, r in after.items() if k in failed | skipped} == {
        **dict.fromkeys(failed, "failed"), **dict.fromkeys(skipped, "skipped")}
    new_rows = [r for k, r in after.items() if k not in rows]
    assert sorted((r["record_id"], r["field"], r["state"]) for r in new_rows) == \
        sorted((rows[k]["record_id"], rows[k]["field"], "applied") for k in on_bad)
    refused = {(rows[k]["record_id"], rows[k]["field"]): k for k in on_bad}
    assert all(r["key"].startswith(refused[(r["record_id"], r["field"])] + "|") for r in new_rows)
    status = next(r for r in new_rows if r["field"] == "Detente_Status__c")
    assert status["value"] != "Not A Status" and holds(crm_value(sb, status), status["value"])


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_tasks_are_not_assigned_to_a_deactivated_owner(private: Sandbox, store: Engine, rules: Rules) -> None:
    """The CRMs refuse a task for a deactivated user or an archived owner, and would refuse it
    at every run: such tasks are skipped with the reason instead (found by the crash harness,
    where one HubSpot task was planned, refused and planned again each cycle)."""
    sb = private
    settings = WritebackSettings(enabled=True)
    plan = plan_writes(store, rules, settings, NOW, record=False)
    by_system = {s: [w for w in plan.writes if w["kind"] == "task" and w["system"] == s]
                 for s in ("salesforce", "hubspot")}
    assert by_system["salesforce"] and by_system["hubspot"]
    sf_owner = by_system["salesforce"][0]["payload"]["OwnerId"]
    hs_owner = by_system["hubspot"][0]["payload"]["hubspot_owner_id"]
    now = datetime.now(UTC)
    assert sb.world.sf_update(SALESFORCE_OBJECTS["User"], sf_owner, {"IsActive": False}, now)
    with sb.world.transaction() as conn:  # the rep left: HubSpot archives the owner
        conn.execute("UPDATE hs_owners SET archived = 1, updated_at = ? WHERE id = ?",
                     (now.strftime("%Y-%m-%dT%H:%M:%S.000Z"), int(hs_owner)))
    pull(store, sb, now)
    normalize(store, now=now)

    again = plan_writes(store, rules, settings, NOW, record=False)
    tasks = [w for w in again.writes if w["kind"] == "task"]
    assert tasks  # other owners' tasks are still planned
    assert not [w for w in tasks if w["payload"].get("OwnerId") == sf_owner
                or w["payload"].get("hubspot_owner_id") == hs_owner]
    gone = {w["task_key"] for ws in by_system.values() for w in ws
            if w["payload"].get("OwnerId") == sf_owner or w["payload"].get("hubspot_owner_id") == hs_owner}
    said = [s for s in again.skipped if "deactivated" in s]
    assert len(said) >= len(gone) > 0, again.skipped


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_task_about_a_lead_deleted_before_the_send_is_skipped(private: Sandbox, store: Engine,
                                                                 rules: Rules) -> None:
    """Salesforce refuses it (INVALID_CROSS_REFERENCE_KEY on WhoId) and would refuse it again:
    the row ends skipped, saying why, not failed (found by the crash harness)."""
    sb = private
    settings = settings_for(sb).model_copy(update={"writeback": WritebackSettings(enabled=True)})
    plan = plan_writes(store, rules, settings.writeback, datetime.now(UTC))
    task = next(w for w in plan.writes if w["kind"] == "task" and w["system"] == "salesforce"
                and w["object"] == "Task")
    lead = task["record_id"]
    assert sb.world.sf_delete(SALESFORCE_OBJECTS["Lead"], lead, datetime.now(UTC))
    counts, _, _ = _apply(store, settings)
    row = {r["key"]: r for r in outbox(store)}[task["key"]]
    assert row["state"] == "skipped", row
    assert row["error"].startswith("the record was deleted in the CRM") and "WhoId" in row["error"]
    assert counts.get("failed", 0) == 0 and counts.get("skipped", 0) >= 1
    assert not sf_tasks(sb) or task["task_key"] not in {t["Detente_Key__c"] for t in sf_tasks(sb)}


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_write_left_sent_by_a_kill_and_a_newer_value_since_sends_the_newer_alone(
        private: Sandbox, store: Engine, rules: Rules) -> None:
    """A run killed before it recorded a field write leaves it ``sent``; the next plan wants a
    newer value for the same field. Sent together, the newer would win and both would read
    applied; the older is recorded superseded instead (found by the crash harness: an outbox
    row applied whose value the CRM never received)."""
    sb = private
    settings = settings_for(sb).model_copy(update={"writeback": WritebackSettings(enabled=True)})
    plan_writes(store, rules, settings.writeback, datetime.now(UTC))
    old = next(r for r in outbox(store) if r["kind"] == "field" and r["field"] == "Detente_Status__c"
               and r["system"] == "salesforce")
    newer = {**old, "key": old["key"] + "|newer", "value": "SLA Running",
             "payload": {"Detente_Status__c": "SLA Running"}, "state": "planned", "attempts": 0,
             "planned_at": datetime.now(UTC) + timedelta(seconds=1)}
    with store.begin() as conn:
        conn.execute(update(WRITES).where(WRITES.c.key == old["key"]).values(state="sent", attempts=1))
        conn.execute(WRITES.insert().values(**newer))
    mark = max((w["seq"] for w in sb.world.writes()), default=0)
    counts, _, _ = _apply(store, settings)
    rows = {r["key"]: r for r in outbox(store)}
    assert rows[old["key"]]["state"] == "skipped" and "superseded" in rows[old["key"]]["error"]
    assert rows[newer["key"]]["state"] == "applied" and counts["skipped"] == 1
    assert crm_value(sb, rows[newer["key"]]) == "SLA Running"
    sent = [w["fields"]["Detente_Status__c"] for w in sb.world.writes(mark)
            if w["record_id"] == old["record_id"] and "Detente_Status__c" in (w["fields"] or {})]
    assert sent == ["SLA Running"]
