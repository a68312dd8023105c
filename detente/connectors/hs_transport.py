"""HTTP plumbing of the HubSpot connector, on hubspot-api-client: one client whose API
objects are built once (each property access would build a new connection pool), a timeout
on every request, retries of 429/5xx/timeouts for every method (search and batch reads are
POSTs) with backoff from the first retry and ``Retry-After`` honoured, a throttle below
HubSpot's burst and search limits, and a meter that spends every attempt, retries included,
from the call budget and watches the ``X-HubSpot-RateLimit-*`` headers.

Responses are read as JSON (``_preload_content=False``): the connector keeps records as
HubSpot sent them and skips the client's model objects. Vendor exceptions become detente's
errors here, without response bodies or secrets in the message.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import urllib3
from hubspot import HubSpot
from hubspot.crm import associations as _associations  # noqa: F401 (loads the v4 package)
from hubspot.crm.associations.v4 import ApiException as AssociationsApiException
from hubspot.crm.objects import ApiException as ObjectsApiException
from hubspot.crm.owners import ApiException as OwnersApiException
from hubspot.crm.pipelines import ApiException as PipelinesApiException
from hubspot.crm.properties import ApiException as PropertiesApiException
from pyrate_limiter import Duration, Limiter, Rate
from urllib3.response import BaseHTTPResponse

from detente.connectors.base import BudgetExhausted, CallBudget
from detente.connectors.retry import BackoffRetry
from detente.errors import AuthError, FatalError, RetriableError
from detente.settings import HubSpotSettings

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# A daily-remaining figure is trusted this long; then a call is allowed again, so a daemon
# notices the reset at midnight in the account's time zone.
USAGE_FRESH_SECONDS = 300.0
_SEARCH_PATH = re.compile(r"/crm/v3/objects/[^/?]+/search/?(\?|$)")
API_EXCEPTIONS: tuple[type[Exception], ...] = (
    ObjectsApiException,
    AssociationsApiException,
    OwnersApiException,
    PipelinesApiException,
    PropertiesApiException,
)
TOKEN_HINT = (
    "set DETENTE_HUBSPOT__TOKEN (or hubspot.token in the settings file) to the access token of a"
    " HubSpot private app"
)


class Meter:
    """Counts every HTTP attempt, spends it from the budget, paces it below HubSpot's limits
    and keeps the daily allowance the last response reported."""

    def __init__(
        self,
        budget: CallBudget | None = None,
        *,
        burst_per_10s: int = 170,
        search_per_second: int = 4,
        reserve: int = 0,
    ) -> None:
        self.budget = budget
        self.reserve = reserve
        self.calls = 0
        self.daily_limit: int | None = None
        self.daily_remaining: int | None = None
        self.burst_remaining: int | None = None
        self._seen = 0.0
        self._lock = threading.Lock()
        self._burst = Limiter(Rate(burst_per_10s, Duration.SECOND * 10))
        self._search = Limiter(Rate(search_per_second, Duration.SECOND))

    def charge(self) -> None:
        """Account for one attempt about to be sent; raise BudgetExhausted when it may not."""
        with self._lock:
            remaining = self.daily_remaining
            fresh = remaining is not None and time.monotonic() - self._seen < USAGE_FRESH_SECONDS
        if fresh and remaining is not None and remaining <= self.reserve:
            kept = f", {self.reserve} kept in reserve" if self.reserve else ""
            raise BudgetExhausted(
                f"HubSpot's daily API limit is spent ({remaining} of {self.daily_limit} calls left{kept});"
                " the pull resumes after the limit resets at midnight in the account's time zone"
            )
        if self.budget is not None:
            self.budget.spend(1)
        with self._lock:
            self.calls += 1

    def pace(self, search: bool) -> None:
        """Wait until the attempt fits HubSpot's rolling ten-second window (and, for a
        search, its per-second limit)."""
        if search:
            self._search.try_acquire("search")
        self._burst.try_acquire("burst")

    def observe(self, headers: Mapping[str, str]) -> None:
        """Read the ``X-HubSpot-RateLimit-*`` headers (search responses carry none)."""
        daily = _int(headers.get("X-HubSpot-RateLimit-Daily"))
        remaining = _int(headers.get("X-HubSpot-RateLimit-Daily-Remaining"))
        burst = _int(headers.get("X-HubSpot-RateLimit-Remaining"))
        with self._lock:
            if daily is not None:
                self.daily_limit = daily
            if remaining is not None:
                self.daily_remaining = remaining
                self._seen = time.monotonic()
            if burst is not None:
                self.burst_remaining = burst

    def close(self) -> None:
        self._burst.close()
        self._search.close()


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def policy_of(body: Any) -> str | None:
    """``policyName`` of a 429 body (TEN_SECONDLY_ROLLING, SECONDLY, DAILY), if any."""
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str) or not body:
        return None
    try:
        parsed = json.loads(body)
    except json.JSONDecodeError:
        return None
    policy = parsed.get("policyName") if isinstance(parsed, dict) else None
    return str(policy) if policy is not None else None


def daily_limit_error() -> BudgetExhausted:
    return BudgetExhausted(
        "HubSpot refused the call: the account's DAILY API limit is reached (429);"
        " the pull resumes after the limit resets at midnight in the account's time zone"
    )


class MeteredRetry(BackoffRetry):
    """urllib3's Retry that charges and paces every retry it makes, backs off from the first
    retry on (urllib3 waits only from the second), and never retries HubSpot's DAILY 429."""

    def __init__(self, *args: Any, meter: Meter | None = None, search: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.meter = meter
        self.search = search

    def new(self, **kw: Any) -> MeteredRetry:
        kw.setdefault("meter", self.meter)
        kw.setdefault("search", self.search)
        fresh: MeteredRetry = super().new(**kw)
        return fresh

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> MeteredRetry:
        if response is not None:
            if self.meter is not None:
                self.meter.observe(response.headers)
            if response.status == 429 and policy_of(response.data) == "DAILY":
                response.drain_conn()
                raise daily_limit_error()
        fresh: MeteredRetry = super().increment(method, url, response, error, _pool, _stacktrace)
        fresh.search = bool(url and _SEARCH_PATH.search(url))
        return fresh

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        if self.meter is not None:
            self.meter.charge()  # may raise BudgetExhausted: then we do not wait either
        super().sleep(response)
        if self.meter is not None:
            self.meter.pace(self.search)


def make_retry(settings: HubSpotSettings, meter: Meter) -> MeteredRetry:
    """Retry 429 (with or without ``Retry-After``), 5xx, timeouts and dropped connections for
    every method: the connector only reads, so its POSTs are safe to repeat."""
    return MeteredRetry(
        total=settings.retries,
        other=0,  # TLS verification failures and the like will not get better by retrying
        redirect=0,
        allowed_methods=None,
        status_forcelist=RETRY_STATUSES,
        backoff_factor=settings.backoff_factor,
        backoff_max=settings.backoff_max_seconds,
        retry_after_max=settings.retry_after_max_seconds,
        respect_retry_after_header=True,
        raise_on_status=False,  # the last answer reaches the client, which raises ApiException
        meter=meter,
    )


class HubSpotHttp:
    """The calls the connector makes, each returning the response's JSON."""

    def __init__(self, settings: HubSpotSettings, meter: Meter) -> None:
        if settings.token is None or not settings.token.get_secret_value():
            raise AuthError(f"no HubSpot access token is configured; {TOKEN_HINT}")
        self.meter = meter
        self.timeout = (min(10.0, settings.timeout_seconds), settings.timeout_seconds)
        client = HubSpot(
            access_token=settings.token.get_secret_value(),
            host=settings.base_url.rstrip("/"),
            ssl_ca_cert=str(settings.ca_file) if settings.ca_file is not None else None,
            retry=make_retry(settings, meter),
        )
        # Built once: every ``client.crm...._api`` access makes a new ApiClient and pool.
        self.search_api = client.crm.objects.search_api
        self.batch_api = client.crm.objects.batch_api
        self.basic_api = client.crm.objects.basic_api
        self.assoc_batch_api = client.crm.associations.v4.batch_api
        self.assoc_basic_api = client.crm.associations.v4.basic_api
        self.owners_api = client.crm.owners.owners_api
        self.pipelines_api = client.crm.pipelines.pipelines_api
        self.properties_api = client.crm.properties.core_api
        self._apis = [
            self.search_api, self.batch_api, self.basic_api, self.assoc_batch_api, self.assoc_basic_api,
            self.owners_api, self.pipelines_api, self.properties_api,
        ]

    def search(self, object_name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(f"search {object_name}", object_name, True, self.search_api.do_search, object_name, body)

    def batch_read(self, object_name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(
            f"batch read {object_name}", object_name, False, self.batch_api.read, object_name, body, archived=False
        )

    def list_page(self, object_name: str, **params: Any) -> dict[str, Any]:
        return self._call(f"list {object_name}", object_name, False, self.basic_api.get_page, object_name, **params)

    def associations(self, from_object: str, to_object: str, ids: list[str]) -> dict[str, Any]:
        return self._call(
            f"read {from_object} to {to_object} associations", from_object, False,
            self.assoc_batch_api.get_page, from_object, to_object, {"inputs": [{"id": i} for i in ids]},
        )

    def associations_of(self, from_object: str, record: str, to_object: str, after: str | None) -> dict[str, Any]:
        return self._call(
            f"read {from_object} to {to_object} associations", from_object, False,
            self.assoc_basic_api.get_page, from_object, record, to_object, after=after, limit=500,
        )

    def owners(self, *, after: str | None, archived: bool, limit: int = 100) -> dict[str, Any]:
        return self._call(
            "list owners", "owners", False, self.owners_api.get_page, after=after, archived=archived, limit=limit
        )

    def pipelines(self, object_name: str) -> dict[str, Any]:
        return self._call(f"list {object_name} pipelines", object_name, False, self.pipelines_api.get_all, object_name)

    def properties(self, object_name: str) -> dict[str, Any]:
        return self._call(
            f"list {object_name} properties", object_name, False, self.properties_api.get_all, object_name,
            archived=False,
        )

    def _call(
        self, what: str, object_name: str, search: bool, method: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> dict[str, Any]:
        self.meter.charge()
        self.meter.pace(search)
        try:
            response = method(*args, _preload_content=False, _request_timeout=self.timeout, **kwargs)
        except API_EXCEPTIONS as exc:
            raise translate(exc, what, object_name) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise RetriableError(
                f"HubSpot could not be reached to {what} ({type(exc).__name__}) after"
                " the configured retries; the pull resumes from its last committed page"
            ) from exc
        try:
            raw = response.data
            self.meter.observe(response.headers)
        finally:
            response.release_conn()
        try:
            body = json.loads(raw) if raw else {}
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RetriableError(f"HubSpot answered {what} with a body that is not JSON") from exc
        if not isinstance(body, dict):
            raise RetriableError(f"HubSpot answered {what} with JSON that is not an object")
        return body

    def close(self) -> None:
        """Drop pooled connections (a kept-alive one would delay a server's shutdown)."""
        for api in self._apis:
            # The client keeps the last response, whose file object keeps its socket open.
            api.api_client.last_response = None
            api.api_client.rest_client.pool_manager.clear()


def translate(exc: Exception, what: str, object_name: str) -> Exception:
    """A hubspot-api-client ApiException as one of detente's errors (no body, no secret)."""
    status = int(getattr(exc, "status", 0) or 0)
    body = getattr(exc, "body", None)
    category = _category(body)
    label = f"{status} {category}" if category else str(status)
    if status == 401:
        return AuthError(f"HubSpot rejected the access token ({label}) when asked to {what}; {TOKEN_HINT}")
    if status == 403:
        return AuthError(
            f"HubSpot refused to {what} ({label}); give the private app read access to {object_name}"
            f" (scopes such as crm.objects.{object_name}.read, crm.schemas.{object_name}.read)"
            f" or check the token; {TOKEN_HINT}"
        )
    if status == 429:
        policy = policy_of(body)
        if policy == "DAILY":
            return daily_limit_error()
        headers = getattr(exc, "headers", None) or {}
        after = _int(headers.get("Retry-After")) if isinstance(headers, Mapping) else None
        return RetriableError(
            f"HubSpot kept refusing to {what} with 429 ({policy or 'rate limit'}) after the configured retries;"
            " the pull resumes from its last committed page",
            retry_after=float(after) if after is not None else None,
        )
    if status == 0:
        return FatalError(
            f"could not open a TLS connection to HubSpot to {what}; if it uses a private CA,"
            " set DETENTE_HUBSPOT__CA_FILE (hubspot.ca_file) to that CA bundle"
        )
    if status >= 500 or status in {408, 423, 477}:
        return RetriableError(
            f"HubSpot failed to {what} ({label}) after the configured retries; the pull resumes later"
        )
    return FatalError(f"HubSpot refused to {what} ({label}); this is a bug in detente or the portal's setup")


def _category(body: Any) -> str | None:
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str):
        return None
    try:
        parsed = json.loads(body)
    except json.JSONDecodeError:
        return None
    category = parsed.get("category") if isinstance(parsed, dict) else None
    return category if isinstance(category, str) and re.fullmatch(r"[A-Z_]{1,64}", category) else None
