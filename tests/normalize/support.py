"""Helpers for the normalize tests: pull a sandbox into a store over HTTPS, snapshot tables."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select, text

from detente.sandbox.server import Sandbox
from detente.settings import HubSpotSettings, SalesforceSettings, Settings
from detente.store.raw import RAW
from detente.sync import sync

UNIFIED = ("people", "person_records", "owners", "campaigns", "opportunities", "activities", "transitions",
           "record_links", "quarantine")


def settings_for(sb: Sandbox) -> Settings:
    """Settings that reach the sandbox with the real clients, with short waits for tests."""
    assert sb.info is not None
    c = sb.credentials
    return Settings(
        salesforce=SalesforceSettings(
            instance_url=sb.info.salesforce, login_url=sb.info.salesforce, auth="password",
            client_id=c.sf_client_id, client_secret=c.sf_client_secret, username=c.sf_username,
            password=c.sf_password, ca_file=sb.info.ca, timeout_seconds=10, backoff_factor=0.01,
            backoff_max_seconds=0.05, lookback_seconds=1,
        ),
        hubspot=HubSpotSettings(
            base_url=sb.info.hubspot, token=c.hs_token, ca_file=sb.info.ca, timeout_seconds=10,
            backoff_factor=0.01, backoff_max_seconds=0.05, burst_per_10s=100_000, search_per_second=10_000,
            lookback_seconds=1,
        ),
    )


def pull(engine: Engine, sb: Sandbox, now: datetime) -> None:
    """Pull both CRMs of the sandbox into the store (incrementally after the first time)."""
    results = sync(engine, settings_for(sb), now=now)
    problems = [f"{r.system}: {r.error or r.report.stopped}" for r in results if r.error or r.report.stopped]
    assert not problems, problems


def raw_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(RAW))]


def load_raw(engine: Engine, rows: Iterable[dict[str, Any]]) -> None:
    """Put raw rows (as pulled elsewhere) into a store, all dirty."""
    with engine.begin() as conn:
        conn.execute(RAW.insert(), [{**r, "dirty": True} for r in rows])


def snapshot(engine: Engine, tables: Iterable[str] = UNIFIED) -> dict[str, dict[str, str]]:
    """Every row of the unified tables, by table and primary key, as text to compare."""
    out: dict[str, dict[str, str]] = {}
    with engine.connect() as conn:
        for table in tables:
            rows = conn.execute(text(f"SELECT * FROM {table}")).mappings().all()
            keyed = {}
            for r in rows:
                values = {k: (json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else str(v))
                          for k, v in r.items()}
                key = values.get("id") or "|".join(values[k] for k in ("system", "object", "record_id"))
                keyed[key] = json.dumps(values, sort_keys=True)
            out[table] = keyed
    return out


def changed_rows(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]], table: str) -> set[str]:
    """Keys of the rows of ``table`` that were added, removed or changed."""
    a, b = before[table], after[table]
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
