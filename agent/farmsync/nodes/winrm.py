"""Node operations over WinRM: the PowerShell node agent, one command per phase in one shell.

``connect`` opens one remote shell and every phase reuses it: one Command of the fixed
``psagent.command_line()`` (the same bytes for every op, far below cmd.exe's 8,191
characters, never a path, content or key), the request line on stdin in Send chunks,
Receive until the agent's result. The commit is armed ahead of the barrier: its process
is started and checked, then waits on stdin, and releasing it is one Send of the word.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from winrm.protocol import Protocol

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.inventory.model import Host
from farmsync.nodes import psagent
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
from farmsync.nodes.winrm_shell import RemoteCommand, WinrmShell, build_protocol

log = logging.getLogger(__name__)


class WinrmNode(NodeOperations):
    """A Windows node over WinRM (pywinrm), with one shell per run."""

    def __init__(self, host: Host, protocol_factory: Callable[[Host], Protocol] = build_protocol):
        super().__init__(host.name)
        self.host = host
        self.shell = WinrmShell(host, protocol_factory)
        self._machine_id: str | None = None

    @property
    def sent_commands(self) -> list[str]:
        """Every command line sent to the node (for the tests that keep secrets off them)."""
        return self.shell.sent_commands

    # --- life cycle ---------------------------------------------------------------------
    def connect(self) -> None:
        if not self.shell.is_open:
            self.shell.open()

    def close(self) -> None:
        self.shell.close()

    # --- one phase = one command --------------------------------------------------------
    def _start(self, op: str) -> RemoteCommand:
        if not self.shell.is_open:
            raise NodeError(self.host_name, NodeErrorKind.PROTOCOL, "not connected", phase=op)
        command = self.shell.start(psagent.command_line(), op)
        self.round_trips += 1
        return command

    def _run(self, op: str, args: Mapping[str, Any]) -> dict[str, Any]:
        deadline = time.monotonic() + self.host.timeout
        command = self._start(op)
        try:
            command.send(psagent.request_line(op, args), end=True)
            out = command.collect(deadline)
        finally:
            command.terminate()  # releases the command on the server, finished or not
        return psagent.parse_output(out.stdout, host=self.host_name, phase=op, stderr=out.stderr)

    def identity(self) -> NodeIdentity | None:
        """The server certificate's SHA-256 (HTTPS) plus the machine id the agent's first read
        reported (Windows: MachineGuid). Either alone is not enough: a wildcard certificate
        serves many machines, and cloned machines may share a MachineGuid."""
        cert = self.shell.peer_certificate_sha256
        if cert is None and self._machine_id is None:
            return None
        return NodeIdentity(
            f"winrm certificate sha256:{cert or 'none'} machine {self._machine_id or 'unknown'}"
        )

    def read(self, paths: Sequence[str]) -> dict[str, FileState]:
        result = self._run("read", psagent.read_args(paths))
        self._machine_id = psagent.machine_id_from_result(result) or self._machine_id
        return psagent.files_from_result(result, host=self.host_name)

    def stage(self, items: Sequence[StageItem], run_id: str) -> None:
        self._run("stage", psagent.stage_args(items, run_id))

    def arm_commit(self, items: Sequence[CommitItem], run_id: str) -> ArmedCommit:
        deadline = time.monotonic() + self.host.timeout
        command = self._start("commit")
        reader = psagent.ArmedReader()
        try:
            command.send(psagent.request_line("commit", psagent.commit_args(items, run_id)))
            out = command.collect(deadline, until=reader.feed)
            if not reader.armed:
                # The checks failed (CHANGED...) and the agent ended with its error.
                psagent.parse_output(
                    reader.output, host=self.host_name, phase="commit", stderr=out.stderr
                )
                raise NodeError(
                    self.host_name,
                    NodeErrorKind.PROTOCOL,
                    "the agent ended without arming the commit",
                    phase="commit",
                )
        except BaseException:
            command.terminate()
            raise
        return WinrmArmedCommit(self, command, reader, out.stderr)

    def rollback(
        self, paths: Sequence[str], run_id: str, expected: Mapping[str, str] | None = None
    ) -> None:
        self._run("rollback", psagent.rollback_args(paths, run_id, expected))

    def cleanup(
        self, paths: Sequence[str], run_id: str, keep_backups: int = DEFAULT_BACKUP_RETENTION
    ) -> None:
        self._run("cleanup", psagent.cleanup_args(paths, run_id, keep_backups))

    def list_backups(self, paths: Sequence[str]) -> dict[str, list[str]]:
        result = self._run("list_backups", psagent.list_backups_args(paths))
        return psagent.backups_from_result(result, host=self.host_name)

    def recycle(self) -> None:
        self._run("recycle", psagent.recycle_args(self.host.recycle))

    def audit(self, request: AuditRequest) -> AuditRead:
        result = self._run("audit", psagent.audit_args(request))
        # A rollout's first read may be this op: keep the machine id for identity() too.
        self._machine_id = psagent.machine_id_from_result(result) or self._machine_id
        return psagent.audit_from_result(result, host=self.host_name)


class WinrmArmedCommit(ArmedCommit):
    """The agent's commit command, checks passed, waiting on stdin for the word."""

    def __init__(
        self,
        node: WinrmNode,
        command: RemoteCommand,
        reader: psagent.ArmedReader,
        stderr: bytes,
    ):
        self._node = node
        self._command = command
        self._reader = reader
        self._stderr = stderr
        self._done = False

    def release(self) -> None:
        """One Send message: the word and the end of stdin. No process starts here."""
        self._command.send(psagent.COMMIT_WORD, end=True)

    def wait(self, timeout: float) -> None:
        try:
            self._finish(timeout)
        finally:
            self._close()

    def abort(self) -> None:
        if self._done:
            return
        try:
            self._command.send(psagent.ABORT_WORD, end=True)
            self._finish(self._node.host.timeout)
        finally:
            self._close()

    def _finish(self, timeout: float) -> None:
        out = self._command.collect(time.monotonic() + timeout, until=None)
        self._reader.feed(out.stdout)
        psagent.parse_output(
            self._reader.output,
            host=self._node.host_name,
            phase="commit",
            stderr=self._stderr + out.stderr,
        )

    def _close(self) -> None:
        if not self._done:
            self._done = True
            self._command.terminate()
