"""Fixtures: real OpenSSH sshd test servers (farmsync.lab.sshd), one process per node.

``sshd_node``      one POSIX node with a web root holding a sample web.config
``sshd_farm``      factory: ``sshd_farm(n, windows=False)`` -> n such nodes
``ssh_host``       build a farmsync Host for a node (import it, or use the fixture of that name)
``powershell_shim`` a directory whose ``powershell.exe`` runs the Python node agent, so a
                   node started with ``windows=True`` takes the whole Windows wire path for real
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from farmsync.inventory.model import Host, Shell, SshSettings, Transport
from farmsync.lab.sshd import SshdKeys, SshdNode, descendants

SAMPLE_WEB_CONFIG = b"""<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <!-- sample site -->
  <system.web>
    <compilation debug="false" targetFramework="4.8" />
    <machineKey validationKey="0F1E2D3C4B5A69788796A5B4C3D2E1F00F1E2D3C4B5A69788796A5B4C3D2E1F0"
                decryptionKey="00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF"
                validation="HMACSHA256" decryption="AES" />
  </system.web>
</configuration>
"""

SHIM = """#!/bin/sh
# Stands in for powershell.exe on a Windows OpenSSH node: takes the agent's fixed command
# line and runs the Python twin of the PowerShell node agent instead.
case "$*" in
  *-NonInteractive*-EncodedCommand\\ *) ;;
  *) echo "powershell shim: unexpected command line" >&2; exit 64 ;;
esac
exec {python} -m farmsync.nodes.agent
"""


@dataclass
class SshdTestNode:
    sshd: SshdNode
    web_root: Path

    @property
    def config(self) -> Path:
        return self.web_root / "web.config"

    @property
    def app_config(self) -> Path:
        return self.web_root / "app" / "web.config"

    def host(self, name: str = "web1", **overrides: Any) -> Host:
        return ssh_host(self.sshd, name, **overrides)


def ssh_host(
    node: SshdNode,
    name: str = "web1",
    *,
    windows: bool = False,
    ssh: SshSettings | None = None,
    **overrides: Any,
) -> Host:
    """A farmsync Host reaching ``node`` with its generated client key and pinned host key."""
    host = Host(
        name=name,
        farm="test",
        transport=Transport.SSH,
        address=node.host,
        port=node.port,
        shell=Shell.POWERSHELL if windows else Shell.POSIX,
        user=node.user,
        ssh=ssh
        or SshSettings(
            private_key_file=str(node.client_key_path),
            known_hosts_file=str(node.known_hosts_path),
            allow_agent=False,
        ),
        timeout=10.0,
    )
    return replace(host, **overrides)


def kill_agents_under(sshd: SshdNode) -> int:
    """SIGKILL the twin agent processes running under this sshd (a crash on a Windows node,
    behind the powershell.exe shim); how many were killed."""
    assert sshd.pid is not None
    killed = 0
    for pid in descendants(sshd.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"farmsync.nodes.agent" in cmdline:
            os.kill(pid, signal.SIGKILL)
            killed += 1
    return killed


def sshd_sessions(node: SshdNode) -> tuple[int, int, int]:
    """(connections, SFTP sessions, exec sessions) so far, counted in sshd's own VERBOSE log:
    ``Accepted publickey`` per connection, ``Starting session: ...`` per session channel."""
    log = node.log_path.read_text()
    return (
        log.count("Accepted publickey"),
        log.count("Starting session: subsystem 'sftp'"),
        log.count("Starting session: command"),
    )


@pytest.fixture(scope="session")
def sshd_keys(tmp_path_factory: pytest.TempPathFactory) -> SshdKeys:
    """One host key and one client key for every test sshd of the session."""
    return SshdKeys.generate(tmp_path_factory.mktemp("sshd-keys"))


@pytest.fixture(scope="session")
def powershell_shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("powershell-shim")
    shim = directory / "powershell.exe"
    shim.write_text(SHIM.format(python=sys.executable))
    shim.chmod(0o755)
    return directory


def _make_node(directory: Path, keys: SshdKeys, shim: Path | None, **kwargs: Any) -> SshdTestNode:
    web_root = directory / "www"
    (web_root / "app").mkdir(parents=True)
    (web_root / "web.config").write_bytes(SAMPLE_WEB_CONFIG)
    (web_root / "app" / "web.config").write_bytes(SAMPLE_WEB_CONFIG.replace(b"sample", b"app"))
    path_prefix = (shim,) if shim else ()
    sshd = SshdNode(directory / "sshd", keys=keys, path_prefix=path_prefix, **kwargs)
    sshd.start()
    return SshdTestNode(sshd, web_root)


@pytest.fixture
def sshd_farm(
    tmp_path: Path, sshd_keys: SshdKeys, powershell_shim: Path
) -> Iterator[Callable[..., list[SshdTestNode]]]:
    """Factory: ``sshd_farm(n, windows=False, **SshdNode kwargs)``; all stopped at teardown."""
    started: list[SshdTestNode] = []

    def make(n: int, *, windows: bool = False, **kwargs: Any) -> list[SshdTestNode]:
        nodes = []
        for _ in range(n):
            index = len(started)
            node = _make_node(
                tmp_path / f"node{index}",
                sshd_keys,
                powershell_shim if windows else None,
                **kwargs,
            )
            started.append(node)
            nodes.append(node)
        return nodes

    try:
        yield make
    finally:
        for node in started:
            node.sshd.stop()


@pytest.fixture
def sshd_node(sshd_farm: Callable[..., list[SshdTestNode]]) -> SshdTestNode:
    return sshd_farm(1)[0]
