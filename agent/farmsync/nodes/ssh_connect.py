"""One SSH connection per node per run: host-key checks, authentication, jump host, exec, SFTP.

Host keys are always verified (system and user known_hosts plus the inventory's pinned
file); paramiko's RejectPolicy makes an unknown key an error, never an auto-accept. Every
paramiko and socket failure is turned into a :class:`NodeError` here, so no paramiko
exception type escapes the SSH transport.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import paramiko

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.inventory.model import Host
from farmsync.nodes.contract import NodeIdentity

SYSTEM_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts",)
USER_KNOWN_HOSTS = ("~/.ssh/known_hosts",)

_ERRNO_KINDS = {
    errno.EACCES: NodeErrorKind.PERMISSION,
    errno.EPERM: NodeErrorKind.PERMISSION,
    errno.EROFS: NodeErrorKind.PERMISSION,
    errno.ENOSPC: NodeErrorKind.DISK_FULL,
    errno.EDQUOT: NodeErrorKind.DISK_FULL,  # as the node agent says it (agent.error_kind)
    errno.EFBIG: NodeErrorKind.DISK_FULL,
    errno.EISDIR: NodeErrorKind.IS_DIRECTORY,
    errno.ENOENT: NodeErrorKind.NOT_FOUND,
    errno.ECONNREFUSED: NodeErrorKind.UNREACHABLE,
    errno.EHOSTUNREACH: NodeErrorKind.UNREACHABLE,
    errno.ENETUNREACH: NodeErrorKind.UNREACHABLE,
    errno.ETIMEDOUT: NodeErrorKind.TIMEOUT,
}


def _key_name(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.fingerprint}"


def host_key_fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's form: ``SHA256:`` and the unpadded base64 of the key blob's SHA-256."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def bounded(
    host: str, phase: str, channel: paramiko.Channel, request: Callable[[], None], timeout: float
) -> None:
    """Run a channel request that paramiko waits for without a limit (exec, subsystem).

    The request runs in a helper thread; at the deadline the channel is closed, which wakes
    that thread, and TIMEOUT is raised here."""
    failed: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            request()
        except BaseException as exc:  # handed to the caller below
            failed.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name=f"farmsync-{phase}-{host}", daemon=True).start()
    if not done.wait(timeout):
        channel.close()
        raise NodeError(
            host,
            NodeErrorKind.TIMEOUT,
            f"the node did not answer within {timeout:g}s",
            phase=phase,
        )
    if failed:
        raise failed[0]


def map_error(
    host: str, exc: BaseException, phase: str | None, path: str | None = None
) -> NodeError:
    """The NodeError for a paramiko, socket or OS failure. Details never carry contents."""
    if isinstance(exc, NodeError):
        return exc
    if isinstance(exc, paramiko.BadHostKeyException):
        return NodeError(
            host,
            NodeErrorKind.HOST_KEY,
            f"host key for {exc.hostname} CHANGED: got {_key_name(exc.key)}, "
            f"known_hosts has {_key_name(exc.expected_key)}; refusing to connect",
            phase=phase,
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return NodeError(host, NodeErrorKind.AUTH, f"authentication refused: {exc}", phase=phase)
    if isinstance(exc, socket.timeout | TimeoutError):
        return NodeError(host, NodeErrorKind.TIMEOUT, "timed out waiting for the node", phase=phase)
    if isinstance(exc, paramiko.ChannelException):
        return NodeError(
            host, NodeErrorKind.UNREACHABLE, f"channel refused: {exc.text}", phase=phase
        )
    if isinstance(exc, paramiko.SSHException):
        text = str(exc)
        if "not found in known_hosts" in text:
            return NodeError(
                host,
                NodeErrorKind.HOST_KEY,
                f"{text}: unknown host key for {host}, not accepted "
                "(add it to known_hosts or to the farmsync_known_hosts file)",
                phase=phase,
            )
        if "protocol banner" in text or "timeout" in text.lower():
            return NodeError(host, NodeErrorKind.TIMEOUT, text, phase=phase)
        return NodeError(host, NodeErrorKind.CONNECTION_LOST, text, phase=phase)
    if isinstance(exc, EOFError):
        return NodeError(host, NodeErrorKind.CONNECTION_LOST, "connection closed", phase=phase)
    if isinstance(exc, OSError):
        kind = _ERRNO_KINDS.get(exc.errno or 0)
        if kind is None:
            if path:
                kind = NodeErrorKind.REMOTE
            elif phase == "connect":
                kind = NodeErrorKind.UNREACHABLE
            else:
                kind = NodeErrorKind.CONNECTION_LOST
        detail = exc.strerror or str(exc) or type(exc).__name__
        return NodeError(host, kind, detail, phase=phase, path=path)
    return NodeError(host, NodeErrorKind.REMOTE, type(exc).__name__, phase=phase, path=path)


@contextmanager
def node_errors(host: str, phase: str | None, path: str | None = None) -> Iterator[None]:
    """Translate whatever paramiko/socket raise inside the block into NodeError."""
    try:
        yield
    except NodeError:
        raise
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise map_error(host, exc, phase, path) from None


def parse_jump(spec: str, default_user: str | None) -> tuple[str | None, str, int]:
    """``[user@]host[:port]`` -> (user, host, port)."""
    user: str | None = default_user
    if "@" in spec:
        user, spec = spec.rsplit("@", 1)
    port = 22
    if spec.startswith("["):  # [v6addr]:port
        addr, _, rest = spec[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
        return user, addr, port
    if spec.count(":") == 1:
        spec, port_text = spec.split(":")
        port = int(port_text)
    return user, spec, port


class SshConnection:
    """An authenticated SSH connection (maybe through a jump host) with one lazily opened SFTP."""

    def __init__(self, host: Host, sent_commands: list[str]):
        self.host = host
        self.sent_commands = sent_commands  # every exec command line, for the secrecy tests
        self._clients: list[paramiko.SSHClient] = []
        self._sftp: paramiko.SFTPClient | None = None

    # --- opening ------------------------------------------------------------------------
    def _new_client(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        keys = client.get_host_keys()
        # Loaded into the in-memory set only: nothing is ever written back to these files.
        paths = [*SYSTEM_KNOWN_HOSTS, *USER_KNOWN_HOSTS]
        if self.host.ssh.known_hosts_file:
            paths.append(self.host.ssh.known_hosts_file)
        for name in paths:
            path = Path(os.path.expanduser(name))
            if path.is_file():
                keys.load(str(path))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        return client

    def _connect_one(
        self, address: str, port: int, user: str | None, sock: paramiko.Channel | None
    ) -> paramiko.SSHClient:
        client = self._new_client()
        self._clients.append(client)
        ssh = self.host.ssh
        password = self.host.password.reveal() if self.host.password else None
        started = time.monotonic()
        try:
            client.connect(
                address,
                port=port,
                username=user,
                password=password,
                key_filename=ssh.private_key_file,
                allow_agent=ssh.allow_agent,
                look_for_keys=ssh.private_key_file is None and password is None,
                timeout=self.host.timeout,
                banner_timeout=self.host.timeout,
                auth_timeout=self.host.timeout,
                channel_timeout=self.host.timeout,
                sock=sock,
            )
        except paramiko.SSHException as exc:
            text = str(exc)
            if "No authentication methods available" in text:
                # No key file, no agent key, no password: nothing was even offered.
                raise NodeError(
                    self.host.name,
                    NodeErrorKind.AUTH,
                    f"no credentials to offer {address}:{port} (key file, agent or password)",
                    phase="connect",
                ) from None
            if "No existing session" not in text and "protocol banner" not in text:
                raise
            # The transport died before the key exchange; paramiko reports that racily as
            # either message. Say what happened: silence until the deadline, or a hang-up.
            timed_out = time.monotonic() - started >= self.host.timeout * 0.9
            raise NodeError(
                self.host.name,
                NodeErrorKind.TIMEOUT if timed_out else NodeErrorKind.CONNECTION_LOST,
                f"no SSH banner from {address}:{port}"
                + (f" within {self.host.timeout:g}s" if timed_out else " (connection closed)"),
                phase="connect",
            ) from None
        return client

    def open(self) -> None:
        host = self.host
        with node_errors(host.name, "connect"):
            sock: paramiko.Channel | None = None
            if host.ssh.jump_host:
                juser, jaddr, jport = parse_jump(host.ssh.jump_host, host.user)
                jump = self._connect_one(jaddr, jport, juser, None)
                transport = jump.get_transport()
                assert transport is not None
                try:
                    sock = transport.open_channel(
                        "direct-tcpip",
                        (host.address, host.port),
                        ("127.0.0.1", 0),
                        timeout=host.timeout,
                    )
                except paramiko.ChannelException as exc:
                    raise NodeError(
                        host.name,
                        NodeErrorKind.UNREACHABLE,
                        f"jump host {jaddr}:{jport} cannot reach {host.address}:{host.port}: "
                        f"{exc.text}",
                        phase="connect",
                    ) from None
            self._connect_one(host.address, host.port, host.user, sock)

    @property
    def client(self) -> paramiko.SSHClient:
        if not self._clients:
            raise NodeError(self.host.name, NodeErrorKind.CONNECTION_LOST, "not connected")
        return self._clients[-1]

    def login_facts(self) -> dict[str, str]:
        """The authentication that succeeded and the host key that was checked."""
        transport = self.client.get_transport()
        if transport is None:
            return {}
        handler = getattr(transport, "auth_handler", None)
        method = getattr(handler, "auth_method", None) or "unknown"
        key = transport.get_remote_server_key()
        return {
            "auth": f"ssh {method} as {transport.get_username()}",
            "verified": f"host key {_key_name(key)} found in known_hosts",
        }

    def identity(self) -> NodeIdentity | None:
        """The node's proof of identity: the host key it authenticated the connection with."""
        transport = self._clients[-1].get_transport() if self._clients else None
        if transport is None:
            return None
        key = transport.get_remote_server_key()
        return NodeIdentity(f"ssh host key {key.get_name()} {host_key_fingerprint(key)}")

    def _session(self, phase: str) -> paramiko.Channel:
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise NodeError(
                self.host.name, NodeErrorKind.CONNECTION_LOST, "connection closed", phase=phase
            )
        channel = transport.open_session(timeout=self.host.timeout)
        channel.settimeout(self.host.timeout)
        return channel

    def sftp(self) -> paramiko.SFTPClient:
        """The connection's one SFTP channel, opened on first use under the host's deadline:
        paramiko's open_sftp() waits for the subsystem and its version packet with no limit,
        so a node whose SFTP server never answers would hang the run."""
        if self._sftp is None:
            with node_errors(self.host.name, "sftp"):
                channel = self._session("sftp")
                try:
                    bounded(
                        self.host.name,
                        "sftp",
                        channel,
                        lambda: channel.invoke_subsystem("sftp"),
                        self.host.timeout,
                    )
                    # The version exchange reads under the channel's timeout set above.
                    self._sftp = paramiko.SFTPClient(channel)
                except BaseException:
                    channel.close()
                    raise
        return self._sftp

    def discard_sftp(self) -> None:
        """Close the SFTP channel without waiting for it (a release that was never answered
        leaves answers in flight on it); the next sftp() opens a fresh one."""
        sftp, self._sftp = self._sftp, None
        if sftp is not None:
            with contextlib.suppress(Exception):  # already broken: closing is best effort
                sftp.close()

    def exec(self, command: str) -> paramiko.Channel:
        """Start ``command`` on the node; the caller talks to it over stdin/stdout."""
        self.sent_commands.append(command)
        with node_errors(self.host.name, "exec"):
            channel = self._session("exec")
            try:
                bounded(
                    self.host.name,
                    "exec",
                    channel,
                    lambda: channel.exec_command(command),
                    self.host.timeout,
                )
            except BaseException:
                channel.close()  # refused or timed out: the channel must not linger
                raise
        return channel

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        for client in reversed(self._clients):
            client.close()
        self._clients.clear()
