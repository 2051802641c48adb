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
from farmsync.keys.machinekey import MachineKey, framework_of_path, validate_key
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
from farmsync.orchestration.survey import FileCondition, NodeReport
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
    plan = Plan()
    target = key.fingerprint()
    pending = HostStatus.WOULD_CHANGE if check else HostStatus.PENDING
    file_pending = FileStatus(pending.value)
    for host in hosts:
        report = reports[host.name]
        host_result = result.host(host.name)
        host_result.status = HostStatus.UNCHANGED
        if not report.present():
            _blame(
                host_result,
                plan,
                NodeError(
                    host.name,
                    NodeErrorKind.NOT_FOUND,
                    "none of the managed root web.config files exists",
                    phase="read",
                ),
            )
            continue
        changes: list[FileChange] = []
        for file in report.files:
            source = f"{host.name}:{file.path}"
            if file.condition is FileCondition.MISSING:
                host_result.files.append(FileResult(file.path, FileStatus.MISSING))
                continue
            if file.condition is FileCondition.UNREADABLE:
                _blame(
                    host_result,
                    plan,
                    NodeError(
                        host.name,
                        file.error_kind or NodeErrorKind.REMOTE,
                        file.error or "unreadable",
                        phase="read",
                        path=file.path,
                    ),
                )
                continue
            if file.condition in (FileCondition.MALFORMED, FileCondition.ENCRYPTED):
                plan.bad_input = True
                _blame(
                    host_result,
                    plan,
                    ConfigFileError(
                        file.error or "not editable", source=source, line=file.error_line
                    ),
                )
                continue
            assert file.content is not None and file.sha256 is not None
            if file.fingerprint is not None:
                plan.old_fingerprints.add(file.fingerprint)
                old_key = file.key
                if old_key is not None and old_key.is_explicit:
                    plan.old_keys[file.fingerprint] = old_key
            try:
                validate_key(key, framework_of_path(file.path), source=source)
                new = apply_machine_key(file.content, key, source)
            except InputError as exc:
                plan.bad_input = True
                _blame(host_result, plan, exc)
                continue
            if new == file.content:
                host_result.files.append(
                    FileResult(
                        file.path,
                        FileStatus.UNCHANGED,
                        _shown(file.fingerprint, file.explicit),
                        target,
                        old_autogenerate=not file.explicit,
                    )
                )
                continue
            if marker is not None:
                new = with_marker(new, marker, source)
            changes.append(
                FileChange(file.path, file.sha256, file.fingerprint, new, sha256_hex(new))
            )
            shown = masked_diff(file.content, new, source) if diff else None
            host_result.files.append(
                FileResult(
                    file.path,
                    file_pending,
                    _shown(file.fingerprint, file.explicit),
                    target,
                    shown,
                    old_autogenerate=not file.explicit,
                )
            )
        if changes:
            plan.changes[host.name] = changes
            if host_result.status is not HostStatus.FAILED:
                host_result.status = pending
    return plan


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
