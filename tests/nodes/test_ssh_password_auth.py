"""SSH password authentication against a real sshd, for a throwaway local account.

The account is created for the test and deleted afterwards (root only, as CI runs); the
password comes from the inventory's Secret, never from a file or the command line.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.inventory.model import Secret, SshSettings
from farmsync.lab.sshd import SshdKeys, SshdNode
from farmsync.nodes.contract import FileStatus
from farmsync.nodes.ssh import SshNode
from tests.servers.sshd_fixtures import ssh_host

pytestmark = pytest.mark.needs_root  # each test creates a local account


@pytest.fixture
def account() -> Iterator[tuple[str, str]]:
    name = f"fs{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(18)
    subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", name], check=True)
    try:
        subprocess.run(["chpasswd"], input=f"{name}:{password}", text=True, check=True)
        yield name, password
    finally:
        # --force: a session of the account may still be closing on the test sshd.
        subprocess.run(["userdel", "--force", name], check=False, capture_output=True)


@pytest.fixture
def password_sshd(tmp_path: Path, sshd_keys: SshdKeys) -> Iterator[SshdNode]:
    node = SshdNode(tmp_path / "sshd", keys=sshd_keys, extra_config=["PasswordAuthentication yes"])
    node.start()
    try:
        yield node
    finally:
        node.stop()


def test_password_login_reads_the_node(password_sshd: SshdNode, account: tuple[str, str]) -> None:
    user, password = account
    shared = Path(tempfile.mkdtemp(prefix="farmsync-pw-"))  # readable by the test account
    shared.chmod(0o755)
    config = shared / "web.config"
    config.write_bytes(b"<configuration/>")
    config.chmod(0o644)
    pinned = SshSettings(known_hosts_file=str(password_sshd.known_hosts_path), allow_agent=False)
    host = ssh_host(password_sshd, ssh=pinned, user=user, password=Secret(password))
    try:
        with SshNode(host) as node:
            state = node.read([str(config)])[str(config)]
    finally:
        shutil.rmtree(shared)
    assert state.status is FileStatus.OK and state.content == b"<configuration/>"


def test_a_wrong_password_is_an_auth_error_that_does_not_quote_it(
    password_sshd: SshdNode, account: tuple[str, str]
) -> None:
    user, _ = account
    wrong = secrets.token_urlsafe(18)
    pinned = SshSettings(known_hosts_file=str(password_sshd.known_hosts_path), allow_agent=False)
    host = replace(
        ssh_host(password_sshd, ssh=pinned, user=user, password=Secret(wrong)), timeout=10.0
    )
    with pytest.raises(NodeError) as info:
        SshNode(host).connect()
    assert info.value.kind is NodeErrorKind.AUTH
    assert wrong not in str(info.value)
