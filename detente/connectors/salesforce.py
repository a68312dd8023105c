"""The Salesforce pull connector: pages of records from the REST API (queryAll, keyset on
``(SystemModstamp, Id)``) or, for large reads, Bulk API 2.0; deletions from getDeleted.

Built on simple-salesforce and one ``requests`` session (see ``sf_http``) that times out,
retries and meters every attempt. The objects are described once per connector, together in
one composite request (one API call); every field the describe returns is pulled, and fields
detente expects but the integration user cannot see are reported by name in
``missing_fields``. A whole read first asks how large the objects are (``/limits/recordCount``,
and ``COUNT()`` in the same composite request for the history objects it leaves out), so an
object above ``bulk_threshold`` goes straight to a Bulk API 2.0 job.

Positions. A query's result set is fixed when the query runs, but rows are read page by
page, so a record changed between pages comes back with a newer SystemModstamp than the
place it holds in the result. A page's position is therefore the largest (stamp, id) read
so far among records stamped no later than ``until`` (the pull's start): such a record was
not changed while the pull ran, so everything before it in the result has been read. Bulk
results are unordered, so only the last chunk of a job carries a position.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)
from simple_salesforce.util import exception_handler

from detente.connectors.base import (
    BudgetExhausted,
    CallBudget,
    FullPullRequired,
    Page,
    Position,
    Record,
    Reject,
)
from detente.connectors.sf_auth import fetch_token
from detente.connectors.sf_http import ApiUsage, Meter, build_session
from detente.connectors.sf_records import (
    ObjectSchema,
    iter_csv,
    parse_datetime,
    parse_row,
    schema_from_describe,
    soql_datetime,
    split,
)
from detente.errors import DetenteError, FatalError, RetriableError
from detente.logs import get_logger
from detente.settings import SalesforceSettings

log = get_logger("detente.connectors.salesforce")
T = TypeVar("T")

OBJECTS: tuple[str, ...] = (
    "User", "Campaign", "Account", "Lead", "Contact", "Opportunity", "OpportunityContactRole",
    "CampaignMember", "Task", "Event", "LeadHistory", "OpportunityFieldHistory",
)

# The fields the audit reads, per object. One the integration user cannot see is reported
# (``missing_fields`` and a ``salesforce.fields_missing`` event), never stored as null.
EXPECTED_FIELDS: dict[str, tuple[str, ...]] = {
    "User": ("Email", "Name", "IsActive", "Username"),
    "Campaign": ("Name", "Type", "Status", "StartDate", "EndDate", "ActualCost", "BudgetedCost", "OwnerId"),
    "Account": ("Name", "OwnerId"),
    "Lead": (
        "Email", "Status", "Lead_Score__c", "OwnerId", "LeadSource", "Company", "CreatedDate", "IsConverted",
        "ConvertedDate", "ConvertedContactId", "ConvertedOpportunityId", "ConvertedAccountId",
        "Disqualified_Reason__c",
    ),
    "Contact": ("Email", "OwnerId", "AccountId", "LeadSource", "Lead_Score__c", "CreatedDate"),
    "Opportunity": (
        "StageName", "Amount", "CloseDate", "IsClosed", "IsWon", "OwnerId", "AccountId", "CampaignId",
        "LeadSource", "Loss_Reason__c", "CreatedDate",
    ),
    "OpportunityContactRole": ("OpportunityId", "ContactId", "IsPrimary", "Role"),
    "CampaignMember": ("CampaignId", "LeadId", "ContactId", "Status", "HasResponded", "FirstRespondedDate"),
    "Task": ("WhoId", "WhatId", "OwnerId", "Status", "ActivityDate", "CompletedDateTime", "Type", "IsClosed",
             "CreatedDate"),
    "Event": ("WhoId", "WhatId", "OwnerId", "StartDateTime", "ActivityDateTime", "Type", "CreatedDate"),
    "LeadHistory": ("LeadId", "Field", "OldValue", "NewValue", "CreatedDate"),
    "OpportunityFieldHistory": ("OpportunityId", "Field", "OldValue", "NewValue", "CreatedDate"),
}

DELETE_LOG_DAYS = 15  # how far back getDeleted reaches
DELETE_LOG_LAG = timedelta(minutes=2)
MAX_BULK_POLL_SECONDS = 30.0
MAX_QUERY_RESTARTS = 3
BULK_PAGE_RECORDS = 10_000
COMPOSITE_MAX = 25  # subrequests in one composite request, one API call
COMPOSITE_MAX_QUERIES = 5  # of which queries


def utc_now() -> datetime:
    return datetime.now(UTC)


class QueryLocatorExpired(RetriableError):
    """A query's nextRecordsUrl expired (INVALID_QUERY_LOCATOR); the query can be re-run."""


class _BulkUnavailable(Exception):
    """The Bulk job could not be created or did not complete; REST paging goes on."""


def keyset(cursor: str, after: Position) -> str:
    """The WHERE clause of everything after ``after`` in (cursor, Id) order."""
    stamp = soql_datetime(after.modified_at)
    if not after.last_id:
        return f"{cursor} >= {stamp}"
    return f"(({cursor} = {stamp} AND Id > '{_quote(after.last_id)}') OR {cursor} > {stamp})"


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _error_code(exc: SalesforceError) -> str | None:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        code = content[0].get("errorCode")
        return str(code) if code else None
    return None


class _Positions:
    """The largest (stamp, id) read so far among records stamped no later than ``until``."""

    def __init__(self, until: datetime, start: Position | None = None) -> None:
        self.until = until
        self.position = start

    def observe(self, records: Sequence[Record]) -> None:
        for r in records:
            if r.modified_at <= self.until:
                here = Position(r.modified_at, r.id)
                if self.position is None or here > self.position:
                    self.position = here


class SalesforceConnector:
    """Pulls Salesforce objects as pages of Records; see the module docstring."""

    system = "salesforce"

    def __init__(
        self,
        settings: SalesforceSettings,
        *,
        budget: CallBudget | None = None,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
        objects: Sequence[str] = OBJECTS,
        expected: Mapping[str, Sequence[str]] = EXPECTED_FIELDS,
    ) -> None:
        self.settings = settings
        self.meter = Meter(budget, settings.quota_reserve)
        self.session = build_session(settings, self.meter)
        self._clock = clock
        self._sleep = sleep
        self._objects = tuple(objects)
        self._expected = expected
        self._sf: Salesforce | None = None
        self._schemas: dict[str, ObjectSchema] = {}
        self._composite = True  # until the org refuses a composite request
        self._record_count = True  # until the org refuses /limits/recordCount
        self._sizes: dict[str, int] = {}
        self._sizes_until: datetime | None = None
        self.missing_fields: dict[str, list[str]] = {}
        self.logins = 0

    # -- what callers may read or set ---------------------------------------------------

    @property
    def budget(self) -> CallBudget | None:
        return self.meter.budget

    @budget.setter
    def budget(self, budget: CallBudget | None) -> None:
        self.meter.budget = budget

    @property
    def api_usage(self) -> ApiUsage | None:
        """The org's daily API usage (used, limit) from the last response's Sforce-Limit-Info."""
        return self.meter.usage

    @property
    def calls(self) -> int:
        """HTTP attempts made so far, retries and logins included."""
        return self.meter.calls

    def objects(self) -> Sequence[str]:
        return self._objects

    def close(self) -> None:
        """Release the HTTP connections."""
        self.session.close()

    # -- session ------------------------------------------------------------------------

    def connect(self) -> Salesforce:
        """Log in with the configured OAuth flow and build the simple-salesforce client."""
        self.logins += 1
        token = fetch_token(self.session, self.settings, self._clock())
        self._sf = Salesforce(
            instance_url=token.instance_url, session_id=token.access_token, session=self.session,
            version=self.settings.api_version, object_pairs_hook=dict,
        )
        log.info("salesforce.connected", instance=self._sf.sf_instance, auth=self.settings.auth)
        return self._sf

    def _call(self, what: str, fn: Callable[[Salesforce], T]) -> T:
        """One API call: logs in first if needed, logs in again once if the session expired,
        and translates vendor and transport errors at this boundary."""
        for attempt in (1, 2):
            sf = self._sf or self.connect()
            try:
                return fn(sf)
            except SalesforceExpiredSession as exc:
                self._sf = None
                if attempt == 2:
                    raise RetriableError(
                        f"Salesforce refused a fresh session while {what}; try again later"
                    ) from exc
                log.info("salesforce.session_expired", doing=what)
            except (SalesforceError, requests.RequestException) as exc:
                raise self._translate(exc, what) from exc
        raise AssertionError("unreachable")

    def _translate(self, exc: Exception, what: str) -> DetenteError:
        if isinstance(exc, SalesforceError):
            code = _error_code(exc)
            if isinstance(exc, SalesforceRefusedRequest):
                if code == "REQUEST_LIMIT_EXCEEDED":
                    usage = self.meter.usage
                    seen = f" ({usage.used} of {usage.limit} calls used)" if usage else ""
                    return BudgetExhausted(
                        f"Salesforce's daily API request limit is spent{seen} while {what}; "
                        "the pull resumes when the rolling 24-hour window frees calls"
                    )
                return FatalError(
                    f"Salesforce refused {what} ({code or 403}); give the integration user read access to it "
                    "(profile or permission set)"
                )
            if isinstance(exc, SalesforceMalformedRequest) and code == "INVALID_QUERY_LOCATOR":
                return QueryLocatorExpired(f"the query locator expired while {what}")
            if isinstance(exc, SalesforceMalformedRequest | SalesforceResourceNotFound):
                return FatalError(f"Salesforce rejected {what} ({code or exc.status}); check the object and "
                                  "field access of the integration user and salesforce.api_version")
            if isinstance(exc, SalesforceGeneralError):
                return RetriableError(
                    f"Salesforce answered {exc.status} while {what}, after {self.settings.retries} retries; "
                    "try again later"
                )
            return RetriableError(f"Salesforce failed while {what} ({type(exc).__name__})")
        if isinstance(exc, requests.exceptions.SSLError):
            return FatalError(f"cannot verify Salesforce's TLS certificate while {what}; "
                              "set salesforce.ca_file (DETENTE_SALESFORCE__CA_FILE) to the CA bundle that signed it")
        return RetriableError(
            f"{type(exc).__name__} while {what}, after {self.settings.retries} retries; try again later"
        )

    # -- describe -----------------------------------------------------------------------

    def schema(self, object_name: str) -> ObjectSchema:
        """The object's readable fields, described once per connector: every object not yet
        described in one composite request (one API call), one by one where it cannot be."""
        cached = self._schemas.get(object_name)
        if cached is None:
            self._together([object_name, *(n for n in self._objects if n != object_name)])
            cached = self._schemas.get(object_name)
        if cached is None:
            describe = self._call(f"describing {object_name}", lambda sf: getattr(sf, object_name).describe())
            cached = self._accept(object_name, describe)
        return cached

    def _accept(self, object_name: str, describe: Mapping[str, Any]) -> ObjectSchema:
        schema = schema_from_describe(describe)
        if schema.cursor is None or schema.field("Id") is None:
            raise FatalError(
                f"the integration user cannot read {object_name}.Id and {object_name}.SystemModstamp (or "
                f"CreatedDate); grant read access to them so {object_name} can be pulled"
            )
        missing = [f for f in self._expected.get(object_name, ()) if schema.field(f) is None]
        if missing:
            self.missing_fields[object_name] = missing
            log.warning("salesforce.fields_missing", object=object_name, fields=missing,
                        hint="grant the integration user read access to these fields")
        self._schemas[object_name] = schema
        return schema

    def _together(self, describe: Sequence[str], count: Sequence[str] = ()) -> dict[str, int]:
        """Describes of the objects in ``describe`` not yet described, and ``SELECT COUNT()`` of
        those in ``count`` (deleted rows included, as the pull reads them), in composite
        requests: 25 subrequests of which 5 queries make one API call. What a subrequest could
        not answer is left to the one-by-one path, which reports it; returns the counts."""
        v = self.settings.api_version
        describes = [{"method": "GET", "url": f"/services/data/v{v}/sobjects/{n}/describe", "referenceId": f"d_{n}"}
                     for n in dict.fromkeys(describe) if n not in self._schemas]
        queries = [{"method": "GET", "url": f"/services/data/v{v}/queryAll?q={quote(f'SELECT COUNT() FROM {n}')}",
                    "referenceId": f"n_{n}"} for n in list(dict.fromkeys(count))[:COMPOSITE_MAX_QUERIES]]
        counts: dict[str, int] = {}
        if not self._composite or not (describes or queries):
            return counts
        # The queries ride in the first request; the describes fill it and as many more as needed.
        room = COMPOSITE_MAX - len(queries)
        chunks = [queries + describes[:room]]
        chunks += [describes[i:i + COMPOSITE_MAX] for i in range(room, len(describes), COMPOSITE_MAX)]
        for chunk in (c for c in chunks if c):
            def send(sf: Salesforce, body: list[dict[str, str]] = chunk) -> Any:
                return sf.restful("composite", method="POST", json={"allOrNone": False, "compositeRequest": body})

            try:
                answer = self._call(f"describing {len(chunk)} objects in one composite request", send)
            except FatalError as exc:  # an org or proxy without the Composite resource
                log.info("salesforce.composite_unavailable", reason=str(exc))
                self._composite = False
                return counts
            for sub in (answer or {}).get("compositeResponse") or []:
                ref, status, body = str(sub.get("referenceId", "")), sub.get("httpStatusCode"), sub.get("body")
                if status != 200 or not isinstance(body, dict):
                    continue
                kind, _, name = ref.partition("_")
                if kind == "d":
                    try:
                        self._accept(name, body)
                    except FatalError:  # that object's own pull describes it again and says why
                        continue
                elif kind == "n" and isinstance(body.get("totalSize"), int):
                    counts[name] = int(body["totalSize"])
        return counts

    def expected_sizes(self, until: datetime) -> Mapping[str, int]:
        """About how many records each object holds, asked once per pull (``until``): from
        ``/limits/recordCount`` (one call; no history objects, approximate), the rest counted
        in the composite request that describes the objects. A whole read of an object above
        ``bulk_threshold`` goes straight to Bulk API 2.0; an object with no count is read
        through REST first and switches when the first page shows its size."""
        if self._sizes_until == until:
            return self._sizes
        sizes: dict[str, int] = {}
        if self._record_count:
            def counts(sf: Salesforce) -> Any:
                return sf.restful("limits/recordCount", params={"sObjects": ",".join(self._objects)})

            try:
                answer = self._call("reading record counts", counts)
                for item in (answer or {}).get("sObjects") or []:
                    if isinstance(item, dict) and isinstance(item.get("count"), int) and item.get("name"):
                        sizes[str(item["name"])] = int(item["count"])
            except FatalError as exc:  # e.g. the user lacks "View Setup and Configuration"
                log.info("salesforce.record_count_unavailable", reason=str(exc))
                self._record_count = False
        sizes.update(self._together(self._objects, [n for n in self._objects if n not in sizes]))
        self._sizes, self._sizes_until = sizes, until
        return sizes

    def describe_all(self) -> dict[str, list[str]]:
        """Describe every object now; return the expected fields the user cannot see."""
        for name in self._objects:
            self.schema(name)
        return dict(self.missing_fields)

    # -- pull -----------------------------------------------------------------------------

    def pull(self, object: str, since: Position | None, *, until: datetime, full: bool = False) -> Iterator[Page]:
        """Pages of ``object`` after ``since`` in (stamp, Id) order, soft-deleted rows included;
        ``full`` (or no ``since``) reads everything."""
        mark = self.meter.calls
        # A whole read asks first how large each object is; the same composite request describes them.
        expected = self.expected_sizes(until).get(object) if full or since is None else None
        schema = self.schema(object)
        cursor = schema.cursor
        assert cursor is not None
        where = None if full or since is None else keyset(cursor, since)
        positions = _Positions(until)
        headers = {"Sforce-Query-Options": f"batchSize={self.settings.page_size}"}
        select = f"SELECT {', '.join(schema.names)} FROM {object}"

        def run(clause: str | None) -> dict[str, Any]:
            soql = f"{select}{f' WHERE {clause}' if clause else ''} ORDER BY {cursor}, Id"
            result: dict[str, Any] = self._call(
                f"querying {object}", lambda sf: sf.query(soql, include_deleted=True, headers=headers)
            )
            return result

        if expected is not None and expected > self.settings.bulk_threshold:
            try:
                yield from self._pull_bulk(schema, None, positions, expected, mark)
                return
            except _BulkUnavailable as exc:  # page through REST; the attempt's calls count in its first page
                log.warning("salesforce.bulk_unavailable", object=object, reason=str(exc))
        result = run(where)
        total = int(result.get("totalSize") or 0)
        first = True
        seen_urls: set[str] = set()
        restarts = 0
        while True:
            page = self._page(schema, [parse_row(schema, r) for r in result.get("records") or []], positions)
            page.calls, mark = self.meter.calls - mark, self.meter.calls
            yield page
            if result.get("done", True):
                return
            if first and total > self.settings.bulk_threshold:
                first = False
                after = positions.position
                clause = keyset(cursor, after) if after is not None else where
                try:
                    yield from self._pull_bulk(schema, clause, positions, total, mark)
                    return
                except _BulkUnavailable as exc:  # go on paging; the attempt's calls count in the next page
                    log.warning("salesforce.bulk_unavailable", object=object, reason=str(exc))
            first = False
            next_url = str(result.get("nextRecordsUrl") or "")
            if not next_url or next_url in seen_urls:
                raise RetriableError(f"Salesforce repeated or omitted the next page of the {object} query")
            seen_urls.add(next_url)

            def more(sf: Salesforce, url: str = next_url) -> dict[str, Any]:
                body: dict[str, Any] = sf.query_more(url, identifier_is_url=True, headers=headers)
                return body

            try:
                result = self._call(f"reading the next page of {object}", more)
            except QueryLocatorExpired:
                restarts += 1
                if restarts > MAX_QUERY_RESTARTS:
                    raise
                log.info("salesforce.query_restarted", object=object, reason="INVALID_QUERY_LOCATOR")
                after = positions.position
                result = run(keyset(cursor, after) if after is not None else where)

    def _page(self, schema: ObjectSchema, rows: Sequence[Record | Reject], positions: _Positions) -> Page:
        records, rejects = split(rows)
        positions.observe(records)
        if rejects:
            log.warning("salesforce.rejected", object=schema.name, count=len(rejects),
                        reasons=sorted({r.reason for r in rejects})[:5])
        return Page(schema.name, records, rejects, positions.position)

    # -- Bulk API 2.0 -------------------------------------------------------------------

    def _bulk(self, sf: Salesforce, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One Bulk API 2.0 request through simple-salesforce's URL, headers and error mapping."""
        headers = {**sf.headers, "Accept": kwargs.pop("accept", "application/json")}
        response = self.session.request(method, sf.bulk2_url + path, headers=headers, **kwargs)
        if response.status_code >= 300:
            exception_handler(response, name="bulk2")
        return response

    def _pull_bulk(self, schema: ObjectSchema, clause: str | None, positions: _Positions, total: int,
                   mark: int) -> Iterator[Page]:
        """A large read (or its rest) as a queryAll Bulk job: one page per result chunk; only
        the last carries a position, since the results are not in any order. ``mark`` is the
        call count the first page's calls are counted from."""
        object_name = schema.name
        soql = f"SELECT {', '.join(schema.names)} FROM {object_name}{f' WHERE {clause}' if clause else ''}"
        body = {"operation": "queryAll", "query": soql, "contentType": "CSV",
                "columnDelimiter": "COMMA", "lineEnding": "LF"}
        try:
            job = self._call(f"creating a Bulk API 2.0 job for {object_name}",
                             lambda sf: self._bulk(sf, "POST", "query", json=body).json())
        except FatalError as exc:  # e.g. an object Bulk API 2.0 does not support
            raise _BulkUnavailable(str(exc)) from exc
        job_id = str(job["id"])
        log.info("salesforce.bulk_job", object=object_name, job=job_id, expected=total)
        self._wait_for_job(object_name, job_id)
        locator: str | None = None
        seen: set[str] = set()
        while True:
            params: dict[str, Any] = {"maxRecords": self.settings.bulk_max_records}
            if locator:
                params["locator"] = locator

            def results(sf: Salesforce, p: dict[str, Any] = params) -> requests.Response:
                return self._bulk(sf, "GET", f"query/{job_id}/results", params=p, accept="text/csv")

            response = self._call(f"reading Bulk API 2.0 results for {object_name}", results)
            next_locator = response.headers.get("Sforce-Locator") or "null"
            done = next_locator == "null"
            rows = iter_csv(schema, response.content.decode("utf-8"))
            del response
            # A chunk may hold 50,000 records; pages of at most BULK_PAGE_RECORDS, parsed as
            # they are needed, keep each store transaction and the memory it needs bounded.
            batch = list(islice(rows, BULK_PAGE_RECORDS))
            while True:
                following = list(islice(rows, BULK_PAGE_RECORDS))
                page = self._page(schema, batch, positions)
                if not (done and not following):
                    page.position = None
                page.calls, mark = self.meter.calls - mark, self.meter.calls
                yield page
                if not following:
                    break
                batch = following
            if done:
                return
            if next_locator in seen:
                raise RetriableError(f"Salesforce repeated a Bulk API 2.0 result locator for {object_name}")
            seen.add(next_locator)
            locator = next_locator

    def _wait_for_job(self, object_name: str, job_id: str) -> None:
        waited, delay = 0.0, self.settings.bulk_poll_seconds
        while True:
            self._sleep(delay)
            waited += delay
            info = self._call(f"polling the Bulk API 2.0 job for {object_name}",
                              lambda sf: self._bulk(sf, "GET", f"query/{job_id}").json())
            state = info.get("state")
            if state == "JobComplete":
                return
            if state in {"Failed", "Aborted"}:
                raise _BulkUnavailable(f"the Bulk API 2.0 job for {object_name} ended {state}")
            if waited >= self.settings.bulk_timeout_seconds:
                raise RetriableError(
                    f"the Bulk API 2.0 job for {object_name} did not finish in "
                    f"{self.settings.bulk_timeout_seconds:.0f} s (state {state}); the next pull starts over"
                )
            delay = min(delay * 2, MAX_BULK_POLL_SECONDS)

    # -- deletions ------------------------------------------------------------------------

    def deleted(self, object: str, since: datetime, *, until: datetime) -> Iterator[Page]:
        """Records deleted in the window, from getDeleted (purged ones included). Raises
        FullPullRequired when the delete log no longer reaches back to ``since``."""
        mark = self.meter.calls
        self.schema(object)
        if since < until - timedelta(days=DELETE_LOG_DAYS):
            raise FullPullRequired(object, f"Salesforce keeps deletes for {DELETE_LOG_DAYS} days and the last pull "
                                           f"was {(until - since).days} days ago")
        # getDeleted covers whole minutes up to its latestDateCovered, a little behind the
        # call; starting a margin early keeps the last minutes of the previous window covered.
        start = (since.astimezone(UTC) - DELETE_LOG_LAG).replace(second=0, microsecond=0)
        end = until.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        windows = [(start, end)]
        while windows:
            lo, hi = windows.pop(0)
            try:
                result = self._get_deleted(object, lo, hi)
            except FatalError as exc:
                code = _error_code(exc.__cause__) if isinstance(exc.__cause__, SalesforceError) else None
                if code == "EXCEEDED_ID_LIMIT" and hi - lo > timedelta(minutes=2):
                    middle = lo + (hi - lo) / 2
                    middle = middle.replace(second=0, microsecond=0)
                    windows[:0] = [(lo, middle), (middle, hi)]
                    continue
                if code == "INVALID_REPLICATION_DATE":
                    raise FullPullRequired(object, "Salesforce refused the getDeleted window") from exc
                raise
            earliest = result.get("earliestDateAvailable")
            if earliest and parse_datetime(str(earliest)) > since:
                raise FullPullRequired(object, "Salesforce's delete log starts after the last pull")
            records = [
                Record(object, str(d["id"]), parse_datetime(str(d["deletedDate"])), {}, deleted=True)
                for d in result.get("deletedRecords") or []
            ]
            yield Page(object, records, calls=self.meter.calls - mark)
            mark = self.meter.calls

    def _get_deleted(self, object_name: str, lo: datetime, hi: datetime) -> dict[str, Any]:
        def call(sf: Salesforce) -> dict[str, Any]:
            result: dict[str, Any] = getattr(sf, object_name).deleted(lo, hi)
            return result

        return self._call(f"reading deleted {object_name} records", call)

