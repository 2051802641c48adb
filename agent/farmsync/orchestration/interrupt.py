"""Ctrl-C and SIGTERM as a decision, not an exception thrown into the middle of a commit.

The command line calls :func:`install`; from then on SIGINT and SIGTERM only set a flag. The
rollout looks at it between phases and decides:

- before the release (read, plan, stage, arm): withdraw every armed commit and remove the
  staging files; the farm is as it was;
- during or after the release: let the barrier finish (every released node acknowledges or
  times out), then roll every changed node back to its old key; when that cannot be done the
  run stays open for ``farmsync recover``, which the result says.

A second signal while the first is being handled raises KeyboardInterrupt at once (the
operator insists); the journal still lets ``recover`` settle whatever that leaves.
Library users who never call :func:`install` get no change in behaviour.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

INTERRUPTED_EXIT = 130  # the shell's 128 + SIGINT, for SIGTERM too


class _Flag:
    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name: str | None = None

    def set(self, name: str) -> None:
        self.signal_name = name
        self._event.set()

    def clear(self) -> None:
        self.signal_name = None
        self._event.clear()

    def __bool__(self) -> bool:
        return self._event.is_set()


REQUESTED = _Flag()


def requested() -> bool:
    """True once SIGINT or SIGTERM arrived (after :func:`install`)."""
    return bool(REQUESTED)


_enabled = False


def _raise(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _defer(signum: int, _frame: FrameType | None) -> None:
    if REQUESTED:
        raise KeyboardInterrupt  # a second signal: the operator insists
    REQUESTED.set(signal.Signals(signum).name)


def install() -> None:
    """For the command line: SIGTERM is handled like Ctrl-C, and :func:`deferred` sections
    turn both into a request the running command honours at a safe point."""
    global _enabled
    _enabled = True
    REQUESTED.clear()
    signal.signal(signal.SIGTERM, _raise)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """While a rollout runs, SIGINT and SIGTERM set :data:`REQUESTED` instead of raising."""
    if not _enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.signal(sig, _defer) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
