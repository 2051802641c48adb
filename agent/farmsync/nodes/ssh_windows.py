"""Node operations on a Windows OpenSSH node: the PowerShell node agent over one exec per phase.

Windows OpenSSH's SFTP rename onto an existing file has not always been atomic, and renaming
a file onto its own name deletes it, so nothing is replaced over SFTP here: every phase runs
``psagent.command_line()`` (the same bytes every time) and sends its request on stdin; the
agent does the replace on the node with ``[System.IO.File]::Replace``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import paramiko

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.inventory.model import RecycleSpec
from farmsync.nodes import psagent
from farmsync.nodes.auditread import AuditRead, AuditRequest
from farmsync.nodes.contract import ArmedCommit, CommitItem, FileState, StageItem
from farmsync.nodes.ssh_connect import SshConnection, node_errors


def _read_to_end(host: str, channel: paramiko.Channel, phase: str, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    data = bytearray()
    with node_errors(host, phase):
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NodeError(host, NodeErrorKind.TIMEOUT, "no answer from the node", phase=phase)
            channel.settimeout(remaining)
            chunk = channel.recv(65536)
            if not chunk:
                return bytes(data)
            data += chunk


def _stderr(channel: paramiko.Channel) -> bytes:
    data = b""
    while channel.recv_stderr_ready():
        data += channel.recv_stderr(65536)
    return data


def _send(host: str, channel: paramiko.Channel, phase: str, data: bytes) -> None:
    with node_errors(host, phase):
        for chunk in psagent.iter_chunks(data):
            channel.sendall(chunk)


class AgentArmedCommit(ArmedCommit):
    """The agent's commit process, past its checks and waiting for the word on stdin."""

    def __init__(self, host: str, channel: paramiko.Channel, reader: psagent.ArmedReader):
        self.host = host
        self.channel = channel
        self.reader = reader
        self._closed = False

    def release(self) -> None:
        _send(self.host, self.channel, "commit", psagent.COMMIT_WORD)

    def wait(self, timeout: float) -> None:
        try:
            self.reader.feed(_read_to_end(self.host, self.channel, "commit", timeout))
            psagent.parse_output(
                self.reader.output, host=self.host, phase="commit", stderr=_stderr(self.channel)
            )
        finally:
            self._close()

    def abort(self) -> None:
        if self._closed:
            return
        try:
            _send(self.host, self.channel, "commit", psagent.ABORT_WORD)
            self.reader.feed(_read_to_end(self.host, self.channel, "commit", 30.0))
        finally:
            self._close()

    def _close(self) -> None:
        self._closed = True
        self.channel.close()


class PowerShellOps:
    """Each phase: one exec of the fixed agent command line, request on stdin."""

    def __init__(self, conn: SshConnection):
        self.conn = conn
        self.host = conn.host.name
        self.timeout = conn.host.timeout

    def run(self, op: str, args: Mapping[str, Any], phase: str) -> dict[str, Any]:
        channel = self.conn.exec(psagent.command_line())
        try:
            _send(self.host, channel, phase, psagent.request_line(op, args))
            with node_errors(self.host, phase):
                channel.shutdown_write()
            out = _read_to_end(self.host, channel, phase, self.timeout)
            with node_errors(self.host, phase):
                channel.status_event.wait(self.timeout)
            return psagent.parse_output(out, host=self.host, phase=phase, stderr=_stderr(channel))
        finally:
            channel.close()

    # --- the phases, each one exec -------------------------------------------------------
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
        args = psagent.commit_args(items, run_id)
        channel = self.conn.exec(psagent.command_line())
        reader = psagent.ArmedReader()
        try:
            _send(self.host, channel, "commit", psagent.request_line("commit", args))
            deadline = time.monotonic() + self.timeout
            with node_errors(self.host, "commit"):
                while not reader.armed and not reader.finished:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise NodeError(
                            self.host,
                            NodeErrorKind.TIMEOUT,
                            "commit was not armed in time",
                            phase="commit",
                        )
                    channel.settimeout(remaining)
                    chunk = channel.recv(65536)
                    if not chunk:
                        break
                    reader.feed(chunk)
            if not reader.armed:
                psagent.parse_output(
                    reader.output, host=self.host, phase="commit", stderr=_stderr(channel)
                )
                raise NodeError(
                    self.host,
                    NodeErrorKind.PROTOCOL,
                    "the agent did not arm the commit",
                    phase="commit",
                )
        except BaseException:
            channel.close()
            raise
        return AgentArmedCommit(self.host, channel, reader)
