"""The raw layer on SQLite and PostgreSQL: pages and cursors commit together, re-reads are free."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic.script import ScriptDirectory
from sqlalchemy import Engine, select

from detente.connectors.base import Page, Position, Record, Reject
from detente.store.migrate import alembic_config, current
from detente.store.raw import QUARANTINE, RAW, commit_page, live_ids, read_position

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def lead(rid: str, minutes: int, **data: object) -> Record:
    return Record("Lead", rid, T0 + timedelta(minutes=minutes), {"Id": rid, **data})


def test_schema_is_migrated_to_the_latest_revision(store: Engine) -> None:
    head = ScriptDirectory.from_config(alembic_config(store)).get_current_head()
    assert head is not None and current(store) == head


def test_a_page_and_its_cursor_commit_together(store: Engine) -> None:
    page = Page("Lead", [lead("a", 1, Status="Open"), lead("b", 2)], position=Position(T0 + timedelta(minutes=2), "b"))
    result = commit_page(store, "salesforce", page, T0)
    assert (result.inserted, result.updated, result.unchanged) == (2, 0, 0)
    assert read_position(store, "salesforce", "Lead") == Position(T0 + timedelta(minutes=2), "b")
    with store.connect() as conn:
        row = conn.execute(select(RAW).where(RAW.c.record_id == "a")).one()
    assert row.data == {"Id": "a", "Status": "Open"}
    assert row.modified_at == T0 + timedelta(minutes=1)


def test_rereading_unchanged_records_writes_nothing(store: Engine) -> None:
    commit_page(store, "salesforce", Page("Lead", [lead("a", 1, Status="Open")]), T0)
    again = commit_page(store, "salesforce", Page("Lead", [lead("a", 1, Status="Open")]), T0 + timedelta(hours=1))
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 1)
    changed = commit_page(store, "salesforce", Page("Lead", [lead("a", 5, Status="Working")]), T0)
    assert changed.updated == 1


def test_deletes_keep_the_last_known_data(store: Engine) -> None:
    commit_page(store, "salesforce", Page("Lead", [lead("a", 1, Status="Open")]), T0)
    tombstone = Record("Lead", "a", T0 + timedelta(minutes=9), {}, deleted=True)
    gone = commit_page(store, "salesforce", Page("Lead", [tombstone]), T0)
    assert gone.deleted == 1
    with store.connect() as conn:
        row = conn.execute(select(RAW).where(RAW.c.record_id == "a")).one()
    assert row.deleted and row.data["Status"] == "Open"
    assert live_ids(store, "salesforce", "Lead") == set()


def test_rejects_are_quarantined_with_their_reason(store: Engine) -> None:
    reject = Reject("Lead", "bad", "SystemModstamp 'yesterday' is not a datetime", {"Id": "bad"})
    page = Page("Lead", [lead("a", 1)], rejects=[reject])
    result = commit_page(store, "salesforce", page, T0)
    assert result.quarantined == 1
    with store.connect() as conn:
        row = conn.execute(select(QUARANTINE)).one()
    assert row.record_id == "bad" and "not a datetime" in row.reason
