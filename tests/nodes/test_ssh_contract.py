"""SshNode against the shared contract cases, on real sshd nodes: POSIX (the SFTP commit, and
the armed shell it falls back to) and Windows flavours."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from farmsync.nodes.ssh import SshNode
from tests.nodes.contract_cases import CONTRACT_CASES, ContractCase, case_id
from tests.servers.sshd_fixtures import SshdTestNode


@pytest.mark.parametrize("case", CONTRACT_CASES, ids=case_id)
def test_ssh_posix_contract(case: ContractCase, sshd_node: SshdTestNode, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with SshNode(sshd_node.host()) as node:
        case(node, root)


@pytest.mark.parametrize("case", CONTRACT_CASES, ids=case_id)
def test_ssh_posix_armed_shell_contract(
    case: ContractCase, sshd_farm: Callable[..., list[SshdTestNode]], tmp_path: Path
) -> None:
    """The armed-shell commit, taken where the node's SFTP server refuses hard links."""
    (node_dir,) = sshd_farm(1, sftp_subsystem="internal-sftp -P hardlink")
    root = tmp_path / "root"
    root.mkdir()
    with SshNode(node_dir.host()) as node:
        case(node, root)


@pytest.mark.parametrize("case", CONTRACT_CASES, ids=case_id)
def test_ssh_windows_contract(
    case: ContractCase, sshd_farm: Callable[..., list[SshdTestNode]], tmp_path: Path
) -> None:
    (win,) = sshd_farm(1, windows=True)
    root = tmp_path / "root"
    root.mkdir()
    with SshNode(win.host(windows=True)) as node:
        case(node, root)
