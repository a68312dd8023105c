"""The retry policy both connectors share on top of urllib3's ``Retry``."""

from __future__ import annotations

from urllib3.util.retry import Retry


class BackoffRetry(Retry):
    """Backs off from the first retry: urllib3 on its own waits nothing before the second
    attempt, so a 429 without Retry-After would be retried at once and likely fail again."""

    def get_backoff_time(self) -> float:
        failures = len([h for h in self.history if h.redirect_location is None])
        if failures < 1:
            return 0.0
        return float(max(0.0, min(self.backoff_max, self.backoff_factor * (2 ** (failures - 1)))))
