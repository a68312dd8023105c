"""The agreement's ``values``: HubSpot's original source read in Salesforce's lead sources, so
a person known to HubSpot only is sliced with everyone else of the same source."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from detente.normalize.mapping import DEFAULT, from_rules
from detente.normalize.run import normalize
from detente.rules import load_rules
from detente.sandbox.server import Sandbox
from detente.store.engine import create_schema, make_engine
from detente.store.tables import Person
from tests.normalize.conftest import NOW
from tests.normalize.support import load_raw

SHIPPED = Path(__file__).parents[2] / "config" / "rules.yaml"
PEOPLE = Person.__table__  # type: ignore[attr-defined]
# What config/rules.yaml says each HubSpot original source is, written out again here.
HUBSPOT_SOURCE = {"ORGANIC_SEARCH": "Organic Search", "PAID_SEARCH": "Paid Search", "SOCIAL_MEDIA": "Social",
                  "PAID_SOCIAL": "Social", "DIRECT_TRAFFIC": "Web", "EMAIL_MARKETING": "Webinar",
                  "OFFLINE": "Trade Show", "OTHER_CAMPAIGNS": "Content Syndication", "REFERRALS": "Referral"}


def test_people_known_to_hubspot_only_carry_the_agreed_source(tmp_path: Path, pulled: list[dict[str, Any]],
                                                              sandbox: Sandbox) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    create_schema(engine)
    load_raw(engine, pulled)
    normalize(engine, now=NOW, maps=from_rules(load_rules(SHIPPED)))
    with engine.connect() as conn:
        rows = conn.execute(select(PEOPLE.c.hubspot_contact_id, PEOPLE.c.salesforce_lead_id,
                                   PEOPLE.c.salesforce_contact_id, PEOPLE.c.source)
                            .where(PEOPLE.c.deleted.is_(False))).all()
    engine.dispose()
    db = sqlite3.connect(f"file:{sandbox.state_dir / 'world.sqlite3'}?mode=ro", uri=True)
    raw = {str(i): json.loads(props).get("hs_analytics_source") for i, props in
           db.execute("SELECT id, props FROM hs_contacts WHERE archived = 0")}
    db.close()
    hubspot_only = [r for r in rows if r.hubspot_contact_id and not (r.salesforce_lead_id or r.salesforce_contact_id)]
    with_source = [r for r in hubspot_only if raw.get(r.hubspot_contact_id)]
    assert with_source, "the demo world has people in HubSpot only, with an original source"
    for r in with_source:
        assert r.source == HUBSPOT_SOURCE.get(raw[r.hubspot_contact_id], raw[r.hubspot_contact_id])
    assert not {r.source for r in rows} & set(HUBSPOT_SOURCE), "no person keeps HubSpot's own spelling"


def test_the_shipped_agreement_lists_these_values() -> None:
    rules = load_rules(SHIPPED)
    assert dict(rules.catalog.fields["source"].values["hubspot"]) == {k.casefold(): v for k, v in
                                                                     HUBSPOT_SOURCE.items()}
    with pytest.raises(KeyError):
        rules.catalog.fields["source"].values["salesforce"]


def test_a_change_of_mappings_reads_everyone_again(tmp_path: Path, pulled: list[dict[str, Any]]) -> None:
    """The daemon normalizes with the rules' mappings after every pull: when an admin changes
    them, the next normalize reads every person again, without being told ``--full``."""
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    create_schema(engine)
    load_raw(engine, pulled)
    normalize(engine, now=NOW, maps=DEFAULT)

    def sources() -> set[str]:
        with engine.connect() as conn:
            return {s for (s,) in conn.execute(select(PEOPLE.c.source).where(PEOPLE.c.deleted.is_(False)))}

    assert sources() & set(HUBSPOT_SOURCE), "without the agreement's values, HubSpot's own spellings"
    same = normalize(engine, now=NOW, maps=DEFAULT)
    assert not same.counts.get("read.hubspot.contacts")  # the same mappings: nothing to read
    agreed = normalize(engine, now=NOW, maps=from_rules(load_rules(SHIPPED)))
    assert agreed.counts.get("read.hubspot.contacts", 0) > 0
    assert not sources() & set(HUBSPOT_SOURCE)
    again = normalize(engine, now=NOW, maps=from_rules(load_rules(SHIPPED)))
    assert not again.counts.get("read.hubspot.contacts")
    engine.dispose()
