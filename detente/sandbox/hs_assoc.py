"""HubSpot associations in the simulator: the v4 endpoints (read one record's, batch read,
create default or typed, batch create, archive) and the v3 single-pair shorthand, over the
HUBSPOT_DEFINED association types of the schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from detente.sandbox.hs_errors import not_found, validation
from detente.sandbox.hs_http import (
    ApiBase,
    batch_inputs,
    input_ids,
    int_param,
    object_type,
    read_json,
    record_id,
)
from detente.sandbox.hs_records import association_label, fetch, render_page
from detente.sandbox.schema import HS_ASSOCIATION_TYPES, HS_PRIMARY_ASSOCIATION_TYPES, HsObject
from detente.sandbox.store import World

MAX_ASSOCIATION_PAGE = 500
MAX_ASSOCIATION_BATCH_READ = 1000
MAX_ASSOCIATION_BATCH_WRITE = 2000


def association_types(from_name: str, to_name: str) -> set[int]:
    return {
        t
        for t in (
            HS_ASSOCIATION_TYPES.get((from_name, to_name)),
            HS_PRIMARY_ASSOCIATION_TYPES.get((from_name, to_name)),
        )
        if t is not None
    }


TYPE_TARGETS: dict[tuple[str, int], str] = {
    **{(f, t): to for (f, to), t in HS_ASSOCIATION_TYPES.items()},
    **{(f, t): to for (f, to), t in HS_PRIMARY_ASSOCIATION_TYPES.items()},
}


def association_spec(raw: Any, from_name: str, to_name: str | None) -> tuple[str, int]:
    """(to object, type id) of an ``{"associationCategory","associationTypeId"}`` spec."""
    if not isinstance(raw, dict):
        raise validation('An association type is {"associationCategory", "associationTypeId"}.')
    category, type_id = raw.get("associationCategory"), record_id(raw.get("associationTypeId"))
    target = TYPE_TARGETS.get((from_name, type_id)) if type_id is not None else None
    if category != "HUBSPOT_DEFINED" or target is None or (to_name is not None and target != to_name):
        raise validation(
            f"{raw.get('associationTypeId')} is not a valid association type between {from_name} and"
            f" {to_name or 'any object'} (category {category}); the sandbox knows the HUBSPOT_DEFINED"
            " types only.",
            sub_category="crm.associations.INVALID_ASSOCIATION_TYPE",
            context={
                "type": [str(raw.get("associationTypeId"))],
                "fromObjectType": [from_name],
                "toObjectType": [to_name or ""],
            },
        )
    assert type_id is not None
    return target, type_id


def primary_label(from_name: str, to_name: str, type_id: int) -> str | None:
    return "Primary" if HS_PRIMARY_ASSOCIATION_TYPES.get((from_name, to_name)) == type_id else None


def associate(world: World, links: Sequence[tuple[str, int, str, int, int]]) -> None:
    """Create associations; a primary one replaces the record's previous primary and
    brings the unlabeled type (and the inverse primary) with it, as in HubSpot."""
    pairs: list[tuple[str, int, str, int, int]] = []
    for fo, fid, to, tid, type_id in links:
        pairs.append((fo, fid, to, tid, type_id))
        if HS_PRIMARY_ASSOCIATION_TYPES.get((fo, to)) != type_id:
            continue
        inverse = HS_PRIMARY_ASSOCIATION_TYPES.get((to, fo))
        for other, _, t in world.hs_associations(fo, fid, to):
            if t == type_id and other != tid:
                world.hs_unassociate(fo, fid, to, other, [type_id])
                if inverse is not None:
                    world.hs_unassociate(to, other, fo, fid, [inverse])
        default = HS_ASSOCIATION_TYPES.get((fo, to))
        if default is not None:
            pairs.append((fo, fid, to, tid, default))
        if inverse is not None:
            pairs.append((to, tid, fo, fid, inverse))
    if pairs:
        world.hs_associate(pairs)


class AssociationsApi(ApiBase):
    """The v3 and v4 association endpoints."""

    def pair(self, request: Request) -> tuple[HsObject, int, HsObject, int]:
        """From and to records of a single-association path; 404 when either is missing."""
        params = request.path_params
        from_obj, to_obj = object_type(params["type"]), object_type(params["to_type"])
        from_id, to_id = self.live(from_obj, params["id"]), self.live(to_obj, params["to_id"])
        if from_id is None or to_id is None:
            missing = params["id"] if from_id is None else params["to_id"]
            raise not_found(f"Could not find {missing}; both records must exist to be associated.")
        return from_obj, from_id, to_obj, to_id

    def association_results(
        self, from_obj: HsObject, to_obj: HsObject, from_ids: Sequence[int], after: int = 0, limit: int | None = None
    ) -> dict[int, list[dict[str, Any]]]:
        """v4 ``[{"toObjectId", "associationTypes"}]`` per from id."""
        out: dict[int, list[dict[str, Any]]] = {}
        if not from_ids:
            return out
        marks = ", ".join("?" for _ in from_ids)
        rows = self.world.query(
            f"SELECT from_id, to_id, category, type_id FROM hs_assoc WHERE from_object = ?"
            f" AND from_id IN ({marks}) AND to_object = ? AND to_id >= ? ORDER BY from_id, to_id, type_id",
            (from_obj.name, *from_ids, to_obj.name, after),
        )
        for r in rows:
            targets = out.setdefault(r["from_id"], [])
            if not targets or targets[-1]["toObjectId"] != r["to_id"]:
                if limit is not None and len(targets) > limit:
                    continue
                targets.append({"toObjectId": r["to_id"], "associationTypes": []})
            targets[-1]["associationTypes"].append(
                {
                    "category": r["category"],
                    "typeId": r["type_id"],
                    "label": primary_label(from_obj.name, to_obj.name, r["type_id"]),
                }
            )
        return out

    async def v4_list(self, request: Request) -> Response:
        from_obj, to_obj = object_type(request.path_params["type"]), object_type(request.path_params["to_type"])
        limit = int_param(request, "limit", MAX_ASSOCIATION_PAGE, MAX_ASSOCIATION_PAGE)
        after = int_param(request, "after", 0)
        rid = self.live(from_obj, request.path_params["id"])
        found = self.association_results(from_obj, to_obj, [rid], after, limit).get(rid, []) if rid else []
        body: dict[str, Any] = {"results": found[:limit]}
        if len(found) > limit:
            next_after = str(found[limit]["toObjectId"])
            body["paging"] = {
                "next": {"after": next_after, "link": str(request.url.include_query_params(after=next_after))}
            }
        return JSONResponse(body)

    async def v4_batch_read(self, request: Request) -> Response:
        started = self.now()
        from_obj, to_obj = object_type(request.path_params["type"]), object_type(request.path_params["to_type"])
        inputs = batch_inputs(await read_json(request), MAX_ASSOCIATION_BATCH_READ)
        raw_ids = list(dict.fromkeys(input_ids(inputs)))
        numeric = [i for i in (record_id(r) for r in raw_ids) if i is not None]
        resolved = self.resolve_many(from_obj, numeric)
        found = self.association_results(from_obj, to_obj, sorted(set(resolved.values())))
        results, errors = [], []
        for raw in raw_ids:
            rid = record_id(raw)
            targets = found.get(resolved[rid]) if rid is not None else None
            if targets:
                results.append({"from": {"id": raw}, "to": targets})
            else:
                errors.append(
                    {
                        "status": "error",
                        "category": "OBJECT_NOT_FOUND",
                        "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
                        "message": f"No {to_obj.singular} is associated with {from_obj.singular} {raw}.",
                        "context": {"fromObjectId": [raw], "toObjectType": [to_obj.singular]},
                        "errors": [],
                        "links": {},
                    }
                )
        return self.batch_response(results, errors, started, 200)

    def labels_between(
        self, from_obj: HsObject, from_id: int, to_obj: HsObject, to_id: int, type_ids: Sequence[int]
    ) -> dict[str, Any]:
        return {
            "fromObjectTypeId": from_obj.type_id,
            "fromObjectId": from_id,
            "toObjectTypeId": to_obj.type_id,
            "toObjectId": to_id,
            "labels": [label for t in type_ids if (label := primary_label(from_obj.name, to_obj.name, t))],
        }

    def default_type(self, from_obj: HsObject, to_obj: HsObject) -> int:
        type_id = HS_ASSOCIATION_TYPES.get((from_obj.name, to_obj.name))
        if type_id is None:
            raise validation(
                f"There is no default association type between {from_obj.name} and {to_obj.name}.",
                sub_category="crm.associations.INVALID_ASSOCIATION_TYPE",
            )
        return type_id

    def default_results(self, from_obj: HsObject, from_id: int, to_obj: HsObject, to_id: int) -> list[dict[str, Any]]:
        type_id = self.default_type(from_obj, to_obj)
        associate(self.world, [(from_obj.name, from_id, to_obj.name, to_id, type_id)])
        results = [
            {
                "from": {"id": str(from_id)},
                "to": {"id": str(to_id)},
                "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id},
            }
        ]
        inverse = HS_ASSOCIATION_TYPES.get((to_obj.name, from_obj.name))
        if inverse is not None:
            results.append(
                {
                    "from": {"id": str(to_id)},
                    "to": {"id": str(from_id)},
                    "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": inverse},
                }
            )
        return results

    async def v4_create_default(self, request: Request) -> Response:
        started = self.now()
        from_obj, from_id, to_obj, to_id = self.pair(request)
        return self.batch_response(self.default_results(from_obj, from_id, to_obj, to_id), [], started, 200)

    async def v4_create(self, request: Request) -> Response:
        from_obj, from_id, to_obj, to_id = self.pair(request)
        specs = await read_json(request)
        if not isinstance(specs, list) or not specs:
            raise validation("The body must be a non-empty list of association types.")
        type_ids = [association_spec(s, from_obj.name, to_obj.name)[1] for s in specs]
        associate(self.world, [(from_obj.name, from_id, to_obj.name, to_id, t) for t in type_ids])
        return JSONResponse(self.labels_between(from_obj, from_id, to_obj, to_id, type_ids), 201)

    async def v4_archive(self, request: Request) -> Response:
        from_obj, to_obj = object_type(request.path_params["type"]), object_type(request.path_params["to_type"])
        from_id, to_id = record_id(request.path_params["id"]), record_id(request.path_params["to_id"])
        if from_id is not None and to_id is not None:
            self.world.hs_unassociate(
                from_obj.name,
                self.world.hs_resolve(from_obj.name, from_id),
                to_obj.name,
                self.world.hs_resolve(to_obj.name, to_id),
            )
        return Response(status_code=204)

    def batch_pairs(
        self, request: Request, inputs: Sequence[Any]
    ) -> tuple[HsObject, HsObject, list[tuple[int, int, Any]], list[dict[str, Any]]]:
        """Inputs ``{"from": {"id"}, "to": {"id"}, ...}`` of a v4 batch write: (from id, to id,
        input) for the pairs whose records exist, and errors for the others."""
        from_obj, to_obj = object_type(request.path_params["type"]), object_type(request.path_params["to_type"])
        pairs, errors = [], []
        for item in inputs:
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("from"), dict)
                or not isinstance(item.get("to"), dict)
            ):
                raise validation('Each input needs "from": {"id"} and "to": {"id"}.')
            from_id, to_id = self.live(from_obj, item["from"].get("id")), self.live(to_obj, item["to"].get("id"))
            if from_id is None or to_id is None:
                missing = [str(item["from"].get("id"))] if from_id is None else []
                missing += [str(item["to"].get("id"))] if to_id is None else []
                errors.append(
                    {
                        "status": "error",
                        "category": "OBJECT_NOT_FOUND",
                        "message": f"Could not find {', '.join(missing)}; both records must exist.",
                        "context": {"ids": missing},
                        "errors": [],
                        "links": {},
                    }
                )
            else:
                pairs.append((from_id, to_id, item))
        return from_obj, to_obj, pairs, errors

    async def v4_batch_create(self, request: Request) -> Response:
        started = self.now()
        inputs = batch_inputs(await read_json(request), MAX_ASSOCIATION_BATCH_WRITE)
        from_obj, to_obj, pairs, errors = self.batch_pairs(request, inputs)
        links, results = [], []
        for from_id, to_id, item in pairs:
            specs = item.get("types")
            if not isinstance(specs, list) or not specs:
                raise validation('Each input needs a non-empty "types" list.')
            type_ids = [association_spec(s, from_obj.name, to_obj.name)[1] for s in specs]
            links += [(from_obj.name, from_id, to_obj.name, to_id, t) for t in type_ids]
            results.append(self.labels_between(from_obj, from_id, to_obj, to_id, type_ids))
        associate(self.world, links)
        return self.batch_response(results, errors, started, 201)

    async def v4_batch_default(self, request: Request) -> Response:
        started = self.now()
        inputs = batch_inputs(await read_json(request), MAX_ASSOCIATION_BATCH_WRITE)
        from_obj, to_obj, pairs, errors = self.batch_pairs(request, inputs)
        self.default_type(from_obj, to_obj)
        results = [r for from_id, to_id, _ in pairs for r in self.default_results(from_obj, from_id, to_obj, to_id)]
        return self.batch_response(results, errors, started, 200)

    async def v4_batch_archive(self, request: Request) -> Response:
        from_obj, to_obj = object_type(request.path_params["type"]), object_type(request.path_params["to_type"])
        inputs = batch_inputs(await read_json(request), MAX_ASSOCIATION_BATCH_WRITE)
        for item in inputs:
            if not isinstance(item, dict) or not isinstance(item.get("to"), list):
                raise validation('Each input needs "from": {"id"} and "to": [{"id"}, ...].')
            from_id = record_id((item.get("from") or {}).get("id"))
            for target in item["to"]:
                to_id = record_id(target.get("id")) if isinstance(target, dict) else None
                if from_id is not None and to_id is not None:
                    self.world.hs_unassociate(from_obj.name, from_id, to_obj.name, to_id)
        return Response(status_code=204)

    def v3_type(self, from_obj: HsObject, to_obj: HsObject, raw: str) -> int:
        """A v3 association type: a type id, or a name such as contact_to_company."""
        valid = association_types(from_obj.name, to_obj.name)
        type_id = record_id(raw)
        if type_id is None:
            type_id = next((t for t in valid if association_label(from_obj.name, to_obj.name, t) == raw), None)
        if type_id not in valid:
            raise validation(
                f"{raw} is not a valid association type between {from_obj.name} and {to_obj.name}",
                sub_category="crm.associations.INVALID_ASSOCIATION_TYPE",
                context={"type": [raw], "fromObjectType": [from_obj.name], "toObjectType": [to_obj.name]},
            )
        assert type_id is not None
        return type_id

    async def v3_associate(self, request: Request) -> Response:
        from_obj, from_id, to_obj, to_id = self.pair(request)
        type_id = self.v3_type(from_obj, to_obj, request.path_params["type_id"])
        associate(self.world, [(from_obj.name, from_id, to_obj.name, to_id, type_id)])
        row = fetch(self.world, from_obj, [from_id])[from_id]
        page = render_page(self.world, from_obj, [row], list(from_obj.defaults), to_names=[to_obj.name])
        return JSONResponse(page[0])

    async def v3_unassociate(self, request: Request) -> Response:
        from_obj, from_id, to_obj, to_id = self.pair(request)
        type_id = self.v3_type(from_obj, to_obj, request.path_params["type_id"])
        self.world.hs_unassociate(from_obj.name, from_id, to_obj.name, to_id, [type_id])
        inverse = HS_ASSOCIATION_TYPES.get((to_obj.name, from_obj.name))
        if inverse is not None and not any(
            t in association_types(from_obj.name, to_obj.name)
            for other, _, t in self.world.hs_associations(from_obj.name, from_id, to_obj.name)
            if other == to_id
        ):
            self.world.hs_unassociate(to_obj.name, to_id, from_obj.name, from_id, [inverse])
        return Response(status_code=204)

    def routes(self) -> list[Route]:
        e = self.endpoint
        pair = "/crm/v4/objects/{type}/{id}/associations"
        batch = "/crm/v4/associations/{type}/{to_type}/batch"
        v3 = "/crm/v3/objects/{type}/{id}/associations/{to_type}/{to_id}/{type_id}"
        return [
            Route(v3, e(self.v3_associate), methods=["PUT"]),
            Route(v3, e(self.v3_unassociate), methods=["DELETE"]),
            Route(f"{pair}/default/{{to_type}}/{{to_id}}", e(self.v4_create_default), methods=["PUT"]),
            Route(f"{pair}/{{to_type}}", e(self.v4_list), methods=["GET"]),
            Route(f"{pair}/{{to_type}}/{{to_id}}", e(self.v4_create), methods=["PUT"]),
            Route(f"{pair}/{{to_type}}/{{to_id}}", e(self.v4_archive), methods=["DELETE"]),
            Route(f"{batch}/read", e(self.v4_batch_read), methods=["POST"]),
            Route(f"{batch}/create", e(self.v4_batch_create), methods=["POST"]),
            Route(f"{batch}/associate/default", e(self.v4_batch_default), methods=["POST"]),
            Route(f"{batch}/archive", e(self.v4_batch_archive), methods=["POST"]),
        ]
