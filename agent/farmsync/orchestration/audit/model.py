"""What the audit knows about a farm once every node's read is resolved: no key values leave
this model except through ``KeyState.key``, which only the rules read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from farmsync.errors import FarmsyncError
from farmsync.keys.disclosed import DisclosedKeys
from farmsync.keys.machinekey import AUTO_MODIFIERS, MachineKey, is_auto_generate
from farmsync.nodes.auditread import RsaContainer
from farmsync.orchestration.audit.options import Severity as Severity
from farmsync.orchestration.marker import Marker
from farmsync.webconfig.effective import ConfigFacts, EffectiveKey
from farmsync.webconfig.iis import ApplicationHost


class ScopeKind(StrEnum):
    ROOT = "root"  # a managed root web.config (with machine.config beneath it)
    APPLICATION = "application"


class KeyStatus(StrEnum):
    OK = "ok"
    ENCRYPTED = "encrypted"  # protected configuration somewhere in the chain: unknown
    UNREADABLE = "unreadable"  # a file of the chain could not be read: unknown, never clean
    MALFORMED = "malformed"


class FileRole(StrEnum):
    MACHINE = "machine.config"
    ROOT = "root web.config"
    APPLICATION = "application web.config"
    SUBFOLDER = "subfolder web.config"  # below an application: not where a machineKey belongs
    IIS = "iis config"


@dataclass(frozen=True)
class KeyState:
    """The key in effect at one scope. ``identity`` names it for comparison: the fingerprint
    of an explicit key, or a per-node (per application with IsolateApps) AutoGenerate name,
    because AutoGenerate keys are never shared between nodes."""

    status: KeyStatus
    identity: str | None = None
    effective: EffectiveKey | None = field(default=None, repr=False)
    reason: str | None = None

    @property
    def key(self) -> MachineKey | None:
        return self.effective.key if self.effective is not None else None

    @property
    def fingerprint(self) -> str | None:
        key = self.key
        return key.fingerprint() if key is not None and key.is_explicit else None

    @property
    def autogenerate(self) -> bool:
        key = self.key
        return key is not None and not key.is_explicit

    @property
    def isolated(self) -> bool:
        key = self.key
        if key is None:
            return False
        return any(
            is_auto_generate(v) and any(m in v for m in AUTO_MODIFIERS)
            for v in (key.validation_key, key.decryption_key)
        )


def key_identity(key: MachineKey, host: str, application: str | None) -> str:
    if key.is_explicit:
        return key.fingerprint()
    isolated = any(
        is_auto_generate(v) and any(m in v for m in AUTO_MODIFIERS)
        for v in (key.validation_key, key.decryption_key)
    )
    return f"auto:{host}" + (f":{application}" if isolated and application else "")


@dataclass(frozen=True)
class Scope:
    host: str
    kind: ScopeKind
    name: str  # root: its path; application: "Site/app" (IIS) or its web.config path
    path: str  # the web.config of this scope (root or application)
    root_config: str  # the root web.config it inherits from (itself for ROOT)
    state: KeyState
    framework: str | None = None
    bitness: int | None = None
    pool: str | None = None
    physical_path: str | None = None


@dataclass(frozen=True)
class ConfigFile:
    host: str
    path: str
    role: FileRole
    status: str  # "ok", "missing", "unreadable", "malformed"
    facts: ConfigFacts | None = None
    error: str | None = None
    error_line: int | None = None
    leftovers: tuple[str, ...] = ()  # <name>.farmsync-* files beside it
    marker: Marker | None = None  # the farm marker of a root web.config (orchestration/marker)
    marker_key: str | None = None  # the fingerprint of the root key the file holds


@dataclass
class NodeModel:
    host: str
    windows: bool
    error: FarmsyncError | None = None
    files: dict[str, ConfigFile] = field(default_factory=dict)
    scopes: list[Scope] = field(default_factory=list)
    registry: Mapping[str, int | None] | None = None
    rsa: Mapping[str, RsaContainer] | None = None
    facts_error: str | None = None
    iis: ApplicationHost | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    round_trips: int = 0

    @property
    def reachable(self) -> bool:
        return self.error is None

    def root_scopes(self) -> list[Scope]:
        return [s for s in self.scopes if s.kind is ScopeKind.ROOT]

    def scope_for_root(self, path: str) -> Scope | None:
        return next((s for s in self.root_scopes() if s.path == path), None)


@dataclass(frozen=True)
class Expected:
    """The key the farm should hold and how that was decided."""

    identity: str | None
    source: str  # "journal", "majority" or "none"
    run_id: str | None = None
    since: datetime | None = None  # when the farm got it (journal runs only)


@dataclass
class AuditModel:
    farm: str
    nodes: list[NodeModel]
    expected: Expected
    max_key_age_days: float | None
    now: datetime
    disclosed: DisclosedKeys | None = None  # Microsoft's list plus --known-keys

    def reachable(self) -> list[NodeModel]:
        return [n for n in self.nodes if n.reachable]

    def scopes(self) -> list[Scope]:
        return [s for n in self.nodes for s in n.scopes]


@dataclass(frozen=True)
class Finding:
    id: str
    severity: Severity
    message: str  # what was found (fingerprints, names, never key values)
    action: str  # one sentence: what to do
    host: str | None = None  # None: the farm as a whole
    path: str | None = None
    line: int | None = None
    application: str | None = None
    controls: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "severity": self.severity.value,
            "host": self.host,
            "path": self.path,
            "line": self.line,
            "application": self.application,
            "message": self.message,
            "action": self.action,
            "controls": list(self.controls),
        }
