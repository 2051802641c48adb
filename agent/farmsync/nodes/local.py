"""The ``local`` transport (``ansible_connection: local``): this machine's own files.

Calls the node agent's functions in-process, so local nodes get exactly the semantics the
remote agents have (staging beside the target, atomic replace, backups, error kinds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from farmsync.errors import NodeError
from farmsync.inventory.model import Host
from farmsync.nodes import agent, agent_audit
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


def _node_error(host: str, phase: str, err: agent.AgentError) -> NodeError:
    return NodeError(host, err.kind, err.detail, phase=phase, path=err.path)


class LocalArmedCommit(ArmedCommit):
    """Checks ran at arm time; ``release`` does the replace, ``wait`` reports its outcome."""

    def __init__(self, node: LocalNode, items: Sequence[CommitItem], run_id: str):
        self._node = node
        self._items = list(items)
        self._run_id = run_id
        self._state = "armed"
        self._error: NodeError | None = None

    def release(self) -> None:
        if self._state != "armed":
            raise RuntimeError(f"commit is {self._state}, cannot release")
        self._state = "released"
        try:
            agent.commit_files(self._items, self._run_id)
        except agent.AgentError as err:
            self._error = _node_error(self._node.host_name, "commit", err)

    def wait(self, timeout: float) -> None:
        if self._state != "released":
            raise RuntimeError(f"commit is {self._state}, nothing to wait for")
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        if self._state == "armed":
            self._state = "aborted"


class LocalNode(NodeOperations):
    """Node operations on this machine's filesystem."""

    def __init__(self, host: Host):
        super().__init__(host.name)
        self.host = host

    def connect(self) -> None:
        """Nothing to open: the files are here."""

    def identity(self) -> NodeIdentity:
        # Every local host is this machine: their files are compared with each other, but
        # two local hosts are not one node twice (each manages its own files).
        return NodeIdentity(f"local machine {agent.machine_id() or 'unknown'}", unique=False)

    def close(self) -> None:
        """Nothing to close."""

    def _call_failed(self, phase: str, err: agent.AgentError) -> NodeError:
        return _node_error(self.host_name, phase, err)

    def read(self, paths: Sequence[str]) -> dict[str, FileState]:
        self.round_trips += 1
        return {state.path: state for state in agent.read_files(paths)}

    def stage(self, items: Sequence[StageItem], run_id: str) -> None:
        self.round_trips += 1
        try:
            agent.stage_files(items, run_id)
        except agent.AgentError as err:
            raise self._call_failed("stage", err) from None

    def arm_commit(self, items: Sequence[CommitItem], run_id: str) -> ArmedCommit:
        self.round_trips += 1
        try:
            agent.check_commit(items, run_id)
        except agent.AgentError as err:
            raise self._call_failed("commit", err) from None
        return LocalArmedCommit(self, items, run_id)

    def rollback(
        self, paths: Sequence[str], run_id: str, expected: Mapping[str, str] | None = None
    ) -> None:
        self.round_trips += 1
        try:
            agent.rollback_files(paths, run_id, expected)
        except agent.AgentError as err:
            raise self._call_failed("rollback", err) from None

    def cleanup(
        self, paths: Sequence[str], run_id: str, keep_backups: int = DEFAULT_BACKUP_RETENTION
    ) -> None:
        self.round_trips += 1
        try:
            agent.cleanup_files(paths, run_id, keep_backups)
        except agent.AgentError as err:
            raise self._call_failed("cleanup", err) from None

    def list_backups(self, paths: Sequence[str]) -> dict[str, list[str]]:
        self.round_trips += 1
        try:
            return agent.list_backups(paths)
        except agent.AgentError as err:
            raise self._call_failed("list_backups", err) from None

    def audit(self, request: AuditRequest) -> AuditRead:
        self.round_trips += 1
        return agent_audit.audit_read(request)

    def recycle(self) -> None:
        self.round_trips += 1
        spec = self.host.recycle
        try:
            agent.recycle(spec.kind.value, spec.command, spec.app_pools, self.host.timeout)
        except agent.AgentError as err:
            raise self._call_failed("recycle", err) from None
