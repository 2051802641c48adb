"""The POSIX commit over SFTP alone (issue 9), with every issue-14 fence, on a real sshd.

Counting is sshd's own: its VERBOSE log has one ``Accepted publickey`` line per connection and
one ``Starting session: subsystem 'sftp'`` or ``Starting session: command`` per session
channel. Faults in the SFTP channel are placed exactly by ``tests/servers/sftp_proxy.py``,
the real sftp-server behind a proxy that drops, kills or holds it at the release.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.nodes.contract import (
    CommitItem,
    StageItem,
    backup_path,
    sha256_hex,
    staging_path,
)
from farmsync.nodes.sftp_commit import stat_proves
from farmsync.nodes.ssh import SshNode
from tests.servers import sftp_proxy
from tests.servers.sshd_fixtures import SAMPLE_WEB_CONFIG, SshdTestNode, sshd_sessions

NEW = SAMPLE_WEB_CONFIG.replace(b"0F1E2D3C", b"AAAABBBB")
# Denied by the request names `sftp-server -Q requests` lists (not the extension names).
DENY_BOTH = "internal-sftp -P hardlink,posix-rename"


def _arm(node: SshNode, paths: list[Path], run_id: str = "r1") -> list[CommitItem]:
    states = node.read([str(p) for p in paths])
    items = [StageItem(str(p), NEW, states[str(p)].sha256 or "") for p in paths]
    node.stage(items, run_id)
    return [CommitItem(i.path, i.expected_sha256, sha256_hex(NEW)) for i in items]


def _proxied(
    sshd_farm: Callable[..., list[SshdTestNode]], tmp_path: Path, mode: str
) -> tuple[SshdTestNode, Path]:
    control = tmp_path / "control"
    control.mkdir()
    (control / "mode").write_text(mode)
    command = f"{sys.executable} {sftp_proxy.__file__} {control}"
    return sshd_farm(1, sftp_subsystem=command)[0], control


def test_a_commit_takes_one_session_and_no_exec(sshd_node: SshdTestNode) -> None:
    paths = [sshd_node.config, sshd_node.app_config]
    with SshNode(sshd_node.host()) as node:
        items = _arm(node, paths)
        node.commit(items, "r1")
        node.read([str(p) for p in paths])  # verify, on the same channel
        node.cleanup([str(p) for p in paths], "r1")
        assert node.sent_commands == [] and node.warnings == []
    assert sshd_sessions(sshd_node.sshd) == (1, 1, 0)
    for path in paths:
        assert path.read_bytes() == NEW
        assert Path(backup_path(str(path), "r1")).read_bytes() != NEW  # the original
    assert not list(sshd_node.web_root.glob("*.probe*"))


def test_the_verify_after_a_release_first_makes_the_replaced_files_durable(
    sshd_farm: Callable[..., list[SshdTestNode]], tmp_path: Path
) -> None:
    farm_node, control = _proxied(sshd_farm, tmp_path, "none")  # a plain pipe that logs
    live = str(farm_node.config)
    with SshNode(farm_node.host()) as node:
        node.commit(_arm(node, [farm_node.config]), "r1")
        released = (control / "requests").read_text().splitlines()
        node.read([live])
    after = (control / "requests").read_text().splitlines()[len(released) :]
    assert released[-1] == f"posix-rename@openssh.com {live}"  # the release ends the window
    assert after[0] == f"open {live}" and after[1].startswith("fsync@openssh.com ")
    assert after[2] == f"open {live}"  # then the read itself


def test_without_the_extensions_the_armed_shell_commits_and_says_so_once(
    sshd_farm: Callable[..., list[SshdTestNode]],
) -> None:
    (farm_node,) = sshd_farm(1, sftp_subsystem=DENY_BOTH)
    with SshNode(farm_node.host()) as node:
        node.commit(_arm(node, [farm_node.config], "r1"), "r1")
        node.commit(_arm(node, [farm_node.app_config], "r2"), "r2")
        assert len(node.warnings) == 1
        assert "hardlink@openssh.com is refused" in node.warnings[0]
        assert "armed shell" in node.warnings[0]
    assert farm_node.config.read_bytes() == NEW and farm_node.app_config.read_bytes() == NEW
    assert Path(backup_path(str(farm_node.config), "r1")).read_bytes() == SAMPLE_WEB_CONFIG
    assert sshd_sessions(farm_node.sshd) == (1, 1, 2)  # one armed shell per commit
    assert not list(farm_node.web_root.glob("*.probe*"))


def test_arming_catches_an_edit_the_stat_cannot_see(sshd_node: SshdTestNode) -> None:
    """Same size, same whole-second mtime: only the hash tells, and it is checked."""
    live = sshd_node.config
    with SshNode(sshd_node.host()) as node:
        items = _arm(node, [live])
        before = live.stat()
        live.write_bytes(SAMPLE_WEB_CONFIG.replace(b"sample", b"SAMPLE"))
        os.utime(live, ns=(before.st_atime_ns, before.st_mtime_ns))
        with pytest.raises(NodeError) as err:
            node.arm_commit(items, "r1")
    assert err.value.kind is NodeErrorKind.CHANGED
    assert not Path(backup_path(str(live), "r1")).exists()


def test_arming_trusts_the_stat_of_an_old_file_only_while_it_holds(
    sshd_node: SshdTestNode,
) -> None:
    """An mtime well before the stage proves the file unchanged while (mtime, size) hold;
    a write that changes the size (the mtime put back) is caught all the same."""
    live, app = sshd_node.config, sshd_node.app_config
    for path in (live, app):
        os.utime(path, (1_600_000_000, 1_600_000_000))
    with SshNode(sshd_node.host()) as node:
        items = _arm(node, [live, app])
        node.arm_commit(items, "r1").abort()  # unchanged: armed
        live.write_bytes(SAMPLE_WEB_CONFIG + b"<!-- more -->")
        os.utime(live, (1_600_000_000, 1_600_000_000))
        with pytest.raises(NodeError) as err:
            node.arm_commit(items, "r1")
    assert err.value.kind is NodeErrorKind.CHANGED and err.value.path == str(live)


def test_arming_refuses_when_this_runs_backup_exists(sshd_node: SshdTestNode) -> None:
    live = sshd_node.config
    planted = Path(backup_path(str(live), "r1"))
    with SshNode(sshd_node.host()) as node:
        items = _arm(node, [live])
        planted.write_bytes(b"<configuration/>")
        with pytest.raises(NodeError) as err:
            node.arm_commit(items, "r1")
    assert err.value.kind is NodeErrorKind.BACKUP_EXISTS
    assert planted.read_bytes() == b"<configuration/>" and live.read_bytes() == SAMPLE_WEB_CONFIG


def test_a_backup_planted_after_the_check_cannot_cost_the_original(
    sshd_node: SshdTestNode,
) -> None:
    """The release's rename cannot wait for its backup link. A backup name planted between
    the check and the release makes the link fail while the rename goes through: the
    original comes back from the safety link the probe kept, and the planted file stays."""
    live, app = sshd_node.config, sshd_node.app_config
    originals = {p: p.read_bytes() for p in (live, app)}
    planted = Path(backup_path(str(live), "r1"))
    with SshNode(sshd_node.host()) as node:
        armed = node.arm_commit(_arm(node, [live, app]), "r1")
        planted.write_bytes(b"<configuration/>")
        armed.release()
        with pytest.raises(NodeError) as err:
            armed.wait(10)
        assert err.value.kind is NodeErrorKind.BACKUP_EXISTS
        assert {p: p.read_bytes() for p in (live, app)} == originals
        assert planted.read_bytes() == b"<configuration/>"
        node.cleanup([str(live), str(app)], "r1")
    assert sorted(p.name for p in sshd_node.web_root.iterdir()) == [
        "app",
        "web.config",
        planted.name,
    ]


@pytest.mark.parametrize(
    ("mtime", "staged", "gap", "proves"),
    [
        (100, 102, 0.01, True),
        (100, 101, 0.01, False),
        (100, 100, 0.0, False),
        (100, 105, 1.5, False),
    ],
)
def test_the_stat_proves_only_what_whole_seconds_can(
    mtime: int, staged: int, gap: float, proves: bool
) -> None:
    assert stat_proves(mtime, staged, gap) is proves


def test_a_channel_dropped_between_stage_and_release(
    sshd_farm: Callable[..., list[SshdTestNode]], tmp_path: Path
) -> None:
    farm_node, _ = _proxied(sshd_farm, tmp_path, "drop")
    live = farm_node.config
    with SshNode(farm_node.host()) as node:
        items = _arm(node, [live])
        armed = node.arm_commit(items, "r1")
        with pytest.raises(NodeError) as err:
            armed.release()  # the server dies on the first request of the release
            armed.wait(10)
        armed.abort()
        assert err.value.kind is NodeErrorKind.CONNECTION_LOST
        assert live.read_bytes() == SAMPLE_WEB_CONFIG
        node.rollback([str(live)], "r1", {str(live): items[0].expected_sha256})
    assert live.read_bytes() == SAMPLE_WEB_CONFIG
    assert not Path(staging_path(str(live), "r1")).exists()
    assert not Path(backup_path(str(live), "r1")).exists()


def test_a_channel_dropped_mid_release_is_rolled_back(
    sshd_farm: Callable[..., list[SshdTestNode]], tmp_path: Path
) -> None:
    farm_node, _ = _proxied(sshd_farm, tmp_path, "mid")
    first, second = farm_node.config, farm_node.app_config
    originals = {p: p.read_bytes() for p in (first, second)}
    with SshNode(farm_node.host()) as node:
        items = _arm(node, [first, second])
        armed = node.arm_commit(items, "r1")
        armed.release()
        with pytest.raises(NodeError) as err:
            armed.wait(10)
        armed.abort()
        assert err.value.kind is NodeErrorKind.CONNECTION_LOST
        # The server died after the first file's rename: a mixed node, as a crash leaves it.
        assert first.read_bytes() == NEW and second.read_bytes() == originals[second]
        node.rollback([str(first), str(second)], "r1", {i.path: i.expected_sha256 for i in items})
    assert {p: p.read_bytes() for p in (first, second)} == originals
    assert Path(backup_path(str(first), "r1")).read_bytes() == originals[first]
    assert not list(farm_node.web_root.rglob("*.new"))


def test_a_stalled_release_cannot_land_after_the_rollback_fence(
    sshd_farm: Callable[..., list[SshdTestNode]], tmp_path: Path
) -> None:
    """The release reaches the node but is held there: no answer arrives, the wait times
    out, and the rollback runs. Then the held requests run on the node, late."""
    farm_node, control = _proxied(sshd_farm, tmp_path, "hold")
    live = farm_node.config
    with SshNode(farm_node.host()) as node:
        items = _arm(node, [live])
        armed = node.arm_commit(items, "r1")
        armed.release()
        with pytest.raises(NodeError) as err:
            armed.wait(1.0)
        armed.abort()
        assert err.value.kind is NodeErrorKind.TIMEOUT
        node.rollback([str(live)], "r1", {str(live): items[0].expected_sha256})
        assert live.read_bytes() == SAMPLE_WEB_CONFIG
        (control / "go").touch()  # now the late release runs on the node
        late = _wait_for(control / "late").split()
    assert late == ["0", "2"]  # the backup link made; the rename found no staging file
    assert live.read_bytes() == SAMPLE_WEB_CONFIG
    assert Path(backup_path(str(live), "r1")).read_bytes() == SAMPLE_WEB_CONFIG


def _wait_for(path: Path, limit: float = 30.0) -> str:
    deadline = time.monotonic() + limit
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return path.read_text()
