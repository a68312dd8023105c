"""Which CRM field feeds which unified person field.

The built-ins below are what the normalizer reads when the rules say nothing else; the
rules file (``fields:``) may point a built-in at another CRM field and add fields of its own,
which land in ``people.attributes`` (see ``detente.rules.fields.encode_attribute``).

A Salesforce field is named ``Lead.Field`` or ``Contact.Field`` (or just ``Field``, read on
both); the value comes from the person's contact when it has one (a lead stops changing at
conversion), else from the lead. Where the two CRMs disagree, marketing's fields (score,
channel, offer) take HubSpot's value first and everything else takes Salesforce's first;
either system fills in when the other has nothing.

Mappings are applied as records are read; the normalizer keeps their fingerprint
(``normalize_state``) and reads every person again when it changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

TYPES = ("text", "number", "boolean", "datetime")


@dataclass(frozen=True)
class FieldMapping:
    """One unified field and the CRM fields it is read from."""

    name: str
    type: str = "text"
    salesforce: str | None = None
    hubspot: str | None = None
    builtin: bool = False
    # per CRM: a value as it keeps it (casefolded) -> the unified value (``fields.<name>.values``)
    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"field {self.name}: type {self.type!r} is not one of {', '.join(TYPES)}")

    @property
    def hubspot_first(self) -> bool:
        return self.name in HUBSPOT_FIRST

    def translate(self, system: str, value: Any) -> Any:
        """``value`` read from ``system``, in the unified spelling when the rules give one."""
        table = self.values.get(system)
        if not table or not isinstance(value, str):
            return value
        return table.get(value.strip().casefold(), value)

    def salesforce_field(self, object_name: str) -> str | None:
        """The field to read on a Lead or a Contact, or None when this mapping has none there."""
        if not self.salesforce:
            return None
        named, _, field_name = self.salesforce.rpartition(".")
        if named and named not in ("Lead", "Contact"):
            return None
        if not named or named == object_name:
            return field_name
        twin = CONTACT_TWINS if object_name == "Contact" else LEAD_TWINS
        return twin.get(field_name, field_name) if field_name in twin or field_name.endswith("__c") else None


# Lead fields and what the same fact is called on a contact (and back).
CONTACT_TWINS: Mapping[str, str] = {"Country": "MailingCountry", "LeadSource": "LeadSource", "Title": "Title",
                                    "Email": "Email", "FirstName": "FirstName", "LastName": "LastName"}
LEAD_TWINS: Mapping[str, str] = {v: k for k, v in CONTACT_TWINS.items()}
HUBSPOT_FIRST = frozenset({"score", "channel", "offer"})

BUILTINS: tuple[FieldMapping, ...] = (
    FieldMapping("company", "text", "Lead.Company", "company", True),
    FieldMapping("title", "text", "Lead.Title", "jobtitle", True),
    FieldMapping("country", "text", "Lead.Country", "country", True),
    FieldMapping("source", "text", "Lead.LeadSource", "hs_analytics_source", True),
    FieldMapping("channel", "text", "Lead.Channel__c", "channel", True),
    FieldMapping("offer", "text", "Lead.Offer__c", "offer", True),
    FieldMapping("score", "number", "Lead.Lead_Score__c", "hubspotscore", True),
    FieldMapping("disqualified_reason", "text", "Lead.Disqualified_Reason__c", "disqualification_reason", True),
)
BUILTIN_NAMES = frozenset(m.name for m in BUILTINS)


@dataclass(frozen=True)
class Mappings:
    """The built-ins (as the rules may have re-pointed them) and the admin's own fields."""

    builtins: Mapping[str, FieldMapping]
    custom: tuple[FieldMapping, ...] = ()

    def all(self) -> list[FieldMapping]:
        return [*self.builtins.values(), *self.custom]

    def fingerprint(self) -> str:
        """A digest of what is read from where and how values are translated: equal when
        normalizing with either gives the same people."""
        described = [[m.name, m.type, m.salesforce, m.hubspot, m.builtin,
                      {system: dict(sorted(table.items())) for system, table in sorted(m.values.items())}]
                     for m in sorted(self.all(), key=lambda m: m.name)]
        return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


DEFAULT = Mappings({m.name: m for m in BUILTINS})


def mappings(fields: Iterable[FieldMapping]) -> Mappings:
    """The defaults, overridden and extended by ``fields``."""
    builtins = dict(DEFAULT.builtins)
    custom: list[FieldMapping] = []
    for f in fields:
        if f.name in BUILTIN_NAMES:
            base = builtins[f.name]
            builtins[f.name] = FieldMapping(f.name, base.type, f.salesforce or base.salesforce,
                                            f.hubspot or base.hubspot, True, f.values or base.values)
        elif f.salesforce or f.hubspot:
            custom.append(FieldMapping(f.name, f.type, f.salesforce, f.hubspot, False, f.values))
    return Mappings(builtins, tuple(custom))


def from_rules(rules: Any) -> Mappings:
    """The mappings a validated rules set declares (``detente.rules.Rules``): every catalog
    field with a CRM field that is a built-in here or kept in ``people.attributes``."""
    from detente.rules.fields import Attribute

    found: list[FieldMapping] = []
    for f in rules.catalog.fields.values():
        systems = dict(f.systems)
        if not systems:
            continue
        if f.name in BUILTIN_NAMES or isinstance(f.source, Attribute):
            found.append(FieldMapping(f.name, str(f.type.value), systems.get("salesforce"), systems.get("hubspot"),
                                      values=f.values))
    return mappings(found)
