"""World generator (placeholder)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from detente.sandbox.store import World


def generate_world(world: World, *, dataset: str, size: int, seed: int, as_of: datetime) -> dict[str, Any]:
    return {"dataset": dataset, "size": size, "seed": seed, "as_of": as_of.isoformat(), "problems": [], "people": []}
