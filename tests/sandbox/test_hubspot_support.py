"""Helpers shared by the HubSpot simulator tests (this module holds no tests).

Raw calls go through ``requests`` with the sandbox CA; client calls use the real
hubspot-api-client from ``tests.conftest.hs_client``.
"""

from __future__ import annotations

import gc
from datetime import datetime
from typing import Any

import pytest
import requests

from detente.sandbox.server import Sandbox
from tests.conftest import AS_OF, SEED, trusting_session


def start(tmp_path_factory: pytest.TempPathFactory, name: str) -> Sandbox:
    """A fresh sandbox with no generated records (owners only), like conftest's
    ``empty_sandbox``; the tests own its lifetime (and reset its faults themselves)."""
    sb = Sandbox(state_dir=tmp_path_factory.mktemp(name), dataset="empty", size=0, seed=SEED, as_of=AS_OF)
    sb.start()
    return sb


def stop(sb: Sandbox) -> None:
    """Stop a sandbox from ``start``. Client pools caught in exception tracebacks hold
    keep-alive connections that would make the server wait out its shutdown; free them first."""
    gc.collect()
    sb.stop()


def call(sb: Sandbox, method: str, path: str, *, token: str | None = None, **kw: Any) -> requests.Response:
    """One raw HTTPS call to the HubSpot simulator, authenticated unless ``token`` says otherwise."""
    assert sb.info is not None
    headers = {
        "Authorization": f"Bearer {token if token is not None else sb.credentials.hs_token}",
        **kw.pop("headers", {}),
    }
    # A session per call: a kept-alive connection would hold up the server's shutdown.
    with trusting_session(sb.info) as session:
        return session.request(method, sb.info.hubspot + path, headers=headers, timeout=30, **kw)


def set_faults(sb: Sandbox, **profile: Any) -> None:
    response = call(sb, "POST", "/__sandbox/faults", json=profile)
    assert response.status_code == 200, response.text


def set_clock(sb: Sandbox, when: datetime | None) -> None:
    response = call(sb, "POST", "/__sandbox/clock", json={"now": when.isoformat() if when else None})
    assert response.status_code == 200, response.text


def stats(sb: Sandbox) -> dict[str, Any]:
    body: dict[str, Any] = call(sb, "GET", "/__sandbox/stats").json()
    return body


def people(count: int, prefix: str, **extra: str) -> list[dict[str, str]]:
    """Contact properties for ``count`` distinct people."""
    return [
        {"email": f"{prefix}{i}@{prefix}.example", "firstname": f"{prefix.title()}{i}", "lastname": "Tester", **extra}
        for i in range(count)
    ]


def batch_create(sb: Sandbox, object_type: str, records: list[dict[str, str]]) -> list[str]:
    """Create records through ``batch/create`` in calls of 100; returns ids in input order."""
    ids: list[str] = []
    for start_at in range(0, len(records), 100):
        chunk = records[start_at : start_at + 100]
        response = call(
            sb,
            "POST",
            f"/crm/v3/objects/{object_type}/batch/create",
            json={"inputs": [{"properties": p} for p in chunk]},
        )
        assert response.status_code == 201, response.text
        ids += [r["id"] for r in response.json()["results"]]
    return ids


def assert_hubspot_error(response: requests.Response, status: int, category: str | None = None) -> dict[str, Any]:
    """The response is HubSpot's error shape with this status (and category)."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "error"
    assert body["message"] and body["correlationId"]
    if category is not None:
        assert body["category"] == category, body
    return body
