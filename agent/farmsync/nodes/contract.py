"""The node-operations contract: the one interface every transport implements.

Everything above this layer (orchestration, audit, CLI) talks to nodes only through
:class:`NodeOperations`. Each method is one remote round trip for all the paths it is
given (one SFTP batch, one request to the node's agent session), never one per file.
``round_trips`` counts them so the contract tests can hold transports to it.

Phases of a change, per node:
  read -> stage_and_arm (stage, arm_commit) -> release -> (verify = read) -> cleanup
                                                    \\-> rollback on failure
The Windows agent does stage_and_arm in one exchange, and its release answers the verify
(post-commit hashes) and cleans up: read, stage+arm, release.

File naming on the node (same directory as the target, so renames stay atomic):
  staging file: ``<name>.farmsync-<run_id>.new``
  backup file:  ``<name>.farmsync-<run_id>.bak`` (byte-identical copy of the replaced file)
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import TYPE_CHECKING, Any

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.webconfig.parser import MAX_CONFIG_BYTES

if TYPE_CHECKING:
    from farmsync.nodes.auditread import AuditRead, AuditRequest

# A read refuses a file larger than the parser takes, before reading it, on every transport.
MAX_FILE_BYTES = MAX_CONFIG_BYTES
STAGE_SUFFIX = ".farmsync-{run_id}.new"
BACKUP_SUFFIX = ".farmsync-{run_id}.bak"
DEFAULT_BACKUP_RETENTION = 10
# Seconds to wait for one node's commit acknowledgement (--timeout).
DEFAULT_COMMIT_TIMEOUT = 60.0


def staging_path(path: str, run_id: str) -> str:
    return path + STAGE_SUFFIX.format(run_id=run_id)


def backup_path(path: str, run_id: str) -> str:
    return path + BACKUP_SUFFIX.format(run_id=run_id)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_id(device: int, index: int) -> str:
    """A file's identity on its node: (st_dev, st_ino) on POSIX, (volume serial number, file
    index) on Windows, as ``"<device>:<index>"`` in lower-case hex."""
    return f"{device:x}:{index:x}"


def backups_newest_first(run_ids: Iterable[str]) -> list[str]:
    """Run ids newest first. Run ids start with the controller's UTC timestamp, so their
    order is the runs' order; file times are not trusted (a node's clock may have run ahead)."""
    return sorted(set(run_ids), reverse=True)


@dataclass(frozen=True)
class NodeIdentity:
    """What a node proved about itself, to tell two inventory entries for one node apart.

    ``proof`` is the SSH host key fingerprint, or the WinRM server certificate fingerprint
    plus the machine id the agent reports; for the local transport, this machine.
    ``unique``: two hosts with this proof are one node (False for local hosts, which share
    the machine by design). File ids (FileState.file_id) are compared within one proof.
    """

    proof: str
    unique: bool = True


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
    file_id: str | None = None  # see file_id(); same value = same file on this node
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

    ``wait`` may return the files' states the node read back right after the commit (sha256,
    mtime, file id; no content), when the acknowledgement carried them (the agent's
    ``stage_commit``); None otherwise, and the caller reads the files to verify.
    ``cleaned_up`` turns true when the release also removed the run's leftovers and pruned
    old backups (``cleanup`` for these paths is then done).
    """

    cleaned_up: bool = False

    @abstractmethod
    def release(self) -> None: ...

    @abstractmethod
    def wait(self, timeout: float) -> Mapping[str, FileState] | None: ...

    @abstractmethod
    def abort(self) -> None: ...


class NodeOperations(ABC):
    """Operations on one node over one connection, opened once per run and reused."""

    def __init__(self, host_name: str):
        self.host_name = host_name
        self.round_trips = 0
        # Things the operator should know that did not fail the phase (e.g. a slower path
        # taken), each said once per node; the rollout reports them as warning events.
        self.warnings: list[str] = []

    def identity(self) -> NodeIdentity | None:
        """What this node proved about itself so far (after ``connect``, for WinRM after the
        first ``read``); None when it proved nothing."""
        return None

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

    def stage_and_arm(
        self,
        stage_items: Sequence[StageItem],
        commit_items: Sequence[CommitItem],
        run_id: str,
        keep_backups: int = DEFAULT_BACKUP_RETENTION,
    ) -> ArmedCommit:
        """``stage`` then ``arm_commit``, for one node in one call. Transports that can do
        both in one exchange (the Windows agent's ``stage_commit``) override it; theirs also
        verifies and cleans up (``keep_backups``) in the release's own exchange."""
        self.stage(stage_items, run_id)
        return self.arm_commit(commit_items, run_id)

    def commit(
        self, items: Sequence[CommitItem], run_id: str, timeout: float = DEFAULT_COMMIT_TIMEOUT
    ) -> None:
        armed = self.arm_commit(items, run_id)
        armed.release()
        armed.wait(timeout)

    @abstractmethod
    def rollback(
        self, paths: Sequence[str], run_id: str, expected: Mapping[str, str] | None = None
    ) -> None:
        """Atomically put each path's backup from ``run_id`` back; the backup stays.

        First, for every path, the run's staging file is removed (the fence: a commit that
        was released but never acknowledged can no longer land afterwards). A path with no
        backup for that run (never committed) is then left as it is. With ``expected``
        (path -> SHA-256 of the original), a live file already holding it is left alone, and
        a backup that does not hold it is never restored (VERIFY, both files untouched).
        """

    @abstractmethod
    def cleanup(
        self, paths: Sequence[str], run_id: str, keep_backups: int = DEFAULT_BACKUP_RETENTION
    ) -> None:
        """Remove this run's staging files; keep the newest ``keep_backups`` backups per path
        (by run id, see :func:`backups_newest_first`) and always this run's own."""

    @abstractmethod
    def list_backups(self, paths: Sequence[str]) -> dict[str, list[str]]:
        """Run ids that have a backup, per path, newest first (by run id)."""

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

    # --- preflight (farmsync doctor): read-only, optional per transport -----------------
    def doctor(self, paths: Sequence[str]) -> dict[str, Any]:
        """The ``doctor`` answer for ``paths`` (PROTOCOL.md): what would stop a commit."""
        raise NodeError(self.host_name, NodeErrorKind.PROTOCOL, "no doctor op", phase="doctor")

    def login_facts(self) -> dict[str, str]:
        """How the open connection authenticated (``auth``) and checked the node (``verified``)."""
        return {}


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
