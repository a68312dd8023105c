"""Write back, the transport: sends a list of writes to one CRM in as few calls as its API
allows and maps every per-record result back to the write that asked for it (by ``ref``).

Salesforce (``SalesforceWriter``) goes through the pull connector (``SalesforceConnector``):
its session, login, re-login on an expired session, retries with ``Retry-After``, timeouts,
call meter and budget all apply.

- Updates by record id: ``PATCH /composite/sobjects`` with ``allOrNone: false``, 200 records
  per call. Records of several objects share a call, sorted by object so that Salesforce sees
  one chunk per object (it allows ten).
- Upserts by external id (``Detente_Key__c``): ``PATCH /composite/sobjects/{SObject}/{Field}``,
  200 per call, one object and field per call. Nothing is created with POST, so a call the
  transport repeats, or a send repeated after a crash, finds the record the first one made.

HubSpot (``HubSpotWriter``) goes through ``HubSpotHttp``: its retries, throttle, meter and
budget apply.

- Updates: ``POST /crm/v3/objects/{object}/batch/update``, 100 per call.
- Upserts: ``POST .../batch/upsert`` with ``idProperty`` (``detente_key``), 100 per call.
- An upsert that names a record to associate with (a task on its contact) goes first to
  ``batch/create``, with the association inline and the key as ``objectWriteTraceId`` (so
  HubSpot answers per input, 207). An input refused because its key already exists (409
  CONFLICT on the unique property) is then sent through ``batch/upsert``. Every record written
  by ``batch/upsert`` that names an association gets it created with the v4
  ``POST /crm/v4/associations/{from}/{to}/batch/create`` (2,000 pairs per call, the documented
  maximum; creating an existing association changes nothing).

  Why create first rather than upsert and then associate: a task is usually written once,
  and then create-first costs one call per 100 tasks where upsert-then-associate costs two.
  It is as safe: the unique ``detente_key`` makes a repeated create (by the transport's retry
  or by a send repeated after a crash) fail as a conflict instead of making a second task, and
  the task and its association are made in one call, so no crash can leave a task without its
  contact. Sending a task again costs three calls (create, refused; upsert; associate), which
  is rare. ``create_first=False`` makes every upsert take the upsert-and-associate path.

Several writes to the same record in one send are merged into one wire record (fields
combined, later writes winning); each write still gets its outcome.

Outcomes. A per-record failure never raises; it comes back as an ``Outcome`` with the CRM's
own code and message and whether another attempt may succeed (``retryable``): a row lock, a
partial batch failure the CRM calls transient, or a call that kept answering 429/5xx after the
transport's retries. After such a call, nothing more is sent in that send (the rest come back
retryable, not sent). When the CRM refuses a whole call for something in one of its records
(HubSpot refuses a batch with one bad property value), the call is split to find that record:
records carrying a property that does not exist or is read-only fail at once; the others are
sent again, halved until the bad record stands alone. Errors that stop the send (credentials
refused, budget or daily quota spent, CRM unreachable) raise detente's errors; the outcomes
known by then are in ``last_outcomes``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from detente.connectors.base import BudgetExhausted, CallBudget
from detente.connectors.hs_transport import HubSpotHttp, Meter
from detente.connectors.salesforce import SalesforceConnector
from detente.errors import AuthError, DetenteError, FatalError
from detente.logs import get_logger
from detente.settings import HubSpotSettings, SalesforceSettings
from detente.writeback.failpoints import failpoint

log = get_logger("detente.writeback.send")
T = TypeVar("T")

SALESFORCE = "salesforce"
HUBSPOT = "hubspot"
SF_BATCH = 200  # records per sObject Collections call
SF_CHUNKS = 10  # runs of one object Salesforce accepts in one collection
HS_BATCH = 100  # inputs per HubSpot batch call
HS_ASSOCIATION_BATCH = 2_000  # pairs per v4 association batch create

# Per-record codes another attempt may get past; every other code is final.
SF_TRANSIENT = frozenset({
    "UNABLE_TO_LOCK_ROW", "ALL_OR_NONE_OPERATION_ROLLED_BACK", "REQUEST_RUNNING_TOO_LONG", "SERVER_UNAVAILABLE",
    "UNKNOWN_EXCEPTION", "QUERY_TIMEOUT",
})
HS_TRANSIENT = frozenset({"RATE_LIMITS", "INTERNAL_ERROR", "SERVICE_UNAVAILABLE", "TIMEOUT", "LOCKED"})
# HubSpot marks some per-input failures as transient only in words ("try it again").
_TRY_AGAIN = re.compile(r"\btry (?:it |this |the request )?again\b", re.IGNORECASE)
_HTTP_TRANSIENT = frozenset({408, 423, 429, 477})
# Properties whose mere presence fails an input, whatever its value.
_HS_FIXED = frozenset({"PROPERTY_DOESNT_EXIST", "READ_ONLY_VALUE"})
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_SF_FIELD_IN_MESSAGE = re.compile(r"\(field (\w+)\)|No such column '(\w+)'")

# HUBSPOT_DEFINED association types (from -> to), as HubSpot documents them.
HS_ASSOCIATION_TYPES: dict[tuple[str, str], int] = {
    ("tasks", "contacts"): 204, ("tasks", "companies"): 192, ("tasks", "deals"): 216,
    ("calls", "contacts"): 194, ("calls", "companies"): 182, ("calls", "deals"): 206,
    ("emails", "contacts"): 198, ("emails", "companies"): 186, ("emails", "deals"): 210,
    ("meetings", "contacts"): 200, ("meetings", "companies"): 188, ("meetings", "deals"): 212,
    ("notes", "contacts"): 202, ("notes", "companies"): 190, ("notes", "deals"): 214,
    ("contacts", "companies"): 279, ("companies", "contacts"): 280,
    ("contacts", "deals"): 4, ("deals", "contacts"): 3,
    ("deals", "companies"): 341, ("companies", "deals"): 342,
}


@dataclass(frozen=True)
class Op:
    """One write: an update of a record by id, or a create-or-update by a unique key."""

    ref: str  # the caller's id of this write (its outbox key); results come back by ref
    system: str  # "salesforce" | "hubspot"
    object: str  # Salesforce: Lead, Contact, Task; HubSpot: contacts, tasks
    fields: Mapping[str, Any]  # field/property -> wire value (str, number, bool, None to clear)
    record_id: str | None = None  # update this record ...
    upsert_key: tuple[str, str] | None = None  # ... or create-or-update by (unique field, value)
    associate_with: tuple[str, str] | None = None  # HubSpot: (object, id) to associate a created record with


@dataclass(frozen=True)
class Outcome:
    """What became of one write."""

    ref: str
    ok: bool
    record_id: str | None  # the CRM record written (the new id for a created record)
    created: bool
    error: str | None  # the CRM's own code and message
    retryable: bool  # another attempt later may succeed


class Writer(Protocol):
    """What the write-back stage needs from a CRM."""

    system: str

    @property
    def calls(self) -> int:
        """HTTP attempts made so far, logins and retries included."""
        ...

    def send(self, ops: Sequence[Op]) -> list[Outcome]:
        """One outcome per write, in order."""
        ...


# -- pure helpers -------------------------------------------------------------------------------


def batches(items: Sequence[T], size: int) -> list[list[T]]:
    """``items`` in consecutive runs of at most ``size``."""
    if size < 1:
        raise ValueError(f"a batch holds at least one item, not {size}")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


# Least privilege, again at the last step (the rules check refuses the rest first).
WRITABLE_OBJECTS = {SALESFORCE: frozenset({"Lead", "Contact", "Task"}), "hubspot": frozenset({"contacts", "tasks"})}
PEOPLE_OBJECTS = frozenset({"Lead", "Contact", "contacts"})
OWN_FIELD = {SALESFORCE: re.compile(r"^Detente_[A-Za-z0-9_]*__c$"), "hubspot": re.compile(r"^detente_[a-z0-9_]+$")}


def problem(op: Op, system: str) -> str | None:
    """Why ``op`` cannot be sent by the ``system`` writer, or None when it can."""
    if op.system != system:
        return f"a {op.system} write was given to the {system} writer"
    if (op.record_id is None) == (op.upsert_key is None):
        return "a write needs exactly one of record_id (update) and upsert_key (create or update)"
    if not _NAME.match(op.object):
        return f"{op.object!r} is not an object name"
    if op.object not in WRITABLE_OBJECTS[system]:
        return f"detente does not write {system} {op.object} records (only its fields on leads and contacts, " \
               "and its own tasks)"
    if op.object in PEOPLE_OBJECTS:
        foreign = sorted(n for n in op.fields if not OWN_FIELD[system].match(n))
        if foreign:
            return f"{foreign[0]} is not a field of detente's own; write-back touches only its own fields"
    if op.record_id is not None and not op.record_id.strip():
        return "the record id is empty"
    if op.upsert_key is not None:
        key_field, value = op.upsert_key
        if not _NAME.match(key_field):
            return f"{key_field!r} is not a field name"
        if not value:
            return f"the value of the key {key_field} is empty"
        if key_field in op.fields and op.fields[key_field] != value:
            return f"the fields set the key {key_field} to another value than upsert_key"
    for name, value in op.fields.items():
        if not _NAME.match(name):
            return f"{name!r} is not a field name"
        if not _wire_value(value):
            return (f"the value of {name} is a {type(value).__name__}; send str, a finite number, bool or None "
                    "(datetimes as ISO 8601 UTC strings)")
    if op.associate_with is not None:
        if system == SALESFORCE:
            return "Salesforce records are linked by their fields (a task's WhoId), not by associate_with"
        if op.upsert_key is None:
            return "associate_with applies to a record the write may create (a write with an upsert_key)"
        to_object, to_id = op.associate_with
        if (op.object, to_object) not in HS_ASSOCIATION_TYPES:
            return f"no HubSpot-defined association type from {op.object} to {to_object} is known"
        if not str(to_id).strip():
            return "the id to associate with is empty"
    return None


def _wire_value(value: Any) -> bool:
    if value is None or isinstance(value, str | bool | int):
        return True
    return isinstance(value, float) and math.isfinite(value)


@dataclass
class WireRecord:
    """One record on the wire: the writes to it in one send, their fields combined in order."""

    object: str
    indices: list[int]  # positions of the writes in the send
    fields: dict[str, Any]
    record_id: str | None = None
    key: tuple[str, str] | None = None
    associations: list[tuple[str, str]] = field(default_factory=list)

    def names(self) -> set[str]:
        """The fields this record carries on the wire, its key field included."""
        return set(self.fields) | ({self.key[0]} if self.key else set())

    @property
    def key_value(self) -> str:
        assert self.key is not None
        return _fold(self.key[0], self.key[1])


def _fold(key_field: str, value: str) -> str:
    """HubSpot matches emails case-insensitively."""
    return value.strip().lower() if key_field == "email" else value


def merge(ops: Sequence[Op], indices: Iterable[int]) -> list[WireRecord]:
    """The wire records of the writes at ``indices``: one per record (by id, or by key), in
    order of first appearance; later writes' fields win."""
    out: dict[tuple[str, str, str], WireRecord] = {}
    for i in indices:
        op = ops[i]
        if op.record_id is not None:
            ident = (op.object, "", op.record_id)
        else:
            assert op.upsert_key is not None
            ident = (op.object, op.upsert_key[0], _fold(*op.upsert_key))
        rec = out.get(ident)
        if rec is None:
            rec = out[ident] = WireRecord(op.object, [], {}, op.record_id, op.upsert_key)
        rec.indices.append(i)
        rec.fields.update(op.fields)
        if op.associate_with is not None and op.associate_with not in rec.associations:
            rec.associations.append(op.associate_with)
    return list(out.values())


def sf_update_batches(records: Sequence[WireRecord], size: int = SF_BATCH) -> list[list[WireRecord]]:
    """Update records sorted by object, in calls of at most ``size`` records and ten objects."""
    out: list[list[WireRecord]] = []
    current: list[WireRecord] = []
    for rec in sorted(records, key=lambda r: r.object):
        objects = {r.object for r in current} | {rec.object}
        if current and (len(current) >= size or len(objects) > SF_CHUNKS):
            out.append(current)
            current = []
        current.append(rec)
    if current:
        out.append(current)
    return out


@dataclass(frozen=True)
class Refusal:
    """A whole call refused for something in its records."""

    text: str  # the CRM's code and message
    splittable: bool  # sending fewer records may get the others through
    named: frozenset[str] = frozenset()  # the fields the refusal names
    fixed: frozenset[str] = frozenset()  # named fields whose presence alone fails a record
    details: tuple[tuple[str, str], ...] = ()  # (field, "code: message") per problem
    conflict: bool = False  # HubSpot 409: a unique value is taken

    def error_for(self, rec: WireRecord) -> str:
        mine = [text for name, text in self.details if name in rec.names()]
        return "; ".join(mine) if mine else self.text


@dataclass(frozen=True)
class Unavailable:
    """A call that kept failing (429, 5xx) after the transport's own retries."""

    text: str


def split(group: Sequence[WireRecord], refusal: Refusal) -> tuple[list[WireRecord], list[list[WireRecord]]]:
    """The records of a refused call that fail now, and the groups to send again to find which
    of the others the refusal was about. Each group is smaller than ``group``, so a search
    costs at most 2n - 1 calls."""
    if not refusal.splittable or len(group) <= 1:
        return list(group), []
    doomed = [r for r in group if r.names() & refusal.fixed]
    rest = [r for r in group if not r.names() & refusal.fixed]
    if doomed:
        return doomed, [rest] if rest else []
    suspects = [r for r in rest if r.names() & refusal.named]
    if suspects and len(suspects) < len(rest):
        return [], [suspects, [r for r in rest if not r.names() & refusal.named]]
    half = len(rest) // 2
    return [], [rest[:half], rest[half:]]


class _Stop(Exception):
    """Stop this send: the CRM kept failing after the transport's retries."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Ledger:
    """The outcomes of one send as they become known."""

    def __init__(self, ops: Sequence[Op], system: str) -> None:
        self.ops = ops
        self.outcomes: list[Outcome | None] = [None] * len(ops)
        self.valid: list[int] = []
        for i, op in enumerate(ops):
            why = problem(op, system)
            if why is None:
                self.valid.append(i)
            else:
                self.outcomes[i] = Outcome(op.ref, False, op.record_id, False, f"not sent: {why}", False)

    def settle(
        self,
        rec: WireRecord,
        ok: bool,
        *,
        record_id: str | None = None,
        created: bool = False,
        error: str | None = None,
        retryable: bool = False,
    ) -> None:
        for i in rec.indices:
            if self.outcomes[i] is None:
                self.outcomes[i] = Outcome(self.ops[i].ref, ok, record_id or rec.record_id, created and ok,
                                           None if ok else (error or "failed without a reason"), retryable and not ok)

    def fail(self, recs: Iterable[WireRecord], error: str, *, retryable: bool) -> None:
        for rec in recs:
            self.settle(rec, False, error=error, retryable=retryable)

    def stop(self, reason: str) -> None:
        for i, outcome in enumerate(self.outcomes):
            if outcome is None:
                op = self.ops[i]
                self.outcomes[i] = Outcome(op.ref, False, op.record_id, False,
                                           f"not sent: an earlier call of this send failed ({reason})", True)

    def complete(self) -> list[Outcome]:
        missing = [self.ops[i].ref for i, o in enumerate(self.outcomes) if o is None]
        assert not missing, f"no outcome for {missing[:5]}"
        return [o for o in self.outcomes if o is not None]

    def counts(self) -> dict[str, int]:
        done = [o for o in self.outcomes if o is not None]
        return {"ok": sum(o.ok for o in done), "failed": sum(not o.ok and not o.retryable for o in done),
                "retryable": sum(o.retryable for o in done)}


# -- Salesforce -----------------------------------------------------------------------------------


def sf_result(result: Any) -> dict[str, Any]:
    """One record's entry of an sObject Collections answer, as ``_Ledger.settle`` arguments."""
    if not isinstance(result, Mapping):
        return {"ok": False, "error": "Salesforce answered no result for this record", "retryable": True}
    rid = str(result["id"]) if result.get("id") else None
    if result.get("success") is True:
        return {"ok": True, "record_id": rid, "created": bool(result.get("created"))}
    errors = [e for e in result.get("errors") or [] if isinstance(e, Mapping)]
    codes = [str(e.get("statusCode") or "UNKNOWN_EXCEPTION") for e in errors]
    text = "; ".join(_sf_error_text(code, e) for code, e in zip(codes, errors, strict=True))
    return {"ok": False, "record_id": rid, "error": text or "Salesforce reported a failure without an error",
            "retryable": bool(codes) and all(c in SF_TRANSIENT for c in codes)}


def _sf_error_text(code: str, error: Mapping[str, Any]) -> str:
    fields = [str(f) for f in error.get("fields") or []]
    return f"{code}: {error.get('message') or ''}".rstrip() + (f" (fields: {', '.join(fields)})" if fields else "")


def sf_refusal(status: int, content: Any) -> Refusal:
    """A whole sObject Collections call refused (400, 404, ...): a value of the wrong JSON type
    (JSON_PARSER_ERROR) is a record's fault; anything else is the request's."""
    errors = [e for e in content if isinstance(e, Mapping)] if isinstance(content, list) else []
    first = errors[0] if errors else {}
    code = str(first.get("errorCode") or status)
    text = "; ".join(_sf_error_text(str(e.get("errorCode") or status), e) for e in errors) or f"{status}"
    named = {str(f) for e in errors for f in e.get("fields") or []}
    for e in errors:
        named |= {a or b for a, b in _SF_FIELD_IN_MESSAGE.findall(str(e.get("message") or ""))}
    return Refusal(text, splittable=code == "JSON_PARSER_ERROR", named=frozenset(named))


def _sf_code(content: Any) -> str | None:
    if isinstance(content, list) and content and isinstance(content[0], Mapping):
        code = content[0].get("errorCode")
        return str(code) if code else None
    return None


class SalesforceWriter:
    """Sends writes to Salesforce through sObject Collections; see the module docstring."""

    system = SALESFORCE

    def __init__(
        self,
        settings: SalesforceSettings,
        *,
        budget: CallBudget | None = None,
        connector: SalesforceConnector | None = None,
        batch_size: int = SF_BATCH,
    ) -> None:
        if not 1 <= batch_size <= SF_BATCH:
            raise ValueError(f"Salesforce takes 1 to {SF_BATCH} records per collection call, not {batch_size}")
        self.connector = connector or SalesforceConnector(settings, budget=budget, objects=(), expected={})
        self.batch_size = batch_size
        self.last_calls = 0  # HTTP attempts of the last send, logins and retries included
        self.last_outcomes: list[Outcome | None] = []  # after a send that raised: what is known

    @property
    def calls(self) -> int:
        """HTTP attempts made so far, logins and retries included."""
        return self.connector.calls

    def connect(self) -> None:
        """Log in now (a send logs in by itself when needed)."""
        self.connector.connect()

    def close(self) -> None:
        self.connector.close()

    def send(self, ops: Sequence[Op]) -> list[Outcome]:
        """Send the writes; one outcome per write, in order."""
        ledger = _Ledger(ops, SALESFORCE)
        mark = self.calls
        try:
            updates = merge(ops, [i for i in ledger.valid if ops[i].record_id is not None])
            jobs: list[tuple[str, str | None, list[WireRecord]]] = [
                ("composite/sobjects", None, group) for group in sf_update_batches(updates, self.batch_size)
            ]
            upserts: dict[tuple[str, str], list[WireRecord]] = {}
            for rec in merge(ops, [i for i in ledger.valid if ops[i].upsert_key is not None]):
                assert rec.key is not None
                upserts.setdefault((rec.object, rec.key[0]), []).append(rec)
            for (obj, name), recs in upserts.items():
                jobs += [(f"composite/sobjects/{obj}/{name}", name, group) for group in batches(recs, self.batch_size)]
            for n, (path, key_field, group) in enumerate(jobs):
                if n:
                    failpoint("between_batches")
                self._write(ledger, path, key_field, group)
        except _Stop as stop:
            ledger.stop(stop.reason)
        finally:
            self.last_calls = self.calls - mark
            self.last_outcomes = list(ledger.outcomes)
        outcomes = ledger.complete()
        log.info("writeback.sent", system=SALESFORCE, writes=len(ops), calls=self.last_calls, **ledger.counts())
        return outcomes

    def _write(self, ledger: _Ledger, path: str, key_field: str | None, group: list[WireRecord]) -> None:
        records = [self._wire(rec, key_field) for rec in group]
        objects = ", ".join(sorted({r.object for r in group}))
        what = f"{'upserting' if key_field else 'updating'} {len(group)} {objects} records"
        answer = self._patch(path, {"allOrNone": False, "records": records}, what)
        if isinstance(answer, Unavailable):
            ledger.fail(group, answer.text, retryable=True)
            raise _Stop(answer.text)
        if isinstance(answer, Refusal):
            failed, again = split(group, answer)
            for rec in failed:
                ledger.settle(rec, False, error=answer.error_for(rec))
            for part in again:
                self._write(ledger, path, key_field, part)
            return
        if len(answer) != len(group):
            ledger.fail(group, f"Salesforce answered {len(answer)} results for {len(group)} records", retryable=True)
            return
        for rec, result in zip(group, answer, strict=True):
            ledger.settle(rec, **sf_result(result))

    @staticmethod
    def _wire(rec: WireRecord, key_field: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"attributes": {"type": rec.object}, **rec.fields}
        if key_field is None:
            body["Id"] = rec.record_id
        else:
            assert rec.key is not None
            body[key_field] = rec.key[1]
        return body

    def _patch(self, path: str, body: dict[str, Any], what: str) -> list[Any] | Refusal | Unavailable:
        retries = self.connector.settings.retries

        def call(sf: Salesforce) -> list[Any] | Refusal | Unavailable:
            try:
                answer = sf.restful(path, method="PATCH", json=body)
            except (SalesforceMalformedRequest, SalesforceResourceNotFound) as exc:
                return sf_refusal(exc.status, exc.content)
            except SalesforceRefusedRequest as exc:
                code = _sf_code(exc.content)
                if code == "REQUEST_LIMIT_EXCEEDED":
                    raise  # the connector makes it BudgetExhausted
                raise FatalError(
                    f"Salesforce refused {what} ({code or exc.status}); give the integration user edit access to "
                    "these objects and fields (profile or permission set)"
                ) from exc
            except SalesforceGeneralError as exc:
                if exc.status in _HTTP_TRANSIENT or exc.status >= 500:
                    return Unavailable(f"Salesforce answered {exc.status} ({_sf_code(exc.content) or 'no code'}) "
                                       f"while {what}, after {retries} retries")
                return sf_refusal(exc.status, exc.content)
            return list(answer) if isinstance(answer, list) else []

        return self.connector._call(what, call)

    def missing_fields(self, wanted: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
        """Per object, the wanted fields the org lacks or the integration user cannot write,
        by one describe per object; objects with nothing missing are left out."""
        out: dict[str, list[str]] = {}
        for obj, names in wanted.items():
            writable = self._writable(obj) if _NAME.match(obj) else None
            missing = [n for n in names if writable is None or not writable.get(n.lower(), False)]
            if missing:
                out[obj] = missing
        return out

    def _writable(self, obj: str) -> dict[str, bool] | None:
        """Field name (lower case) -> whether it can be written; None for an unknown object."""

        def call(sf: Salesforce) -> dict[str, Any] | None:
            try:
                describe: dict[str, Any] = getattr(sf, obj).describe()
            except SalesforceResourceNotFound:
                return None
            return describe

        describe = self.connector._call(f"describing {obj}", call)
        if describe is None:
            return None
        return {
            str(f.get("name", "")).lower(): bool(f.get("updateable") or f.get("createable"))
            for f in describe.get("fields") or []
            if isinstance(f, Mapping)
        }


# -- HubSpot --------------------------------------------------------------------------------------


def hs_value(value: Any) -> str:
    """A wire value as HubSpot takes it: strings; "" clears a property."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _hs_properties(rec: WireRecord) -> dict[str, str]:
    props = {name: hs_value(v) for name, v in rec.fields.items()}
    if rec.key is not None:
        props[rec.key[0]] = rec.key[1]
    return props


def hs_error_text(error: Mapping[str, Any]) -> str:
    category = str(error.get("category") or error.get("status") or "ERROR")
    sub = error.get("subCategory")
    return f"{category}{f' ({sub})' if sub else ''}: {error.get('message') or ''}".rstrip()


def hs_transient(error: Mapping[str, Any]) -> bool:
    return str(error.get("category")) in HS_TRANSIENT or bool(_TRY_AGAIN.search(str(error.get("message") or "")))


def hs_refusal(status: int, body: Any) -> Refusal:
    """A whole batch call refused: invalid property values (400) or a unique value taken (409)
    are some record's fault; anything else is the request's."""
    parsed = _json(body)
    category = str(parsed.get("category") or status)
    message = str(parsed.get("message") or "")
    text = f"{category}: {message}".rstrip(": ")
    details = _property_details(message)
    if details:
        named = frozenset(str(d.get("name")) for d in details)
        fixed = frozenset(str(d.get("name")) for d in details if d.get("error") in _HS_FIXED)
        per = tuple((str(d.get("name")), f"{d.get('error')}: {d.get('message')}") for d in details)
        return Refusal(text, True, named, fixed, per)
    if status == 409:
        return Refusal(text, True, conflict=True)
    return Refusal(text, False)


def _json(body: Any) -> dict[str, Any]:
    if isinstance(body, bytes | bytearray):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str) or not body:
        return {}
    try:
        parsed = json.loads(body)
    except json.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _property_details(message: str) -> list[dict[str, Any]]:
    """The per-property list HubSpot inlines as JSON in "Property values were not valid: [...]"."""
    start = message.find("[")
    if "not valid" not in message or start < 0:
        return []
    try:
        details = json.loads(message[start:])
    except json.JSONDecodeError:
        return []
    return [d for d in details if isinstance(d, dict) and d.get("name")] if isinstance(details, list) else []


@dataclass
class _Answer:
    """A batch answer's result and errors for one record."""

    result: Mapping[str, Any] | None = None
    errors: list[Mapping[str, Any]] = field(default_factory=list)


def pair(
    group: Sequence[WireRecord],
    answer: Mapping[str, Any],
    ident: Callable[[WireRecord], str],
    result_ident: Callable[[Mapping[str, Any]], str | None],
    fold: Callable[[str], str] = str,
) -> list[_Answer]:
    """Each record's result and errors in a HubSpot batch answer (200 or 207), matched by
    ``ident``: errors name their records in ``context`` (ids, objectWriteTraceId)."""
    position = {ident(rec): i for i, rec in enumerate(group)}
    found = [_Answer() for _ in group]
    loose: list[Mapping[str, Any]] = []
    for res in answer.get("results") or []:
        if not isinstance(res, Mapping):
            continue
        i = position.get(result_ident(res) or "")
        if i is not None and found[i].result is None:
            found[i].result = res
        else:
            loose.append(res)
    unplaced: list[Mapping[str, Any]] = []
    for err in answer.get("errors") or []:
        if not isinstance(err, Mapping):
            continue
        named = [fold(v) for v in _context_ids(err)]
        hits = {position[n] for n in named if n in position}
        indices = _context(err).get("inputIndex") or []
        hits |= {int(v) for v in indices if str(v).isdigit() and int(v) < len(group)}
        for i in hits:
            found[i].errors.append(err)
        if not hits:
            unplaced.append(err)
    silent = [a for a in found if a.result is None and not a.errors]
    if loose and len(loose) == len(silent) and not unplaced:
        # An update of a merged-away contact is answered with the survivor's id.
        for a, res in zip(silent, loose, strict=True):
            a.result = res
    elif unplaced:
        for a in silent:
            a.errors.extend(unplaced)
    return found


class HubSpotWriter:
    """Sends writes to HubSpot through the batch endpoints; see the module docstring."""

    system = HUBSPOT

    def __init__(
        self,
        settings: HubSpotSettings,
        *,
        budget: CallBudget | None = None,
        meter: Meter | None = None,
        http: HubSpotHttp | None = None,
        create_first: bool = True,
        batch_size: int = HS_BATCH,
    ) -> None:
        if not 1 <= batch_size <= HS_BATCH:
            raise ValueError(f"HubSpot takes 1 to {HS_BATCH} inputs per batch call, not {batch_size}")
        self._owns = http is None
        self.meter = meter or (http.meter if http is not None else Meter(
            budget, burst_per_10s=settings.burst_per_10s, search_per_second=settings.search_per_second,
            reserve=settings.quota_reserve,
        ))
        self.http = http or HubSpotHttp(settings, self.meter)
        self.create_first = create_first
        self.batch_size = batch_size
        self.last_calls = 0  # HTTP attempts of the last send, retries included
        self.last_outcomes: list[Outcome | None] = []  # after a send that raised: what is known

    @property
    def calls(self) -> int:
        """HTTP attempts made so far, retries included."""
        return self.meter.calls

    def close(self) -> None:
        if self._owns:
            self.http.close()
            self.meter.close()

    def send(self, ops: Sequence[Op]) -> list[Outcome]:
        """Send the writes; one outcome per write, in order."""
        ledger = _Ledger(ops, HUBSPOT)
        mark = self.calls
        try:
            updates: dict[str, list[WireRecord]] = {}
            for rec in merge(ops, [i for i in ledger.valid if ops[i].record_id is not None]):
                updates.setdefault(rec.object, []).append(rec)
            for obj, recs in updates.items():
                for group in batches(recs, self.batch_size):
                    self._update(ledger, obj, group)
            upserts: dict[str, list[WireRecord]] = {}
            for rec in merge(ops, [i for i in ledger.valid if ops[i].upsert_key is not None]):
                upserts.setdefault(rec.object, []).append(rec)
            for obj, recs in upserts.items():
                self._upsert_object(ledger, obj, recs)
        except _Stop as stop:
            ledger.stop(stop.reason)
        finally:
            self.last_calls = self.calls - mark
            self.last_outcomes = list(ledger.outcomes)
        outcomes = ledger.complete()
        log.info("writeback.sent", system=HUBSPOT, writes=len(ops), calls=self.last_calls, **ledger.counts())
        return outcomes

    # -- updates ------------------------------------------------------------------------------

    def _update(self, ledger: _Ledger, obj: str, group: list[WireRecord]) -> None:
        body = {"inputs": [{"id": rec.record_id, "properties": _hs_properties(rec)} for rec in group]}
        answer = self._post(f"update {obj}", obj, self.http.batch_api.update, obj, body)
        if isinstance(answer, Unavailable):
            ledger.fail(group, answer.text, retryable=True)
            raise _Stop(answer.text)
        if isinstance(answer, Refusal):
            failed, again = split(group, answer)
            for rec in failed:
                ledger.settle(rec, False, error=answer.error_for(rec))
            for part in again:
                self._update(ledger, obj, part)
            return
        for rec, got in zip(group, pair(group, answer, lambda r: str(r.record_id), _result_id), strict=True):
            self._settle(ledger, rec, got, created=False)

    # -- upserts ------------------------------------------------------------------------------

    def _upsert_object(self, ledger: _Ledger, obj: str, recs: list[WireRecord]) -> None:
        first: dict[str, list[WireRecord]] = {}
        upsert: dict[str, list[WireRecord]] = {}
        for rec in recs:
            assert rec.key is not None
            (first if self.create_first and rec.associations else upsert).setdefault(rec.key[0], []).append(rec)
        for key_field, keyed in first.items():
            for group in batches(keyed, self.batch_size):
                upsert.setdefault(key_field, []).extend(self._create(ledger, obj, key_field, group))
        written: list[tuple[WireRecord, str, bool]] = []
        for key_field, keyed in upsert.items():
            for group in batches(keyed, self.batch_size):
                written += self._upsert(ledger, obj, key_field, group)
        self._associate(ledger, obj, written)

    def _create(self, ledger: _Ledger, obj: str, key_field: str, group: list[WireRecord]) -> list[WireRecord]:
        """Create with associations inline; return the records whose key is taken already."""
        inputs = []
        for rec in group:
            links = [{"to": {"id": to_id}, "types": [{"associationCategory": "HUBSPOT_DEFINED",
                                                     "associationTypeId": HS_ASSOCIATION_TYPES[(obj, to)]}]}
                     for to, to_id in rec.associations]
            inputs.append({"properties": _hs_properties(rec), "associations": links,
                           "objectWriteTraceId": rec.key_value})
        answer = self._post(f"create {obj}", obj, self.http.batch_api.create, obj, {"inputs": inputs})
        if isinstance(answer, Unavailable):
            ledger.fail(group, answer.text, retryable=True)
            raise _Stop(answer.text)
        if isinstance(answer, Refusal):
            if answer.conflict:
                return group
            failed, again = split(group, answer)
            for rec in failed:
                ledger.settle(rec, False, error=answer.error_for(rec))
            return [taken for part in again for taken in self._create(ledger, obj, key_field, part)]
        taken = []
        for rec, got in zip(group, pair(group, answer, lambda r: r.key_value, _result_key(key_field)), strict=True):
            if got.result is None and got.errors and all(e.get("category") == "CONFLICT" for e in got.errors):
                taken.append(rec)
            else:
                self._settle(ledger, rec, got, created=True)
        return taken

    def _upsert(
        self, ledger: _Ledger, obj: str, key_field: str, group: list[WireRecord]
    ) -> list[tuple[WireRecord, str, bool]]:
        """Upsert by ``key_field``; return the written records that name associations, with
        their ids and whether they were created (their outcome waits for the associations)."""
        body = {"inputs": [{"id": rec.key[1] if rec.key else None, "idProperty": key_field,
                            "properties": _hs_properties(rec)} for rec in group]}
        answer = self._post(f"upsert {obj}", obj, self.http.batch_api.upsert, obj, body)
        if isinstance(answer, Unavailable):
            ledger.fail(group, answer.text, retryable=True)
            raise _Stop(answer.text)
        if isinstance(answer, Refusal):
            failed, again = split(group, answer)
            for rec in failed:
                ledger.settle(rec, False, error=answer.error_for(rec))
            return [w for part in again for w in self._upsert(ledger, obj, key_field, part)]
        written = []
        for rec, got in zip(group, pair(group, answer, lambda r: r.key_value, _result_key(key_field),
                                         lambda v: _fold(key_field, v)), strict=True):
            if got.result is not None and not got.errors and rec.associations and got.result.get("id"):
                written.append((rec, str(got.result["id"]), bool(got.result.get("new"))))
            else:
                self._settle(ledger, rec, got, created=bool(got.result and got.result.get("new")))
        return written

    def _associate(self, ledger: _Ledger, obj: str, written: list[tuple[WireRecord, str, bool]]) -> None:
        """Create the associations of records written by upsert, then settle them."""
        problems: dict[int, list[str]] = {}
        transient: dict[int, bool] = {}
        pairs: dict[str, list[tuple[int, str, str]]] = {}
        for n, (rec, rid, _) in enumerate(written):
            for to, to_id in rec.associations:
                pairs.setdefault(to, []).append((n, rid, to_id))
        stop: str | None = None
        for to, items in pairs.items():
            for group in batches(items, HS_ASSOCIATION_BATCH):
                if stop is not None:
                    for n, _, to_id in group:
                        problems.setdefault(n, []).append(f"not associated with {to} {to_id}: not sent ({stop})")
                        transient.setdefault(n, True)
                    continue
                spec = [{"associationCategory": "HUBSPOT_DEFINED",
                         "associationTypeId": HS_ASSOCIATION_TYPES[(obj, to)]}]
                body = {"inputs": [{"from": {"id": rid}, "to": {"id": to_id}, "types": spec}
                                   for _, rid, to_id in group]}
                answer = self._post(f"associate {obj} with {to}", obj, self.http.assoc_batch_api.create, obj, to, body)
                if isinstance(answer, Unavailable | Refusal):
                    for n, _, to_id in group:
                        problems.setdefault(n, []).append(f"not associated with {to} {to_id}: {answer.text}")
                        transient[n] = transient.get(n, True) and isinstance(answer, Unavailable)
                    if isinstance(answer, Unavailable):
                        stop = answer.text
                    continue
                done = {(str(r.get("fromObjectId")), str(r.get("toObjectId")))
                        for r in answer.get("results") or [] if isinstance(r, Mapping)}
                errors = [e for e in answer.get("errors") or [] if isinstance(e, Mapping)]
                for n, rid, to_id in group:
                    if (rid, str(to_id)) in done:
                        continue
                    mine = [e for e in errors if {rid, str(to_id)} & _context_ids(e)]
                    reason = "; ".join(hs_error_text(e) for e in mine) or "HubSpot did not confirm it"
                    problems.setdefault(n, []).append(f"not associated with {to} {to_id}: {reason}")
                    transient[n] = transient.get(n, True) and (not mine or all(hs_transient(e) for e in mine))
        for n, (rec, rid, created) in enumerate(written):
            if n in problems:
                error = f"written as {rid}, but " + "; ".join(problems[n])
                ledger.settle(rec, False, record_id=rid, error=error, retryable=transient.get(n, False))
            else:
                ledger.settle(rec, True, record_id=rid, created=created)
        if stop is not None:
            raise _Stop(stop)

    # -- shared -------------------------------------------------------------------------------

    @staticmethod
    def _settle(ledger: _Ledger, rec: WireRecord, got: _Answer, *, created: bool) -> None:
        if got.errors:
            ledger.settle(rec, False, error="; ".join(hs_error_text(e) for e in got.errors),
                          retryable=all(hs_transient(e) for e in got.errors))
        elif got.result is not None:
            rid = got.result.get("id")
            ledger.settle(rec, True, record_id=str(rid) if rid else None, created=created)
        else:
            ledger.settle(rec, False, error="HubSpot's answer said nothing about this record", retryable=True)

    def _post(self, what: str, object_name: str, method: Callable[..., Any], *args: Any) -> (
        dict[str, Any] | Refusal | Unavailable
    ):
        try:
            return self.http._call(what, object_name, False, method, *args)
        except (BudgetExhausted, AuthError):
            raise
        except DetenteError as exc:
            status = getattr(exc.__cause__, "status", None)
            if not isinstance(status, int) or status <= 0:
                raise  # HubSpot unreachable, TLS: the send cannot go on
            if status == 403:
                raise AuthError(
                    f"HubSpot refused to {what} (403); give the private app write access to {object_name}"
                    f" (scope crm.objects.{object_name}.write) and check the token"
                ) from exc
            if status >= 500 or status in _HTTP_TRANSIENT:
                return Unavailable(f"HubSpot answered {status} when asked to {what}, after the configured retries")
            return hs_refusal(status, getattr(exc.__cause__, "body", None))

    def missing_properties(self, wanted: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
        """Per object, the wanted properties the portal lacks or that are read-only, by one
        properties read per object; objects with nothing missing are left out."""
        out: dict[str, list[str]] = {}
        for obj, names in wanted.items():
            writable = self._writable(obj) if _NAME.match(obj) else None
            missing = [n for n in names if writable is None or not writable.get(n, False)]
            if missing:
                out[obj] = missing
        return out

    def _writable(self, obj: str) -> dict[str, bool] | None:
        try:
            answer = self.http.properties(obj)
        except FatalError as exc:
            if getattr(exc.__cause__, "status", None) in {400, 404}:
                return None  # no such object
            raise
        out: dict[str, bool] = {}
        for prop in answer.get("results") or []:
            if isinstance(prop, Mapping) and prop.get("name"):
                meta = prop.get("modificationMetadata") if isinstance(prop.get("modificationMetadata"), Mapping) else {}
                assert isinstance(meta, Mapping)
                out[str(prop["name"])] = not (meta.get("readOnlyValue") or prop.get("calculated"))
        return out


def _context(error: Mapping[str, Any]) -> Mapping[str, Any]:
    context = error.get("context")
    return context if isinstance(context, Mapping) else {}


def _context_ids(error: Mapping[str, Any]) -> set[str]:
    """The records a batch error names: ids, upsert keys or objectWriteTraceIds."""
    context = _context(error)
    return {str(v) for k in ("ids", "objectWriteTraceId", "id") for v in context.get(k) or []}


def _result_id(result: Mapping[str, Any]) -> str | None:
    rid = result.get("id")
    return str(rid) if rid is not None else None


def _result_key(key_field: str) -> Callable[[Mapping[str, Any]], str | None]:
    """A created or upserted record's key: its objectWriteTraceId, else the key property."""

    def key(result: Mapping[str, Any]) -> str | None:
        trace = result.get("objectWriteTraceId")
        if trace:
            return str(trace)
        props = result.get("properties")
        value = props.get(key_field) if isinstance(props, Mapping) else None
        return _fold(key_field, str(value)) if value is not None else None

    return key
