"""Progress events the engine emits; the CLI renders them (rich on a terminal, lines elsewhere).

Events carry host names, paths, fingerprints and error categories, never file contents.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Phase(StrEnum):
    """What a progress event is about, for people watching a run.

    Not the journal's ``Step`` on purpose, though eight names are shared: a Step is a record
    type in a file on disk that a later farmsync must still read (it has ``run-start`` and
    ``run-end``, and its values may never change), while a Phase is display vocabulary that
    may grow freely (``lock``, ``connect``, ``plan`` and ``recover`` are never journaled).
    """

    LOCK = "lock"
    RECOVER = "recover"
    CONNECT = "connect"
    READ = "read"
    PLAN = "plan"
    STAGE = "stage"
    ARM = "arm"
    COMMIT = "commit"
    VERIFY = "verify"
    ROLLBACK = "rollback"
    RECYCLE = "recycle"
    CLEANUP = "cleanup"


class Status(StrEnum):
    START = "start"  # a phase begins for ``total`` hosts
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"
    INFO = "info"
    WARNING = "warning"  # the phase went on, but the operator should know (said once per node)


@dataclass(frozen=True)
class Event:
    phase: Phase
    status: Status
    host: str | None = None
    detail: str = ""
    total: int | None = None


class Reporter(Protocol):
    def event(self, event: Event) -> None: ...


class NullReporter:
    def event(self, event: Event) -> None:
        return None
