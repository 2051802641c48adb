"""The WinRM shell layer: one remote shell over pywinrm's ``Protocol``, reused for every
command of a run; stdin sent in chunks; output received under farmsync's own deadline.

pywinrm's ``get_command_output`` retries Receive forever on operation timeouts, so it is
never used here: each Receive is one bounded request and the loop stops at the deadline.
Every pywinrm / requests / urllib3 failure is turned into a :class:`NodeError` here, so no
foreign exception type leaves the WinRM transport.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import requests
import requests.adapters
import urllib3
import urllib3.exceptions
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)
from winrm.protocol import Protocol

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.inventory.model import Host
from farmsync.inventory.variables import WINRM_TRANSPORTS

log = logging.getLogger(__name__)

# Stdin bytes per Send message. A Send carries them base64-encoded (4/3) in a SOAP envelope
# the service refuses with HTTP 413 past its MaxEnvelopeSizekb: 500 KB by default since
# WinRM 3.0 (WMF 3.0 and later, so every node at the PowerShell 5.1 floor), 150 KB before.
ENVELOPE_OVERHEAD = 16 * 1024  # SOAP headers, message encryption's framing, with room to spare
# The fallback after a 413: fits the 150 KB envelope of WinRM 2.0's default.
SEND_CHUNK = 96 * 1024
SEND_TOO_LARGE = (
    "the node refused a {size} KiB Send (HTTP 413: its MaxEnvelopeSizekb is below "
    "farmsync_winrm_max_envelope_kb = {kb}); sending 96 KiB at a time, one more request per "
    "96 KiB of a stage"
)


def send_chunk(max_envelope_kb: int) -> int:
    """Stdin bytes per Send for an endpoint whose MaxEnvelopeSizekb is ``max_envelope_kb``."""
    return max(4096, (max_envelope_kb * 1024 - ENVELOPE_OVERHEAD) * 3 // 4)


# WSManFault codes a Windows WinRM service returns.
FAULT_OPERATION_TIMEOUT = 2150858793
FAULT_QUOTA_SHELLS = 2150859173  # MaxShellsPerUser
FAULT_QUOTA_OPERATIONS = 2150859174  # MaxConcurrentOperationsPerUser
QUOTA_FAULTS = (FAULT_QUOTA_SHELLS, FAULT_QUOTA_OPERATIONS)

SHELL_CREATE_ATTEMPTS = 4
SHELL_CREATE_BACKOFF = 0.5  # seconds, doubled per attempt, never past the deadline

# The variable table's list, so what `inventory check` accepts is what connects.
AUTH_TRANSPORTS = WINRM_TRANSPORTS
# Transports that send the password as Basic (``ssl`` is Basic unless a client certificate is
# given) and those that can encrypt messages themselves over plain HTTP.
_BASIC = ("basic", "plaintext", "ssl")
_ENCRYPTING = ("ntlm", "kerberos", "credssp")
CREDSSP_WARNING = (
    "CredSSP delegates the login's credential to the node: whoever controls one node can reuse "
    "it on every other; prefer ntlm or kerberos over https"
)
MAX_OPERATION_TIMEOUT = 20  # seconds a Receive may wait server-side (pywinrm's default)


@dataclass(frozen=True)
class Output:
    stdout: bytes
    stderr: bytes
    exit_code: int | None  # None while the command runs


def endpoint_url(host: Host) -> str:
    address = f"[{host.address}]" if ":" in host.address else host.address
    path = host.winrm.path if host.winrm.path.startswith("/") else "/" + host.winrm.path
    return f"{host.winrm.scheme}://{address}:{host.port}{path}"


def timeouts(host_timeout: float) -> tuple[int, int]:
    """(operation timeout, HTTP read timeout) in whole seconds, as pywinrm wants them.

    The server may hold a Receive for the operation timeout, so the read timeout must
    exceed it; both stay near ``host.timeout`` so one request never outlives it by much.
    """
    operation = max(1, min(MAX_OPERATION_TIMEOUT, int(host_timeout / 2)))
    read = max(operation + 1, math.ceil(host_timeout))
    return operation, read


def build_protocol(host: Host) -> Protocol:
    """pywinrm's Protocol for ``host``, after farmsync's own checks of the settings."""
    settings = host.winrm
    transport = settings.transport.lower()
    scheme = settings.scheme.lower()
    if transport not in AUTH_TRANSPORTS:
        raise NodeError(host.name, NodeErrorKind.AUTH, f"unknown WinRM transport {transport!r}")
    if scheme not in ("http", "https"):
        raise NodeError(host.name, NodeErrorKind.PROTOCOL, f"unknown WinRM scheme {scheme!r}")
    if scheme == "http" and transport in _BASIC and not (transport == "ssl" and settings.cert_pem):
        if not settings.allow_insecure_basic:
            raise NodeError(
                host.name,
                NodeErrorKind.TLS,
                "refusing Basic authentication over plain HTTP (the password would travel in "
                "clear); use https, or set farmsync_winrm_allow_insecure_basic if you must",
            )
        log.warning(
            "%s: Basic authentication over plain HTTP: the password travels in clear", host.name
        )
    if scheme == "https" and not settings.cert_validation:
        log.warning("%s: WinRM server certificate validation is disabled", host.name)
    if transport == "credssp":
        log.warning("%s: %s", host.name, CREDSSP_WARNING)
    operation, read = timeouts(host.timeout)
    try:
        protocol = Protocol(
            endpoint_url(host),
            transport=transport,  # type: ignore[arg-type]
            username=host.user,
            password=host.password.reveal() if host.password is not None else None,
            ca_trust_path=settings.ca_trust_path,  # type: ignore[arg-type]
            cert_pem=settings.cert_pem,
            cert_key_pem=settings.cert_key_pem,
            server_cert_validation="validate" if settings.cert_validation else "ignore",
            operation_timeout_sec=operation,
            read_timeout_sec=read,
            proxy=None,  # never a proxy from the environment
        )
        _isolate_from_environment(protocol)
    except WinRMError as exc:  # missing credentials or certificate files
        raise NodeError(host.name, NodeErrorKind.AUTH, _plain(exc)) from None
    return protocol


def _isolate_from_environment(protocol: Protocol) -> None:
    """Build the HTTP session now, and make it read nothing from the process environment.

    pywinrm's ``proxy=None`` becomes a ``no_proxy`` entry that requests applies by setting and
    deleting ``os.environ["no_proxy"]`` around every request: with several nodes in parallel
    one thread deletes the variable while another reads it (a KeyError mid-run). With no
    proxies and ``trust_env`` off, requests never touches the environment.

    pywinrm's ``build_session`` would also start message encryption (a network request)
    before these settings apply; that is held back for :func:`start_encryption`, which the
    shell calls inside its error mapping.
    """
    transport = protocol.transport
    wanted = transport.message_encryption
    transport.message_encryption = "never"
    try:
        session = transport.build_session()
    finally:
        transport.message_encryption = wanted
    session.proxies = {}
    session.trust_env = False
    transport.session = session


def start_encryption(protocol: Protocol) -> None:
    """Set up NTLM/Kerberos/CredSSP message encryption when the endpoint is plain HTTP (as
    pywinrm's ``auto`` would): its handshake is the first request to the node."""
    transport = protocol.transport
    if transport.encryption is not None or transport.auth_method not in _ENCRYPTING:
        return
    mode = transport.message_encryption
    if mode == "always" or (mode == "auto" and not transport.endpoint.lower().startswith("https")):
        assert transport.session is not None  # built by _isolate_from_environment
        transport.setup_encryption(transport.session)


class _PeerCertificate(requests.adapters.HTTPAdapter):
    """Remembers the SHA-256 of the server certificate each HTTPS answer came over: part of
    the node's identity (two inventory entries reaching one endpoint show the same one)."""

    sha256: str | None = None

    def build_response(
        self, req: requests.PreparedRequest, resp: urllib3.BaseHTTPResponse
    ) -> requests.Response:
        sock = getattr(getattr(resp, "connection", None), "sock", None)
        getpeercert = getattr(sock, "getpeercert", None)
        if getpeercert is not None:
            der = getpeercert(binary_form=True)
            if der:
                self.sha256 = hashlib.sha256(der).hexdigest()
        return super().build_response(req, resp)


def _watch_certificate(protocol: Protocol) -> _PeerCertificate | None:
    session = getattr(protocol.transport, "session", None)
    if not isinstance(session, requests.Session):
        return None
    adapter = _PeerCertificate()
    session.mount("https://", adapter)
    return adapter


class WinrmShell:
    """One remote shell on one node, opened once and reused by every command of the run."""

    def __init__(
        self,
        host: Host,
        protocol_factory: Callable[[Host], Protocol] = build_protocol,
        warnings: list[str] | None = None,
    ):
        self.host = host
        self._factory = protocol_factory
        # A whole request line in one Send where the endpoint's envelope allows it.
        self.send_chunk = send_chunk(host.winrm.max_envelope_kb)
        self.warnings = warnings if warnings is not None else []
        self._protocol: Protocol | None = None
        self._shell_id: str | None = None
        self._contacted = False
        self._certificate: _PeerCertificate | None = None
        self.sent_commands: list[str] = []  # every command line sent, for the secrets tests
        self.shells_opened = 0
        self.default_operation_timeout, _ = timeouts(host.timeout)

    @property
    def is_open(self) -> bool:
        return self._shell_id is not None

    @property
    def peer_certificate_sha256(self) -> str | None:
        """SHA-256 of the server's certificate, once an HTTPS answer came back."""
        return self._certificate.sha256 if self._certificate is not None else None

    def open(self, deadline: float | None = None) -> None:
        """Create the shell; retry with backoff while the shell quota is exceeded."""
        if deadline is None:
            deadline = time.monotonic() + self.host.timeout
        if self._protocol is None:
            with self.errors("connect"):  # building it may reach the node (encryption)
                protocol = self._factory(self.host)
                start_encryption(protocol)
            self._protocol = protocol
            self._certificate = _watch_certificate(self._protocol)
        delay = SHELL_CREATE_BACKOFF
        for attempt in range(1, SHELL_CREATE_ATTEMPTS + 1):
            try:
                with self.errors("connect"):
                    self._shell_id = self._protocol.open_shell(noprofile=True, codepage=65001)
                self._contacted = True
                self.shells_opened += 1
                return
            except NodeError as exc:
                quota = exc.kind is NodeErrorKind.QUOTA
                if not quota or attempt == SHELL_CREATE_ATTEMPTS:
                    raise
                if time.monotonic() + delay > deadline:
                    raise
                log.info("%s: shell quota exceeded, retrying in %.1fs", self.host.name, delay)
                time.sleep(delay)
                delay *= 2

    def smaller_sends(self, refused: int) -> None:
        """Fall back to SEND_CHUNK after the node refused a Send of ``refused`` bytes; said
        once per node (the operator can lower farmsync_winrm_max_envelope_kb)."""
        self.send_chunk = SEND_CHUNK
        notice = SEND_TOO_LARGE.format(size=refused // 1024, kb=self.host.winrm.max_envelope_kb)
        if notice not in self.warnings:
            self.warnings.append(notice)
            log.warning("%s: %s", self.host.name, notice)

    def close(self) -> None:
        """Delete the shell (best effort: the server reaps idle shells anyway)."""
        protocol, shell_id = self._protocol, self._shell_id
        self._shell_id = None
        if protocol is None:
            return
        try:
            if shell_id is not None:
                protocol.close_shell(shell_id, close_session=True)
            else:
                protocol.transport.close_session()
        except Exception as exc:  # closing must never mask the run's own outcome
            log.debug("%s: closing the WinRM shell failed: %s", self.host.name, type(exc).__name__)
            protocol.transport.close_session()

    def start(self, command_line: str, phase: str) -> RemoteCommand:
        """Start one command in the shell. On the operations quota, recreate the shell once:
        Windows does not give back a text shell's operation count when a command ends."""
        if self._protocol is None or self._shell_id is None:
            raise NodeError(self.host.name, NodeErrorKind.PROTOCOL, "not connected", phase=phase)
        self.sent_commands.append(command_line)
        try:
            with self.errors(phase):
                command_id = self._run(command_line)
        except NodeError as exc:
            if exc.kind is not NodeErrorKind.QUOTA:
                raise
            log.info("%s: operations quota exceeded, opening a new shell", self.host.name)
            self.close()
            self.open()
            if self._shell_id is None:
                raise
            with self.errors(phase):
                command_id = self._run(command_line)
        return RemoteCommand(self, self._protocol, self._shell_id, command_id, phase)

    def _run(self, command_line: str) -> str:
        """One Command with stdin as a pipe, not console keystrokes (as Ansible sets it when it
        streams stdin), and powershell.exe started directly: no cmd.exe in between to parse
        the command line or impose its 8,191-character limit."""
        assert self._protocol is not None and self._shell_id is not None
        return self._protocol.run_command(
            self._shell_id, command_line, console_mode_stdin=False, skip_cmd_shell=True
        )

    @contextmanager
    def errors(self, phase: str) -> Iterator[None]:
        """Turn anything pywinrm, requests or urllib3 raise into a NodeError."""
        try:
            yield
        except NodeError:
            raise
        except Exception as exc:
            raise translate(exc, self.host.name, phase, self._contacted) from None


class RemoteCommand:
    """One command running in the shell: stdin in, stdout/stderr out, bounded by deadlines."""

    def __init__(
        self, shell: WinrmShell, protocol: Protocol, shell_id: str, command_id: str, phase: str
    ):
        self._shell = shell
        self._protocol = protocol
        self._shell_id = shell_id
        self.command_id = command_id
        self.phase = phase
        self.sends = 0  # Send messages so far
        self.finished = False
        self.terminated = False

    def send(self, data: bytes, *, end: bool = False) -> None:
        """Write ``data`` to the command's stdin, in Send messages of at most the shell's
        ``send_chunk`` bytes. A Send the service refuses as too large (HTTP 413: refused whole,
        nothing of it reached stdin) is sent again in SEND_CHUNK pieces, and the shell keeps
        that size for the rest of the run."""
        offset = 0
        while True:
            size = self._shell.send_chunk
            chunk = data[offset : offset + size]
            last = offset + size >= len(data)
            try:
                self._protocol.send_command_input(
                    self._shell_id, self.command_id, chunk, end=end and last
                )
            except WinRMTransportError as exc:
                if exc.code == 413 and size > SEND_CHUNK:
                    self._shell.smaller_sends(size)
                    continue
                raise translate(exc, self._shell.host.name, self.phase, True) from None
            except Exception as exc:
                raise translate(exc, self._shell.host.name, self.phase, True) from None
            self.sends += 1
            offset += size
            if last:
                return

    def receive(self, deadline: float) -> Output | None:
        """One Receive; None if the server had nothing within the operation timeout."""
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        # The server may hold a Receive for OperationTimeout: never past our own deadline.
        # Only this Receive: the Protocol's value goes back at once, or later Command, Send
        # and Signal requests would carry a timeout cut short for this one.
        self._protocol.operation_timeout_sec = max(
            1, min(self._shell.default_operation_timeout, math.ceil(left))
        )
        try:
            with self._shell.errors(self.phase):
                try:
                    out, err, code, done = self._protocol.get_command_output_raw(
                        self._shell_id, self.command_id
                    )
                except WinRMOperationTimeoutError:
                    return None  # the normal "nothing yet" answer (WSManFault 2150858793)
        finally:
            self._protocol.operation_timeout_sec = self._shell.default_operation_timeout
        if done:
            self.finished = True
        return Output(out, err, code if done else None)

    def collect(self, deadline: float, until: Callable[[bytes], bool] | None = None) -> Output:
        """Receive until the command ends, or until ``until(new stdout)`` returns true (it is
        fed each stdout chunk as it arrives). At the deadline: ask the node to terminate the
        command and raise TIMEOUT."""
        stdout: list[bytes] = []
        stderr: list[bytes] = []
        while True:
            part = self.receive(deadline)
            if part is not None:
                stdout.append(part.stdout)
                stderr.append(part.stderr)
                stop = until is not None and bool(part.stdout) and until(part.stdout)
                if part.exit_code is not None or stop:
                    return Output(b"".join(stdout), b"".join(stderr), part.exit_code)
            if time.monotonic() >= deadline:
                self.terminate()
                raise NodeError(
                    self._shell.host.name,
                    NodeErrorKind.TIMEOUT,
                    "the node did not finish in time",
                    phase=self.phase,
                )

    def terminate(self) -> None:
        """Signal terminate: ends the process and releases the command on the server.

        Best effort, once, and bounded by the read timeout: a node that stopped answering
        must not hang the run."""
        if self.terminated:
            return
        self.terminated = True
        try:
            self._protocol.cleanup_command(self._shell_id, self.command_id)
        except Exception as exc:
            log.debug("%s: terminate failed: %s", self._shell.host.name, type(exc).__name__)


def translate(exc: BaseException, host: str, phase: str, contacted: bool) -> NodeError:
    """The NodeError for an exception from pywinrm, requests or urllib3.

    Details are built from fields, never from response bodies, so nothing the server
    echoes (or any secret) lands in a message."""
    kind: NodeErrorKind
    if isinstance(exc, WinRMOperationTimeoutError):
        kind, detail = NodeErrorKind.TIMEOUT, "the node had no answer within the operation timeout"
    elif isinstance(exc, InvalidCredentialsError):
        kind, detail = NodeErrorKind.AUTH, "the WinRM service rejected the credentials (HTTP 401)"
    elif isinstance(exc, WSManFaultError):
        kind, detail = _fault(exc)
    elif isinstance(exc, WinRMTransportError):
        kind, detail = _http_status(exc.code)
    elif isinstance(exc, WinRMError):
        kind, detail = NodeErrorKind.PROTOCOL, _plain(exc)
    elif isinstance(exc, requests.exceptions.SSLError):
        kind, detail = NodeErrorKind.TLS, f"TLS failure: {_ssl_reason(exc)}"
    elif isinstance(exc, requests.exceptions.ConnectTimeout):
        kind, detail = NodeErrorKind.UNREACHABLE, "no answer to the TCP connect"
    elif isinstance(exc, requests.exceptions.Timeout):
        kind, detail = NodeErrorKind.TIMEOUT, "the WinRM service did not answer in time"
    elif isinstance(exc, requests.exceptions.ConnectionError):
        kind, detail = _connection(exc, contacted)
    elif isinstance(exc, requests.exceptions.RequestException):
        kind, detail = NodeErrorKind.PROTOCOL, f"HTTP failure: {type(exc).__name__}"
    else:  # pywinrm parses answers loosely: StopIteration, ParseError, AssertionError...
        kind, detail = NodeErrorKind.PROTOCOL, f"unexpected answer ({type(exc).__name__})"
    return NodeError(host, kind, detail, phase=phase)


def _fault(exc: WSManFaultError) -> tuple[NodeErrorKind, str]:
    code = exc.wsman_fault_code
    reason = " ".join((exc.reason or "").split())[:300]
    if code in QUOTA_FAULTS or (exc.fault_subcode or "").endswith("QuotaLimit"):
        return NodeErrorKind.QUOTA, f"WinRM quota exceeded: {reason}"
    where = f" (WSManFault {code})" if code is not None else ""
    return NodeErrorKind.REMOTE, f"WinRM fault{where}: {reason}"


def _http_status(status: int) -> tuple[NodeErrorKind, str]:
    if status == 401:
        return NodeErrorKind.AUTH, "the WinRM service rejected the credentials (HTTP 401)"
    if status == 413:
        return NodeErrorKind.PROTOCOL, "request larger than the node's MaxEnvelopeSizekb (HTTP 413)"
    return NodeErrorKind.PROTOCOL, f"the WinRM service answered HTTP {status}"


def _connection(
    exc: requests.exceptions.ConnectionError, contacted: bool
) -> tuple[NodeErrorKind, str]:
    reason: object = exc.args[0] if exc.args else None
    if isinstance(reason, urllib3.exceptions.MaxRetryError):
        reason = reason.reason
    if isinstance(reason, urllib3.exceptions.NameResolutionError):
        return NodeErrorKind.UNREACHABLE, "the host name does not resolve"
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        return NodeErrorKind.UNREACHABLE, "cannot connect (connection refused or no route)"
    if isinstance(reason, urllib3.exceptions.ProtocolError) or contacted:
        return NodeErrorKind.CONNECTION_LOST, "the WinRM service closed the connection"
    return NodeErrorKind.UNREACHABLE, "cannot connect"


def _ssl_reason(exc: requests.exceptions.SSLError) -> str:
    text = str(exc)
    # A name mismatch is also a CERTIFICATE_VERIFY_FAILED: test for it first. OpenSSL 3 says
    # "Hostname mismatch" or "IP address mismatch".
    if "hostname mismatch" in text.lower() or "ip address mismatch" in text.lower():
        return "the server certificate does not match the host name"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "the server certificate is not trusted (certificate verify failed)"
    if "WRONG_VERSION_NUMBER" in text:
        return "the server does not speak TLS on this port"
    if any(m in text for m in ("HANDSHAKE_FAILURE", "PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL")):
        return "handshake failed (no TLS version or cipher in common with the server)"
    return "handshake failed"


def _plain(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__
