"""What the normalizer looks things up in during a run, read once at its start."""

from __future__ import annotations

from dataclasses import dataclass, field

from detente.normalize.mapping import DEFAULT, Mappings


@dataclass(frozen=True)
class Stage:
    """A HubSpot deal pipeline stage."""

    label: str
    closed: bool
    won: bool


@dataclass
class Lookups:
    """Owners and campaigns by CRM id, campaigns by name, deal stages, field mappings."""

    salesforce_owners: dict[str, int] = field(default_factory=dict)
    hubspot_owners: dict[str, int] = field(default_factory=dict)
    campaigns_by_sf: dict[str, int] = field(default_factory=dict)
    campaigns_by_name: dict[str, int] = field(default_factory=dict)
    maps: Mappings = DEFAULT
    stages: dict[str, Stage] = field(default_factory=dict)
