"""Resolved inventory: hosts with their merged variables turned into typed settings.

The loader (``inventory.loader``) builds these from an Ansible-style YAML inventory; every
layer above reads settings from here and never looks at raw variables again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# Connection and command timeout of one node (farmsync_timeout), in seconds.
DEFAULT_NODE_TIMEOUT = 30.0


class Secret:
    """A password or passphrase. Its repr and str never show the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


class Transport(StrEnum):
    SSH = "ssh"
    WINRM = "winrm"
    LOCAL = "local"  # this machine's own files (ansible_connection: local)


class Shell(StrEnum):
    POSIX = "sh"
    POWERSHELL = "powershell"  # Windows nodes (WinRM always; SSH with ansible_shell_type)


class RecycleKind(StrEnum):
    NONE = "none"
    COMMAND = "command"  # run a command on the node
    IIS = "iis"  # recycle IIS application pools (all, or the named ones)


@dataclass(frozen=True)
class RecycleSpec:
    kind: RecycleKind = RecycleKind.NONE
    command: str | None = None
    app_pools: tuple[str, ...] = ()  # empty with IIS: every pool


@dataclass(frozen=True)
class Policy:
    validation: str = "HMACSHA256"
    decryption: str = "AES"
    compatibility_mode: str | None = None
    max_key_age_days: float | None = None


@dataclass(frozen=True)
class SshSettings:
    private_key_file: str | None = None
    known_hosts_file: str | None = None  # pinned host keys, in addition to system/user files
    jump_host: str | None = None  # [user@]host[:port]
    allow_agent: bool = True


# A WinRM node's MaxEnvelopeSizekb: 500 by default since WinRM 3.0 (WMF 3.0 and later, so
# every node at the PowerShell 5.1 floor); 150 before.
DEFAULT_WINRM_MAX_ENVELOPE_KB = 500


@dataclass(frozen=True)
class WinrmSettings:
    transport: str = "ntlm"  # ntlm | kerberos | credssp | certificate | basic | plaintext
    scheme: str = "https"
    cert_validation: bool = True
    ca_trust_path: str | None = None
    allow_insecure_basic: bool = False  # Basic over plain HTTP; refused unless this is set
    cert_pem: str | None = None
    cert_key_pem: str | None = None
    path: str = "/wsman"
    max_envelope_kb: int = DEFAULT_WINRM_MAX_ENVELOPE_KB


@dataclass(frozen=True)
class Host:
    name: str
    farm: str
    transport: Transport
    address: str
    port: int
    shell: Shell
    user: str | None = None
    password: Secret | None = None
    root_configs: tuple[str, ...] = ()
    app_configs: tuple[str, ...] = ()
    recycle: RecycleSpec = field(default_factory=RecycleSpec)
    policy: Policy = field(default_factory=Policy)
    ssh: SshSettings = field(default_factory=SshSettings)
    winrm: WinrmSettings = field(default_factory=WinrmSettings)
    timeout: float = DEFAULT_NODE_TIMEOUT
    groups: tuple[str, ...] = ()
    source_line: int | None = None
    variables: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class InventoryWarning:
    source: str
    line: int | None
    message: str


@dataclass(frozen=True)
class Inventory:
    path: str
    farm: str
    hosts: Mapping[str, Host]  # in file order
    groups: Mapping[str, tuple[str, ...]]  # group -> host names, 'all' and 'ungrouped' included
    warnings: tuple[InventoryWarning, ...] = ()

    @property
    def policy(self) -> Policy:
        """The farm's one key policy: the loader refuses hosts that do not share it."""
        first = next(iter(self.hosts.values()), None)
        return first.policy if first is not None else Policy()
