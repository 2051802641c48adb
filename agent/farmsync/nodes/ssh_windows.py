"""Node operations on a Windows OpenSSH node: the PowerShell node agent, one exec per run.

Windows OpenSSH's SFTP rename onto an existing file has not always been atomic, and renaming
a file onto its own name deletes it, so nothing is replaced over SFTP here. The first
request execs ``psagent.command_line()`` (the same bytes every time) and the agent then
serves every request of the run on that one channel, a request line each
(``agent_session.AgentSession``, PROTOCOL.md "Sessions"); the agent does the replace on the node
with ``[System.IO.File]::Replace``. A rotation is three exchanges: read, ``stage_commit`` up
to its armed line, and the release, whose answer carries the verify hashes and the cleanup.
Closing sends EOF on the channel, which ends the agent.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import paramiko

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.inventory.model import RecycleSpec
from farmsync.nodes import agent_session, psagent
from farmsync.nodes.auditread import AuditRead, AuditRequest
from farmsync.nodes.contract import ArmedCommit, CommitItem, FileState, StageItem
from farmsync.nodes.ssh_connect import SshConnection, node_errors


def _stderr(channel: paramiko.Channel) -> bytes:
    data = b""
    while channel.recv_stderr_ready():
        data += channel.recv_stderr(65536)
    return data


class SshAgentChannel:
    """The session's agent as one exec channel: stdin written in chunks, stdout read until
    the caller's line arrives or EOF (the agent ended)."""

    def __init__(self, host: str, channel: paramiko.Channel):
        self.host = host
        self.channel = channel

    def send(self, data: bytes, phase: str) -> None:
        if self._ended():
            return  # the agent has ended: the receive that follows sees its output's end
        try:
            with node_errors(self.host, phase):
                for chunk in psagent.iter_chunks(data):
                    self.channel.sendall(chunk)
        except NodeError:
            if self._ended():  # it ended while we wrote: said the same way
                return
            raise

    def _ended(self) -> bool:
        channel = self.channel
        return bool(channel.closed or channel.eof_received or channel.exit_status_ready())

    def receive(
        self, deadline: float, until: Callable[[bytes], bool], phase: str
    ) -> agent_session.Received:
        data = bytearray()
        ended = False
        with node_errors(self.host, phase):
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.drop()
                    raise NodeError(
                        self.host, NodeErrorKind.TIMEOUT, "no answer from the node", phase=phase
                    )
                self.channel.settimeout(remaining)
                chunk = self.channel.recv(65536)
                if not chunk:
                    ended = True
                    break
                data += chunk
                if until(chunk):
                    break
            return agent_session.Received(bytes(data), _stderr(self.channel), ended)

    def drop(self) -> None:
        self.channel.close()

    def close(self) -> None:
        """EOF on stdin: the agent ends after its last answer, at no round trip."""
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            self.channel.shutdown_write()
        self.channel.close()


class PowerShellOps:
    """Every phase a request of the run's one agent session."""

    def __init__(self, conn: SshConnection):
        self.conn = conn
        self.host = conn.host.name
        self.timeout = conn.host.timeout
        self.session = agent_session.AgentSession(self.host, self._open_agent, self.timeout)

    def _open_agent(self, phase: str) -> agent_session.AgentChannel:
        return SshAgentChannel(self.host, self.conn.exec(psagent.command_line()))

    def run(self, op: str, args: Mapping[str, Any], phase: str) -> dict[str, Any]:
        return self.session.request(op, args, phase)

    def close(self) -> None:
        self.session.close()

    # --- the phases, each one request ----------------------------------------------------
    def read(self, paths: Sequence[str]) -> dict[str, FileState]:
        result = self.run("read", psagent.read_args(paths), "read")
        return psagent.files_from_result(result, host=self.host)

    def stage(self, items: Sequence[StageItem], run_id: str) -> None:
        self.run("stage", psagent.stage_args(items, run_id), "stage")

    def rollback(
        self, paths: Sequence[str], run_id: str, expected: Mapping[str, str] | None = None
    ) -> None:
        self.run("rollback", psagent.rollback_args(paths, run_id, expected), "rollback")

    def cleanup(self, paths: Sequence[str], run_id: str, keep_backups: int) -> None:
        self.run("cleanup", psagent.cleanup_args(paths, run_id, keep_backups), "cleanup")

    def list_backups(self, paths: Sequence[str]) -> dict[str, list[str]]:
        result = self.run("list_backups", psagent.list_backups_args(paths), "list-backups")
        return psagent.backups_from_result(result, host=self.host)

    def recycle(self, spec: RecycleSpec) -> None:
        self.run("recycle", psagent.recycle_args(spec), "recycle")

    def audit(self, request: AuditRequest) -> AuditRead:
        result = self.run("audit", psagent.audit_args(request), "audit")
        return psagent.audit_from_result(result, host=self.host)

    def doctor(self, paths: Sequence[str]) -> dict[str, Any]:
        return self.run("doctor", {"paths": list(paths)}, "doctor")

    def arm_commit(self, items: Sequence[CommitItem], run_id: str) -> ArmedCommit:
        return self.session.arm("commit", psagent.commit_args(items, run_id))

    def stage_and_arm(
        self,
        stage_items: Sequence[StageItem],
        commit_items: Sequence[CommitItem],
        run_id: str,
        keep_backups: int,
    ) -> ArmedCommit:
        items = list(zip(stage_items, commit_items, strict=True))
        args = psagent.stage_commit_args(items, run_id, keep_backups)
        return self.session.arm("stage_commit", args)
