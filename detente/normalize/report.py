"""What one normalize run did, for the CLI, the run log and the benchmark."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Report:
    """Counts per thing done: ``read.<system>.<object>``, ``quarantined``, ``people.written``..."""

    counts: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, n: int = 1) -> None:
        if n:
            self.counts[name] += n

    def as_dict(self) -> dict[str, Any]:
        return {"counts": dict(sorted(self.counts.items())),
                "seconds": {k: round(s, 3) for k, s in self.seconds.items()}}
