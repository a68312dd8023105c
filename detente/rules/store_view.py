"""The part of the unified store that rules read, as lightweight SQLAlchemy table clauses.

Rules never import the store's ORM tables; they name the columns they read here, with the
store's own column types (a test checks these against ``detente.store.tables``). Custom
mapped fields live in ``people.attributes`` (JSON), which the normalizer fills per
``detente.rules.fields.encode_attribute``.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Float, Integer, String, column, table
from sqlalchemy.sql.expression import TableClause

from detente.store.types import JSONDoc, UTCDateTime


def _people() -> TableClause:
    text = ("email", "email_domain", "first_name", "last_name", "company", "title", "country", "source",
            "channel", "offer", "salesforce_lead_id", "salesforce_contact_id", "hubspot_contact_id",
            "salesforce_status", "hubspot_lifecyclestage", "hubspot_lead_status", "disqualified_reason",
            "identity_conflict")
    times = ("first_activity_at", "last_activity_at", "created_at", "modified_at")
    return table(
        "people",
        column("id", Integer),
        *(column(name, String) for name in text),
        column("campaign_id", Integer),
        column("score", Float),
        column("salesforce_converted", Boolean),
        column("salesforce_owner_id", Integer),
        column("hubspot_owner_id", Integer),
        column("activity_count", Integer),
        *(column(name, UTCDateTime) for name in times),
        column("deleted", Boolean),
        column("attributes", JSONDoc),
    )


people = _people()
owners = table(
    "owners",
    column("id", Integer), column("email", String), column("name", String), column("team", String),
    column("salesforce_user_id", String), column("hubspot_owner_id", String), column("active", Boolean),
)
campaigns = table("campaigns", column("id", Integer), column("name", String))
opportunities = table(
    "opportunities",
    column("id", Integer), column("person_id", Integer), column("stage", String), column("amount", Float),
    column("is_closed", Boolean), column("is_won", Boolean), column("loss_reason", String),
    column("created_at", UTCDateTime), column("deleted", Boolean),
)
transitions = table(
    "transitions",
    column("id", Integer), column("person_id", Integer), column("system", String), column("field", String),
    column("to_value", String), column("at", UTCDateTime),
)
activities = table(
    "activities",
    column("id", Integer), column("person_id", Integer), column("owner_id", Integer),
    column("occurred_at", UTCDateTime), column("deleted", Boolean), column("copy_of", Integer),
)
MASK_TYPE = BigInteger
