"""What a run did, in a shape the CLI renders and ``--json`` prints as is.

Only fingerprints, paths, hosts and error categories: nothing here can hold key material.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from farmsync.errors import ExitCode
from farmsync.orchestration.journal import RunKind


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


class HostStatus(StrEnum):
    """What happened to one host in a run (a failed host's ``error_kind`` says why)."""

    PENDING = "pending"  # planned, not settled yet (never in a finished result)
    WOULD_CHANGE = "would-change"  # --check
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    ROLLED_BACK = "rolled-back"
    FAILED = "failed"
    UNREACHABLE = "unreachable"  # could not be connected to or read (error_kind: auth, tls...)
    NOT_STARTED = "not-started"  # the run did not start because of another host
    FINISHED = "finished"  # recover: an unfinished run finished on it
    CLEANED_UP = "cleaned-up"  # recover: only an unreleased run's staging files removed
    ACCEPTED = "accepted"  # recover --accept-current: its files taken as they are


class FileStatus(StrEnum):
    """What happened to one managed file (not the node protocol's FileStatus, a read state)."""

    PENDING = "pending"
    WOULD_CHANGE = "would-change"
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    ROLLED_BACK = "rolled-back"
    MISSING = "missing"  # not on this node (e.g. no Framework64)
    NOT_STARTED = "not-started"


@dataclass
class FileResult:
    path: str
    status: FileStatus
    old_fingerprint: str | None = None  # None for AutoGenerate: a key per node, not one key
    new_fingerprint: str | None = None  # None in a rotation's --check: the key is not made yet
    diff: str | None = None  # masked, only with --diff
    old_autogenerate: bool = False  # the file held no explicit key (AutoGenerate)


@dataclass
class HostResult:
    host: str
    status: HostStatus
    files: list[FileResult] = field(default_factory=list)
    error: str | None = None
    error_kind: str | None = None
    recycled: bool = False


@dataclass
class RunResult:
    run_id: str
    kind: RunKind
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
    left_out: list[str] = field(default_factory=list)  # inventory hosts --limit did not select
    summary: str | None = None  # what the run did, in words, when its kind says more (restore)
    interrupted: str | None = None  # SIGINT / SIGTERM, when the run stopped because of one

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return ExitCode.INTERRUPTED
        return EXIT_CODES[self.outcome]

    def __post_init__(self) -> None:
        # host() by name without a scan per call (a 2,000-node run asks ~3 times per host).
        self._by_name: dict[str, HostResult] = {}

    def host(self, name: str) -> HostResult:
        """The result of host ``name``; the first time, a new one (``unchanged``) is added."""
        if len(self._by_name) != len(self.hosts):  # hosts given at construction, or edited
            self._by_name = {}
            for known in self.hosts:
                self._by_name.setdefault(known.host, known)
        result = self._by_name.get(name)
        if result is None:
            result = HostResult(name, HostStatus.UNCHANGED)
            self.hosts.append(result)
            self._by_name[name] = result
        return result

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = self.outcome.value
        data["exit_code"] = self.exit_code
        return data
