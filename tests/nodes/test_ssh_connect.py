"""Connecting over SSH against real sshd: host keys, auth, jump host, unreachable, timeout."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.inventory.model import SshSettings
from farmsync.lab.sshd import SshdKeys, free_port, generate_key
from farmsync.nodes.ssh import SshNode
from tests.servers.sshd_fixtures import SshdTestNode


def _connect_error(node: SshNode) -> NodeError:
    with pytest.raises(NodeError) as err:
        node.connect()
    node.close()
    return err.value


def test_unknown_host_key_is_refused_and_not_recorded(sshd_node: SshdTestNode) -> None:
    user_known_hosts = Path(os.path.expanduser("~/.ssh/known_hosts"))
    before = user_known_hosts.read_bytes() if user_known_hosts.exists() else None
    settings = SshSettings(private_key_file=str(sshd_node.sshd.client_key_path), allow_agent=False)
    error = _connect_error(SshNode(sshd_node.host("web7", ssh=settings)))
    assert error.kind is NodeErrorKind.HOST_KEY
    assert error.host == "web7"
    assert f"[127.0.0.1]:{sshd_node.sshd.port}" in error.detail
    assert (user_known_hosts.read_bytes() if user_known_hosts.exists() else None) == before


def test_changed_host_key_is_refused(sshd_node: SshdTestNode, tmp_path: Path) -> None:
    other = generate_key(tmp_path / "other_host_key", "impostor").split()
    pinned = tmp_path / "known_hosts"
    pinned.write_text(f"[127.0.0.1]:{sshd_node.sshd.port} {other[0]} {other[1]}\n")
    settings = SshSettings(
        private_key_file=str(sshd_node.sshd.client_key_path),
        known_hosts_file=str(pinned),
        allow_agent=False,
    )
    error = _connect_error(SshNode(sshd_node.host("web2", ssh=settings)))
    assert error.kind is NodeErrorKind.HOST_KEY
    assert "web2" in str(error)
    assert "CHANGED" in error.detail


def test_wrong_user_key_is_auth_error(sshd_node: SshdTestNode, tmp_path: Path) -> None:
    stranger = SshdKeys.generate(tmp_path / "stranger")
    settings = SshSettings(
        private_key_file=str(stranger.client_key_path),
        known_hosts_file=str(sshd_node.sshd.known_hosts_path),
        allow_agent=False,
    )
    error = _connect_error(SshNode(sshd_node.host(ssh=settings)))
    assert error.kind is NodeErrorKind.AUTH
    assert error.host == "web1"


def test_closed_port_is_unreachable(sshd_node: SshdTestNode) -> None:
    error = _connect_error(SshNode(sshd_node.host(port=free_port())))
    assert error.kind is NodeErrorKind.UNREACHABLE


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
    server.close()
    for conn in accepted:
        conn.close()
    thread.join(5)


def test_silent_server_times_out(sshd_node: SshdTestNode, silent_listener: int) -> None:
    error = _connect_error(SshNode(sshd_node.host(port=silent_listener, timeout=0.5)))
    assert error.kind is NodeErrorKind.TIMEOUT


def _via(jump: SshdTestNode, target: SshdTestNode, known: Path) -> SshSettings:
    known.write_text(jump.sshd.known_hosts_line() + "\n" + target.sshd.known_hosts_line() + "\n")
    return SshSettings(
        private_key_file=str(target.sshd.client_key_path),
        known_hosts_file=str(known),
        jump_host=f"{jump.sshd.user}@127.0.0.1:{jump.sshd.port}",
        allow_agent=False,
    )


def test_jump_host(sshd_farm: Callable[..., list[SshdTestNode]], tmp_path: Path) -> None:
    jump, target = sshd_farm(2)
    with SshNode(target.host(ssh=_via(jump, target, tmp_path / "known_hosts"))) as node:
        states = node.read([str(target.config)])
    assert states[str(target.config)].content == target.config.read_bytes()


def test_jump_host_that_refuses_forwarding(
    sshd_farm: Callable[..., list[SshdTestNode]], tmp_path: Path
) -> None:
    # Proves the path really goes through the jump host: when it will not forward, no luck.
    (target,) = sshd_farm(1)
    (jump,) = sshd_farm(1, extra_config=["AllowTcpForwarding no"])
    error = _connect_error(SshNode(target.host(ssh=_via(jump, target, tmp_path / "kh"))))
    assert error.kind is NodeErrorKind.UNREACHABLE
    assert f"127.0.0.1:{jump.sshd.port}" in error.detail


def test_jump_host_key_is_checked_too(
    sshd_farm: Callable[..., list[SshdTestNode]], tmp_path: Path
) -> None:
    jump, target = sshd_farm(2)
    settings = SshSettings(
        private_key_file=str(target.sshd.client_key_path),
        known_hosts_file=str(target.sshd.known_hosts_path),  # the jump host is not pinned
        jump_host=f"127.0.0.1:{jump.sshd.port}",
        allow_agent=False,
    )
    error = _connect_error(SshNode(target.host(ssh=settings)))
    assert error.kind is NodeErrorKind.HOST_KEY
    assert f"[127.0.0.1]:{jump.sshd.port}" in error.detail
