"""The README's first command: a newcomer's tour of what detente works with.

For now it starts the sandbox CRMs, reads them with the real client libraries over HTTPS
and shows what they serve and which problems are planted in them. Later stages (pull,
audit, write-back) grow it into the full cycle.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
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


def _cycle(sb: Sandbox, out: Callable[[str], Any]) -> Counter[str]:
    """pull → normalize → audit into a throw-away store; findings counted per planted kind."""
    from datetime import UTC, datetime

    from detente.normalize.mapping import DEFAULT, from_rules
    from detente.normalize.run import normalize
    from detente.reconcile.facts import load_facts
    from detente.reconcile.ledger import evaluate
    from detente.reconcile.score import manifest_kind
    from detente.rules import RulesError, load_rules
    from detente.settings import Settings
    from detente.store.engine import create_schema, make_engine
    from detente.sync import sync

    settings = Settings.model_validate(sb.settings_dict())
    engine = make_engine(f"sqlite:///{sb.state_dir / 'demo-store.db'}")
    create_schema(engine)
    now = datetime.now(UTC)
    started = time.monotonic()
    results = sync(engine, settings, now=now)
    pulled = sum(o.fetched for r in results for o in r.report.objects)
    calls = sum(o.calls for r in results for o in r.report.objects)
    out(f"\nPulled {pulled} records from both CRMs in {calls} API calls ({time.monotonic() - started:.1f} s).")
    try:
        rules = load_rules(Path("config/rules.yaml"))
        maps = from_rules(rules)
    except (RulesError, OSError):
        out("  (config/rules.yaml not found or invalid here: skipping the audit)")
        return Counter()
    started = time.monotonic()
    normalize(engine, now=now, maps=maps or DEFAULT)
    # Audited as of the world's own moment, so that a clock the world left running is not
    # seen falling due while the demo runs.
    as_of = datetime.fromisoformat(sb.manifest()["generator"]["as_of"].replace("Z", "+00:00"))
    with engine.connect() as conn:
        people = conn.exec_driver_sql("SELECT count(*) FROM people").scalar()
        facts = load_facts(conn, rules, as_of)
    findings = evaluate(facts, rules, as_of)
    out(f"Linked them into {people} people and audited them against the agreement "
        f"(rules version {rules.version}) in {time.monotonic() - started:.1f} s: {len(findings)} findings.")
    for f in findings[:3]:
        out(f"  e.g. {f.kind}: {f.explanation}")
    engine.dispose()
    found: Counter[str] = Counter()
    for f in findings:
        planted = manifest_kind(f)
        if planted is not None:
            found[planted] += 1
    return found


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

        found = _cycle(sb, out)
        manifest = sb.manifest()
        problems = Counter(p["kind"] for p in manifest.get("problems", []))
        out("\nProblems planted in this world, and what detente's audit found:")
        out(f"  {'planted problem':<36} {'planted':>8} {'found':>8}")
        for kind, n in sorted(problems.items()):
            out(f"  {kind:<36} {n:>8} {found.get(kind, 0):>8}")
        for kind, n in sorted((k, n) for k, n in found.items() if k not in problems):
            out(f"  {kind + ' (not planted)':<36} {0:>8} {n:>8}")
        stats = session.get(f"{info.salesforce}/__sandbox/stats", timeout=30).json()
        hstats = session.get(f"{info.hubspot}/__sandbox/stats", timeout=30).json()
        out(f"\nAPI calls served: Salesforce {stats['total_calls']}, HubSpot {hstats['total_calls']}")
        out("Run `detente sandbox --write-config sandbox.yaml` to keep the sandbox running.")
    finally:
        sb.stop()
