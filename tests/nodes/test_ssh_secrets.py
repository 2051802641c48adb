"""Key material never reaches a remote command line or a remote process's environment.

Every exec command line the transport sends is recorded (``SshNode.sent_commands``); while a
commit is armed, the node-side processes are inspected through /proc (cmdline and environ).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from farmsync.inventory.model import RecycleKind, RecycleSpec
from farmsync.lab.sshd import descendants
from farmsync.nodes import psagent
from farmsync.nodes.contract import CommitItem, StageItem, sha256_hex
from farmsync.nodes.ssh import SshNode
from farmsync.nodes.ssh_posix import COMMIT_COMMAND
from tests.servers.sshd_fixtures import SAMPLE_WEB_CONFIG, SshdTestNode

NEW_VALIDATION = "5CE1A7D0C3B2A19F8E7D6C5B4A392817" * 2
NEW_DECRYPTION = "A1B2C3D4E5F60718293A4B5C6D7E8F90" * 2
NEW = SAMPLE_WEB_CONFIG.replace(
    b"0F1E2D3C4B5A69788796A5B4C3D2E1F00F1E2D3C4B5A69788796A5B4C3D2E1F0",
    NEW_VALIDATION.encode(),
).replace(
    b"00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF",
    NEW_DECRYPTION.encode(),
)
SECRETS = [NEW_VALIDATION, NEW_DECRYPTION, "0F1E2D3C4B5A6978", "00112233445566778899", "machineKey"]


def _node_processes_text(sshd_pid: int) -> str:
    """cmdline and environ of every process under the node's sshd, as one string."""
    text = []
    for pid in descendants(sshd_pid):
        for what in ("cmdline", "environ"):
            try:
                text.append(Path(f"/proc/{pid}/{what}").read_bytes().decode("utf-8", "replace"))
            except OSError:
                continue
    return "\n".join(text)


def _rotate_and_inspect(node: SshNode, farm_node: SshdTestNode) -> str:
    paths = [str(farm_node.config), str(farm_node.app_config)]
    states = node.read(paths)
    node.stage([StageItem(p, NEW, states[p].sha256 or "") for p in paths], "s1")
    armed = node.arm_commit(
        [CommitItem(p, states[p].sha256 or "", sha256_hex(NEW)) for p in paths], "s1"
    )
    seen = _node_processes_text(farm_node.sshd.pid or 0)  # an armed process would run now
    armed.release()
    armed.wait(10)
    assert farm_node.config.read_bytes() == NEW
    node.rollback(paths, "s1")
    node.cleanup(paths, "s1")
    node.recycle()
    return seen


def _assert_clean(texts: list[str]) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


def test_posix_commands_and_processes_carry_no_keys(sshd_node: SshdTestNode) -> None:
    """The SFTP commit: no process is started for it, only the configured recycle."""
    recycle = RecycleSpec(RecycleKind.COMMAND, "true")
    with SshNode(sshd_node.host(recycle=recycle)) as node:
        seen = _rotate_and_inspect(node, sshd_node)
    assert node.sent_commands == ["true"]
    _assert_clean([*node.sent_commands, seen])


def test_posix_armed_shell_fallback_carries_no_keys(
    sshd_farm: Callable[..., list[SshdTestNode]],
) -> None:
    (farm_node,) = sshd_farm(1, sftp_subsystem="internal-sftp -P hardlink")  # forces it
    recycle = RecycleSpec(RecycleKind.COMMAND, "true")
    with SshNode(farm_node.host(recycle=recycle)) as node:
        seen = _rotate_and_inspect(node, farm_node)
    assert "/bin/sh" in seen  # the armed commit process was found and inspected
    assert set(node.sent_commands) == {COMMIT_COMMAND, "true"}
    _assert_clean([*node.sent_commands, seen])
    # nor a path: the commit script takes everything on stdin
    assert not any(str(farm_node.web_root) in c for c in node.sent_commands)


def test_windows_commands_and_processes_carry_no_keys(
    sshd_farm: Callable[..., list[SshdTestNode]],
) -> None:
    (win,) = sshd_farm(1, windows=True)
    with SshNode(win.host(windows=True)) as node:
        seen = _rotate_and_inspect(node, win)
    assert "farmsync.nodes.agent" in seen
    assert set(node.sent_commands) == {psagent.command_line()}
    _assert_clean([*node.sent_commands, seen])


def test_staging_and_backup_files_have_the_live_files_mode(sshd_node: SshdTestNode) -> None:
    live = sshd_node.config
    live.chmod(0o600)
    h = sha256_hex(SAMPLE_WEB_CONFIG)
    with SshNode(sshd_node.host()) as node:
        node.stage([StageItem(str(live), NEW, h)], "s1")
        staged = Path(f"{live}.farmsync-s1.new")
        assert staged.stat().st_mode & 0o777 == 0o600
        node.commit([CommitItem(str(live), h, sha256_hex(NEW))], "s1")
    backup = Path(f"{live}.farmsync-s1.bak")
    assert backup.stat().st_mode & 0o777 == 0o600
    assert (backup.stat().st_uid, backup.stat().st_gid) == (os.getuid(), os.getgid())
