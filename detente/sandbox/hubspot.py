"""HubSpot CRM v3 API simulator: objects, search, batch, properties, associations (v3 and v4),
owners, pipelines and merge over the sandbox world, with HubSpot's limits, error bodies and
rate-limit headers, so the unmodified hubspot-api-client runs against it.

This module holds the object endpoints (list, read, write, merge, search, batch) and puts the
app together; associations are in ``hs_assoc``, properties, owners and pipelines in
``hs_portal``, rate limits in ``hs_limits``. Search compilation, property checks and record
rendering are in ``hs_search``, ``hs_props`` and ``hs_records``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from detente.sandbox import hs_errors
from detente.sandbox.control import Control, Hooks, SandboxMiddleware, control_routes
from detente.sandbox.credentials import SandboxCredentials
from detente.sandbox.hs_assoc import AssociationsApi, associate, association_spec
from detente.sandbox.hs_errors import HsError, conflict, not_found, validation
from detente.sandbox.hs_http import (
    ApiBase,
    batch_inputs,
    bool_param,
    input_ids,
    int_param,
    list_param,
    object_type,
    read_json,
    record_id,
)
from detente.sandbox.hs_limits import RateLimitMiddleware, RateWindows, SearchHeaderFilter
from detente.sandbox.hs_portal import PortalApi
from detente.sandbox.hs_props import check_values, raise_if, required_on_create
from detente.sandbox.hs_records import Row, fetch, property_names, render, render_page
from detente.sandbox.hs_search import compile_search, register_functions, run_search
from detente.sandbox.schema import HsObject, HsProperty, hs_object
from detente.sandbox.store import World, hs_datetime

MAX_PAGE = 100
MAX_PAGE_WITH_HISTORY = 50
_UNIQUE_SAFE = re.compile(r"^[a-z0-9_]+$")


def _batch_error(exc: HsError, context: dict[str, list[str]]) -> dict[str, Any]:
    error: dict[str, Any] = {
        "status": "error",
        "category": exc.category,
        "message": exc.message,
        "context": context,
        "errors": exc.errors or [],
        "links": {},
    }
    if exc.sub_category:
        error["subCategory"] = exc.sub_category
    return error


def _fault_error(context: dict[str, list[str]]) -> dict[str, Any]:
    """A record the partial-batch-failure fault refused (not written; sending it again works)."""
    return {
        "status": "error",
        "category": "VALIDATION_ERROR",
        "message": "This record could not be saved right now and was not written; try it again.",
        "context": context,
        "errors": [],
        "links": {},
    }


@dataclass
class _Write:
    """One validated batch input, ready to be written."""

    index: int
    values: dict[str, str]
    record_id: int | None = None  # None: create
    links: list[tuple[str, int, int]] = field(default_factory=list)  # (to object, to id, type)
    trace: str | None = None
    new: bool = False


class ObjectsApi(ApiBase):
    """Records of every object type: list, read, write, merge, search and batch."""

    def ids_by(self, obj: HsObject, name: str, values: Sequence[str], *, archived: bool = False) -> dict[str, int]:
        """Records by a unique property: value → id (emails match case-insensitively)."""
        if not values or not _UNIQUE_SAFE.match(name):
            return {}
        fold = name == "email"
        wanted = {v for raw in values for v in ((raw, raw.strip().lower()) if fold else (raw,))}
        marks = ", ".join("?" for _ in wanted)
        rows = self.world.query(
            f"SELECT id, json_extract(props, '$.{name}') AS v FROM hs_{obj.name}"
            f" WHERE json_extract(props, '$.{name}') IN ({marks}) AND archived = ? ORDER BY id",
            (*wanted, int(archived)),
        )
        found: dict[str, int] = {}
        for r in rows:
            found.setdefault(r["v"].lower() if fold else r["v"], r["id"])
        return found

    def unique_property(self, obj: HsObject, props: dict[str, HsProperty], name: str) -> HsProperty:
        prop = props.get(name)
        if prop is None or not prop.unique or name == "hs_object_id":
            uniques = [p.name for p in props.values() if p.unique and p.name != "hs_object_id"]
            raise validation(
                f"{name} is not a unique property of {obj.name}; idProperty takes one of:"
                f" {', '.join(uniques) or 'none'}."
            )
        return prop

    def lookup(
        self,
        obj: HsObject,
        props: dict[str, HsProperty],
        raw: str,
        id_property: str | None,
        *,
        archived: bool = False,
    ) -> Row | None:
        """One record by id (following merges) or by a unique property."""
        if id_property and id_property != "hs_object_id":
            self.unique_property(obj, props, id_property)
            key = raw.strip().lower() if id_property == "email" else raw
            rid: int | None = self.ids_by(obj, id_property, [raw], archived=archived).get(key)
        else:
            rid = record_id(raw)
            if rid is not None and not archived:
                rid = self.world.hs_resolve(obj.name, rid)
        return fetch(self.world, obj, [rid], archived=archived).get(rid) if rid is not None else None

    def check_unique(
        self,
        obj: HsObject,
        props: dict[str, HsProperty],
        values: dict[str, str],
        exclude: int | None,
        claimed: dict[tuple[str, str], str] | None = None,
    ) -> None:
        """409 when a unique value belongs to another record (or to an earlier batch input)."""
        for name, value in values.items():
            prop = props.get(name)
            if not value or prop is None or not prop.unique or name == "hs_object_id":
                continue
            key = value.lower() if name == "email" else value
            existing = self.ids_by(obj, name, [value]).get(key)
            holder = str(existing) if existing is not None and existing != exclude else None
            if holder is None and claimed is not None:
                holder = claimed.get((name, key))
            if holder is not None:
                if obj.name == "contacts" and name == "email":
                    raise conflict(f"Contact already exists. Existing ID: {holder}")
                raise conflict(f"A {obj.singular} with {name}={value} already exists. Existing ID: {holder}")
            if claimed is not None:
                claimed[(name, key)] = "(an earlier input of this batch)"

    def inline_links(self, obj: HsObject, raw: Any) -> list[tuple[str, int, int]]:
        """Associations given on create: (to object, to id, type id), targets checked."""
        if raw in (None, []):
            return []
        if not isinstance(raw, list):
            raise validation('associations must be a list of {"to": {"id"}, "types": [...]}.')
        links: list[tuple[str, int, int]] = []
        for item in raw:
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("to"), dict)
                or not isinstance(item.get("types"), list)
                or not item["types"]
            ):
                raise validation('Each association needs "to": {"id"} and a non-empty "types" list.')
            to_id = record_id(item["to"].get("id"))
            for spec in item["types"]:
                to_name, type_id = association_spec(spec, obj.name, None)
                if to_id is None or not fetch(self.world, object_type(to_name), [to_id]):
                    raise validation(
                        f"The association target {to_name} {item['to'].get('id')} does not exist.",
                        sub_category="crm.associations.INVALID_OBJECT_IDS",
                        context={"toObjectId": [str(item["to"].get("id"))]},
                    )
                links.append((to_name, to_id, type_id))
        return links

    async def list_objects(self, request: Request) -> Response:
        obj = object_type(request.path_params["type"])
        props = self.props(obj)
        with_history = [n for n in list_param(request, "propertiesWithHistory") or [] if n in props]
        history_asked = request.query_params.get("propertiesWithHistory") is not None
        limit = int_param(request, "limit", 10, MAX_PAGE_WITH_HISTORY if history_asked else MAX_PAGE)
        after = int_param(request, "after", 0)
        archived = bool_param(request, "archived")
        names = property_names(obj, list_param(request, "properties"), props)
        to_names = self.association_names(list_param(request, "associations"))
        rows = self.world.query(
            f"SELECT * FROM hs_{obj.name} WHERE archived = ? AND id >= ? ORDER BY id LIMIT ?",
            (int(archived), after, limit + 1),
        )
        body: dict[str, Any] = {
            "results": render_page(self.world, obj, rows[:limit], names, with_history=with_history, to_names=to_names)
        }
        if len(rows) > limit:
            next_after = str(rows[limit]["id"])
            body["paging"] = {
                "next": {"after": next_after, "link": str(request.url.include_query_params(after=next_after))}
            }
        return JSONResponse(body)

    def association_names(self, names: Sequence[str] | None) -> list[str]:
        found = (hs_object(n) for n in names or ())
        return list(dict.fromkeys(o.name for o in found if o is not None))

    async def get_object(self, request: Request) -> Response:
        obj = object_type(request.path_params["type"])
        props = self.props(obj)
        archived = bool_param(request, "archived")
        row = self.lookup(
            obj, props, request.path_params["id"], request.query_params.get("idProperty"), archived=archived
        )
        if row is None:
            raise not_found()
        with_history = [n for n in list_param(request, "propertiesWithHistory") or [] if n in props]
        page = render_page(
            self.world,
            obj,
            [row],
            property_names(obj, list_param(request, "properties"), props),
            with_history=with_history,
            to_names=self.association_names(list_param(request, "associations")),
        )
        return JSONResponse(page[0])

    async def create_object(self, request: Request) -> Response:
        obj = object_type(request.path_params["type"])
        body = await read_json(request)
        if not isinstance(body, dict):
            raise validation('The body must be a JSON object with "properties".')
        props = self.props(obj)
        values, errors = check_values(props, body.get("properties") or {}, current=None, owner_ids=self.owner_ids())
        raise_if(errors or required_on_create(obj, values))
        links = self.inline_links(obj, body.get("associations"))
        self.check_unique(obj, props, values, exclude=None)
        rid = self.world.hs_insert(obj.name, [values], self.now())[0]
        associate(self.world, [(obj.name, rid, to, tid, t) for to, tid, t in links])
        return JSONResponse(render(obj, fetch(self.world, obj, [rid])[rid], None), 201)

    async def update_object(self, request: Request) -> Response:
        obj = object_type(request.path_params["type"])
        body = await read_json(request)
        if not isinstance(body, dict):
            raise validation('The body must be a JSON object with "properties".')
        props = self.props(obj)
        row = self.lookup(obj, props, request.path_params["id"], request.query_params.get("idProperty"))
        if row is None:
            raise not_found()
        values, errors = check_values(
            props, body.get("properties") or {}, current=json.loads(row["props"]), owner_ids=self.owner_ids()
        )
        raise_if(errors)
        self.check_unique(obj, props, values, exclude=row["id"])
        self.world.hs_update(obj.name, row["id"], values, self.now())
        return JSONResponse(render(obj, fetch(self.world, obj, [row["id"]])[row["id"]], None))

    async def archive_object(self, request: Request) -> Response:
        obj = object_type(request.path_params["type"])
        rid = record_id(request.path_params["id"])
        if rid is not None:
            self.world.hs_archive(obj.name, self.world.hs_resolve(obj.name, rid), self.now())
        return Response(status_code=204)

    async def merge(self, request: Request) -> Response:
        obj = object_type(request.path_params["type"])
        body = await read_json(request)
        if not isinstance(body, dict):
            raise validation('The body must be {"primaryObjectId", "objectIdToMerge"}.')
        primary, other = record_id(body.get("primaryObjectId")), record_id(body.get("objectIdToMerge"))
        if primary is None or other is None:
            raise validation("primaryObjectId and objectIdToMerge must both be record ids.")
        primary = self.world.hs_resolve(obj.name, primary)
        if primary == self.world.hs_resolve(obj.name, other):
            raise validation(f"Cannot merge {obj.singular} {other} into itself.")
        if self.world.hs_merge(obj.name, primary, other, self.now()) is None:
            raise not_found(f"Could not merge: {obj.singular} {primary} or {other} does not exist.")
        return JSONResponse(render(obj, fetch(self.world, obj, [primary])[primary], None))

    async def gdpr_delete(self, request: Request) -> Response:
        """Permanent deletion of a contact (by id, or by email with idProperty)."""
        obj = object_type(request.path_params["type"])
        if obj.name != "contacts":
            raise validation("GDPR delete is available for contacts only.")
        body = await read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("objectId"), (str, int)):
            raise validation('The body must be {"objectId": ..., "idProperty"?: ...}.')
        props = self.props(obj)
        raw, id_property = str(body["objectId"]), body.get("idProperty")
        row = self.lookup(obj, props, raw, id_property) or self.lookup(obj, props, raw, id_property, archived=True)
        if row is None or not self.world.hs_purge(obj.name, row["id"]):
            raise not_found(f"Could not find contact {raw} to delete.")
        return Response(status_code=204)

    async def search(self, request: Request) -> Response:
        obj = object_type(request.path_params["type"])
        body = await read_json(request)
        props = self.props(obj)
        lag = self.control.faults.search_lag_seconds
        visible_until = hs_datetime(self.now() - timedelta(seconds=lag)) if lag else None
        query = compile_search(obj, props, body, visible_until=visible_until)
        total, rows = run_search(self.world.query, query)
        names = property_names(obj, query.properties, props)
        out: dict[str, Any] = {"total": total, "results": [render(obj, r, names) for r in rows]}
        if query.limit and query.offset + len(rows) < total:
            out["paging"] = {"next": {"after": str(query.offset + query.limit)}}
        return JSONResponse(out)

    async def batch_read(self, request: Request) -> Response:
        started = self.now()
        obj = object_type(request.path_params["type"])
        body = await read_json(request)
        inputs = batch_inputs(body)
        props = self.props(obj)
        archived = bool_param(request, "archived")
        raw_ids = input_ids(inputs)
        id_property = body.get("idProperty")
        if id_property and id_property != "hs_object_id":
            self.unique_property(obj, props, str(id_property))
            by_value = self.ids_by(obj, str(id_property), raw_ids, archived=archived)
            fold = id_property == "email"
            wanted = {raw: by_value.get(raw.strip().lower() if fold else raw) for raw in raw_ids}
        else:
            numeric = [i for i in (record_id(r) for r in raw_ids) if i is not None]
            resolved = self.resolve_many(obj, numeric) if not archived else {i: i for i in numeric}
            wanted = {raw: resolved.get(rid) if (rid := record_id(raw)) is not None else None for raw in raw_ids}
        rows = fetch(self.world, obj, [i for i in wanted.values() if i is not None], archived=archived)
        order = list(dict.fromkeys(i for i in wanted.values() if i is not None and i in rows))
        missing = [raw for raw, rid in wanted.items() if rid is None or rid not in rows]
        names = property_names(obj, body.get("properties") or None, props)
        with_history = [n for n in body.get("propertiesWithHistory") or [] if n in props]
        results = render_page(self.world, obj, [rows[i] for i in order], names, with_history=with_history)
        errors = (
            []
            if not missing
            else [
                {
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "message": f"Could not get some {obj.singular.upper()} objects, they may be deleted or not"
                    " exist. Check that ids are valid.",
                    "context": {"ids": missing},
                    "errors": [],
                    "links": {},
                }
            ]
        )
        return self.batch_response(results, errors, started, 200)

    async def batch_create(self, request: Request) -> Response:
        started = self.now()
        obj = object_type(request.path_params["type"])
        inputs = batch_inputs(await read_json(request))
        props = self.props(obj)
        owners = self.owner_ids()
        traced = bool(inputs) and all(isinstance(i, dict) and i.get("objectWriteTraceId") for i in inputs)
        writes: list[_Write] = []
        errors: list[dict[str, Any]] = []
        claimed: dict[tuple[str, str], str] = {}
        for index, item in enumerate(inputs):
            trace = str(item.get("objectWriteTraceId")) if isinstance(item, dict) and traced else None
            try:
                if not isinstance(item, dict):
                    raise validation(f'Input {index} must be a JSON object with "properties".')
                values, problems = check_values(props, item.get("properties") or {}, current=None, owner_ids=owners)
                raise_if(problems or required_on_create(obj, values))
                links = self.inline_links(obj, item.get("associations"))
                self.check_unique(obj, props, values, exclude=None, claimed=claimed)
                writes.append(_Write(index, values, links=links, trace=trace))
            except HsError as exc:
                if trace is None:
                    raise
                errors.append(_batch_error(exc, {"objectWriteTraceId": [trace]}))
        writes = self.inject_failures(
            writes, errors, lambda w: {"objectWriteTraceId": [w.trace]} if w.trace else {"inputIndex": [str(w.index)]}
        )
        ids = self.world.hs_insert(obj.name, [w.values for w in writes], self.now()) if writes else []
        associate(
            self.world,
            [(obj.name, rid, to, tid, t) for w, rid in zip(writes, ids, strict=True) for to, tid, t in w.links],
        )
        rows = fetch(self.world, obj, ids)
        results = []
        for w, rid in zip(writes, ids, strict=True):
            record = render(obj, rows[rid], None)
            if w.trace:
                record["objectWriteTraceId"] = w.trace
            results.append(record)
        return self.batch_response(results, errors, started, 201)

    def inject_failures(
        self,
        writes: list[_Write],
        errors: list[dict[str, Any]],
        context: Callable[[_Write], dict[str, list[str]]],
    ) -> list[_Write]:
        """The partial-batch-failure fault: a share of the inputs fails and is not written."""
        share = self.control.faults.partial_batch_failures
        if share <= 0:
            return writes
        kept = []
        for w in writes:
            if self.control.roll(share):
                self.control.faults_injected["partial_batch_failure"] += 1
                errors.append(_fault_error(context(w)))
            else:
                kept.append(w)
        return kept

    async def batch_update(self, request: Request) -> Response:
        started = self.now()
        obj = object_type(request.path_params["type"])
        inputs = batch_inputs(await read_json(request))
        props = self.props(obj)
        raw_ids = input_ids(inputs)
        duplicates = sorted({r for r in raw_ids if raw_ids.count(r) > 1})
        if duplicates:
            raise validation(
                f"Duplicate IDs found in batch input: {duplicates}. IDs must be unique", context={"ids": duplicates}
            )
        id_property = next((str(i["idProperty"]) for i in inputs if i.get("idProperty")), None)
        rows: dict[str, Row] = {}
        for raw in raw_ids:
            row = self.lookup(obj, props, raw, id_property)
            if row is not None:
                rows[raw] = row
        owners = self.owner_ids()
        writes, problems = [], []
        claimed: dict[tuple[str, str], str] = {}
        for index, (raw, item) in enumerate(zip(raw_ids, inputs, strict=True)):
            if raw not in rows:
                continue
            values, errs = check_values(
                props, item.get("properties") or {}, current=json.loads(rows[raw]["props"]), owner_ids=owners
            )
            problems.extend(errs)
            if not errs:
                self.check_unique(obj, props, values, exclude=rows[raw]["id"], claimed=claimed)
                writes.append(_Write(index, values, record_id=rows[raw]["id"]))
        raise_if(problems)
        missing = [raw for raw in raw_ids if raw not in rows]
        errors = (
            []
            if not missing
            else [
                {
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "message": f"Could not update some {obj.singular.upper()} objects, they may be deleted or"
                    " not exist. Check that ids are valid.",
                    "context": {"ids": missing},
                    "errors": [],
                    "links": {},
                }
            ]
        )
        writes = self.inject_failures(writes, errors, lambda w: {"ids": [raw_ids[w.index]]})
        now = self.now()
        with self.world.transaction():
            for w in writes:
                assert w.record_id is not None
                self.world.hs_update(obj.name, w.record_id, w.values, now)
        fresh = fetch(self.world, obj, [w.record_id for w in writes if w.record_id is not None])
        results = [render(obj, fresh[w.record_id], None) for w in writes if w.record_id is not None]
        return self.batch_response(results, errors, started, 200)

    async def batch_upsert(self, request: Request) -> Response:
        started = self.now()
        obj = object_type(request.path_params["type"])
        inputs = batch_inputs(await read_json(request))
        props = self.props(obj)
        if not all(
            isinstance(i, dict)
            and i.get("id") is not None
            and i.get("idProperty")
            and isinstance(i.get("properties", {}), dict)
            for i in inputs
        ):
            raise validation('Each upsert input needs "id", "idProperty" and "properties".')
        owners = self.owner_ids()
        keys = []
        for item in inputs:
            name = str(item["idProperty"])
            self.unique_property(obj, props, name)
            value = str(item["id"]).strip().lower() if name == "email" else str(item["id"])
            keys.append((name, value))
        duplicates = sorted({v for _, v in keys if sum(1 for _, w in keys if w == v) > 1})
        if duplicates:
            raise validation(
                f"Duplicate IDs found in batch input: {duplicates}. IDs must be unique", context={"ids": duplicates}
            )
        writes, problems = [], []
        claimed: dict[tuple[str, str], str] = {}
        for index, (item, (name, value)) in enumerate(zip(inputs, keys, strict=True)):
            existing = self.ids_by(obj, name, [value]).get(value)
            current = None
            if existing is not None:
                current = json.loads(fetch(self.world, obj, [existing])[existing]["props"])
            values, errs = check_values(
                props, {**(item.get("properties") or {}), name: value}, current=current, owner_ids=owners
            )
            if existing is None and not errs:
                errs = required_on_create(obj, values)
            problems.extend(errs)
            if not errs:
                self.check_unique(obj, props, values, exclude=existing, claimed=claimed)
                writes.append(_Write(index, values, record_id=existing, new=existing is None))
        raise_if(problems)
        errors: list[dict[str, Any]] = []
        writes = self.inject_failures(writes, errors, lambda w: {"ids": [keys[w.index][1]]})
        now = self.now()
        created = [w for w in writes if w.new]
        with self.world.transaction():
            for w in writes:
                if w.record_id is not None:
                    self.world.hs_update(obj.name, w.record_id, w.values, now)
            new_ids = self.world.hs_insert(obj.name, [w.values for w in created], now) if created else []
        for w, rid in zip(created, new_ids, strict=True):
            w.record_id = rid
        fresh = fetch(self.world, obj, [w.record_id for w in writes if w.record_id is not None])
        results = []
        for w in writes:
            assert w.record_id is not None
            results.append({**render(obj, fresh[w.record_id], None), "new": w.new})
        return self.batch_response(results, errors, started, 200)

    async def batch_archive(self, request: Request) -> Response:
        obj = object_type(request.path_params["type"])
        inputs = batch_inputs(await read_json(request))
        now = self.now()
        with self.world.transaction():
            for item in inputs:
                rid = record_id(item.get("id")) if isinstance(item, dict) else None
                if rid is not None:
                    self.world.hs_archive(obj.name, self.world.hs_resolve(obj.name, rid), now)
        return Response(status_code=204)

    def routes(self) -> list[Route]:
        e = self.endpoint
        objects = "/crm/v3/objects/{type}"
        return [
            Route(f"{objects}/search", e(self.search), methods=["POST"]),
            Route(f"{objects}/merge", e(self.merge), methods=["POST"]),
            Route(f"{objects}/gdpr-delete", e(self.gdpr_delete), methods=["POST"]),
            Route(f"{objects}/batch/read", e(self.batch_read), methods=["POST"]),
            Route(f"{objects}/batch/create", e(self.batch_create), methods=["POST"]),
            Route(f"{objects}/batch/update", e(self.batch_update), methods=["POST"]),
            Route(f"{objects}/batch/upsert", e(self.batch_upsert), methods=["POST"]),
            Route(f"{objects}/batch/archive", e(self.batch_archive), methods=["POST"]),
            Route(objects, e(self.list_objects), methods=["GET"]),
            Route(objects, e(self.create_object), methods=["POST"]),
            Route(f"{objects}/{{id}}", e(self.get_object), methods=["GET"]),
            Route(f"{objects}/{{id}}", e(self.update_object), methods=["PATCH"]),
            Route(f"{objects}/{{id}}", e(self.archive_object), methods=["DELETE"]),
        ]


def _fault_response(kind: str, status: int, retry_after: float | None) -> Response:
    """The shared middleware's faults, in HubSpot's shape."""
    if kind == "rate_limited":
        return hs_errors.rate_limited("TEN_SECONDLY_ROLLING", retry_after)
    if kind == "quota":
        return hs_errors.rate_limited("DAILY")
    if kind == "expired_session":
        return hs_errors.unauthorized()
    if kind == "refused":
        return HsError(403, "This app hasn't been granted all required scopes to make this call.",
                       "MISSING_SCOPES").response()
    return hs_errors.server_error(status or 500)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        return not_found().response()
    if status == 405:
        return HsError(405, f"{request.method} is not supported on {request.url.path}.", "VALIDATION_ERROR").response()
    return HsError(status, "The request could not be handled.", "VALIDATION_ERROR").response()


def build_hubspot_app(world: World, control: Control, creds: SandboxCredentials, sandbox: Any = None) -> Starlette:
    """The HubSpot CRM API over ``world``, with the sandbox's control endpoints."""
    register_functions(world.conn)
    apis = (ObjectsApi(world, control, creds), AssociationsApi(world, control, creds), PortalApi(world, control, creds))
    windows = RateWindows()

    async def forget_windows() -> None:
        windows.forget()

    routes = control_routes(control, world, on_reset=forget_windows) + [r for api in apis for r in api.routes()]
    hooks = Hooks(
        error=_fault_response,
        limit_headers=lambda c: windows.headers(c, time.monotonic()),
        expire_session=lambda scope: False,  # private-app tokens do not expire
    )
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(SearchHeaderFilter),
            Middleware(SandboxMiddleware, control=control, hooks=hooks, routes=routes),
            Middleware(RateLimitMiddleware, control=control, windows=windows),
        ],
        exception_handlers={HTTPException: _http_error},
    )
