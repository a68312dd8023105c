"""The README's first command: a newcomer's tour of what detente works with.

For now it starts the sandbox CRMs, reads them with the real client libraries over HTTPS
and shows what they serve and which problems are planted in them. Later stages (pull,
audit, write-back) grow it into the full cycle.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import requests
from hubspot import HubSpot
from simple_salesforce.api import Salesforce

from detente.sandbox.server import Sandbox


def _session(ca: str) -> requests.Session:
    session = requests.Session()
    session.verify = ca
    session.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise override verify
    return session


def run_demo(*, size: int, seed: int, out: Callable[[str], Any]) -> None:
    started = time.monotonic()
    out(f"Generating a world of {size} people (seed {seed}) and starting the sandbox CRMs ...")
    sb = Sandbox(dataset="demo", size=size, seed=seed)
    try:
        info = sb.start()
        out(f"  Salesforce REST API  {info.salesforce}")
        out(f"  HubSpot CRM v3 API   {info.hubspot}")
        out(f"  TLS CA               {info.ca}")
        out(f"  ready in {time.monotonic() - started:.1f} s\n")

        c = sb.credentials
        session = _session(str(info.ca))
        token = session.post(
            f"{info.salesforce}/services/oauth2/token",
            data={"grant_type": "password", "client_id": c.sf_client_id,
                  "client_secret": c.sf_client_secret, "username": c.sf_username,
                  "password": c.sf_password},
            timeout=30,
        ).json()
        sf = Salesforce(instance_url=token["instance_url"], session_id=token["access_token"],
                        session=session, version="59.0")
        out("Salesforce, read with simple-salesforce:")
        for obj in ("User", "Lead", "Contact", "Account", "Opportunity", "Task", "Event", "Campaign"):
            total = sf.query(f"SELECT COUNT() FROM {obj}")["totalSize"]
            out(f"  {obj:<14} {total:>8}")
        statuses = Counter(
            r["Status"] for r in sf.query_all_iter("SELECT Status FROM Lead")
        )
        out("  Lead.Status    " + ", ".join(f"{k}: {v}" for k, v in statuses.most_common()))

        hs = HubSpot(access_token=c.hs_token, host=info.hubspot, ssl_ca_cert=str(info.ca))
        out("\nHubSpot, read with hubspot-api-client:")
        stages: Counter[str] = Counter()
        after = None
        while True:
            page = hs.crm.contacts.basic_api.get_page(
                limit=100, after=after, properties=["lifecyclestage"], _request_timeout=30
            )
            stages.update(r.properties.get("lifecyclestage") or "(none)" for r in page.results)
            if page.paging is None or page.paging.next is None:
                break
            after = page.paging.next.after
        out(f"  contacts       {sum(stages.values()):>8}")
        out("  lifecyclestage " + ", ".join(f"{k}: {v}" for k, v in stages.most_common()))
        owners = hs.crm.owners.owners_api.get_page(limit=100, _request_timeout=30)
        out(f"  owners         {len(owners.results):>8}")

        manifest = sb.manifest()
        problems = Counter(p["kind"] for p in manifest.get("problems", []))
        out("\nProblems planted in this world (what detente will find):")
        for kind, n in sorted(problems.items()):
            out(f"  {kind:<44} {n:>6}")
        stats = session.get(f"{info.salesforce}/__sandbox/stats", timeout=30).json()
        hstats = session.get(f"{info.hubspot}/__sandbox/stats", timeout=30).json()
        out(f"\nAPI calls served: Salesforce {stats['total_calls']}, HubSpot {hstats['total_calls']}")
        out("Run `detente sandbox --write-config sandbox.yaml` to keep the sandbox running.")
    finally:
        sb.stop()
