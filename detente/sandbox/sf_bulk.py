"""Bulk API 2.0 query jobs for the Salesforce sandbox: a job snapshots the matching ids when it
is created, reports ``JobComplete`` from its first poll, and serves its results as CSV chunks
addressed by opaque locators, the way ``sf.bulk2.<Object>.query`` reads them.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from detente.sandbox.soql import SoqlError, SoqlQuery, compile_soql, csv_cells
from detente.sandbox.store import World, sf_datetime

DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^", "BACKQUOTE": "`"}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
DEFAULT_MAX_RECORDS = 50_000
_TERMINAL = {"JobComplete", "Failed", "Aborted"}


class BulkError(Exception):
    """A request the Bulk API would refuse: status, errorCode and message as it sends them."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


@dataclass
class QueryJob:
    id: str
    operation: str  # query | queryAll
    query: SoqlQuery
    created: str
    created_by: str
    api_version: str
    column_delimiter: str
    line_ending: str
    ids: list[str]
    state: str = "UploadComplete"
    modified: str = ""
    polls: int = 0
    error_message: str | None = None

    def info(self, *, detail: bool) -> dict[str, Any]:
        """The job as ``POST /jobs/query`` (``detail=False``) or ``GET /jobs/query/{id}`` shows it."""
        body: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.query.sobject.name,
            "createdById": self.created_by,
            "createdDate": self.created,
            "systemModstamp": self.modified or self.created,
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.api_version),
            "lineEnding": self.line_ending,
            "columnDelimiter": self.column_delimiter,
        }
        if detail:
            body |= {
                "jobType": "V2Query",
                "numberRecordsProcessed": len(self.ids) if self.state == "JobComplete" else 0,
                "retries": 0,
                "totalProcessingTime": 0,
                "isPkChunkingSupported": True,
            }
            if self.error_message:
                body["errorMessage"] = self.error_message
        return body


@dataclass
class BulkJobs:
    """The query jobs of one server; the oldest are forgotten past ``capacity`` jobs or
    ``max_ids`` result ids in all."""

    world: World
    capacity: int = 50
    max_ids: int = 2_000_000
    jobs: OrderedDict[str, QueryJob] = field(default_factory=OrderedDict)
    created_per_day: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def create(self, body: Any, *, api_version: str, user_id: str, now: datetime) -> QueryJob:
        if not isinstance(body, dict):
            raise BulkError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object describing the job.")
        operation = body.get("operation")
        if operation not in {"query", "queryAll"}:
            raise BulkError(400, "INVALIDJOB", f"InvalidJob : operation must be query or queryAll, not {operation!r}")
        delimiter = str(body.get("columnDelimiter") or "COMMA")
        ending = str(body.get("lineEnding") or "LF")
        if delimiter not in DELIMITERS or ending not in LINE_ENDINGS:
            raise BulkError(400, "INVALIDJOB", "InvalidJob : unsupported columnDelimiter or lineEnding")
        if body.get("contentType", "CSV") != "CSV":
            raise BulkError(400, "INVALIDJOB", "InvalidJob : only CSV content is supported for query jobs")
        soql = body.get("query")
        if not isinstance(soql, str) or not soql.strip():
            raise BulkError(400, "INVALIDJOB", "InvalidJob : the query is required")
        try:
            query = compile_soql(soql)
        except SoqlError as exc:
            raise BulkError(400, exc.error_code, exc.message) from exc
        _check_bulk_query(query)
        sql, params = query.ids_sql(include_deleted=operation == "queryAll")
        ids = [row[0] for row in self.world.tuples(sql, params)]
        stamp = sf_datetime(now)
        job = QueryJob(
            id="750" + _random_id(15), operation=operation, query=query, created=stamp,
            created_by=user_id, api_version=api_version, column_delimiter=delimiter,
            line_ending=ending, ids=ids,
        )
        with self.lock:
            self.jobs[job.id] = job
            held = sum(len(j.ids) for j in self.jobs.values())
            while len(self.jobs) > 1 and (len(self.jobs) > self.capacity or held > self.max_ids):
                _, dropped = self.jobs.popitem(last=False)
                held -= len(dropped.ids)
            day = now.date().isoformat()
            self.created_per_day[day] = self.created_per_day.get(day, 0) + 1
        return job

    def created_on(self, now: datetime) -> int:
        return self.created_per_day.get(now.date().isoformat(), 0)

    def get(self, job_id: str) -> QueryJob:
        with self.lock:
            job = self.jobs.get(job_id)
        if job is None:
            raise BulkError(404, "NOT_FOUND", f"Job {job_id} not found: no query job has this id")
        return job

    def poll(self, job_id: str, now: datetime) -> QueryJob:
        """The job's state; the ids were snapshotted at creation, so the first poll completes it."""
        job = self.get(job_id)
        job.polls += 1
        if job.state not in _TERMINAL:
            job.state = "JobComplete"
            job.modified = sf_datetime(now)
        return job

    def abort(self, job_id: str, state: Any, now: datetime) -> QueryJob:
        job = self.get(job_id)
        if state != "Aborted":
            raise BulkError(
                400, "INVALIDJOBSTATE", f"InvalidJobState : a query job can only be set to Aborted, not {state!r}"
            )
        if job.state in _TERMINAL:
            raise BulkError(400, "INVALIDJOBSTATE", f"InvalidJobState : the job is already {job.state}")
        job.state = "Aborted"
        job.modified = sf_datetime(now)
        return job

    def delete(self, job_id: str) -> None:
        job = self.get(job_id)
        if job.state not in _TERMINAL:
            raise BulkError(400, "INVALIDJOBSTATE", "InvalidJobState : abort the job before deleting it")
        with self.lock:
            self.jobs.pop(job_id, None)

    def results(self, job_id: str, locator: str | None, max_records: str | None) -> tuple[bytes, str, int]:
        """One CSV chunk: (body, next locator or ``null``, number of records)."""
        job = self.get(job_id)
        if job.state != "JobComplete":
            raise BulkError(
                400, "INVALIDJOBSTATE", f"InvalidJobState : results are not available while the job is {job.state}"
            )
        start = decode_locator(locator) if locator else 0
        if start is None or start > len(job.ids):
            raise BulkError(400, "INVALIDLOCATOR", f"Invalid locator: {locator}")
        size = _max_records(max_records)
        chunk = job.ids[start : start + size]
        rows = self.world.tuples(job.query.rows_sql(), (json.dumps(chunk),)) if chunk else []
        end = start + len(chunk)
        return (
            to_csv(job.query, rows, DELIMITERS[job.column_delimiter], LINE_ENDINGS[job.line_ending]),
            encode_locator(end) if end < len(job.ids) else "null",
            len(rows),
        )

    def listing(self) -> dict[str, Any]:
        with self.lock:
            jobs = list(self.jobs.values())
        return {"done": True, "records": [j.info(detail=False) for j in jobs], "nextRecordsUrl": None}


def to_csv(query: SoqlQuery, rows: list[tuple[Any, ...]], delimiter: str, line_ending: str) -> bytes:
    """Bulk API 2.0 result CSV: a header row, every value quoted, empty for null."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=line_ending, quoting=csv.QUOTE_ALL)
    writer.writerow(query.csv_header())
    writer.writerows(csv_cells(query, rows))
    return out.getvalue().encode("utf-8")


def encode_locator(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode().rstrip("=")


def decode_locator(locator: str) -> int | None:
    try:
        text = base64.urlsafe_b64decode(locator + "=" * (-len(locator) % 4)).decode()
    except ValueError:
        return None
    return int(text) if text.isdigit() else None


def _max_records(text: str | None) -> int:
    if text is None or text == "":
        return DEFAULT_MAX_RECORDS
    if not text.isdigit() or int(text) < 1:
        raise BulkError(400, "INVALIDJOB", f"maxRecords must be a positive integer, not {text!r}")
    return int(text)


def _check_bulk_query(query: SoqlQuery) -> None:
    """What Bulk API 2.0 refuses that REST query accepts."""
    if query.kind != "records":
        raise BulkError(400, "API_ERROR", "Aggregate queries such as COUNT() are not supported by Bulk API 2.0")
    if query.offset is not None:
        raise BulkError(400, "API_ERROR", "OFFSET is not supported by Bulk API 2.0")
    if query.uses_fields_function:
        raise BulkError(400, "API_ERROR", "FIELDS() is not supported by Bulk API 2.0")


def _random_id(length: int) -> str:
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    return "".join(secrets.choice(alphabet) for _ in range(length))
