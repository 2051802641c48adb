"""SSH authentication through a real ssh-agent holding the only key the node accepts."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.inventory.model import SshSettings
from farmsync.nodes.contract import FileStatus
from farmsync.nodes.ssh import SshNode
from tests.servers.sshd_fixtures import SshdTestNode


@pytest.fixture
def agent_socket(tmp_path: Path, sshd_node: SshdTestNode) -> Iterator[Path]:
    """A real ssh-agent (openssh-client) with the node's client key loaded; killed by pid."""
    socket = tmp_path / "agent.sock"
    started = subprocess.run(
        ["ssh-agent", "-s", "-a", str(socket)], capture_output=True, text=True, check=True
    )
    pid = int(started.stdout.split("SSH_AGENT_PID=")[1].split(";")[0])
    try:
        env = {**os.environ, "SSH_AUTH_SOCK": str(socket)}
        subprocess.run(
            ["ssh-add", str(sshd_node.sshd.client_key_path)],
            env=env,
            capture_output=True,
            check=True,
        )
        yield socket
    finally:
        os.kill(pid, signal.SIGTERM)


def test_the_agent_key_logs_in_when_no_key_file_is_given(
    sshd_node: SshdTestNode, agent_socket: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSH_AUTH_SOCK", str(agent_socket))
    pinned = SshSettings(known_hosts_file=str(sshd_node.sshd.known_hosts_path), allow_agent=True)
    with SshNode(sshd_node.host(ssh=pinned)) as node:
        state = node.read([str(sshd_node.config)])[str(sshd_node.config)]
    assert state.status is FileStatus.OK


def test_without_the_agent_the_same_host_is_refused(
    sshd_node: SshdTestNode, agent_socket: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSH_AUTH_SOCK", str(agent_socket))
    pinned = SshSettings(known_hosts_file=str(sshd_node.sshd.known_hosts_path), allow_agent=False)
    host = replace(sshd_node.host(ssh=pinned), timeout=5.0)
    monkeypatch.setenv("HOME", str(agent_socket.parent))  # no ~/.ssh keys to fall back on
    with pytest.raises(NodeError) as info:
        SshNode(host).connect()
    assert info.value.kind is NodeErrorKind.AUTH
