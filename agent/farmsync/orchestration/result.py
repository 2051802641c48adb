"""What a run did, in a shape the CLI renders and ``--json`` prints as is.

Only fingerprints, paths, hosts and error categories: nothing here can hold key material.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from farmsync.errors import ExitCode


class Outcome(StrEnum):
    CHANGED = "changed"  # every node now on the target key
    UNCHANGED = "unchanged"  # nothing to do
    CHECKED = "checked"  # --check: read and plan only
    ROLLED_BACK = "rolled-back"  # a node failed; every node is back on its old key
    ABORTED = "aborted"  # failed before any live file changed
    NOT_STARTED = "not-started"  # could not start: unreachable node, unreadable file
    BAD_INPUT = "bad-input"  # a malformed or encrypted web.config, an invalid key
    INCONSISTENT = "inconsistent"  # could not restore consistency; run `farmsync recover`
    RECYCLE_FAILED = "recycle-failed"  # keys consistent, some node failed to recycle


EXIT_CODES = {
    Outcome.CHANGED: ExitCode.OK,
    Outcome.UNCHANGED: ExitCode.OK,
    Outcome.CHECKED: ExitCode.OK,
    Outcome.ROLLED_BACK: ExitCode.NODE_FAILURE,
    Outcome.ABORTED: ExitCode.NODE_FAILURE,
    Outcome.INCONSISTENT: ExitCode.NODE_FAILURE,
    Outcome.RECYCLE_FAILED: ExitCode.NODE_FAILURE,
    Outcome.NOT_STARTED: ExitCode.CANNOT_START,
    Outcome.BAD_INPUT: ExitCode.BAD_INPUT,
}


@dataclass
class FileResult:
    path: str
    status: str  # changed | unchanged | missing | rolled-back | failed | would-change
    old_fingerprint: str | None = None
    new_fingerprint: str | None = None
    diff: str | None = None  # masked, only with --diff


@dataclass
class HostResult:
    host: str
    status: str  # changed | unchanged | failed | rolled-back | unreachable | would-change
    files: list[FileResult] = field(default_factory=list)
    error: str | None = None
    error_kind: str | None = None
    recycled: bool = False


@dataclass
class RunResult:
    run_id: str
    kind: str
    farm: str
    outcome: Outcome
    target_fingerprint: str | None = None
    hosts: list[HostResult] = field(default_factory=list)
    commit_window_ms: float | None = None  # first release sent -> last commit acknowledged
    release_span_ms: float | None = None  # first release sent -> last release sent
    # Spread of the changed files' modification times as verify read them (the commit skew
    # the nodes' own clocks show), and the resolution they were read at: SFTP v3 and the
    # armed shell give whole seconds, so a skew of 0 there means "within one second".
    mtime_skew_ms: float | None = None
    mtime_resolution_ms: float | None = None
    phase_ms: dict[str, float] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]

    def host(self, name: str) -> HostResult:
        for result in self.hosts:
            if result.host == name:
                return result
        result = HostResult(name, "unchanged")
        self.hosts.append(result)
        return result

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = self.outcome.value
        data["exit_code"] = self.exit_code
        return data
