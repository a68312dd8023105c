"""HTTP plumbing of the Salesforce connector: one ``requests`` session that trusts the
configured CA, puts a timeout on every request, retries throttled and failed calls with
backoff (POSTs too, honouring ``Retry-After``), and meters every attempt, retries included,
against the call budget and the org's daily allocation (``Sforce-Limit-Info``).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.response import BaseHTTPResponse

from detente.connectors.base import BudgetExhausted, CallBudget
from detente.connectors.retry import BackoffRetry
from detente.settings import SalesforceSettings

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# An observation of the org's usage is trusted this long; after that a call is allowed again,
# so a long-running daemon notices when the rolling 24-hour window frees calls.
USAGE_FRESH_SECONDS = 300.0
_LIMIT_INFO = re.compile(r"(?:^|[;,\s])api-usage=(\d+)/(\d+)")

Timeout = float | tuple[float, float] | tuple[float, None] | None


@dataclass(frozen=True)
class ApiUsage:
    """The org's daily API usage as the last response reported it."""

    used: int
    limit: int

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


def parse_limit_info(header: str | None) -> ApiUsage | None:
    """``Sforce-Limit-Info: api-usage=18/15000[; per-app-api-usage=...]`` → ApiUsage."""
    match = _LIMIT_INFO.search(header or "")
    return ApiUsage(int(match.group(1)), int(match.group(2))) if match else None


class Meter:
    """Counts HTTP attempts, spends them from the budget, and tracks the org's usage."""

    def __init__(self, budget: CallBudget | None = None, reserve: int = 0) -> None:
        self.budget = budget
        self.reserve = reserve
        self.calls = 0
        self.usage: ApiUsage | None = None
        self._usage_seen = 0.0
        self._lock = threading.Lock()

    def attempt(self) -> None:
        """Account for one attempt about to be sent; raise BudgetExhausted when it may not."""
        with self._lock:
            usage = self.usage
            fresh = usage is not None and time.monotonic() - self._usage_seen < USAGE_FRESH_SECONDS
        if fresh and usage is not None and usage.remaining <= self.reserve:
            kept = f", {self.reserve} kept in reserve" if self.reserve else ""
            raise BudgetExhausted(
                f"Salesforce's daily API allocation is spent ({usage.used} of {usage.limit} calls used{kept}); "
                "the pull resumes when the rolling 24-hour window frees calls"
            )
        if self.budget is not None:
            self.budget.spend(1)
        with self._lock:
            self.calls += 1

    def observe(self, headers: Mapping[str, str]) -> None:
        usage = parse_limit_info(headers.get("Sforce-Limit-Info"))
        if usage is not None:
            with self._lock:
                self.usage = usage
                self._usage_seen = time.monotonic()


class MeteredRetry(BackoffRetry):
    """urllib3's Retry that spends one call from the meter before every retry it makes,
    and backs off from the first retry on (urllib3 waits only from the second)."""

    def __init__(self, *args: Any, meter: Meter | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.meter = meter

    def new(self, **kw: Any) -> MeteredRetry:
        kw.setdefault("meter", self.meter)
        fresh: MeteredRetry = super().new(**kw)
        return fresh

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        if self.meter is not None:
            self.meter.attempt()  # may raise BudgetExhausted: then we do not wait either
        super().sleep(response)


class MeteredAdapter(HTTPAdapter):
    """Meters each request's first attempt, applies the default timeout, reads the usage header."""

    def __init__(self, meter: Meter, timeout: float, retry: MeteredRetry) -> None:
        super().__init__(max_retries=retry, pool_maxsize=4)
        self.meter = meter
        self.timeout = timeout

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Timeout = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        self.meter.attempt()
        response = super().send(
            request, stream=stream, timeout=self.timeout if timeout is None else timeout,
            verify=verify, cert=cert, proxies=proxies,
        )
        self.meter.observe(response.headers)
        return response


def make_retry(settings: SalesforceSettings, meter: Meter) -> MeteredRetry:
    """Retry 429 and 5xx answers, timeouts and dropped connections, for every method: the
    connector's POSTs (token, Bulk job creation) are safe to repeat."""
    return MeteredRetry(
        total=settings.retries,
        other=0,  # TLS verification failures and the like will not get better by retrying
        allowed_methods=None,
        status_forcelist=RETRY_STATUSES,
        backoff_factor=settings.backoff_factor,
        backoff_max=settings.backoff_max_seconds,
        retry_after_max=settings.retry_after_max_seconds,
        respect_retry_after_header=True,
        raise_on_status=False,  # the last answer reaches simple-salesforce, which raises with its status
        meter=meter,
    )


def build_session(settings: SalesforceSettings, meter: Meter) -> requests.Session:
    """The one session the connector (and simple-salesforce through it) talks with."""
    session = requests.Session()
    if settings.ca_file is not None:
        session.verify = str(settings.ca_file)
        # Otherwise REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from the environment override verify.
        session.trust_env = False
    adapter = MeteredAdapter(meter, settings.timeout_seconds, make_retry(settings, meter))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
