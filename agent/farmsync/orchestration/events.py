"""Progress events the engine emits; the CLI renders them (rich on a terminal, lines elsewhere).

Events carry host names, paths, fingerprints and error categories, never file contents.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Phase(StrEnum):
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
