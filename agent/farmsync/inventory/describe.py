"""What `farmsync inventory check` shows for each host, as plain data (the CLI renders it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from farmsync.inventory.model import Host, Inventory, RecycleKind, RecycleSpec, Secret, Transport
from farmsync.inventory.variables import env_lookup_name


@dataclass(frozen=True)
class HostSummary:
    name: str
    groups: tuple[str, ...]
    transport: str  # ssh | winrm | local
    address: str  # "host:port", "[v6]:port", or "local"
    shell: str
    user: str | None
    root_configs: tuple[str, ...]
    app_configs: tuple[str, ...]
    recycle: str
    password_source: str  # "env:NAME" | "plaintext" | "none"
    source_line: int | None
    trust: str = ""  # how the node's identity is checked (TLS trust store, host keys)
    notes: tuple[str, ...] = ()  # facts an operator should know before connecting

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (lists instead of tuples); never holds a secret."""
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        return data


def format_address(host: Host) -> str:
    if host.transport is Transport.LOCAL:
        return "local"
    address = f"[{host.address}]" if ":" in host.address else host.address
    return f"{address}:{host.port}"


def describe_recycle(spec: RecycleSpec) -> str:
    if spec.kind is RecycleKind.IIS:
        return "iis: " + ", ".join(spec.app_pools) if spec.app_pools else "iis: every pool"
    if spec.kind is RecycleKind.COMMAND:
        return f"command: {spec.command}"
    return "none"


def password_source(host: Host) -> str:
    """Where the host's password comes from, without ever looking at it more than needed."""
    env = host.variables.get("farmsync_password_env")
    if isinstance(env, str):
        return f"env:{env}"
    plain = host.variables.get("ansible_password")
    if isinstance(plain, Secret):
        lookup = env_lookup_name(plain.reveal())
        return f"env:{lookup}" if lookup else "plaintext"
    return "none"


CERTIFI_TRUST = (
    "certifi's CA bundle, not the operating system's trust store "
    "(set ansible_winrm_ca_trust_path for a private CA)"
)
CREDSSP_NOTE = (
    "CredSSP delegates the login's credential to the node: whoever controls one node can "
    "reuse it on every other; prefer ntlm or kerberos over https"
)


def describe_trust(host: Host) -> str:
    """How the node is authenticated to us: the TLS trust store or the host key files."""
    if host.transport is Transport.WINRM:
        winrm = host.winrm
        if winrm.scheme == "http":
            if winrm.transport in ("ntlm", "kerberos", "credssp"):
                return f"plain HTTP, messages encrypted by {winrm.transport}; server not verified"
            return "plain HTTP: nothing verified, nothing encrypted"
        if not winrm.cert_validation:
            return "TLS certificate NOT verified (ansible_winrm_server_cert_validation: ignore)"
        if winrm.ca_trust_path:
            return f"TLS certificate checked against {winrm.ca_trust_path}"
        return f"TLS certificate checked against {CERTIFI_TRUST}"
    if host.transport is Transport.SSH:
        pinned = f" and {host.ssh.known_hosts_file}" if host.ssh.known_hosts_file else ""
        return f"SSH host key checked against the system and user known_hosts{pinned}"
    return "local"


def describe_notes(host: Host) -> tuple[str, ...]:
    notes: list[str] = []
    if host.transport is Transport.WINRM and host.winrm.transport == "credssp":
        notes.append(CREDSSP_NOTE)
    return tuple(notes)


def describe_host(host: Host) -> HostSummary:
    return HostSummary(
        name=host.name,
        groups=host.groups,
        transport=host.transport.value,
        address=format_address(host),
        shell=host.shell.value,
        user=host.user,
        root_configs=host.root_configs,
        app_configs=host.app_configs,
        recycle=describe_recycle(host.recycle),
        password_source=password_source(host),
        source_line=host.source_line,
        trust=describe_trust(host),
        notes=describe_notes(host),
    )


def describe_inventory(inv: Inventory) -> list[HostSummary]:
    """One summary per host, in inventory order."""
    return [describe_host(host) for host in inv.hosts.values()]
