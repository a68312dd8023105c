"""HubSpot properties: the catalog of each object (the schema's properties plus custom ones
created through the properties API), their JSON as ``/crm/v3/properties`` serves it, and the
checks HubSpot applies to written values. Everything here is pure; the app passes the
custom definitions and the owner ids in.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from detente.agreement import HUBSPOT_LIFECYCLE_ORDER
from detente.sandbox.hs_errors import conflict, property_error, property_errors, validation
from detente.sandbox.schema import HS_DEAL_STAGES, HS_TYPES, HsObject, HsProperty
from detente.sandbox.store import hs_datetime, parse_datetime

# Definitions that ship with the portal carry one fixed creation time.
CATALOG_STAMP = "2019-08-06T02:41:52.000Z"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
FIELD_TYPES = frozenset(
    {
        "text",
        "textarea",
        "number",
        "date",
        "select",
        "radio",
        "checkbox",
        "booleancheckbox",
        "phonenumber",
        "html",
        "file",
        "calculation_equation",
    }
)
# Properties whose options live outside the definition (owners, pipelines).
EXTERNAL_OPTIONS = frozenset({"hubspot_owner_id"})
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_OPTION_LABELS = {
    "marketingqualifiedlead": "Marketing Qualified Lead",
    "salesqualifiedlead": "Sales Qualified Lead",
    "decisionmakerboughtin": "Decision Maker Bought-In",
    "appointmentscheduled": "Appointment Scheduled",
    "qualifiedtobuy": "Qualified To Buy",
    "presentationscheduled": "Presentation Scheduled",
    "contractsent": "Contract Sent",
    "closedwon": "Closed Won",
    "closedlost": "Closed Lost",
    "true": "True",
    "false": "False",
}


def option_label(value: str) -> str:
    return _OPTION_LABELS.get(value) or value.replace("_", " ").capitalize()


# -- catalog ---------------------------------------------------------------------------


def custom_property(definition: Mapping[str, Any]) -> HsProperty:
    """A custom property definition (as stored by the properties API) as a catalog entry."""
    options = tuple(str(o["value"]) if isinstance(o, Mapping) else str(o) for o in definition.get("options") or ())
    return HsProperty(
        name=str(definition["name"]),
        type=str(definition.get("type") or "string"),
        label=str(definition.get("label") or definition["name"]),
        field_type=str(definition.get("fieldType") or "text"),
        options=options,
        group=str(definition.get("groupName") or "contactinformation"),
        unique=bool(definition.get("hasUniqueValue")),
        hubspot_defined=False,
    )


def catalog(obj: HsObject, custom: Iterable[Mapping[str, Any]] = ()) -> dict[str, HsProperty]:
    """Every property of ``obj``: the schema's, then custom ones (which cannot shadow them)."""
    props = {p.name: p for p in obj.properties}
    for definition in custom:
        if definition.get("name") and not definition.get("archived"):
            props.setdefault(str(definition["name"]), custom_property(definition))
    return props


def property_json(prop: HsProperty) -> dict[str, Any]:
    """A schema property as ``GET /crm/v3/properties/{object}`` returns it."""
    options = prop.options or (("true", "false") if prop.type == "bool" else ())
    body: dict[str, Any] = {
        "name": prop.name,
        "label": prop.label,
        "type": prop.type,
        "fieldType": prop.field_type,
        "description": "",
        "groupName": prop.group,
        "options": [
            {"label": option_label(v), "value": v, "displayOrder": i, "hidden": False} for i, v in enumerate(options)
        ],
        "displayOrder": -1,
        "calculated": prop.calculated,
        "externalOptions": prop.name in EXTERNAL_OPTIONS,
        "hasUniqueValue": prop.unique,
        "hidden": False,
        "hubspotDefined": prop.hubspot_defined,
        "modificationMetadata": {
            "archivable": not prop.hubspot_defined,
            "readOnlyDefinition": prop.hubspot_defined,
            "readOnlyValue": prop.read_only or prop.calculated,
        },
        "formField": not (prop.read_only or prop.calculated),
        "createdAt": CATALOG_STAMP,
        "updatedAt": CATALOG_STAMP,
        "archived": False,
    }
    if prop.name == "hubspot_owner_id":
        body["referencedObjectType"] = "OWNER"
    return body


def new_custom_property(body: Any, existing: Mapping[str, HsProperty], now: datetime) -> dict[str, Any]:
    """Validate a ``POST /crm/v3/properties/{object}`` body; return the stored definition."""
    if not isinstance(body, dict):
        raise validation("The request body must be a JSON object describing the property.")
    problems = [
        f"{key} is required"
        for key in ("name", "label", "type", "fieldType", "groupName")
        if not isinstance(body.get(key), str) or not body[key]
    ]
    name = body.get("name")
    if isinstance(name, str) and name and not NAME_PATTERN.match(name):
        problems.append(
            f"name {name!r} must start with a lowercase letter and hold only lowercase letters, digits and underscores"
        )
    if isinstance(body.get("type"), str) and body["type"] not in HS_TYPES:
        problems.append(f"type must be one of {sorted(HS_TYPES)}")
    if isinstance(body.get("fieldType"), str) and body["fieldType"] not in FIELD_TYPES:
        problems.append(f"fieldType must be one of {sorted(FIELD_TYPES)}")
    options = body.get("options") or []
    if not isinstance(options, list) or not all(
        isinstance(o, dict) and isinstance(o.get("value"), str) and isinstance(o.get("label"), str) for o in options
    ):
        problems.append('options must be a list of {"label": ..., "value": ...}')
        options = []
    if body.get("type") == "enumeration" and not options:
        problems.append("an enumeration property needs options")
    if problems:
        raise validation("Invalid property definition: " + "; ".join(problems))
    assert isinstance(name, str)
    if name in existing:
        raise conflict(f"A property named '{name}' already exists.")
    stamp = hs_datetime(now)
    return {
        "name": name,
        "label": body["label"],
        "type": body["type"],
        "fieldType": body["fieldType"],
        "description": str(body.get("description") or ""),
        "groupName": body["groupName"],
        "options": [
            {
                "label": o["label"],
                "value": o["value"],
                "description": str(o.get("description") or ""),
                "displayOrder": int(o.get("displayOrder", i)),
                "hidden": bool(o.get("hidden", False)),
            }
            for i, o in enumerate(options)
        ],
        "displayOrder": int(body.get("displayOrder", -1)),
        "calculated": False,
        "externalOptions": False,
        "hasUniqueValue": bool(body.get("hasUniqueValue", False)),
        "hidden": bool(body.get("hidden", False)),
        "hubspotDefined": False,
        "modificationMetadata": {"archivable": True, "readOnlyDefinition": False, "readOnlyValue": False},
        "formField": bool(body.get("formField", True)),
        "createdAt": stamp,
        "updatedAt": stamp,
        "archived": False,
    }


# -- written values --------------------------------------------------------------------


def wire_value(raw: Any) -> str:
    """A JSON value as HubSpot stores it: a string; null clears the property."""
    if raw is None:
        return ""
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    return str(raw)


def parse_instant(text: str) -> datetime | None:
    """Epoch milliseconds or ISO-8601 (as HubSpot accepts both); None if neither."""
    text = text.strip()
    if re.fullmatch(r"-?\d+", text):
        try:
            return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(text))
        except OverflowError:
            return None
    try:
        return parse_datetime(text)
    except ValueError:
        return None


def _check_value(prop: HsProperty, value: str, owner_ids: frozenset[str]) -> tuple[str, dict[str, Any] | None]:
    """(normalised value, None) or (value, property error)."""
    name = prop.name
    if value == "":
        return value, None
    if prop.type == "number":
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if value != value.strip() or not math.isfinite(number):
            return value, property_error(name, "INVALID_FLOAT", f"{value} was not a valid number.")
        return value, None
    if prop.type in {"datetime", "date"}:
        instant = parse_instant(value)
        if instant is None:
            return value, property_error(
                name, "INVALID_DATE", f"{value} is not a valid datetime; send epoch milliseconds or ISO-8601."
            )
        if prop.type == "date":
            if instant.time() != datetime.min.time():
                return value, property_error(
                    name, "INVALID_DATE", f"{value} is not midnight UTC; a date property holds a day."
                )
            return instant.date().isoformat(), None
        return hs_datetime(instant), None
    if prop.type == "bool":
        if value.lower() not in {"true", "false"}:
            return value, property_error(name, "INVALID_BOOLEAN", f"{value} is not a valid boolean.")
        return value.lower(), None
    if prop.type == "enumeration":
        if name == "hubspot_owner_id":
            if value not in owner_ids:
                return value, property_error(name, "INVALID_OWNER_ID", f"{value} is not a valid owner id.")
            return value, None
        if prop.options:
            chosen = value.split(";") if prop.field_type == "checkbox" else [value]
            bad = [v for v in chosen if v not in prop.options]
            if bad:
                if name == "dealstage":
                    message = (
                        f"{value} is not a valid pipeline stage ID. Valid options are:"
                        f" pipelineId=default : [{', '.join(HS_DEAL_STAGES)}]"
                    )
                else:
                    message = f"{bad[0]} was not one of the allowed options: [{', '.join(prop.options)}]"
                return value, property_error(name, "INVALID_OPTION", message)
        return value, None
    if name == "email":
        value = value.strip().lower()
        if not _EMAIL.match(value):
            return value, property_error(name, "INVALID_EMAIL", f"Email address {value} is invalid")
    return value, None


def check_values(
    props: Mapping[str, HsProperty],
    values: Any,
    *,
    current: Mapping[str, Any] | None,
    owner_ids: frozenset[str],
) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Normalise written property values; every problem is reported, not just the first.

    ``current`` is the record's properties on update (None on create).
    """
    if not isinstance(values, dict):
        return {}, [
            property_error("properties", "INVALID_PROPERTIES", "properties must be a JSON object of name: value")
        ]
    clean: dict[str, str] = {}
    errors: list[dict[str, Any]] = []
    for name, raw in values.items():
        prop = props.get(name)
        if prop is None:
            errors.append(property_error(name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist'))
            continue
        if prop.read_only or prop.calculated:
            errors.append(
                property_error(name, "READ_ONLY_VALUE", f'"{name}" is a read only property; its value cannot be set.')
            )
            continue
        value, error = _check_value(prop, wire_value(raw), owner_ids)
        if error is None and name == "lifecyclestage":
            error = _lifecycle_move(current, value)
        if error is not None:
            errors.append(error)
        else:
            clean[name] = value
    return clean, errors


def _lifecycle_move(current: Mapping[str, Any] | None, value: str) -> dict[str, Any] | None:
    """lifecyclestage only moves forward; clearing it to "" first allows any value."""
    before = (current or {}).get("lifecyclestage") or ""
    order = HUBSPOT_LIFECYCLE_ORDER
    if before in order and value in order and order.index(value) < order.index(before):
        return property_error(
            "lifecyclestage",
            "INVALID_OPTION",
            f'lifecyclestage cannot move backward from {before} to {value}; set it to "" first, then to {value}.',
        )
    return None


def required_on_create(obj: HsObject, values: Mapping[str, str]) -> list[dict[str, Any]]:
    """The properties HubSpot insists on when a record is created."""
    if obj.name == "contacts" and not any(values.get(k) for k in ("email", "firstname", "lastname")):
        return [
            property_error("email", "REQUIRED_FIELD", "A contact needs at least one of email, firstname or lastname.")
        ]
    if obj.prop("hs_timestamp") is not None and not values.get("hs_timestamp"):
        return [property_error("hs_timestamp", "REQUIRED_FIELD", "hs_timestamp is required.")]
    return []


def raise_if(errors: list[dict[str, Any]]) -> None:
    if errors:
        raise property_errors(errors)
