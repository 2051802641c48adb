"""Faults on a real node: each is a clear per-node error and never leaves a live file half-written.

Permission denied is real even when the tests run as root: the test sshd runs without
CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH (farmsync.lab.sshd), so file modes bind it. The full
disk is a real 64 KiB tmpfs, which needs root (CAP_SYS_ADMIN) to mount.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.nodes import agent
from farmsync.nodes.contract import (
    CommitItem,
    FileStatus,
    StageItem,
    backup_path,
    sha256_hex,
    staging_path,
)
from farmsync.nodes.ssh import SshNode
from farmsync.nodes.ssh_connect import map_error
from tests.servers.sshd_fixtures import SAMPLE_WEB_CONFIG, SshdTestNode

pytestmark = pytest.mark.slow  # a fault suite: `make fast` leaves it out

NEW = SAMPLE_WEB_CONFIG.replace(b"0F1E2D3C", b"AAAABBBB")
H = sha256_hex(SAMPLE_WEB_CONFIG)


def _stage_error(node: SshdTestNode, items: list[StageItem]) -> NodeError:
    with SshNode(node.host()) as ssh, pytest.raises(NodeError) as err:
        ssh.stage(items, "r1")
    return err.value


def test_unreadable_file_is_a_permission_error(sshd_node: SshdTestNode) -> None:
    sshd_node.config.chmod(0o200)  # the owner may write, not read
    with SshNode(sshd_node.host()) as node:
        state = node.read([str(sshd_node.config)])[str(sshd_node.config)]
    assert state.status is FileStatus.ERROR
    assert state.error_kind is NodeErrorKind.PERMISSION


def test_stage_into_read_only_directory_is_permission_denied(sshd_node: SshdTestNode) -> None:
    sshd_node.web_root.chmod(0o555)
    try:
        error = _stage_error(sshd_node, [StageItem(str(sshd_node.config), NEW, H)])
    finally:
        sshd_node.web_root.chmod(0o755)
    assert error.kind is NodeErrorKind.PERMISSION
    assert error.path == str(sshd_node.config)
    assert sshd_node.config.read_bytes() == SAMPLE_WEB_CONFIG


def test_target_that_is_a_directory(sshd_node: SshdTestNode) -> None:
    target = sshd_node.web_root / "app"
    with SshNode(sshd_node.host()) as node:
        state = node.read([str(target)])[str(target)]
    assert state.status is FileStatus.ERROR
    assert state.error_kind is NodeErrorKind.IS_DIRECTORY
    error = _stage_error(sshd_node, [StageItem(str(target), NEW, H)])
    assert error.kind is NodeErrorKind.IS_DIRECTORY
    assert error.path == str(target)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs holding a web.config; unmounted at teardown."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tiny", str(mount)], check=True
    )
    try:
        (mount / "web.config").write_bytes(SAMPLE_WEB_CONFIG)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.needs_root
def test_full_disk_is_reported_and_cleaned_up(sshd_node: SshdTestNode, tiny_disk: Path) -> None:
    live = tiny_disk / "web.config"
    big = SAMPLE_WEB_CONFIG + b"<!--" + b"x" * 200_000 + b"-->"
    error = _stage_error(sshd_node, [StageItem(str(live), big, H)])
    assert error.kind is NodeErrorKind.DISK_FULL
    assert live.read_bytes() == SAMPLE_WEB_CONFIG
    assert sorted(os.listdir(tiny_disk)) == ["web.config"]  # no staging file left behind


@pytest.mark.needs_root
def test_multi_file_stage_is_all_or_nothing(sshd_node: SshdTestNode, tiny_disk: Path) -> None:
    ok, full = sshd_node.config, tiny_disk / "web.config"
    big = b"<!--" + b"x" * 200_000 + b"-->"
    error = _stage_error(sshd_node, [StageItem(str(ok), NEW, H), StageItem(str(full), big, H)])
    assert error.kind is NodeErrorKind.DISK_FULL
    assert error.path == str(full)
    assert not Path(staging_path(str(ok), "r1")).exists()


def test_commit_failing_on_the_node_leaves_live_files_whole(sshd_node: SshdTestNode) -> None:
    live = sshd_node.config
    with SshNode(sshd_node.host()) as node:
        node.stage([StageItem(str(live), NEW, H)], "r1")
        armed = node.arm_commit([CommitItem(str(live), H, sha256_hex(NEW))], "r1")
        sshd_node.web_root.chmod(0o555)  # after arming: the backup can no longer be made
        try:
            armed.release()
            with pytest.raises(NodeError) as err:
                armed.wait(10)
        finally:
            sshd_node.web_root.chmod(0o755)
    assert err.value.kind is NodeErrorKind.PERMISSION
    assert err.value.path == str(live)
    assert live.read_bytes() == SAMPLE_WEB_CONFIG
    assert not Path(backup_path(str(live), "r1")).exists()


def test_commit_undoes_earlier_files_when_a_later_one_fails(sshd_node: SshdTestNode) -> None:
    first, second = sshd_node.config, sshd_node.app_config
    items = [
        StageItem(str(p), NEW, H2)
        for p, H2 in ((first, H), (second, sha256_hex(second.read_bytes())))
    ]
    with SshNode(sshd_node.host()) as node:
        node.stage(items, "r1")
        armed = node.arm_commit(
            [CommitItem(i.path, i.expected_sha256, sha256_hex(NEW)) for i in items], "r1"
        )
        (sshd_node.web_root / "app").chmod(0o555)  # the second file's directory
        try:
            armed.release()
            with pytest.raises(NodeError) as err:
                armed.wait(10)
        finally:
            (sshd_node.web_root / "app").chmod(0o755)
    assert err.value.path == str(second)
    assert first.read_bytes() == SAMPLE_WEB_CONFIG  # put back from its backup
    assert second.read_bytes() != NEW


def test_lost_connection_is_a_node_error(sshd_node: SshdTestNode) -> None:
    with SshNode(sshd_node.host()) as node:
        node.read([str(sshd_node.config)])
        sshd_node.sshd.stop()  # kills the per-connection sshd too
        with pytest.raises(NodeError) as err:
            node.read([str(sshd_node.config)])
    assert err.value.kind in (NodeErrorKind.CONNECTION_LOST, NodeErrorKind.TIMEOUT)


@pytest.mark.parametrize(
    "code",
    [
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EFBIG,
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.EISDIR,
        errno.ENOENT,
    ],
)
def test_the_ssh_transport_maps_errno_as_the_agent_does(code: int) -> None:
    """One table of error kinds: an EDQUOT over SSH is what it is from the agent."""
    exc = OSError(code, os.strerror(code))
    assert map_error("web1", exc, "stage", "/srv/web.config").kind is agent.error_kind(exc)
