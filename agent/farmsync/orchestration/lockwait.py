"""``--wait SECONDS``: wait for a farm lock another run holds instead of giving up at once.

flock has no timed wait, so the lock is tried again every fraction of a second until the
deadline; the holder is named once, when the wait starts, then the original refusal (exit 3)
is raised if the time runs out.
"""

from __future__ import annotations

import time

from farmsync.errors import LockHeldError
from farmsync.orchestration.events import Event, Phase, Reporter, Status
from farmsync.orchestration.lock import FarmLock

POLL_SECONDS = 0.1


def acquire_waiting(lock: FarmLock, wait: float, reporter: Reporter) -> None:
    deadline = time.monotonic() + wait
    said = False
    while True:
        try:
            lock.acquire()
            return
        except LockHeldError as held:
            if time.monotonic() >= deadline:
                raise
            if not said:
                reporter.event(
                    Event(Phase.LOCK, Status.INFO, None, f"waiting up to {wait:g}s: {held}")
                )
                said = True
        time.sleep(POLL_SECONDS)
