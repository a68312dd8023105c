"""A client written only from the published API shapes, with nothing but ``requests``.

It stands in for any third-party tool: if it can page every object of both sandbox servers
and its counts match the servers' own statistics, the sandbox speaks the APIs as published,
not merely as detente's connectors happen to call them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

API = "v59.0"


@dataclass
class ScriptedClient:
    salesforce: str
    hubspot: str
    ca: str
    sf_token: str
    hs_token: str
    calls: int = 0

    def __post_init__(self) -> None:
        self.http = requests.Session()
        self.http.verify = self.ca
        self.http.trust_env = False

    def _get(self, url: str, token: str, **params: Any) -> Any:
        self.calls += 1
        response = self.http.get(url, params=params or None, timeout=60,
                                 headers={"Authorization": f"Bearer {token}"})
        response.raise_for_status()
        return response.json()

    # Salesforce -----------------------------------------------------------------------

    def sf_objects(self) -> list[str]:
        body = self._get(f"{self.salesforce}/services/data/{API}/sobjects/", self.sf_token)
        return [o["name"] for o in body["sobjects"] if o["queryable"]]

    def sf_fields(self, name: str) -> list[str]:
        body = self._get(f"{self.salesforce}/services/data/{API}/sobjects/{name}/describe/", self.sf_token)
        return [f["name"] for f in body["fields"]]

    def sf_page_all(self, name: str, fields: list[str]) -> list[dict[str, Any]]:
        soql = f"SELECT {', '.join(fields)} FROM {name}"
        body = self._get(f"{self.salesforce}/services/data/{API}/query/", self.sf_token, q=soql)
        records = list(body["records"])
        while not body["done"]:
            body = self._get(self.salesforce + body["nextRecordsUrl"], self.sf_token)
            records.extend(body["records"])
        assert len(records) == body["totalSize"] or body["totalSize"] >= len(records)
        return records

    def sf_query(self, soql: str) -> list[dict[str, Any]]:
        body = self._get(f"{self.salesforce}/services/data/{API}/query?q={quote(soql)}", self.sf_token)
        records = list(body["records"])
        while not body["done"]:
            body = self._get(self.salesforce + body["nextRecordsUrl"], self.sf_token)
            records.extend(body["records"])
        return records

    # HubSpot --------------------------------------------------------------------------

    def hs_page_all(self, object_type: str, properties: list[str] | None = None) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 100}
            if after:
                params["after"] = after
            if properties:
                params["properties"] = ",".join(properties)
            body = self._get(f"{self.hubspot}/crm/v3/objects/{object_type}", self.hs_token, **params)
            records.extend(body["results"])
            after = (body.get("paging") or {}).get("next", {}).get("after")
            if not after:
                return records

    def hs_owners(self, archived: bool = False) -> list[dict[str, Any]]:
        owners: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 100, "archived": str(archived).lower()}
            if after:
                params["after"] = after
            body = self._get(f"{self.hubspot}/crm/v3/owners", self.hs_token, **params)
            owners.extend(body["results"])
            after = (body.get("paging") or {}).get("next", {}).get("after")
            if not after:
                return owners
