"""The HubSpot portal's settings in the simulator: the properties API (schema properties plus
custom ones), owners (archived only on request) and the deal pipeline.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from detente.sandbox.hs_errors import conflict, not_found, validation
from detente.sandbox.hs_http import ApiBase, bool_param, int_param, object_type, read_json, record_id
from detente.sandbox.hs_props import CATALOG_STAMP, new_custom_property, option_label, property_json
from detente.sandbox.hs_records import Row
from detente.sandbox.schema import HS_DEAL_STAGES, HsObject
from detente.sandbox.store import hs_datetime, parse_datetime

MAX_OWNER_PAGE = 500
STAGE_PROBABILITY = {
    "appointmentscheduled": "0.2",
    "qualifiedtobuy": "0.4",
    "presentationscheduled": "0.6",
    "decisionmakerboughtin": "0.8",
    "contractsent": "0.9",
    "closedwon": "1.0",
    "closedlost": "0.0",
}


def _stamp(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return hs_datetime(parse_datetime(str(value).replace(" ", "T")))
    except ValueError:
        return str(value)


class PortalApi(ApiBase):
    """Properties, owners and pipelines."""

    def property_bodies(self, obj: HsObject) -> dict[str, dict[str, Any]]:
        bodies = {p.name: property_json(p) for p in obj.properties}
        for definition in self.world.hs_custom_properties(obj.name):
            bodies.setdefault(str(definition.get("name")), definition)
        return bodies

    async def list_properties(self, request: Request) -> Response:
        obj = object_type(request.path_params["type"])
        archived = bool_param(request, "archived")
        bodies = [b for b in self.property_bodies(obj).values() if bool(b.get("archived")) == archived]
        return JSONResponse({"results": bodies})

    async def get_property(self, request: Request) -> Response:
        obj = object_type(request.path_params["type"])
        name = request.path_params["name"]
        body = self.property_bodies(obj).get(name)
        if body is None:
            raise not_found(f"Property {name} does not exist on {obj.name}.")
        return JSONResponse(body)

    async def create_property(self, request: Request) -> Response:
        obj = object_type(request.path_params["type"])
        definition = new_custom_property(await read_json(request), self.props(obj), self.now())
        if not self.world.hs_create_custom_property(obj.name, definition):
            raise conflict(f"A property named '{definition['name']}' already exists.")
        return JSONResponse(definition, 201)

    @staticmethod
    def owner_json(r: Row) -> dict[str, Any]:
        teams_raw = json.loads(r["teams"] or "[]")
        teams = []
        for i, t in enumerate(teams_raw if isinstance(teams_raw, list) else []):
            if isinstance(t, dict):
                teams.append(
                    {
                        "id": str(t.get("id", i + 1)),
                        "name": str(t.get("name", "")),
                        "primary": bool(t.get("primary", i == 0)),
                    }
                )
            else:
                teams.append({"id": str(i + 1), "name": str(t), "primary": i == 0})
        archived = bool(r["archived"])
        return {
            "id": str(r["id"]),
            "email": r["email"],
            "firstName": r["first_name"],
            "lastName": r["last_name"],
            # A deactivated user keeps only userIdIncludingInactive.
            "userId": None if archived else r["user_id"],
            "userIdIncludingInactive": r["user_id"],
            "type": "PERSON",
            "teams": teams,
            "archived": archived,
            "createdAt": _stamp(r["created_at"]),
            "updatedAt": _stamp(r["updated_at"]),
        }

    async def list_owners(self, request: Request) -> Response:
        limit = int_param(request, "limit", 100, MAX_OWNER_PAGE)
        after = int_param(request, "after", 0)
        archived = bool_param(request, "archived")
        email = request.query_params.get("email")
        sql = "SELECT * FROM hs_owners WHERE archived = ? AND id >= ?"
        params: list[Any] = [int(archived), after]
        if email:
            sql += " AND lower(email) = lower(?)"
            params.append(email)
        rows = self.world.query(sql + " ORDER BY id LIMIT ?", (*params, limit + 1))
        body: dict[str, Any] = {"results": [self.owner_json(r) for r in rows[:limit]]}
        if len(rows) > limit:
            next_after = str(rows[limit]["id"])
            body["paging"] = {
                "next": {"after": next_after, "link": str(request.url.include_query_params(after=next_after))}
            }
        return JSONResponse(body)

    async def get_owner(self, request: Request) -> Response:
        id_property = request.query_params.get("idProperty") or "id"
        if id_property not in {"id", "userId"}:
            raise validation("idProperty must be id or userId.")
        archived = bool_param(request, "archived")
        key = record_id(request.path_params["id"])
        column = "id" if id_property == "id" else "user_id"
        rows = (
            self.world.query(f"SELECT * FROM hs_owners WHERE {column} = ? AND archived = ?", (key, int(archived)))
            if key is not None
            else []
        )
        if not rows:
            raise not_found(f"Owner {request.path_params['id']} was not found.")
        return JSONResponse(self.owner_json(rows[0]))

    @staticmethod
    def pipeline_json() -> dict[str, Any]:
        stamp = CATALOG_STAMP
        stages = [
            {
                "id": s,
                "label": option_label(s),
                "displayOrder": i,
                "metadata": {
                    "probability": STAGE_PROBABILITY.get(s, "0.5"),
                    "isClosed": "true" if s in {"closedwon", "closedlost"} else "false",
                },
                "archived": False,
                "createdAt": stamp,
                "updatedAt": stamp,
                "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
            }
            for i, s in enumerate(HS_DEAL_STAGES)
        ]
        return {
            "id": "default",
            "label": "Sales Pipeline",
            "displayOrder": 0,
            "stages": stages,
            "archived": False,
            "createdAt": stamp,
            "updatedAt": stamp,
        }

    def pipeline(self, request: Request) -> dict[str, Any]:
        obj = object_type(request.path_params["type"])
        if obj.name != "deals":
            raise validation(f"Pipelines are not supported on {obj.name} in the sandbox (deals only).")
        wanted = request.path_params.get("pipeline")
        if wanted is not None and wanted != "default":
            raise not_found(f"Unable to find pipeline {wanted} for object type {obj.name}.")
        return self.pipeline_json()

    async def list_pipelines(self, request: Request) -> Response:
        return JSONResponse({"results": [self.pipeline(request)]})

    async def get_pipeline(self, request: Request) -> Response:
        return JSONResponse(self.pipeline(request))

    async def list_stages(self, request: Request) -> Response:
        return JSONResponse({"results": self.pipeline(request)["stages"]})

    def routes(self) -> list[Route]:
        e = self.endpoint
        return [
            Route("/crm/v3/properties/{type}", e(self.list_properties), methods=["GET"]),
            Route("/crm/v3/properties/{type}", e(self.create_property), methods=["POST"]),
            Route("/crm/v3/properties/{type}/{name}", e(self.get_property), methods=["GET"]),
            # hubspot-api-client calls the owners list with a trailing slash.
            Route("/crm/v3/owners", e(self.list_owners), methods=["GET"]),
            Route("/crm/v3/owners/", e(self.list_owners), methods=["GET"]),
            Route("/crm/v3/owners/{id}", e(self.get_owner), methods=["GET"]),
            Route("/crm/v3/pipelines/{type}", e(self.list_pipelines), methods=["GET"]),
            Route("/crm/v3/pipelines/{type}/{pipeline}", e(self.get_pipeline), methods=["GET"]),
            Route("/crm/v3/pipelines/{type}/{pipeline}/stages", e(self.list_stages), methods=["GET"]),
        ]
