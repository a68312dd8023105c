"""HubSpot simulator: injected faults and rate limits, as the unmodified client experiences them."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator

import pytest
import urllib3
from hubspot.crm.contacts import ApiException, PublicObjectSearchRequest, SimplePublicObjectInputForCreate
from hubspot.crm.contacts.exceptions import ServiceException

from detente.sandbox.server import Sandbox
from tests.conftest import hs_client
from tests.sandbox.test_hubspot_support import call, set_faults, start, stats, stop

LIST = "GET /crm/v3/objects/contacts"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sb = start(tmp_path_factory, "hs-faults")
    yield sb
    stop(sb)


@pytest.fixture
def sb(world: Sandbox) -> Iterator[Sandbox]:
    yield world
    world.hs_control.reset()


@pytest.fixture
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox whose rolling rate windows are empty."""
    sb = start(tmp_path_factory, "hs-faults-fresh")
    yield sb
    stop(sb)


def seed_where(share: float, outcomes: list[bool]) -> int:
    """A fault seed whose successive rolls against ``share`` come out as ``outcomes``."""
    for seed in range(10_000):
        rng = random.Random(seed)
        if all((rng.random() < share) is hit for hit in outcomes):
            return seed
    raise AssertionError("no such seed")


def list_calls(sb: Sandbox) -> int:
    calls: int = stats(sb)["calls"].get("GET /crm/v3/objects/{type}", 0)
    return calls


def test_get_429_with_retry_after_is_retried_and_succeeds(sb: Sandbox) -> None:
    """urllib3's default Retry honours Retry-After on a GET: the second attempt succeeds."""
    set_faults(sb, rate_limited=0.5, retry_after_seconds=0, seed=seed_where(0.5, [True, False]))
    page = hs_client(sb).crm.contacts.basic_api.get_page(limit=1)
    assert page.results is not None
    assert stats(sb)["faults_injected"] == {"rate_limited": 1}
    assert list_calls(sb) == 2


def test_get_429_retries_run_out_into_an_api_exception(sb: Sandbox) -> None:
    """When every attempt is refused, the client raises ApiException(429) after four attempts."""
    set_faults(sb, rate_limited=1.0, retry_after_seconds=0)
    with pytest.raises(ApiException) as caught:
        hs_client(sb).crm.contacts.basic_api.get_page(limit=1)
    assert caught.value.status == 429
    assert list_calls(sb) == 4


def test_429_without_retry_after_is_not_retried(sb: Sandbox) -> None:
    """A 429 without Retry-After reaches the client at once, in HubSpot's rate-limit shape."""
    set_faults(sb, rate_limited=1.0, without_retry_after=1.0)
    with pytest.raises(ApiException) as caught:
        hs_client(sb).crm.contacts.basic_api.get_page(limit=1)
    assert caught.value.status == 429
    assert "Retry-After" not in caught.value.headers
    body = json.loads(caught.value.body)
    assert body["policyName"] == "TEN_SECONDLY_ROLLING" and body["errorType"] == "RATE_LIMIT"
    assert body["message"] == "You have reached your ten_secondly_rolling limit."
    assert list_calls(sb) == 1


def test_post_429_is_not_retried(sb: Sandbox) -> None:
    """A 429 on a POST (create) raises ApiException(429) after a single attempt."""
    set_faults(sb, rate_limited=1.0, retry_after_seconds=0)
    with pytest.raises(ApiException) as caught:
        hs_client(sb).crm.contacts.basic_api.create(
            SimplePublicObjectInputForCreate(properties={"email": "never@x.example"})
        )
    assert caught.value.status == 429
    assert caught.value.headers["Retry-After"] == "0"
    assert stats(sb)["calls"] == {"POST /crm/v3/objects/{type}": 1}


def test_server_error_is_a_service_exception_with_its_status(sb: Sandbox) -> None:
    """An injected 5xx reaches the client as ServiceException carrying that status and a HubSpot body."""
    set_faults(sb, server_errors=1.0, seed=5)
    with pytest.raises(ServiceException) as caught:
        hs_client(sb).crm.contacts.basic_api.get_page(limit=1)
    assert caught.value.status in {500, 502, 503}
    body = json.loads(caught.value.body)
    assert body["status"] == "error" and body["correlationId"]
    assert stats(sb)["faults_injected"] == {"server_error": 1}


def test_slow_response_times_out_with_request_timeout(sb: Sandbox) -> None:
    """A delayed answer trips the caller's _request_timeout (a search POST is not retried)."""
    set_faults(sb, slow=1.0, slow_seconds=1.0)
    started = time.monotonic()
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        hs_client(sb).crm.contacts.search_api.do_search(
            public_object_search_request=PublicObjectSearchRequest(limit=1), _request_timeout=0.2
        )
    assert time.monotonic() - started < 1.0


def test_daily_limit_answers_429_daily(sb: Sandbox) -> None:
    """Past daily_limit calls in the sandbox day, calls get 429 with policyName DAILY."""
    set_faults(sb, daily_limit=2)
    first, second, third = (call(sb, "GET", "/crm/v3/objects/contacts?limit=1") for _ in range(3))
    assert first.status_code == second.status_code == 200
    assert third.status_code == 429 and third.json()["policyName"] == "DAILY"
    assert second.headers["X-HubSpot-RateLimit-Daily"] == "2"
    assert second.headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"


def test_burst_limit_is_enforced_over_ten_seconds(fresh: Sandbox) -> None:
    """With burst_per_10s=3 the fourth call within ten seconds is refused TEN_SECONDLY_ROLLING."""
    set_faults(fresh, burst_per_10s=3)
    responses = [call(fresh, "GET", "/crm/v3/objects/contacts?limit=1") for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert [r.headers["X-HubSpot-RateLimit-Remaining"] for r in responses[:3]] == ["2", "1", "0"]
    assert responses[0].headers["X-HubSpot-RateLimit-Max"] == "3"
    assert responses[3].json()["policyName"] == "TEN_SECONDLY_ROLLING"


def test_rate_limit_headers_by_default(fresh: Sandbox) -> None:
    """Every non-search answer carries HubSpot's rate-limit headers (1,000,000 a day, 190 per 10 s)."""
    response = call(fresh, "GET", "/crm/v3/owners")
    headers = response.headers
    assert headers["X-HubSpot-RateLimit-Daily"] == "1000000"
    assert headers["X-HubSpot-RateLimit-Daily-Remaining"] == "999999"
    assert headers["X-HubSpot-RateLimit-Max"] == "190"
    assert headers["X-HubSpot-RateLimit-Remaining"] == "189"
    assert headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"


def test_private_app_tokens_never_expire(sb: Sandbox) -> None:
    """expire_session_every has no effect: private-app tokens do not expire."""
    set_faults(sb, expire_session_every=1)
    assert all(call(sb, "GET", "/crm/v3/objects/contacts?limit=1").status_code == 200 for _ in range(3))
    assert stats(sb)["faults_injected"] == {}


def test_faults_spare_the_control_endpoints(sb: Sandbox) -> None:
    """/__sandbox/ calls are neither counted nor faulted."""
    set_faults(sb, server_errors=1.0)
    assert call(sb, "GET", "/__sandbox/stats").status_code == 200
    assert stats(sb)["total_calls"] == 0
