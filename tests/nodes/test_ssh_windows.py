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

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.nodes import agent_session, psagent
from farmsync.nodes.contract import (
    CommitItem,
    FileStatus,
    StageItem,
    backup_path,
    sha256_hex,
    staging_path,
)
from farmsync.nodes.ssh import SshNode
from tests.servers.sshd_fixtures import (
    SAMPLE_WEB_CONFIG,
    SshdTestNode,
    kill_agents_under,
    sshd_sessions,
)

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
    assert node.sent_commands == [psagent.command_line()]  # one agent served them all


def _kill_agents(win_node: SshdTestNode) -> int:
    """SIGKILL the twin agent processes running under this node's sshd."""
    return kill_agents_under(win_node.sshd)


def test_one_exec_serves_the_run_and_an_ended_agent_is_connection_lost(
    win_node: SshdTestNode,
) -> None:
    live = win_node.config
    paths = [str(live)]
    with SshNode(win_node.host(windows=True)) as node:
        states = node.read(paths)
        node.list_backups(paths)
        assert sshd_sessions(win_node.sshd)[2] == 1  # two requests, one exec
        assert _kill_agents(win_node) == 1
        assert node.read(paths)[str(live)].content == SAMPLE_WEB_CONFIG  # retried afresh
        assert sshd_sessions(win_node.sshd)[2] == 2
        assert _kill_agents(win_node) == 1
        with pytest.raises(NodeError) as err:
            node.stage([StageItem(str(live), NEW, states[str(live)].sha256 or "")], "w1")
        assert err.value.kind is NodeErrorKind.CONNECTION_LOST
        assert err.value.detail == agent_session.AGENT_ENDED
        armed = node.stage_and_arm(
            [StageItem(str(live), NEW, states[str(live)].sha256 or "")],
            [CommitItem(str(live), states[str(live)].sha256 or "", sha256_hex(NEW))],
            "w1",
            1,
        )
        armed.release()
        reported = armed.wait(10)
        assert sshd_sessions(win_node.sshd)[2] == 3
    assert reported is not None and reported[str(live)].sha256 == sha256_hex(NEW)
    assert live.read_bytes() == NEW
    assert Path(backup_path(str(live), "w1")).read_bytes() == SAMPLE_WEB_CONFIG
