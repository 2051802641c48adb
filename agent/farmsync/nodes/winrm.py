"""Node operations over WinRM: the PowerShell node agent, one shell and one command per run.

``connect`` opens one remote shell. The first request starts the agent as one Command of
the fixed ``psagent.command_line()`` (the same bytes for every op, far below cmd.exe's 8,191
characters, never a path, content or key); every request of the run is then one more line
on its stdin (one Send, more only past ``SEND_CHUNK``) and Receive until the result line,
the command still running (``agent_session.AgentSession``, PROTOCOL.md "Sessions"). A rotation is
three exchanges: read, ``stage_commit`` up to its armed line, and the release, one Send of
the word, whose answer carries the verify hashes and the cleanup. Closing deletes the shell,
which ends the agent: 9 HTTP requests per node per rotation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from winrm.protocol import Protocol

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.inventory.describe import describe_trust
from farmsync.inventory.model import Host
from farmsync.nodes import agent_session, psagent
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
    """A Windows node over WinRM (pywinrm), with one shell and one agent per run."""

    def __init__(self, host: Host, protocol_factory: Callable[[Host], Protocol] = build_protocol):
        super().__init__(host.name)
        self.host = host
        self.shell = WinrmShell(host, protocol_factory, warnings=self.warnings)
        self.session = agent_session.AgentSession(host.name, self._open_agent, host.timeout)
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
        # Delete Shell ends the agent: no Signal, no end of stdin (each a request of its own).
        self.session.close()
        self.shell.close()

    # --- one session: the agent started once, a request line per phase -----------------
    def _open_agent(self, phase: str) -> agent_session.AgentChannel:
        if not self.shell.is_open:
            raise NodeError(self.host_name, NodeErrorKind.PROTOCOL, "not connected", phase=phase)
        return WinrmAgentChannel(self.shell.start(psagent.command_line(), phase))

    def _run(self, op: str, args: Mapping[str, Any]) -> dict[str, Any]:
        self.round_trips += 1
        return self.session.request(op, args)

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
        self.round_trips += 1
        return self.session.arm("commit", psagent.commit_args(items, run_id))

    def stage_and_arm(
        self,
        stage_items: Sequence[StageItem],
        commit_items: Sequence[CommitItem],
        run_id: str,
        keep_backups: int = DEFAULT_BACKUP_RETENTION,
    ) -> ArmedCommit:
        """One ``stage_commit`` exchange: staged and armed; its release verifies and cleans up."""
        self.round_trips += 1
        items = list(zip(stage_items, commit_items, strict=True))
        args = psagent.stage_commit_args(items, run_id, keep_backups)
        return self.session.arm("stage_commit", args)

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

    def doctor(self, paths: Sequence[str]) -> dict[str, Any]:
        return self._run("doctor", {"paths": list(paths)})

    def login_facts(self) -> dict[str, str]:
        verified = describe_trust(self.host)
        cert = self.shell.peer_certificate_sha256
        if cert is not None:
            verified += f" (certificate sha256:{cert[:16]}…)"
        return {"auth": f"winrm {self.host.winrm.transport}", "verified": verified}


class WinrmAgentChannel:
    """The session's agent as one Command in the run's shell: a Send per request line (more
    only past SEND_CHUNK), Receive until the result line while the command keeps running."""

    def __init__(self, command: RemoteCommand):
        self.command = command

    def send(self, data: bytes, phase: str) -> None:
        self.command.phase = phase
        self.command.send(data)

    def receive(
        self, deadline: float, until: Callable[[bytes], bool], phase: str
    ) -> agent_session.Received:
        self.command.phase = phase
        out = self.command.collect(deadline, until=until)
        return agent_session.Received(out.stdout, out.stderr, out.exit_code is not None)

    def drop(self) -> None:
        self.command.terminate()

    def close(self) -> None:
        """Nothing to send: deleting the shell ends the agent."""
