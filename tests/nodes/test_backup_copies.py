"""Backups made by copying, where the live file can take no more hard links (issue 14, #1).

A commit keeps the original by hard-linking it to the backup name; where that fails
(EMLINK, or a filesystem without hard links) it copies instead. Either way the backup is
created exclusively: an existing backup of the run is never replaced. The fault is real: a
loop-mounted ext4 (root only), where a file has 65,000 links at most.
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
from farmsync.nodes.contract import CommitItem, StageItem, backup_path, sha256_hex
from farmsync.nodes.ssh import SshNode
from tests.servers.sshd_fixtures import SAMPLE_WEB_CONFIG, SshdTestNode

OLD = SAMPLE_WEB_CONFIG
NEW = SAMPLE_WEB_CONFIG.replace(b"0F1E2D3C", b"AAAABBBB")


@pytest.fixture
def no_more_links(tmp_path: Path) -> Iterator[Path]:
    """A live web.config (mode 0640) on a loop-mounted ext4 that has all the links it can."""
    if os.getuid() != 0:
        pytest.fail("this test loop-mounts an ext4 image and must run as root")
    image, mount = tmp_path / "ext4.img", tmp_path / "ext4"
    mount.mkdir()
    with open(image, "wb") as f:
        f.truncate(32 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    try:
        live = mount / "www" / "web.config"
        live.parent.mkdir()
        live.write_bytes(OLD)
        live.chmod(0o640)
        (mount / "links").mkdir()
        for n in range(70_000):
            try:
                os.link(live, mount / "links" / str(n))
            except OSError as exc:
                assert exc.errno == errno.EMLINK
                break
        else:
            pytest.fail("ext4 did not limit the links")
        yield live
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def _copy_kept(live: Path, run_id: str, before_ino: int) -> None:
    backup = Path(backup_path(str(live), run_id))
    assert backup.read_bytes() == OLD
    assert backup.stat().st_ino != before_ino, "a copy, not a link"
    assert oct(backup.stat().st_mode & 0o777) == oct(0o640)
    assert live.read_bytes() == NEW


def test_the_agent_copies_exclusively_when_no_link_is_possible(no_more_links: Path) -> None:
    live, ino = no_more_links, no_more_links.stat().st_ino
    agent.stage_files([StageItem(str(live), NEW, sha256_hex(OLD))], "run1")
    agent.commit_files([CommitItem(str(live), sha256_hex(OLD), sha256_hex(NEW))], "run1")
    _copy_kept(live, "run1", ino)
    # A second commit of the run on the same file (an alias): refused, the copy stays.
    live.write_bytes(OLD)
    agent.stage_files([StageItem(str(live), NEW, sha256_hex(OLD))], "run1")
    Path(backup_path(str(live), "run1")).write_bytes(b"the first alias's original")
    with pytest.raises(agent.AgentError) as err:
        agent.commit_files([CommitItem(str(live), sha256_hex(OLD), sha256_hex(NEW))], "run1")
    assert err.value.kind is NodeErrorKind.BACKUP_EXISTS
    assert Path(backup_path(str(live), "run1")).read_bytes() == b"the first alias's original"
    assert live.read_bytes() == OLD


def test_the_armed_shell_copies_exclusively_when_no_link_is_possible(
    no_more_links: Path, sshd_node: SshdTestNode
) -> None:
    live, ino = no_more_links, no_more_links.stat().st_ino
    with SshNode(sshd_node.host()) as node:
        node.stage([StageItem(str(live), NEW, sha256_hex(OLD))], "run1")
        node.commit([CommitItem(str(live), sha256_hex(OLD), sha256_hex(NEW))], "run1")
        # The SFTP commit's probe found the live file at its link limit: the armed shell ran.
        assert len(node.warnings) == 1 and "armed shell" in node.warnings[0]
        assert len(node.sent_commands) == 1
        _copy_kept(live, "run1", ino)
        live.write_bytes(OLD)
        node.stage([StageItem(str(live), NEW, sha256_hex(OLD))], "run1")
        Path(backup_path(str(live), "run1")).write_bytes(b"the first alias's original")
        with pytest.raises(NodeError) as err:
            node.commit([CommitItem(str(live), sha256_hex(OLD), sha256_hex(NEW))], "run1")
    assert err.value.kind is NodeErrorKind.BACKUP_EXISTS
    assert Path(backup_path(str(live), "run1")).read_bytes() == b"the first alias's original"
    assert live.read_bytes() == OLD
