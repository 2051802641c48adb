"""Planning: from what every node holds and the target key, each node's new bytes.

Pure and local: nothing here touches a node. Problems (a malformed or encrypted file, a key the
file's framework cannot take, a node with none of its files) are collected, not raised, so one
run reports all of them at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from farmsync.errors import ConfigFileError, FarmsyncError, InputError, NodeError, NodeErrorKind
from farmsync.inventory.model import Host
from farmsync.keys.machinekey import MachineKey
from farmsync.nodes.contract import CommitItem, StageItem, sha256_hex
from farmsync.orchestration.marker import Marker, with_marker
from farmsync.orchestration.recorder import FileHashes
from farmsync.orchestration.result import (
    FileResult,
    FileStatus,
    HostResult,
    HostStatus,
    RunResult,
)
from farmsync.orchestration.survey import FileCondition, FileReport, NodeReport
from farmsync.webconfig.diff import masked_diff
from farmsync.webconfig.editor import apply_machine_key


@dataclass
class FileChange:
    path: str
    old_sha256: str
    old_fingerprint: str | None
    new_content: bytes = field(repr=False)
    new_sha256: str = ""

    def stage_item(self) -> StageItem:
        return StageItem(self.path, self.new_content, self.old_sha256)

    def commit_item(self) -> CommitItem:
        return CommitItem(self.path, self.old_sha256, self.new_sha256)

    def hashes(self) -> FileHashes:
        return FileHashes(self.path, self.old_sha256, self.new_sha256, self.old_fingerprint)


@dataclass
class Plan:
    changes: dict[str, list[FileChange]] = field(default_factory=dict)  # only hosts with changes
    problems: list[FarmsyncError] = field(default_factory=list)
    bad_input: bool = False
    old_fingerprints: set[str] = field(default_factory=set)
    # The explicit keys found before the change, by fingerprint: the key a first rotation
    # replaces is recorded in the vault so that `rollback` can go back to it.
    old_keys: dict[str, MachineKey] = field(default_factory=dict, repr=False)

    def paths(self, host: str) -> list[str]:
        return [c.path for c in self.changes.get(host, [])]

    def hashes(self, host: str) -> list[FileHashes]:
        return [c.hashes() for c in self.changes.get(host, [])]

    def single_old_key(self) -> MachineKey | None:
        """The one explicit key every changed file held, if they all held the same one."""
        if len(self.old_fingerprints) == 1 and len(self.old_keys) == 1:
            return next(iter(self.old_keys.values()))
        return None


def make_plan(
    key: MachineKey,
    hosts: Sequence[Host],
    reports: Mapping[str, NodeReport],
    result: RunResult,
    *,
    check: bool,
    diff: bool,
    marker: Marker | None = None,
) -> Plan:
    """Work out every file's new content; record per-file expectations in ``result``.

    A file whose key changes also gets ``marker`` (the farm marker), in the same bytes."""
    pending = HostStatus.WOULD_CHANGE if check else HostStatus.PENDING
    planner = _Planner(key, pending, diff, marker)
    for host in hosts:
        planner.plan_host(host, reports[host.name], result.host(host.name))
    return planner.plan


class _Planner:
    """One plan being made: the key, the marker, and how changes are labelled and shown."""

    def __init__(self, key: MachineKey, pending: HostStatus, diff: bool, marker: Marker | None):
        self.plan = Plan()
        self.key = key
        self.target = key.fingerprint()
        self.pending = pending
        self.file_pending = FileStatus(pending.value)
        self.diff = diff
        self.marker = marker

    def plan_host(self, host: Host, report: NodeReport, host_result: HostResult) -> None:
        host_result.status = HostStatus.UNCHANGED
        if not report.present():
            _blame(
                host_result,
                self.plan,
                NodeError(
                    host.name,
                    NodeErrorKind.NOT_FOUND,
                    "none of the managed root web.config files exists",
                    phase="read",
                ),
            )
            return
        changes: list[FileChange] = []
        for file in report.files:
            change = self.plan_file(host.name, file, host_result)
            if change is not None:
                changes.append(change)
        if changes:
            self.plan.changes[host.name] = changes
            if host_result.status is not HostStatus.FAILED:
                host_result.status = self.pending

    def plan_file(
        self, host_name: str, file: FileReport, host_result: HostResult
    ) -> FileChange | None:
        """One file's change, or None when it needs none or cannot take one (then blamed)."""
        plan = self.plan
        if file.condition is FileCondition.MISSING:
            host_result.files.append(FileResult(file.path, FileStatus.MISSING))
            return None
        source = f"{host_name}:{file.path}"
        problem = _unusable(host_name, source, file)
        if problem is not None:
            plan.bad_input = plan.bad_input or isinstance(problem, ConfigFileError)
            _blame(host_result, plan, problem)
            return None
        assert file.content is not None and file.sha256 is not None
        _remember_old_key(plan, file)
        try:
            # The editor is the one gate for the key: it checks it against the file's framework.
            new = apply_machine_key(file.content, self.key, source)
        except InputError as exc:
            plan.bad_input = True
            _blame(host_result, plan, exc)
            return None
        old_shown = _shown(file.fingerprint, file.explicit)
        if new == file.content:
            host_result.files.append(
                FileResult(
                    file.path,
                    FileStatus.UNCHANGED,
                    old_shown,
                    self.target,
                    old_autogenerate=not file.explicit,
                )
            )
            return None
        if self.marker is not None:
            new = with_marker(new, self.marker, source)
        shown = masked_diff(file.content, new, source) if self.diff else None
        host_result.files.append(
            FileResult(
                file.path,
                self.file_pending,
                old_shown,
                self.target,
                shown,
                old_autogenerate=not file.explicit,
            )
        )
        return FileChange(file.path, file.sha256, file.fingerprint, new, sha256_hex(new))


def _unusable(host_name: str, source: str, file: FileReport) -> FarmsyncError | None:
    """Why a file that exists cannot be planned: unreadable, malformed or encrypted."""
    if file.condition is FileCondition.UNREADABLE:
        return NodeError(
            host_name,
            file.error_kind or NodeErrorKind.REMOTE,
            file.error or "unreadable",
            phase="read",
            path=file.path,
        )
    if file.condition in (FileCondition.MALFORMED, FileCondition.ENCRYPTED):
        return ConfigFileError(file.error or "not editable", source=source, line=file.error_line)
    return None


def _remember_old_key(plan: Plan, file: FileReport) -> None:
    """The key a file holds before the change (a first rotation records it for rollback)."""
    if file.fingerprint is None:
        return
    plan.old_fingerprints.add(file.fingerprint)
    if file.key is not None and file.key.is_explicit:
        plan.old_keys[file.fingerprint] = file.key


def _shown(fingerprint: str | None, explicit: bool) -> str | None:
    """The fingerprint to show: AutoGenerate keys differ per node (and per application with
    IsolateApps), so they have no one fingerprint to show."""
    return fingerprint if explicit else None


def _blame(host_result: HostResult, plan: Plan, problem: FarmsyncError) -> None:
    """Record a problem that stops the run, and mark the host it is about."""
    plan.problems.append(problem)
    host_result.status = HostStatus.FAILED
    host_result.error = str(problem)
    if isinstance(problem, NodeError):
        host_result.error_kind = problem.kind.value
    elif isinstance(problem, ConfigFileError):
        host_result.error_kind = "bad-config"
    else:
        host_result.error_kind = "bad-key"
