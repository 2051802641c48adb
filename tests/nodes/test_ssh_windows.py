"""The Windows OpenSSH flavour over a real sshd: every phase runs the fixed powershell.exe
command line; on this machine the node's ``powershell.exe`` is a shim running the Python twin
of the PowerShell agent, so the whole wire path (exec, stdin request, JSON lines) is real.
The shared contract cases run against this flavour too (test_ssh_contract.py)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from farmsync.nodes import psagent
from farmsync.nodes.contract import (
    CommitItem,
    FileStatus,
    StageItem,
    backup_path,
    sha256_hex,
    staging_path,
)
from farmsync.nodes.ssh import SshNode
from tests.servers.sshd_fixtures import SAMPLE_WEB_CONFIG, SshdTestNode

NEW = SAMPLE_WEB_CONFIG.replace(b"0F1E2D3C", b"AAAABBBB")


@pytest.fixture
def win_node(sshd_farm: Callable[..., list[SshdTestNode]]) -> SshdTestNode:
    return sshd_farm(1, windows=True)[0]


def test_full_rotation_through_the_agent(win_node: SshdTestNode) -> None:
    live, app = win_node.config, win_node.app_config
    live.chmod(0o640)
    paths = [str(live), str(app), str(win_node.web_root / "absent.config")]
    with SshNode(win_node.host(windows=True)) as node:
        states = node.read(paths)
        assert states[paths[2]].status is FileStatus.MISSING
        assert states[str(live)].content == SAMPLE_WEB_CONFIG
        pair = paths[:2]
        node.stage([StageItem(p, NEW, states[p].sha256 or "") for p in pair], "w1")
        assert stat.S_IMODE(os.stat(staging_path(str(live), "w1")).st_mode) == 0o640
        armed = node.arm_commit(
            [CommitItem(p, states[p].sha256 or "", sha256_hex(NEW)) for p in pair], "w1"
        )
        assert live.read_bytes() == SAMPLE_WEB_CONFIG  # armed, waiting for the word
        armed.release()
        armed.wait(10)
        assert live.read_bytes() == NEW and app.read_bytes() == NEW
        assert Path(backup_path(str(live), "w1")).read_bytes() == SAMPLE_WEB_CONFIG
        assert node.list_backups(pair) == {p: ["w1"] for p in pair}
        node.rollback(pair, "w1")
        assert live.read_bytes() == SAMPLE_WEB_CONFIG
        node.cleanup(pair, "w1")
        assert node.round_trips == 6  # read, stage, commit, list, rollback, cleanup: one each
    assert set(node.sent_commands) == {psagent.command_line()}
