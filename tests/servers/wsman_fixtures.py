"""Fixtures: WS-Management test endpoints over real HTTPS with a test CA.

``wsman_server`` is an endpoint on 127.0.0.1 (free port) serving HTTPS with a certificate
signed by the session's test CA, Basic auth with generated credentials, and the node's
working directory in the test's tmp_path. ``wsman_host(server)`` builds the farmsync Host
that reaches it. ``make_wsman_server(...)`` starts variants (plain HTTP, a certificate
from an untrusted CA). Every endpoint is stopped, and its agent processes killed by pid,
in teardown.
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from farmsync.inventory.model import Host, Secret, Shell, Transport, WinrmSettings
from tests.servers.wsman_endpoint import WsmanEndpoint


@dataclass(frozen=True)
class TestCA:
    """A CA and one server certificate it signed for localhost / 127.0.0.1 / ::1."""

    __test__ = False  # not a test class, despite the name

    ca_pem: Path
    cert_pem: Path
    key_pem: Path
    ca_key_pem: Path | None = None

    def with_new_server(self, directory: Path) -> TestCA:
        """The same CA with a server certificate of its own: each test endpoint proves its
        own identity (farmsync refuses two hosts that show one certificate and machine)."""
        assert self.ca_key_pem is not None
        directory.mkdir(parents=True, exist_ok=True)
        ca_cert = x509.load_pem_x509_certificate(self.ca_pem.read_bytes())
        ca_key = serialization.load_pem_private_key(self.ca_key_pem.read_bytes(), None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        key, cert = _server_cert(ca_key, ca_cert)
        return TestCA(
            self.ca_pem,
            _write_pem(directory, "server.pem", cert),
            _write_key(directory, "server.key", key),
            self.ca_key_pem,
        )

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(self.cert_pem), str(self.key_pem))
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: str,
    public_key: ec.EllipticCurvePublicKey,
    signer: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    extensions: list[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    """A certificate for ``subject``, valid for a day, signed by ``signer`` as ``issuer``."""
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical)
    return builder.sign(signer, hashes.SHA256())


def _new_ca(label: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = f"farmsync {label} CA"
    usage = x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=True,
        crl_sign=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )
    cert = _issue(
        name,
        key.public_key(),
        key,
        _name(name),
        [
            (x509.BasicConstraints(ca=True, path_length=0), True),
            (usage, True),
            (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
        ],
    )
    return key, cert


def _write_pem(directory: Path, name: str, cert: x509.Certificate) -> Path:
    path = directory / name
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _write_key(directory: Path, name: str, key: ec.EllipticCurvePrivateKey) -> Path:
    path = directory / name
    path.touch(mode=0o600)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _server_cert(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue(
        "localhost",
        key.public_key(),
        ca_key,
        ca_cert.subject,
        [
            (
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.IPAddress(ipaddress.ip_address("::1")),
                    ]
                ),
                False,
            ),
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
            (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False),
        ],
    )
    return key, cert


def make_ca(directory: Path, label: str) -> TestCA:
    """Generate a CA and a server certificate signed by it, as PEM files in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _new_ca(label)
    key, cert = _server_cert(ca_key, ca_cert)
    return TestCA(
        _write_pem(directory, "ca.pem", ca_cert),
        _write_pem(directory, "server.pem", cert),
        _write_key(directory, "server.key", key),
        _write_key(directory, "ca.key", ca_key),
    )


def make_client_identity(directory: Path, label: str) -> tuple[Path, Path, Path]:
    """A CA and a TLS client certificate it signed: (ca.pem, client.pem, client.key)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _new_ca(f"{label} client")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue(
        "farmsync-operator",
        key.public_key(),
        ca_key,
        ca_cert.subject,
        [
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
        ],
    )
    return (
        _write_pem(directory, "ca.pem", ca_cert),
        _write_pem(directory, "client.pem", cert),
        _write_key(directory, "client.key", key),
    )


@pytest.fixture(scope="session")
def wsman_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    """The test CA the client trusts, and the endpoint's certificate."""
    return make_ca(tmp_path_factory.mktemp("wsman-ca"), "test")


@pytest.fixture(scope="session")
def wsman_rogue_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    """A second CA nobody trusts: an endpoint using its certificate must fail TLS checks."""
    return make_ca(tmp_path_factory.mktemp("wsman-rogue-ca"), "rogue")


@pytest.fixture
def make_wsman_server(
    wsman_ca: TestCA, wsman_rogue_ca: TestCA, tmp_path: Path
) -> Iterator[Callable[..., WsmanEndpoint]]:
    """Start endpoints: ``make_wsman_server(tls=True, untrusted=False, **endpoint_options)``."""
    started: list[WsmanEndpoint] = []

    def start(*, tls: bool = True, untrusted: bool = False, **options: Any) -> WsmanEndpoint:
        node_root = tmp_path / "node"
        node_root.mkdir(exist_ok=True)
        ca = (wsman_rogue_ca if untrusted else wsman_ca).with_new_server(
            tmp_path / f"wsman-cert-{len(started)}"
        )
        endpoint = WsmanEndpoint(
            options.pop("username", "farmsync-" + secrets.token_hex(4)),
            options.pop("password", secrets.token_urlsafe(16)),
            ssl_context=ca.server_context() if tls else None,
            working_directory=str(node_root),
            **options,
        )
        endpoint.start()
        started.append(endpoint)
        return endpoint

    yield start
    for endpoint in started:
        endpoint.stop()


@pytest.fixture
def wsman_server(make_wsman_server: Callable[..., WsmanEndpoint]) -> WsmanEndpoint:
    """An HTTPS WS-Man endpoint with Basic auth, certificate signed by ``wsman_ca``."""
    return make_wsman_server()


def wsman_host_for(server: WsmanEndpoint, ca_pem: Path | str, **overrides: Any) -> Host:
    """The farmsync Host that reaches ``server``, trusting ``ca_pem``.

    Overrides: any Host field, plus ``password`` as a str and WinrmSettings fields
    (``transport``, ``scheme``, ``cert_validation``, ``ca_trust_path``,
    ``allow_insecure_basic``, ``path``).
    """
    winrm_fields = {"transport", "scheme", "cert_validation", "ca_trust_path"}
    winrm_fields |= {"allow_insecure_basic", "path", "cert_pem", "cert_key_pem", "max_envelope_kb"}
    winrm_options: dict[str, Any] = {
        "transport": "basic",
        "scheme": server.scheme,
        "ca_trust_path": str(ca_pem),
    }
    for key in list(overrides):
        if key in winrm_fields:
            winrm_options[key] = overrides.pop(key)
    password = overrides.pop("password", server.password)
    fields: dict[str, Any] = {
        "name": "web1",
        "farm": "test",
        "transport": Transport.WINRM,
        "address": server.host,
        "port": server.port,
        "shell": Shell.POWERSHELL,
        "user": server.username,
        "password": Secret(password) if password is not None else None,
        "winrm": WinrmSettings(**winrm_options),
        "timeout": 10.0,
    }
    fields.update(overrides)
    return Host(**fields)


@pytest.fixture
def wsman_host(wsman_ca: TestCA) -> Callable[..., Host]:
    """``wsman_host(server, **overrides)``: the Host for ``server`` (see :func:`wsman_host_for`)."""

    def build(server: WsmanEndpoint, **overrides: Any) -> Host:
        return wsman_host_for(server, wsman_ca.ca_pem, **overrides)

    return build
