"""Salesforce REST API simulator: OAuth, query with locators, describe, records, sObject
Collections, change feeds, Bulk API 2.0 query and limits, over the sandbox's world, close
enough to the real API that unmodified simple-salesforce works against it.

Every bad request gets Salesforce's own error shape (a JSON array of ``{message, errorCode,
fields}``) and status. Every timestamp the server sets comes from the sandbox clock. Faults
and call counting come from the shared :class:`SandboxMiddleware` through :class:`Hooks`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from detente.sandbox.control import Control, Hooks, SandboxMiddleware, control_routes
from detente.sandbox.credentials import SandboxCredentials
from detente.sandbox.schema import SALESFORCE_OBJECTS, SfField, SfObject, sf_object
from detente.sandbox.sf_bulk import BulkError, BulkJobs
from detente.sandbox.soql import (
    SoqlError,
    SoqlQuery,
    compile_soql,
    filterable,
    normalize_id,
    object_for_id,
    records,
)
from detente.sandbox.store import World, parse_datetime, sf_datetime, sf_id

ORG_ID = sf_id("00D", 1)
DEFAULT_DAILY_LIMIT = 100_000
MAX_COLLECTION = 200
LOGIN_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")
API_VERSIONS = tuple(f"{v}.0" for v in range(50, 63))
_VERSION = re.compile(r"\d{1,3}\.\d")
COMPOSITE_MAX = 25  # subrequests in one composite request
COMPOSITE_MAX_QUERIES = 5  # of which queries
_COMPOSITE_PATH = re.compile(r"/services/data/v(?P<version>\d{1,3}\.\d)/(?P<rest>.+)")


def _composite_query(url: str) -> bool:
    match = _COMPOSITE_PATH.fullmatch(urlsplit(url).path.rstrip("/"))
    return match is not None and match["rest"] in ("query", "queryAll")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_STRINGISH = frozenset({"string", "textarea", "email", "phone", "url", "picklist"})
_PICKLIST_DEFAULTS = {
    ("Lead", "Status"): "Open - Not Contacted",
    ("Task", "Status"): "Not Started",
    ("Task", "Priority"): "Normal",
}
_AUDIT = frozenset({"CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById", "SystemModstamp"})
_ROLLED_BACK = "Record rolled back because not all records were valid and the request was using AllOrNone header"


# ---------------------------------------------------------------------------------------
# Responses and errors
# ---------------------------------------------------------------------------------------


class SfApiError(Exception):
    """A request the API refuses; becomes ``[{"message","errorCode","fields"?}]``."""

    def __init__(self, status: int, error_code: str, message: str, fields: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.errors = [_error(error_code, message, fields)]

    @classmethod
    def many(cls, status: int, errors: Sequence[FieldError]) -> SfApiError:
        exc = cls(status, errors[0].code, errors[0].message, errors[0].fields)
        exc.errors = [_error(e.code, e.message, e.fields) for e in errors]
        return exc


@dataclass(frozen=True)
class FieldError:
    """One record-level problem, shown as ``errorCode`` at the top level and ``statusCode``
    in sObject Collections results."""

    code: str
    message: str
    fields: tuple[str, ...] = ()

    def as_result(self) -> dict[str, Any]:
        return {"statusCode": self.code, "message": self.message, "fields": list(self.fields)}


def _cannot(verb: str, obj: SfObject) -> FieldError:
    return FieldError("INVALID_TYPE_FOR_OPERATION", f"entity type cannot be {verb}: {obj.label}")


def _error(code: str, message: str, fields: Sequence[str] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message, "errorCode": code}
    if fields is not None:
        body["fields"] = list(fields)
    return body


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Response(content, status, headers=dict(headers or {}), media_type="application/json;charset=UTF-8")


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return json_response([{"message": message, "errorCode": code}], status, headers)


def fault_response(kind: str, status: int, retry_after: float | None) -> Response:
    """The shared middleware's injected faults, as Salesforce shows them."""
    if kind == "rate_limited":
        headers = {} if retry_after is None else {"Retry-After": str(math.ceil(retry_after))}
        return error_response(
            429, "REQUEST_LIMIT_EXCEEDED",
            "Too many requests: this client is over the sandbox's request rate; slow down and retry.", headers,
        )
    if kind == "quota":
        return error_response(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
    if kind == "expired_session":
        return error_response(401, "INVALID_SESSION_ID", "Session expired or invalid")
    if kind == "refused":
        return error_response(403, "INSUFFICIENT_ACCESS", "insufficient access rights on cross-reference id")
    if kind == "server_error":
        return error_response(
            status or 503, "SERVER_UNAVAILABLE", "The server is temporarily unavailable; retry the request later."
        )
    return error_response(status or 500, "UNKNOWN_EXCEPTION", f"An unexpected error occurred ({kind}).")


def _oauth_error(error: str, description: str) -> Response:
    return json_response({"error": error, "error_description": description}, 400)


# ---------------------------------------------------------------------------------------
# Sessions (OAuth access tokens, held in memory)
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthSession:
    user_id: str
    issued_ms: int


@dataclass
class Sessions:
    """Access tokens issued by this server; the oldest are forgotten past ``capacity``."""

    capacity: int = 10_000
    tokens: OrderedDict[str, AuthSession] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, user_id: str, issued_ms: int) -> str:
        token = f"{ORG_ID[:15]}!AQ" + secrets.token_urlsafe(48)
        with self.lock:
            self.tokens[token] = AuthSession(user_id, issued_ms)
            while len(self.tokens) > self.capacity:
                self.tokens.popitem(last=False)
        return token

    def get(self, token: str | None) -> AuthSession | None:
        if not token:
            return None
        with self.lock:
            return self.tokens.get(token)

    def revoke(self, token: str) -> None:
        with self.lock:
            self.tokens.pop(token, None)


def bearer_token(authorization: str | None) -> str | None:
    """The token of ``Authorization: Bearer <t>`` (Salesforce also takes ``OAuth <t>``)."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() in {"bearer", "oauth"} else None


def _scope_token(scope: Scope) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"authorization":
            return bearer_token(value.decode("latin-1"))
    return None


# ---------------------------------------------------------------------------------------
# OAuth grants (pure: the form, the credentials and now in, an error or None out)
# ---------------------------------------------------------------------------------------


def check_password_grant(form: Mapping[str, str], creds: SandboxCredentials) -> tuple[str, str] | None:
    if form.get("client_id") != creds.sf_client_id:
        return "invalid_client_id", "client identifier invalid"
    if not hmac.compare_digest(form.get("client_secret", ""), creds.sf_client_secret):
        return "invalid_client", "invalid client credentials"
    if form.get("username") != creds.sf_username or not hmac.compare_digest(
        form.get("password", ""), creds.sf_password
    ):
        return "invalid_grant", "authentication failure"
    return None


def check_refresh_grant(form: Mapping[str, str], creds: SandboxCredentials) -> tuple[str, str] | None:
    if form.get("client_id") != creds.sf_client_id:
        return "invalid_client_id", "client identifier invalid"
    if "client_secret" in form and not hmac.compare_digest(form["client_secret"], creds.sf_client_secret):
        return "invalid_client", "invalid client credentials"
    if not hmac.compare_digest(form.get("refresh_token", ""), creds.sf_refresh_token):
        return "invalid_grant", "expired access/refresh token"
    return None


def check_jwt_grant(
    form: Mapping[str, str], creds: SandboxCredentials, now: datetime, audiences: Sequence[str]
) -> tuple[str, str] | None:
    """An RS256 assertion signed with the connected app's key, for the sandbox user, not
    expired by the sandbox clock, addressed to a login host or this server."""
    try:
        claims = jwt.decode(
            form.get("assertion", ""), creds.sf_jwt_public_key(), algorithms=["RS256"],
            options={"verify_exp": False, "verify_aud": False, "verify_iat": False, "verify_nbf": False},
        )
    except jwt.PyJWTError:
        return "invalid_grant", "invalid assertion"
    if claims.get("iss") != creds.sf_client_id:
        return "invalid_client_id", "client identifier invalid"
    if claims.get("sub") != creds.sf_username:
        return "invalid_grant", "user hasn't approved this consumer"
    audience = claims.get("aud")
    given = audience if isinstance(audience, list) else [audience]
    if not any(isinstance(a, str) and a.rstrip("/") in audiences for a in given):
        return "invalid_grant", "audience is invalid"
    try:
        expires = float(str(claims.get("exp")))  # simple-salesforce sends it as a string
    except ValueError:
        return "invalid_grant", "invalid assertion"
    if expires <= now.timestamp():
        return "invalid_grant", "expired authorization code"
    return None


# ---------------------------------------------------------------------------------------
# Query locators
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    query: SoqlQuery
    ids: list[str]


@dataclass
class Cursors:
    """Open query results (the matched ids, taken when the query ran). The least recently
    used are dropped past ``capacity`` cursors or ``max_ids`` ids in all; their locators
    then answer INVALID_QUERY_LOCATOR, as expired ones do in Salesforce."""

    capacity: int = 100
    max_ids: int = 2_000_000
    open: OrderedDict[str, Cursor] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, cursor: Cursor) -> str:
        locator = "01g" + "".join(secrets.choice("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(15))
        with self.lock:
            self.open[locator] = cursor
            held = sum(len(c.ids) for c in self.open.values())
            while len(self.open) > 1 and (len(self.open) > self.capacity or held > self.max_ids):
                _, dropped = self.open.popitem(last=False)
                held -= len(dropped.ids)
        return locator

    def get(self, locator: str) -> Cursor | None:
        with self.lock:
            cursor = self.open.get(locator)
            if cursor is not None:
                self.open.move_to_end(locator)
            return cursor


def batch_size(options: str | None, cap: int) -> int:
    """``Sforce-Query-Options: batchSize=N``: 2000 by default, clamped to 200..2000."""
    size = 2000
    for part in (options or "").split(","):
        key, _, value = part.partition("=")
        if key.strip().lower() == "batchsize" and value.strip().isdigit():
            size = min(max(int(value.strip()), 200), 2000)
    return min(size, cap)


# ---------------------------------------------------------------------------------------
# Writes: validating values against the catalog
# ---------------------------------------------------------------------------------------


def defaulted_on_create(obj: SfObject, f: SfField) -> bool:
    return (
        f.name in {"Id", "IsDeleted", "OwnerId"} | _AUDIT
        or f.type == "boolean"
        or (obj.name, f.name) in _PICKLIST_DEFAULTS
    )


def required_on_create(obj: SfObject, f: SfField) -> bool:
    return f.createable and not f.nillable and not defaulted_on_create(obj, f)


def _json_type_error(f: SfField, raw: Any) -> SfApiError:
    token = {dict: "START_OBJECT", list: "START_ARRAY", bool: "VALUE_" + str(raw).upper(),
             str: "VALUE_STRING", int: "VALUE_NUMBER_INT", float: "VALUE_NUMBER_FLOAT"}.get(type(raw), "VALUE")
    wanted = {"boolean": "boolean", "int": "int", "double": "double", "currency": "double",
              "percent": "double", "date": "date", "datetime": "datetime"}.get(f.type, "string")
    shown = json.dumps(raw)[:80]
    return SfApiError(
        400, "JSON_PARSER_ERROR",
        f"Cannot deserialize instance of {wanted} from {token} value {shown} or request may be missing a "
        f"required field (field {f.name})",
    )


def coerce_value(obj: SfObject, f: SfField, raw: Any) -> tuple[Any, FieldError | None]:
    """A JSON value as the store keeps it. A value of the wrong JSON type raises
    ``JSON_PARSER_ERROR`` (the whole request fails, as in Salesforce); a value of the right
    type that the field refuses comes back as a :class:`FieldError`."""
    label = f.label or f.name
    if raw is None:
        return None, None
    if isinstance(raw, dict | list):
        raise _json_type_error(f, raw)
    t = f.type
    if t == "boolean":
        if not isinstance(raw, bool):
            raise _json_type_error(f, raw)
        return raw, None
    if t in {"int", "double", "currency", "percent"}:
        number: float
        if isinstance(raw, bool):
            raise _json_type_error(f, raw)
        if isinstance(raw, int | float):
            number = raw
        else:
            try:
                number = float(str(raw))
            except ValueError:
                raise _json_type_error(f, raw) from None
        if not math.isfinite(number):
            raise _json_type_error(f, raw)
        if abs(number) >= 1e18:
            return None, FieldError(
                "NUMBER_OUTSIDE_VALID_RANGE", f"{label}: value outside of valid range on numeric field: {raw}",
                (f.name,),
            )
        if t == "int":
            if number != int(number):
                raise _json_type_error(f, raw)
            return int(number), None
        return float(number), None
    if t in {"date", "datetime"}:
        if not isinstance(raw, str):
            raise _json_type_error(f, raw)
        try:
            if t == "date":
                return date.fromisoformat(raw[:10]).isoformat(), None
            return sf_datetime(parse_datetime(raw)), None
        except ValueError:
            raise _json_type_error(f, raw) from None
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise _json_type_error(f, raw)
    text = str(raw)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise SfApiError(400, "JSON_PARSER_ERROR", f"Invalid Unicode in the value of {f.name}") from None
    if t in {"id", "reference"}:
        if text == "":
            return None, None
        normal = normalize_id(text)
        if normal is None:
            return None, FieldError("MALFORMED_ID", f"{label}: id value of incorrect type: {text}", (f.name,))
        if f.reference_to and object_for_id(normal) not in f.reference_to:
            return None, FieldError(
                "FIELD_INTEGRITY_EXCEPTION", f"{label}: id value of incorrect type: {text}", (f.name,)
            )
        return normal, None
    if text == "":
        return None, None  # Salesforce stores an empty string as null
    if len(text) > f.length:
        return None, FieldError(
            "STRING_TOO_LONG", f"{label}: data value too large: {text[:40]}... (max length={f.length})", (f.name,)
        )
    if t == "picklist":
        canonical = {v.lower(): v for v in f.picklist}.get(text.lower())
        if canonical is None:
            return None, FieldError(
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                f"{label}: bad value for restricted picklist field: {text}", (f.name,),
            )
        return canonical, None
    if t == "email" and not _EMAIL.fullmatch(text):
        return None, FieldError("INVALID_EMAIL_ADDRESS", f"{label}: invalid email address: {text}", (f.name,))
    return text, None


def validate_write(
    obj: SfObject, body: Any, mode: str, *, allowed_id: str | None = None
) -> tuple[dict[str, Any], list[FieldError]]:
    """Check a create (``mode='create'``) or update body against the catalog; return the
    values to store and every problem found, not just the first."""
    if not isinstance(body, dict):
        raise SfApiError(400, "JSON_PARSER_ERROR", f"Cannot deserialize the request body: expected a JSON object "
                         f"with the fields of a {obj.name}")
    values: dict[str, Any] = {}
    errors: list[FieldError] = []
    locked: list[str] = []
    for key, raw in body.items():
        if key == "attributes":
            continue
        f = obj.field(key)
        if f is None:
            errors.append(FieldError("INVALID_FIELD", f"No such column '{key}' on sobject of type {obj.name}", (key,)))
            continue
        if f.name == "Id" and mode == "update" and allowed_id and normalize_id(str(raw)) == allowed_id:
            continue
        if not (f.createable if mode == "create" else f.updateable):
            locked.append(f.name)
            continue
        value, problem = coerce_value(obj, f, raw)
        if problem is not None:
            errors.append(problem)
        else:
            values[f.name] = value
    if locked:
        errors.append(FieldError(
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            f"Unable to create/update fields: {', '.join(locked)}. Please check the security settings of this "
            "field and verify that it is read/write for your profile or permission set.",
            tuple(locked),
        ))
    if mode == "create":
        missing = [f.name for f in obj.fields if required_on_create(obj, f) and values.get(f.name) is None]
    else:
        missing = [f.name for f in obj.fields if f.name in values and values[f.name] is None and not f.nillable]
    if missing:
        errors.append(FieldError(
            "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", tuple(missing)
        ))
    return values, errors


def create_defaults(obj: SfObject, values: dict[str, Any], user_id: str, stamp: str) -> dict[str, Any]:
    """What Salesforce fills in on insert: the owner, picklist defaults, false booleans,
    LastModifiedDate (the insert, unless given) and SystemModstamp (always the insert,
    whatever audit dates were given, so incremental readers see the new record)."""
    row = dict(values)
    if obj.field("OwnerId") is not None and row.get("OwnerId") is None:
        row["OwnerId"] = user_id
    for f in obj.fields:
        default = _PICKLIST_DEFAULTS.get((obj.name, f.name))
        if default is not None and row.get(f.name) is None:
            row[f.name] = default
        if f.type == "boolean" and f.createable and row.get(f.name) is None:
            row[f.name] = False
    if obj.field("SystemModstamp") is not None:
        row["SystemModstamp"] = stamp
    if obj.field("LastModifiedDate") is not None and row.get("LastModifiedDate") is None:
        row["LastModifiedDate"] = stamp
    return row


# ---------------------------------------------------------------------------------------
# Describe (pure)
# ---------------------------------------------------------------------------------------

_SOAP = {"id": "tns:ID", "reference": "tns:ID", "boolean": "xsd:boolean", "datetime": "xsd:dateTime",
         "date": "xsd:date", "double": "xsd:double", "currency": "xsd:double", "percent": "xsd:double",
         "int": "xsd:int"}


def _label(name: str) -> str:
    base = name[:-3] if name.endswith("__c") else name
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", base).replace("_", " ")


def _plural(label: str) -> str:
    if label.endswith("History"):
        return label
    if label.endswith("y"):
        return label[:-1] + "ies"
    return label + "s"


def _object_flags(obj: SfObject) -> dict[str, bool]:
    writable = obj.createable
    return {"createable": writable, "updateable": writable, "deletable": writable and obj.name != "User"}


def sobject_summary(obj: SfObject, version: str) -> dict[str, Any]:
    base = f"/services/data/v{version}/sobjects/{obj.name}"
    return {
        "activateable": False, "custom": False, "customSetting": False, **_object_flags(obj),
        "deprecatedAndHidden": False, "feedEnabled": False, "hasSubtypes": False, "isInterface": False,
        "isSubtype": False, "keyPrefix": obj.key_prefix, "label": obj.label, "labelPlural": _plural(obj.label),
        "layoutable": obj.createable, "mergeable": obj.name in {"Lead", "Contact", "Account"},
        "mruEnabled": obj.createable, "name": obj.name, "queryable": obj.queryable, "replicateable": True,
        "retrieveable": True, "searchable": obj.createable, "triggerable": obj.createable,
        "undeletable": obj.createable,
        "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"},
    }


def describe_field(obj: SfObject, f: SfField) -> dict[str, Any]:
    text = f.type in _STRINGISH | {"id", "reference"}
    default = _PICKLIST_DEFAULTS.get((obj.name, f.name))
    flags = _object_flags(obj)
    return {
        "aggregatable": f.type not in {"textarea"}, "autoNumber": False,
        "byteLength": f.length * 3 if text else 0, "calculated": False, "cascadeDelete": False,
        "caseSensitive": False, "createable": f.createable and flags["createable"], "custom": f.custom,
        "defaultValue": default, "defaultedOnCreate": defaulted_on_create(obj, f), "dependentPicklist": False,
        "deprecatedAndHidden": False, "digits": 9 if f.type == "int" else 0, "externalId": f.external_id,
        "filterable": filterable(f), "groupable": f.type not in {"double", "currency", "percent", "datetime",
                                                                  "textarea"},
        "htmlFormatted": False, "idLookup": f.name == "Id" or f.external_id or f.unique,
        "inlineHelpText": None, "label": f.label or _label(f.name), "length": f.length if text else 0,
        "name": f.name, "nameField": f.name == "Name", "namePointing": len(f.reference_to) > 1,
        "nillable": f.nillable, "permissionable": f.nillable and f.updateable,
        "picklistValues": [
            {"active": True, "defaultValue": v == default, "label": v, "validFor": None, "value": v}
            for v in f.picklist
        ],
        "polymorphicForeignKey": len(f.reference_to) > 1,
        "precision": 18 if f.type in {"double", "currency", "percent"} else 0,
        "referenceTo": list(f.reference_to), "relationshipName": f.relationship_name,
        "restrictedPicklist": f.type == "picklist",
        "scale": 2 if f.type in {"currency", "percent"} else 0,
        "soapType": _SOAP.get(f.type, "xsd:string"), "sortable": filterable(f), "type": f.type,
        "unique": f.unique, "updateable": f.updateable and flags["updateable"],
        "writeRequiresMasterRead": False,
    }


def describe_sobject(obj: SfObject, version: str) -> dict[str, Any]:
    children = [
        {"cascadeDelete": False, "childSObject": other.name, "deprecatedAndHidden": False, "field": f.name,
         "relationshipName": None, "restrictedDelete": False}
        for other in SALESFORCE_OBJECTS.values() for f in other.fields if obj.name in f.reference_to
    ]
    return {
        **sobject_summary(obj, version),
        "childRelationships": children,
        "fields": [describe_field(obj, f) for f in obj.fields],
        "recordTypeInfos": [],
        "supportedScopes": [{"label": "All " + _plural(obj.label).lower(), "name": "everything"}],
    }


def versions() -> list[dict[str, str]]:
    seasons = ("Winter", "Spring", "Summer")
    return [
        {"label": f"{seasons[(int(v[:2]) - 50) % 3]} '{21 + (int(v[:2]) - 50) // 3}",
         "url": f"/services/data/v{v}", "version": v}
        for v in API_VERSIONS
    ]


# ---------------------------------------------------------------------------------------
# The API
# ---------------------------------------------------------------------------------------


@dataclass
class _Outcome:
    """One record of an sObject Collections request: a planned write or a failure."""

    errors: list[FieldError] = field(default_factory=list)
    run: Callable[[], str] | None = None
    record_id: str | None = None
    created: bool | None = None


class SalesforceApi:
    """Endpoint handlers over one world; thin wrappers around the functions above."""

    def __init__(self, world: World, control: Control, creds: SandboxCredentials, sandbox: Any = None) -> None:
        self.world = world
        self.control = control
        self.creds = creds
        self.sandbox = sandbox
        self.sessions = Sessions()
        self.cursors = Cursors()
        self.bulk = BulkJobs(world)

    # -- plumbing -----------------------------------------------------------------------

    def now(self) -> datetime:
        return self.control.clock.now()

    def base_url(self, request: Request) -> str:
        info = getattr(self.sandbox, "info", None)
        if info is not None:
            return str(info.salesforce)
        return f"{request.url.scheme}://{request.url.netloc}"

    def auth(self, request: Request) -> AuthSession:
        session = self.sessions.get(bearer_token(request.headers.get("authorization")))
        if session is None:
            raise SfApiError(401, "INVALID_SESSION_ID", "Session expired or invalid")
        return session

    @staticmethod
    def version(request: Request) -> str:
        version = str(request.path_params.get("version", ""))
        if not _VERSION.fullmatch(version):
            raise SfApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return version

    @staticmethod
    def sobject(name: str) -> SfObject:
        obj = sf_object(name)
        if obj is None:
            raise SfApiError(404, "NOT_FOUND", f"The requested resource does not exist: no sObject named {name!r}")
        return obj

    @staticmethod
    async def json_body(request: Request) -> Any:
        raw = await request.body()
        if not raw.strip():
            raise SfApiError(400, "JSON_PARSER_ERROR", "The request body is empty; send a JSON document.")
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            where = f" at [line:{exc.lineno}, column:{exc.colno}]" if isinstance(exc, json.JSONDecodeError) else ""
            raise SfApiError(400, "JSON_PARSER_ERROR", f"Unexpected character in the JSON body{where}: {exc}") from exc

    def user_id(self) -> str:
        users = self.world.sf_find(SALESFORCE_OBJECTS["User"], "Username", self.creds.sf_username)
        return users[0] if users else sf_id("005", 999_999)

    def api_limit(self) -> int:
        return self.control.faults.daily_limit or DEFAULT_DAILY_LIMIT

    def limit_headers(self, control: Control) -> dict[str, str]:
        return {"Sforce-Limit-Info": f"api-usage={control.calls_today}/{self.api_limit()}"}

    def expire_session(self, scope: Scope) -> bool:
        token = _scope_token(scope)
        if token is None:
            return False
        self.sessions.revoke(token)
        return True

    # -- OAuth --------------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        body = (await request.body()).decode("utf-8", "replace")
        form = {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}
        form = {**dict(request.query_params), **form}
        grant = form.get("grant_type", "")
        now = self.now()
        base = self.base_url(request)
        if grant == "password":
            problem = check_password_grant(form, self.creds)
        elif grant == "refresh_token":
            problem = check_refresh_grant(form, self.creds)
        elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            problem = check_jwt_grant(form, self.creds, now, (*LOGIN_AUDIENCES, base.rstrip("/")))
        else:
            problem = ("unsupported_grant_type", "grant type not supported")
        if problem is not None:
            return _oauth_error(*problem)
        user = self.user_id()
        issued_ms = int(now.timestamp() * 1000)
        identity = f"https://login.salesforce.com/id/{ORG_ID}/{user}"
        signature = base64.b64encode(
            hmac.new(self.creds.sf_client_secret.encode(), f"{identity}{issued_ms}".encode(), hashlib.sha256).digest()
        ).decode()
        return json_response({
            "access_token": self.sessions.issue(user, issued_ms),
            "instance_url": base,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": str(issued_ms),
            "signature": signature,
            "scope": "api refresh_token",
        })

    # -- discovery and limits ---------------------------------------------------------

    async def list_versions(self, request: Request) -> Response:
        return json_response(versions())

    async def resources(self, request: Request) -> Response:
        self.auth(request)
        v = self.version(request)
        names = ("sobjects", "query", "queryAll", "limits", "composite", "jobs")
        return json_response({n: f"/services/data/v{v}/{n}" for n in names})

    async def limits(self, request: Request) -> Response:
        self.auth(request)
        self.version(request)
        daily = self.api_limit()
        jobs = self.bulk.created_on(self.now())

        def limit(maximum: int, used: int = 0) -> dict[str, int]:
            return {"Max": maximum, "Remaining": max(0, maximum - used)}

        return json_response({
            "ConcurrentAsyncGetReportInstances": limit(200),
            "DailyApiRequests": limit(daily, self.control.calls_today),
            "DailyAsyncApexExecutions": limit(250_000),
            "DailyBulkApiBatches": limit(15_000),
            "DailyBulkV2QueryFileStorageMB": limit(976_562),
            "DailyBulkV2QueryJobs": limit(10_000, jobs),
            "DataStorageMB": limit(5_120),
            "FileStorageMB": limit(5_120),
            "HourlyODataCallout": limit(10_000),
            "SingleEmail": limit(5_000),
        })

    async def record_count(self, request: Request) -> Response:
        """``/limits/recordCount``: live records per object, as the org's storage usage counts
        them: not the recycle bin, and no history objects (Salesforce leaves those out too)."""
        self.auth(request)
        self.version(request)
        asked = [n for n in (request.query_params.get("sObjects") or "").split(",") if n.strip()]
        names = [n.strip() for n in asked] if asked else list(SALESFORCE_OBJECTS)
        counted = [n for n in names if n in SALESFORCE_OBJECTS and not n.endswith("History")]
        counts = await run_in_threadpool(
            lambda: {n: self.world.tuples(f'SELECT count(*) FROM "sf_{n}" WHERE NOT "IsDeleted"')[0][0]
                     for n in counted})
        return json_response({"sObjects": [{"count": counts[n], "name": n} for n in counted]})

    # -- describe -----------------------------------------------------------------------

    async def describe_global(self, request: Request) -> Response:
        self.auth(request)
        v = self.version(request)
        return json_response({
            "encoding": "UTF-8", "maxBatchSize": MAX_COLLECTION,
            "sobjects": [sobject_summary(o, v) for o in SALESFORCE_OBJECTS.values()],
        })

    async def sobject_basic(self, request: Request) -> Response:
        self.auth(request)
        v = self.version(request)
        obj = self.sobject(request.path_params["sobject"])
        return json_response({"objectDescribe": sobject_summary(obj, v), "recentItems": []})

    async def describe(self, request: Request) -> Response:
        self.auth(request)
        v = self.version(request)
        return json_response(describe_sobject(self.sobject(request.path_params["sobject"]), v))

    # -- query --------------------------------------------------------------------------

    async def query(self, request: Request) -> Response:
        self.auth(request)
        v = self.version(request)
        include_deleted = request.url.path.rstrip("/").endswith("queryAll")
        soql = request.query_params.get("q")
        if not soql:
            raise SfApiError(400, "MALFORMED_QUERY", "The q parameter is required: send the SOQL query as ?q=...")
        options = request.headers.get("sforce-query-options")
        body = await run_in_threadpool(self.run_query, soql, include_deleted, v, options)
        return json_response(body)

    def run_query(self, soql: str, include_deleted: bool, version: str, options: str | None) -> dict[str, Any]:
        try:
            query = compile_soql(soql)
        except SoqlError as exc:
            raise SfApiError(400, exc.error_code, exc.message) from exc
        if query.kind == "count":
            sql, params = query.count_sql(include_deleted)
            return {"totalSize": self.world.tuples(sql, params)[0][0], "done": True, "records": []}
        if query.kind == "aggregate":
            sql, params = query.aggregate(include_deleted)
            value = self.world.tuples(sql, params)[0][0]
            assert query.aggregate_alias is not None
            return {"totalSize": 1, "done": True,
                    "records": [{"attributes": {"type": "AggregateResult"}, query.aggregate_alias: value}]}
        sql, params = query.ids_sql(include_deleted)
        ids = [row[0] for row in self.world.tuples(sql, params)]
        cursor = Cursor(query, ids)
        size = batch_size(options, query.max_batch_size)
        locator = self.cursors.add(cursor) if len(ids) > size else None
        return self.page(cursor, locator, 0, size, version)

    def page(self, cursor: Cursor, locator: str | None, start: int, size: int, version: str) -> dict[str, Any]:
        chunk = cursor.ids[start : start + size]
        rows = self.world.tuples(cursor.query.rows_sql(), (json.dumps(chunk),)) if chunk else []
        end = start + len(chunk)
        body: dict[str, Any] = {"totalSize": len(cursor.ids), "done": end >= len(cursor.ids)}
        if not body["done"]:
            body["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}-{end}"
        body["records"] = records(cursor.query, rows, f"/services/data/v{version}/sobjects/")
        return body

    async def query_more(self, request: Request) -> Response:
        self.auth(request)
        v = self.version(request)
        locator, _, offset = str(request.path_params["locator"]).rpartition("-")
        cursor = self.cursors.get(locator) if offset.isdigit() else None
        if cursor is None or int(offset) > len(cursor.ids):
            raise SfApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        size = batch_size(request.headers.get("sforce-query-options"), cursor.query.max_batch_size)
        body = await run_in_threadpool(self.page, cursor, locator, int(offset), size, v)
        return json_response(body)

    # -- records ------------------------------------------------------------------------

    def existing(self, obj: SfObject, raw_id: str) -> str:
        """The 18-character id of a live record of ``obj``; 404 otherwise."""
        record_id = normalize_id(raw_id)
        if record_id is None or object_for_id(record_id) != obj.name:
            raise SfApiError(
                404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {raw_id}"
            )
        row = self.world.sf_get(obj, record_id, include_deleted=True)
        if row is None:
            raise SfApiError(404, "NOT_FOUND", "The requested resource does not exist")
        if row["IsDeleted"]:
            raise SfApiError(404, "ENTITY_IS_DELETED", "entity is deleted", [])
        return record_id

    def fetch(self, obj: SfObject, ids: Sequence[str], fields: str | None, version: str) -> list[dict[str, Any] | None]:
        """Records by id in the query-record shape; None for ids that are not live records."""
        names = [n.strip() for n in (fields or "").split(",") if n.strip()] or [f.name for f in obj.fields]
        unknown = [n for n in names if obj.field(n) is None]
        if unknown:
            raise SfApiError(400, "INVALID_FIELD", f"No such column '{unknown[0]}' on entity '{obj.name}'. If you "
                             "are attempting to use a custom field, be sure to append the '__c' after the custom "
                             "field name. Please reference your WSDL or the describe call for the appropriate names.")
        canonical = list(dict.fromkeys(f.name for n in names if (f := obj.field(n)) is not None))
        query = compile_soql(f"SELECT {', '.join(canonical)} FROM {obj.name}")
        rows = self.world.tuples(query.rows_sql(), (json.dumps(list(ids)),)) if ids else []
        live = {r[0] for r in self.world.tuples(
            f'SELECT "Id" FROM "sf_{obj.name}" WHERE "Id" IN (SELECT value FROM json_each(?)) AND NOT "IsDeleted"',
            (json.dumps(list(ids)),),
        )}
        rows = [r for r in rows if r[0] in live]
        shaped = records(query, rows, f"/services/data/v{version}/sobjects/")
        found = {row[0]: rec for row, rec in zip(rows, shaped, strict=True)}
        return [found.get(i) for i in ids]

    async def get_record(self, request: Request) -> Response:
        self.auth(request)
        v = self.version(request)
        obj = self.sobject(request.path_params["sobject"])
        record_id = self.existing(obj, request.path_params["record_id"])
        [record] = await run_in_threadpool(self.fetch, obj, [record_id], request.query_params.get("fields"), v)
        return json_response(record)

    def checked(self, obj: SfObject, values: dict[str, Any], errors: list[FieldError]) -> list[FieldError]:
        """Add the errors only the database can find: references to records that do not exist."""
        missing = []
        for name, value in values.items():
            f = obj.field(name)
            if f is None or f.type != "reference" or value is None:
                continue
            target = sf_object(object_for_id(value) or "")
            if target is None or self.world.sf_get(target, value) is None:
                missing.append(f.name)
        if missing:
            errors = [*errors, FieldError(
                "INVALID_CROSS_REFERENCE_KEY", f"invalid cross reference id: {', '.join(missing)}", tuple(missing)
            )]
        return errors

    def writable(self, obj: SfObject, action: str) -> None:
        if not _object_flags(obj)[action]:
            verb = {"createable": "inserted", "updateable": "updated", "deletable": "deleted"}[action]
            raise SfApiError(400, "INVALID_TYPE_FOR_OPERATION", f"entity type cannot be {verb}: {obj.label}")

    def insert(self, obj: SfObject, values: dict[str, Any], user_id: str) -> str:
        now = self.now()
        [record_id] = self.world.sf_insert(obj, [create_defaults(obj, values, user_id, sf_datetime(now))], now, user_id)
        return record_id

    async def create_record(self, request: Request) -> Response:
        session = self.auth(request)
        self.version(request)
        obj = self.sobject(request.path_params["sobject"])
        self.writable(obj, "createable")
        body = await self.json_body(request)

        def run() -> str:
            with self.world.transaction():
                values, errors = validate_write(obj, body, "create")
                errors = self.checked(obj, values, errors)
                if errors:
                    raise SfApiError.many(400, errors)
                return self.insert(obj, values, session.user_id)

        record_id = await run_in_threadpool(run)
        return json_response({"id": record_id, "success": True, "errors": []}, 201)

    async def update_record(self, request: Request) -> Response:
        session = self.auth(request)
        self.version(request)
        obj = self.sobject(request.path_params["sobject"])
        self.writable(obj, "updateable")
        body = await self.json_body(request)

        def run() -> None:
            with self.world.transaction():
                record_id = self.existing(obj, request.path_params["record_id"])
                values, errors = validate_write(obj, body, "update", allowed_id=record_id)
                errors = self.checked(obj, values, errors)
                if errors:
                    raise SfApiError.many(400, errors)
                self.world.sf_update(obj, record_id, values, self.now(), session.user_id)

        await run_in_threadpool(run)
        return Response(status_code=204)

    async def delete_record(self, request: Request) -> Response:
        self.auth(request)
        self.version(request)
        obj = self.sobject(request.path_params["sobject"])
        self.writable(obj, "deletable")

        def run() -> None:
            with self.world.transaction():
                self.world.sf_delete(obj, self.existing(obj, request.path_params["record_id"]), self.now())

        await run_in_threadpool(run)
        return Response(status_code=204)

    def external_field(self, obj: SfObject, name: str) -> SfField:
        f = obj.field(name)
        if f is None:
            raise SfApiError(
                404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {name}"
            )
        if not (f.external_id or f.name == "Id"):
            raise SfApiError(
                400, "INVALID_FIELD", f"Field {f.name} is not an External ID or Id field of {obj.name}; "
                "upsert and lookup by field need one", [f.name],
            )
        return f

    def matches(self, obj: SfObject, f: SfField, value: str) -> list[str]:
        if f.name == "Id":
            normal = normalize_id(value)
            return [normal] if normal and self.world.sf_get(obj, normal) is not None else []
        return self.world.sf_find(obj, f.name, value)

    async def get_by_external_id(self, request: Request) -> Response:
        self.auth(request)
        v = self.version(request)
        obj = self.sobject(request.path_params["sobject"])
        f = self.external_field(obj, request.path_params["field"])
        found = self.matches(obj, f, request.path_params["value"])
        if not found:
            raise SfApiError(404, "NOT_FOUND", "The requested resource does not exist")
        if len(found) > 1:
            return json_response([f"/services/data/v{v}/sobjects/{obj.name}/{i}" for i in found], 300)
        [record] = await run_in_threadpool(self.fetch, obj, found, request.query_params.get("fields"), v)
        return json_response(record)

    def plan_upsert(self, obj: SfObject, f: SfField, key: Any, body: Any, user_id: str) -> _Outcome:
        """Create or update by external id; the caller holds the world's transaction."""
        if key is None or key == "":
            return _Outcome([FieldError("MISSING_ARGUMENT", f"{f.name} not specified", (f.name,))])
        found = self.matches(obj, f, str(key))
        if len(found) > 1:
            return _Outcome([FieldError(
                "DUPLICATE_EXTERNAL_ID",
                f"{f.name}: more than one record found for external id field: {found}", (f.name,)
            )])
        fields = dict(body) if isinstance(body, dict) else body
        if isinstance(fields, dict):
            fields.pop(f.name, None)
        if found:
            record_id = found[0]
            values, errors = validate_write(obj, fields, "update", allowed_id=record_id)
            errors = self.checked(obj, values, errors)
            return _Outcome(errors, None if errors else lambda: self.update(obj, record_id, values, user_id),
                            record_id, created=False)
        if f.name == "Id":
            return _Outcome([FieldError("NOT_FOUND", f"The requested resource does not exist: {key}", ())])
        values, errors = validate_write(obj, fields, "create")
        key_value, problem = coerce_value(obj, f, key)
        values[f.name] = key_value
        errors = self.checked(obj, values, [*errors, *([problem] if problem else [])])
        return _Outcome(errors, None if errors else lambda: self.insert(obj, values, user_id), created=True)

    def update(self, obj: SfObject, record_id: str, values: dict[str, Any], user_id: str) -> str:
        self.world.sf_update(obj, record_id, values, self.now(), user_id)
        return record_id

    async def upsert_record(self, request: Request) -> Response:
        session = self.auth(request)
        v = self.version(request)
        obj = self.sobject(request.path_params["sobject"])
        self.writable(obj, "updateable")
        f = self.external_field(obj, request.path_params["field"])
        body = await self.json_body(request)
        value = request.path_params["value"]

        def run() -> tuple[int, Any]:
            with self.world.transaction():
                found = self.matches(obj, f, value)
                if len(found) > 1:
                    return 300, [f"/services/data/v{v}/sobjects/{obj.name}/{i}" for i in found]
                outcome = self.plan_upsert(obj, f, value, body, session.user_id)
                if outcome.errors or outcome.run is None:
                    status = 404 if outcome.errors and outcome.errors[0].code == "NOT_FOUND" else 400
                    raise SfApiError.many(status, outcome.errors)
                record_id = outcome.run()
                return (201 if outcome.created else 200), {
                    "id": record_id, "success": True, "errors": [], "created": bool(outcome.created)
                }

        status, result = await run_in_threadpool(run)
        return json_response(result, status)

    async def delete_by_external_id(self, request: Request) -> Response:
        self.auth(request)
        v = self.version(request)
        obj = self.sobject(request.path_params["sobject"])
        self.writable(obj, "deletable")
        f = self.external_field(obj, request.path_params["field"])

        def run() -> Response:
            with self.world.transaction():
                found = self.matches(obj, f, request.path_params["value"])
                if not found:
                    raise SfApiError(404, "NOT_FOUND", "The requested resource does not exist")
                if len(found) > 1:
                    return json_response([f"/services/data/v{v}/sobjects/{obj.name}/{i}" for i in found], 300)
                self.world.sf_delete(obj, found[0], self.now())
                return Response(status_code=204)

        result: Response = await run_in_threadpool(run)
        return result

    # -- sObject Collections --------------------------------------------------------------

    def collection_records(self, body: Any) -> tuple[list[Any], bool]:
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise SfApiError(400, "JSON_PARSER_ERROR", 'Expected a JSON object {"allOrNone": bool, "records": [...]}')
        records_ = body["records"]
        if len(records_) > MAX_COLLECTION:
            raise SfApiError(
                400, "EXCEEDED_ID_LIMIT",
                f"record limit reached. cannot submit more than {MAX_COLLECTION} records into this call",
            )
        all_or_none = body.get("allOrNone", False)
        if not isinstance(all_or_none, bool):
            raise SfApiError(400, "JSON_PARSER_ERROR", "allOrNone must be a boolean")
        return records_, all_or_none

    @staticmethod
    def record_type(record: Any) -> SfObject | FieldError:
        attributes = record.get("attributes") if isinstance(record, dict) else None
        name = attributes.get("type") if isinstance(attributes, dict) else None
        if not isinstance(name, str) or not name:
            return FieldError("INVALID_TYPE", "Must send a concrete entity type: each record needs attributes.type")
        obj = sf_object(name)
        if obj is None:
            return FieldError("INVALID_TYPE", f"sObject type '{name}' is not supported.")
        return obj

    def run_collection(self, outcomes: list[_Outcome], all_or_none: bool, upsert: bool = False) -> list[dict[str, Any]]:
        """Inject partial-batch faults, apply allOrNone, run the writes in one transaction and
        report each record in request order. The caller holds the world's transaction."""
        faults = self.control.faults.partial_batch_failures
        for o in outcomes:
            if not o.errors and self.control.roll(faults):
                self.control.faults_injected["partial_batch_failure"] += 1
                o.errors = [FieldError(
                    "UNABLE_TO_LOCK_ROW",
                    "unable to obtain exclusive access to this record"
                    + (f" or 1 records: {o.record_id}" if o.record_id else ""),
                )]
                o.run = None
        failed = any(o.errors for o in outcomes)
        results = []
        for o in outcomes:
            result: dict[str, Any] = {"id": o.record_id, "success": False, "errors": []}
            if o.errors:
                result["errors"] = [e.as_result() for e in o.errors]
            elif all_or_none and failed:
                result["errors"] = [FieldError("ALL_OR_NONE_OPERATION_ROLLED_BACK", _ROLLED_BACK).as_result()]
            else:
                assert o.run is not None
                result["id"] = o.run()
                result["success"] = True
            if upsert:
                result["created"] = bool(o.created) and result["success"]
            results.append(result)
        return results

    async def collection_create(self, request: Request) -> Response:
        session = self.auth(request)
        self.version(request)
        records_, all_or_none = self.collection_records(await self.json_body(request))

        def plan(record: Any) -> _Outcome:
            obj = self.record_type(record)
            if isinstance(obj, FieldError):
                return _Outcome([obj])
            if not obj.createable:
                return _Outcome([_cannot("inserted", obj)])
            if "Id" in record:
                return _Outcome([FieldError("INVALID_FIELD", "cannot specify Id in an insert call", ("Id",))])
            values, errors = validate_write(obj, record, "create")
            errors = self.checked(obj, values, errors)
            return _Outcome(errors, None if errors else lambda: self.insert(obj, values, session.user_id))

        def run() -> list[dict[str, Any]]:
            with self.world.transaction():
                return self.run_collection([plan(r) for r in records_], all_or_none)

        return json_response(await run_in_threadpool(run))

    async def collection_update(self, request: Request) -> Response:
        session = self.auth(request)
        self.version(request)
        records_, all_or_none = self.collection_records(await self.json_body(request))

        def plan(record: Any) -> _Outcome:
            obj = self.record_type(record)
            if isinstance(obj, FieldError):
                return _Outcome([obj])
            raw_id = record.get("Id")
            if not isinstance(raw_id, str) or not raw_id:
                return _Outcome([FieldError("MISSING_ARGUMENT", "Id not specified in an update call", ("Id",))])
            record_id = normalize_id(raw_id)
            if record_id is None or object_for_id(record_id) != obj.name:
                return _Outcome([FieldError("MALFORMED_ID", f"malformed id {raw_id}", ("Id",))])
            if not obj.createable:
                return _Outcome([_cannot("updated", obj)],
                                record_id=record_id)
            current = self.world.sf_get(obj, record_id, include_deleted=True)
            if current is None:
                return _Outcome([FieldError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")],
                                record_id=record_id)
            if current["IsDeleted"]:
                return _Outcome([FieldError("ENTITY_IS_DELETED", "entity is deleted")], record_id=record_id)
            values, errors = validate_write(obj, record, "update", allowed_id=record_id)
            errors = self.checked(obj, values, errors)
            return _Outcome(errors, None if errors else lambda: self.update(obj, record_id, values, session.user_id),
                            record_id)

        def run() -> list[dict[str, Any]]:
            with self.world.transaction():
                return self.run_collection([plan(r) for r in records_], all_or_none)

        return json_response(await run_in_threadpool(run))

    async def collection_upsert(self, request: Request) -> Response:
        session = self.auth(request)
        self.version(request)
        obj = self.sobject(request.path_params["sobject"])
        self.writable(obj, "updateable")
        f = self.external_field(obj, request.path_params["field"])
        records_, all_or_none = self.collection_records(await self.json_body(request))
        keys = [r.get(f.name) if isinstance(r, dict) else None for r in records_]
        scalar = [str(k) for k in keys if isinstance(k, str | int | float) and not isinstance(k, bool)]
        repeated = {k for k in scalar if scalar.count(k) > 1}

        def plan(record: Any, key: Any) -> _Outcome:
            kind = self.record_type(record)
            if isinstance(kind, FieldError):
                return _Outcome([kind])
            if kind.name != obj.name:
                return _Outcome([FieldError("INVALID_TYPE", f"records must all be {obj.name}, not {kind.name}")])
            if isinstance(key, str | int | float) and str(key) in repeated:
                return _Outcome([FieldError("DUPLICATE_VALUE", f"Duplicate external id specified: {key}", (f.name,))])
            return self.plan_upsert(obj, f, key, record, session.user_id)

        def run() -> list[dict[str, Any]]:
            with self.world.transaction():
                return self.run_collection([plan(r, k) for r, k in zip(records_, keys, strict=True)],
                                           all_or_none, upsert=True)

        return json_response(await run_in_threadpool(run))

    async def collection_delete(self, request: Request) -> Response:
        self.auth(request)
        self.version(request)
        raw_ids = [i for i in request.query_params.get("ids", "").split(",") if i]
        if not raw_ids:
            raise SfApiError(400, "MISSING_ARGUMENT", "ids is required: DELETE .../composite/sobjects?ids=id1,id2")
        if len(raw_ids) > MAX_COLLECTION:
            raise SfApiError(
                400, "EXCEEDED_ID_LIMIT",
                f"record limit reached. cannot submit more than {MAX_COLLECTION} records into this call",
            )
        all_or_none = request.query_params.get("allOrNone", "false").lower() == "true"
        now = self.now()

        def plan(raw_id: str) -> _Outcome:
            record_id = normalize_id(raw_id)
            obj = sf_object(object_for_id(record_id) or "") if record_id else None
            if record_id is None or obj is None:
                return _Outcome([FieldError("MALFORMED_ID", f"malformed id {raw_id}")], record_id=raw_id)
            if not _object_flags(obj)["deletable"]:
                return _Outcome([_cannot("deleted", obj)],
                                record_id=record_id)
            current = self.world.sf_get(obj, record_id, include_deleted=True)
            if current is None:
                return _Outcome([FieldError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")],
                                record_id=record_id)
            if current["IsDeleted"]:
                return _Outcome([FieldError("ENTITY_IS_DELETED", "entity is deleted")], record_id=record_id)

            def delete() -> str:
                self.world.sf_delete(obj, record_id, now)
                return record_id

            return _Outcome([], delete, record_id)

        def run() -> list[dict[str, Any]]:
            with self.world.transaction():
                return self.run_collection([plan(i) for i in raw_ids], all_or_none)

        return json_response(await run_in_threadpool(run))

    async def collection_retrieve(self, request: Request) -> Response:
        self.auth(request)
        v = self.version(request)
        obj = self.sobject(request.path_params["sobject"])
        if request.method == "POST":
            body = await self.json_body(request)
            ids_raw = body.get("ids") if isinstance(body, dict) else None
            fields_raw = body.get("fields") if isinstance(body, dict) else None
            if not isinstance(ids_raw, list) or not isinstance(fields_raw, list):
                raise SfApiError(400, "JSON_PARSER_ERROR", 'Expected {"ids": [...], "fields": [...]}')
            raw_ids, fields = [str(i) for i in ids_raw], ",".join(str(f) for f in fields_raw)
        else:
            raw_ids = [i for i in request.query_params.get("ids", "").split(",") if i]
            fields = request.query_params.get("fields", "")
        if not raw_ids or not fields:
            raise SfApiError(400, "MISSING_ARGUMENT", "ids and fields are both required")
        if len(raw_ids) > 2000:
            raise SfApiError(400, "EXCEEDED_ID_LIMIT", "cannot retrieve more than 2000 records in one call")
        ids = [normalize_id(i) or i for i in raw_ids]
        return json_response(await run_in_threadpool(self.fetch, obj, ids, fields, v))

    # -- change feeds -------------------------------------------------------------------

    def window(self, request: Request, days: int) -> tuple[datetime, datetime, datetime]:
        """start, end and latestDateCovered; seconds are truncated, as Salesforce does."""
        start_text, end_text = request.query_params.get("start"), request.query_params.get("end")
        if not start_text or not end_text:
            raise SfApiError(400, "MISSING_ARGUMENT", "start and end are required, as ISO-8601 date-times")
        try:
            start, end = parse_datetime(start_text), parse_datetime(end_text)
        except ValueError as exc:
            raise SfApiError(
                400, "INVALID_REPLICATION_DATE", f"start and end must be ISO-8601 date-times: {exc}"
            ) from exc
        now = self.now().replace(second=0, microsecond=0)
        start, end = start.replace(second=0, microsecond=0), end.replace(second=0, microsecond=0)
        if end <= start:
            raise SfApiError(400, "INVALID_REPLICATION_DATE",
                             "startDate must chronologically precede endDate by more than one minute")
        if start < now - timedelta(days=days):
            raise SfApiError(400, "INVALID_REPLICATION_DATE", f"startDate cannot be more than {days} days ago")
        return start, end, min(end, now)

    async def updated(self, request: Request) -> Response:
        self.auth(request)
        self.version(request)
        obj = self.sobject(request.path_params["sobject"])
        start, _end, latest = self.window(request, 30)
        stamp = "SystemModstamp" if obj.field("SystemModstamp") else "CreatedDate"
        rows = await run_in_threadpool(
            self.world.tuples,
            f'SELECT "Id" FROM "sf_{obj.name}" WHERE NOT "IsDeleted" AND "{stamp}" >= ? AND "{stamp}" < ?'
            f' ORDER BY "{stamp}", "Id"',
            (sf_datetime(start), sf_datetime(latest)),
        )
        if len(rows) > 600_000:
            raise SfApiError(400, "EXCEEDED_ID_LIMIT", "too many ids were requested; narrow the date range")
        return json_response({"ids": [r[0] for r in rows], "latestDateCovered": sf_datetime(latest)})

    async def deleted(self, request: Request) -> Response:
        self.auth(request)
        self.version(request)
        obj = self.sobject(request.path_params["sobject"])
        start, _end, latest = self.window(request, 15)
        earliest = self.now().replace(second=0, microsecond=0) - timedelta(days=15)
        rows = await run_in_threadpool(
            self.world.tuples,
            "SELECT id, deleted_date FROM sf_deleted WHERE object = ? AND deleted_date >= ? AND deleted_date < ?"
            " ORDER BY deleted_date, id",
            (obj.name, sf_datetime(max(start, earliest)), sf_datetime(latest)),
        )
        return json_response({
            "deletedRecords": [{"id": r[0], "deletedDate": r[1]} for r in rows],
            "earliestDateAvailable": sf_datetime(earliest),
            "latestDateCovered": sf_datetime(latest),
        })

    # -- Bulk API 2.0 query -------------------------------------------------------------

    async def bulk_create(self, request: Request) -> Response:
        session = self.auth(request)
        v = self.version(request)
        body = await self.json_body(request)
        job = await run_in_threadpool(
            lambda: self.bulk.create(body, api_version=v, user_id=session.user_id, now=self.now())
        )
        return json_response(job.info(detail=False))

    async def bulk_list(self, request: Request) -> Response:
        self.auth(request)
        self.version(request)
        return json_response(self.bulk.listing())

    async def bulk_job(self, request: Request) -> Response:
        self.auth(request)
        self.version(request)
        job_id = request.path_params["job_id"]
        if request.method == "DELETE":
            self.bulk.delete(job_id)
            return Response(status_code=204)
        if request.method == "PATCH":
            body = await self.json_body(request)
            state = body.get("state") if isinstance(body, dict) else None
            return json_response(self.bulk.abort(job_id, state, self.now()).info(detail=False))
        return json_response(self.bulk.poll(job_id, self.now()).info(detail=True))

    async def bulk_results(self, request: Request) -> Response:
        self.auth(request)
        self.version(request)
        content, locator, count = await run_in_threadpool(
            self.bulk.results, request.path_params["job_id"], request.query_params.get("locator"),
            request.query_params.get("maxRecords"),
        )
        return Response(content, 200, media_type="text/csv",
                        headers={"Sforce-Locator": locator, "Sforce-NumberOfRecords": str(count)})

    # -- Composite ------------------------------------------------------------------------

    async def composite(self, request: Request) -> Response:
        """``POST /composite``: up to 25 subrequests (at most 5 of them queries) answered in one
        response and counted as one API call. The sandbox serves the read-only subrequests a
        connector sends this way: describes, sObject basics and queries."""
        self.auth(request)
        v = self.version(request)
        body = await self.json_body(request)
        subs = body.get("compositeRequest") if isinstance(body, dict) else None
        if not isinstance(subs, list) or not subs:
            raise SfApiError(400, "INVALID_INPUT", "compositeRequest must be a non-empty list of subrequests.")
        if len(subs) > COMPOSITE_MAX:
            raise SfApiError(400, "INVALID_INPUT", f"A composite request holds at most {COMPOSITE_MAX} subrequests; "
                                                   f"this one has {len(subs)}.")
        queries = sum(1 for s in subs if isinstance(s, dict) and _composite_query(str(s.get("url", ""))))
        if queries > COMPOSITE_MAX_QUERIES:
            raise SfApiError(400, "INVALID_INPUT", f"A composite request holds at most {COMPOSITE_MAX_QUERIES} "
                                                   f"query subrequests; this one has {queries}.")
        all_or_none = bool(body.get("allOrNone", False))
        answers = await run_in_threadpool(self._run_composite, subs, v, all_or_none)
        return json_response({"compositeResponse": answers})

    def _run_composite(self, subs: Sequence[Any], version: str, all_or_none: bool) -> list[dict[str, Any]]:
        answers: list[dict[str, Any]] = []
        failed = False
        for sub in subs:
            ref = str(sub.get("referenceId", "")) if isinstance(sub, dict) else ""
            if failed and all_or_none:
                status, answer = 400, [_error("PROCESSING_HALTED", "The transaction was rolled back since another "
                                                                   "operation in the same transaction failed.", None)]
            else:
                try:
                    status, answer = 200, self._subrequest(sub, version)
                except SfApiError as exc:
                    status, answer = exc.status, exc.errors
                failed = failed or status >= 400
            answers.append({"body": answer, "httpHeaders": {}, "httpStatusCode": status, "referenceId": ref})
        return answers

    def _subrequest(self, sub: Any, version: str) -> Any:
        if not isinstance(sub, dict) or not isinstance(sub.get("url"), str) or not sub.get("referenceId"):
            raise SfApiError(400, "INVALID_INPUT", "Each subrequest needs a method, a url and a referenceId.")
        parts = urlsplit(sub["url"])
        match = _COMPOSITE_PATH.fullmatch(parts.path.rstrip("/"))
        if match is None or match["version"] != version:
            raise SfApiError(400, "INVALID_INPUT", f"The sandbox serves describes, sObject basics and queries of "
                                                   f"API v{version} in a composite request, not {parts.path!r}.")
        if str(sub.get("method", "GET")).upper() != "GET":
            raise SfApiError(405, "METHOD_NOT_ALLOWED", "The sandbox serves GET subrequests only.")
        rest = match["rest"]
        if rest in ("query", "queryAll"):
            soql = (parse_qs(parts.query).get("q") or [""])[-1]
            if not soql:
                raise SfApiError(400, "MALFORMED_QUERY", "The q parameter is required: send the SOQL query as ?q=...")
            return self.run_query(soql, rest == "queryAll", version, None)
        name, _, describe = rest.removeprefix("sobjects/").partition("/")
        if not rest.startswith("sobjects/") or describe not in ("", "describe"):
            raise SfApiError(404, "NOT_FOUND", "The requested resource does not exist")
        obj = self.sobject(name)
        return describe_sobject(obj, version) if describe else {"objectDescribe": sobject_summary(obj, version),
                                                                 "recentItems": []}

    # -- routing ------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        d = "/services/data/v{version}"
        s = d + "/sobjects/{sobject}"
        return [
            Route("/services/oauth2/token", self.token, methods=["POST"]),
            Route("/services/data", self.list_versions, methods=["GET"]),
            Route(d, self.resources, methods=["GET"]),
            Route(d + "/limits", self.limits, methods=["GET"]),
            Route(d + "/limits/recordCount", self.record_count, methods=["GET"]),
            Route(d + "/query", self.query, methods=["GET"]),
            Route(d + "/queryAll", self.query, methods=["GET"]),
            Route(d + "/query/{locator}", self.query_more, methods=["GET"]),
            Route(d + "/queryAll/{locator}", self.query_more, methods=["GET"]),
            Route(d + "/sobjects", self.describe_global, methods=["GET"]),
            Route(s, self.sobject_basic, methods=["GET"]),
            Route(s, self.create_record, methods=["POST"]),
            Route(s + "/describe", self.describe, methods=["GET"]),
            Route(s + "/updated", self.updated, methods=["GET"]),
            Route(s + "/deleted", self.deleted, methods=["GET"]),
            Route(s + "/{record_id}", self.get_record, methods=["GET"]),
            Route(s + "/{record_id}", self.update_record, methods=["PATCH"]),
            Route(s + "/{record_id}", self.delete_record, methods=["DELETE"]),
            Route(s + "/{field}/{value}", self.get_by_external_id, methods=["GET"]),
            Route(s + "/{field}/{value}", self.upsert_record, methods=["PATCH"]),
            Route(s + "/{field}/{value}", self.delete_by_external_id, methods=["DELETE"]),
            Route(d + "/composite", self.composite, methods=["POST"]),
            Route(d + "/composite/sobjects", self.collection_create, methods=["POST"]),
            Route(d + "/composite/sobjects", self.collection_update, methods=["PATCH"]),
            Route(d + "/composite/sobjects", self.collection_delete, methods=["DELETE"]),
            Route(d + "/composite/sobjects/{sobject}", self.collection_retrieve, methods=["GET", "POST"]),
            Route(d + "/composite/sobjects/{sobject}/{field}", self.collection_upsert, methods=["PATCH"]),
            Route(d + "/jobs/query", self.bulk_create, methods=["POST"]),
            Route(d + "/jobs/query", self.bulk_list, methods=["GET"]),
            Route(d + "/jobs/query/{job_id}", self.bulk_job, methods=["GET", "PATCH", "DELETE"]),
            Route(d + "/jobs/query/{job_id}/results", self.bulk_results, methods=["GET"]),
        ]


# ---------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------


class TrailingSlash:
    """Serve ``/query/`` and ``/query`` alike (simple-salesforce sends both forms)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/"):
            scope = {**scope, "path": path.rstrip("/") or "/"}
        await self.app(scope, receive, send)


def _handlers() -> dict[Any, Callable[[Request, Exception], Awaitable[Response]]]:
    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SfApiError)
        return json_response(exc.errors, exc.status)

    async def bulk_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BulkError)
        return error_response(exc.status, exc.error_code, exc.message)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            return error_response(405, "METHOD_NOT_ALLOWED",
                                  f"HTTP Method '{request.method}' not allowed. Allowed are {allowed}")
        if exc.status_code == 404:
            return error_response(404, "NOT_FOUND", "The requested resource does not exist")
        return error_response(exc.status_code, "UNKNOWN_EXCEPTION", str(exc.detail))

    async def unexpected(request: Request, exc: Exception) -> Response:
        return error_response(500, "UNKNOWN_EXCEPTION",
                              f"An unexpected error occurred in the sandbox ({type(exc).__name__}).")

    return {SfApiError: api_error, BulkError: bulk_error, HTTPException: http_error, Exception: unexpected}


def build_salesforce_app(
    world: World, control: Control, creds: SandboxCredentials, sandbox: Any = None
) -> Starlette:
    """The Salesforce server: the API, the ``/__sandbox/`` control endpoints, and the shared
    middleware that counts calls and injects faults."""
    api = SalesforceApi(world, control, creds, sandbox)
    routes = [*control_routes(control, world), *api.routes()]
    hooks = Hooks(
        error=fault_response,
        limit_headers=api.limit_headers,
        expire_session=api.expire_session,
        counted=lambda path: path.startswith("/services/data/v"),
    )
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(TrailingSlash),
            Middleware(SandboxMiddleware, control=control, hooks=hooks, routes=routes),
        ],
        exception_handlers=_handlers(),
    )
