"""The ``audit`` node operation on every transport: one read-only round trip, the same answer
shape everywhere, real servers (sshd POSIX and Windows-shell nodes, the WS-Management
endpoint) with the Python twin standing in for PowerShell."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from farmsync.errors import NodeErrorKind
from farmsync.inventory.model import Host
from farmsync.lab.sshd import SshdKeys
from farmsync.nodes import psagent
from farmsync.nodes.agent_audit import audit_read
from farmsync.nodes.auditread import AuditRead, AuditRequest
from farmsync.nodes.contract import FileStatus, NodeOperations
from farmsync.nodes.local import LocalNode
from farmsync.nodes.ssh import SshNode
from farmsync.nodes.winrm import WinrmNode
from farmsync.orchestration.audit.model import KeyStatus
from farmsync.orchestration.audit.resolve import audit_request, resolve_node
from tests.cli.clikit import snapshot
from tests.nodes.audit_tree import RSA_PUBLIC, PosixTree, V, posix_tree, windows_tree
from tests.servers.sshd_fixtures import SHIM, SshdTestNode, _make_node
from tests.servers.wsman_endpoint import WsmanEndpoint

FARM = "Default Web Site"


def posix_request(tree: PosixTree) -> AuditRequest:
    return AuditRequest(tree.request_paths, (str(tree.app_config.parent),))


def shape(read: AuditRead) -> dict[str, Any]:
    """The answer without transport accidents (mtime precision), for comparison."""
    return {
        "files": {p: (s.status, s.sha256, s.error_kind) for p, s in sorted(read.files.items())},
        "leftovers": dict(read.leftovers),
        "subfolders": dict(read.subfolder_configs),
        "iis": read.iis,
        "registry": read.registry,
        "rsa": read.rsa,
    }


def check_posix_answer(read: AuditRead, tree: PosixTree) -> None:
    assert read.files[str(tree.root_config)].status is FileStatus.OK
    assert read.files[str(tree.machine_config)].content is not None
    assert read.leftovers == {
        str(tree.root_config): ("web.config.farmsync-r1.bak", "web.config.farmsync-r2.new")
    }
    assert read.subfolder_configs == {str(tree.app_config.parent): (str(tree.sub_config),)}
    assert str(tree.sub_config) in read.files and str(tree.deep_config) not in read.files
    assert read.iis is None and read.registry is None


def audit_once(node: NodeOperations, request: AuditRequest, base: Path) -> AuditRead:
    before = snapshot(base)
    trips = node.round_trips
    read = node.audit(request)
    assert node.round_trips == trips + 1  # one round trip for everything
    assert snapshot(base) == before  # read-only: nothing created, changed or removed
    return read


def test_local_node(tmp_path: Path) -> None:
    tree = posix_tree(tmp_path)
    node = LocalNode(Host("l", "f", "local", "l", 0, "sh"))  # type: ignore[arg-type]
    check_posix_answer(audit_once(node, posix_request(tree), tmp_path), tree)


def test_ssh_posix_node_reads_over_sftp_without_exec(
    sshd_farm: Callable[..., list[SshdTestNode]], tmp_path: Path
) -> None:
    tree = posix_tree(tmp_path / "tree")
    local = audit_read(posix_request(tree))
    with SshNode(sshd_farm(1)[0].host()) as node:
        read = audit_once(node, posix_request(tree), tmp_path / "tree")
        assert node.sent_commands == []  # one SFTP batch, no process started
    check_posix_answer(read, tree)
    assert shape(read) == shape(local)


def test_windows_shell_node_same_answer(
    sshd_farm: Callable[..., list[SshdTestNode]], tmp_path: Path
) -> None:
    tree = posix_tree(tmp_path / "tree")
    with SshNode(sshd_farm(1, windows=True)[0].host(windows=True)) as node:
        read = audit_once(node, posix_request(tree), tmp_path / "tree")
    assert set(node.sent_commands) == {psagent.command_line()}
    check_posix_answer(read, tree)
    assert shape(read) == shape(audit_read(posix_request(tree)))


def test_winrm_node_same_answer(
    wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host]
) -> None:
    base = Path(wsman_server.working_directory or "")
    tree = posix_tree(base / "tree")
    with WinrmNode(wsman_host(wsman_server)) as node:
        read = audit_once(node, posix_request(tree), base / "tree")
    assert wsman_server.requests["Command"] == 1
    check_posix_answer(read, tree)
    assert shape(read) == shape(audit_read(posix_request(tree)))


# --- Windows discovery: IIS's files, registry and RSA answers (from the twin's facts file) ---


@pytest.fixture
def windows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    tree = windows_tree(tmp_path / "win")
    for name, value in tree.env().items():
        monkeypatch.setenv(name, value)  # the WS-Man endpoint's agents inherit them
    return tree.env()


@pytest.fixture
def windows_sshd(
    tmp_path: Path, sshd_keys: SshdKeys, windows_env: dict[str, str]
) -> Iterator[SshdTestNode]:
    """A Windows-shell sshd node whose powershell.exe shim exports the twin's environment."""
    shim_dir = tmp_path / "shim"
    shim_dir.mkdir()
    exports = " ".join(f"{k}='{v}'" for k, v in windows_env.items())
    text = SHIM.format(python=sys.executable).replace("exec ", f"export {exports}\nexec ", 1)
    (shim_dir / "powershell.exe").write_text(text)
    (shim_dir / "powershell.exe").chmod(0o755)
    node = _make_node(tmp_path / "sshd-node", sshd_keys, shim_dir)
    try:
        yield node
    finally:
        node.sshd.stop()


def windows_host(h: Host) -> Host:
    from dataclasses import replace

    return replace(
        h,
        root_configs=(
            r"%windir%\Microsoft.NET\Framework\v4.0.30319\CONFIG\web.config",
            r"%windir%\Microsoft.NET\Framework64\v4.0.30319\CONFIG\web.config",
        ),
    )


def check_windows_answer(read: AuditRead, h: Host) -> None:
    assert read.iis is not None
    assert read.iis.application_host == r"%windir%\System32\inetsrv\config\applicationHost.config"
    shop = r"%SystemDrive%\D\sites\shop\web.config"
    assert read.files[shop].status is FileStatus.OK
    unc = "\\\\fileserver.example\\intranet$\\wwwroot\\web.config"
    assert read.files[unc].status is FileStatus.ERROR  # unreadable, never missing or clean
    assert read.files[unc].error_kind is NodeErrorKind.UNREACHABLE
    assert read.registry == {"64": 0, "32": None}
    assert read.rsa is not None and read.rsa["iisWasKey"].status == "missing"
    assert read.rsa["iisConfigurationKey"].fingerprint is not None
    assert "SystemDrive" in read.env and "windir" in read.env
    model = resolve_node(h, read, 1)
    apps = {s.name: s for s in model.scopes if s.kind.value == "application"}
    assert set(apps) == {
        FARM,
        f"{FARM}/shop",
        f"{FARM}/shop/admin",
        f"{FARM}/legacy",
        "Intranet",
        "Api",
    }
    assert apps["Intranet"].state.status is KeyStatus.UNREADABLE
    assert apps[f"{FARM}/shop/admin"].bitness == 32
    assert apps[f"{FARM}/legacy"].framework == "v2.0.50727"
    assert apps[f"{FARM}/shop"].state.identity != apps[FARM].state.identity  # its own key
    roles = {p: f.role.value for p, f in model.files.items()}
    assert roles[r"%SystemDrive%\D\shared\images\web.config"] == "subfolder web.config"
    hidden = r"%SystemDrive%\D\sites\shop-admin\x\web.config"
    assert hidden in read.files and hidden not in roles  # allowSubDirConfig="false"
    for state in read.files.values():
        assert V not in (state.error or "")


def test_windows_discovery_over_ssh(windows_sshd: SshdTestNode) -> None:
    h = windows_host(windows_sshd.host(windows=True))
    with SshNode(h) as node:
        read = node.audit(audit_request(h))
        assert node.round_trips == 1
    check_windows_answer(read, h)


def test_windows_discovery_over_winrm(
    windows_env: dict[str, str], wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host]
) -> None:
    h = windows_host(wsman_host(wsman_server))
    with WinrmNode(h) as node:
        read = node.audit(audit_request(h))
    check_windows_answer(read, h)
    assert wsman_server.requests["Command"] == 1


def test_shared_configuration_on_an_unreachable_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = windows_tree(tmp_path / "win")
    redirection = tree.windir / "System32" / "inetsrv" / "config" / "redirection.config"
    corpus = Path(__file__).resolve().parents[1] / "webconfig" / "iis_corpus"
    redirection.write_bytes((corpus / "03-shared.redirection.config").read_bytes())
    for name, value in tree.env().items():
        monkeypatch.setenv(name, value)
    read = audit_read(AuditRequest((), iis=True, windows_facts=True))
    assert read.iis is not None
    assert read.iis.application_host == r"\\fileserver.example\iisconfig$\applicationHost.config"
    assert read.files[read.iis.application_host].status is FileStatus.ERROR


def test_without_the_facts_file_the_twin_says_it_cannot_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FARMSYNC_AGENT_WINDOWS_FACTS", raising=False)
    read = audit_read(AuditRequest((), windows_facts=True))
    assert read.registry is None and read.rsa is None and read.facts_error
    assert os.name != "nt"  # the twin's seam only exists off Windows
    assert set(RSA_PUBLIC) == {"iisConfigurationKey", "iisWasKey"}
