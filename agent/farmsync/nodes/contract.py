"""The node-operations contract: the one interface every transport implements.

Everything above this layer (orchestration, audit, CLI) talks to nodes only through
:class:`NodeOperations`. Each method is one remote round trip for all the paths it is
given (one SSH exec or SFTP batch, one command in the reused WinRM shell), never one per
file. ``round_trips`` counts them so the contract tests can hold transports to it.

Phases of a change, per node:
  read -> stage -> arm_commit/release -> (verify = read) -> cleanup
                                  \\-> rollback on failure

File naming on the node (same directory as the target, so renames stay atomic):
  staging file: ``<name>.farmsync-<run_id>.new``
  backup file:  ``<name>.farmsync-<run_id>.bak`` (byte-identical copy of the replaced file)
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import TYPE_CHECKING

from farmsync.errors import NodeError, NodeErrorKind

if TYPE_CHECKING:
    from farmsync.nodes.auditread import AuditRead, AuditRequest

STAGE_SUFFIX = ".farmsync-{run_id}.new"
BACKUP_SUFFIX = ".farmsync-{run_id}.bak"
DEFAULT_BACKUP_RETENTION = 10


def staging_path(path: str, run_id: str) -> str:
    return path + STAGE_SUFFIX.format(run_id=run_id)


def backup_path(path: str, run_id: str) -> str:
    return path + BACKUP_SUFFIX.format(run_id=run_id)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FileStatus(StrEnum):
    OK = "ok"
    MISSING = "missing"
    ERROR = "error"  # unreadable: permission denied, a directory, ...


@dataclass(frozen=True)
class FileState:
    """What ``read`` found at one path. ``content`` is never logged or shown."""

    path: str
    status: FileStatus
    content: bytes | None = field(default=None, repr=False)
    sha256: str | None = None
    mtime: float | None = None  # epoch seconds; whole-second precision (SFTP v3 has no more)
    error_kind: NodeErrorKind | None = None
    error: str | None = None  # human detail when status is ERROR


@dataclass(frozen=True)
class StageItem:
    """New content for one path, valid while the live file still hashes to ``expected_sha256``."""

    path: str
    new_content: bytes = field(repr=False)
    expected_sha256: str


@dataclass(frozen=True)
class CommitItem:
    """A staged file to put in place: the live file must still hash to ``expected_sha256`` and the
    staging file to ``staged_sha256`` when the commit is armed, or nothing is done (CHANGED)."""

    path: str
    expected_sha256: str
    staged_sha256: str


class ArmedCommit(ABC):
    """A commit prepared on the node and waiting for the word.

    ``arm_commit`` pays every expensive cost in advance (process start-up, checks); ``release``
    must cost one message to the node and must not block on the node's answer, so the
    orchestrator can release every node back to back; ``wait`` collects the result and raises
    :class:`NodeError` if the commit failed. ``abort`` withdraws an armed commit without
    touching the live files.
    """

    @abstractmethod
    def release(self) -> None: ...

    @abstractmethod
    def wait(self, timeout: float) -> None: ...

    @abstractmethod
    def abort(self) -> None: ...


class NodeOperations(ABC):
    """Operations on one node over one connection, opened once per run and reused."""

    def __init__(self, host_name: str):
        self.host_name = host_name
        self.round_trips = 0

    # --- life cycle ---------------------------------------------------------------------
    @abstractmethod
    def connect(self) -> None:
        """Open the connection (and shell). Raises NodeError(UNREACHABLE/AUTH/HOST_KEY/TLS/...)."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> NodeOperations:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- the phases ---------------------------------------------------------------------
    @abstractmethod
    def read(self, paths: Sequence[str]) -> dict[str, FileState]:
        """Bytes, SHA-256 and mtime of every path; a missing file is FileStatus.MISSING."""

    @abstractmethod
    def stage(self, items: Sequence[StageItem], run_id: str) -> None:
        """Write each staging file beside its target, fsync, read back and check the hash.

        Refuses (NodeError CHANGED, nothing written) if any live file no longer has its
        expected hash. All-or-nothing across the items: on failure no staging file is left.
        The staging file gets the live file's permissions.
        """

    @abstractmethod
    def arm_commit(self, items: Sequence[CommitItem], run_id: str) -> ArmedCommit:
        """Prepare the commit of staged files; see :class:`ArmedCommit`.

        When released: for each path, keep a byte-identical backup of the live file at
        ``backup_path`` and atomically replace the live file with the staging file.
        """

    def commit(self, items: Sequence[CommitItem], run_id: str, timeout: float = 60.0) -> None:
        armed = self.arm_commit(items, run_id)
        armed.release()
        armed.wait(timeout)

    @abstractmethod
    def rollback(self, paths: Sequence[str], run_id: str) -> None:
        """Atomically put each path's backup from ``run_id`` back; the backup stays.

        A path with no backup for that run (never committed) is left as it is; its staging
        file, if any, is removed.
        """

    @abstractmethod
    def cleanup(
        self, paths: Sequence[str], run_id: str, keep_backups: int = DEFAULT_BACKUP_RETENTION
    ) -> None:
        """Remove this run's staging files; keep the newest ``keep_backups`` backups per path."""

    @abstractmethod
    def list_backups(self, paths: Sequence[str]) -> dict[str, list[str]]:
        """Run ids that have a backup, per path, newest first."""

    @abstractmethod
    def recycle(self) -> None:
        """Do what ``farmsync_recycle`` says (nothing, a command, IIS app pools)."""

    # --- optional capabilities ----------------------------------------------------------
    def audit(self, request: AuditRequest) -> AuditRead:
        """Everything the audit reads, in one read-only round trip (see nodes/auditread.py).

        Optional: a transport without it refuses with a PROTOCOL NodeError."""
        raise NodeError(
            self.host_name, NodeErrorKind.PROTOCOL, "this transport cannot audit", phase="audit"
        )


def raise_for_state(host: str, state: FileState, phase: str) -> None:
    """Turn an unreadable FileState into the matching NodeError."""
    if state.status is FileStatus.ERROR:
        raise NodeError(
            host,
            state.error_kind or NodeErrorKind.REMOTE,
            state.error or "unreadable",
            phase=phase,
            path=state.path,
        )
