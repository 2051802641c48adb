"""Every WinRM failure that winrm_shell.py maps, driven through the real WS-Man endpoint over
real HTTPS: which error kind each one becomes, and in which phase."""

from __future__ import annotations

import ipaddress
import logging
import ssl
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.inventory.model import Host
from farmsync.nodes.contract import StageItem, sha256_hex
from farmsync.nodes.winrm import WinrmNode
from tests.servers.wsman_endpoint import CODE_SHELL_NOT_FOUND, WsmanEndpoint
from tests.servers.wsman_fixtures import TestCA, _issue, _new_ca, _write_key, _write_pem

RUN = "20240101T000000Z-abcd"
WSMAN_ACCESS_DENIED = 5  # the WSManFault code Windows sends for an authorisation refusal


def ca_for(directory: Path, *names: str) -> TestCA:
    """A fresh CA and a server certificate it signed for ``names`` only."""
    directory.mkdir(parents=True)
    ca_key, ca_cert = _new_ca("other-name")
    key = ec.generate_private_key(ec.SECP256R1())
    san = [
        x509.IPAddress(ipaddress.ip_address(n)) if n[0].isdigit() or ":" in n else x509.DNSName(n)
        for n in names
    ]
    cert = _issue(
        names[0],
        key.public_key(),
        ca_key,
        ca_cert.subject,
        [
            (x509.SubjectAlternativeName(san), False),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        ],
    )
    return TestCA(
        _write_pem(directory, "ca.pem", ca_cert),
        _write_pem(directory, "server.pem", cert),
        _write_key(directory, "server.key", key),
    )


def failure(call: Callable[[], object]) -> NodeError:
    with pytest.raises(NodeError) as caught:
        call()
    return caught.value


def connect(host: Host) -> WinrmNode:
    node = WinrmNode(host)
    node.connect()
    return node


@pytest.fixture
def node_dir(wsman_server: WsmanEndpoint) -> Path:
    assert wsman_server.working_directory is not None
    return Path(wsman_server.working_directory)


def test_a_request_over_the_envelope_size_is_http_413(
    make_wsman_server: Callable[..., WsmanEndpoint], wsman_host: Callable[..., Host]
) -> None:
    server = make_wsman_server(max_envelope_size=20_000)  # far below one stdin chunk
    assert server.working_directory is not None
    live = Path(server.working_directory) / "web.config"
    live.write_bytes(b"<configuration />")
    big = b"<configuration>" + b" " * 200_000 + b"</configuration>"
    with WinrmNode(wsman_host(server)) as node:
        error = failure(
            lambda: node.stage([StageItem(str(live), big, sha256_hex(live.read_bytes()))], RUN)
        )
    assert error.kind is NodeErrorKind.PROTOCOL
    assert error.detail == "request larger than the node's MaxEnvelopeSizekb (HTTP 413)"
    assert error.phase == "stage"
    assert live.read_bytes() == b"<configuration />"


def test_a_server_without_a_tls_version_in_common_is_a_tls_error(
    wsman_ca: TestCA, wsman_host: Callable[..., Host], tmp_path: Path
) -> None:
    context = wsman_ca.server_context()
    with warnings.catch_warnings():  # deprecated versions: exactly what this server offers
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1  # the client insists on 1.2 or later
    server = WsmanEndpoint("farmsync", "pw", ssl_context=context, working_directory=str(tmp_path))
    server.start()
    try:
        error = failure(lambda: connect(wsman_host(server)))
    finally:
        server.stop()
    assert error.kind is NodeErrorKind.TLS
    assert error.detail == (
        "TLS failure: handshake failed (no TLS version or cipher in common with the server)"
    )
    assert server.requests["Create"] == 0


def test_plain_http_where_https_is_expected_is_a_tls_error(
    make_wsman_server: Callable[..., WsmanEndpoint], wsman_host: Callable[..., Host]
) -> None:
    server = make_wsman_server(tls=False)
    error = failure(lambda: connect(wsman_host(server, scheme="https")))
    assert error.kind is NodeErrorKind.TLS
    assert error.detail == "TLS failure: the server does not speak TLS on this port"
    assert sum(server.requests.values()) == 0  # the password never left


def test_a_certificate_for_another_address_is_a_tls_error(
    make_wsman_server: Callable[..., WsmanEndpoint], wsman_host: Callable[..., Host]
) -> None:
    # The test CA's certificate names localhost, 127.0.0.1 and ::1, not 127.0.0.2.
    server = make_wsman_server(host="127.0.0.2")
    error = failure(lambda: connect(wsman_host(server)))
    assert error.kind is NodeErrorKind.TLS
    assert error.detail == "TLS failure: the server certificate does not match the host name"
    assert server.requests["Create"] == 0


def test_a_certificate_for_another_host_name_is_a_tls_error(
    wsman_host: Callable[..., Host], tmp_path: Path
) -> None:
    ca = ca_for(tmp_path / "ca", "node9.farmsync.example", "::1")
    server = WsmanEndpoint(
        "farmsync", "pw", ssl_context=ca.server_context(), working_directory=str(tmp_path)
    )
    server.start()
    try:
        host = wsman_host(server, address="localhost", ca_trust_path=str(ca.ca_pem))
        error = failure(lambda: connect(host))
    finally:
        server.stop()
    assert error.kind is NodeErrorKind.TLS
    assert error.detail == "TLS failure: the server certificate does not match the host name"


def test_a_name_that_does_not_resolve_is_unreachable(
    wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host]
) -> None:
    # .invalid never resolves (RFC 6761): nothing but the local resolver is asked.
    error = failure(lambda: connect(wsman_host(wsman_server, address="farmsync-node.invalid")))
    assert error.kind is NodeErrorKind.UNREACHABLE
    assert error.detail == "the host name does not resolve"
    assert error.phase == "connect"


def test_a_lost_shell_is_a_remote_fault_not_a_quota(
    wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host], node_dir: Path
) -> None:
    node = connect(wsman_host(wsman_server))
    wsman_server.forget_shells()  # the WinRM service restarted under us

    error = failure(lambda: node.read([str(node_dir / "web.config")]))
    node.close()

    assert error.kind is NodeErrorKind.REMOTE
    assert error.detail.startswith(f"WinRM fault (WSManFault {CODE_SHELL_NOT_FOUND}): ")
    assert "shell was not found" in error.detail
    assert error.phase == "read"
    assert node.shell.shells_opened == 1  # not retried as a quota would be


def test_an_access_denied_fault_at_shell_creation_is_remote(
    wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host]
) -> None:
    wsman_server.soap_fault(
        WSMAN_ACCESS_DENIED, "w:AccessDenied", "Access is denied.", action="Create"
    )
    error = failure(lambda: connect(wsman_host(wsman_server)))
    assert error.kind is NodeErrorKind.REMOTE
    assert error.detail == f"WinRM fault (WSManFault {WSMAN_ACCESS_DENIED}): Access is denied."
    assert error.phase == "connect"
    assert wsman_server.requests["Create"] == 1  # once: only quota faults are retried


@pytest.mark.parametrize("fault", ["http-500", "dropped"])
def test_a_failure_while_closing_the_shell_does_not_mask_the_run(
    wsman_server: WsmanEndpoint,
    wsman_host: Callable[..., Host],
    node_dir: Path,
    caplog: pytest.LogCaptureFixture,
    fault: str,
) -> None:
    config = node_dir / "web.config"
    config.write_bytes(b"<configuration />")
    caplog.set_level(logging.DEBUG, logger="farmsync")
    with WinrmNode(wsman_host(wsman_server)) as node:
        state = node.read([str(config)])[str(config)]
        if fault == "http-500":
            wsman_server.http_error(500, action="Delete")
        else:
            wsman_server.drop(action="Delete")
    # Leaving the block closed the shell; its failure is logged, never raised.
    assert state.content == b"<configuration />"
    assert wsman_server.requests["Delete"] == 1
    assert "closing the WinRM shell failed" in caplog.text
    assert not node.shell.is_open
