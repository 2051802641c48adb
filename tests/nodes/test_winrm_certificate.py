"""WinRM certificate authentication: a TLS client certificate, as pywinrm sends it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.inventory.model import Host
from farmsync.nodes.contract import FileStatus
from farmsync.nodes.winrm import WinrmNode
from tests.servers.wsman_endpoint import WsmanEndpoint
from tests.servers.wsman_fixtures import make_client_identity


def test_a_client_certificate_the_node_trusts_logs_in(
    make_wsman_server: Callable[..., WsmanEndpoint],
    wsman_host: Callable[..., Host],
    tmp_path: Path,
) -> None:
    ca, cert, key = make_client_identity(tmp_path / "trusted", "trusted")
    server = make_wsman_server(client_ca=str(ca))
    config = tmp_path / "web.config"
    config.write_bytes(b"<configuration/>")
    host = wsman_host(
        server,
        transport="certificate",
        password=None,
        user=None,
        cert_pem=str(cert),
        cert_key_pem=str(key),
    )
    with WinrmNode(host) as node:
        state = node.read([str(config)])[str(config)]
    assert state.status is FileStatus.OK
    assert server.requests["unauthorized"] == 0


def test_a_client_certificate_from_another_ca_is_refused(
    make_wsman_server: Callable[..., WsmanEndpoint],
    wsman_host: Callable[..., Host],
    tmp_path: Path,
) -> None:
    trusted_ca, _, _ = make_client_identity(tmp_path / "trusted", "trusted")
    _, cert, key = make_client_identity(tmp_path / "rogue", "rogue")
    server = make_wsman_server(client_ca=str(trusted_ca))
    host = wsman_host(
        server,
        transport="certificate",
        password=None,
        user=None,
        cert_pem=str(cert),
        cert_key_pem=str(key),
        timeout=5.0,
    )
    with pytest.raises(NodeError) as info:
        WinrmNode(host).connect()
    assert info.value.kind in (NodeErrorKind.TLS, NodeErrorKind.AUTH)
