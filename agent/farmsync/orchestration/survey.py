"""The read path: what every managed web.config on every node holds, as fingerprints.

Rotation, sync, rollback, recovery and the drift audit all stand on this one survey: one
``read`` round trip per node for all its files, each file inspected locally.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from farmsync.errors import (
    ConfigFileError,
    FarmsyncError,
    NodeError,
    NodeErrorKind,
    describe_error,
)
from farmsync.inventory.model import Host
from farmsync.keys.machinekey import MachineKey
from farmsync.nodes.contract import FileStatus, NodeOperations, sha256_hex
from farmsync.orchestration.events import Event, Phase, Reporter, Status
from farmsync.orchestration.pool import run_each
from farmsync.orchestration.staged import read_with_staged
from farmsync.webconfig.parser import ConfigInspection, inspect_config

# What ASP.NET uses when a config has no <machineKey>: AutoGenerate keys, different per node.
DEFAULT_KEY = MachineKey.from_attributes({})


class FileCondition(StrEnum):
    OK = "ok"
    MISSING = "missing"  # not on this node (e.g. no Framework64 on a 32-bit server)
    UNREADABLE = "unreadable"
    MALFORMED = "malformed"
    ENCRYPTED = "encrypted"  # protected configuration: never edited


@dataclass(frozen=True)
class LocationOverride:
    location_path: str
    fingerprint: str
    line: int


@dataclass(frozen=True)
class FileReport:
    host: str
    path: str
    condition: FileCondition
    sha256: str | None = None
    mtime: float | None = None
    file_id: str | None = None  # the node's identity of the file (FileState.file_id)
    fingerprint: str | None = None  # of the root machineKey (DEFAULT_KEY's when absent)
    explicit: bool = False  # an explicit key, not AutoGenerate
    overrides: tuple[LocationOverride, ...] = ()
    error: str | None = None  # why the file is not OK, without the host:path prefix
    error_line: int | None = None  # the line the error is about, when it is about one
    error_kind: NodeErrorKind | None = None  # for UNREADABLE files
    content: bytes | None = field(default=None, repr=False)
    inspection: ConfigInspection | None = field(default=None, repr=False)

    @property
    def key(self) -> MachineKey | None:
        """The root key in effect (key material: for the engine and the audit only)."""
        if self.inspection is None:
            return None
        found = self.inspection.root_key
        return found.key if found is not None else DEFAULT_KEY

    @property
    def editable(self) -> bool:
        return self.condition is FileCondition.OK


@dataclass(frozen=True)
class NodeReport:
    host: str
    files: tuple[FileReport, ...] = ()
    error: FarmsyncError | None = None
    staged_runs: tuple[str, ...] = ()  # runs with staging files beside these files

    @property
    def reachable(self) -> bool:
        return self.error is None

    def present(self) -> list[FileReport]:
        return [f for f in self.files if f.condition is not FileCondition.MISSING]

    def fingerprints(self) -> set[str]:
        return {f.fingerprint for f in self.files if f.fingerprint is not None}


def inspect_file(host: str, path: str, content: bytes) -> FileReport:
    """Inspect one file's bytes (a pure function: also what the audit's data tests drive)."""
    digest = sha256_hex(content)
    try:
        inspection = inspect_config(content, f"{host}:{path}")
    except ConfigFileError as exc:
        return FileReport(
            host,
            path,
            FileCondition.MALFORMED,
            sha256=digest,
            error=exc.message,
            error_line=exc.line,
        )
    overrides = tuple(
        LocationOverride(found.location_path or "", found.key.fingerprint(), found.line)
        for found in inspection.machine_keys
        if found is not inspection.root_key and found.location_path
    )
    if inspection.encrypted:
        return FileReport(
            host,
            path,
            FileCondition.ENCRYPTED,
            sha256=digest,
            overrides=overrides,
            error="system.web is encrypted with protected configuration; farmsync will not edit it",
            error_line=inspection.encrypted_line,
            content=content,
            inspection=inspection,
        )
    key = inspection.root_key.key if inspection.root_key is not None else DEFAULT_KEY
    return FileReport(
        host,
        path,
        FileCondition.OK,
        sha256=digest,
        fingerprint=key.fingerprint(),
        explicit=key.is_explicit,
        overrides=overrides,
        content=content,
        inspection=inspection,
    )


def read_node(
    node: NodeOperations, host: Host, paths: Sequence[str], *, staged: bool = False
) -> NodeReport:
    """What ``paths`` hold; with ``staged`` also the runs whose staging files sit beside them
    (read in the same round trip, via the read-only audit op where the transport has it)."""
    staged_runs: tuple[str, ...] = ()
    if staged:
        states, staged_runs = read_with_staged(node, paths)
    else:
        states = node.read(paths)
    files: list[FileReport] = []
    for path in paths:
        state = states[path]
        if state.status is FileStatus.MISSING:
            files.append(FileReport(host.name, path, FileCondition.MISSING))
        elif state.status is FileStatus.ERROR or state.content is None:
            files.append(
                FileReport(
                    host.name,
                    path,
                    FileCondition.UNREADABLE,
                    error=state.error or "unreadable",
                    error_kind=state.error_kind or NodeErrorKind.REMOTE,
                )
            )
        else:
            report = inspect_file(host.name, path, state.content)
            files.append(replace(report, mtime=state.mtime, file_id=state.file_id))
    return NodeReport(host.name, tuple(files), staged_runs=staged_runs)


def survey(
    nodes: Mapping[str, NodeOperations],
    hosts: Mapping[str, Host],
    paths_of: Mapping[str, Sequence[str]],
    *,
    forks: int,
    reporter: Reporter,
    phase: Phase = Phase.READ,
    staged: bool = False,
) -> dict[str, NodeReport]:
    """Read ``paths_of[host]`` on every connected node concurrently (with ``staged``, also
    the runs staged beside them: see :func:`read_node`)."""
    reporter.event(Event(phase, Status.START, total=len(nodes)))

    def work(name: str, node: NodeOperations) -> NodeReport:
        return read_node(node, hosts[name], paths_of[name], staged=staged)

    def done(name: str, outcome: object) -> None:
        err = getattr(outcome, "error", None)
        if err is None:
            reporter.event(Event(phase, Status.OK, name))
        else:
            reporter.event(Event(phase, Status.FAILED, name, describe_error(err)))

    outcomes = run_each(nodes.items(), work, forks, done)
    reports: dict[str, NodeReport] = {}
    for name, outcome in outcomes.items():
        if outcome.value is not None:
            reports[name] = outcome.value
        else:
            reports[name] = NodeReport(name, error=as_farmsync_error(name, outcome.error, phase))
    return reports


def as_farmsync_error(host: str, exc: BaseException | None, phase: Phase) -> FarmsyncError:
    if isinstance(exc, FarmsyncError):
        return exc
    return NodeError(host, NodeErrorKind.REMOTE, describe_error(exc), phase=phase.value)
