"""WinRM certificate authentication: a TLS client certificate, as pywinrm sends it."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.inventory.model import Host
from farmsync.nodes.contract import FileStatus
from farmsync.nodes.winrm import WinrmNode
from tests.servers.wsman_endpoint import WsmanEndpoint


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def client_identity(directory: Path, label: str) -> tuple[Path, Path, Path]:
    """A CA and a client certificate it signed: (ca.pem, client.pem, client.key)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{label} client CA"))
        .issuer_name(_name(f"{label} client CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("farmsync-operator"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "ca.pem", directory / "client.pem", directory / "client.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].touch(mode=0o600)
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def test_a_client_certificate_the_node_trusts_logs_in(
    make_wsman_server: Callable[..., WsmanEndpoint],
    wsman_host: Callable[..., Host],
    tmp_path: Path,
) -> None:
    ca, cert, key = client_identity(tmp_path / "trusted", "trusted")
    server = make_wsman_server(client_ca=str(ca))
    config = tmp_path / "web.config"
    config.write_bytes(b"<configuration/>")
    host = wsman_host(server, transport="certificate", password=None, user=None,
                      cert_pem=str(cert), cert_key_pem=str(key))
    with WinrmNode(host) as node:
        state = node.read([str(config)])[str(config)]
    assert state.status is FileStatus.OK
    assert server.requests["unauthorized"] == 0


def test_a_client_certificate_from_another_ca_is_refused(
    make_wsman_server: Callable[..., WsmanEndpoint],
    wsman_host: Callable[..., Host],
    tmp_path: Path,
) -> None:
    trusted_ca, _, _ = client_identity(tmp_path / "trusted", "trusted")
    _, cert, key = client_identity(tmp_path / "rogue", "rogue")
    server = make_wsman_server(client_ca=str(trusted_ca))
    host = wsman_host(server, transport="certificate", password=None, user=None,
                      cert_pem=str(cert), cert_key_pem=str(key), timeout=5.0)
    with pytest.raises(NodeError) as info:
        WinrmNode(host).connect()
    assert info.value.kind in (NodeErrorKind.TLS, NodeErrorKind.AUTH)
