"""The SSH transport: :class:`SshNode`, NodeOperations over one paramiko connection per node.

POSIX nodes (Linux, Mono) are served by ``ssh_posix`` (SFTP only; the armed ``sh`` only where
the node's SFTP server cannot commit, see ``sftp_commit``); Windows OpenSSH nodes
(``Shell.POWERSHELL``) by ``ssh_windows`` (the PowerShell node agent, one exec per run).
``round_trips`` counts one per phase that reaches the node: one request line to the agent,
or one SFTP batch over the already open SFTP channel, whatever the number of files.
``sent_commands`` records every exec command line, so tests can prove no key material or
file content ever reaches a remote command line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.inventory.model import Host, RecycleKind, RecycleSpec, Shell
from farmsync.nodes.auditread import AuditRead, AuditRequest
from farmsync.nodes.contract import (
    DEFAULT_BACKUP_RETENTION,
    ArmedCommit,
    CommitItem,
    FileState,
    NodeIdentity,
    NodeOperations,
    StageItem,
)
from farmsync.nodes.ssh_connect import SshConnection

if TYPE_CHECKING:
    from farmsync.nodes.ssh_windows import PowerShellOps


class _Ops(Protocol):
    """What both node flavours (ssh_posix.PosixOps, ssh_windows.PowerShellOps) provide."""

    def read(self, paths: Sequence[str]) -> dict[str, FileState]: ...
    def stage(self, items: Sequence[StageItem], run_id: str) -> None: ...
    def arm_commit(self, items: Sequence[CommitItem], run_id: str) -> ArmedCommit: ...
    def rollback(
        self, paths: Sequence[str], run_id: str, expected: Mapping[str, str] | None
    ) -> None: ...
    def cleanup(self, paths: Sequence[str], run_id: str, keep_backups: int) -> None: ...
    def list_backups(self, paths: Sequence[str]) -> dict[str, list[str]]: ...
    def recycle(self, spec: RecycleSpec) -> None: ...
    def audit(self, request: AuditRequest) -> AuditRead: ...
    def doctor(self, paths: Sequence[str]) -> dict[str, Any]: ...


class SshNode(NodeOperations):
    def __init__(self, host: Host):
        super().__init__(host.name)
        self.host = host
        self.sent_commands: list[str] = []
        self._conn: SshConnection | None = None
        self._ops: _Ops | None = None
        self._agent: PowerShellOps | None = None  # the Windows flavour's agent session

    def __repr__(self) -> str:
        return f"SshNode({self.host.name!r}, {self.host.address}:{self.host.port})"

    # --- life cycle ---------------------------------------------------------------------
    def connect(self) -> None:
        if self._conn is not None:
            return
        conn = SshConnection(self.host, self.sent_commands)
        try:
            conn.open()
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        # Imported here: a POSIX-only run never loads the PowerShell agent's scripts.
        if self.host.shell is Shell.POWERSHELL:
            from farmsync.nodes.ssh_windows import PowerShellOps

            self._ops = self._agent = PowerShellOps(conn)
        else:
            from farmsync.nodes.ssh_posix import PosixOps

            self._ops = PosixOps(conn, self.warnings)

    def identity(self) -> NodeIdentity | None:
        return self._conn.identity() if self._conn is not None else None

    def close(self) -> None:
        conn, self._conn, self._ops = self._conn, None, None
        agent, self._agent = self._agent, None
        if agent is not None:
            agent.close()  # EOF: the agent ends after its last answer
        if conn is not None:
            conn.close()

    def _trip(self) -> _Ops:
        """The connected flavour, counting the one round trip the calling phase makes."""
        if self._ops is None:
            raise NodeError(self.host.name, NodeErrorKind.CONNECTION_LOST, "not connected")
        self.round_trips += 1
        return self._ops

    # --- the phases ---------------------------------------------------------------------
    def read(self, paths: Sequence[str]) -> dict[str, FileState]:
        return self._trip().read(paths) if paths else {}

    def stage(self, items: Sequence[StageItem], run_id: str) -> None:
        if items:
            self._trip().stage(items, run_id)

    def arm_commit(self, items: Sequence[CommitItem], run_id: str) -> ArmedCommit:
        return self._trip().arm_commit(items, run_id)

    def stage_and_arm(
        self,
        stage_items: Sequence[StageItem],
        commit_items: Sequence[CommitItem],
        run_id: str,
        keep_backups: int = DEFAULT_BACKUP_RETENTION,
    ) -> ArmedCommit:
        """Windows: one ``stage_commit`` exchange; POSIX: stage, then arm (two)."""
        if self._agent is None:
            return super().stage_and_arm(stage_items, commit_items, run_id, keep_backups)
        self._trip()
        return self._agent.stage_and_arm(stage_items, commit_items, run_id, keep_backups)

    def rollback(
        self, paths: Sequence[str], run_id: str, expected: Mapping[str, str] | None = None
    ) -> None:
        if paths:
            self._trip().rollback(paths, run_id, expected)

    def cleanup(
        self, paths: Sequence[str], run_id: str, keep_backups: int = DEFAULT_BACKUP_RETENTION
    ) -> None:
        if paths:
            self._trip().cleanup(paths, run_id, keep_backups)

    def list_backups(self, paths: Sequence[str]) -> dict[str, list[str]]:
        return self._trip().list_backups(paths) if paths else {}

    def audit(self, request: AuditRequest) -> AuditRead:
        return self._trip().audit(request)

    def recycle(self) -> None:
        if self.host.recycle.kind is not RecycleKind.NONE:
            self._trip().recycle(self.host.recycle)

    def doctor(self, paths: Sequence[str]) -> dict[str, Any]:
        return self._trip().doctor(paths)

    def login_facts(self) -> dict[str, str]:
        return self._conn.login_facts() if self._conn is not None else {}
