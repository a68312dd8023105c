"""Named points where the crash tests kill the process (SIGKILL), as a crash would.

``DETENTE_FAILPOINT=after_send detente apply --yes`` dies right after the CRM accepted the
writes and before detente recorded them; the tests then run apply again and check that every
write landed once and no task exists twice. Unset (always, outside the tests), nothing happens.
"""

from __future__ import annotations

import os
import signal

ENV = "DETENTE_FAILPOINT"
POINTS = ("before_send", "between_batches", "after_send", "mid_record")


def failpoint(name: str) -> None:
    """Die here when ``DETENTE_FAILPOINT`` names this point."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
