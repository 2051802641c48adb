"""From what a node sent back to the audit's model of it: every file's facts, and every scope
(managed root web.config, application) with its effective key along the inheritance chain.
Pure: no node is contacted here, so it is tested from data."""

from __future__ import annotations

import ntpath
import posixpath
from collections.abc import Callable, Sequence
from typing import Any

from farmsync.algorithms import FRAMEWORK_V4
from farmsync.errors import ConfigFileError
from farmsync.inventory.loader import windows_root_configs
from farmsync.inventory.model import Host, Shell
from farmsync.keys.machinekey import framework_of_path
from farmsync.nodes.auditread import AuditRead, AuditRequest
from farmsync.nodes.contract import FileState, FileStatus
from farmsync.orchestration.audit.model import (
    ConfigFile,
    FileRole,
    KeyState,
    KeyStatus,
    NodeModel,
    Scope,
    ScopeKind,
    key_identity,
)
from farmsync.orchestration.marker import Marker, read_marker
from farmsync.webconfig.effective import ConfigFacts, config_facts, resolve
from farmsync.webconfig.iis import (
    Application,
    ApplicationHost,
    join_windows,
    machine_config_for,
    parse_application_host,
    root_config_for,
)
from farmsync.webconfig.parser import inspect_config

ALL_FRAMEWORKS = ("v4.0.30319", "v2.0.50727")


def is_windows(host: Host) -> bool:
    return host.shell is Shell.POWERSHELL


def folder_of(path: str) -> str:
    return ntpath.dirname(path) if "\\" in path else posixpath.dirname(path)


def _unique(paths: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(paths))


def bitness_of(path: str) -> int | None:
    lowered = path.lower().replace("/", "\\")
    if "\\framework64\\" in lowered:
        return 64
    if "\\framework\\" in lowered:
        return 32
    return None


def audit_request(host: Host) -> AuditRequest:
    """What to read on ``host``: its root configs and the machine.config beside each, its
    application configs and the folders below them; on Windows also every framework's root
    and machine.config, IIS's applications, the registry and the RSA key containers."""
    windows = is_windows(host)
    roots = list(host.root_configs)
    if windows:
        roots += windows_root_configs(ALL_FRAMEWORKS, (32, 64))
    roots = list(_unique(roots))
    paths = [*roots, *(machine_config_for(r) for r in roots), *host.app_configs]
    scan = [folder_of(a) for a in host.app_configs]
    return AuditRequest(_unique(paths), _unique(scan), iis=windows, windows_facts=windows)


def _file(
    host: str, path: str, state: FileState, role: FileRole, leftovers: tuple[str, ...]
) -> ConfigFile:
    if state.status is FileStatus.MISSING:
        return ConfigFile(host, path, role, "missing")
    if state.status is FileStatus.ERROR or state.content is None:
        detail = state.error or "unreadable"
        kind = state.error_kind.value if state.error_kind else "remote-error"
        return ConfigFile(
            host, path, role, "unreadable", error=f"{kind}: {detail}", leftovers=leftovers
        )
    if role is FileRole.IIS:
        return ConfigFile(host, path, role, "ok", leftovers=leftovers)
    try:
        facts = config_facts(state.content, path)  # element sources are node paths
    except ConfigFileError as exc:
        return ConfigFile(
            host,
            path,
            role,
            "malformed",
            error=exc.message,
            error_line=exc.line,
            leftovers=leftovers,
        )
    marker, held = _marker_of(state.content, path) if role is FileRole.ROOT else (None, None)
    return ConfigFile(
        host, path, role, "ok", facts=facts, leftovers=leftovers, marker=marker, marker_key=held
    )


def _marker_of(content: bytes, path: str) -> tuple[Marker | None, str | None]:
    """The farm marker of a root web.config and the fingerprint of the key it holds."""
    marker = read_marker(content, path)
    if marker is None:
        return None, None
    try:
        found = inspect_config(content, path).root_key
    except ConfigFileError:
        return marker, None
    return marker, found.key.fingerprint() if found is not None else None


def _parse_iis(host: str, read: AuditRead, files: dict[str, ConfigFile]) -> ApplicationHost | None:
    if read.iis is None:
        return None
    path = read.iis.application_host
    state = read.files.get(path)
    if state is None or state.status is not FileStatus.OK or state.content is None:
        return None
    try:
        return parse_application_host(state.content, f"{host}:{path}")
    except ConfigFileError as exc:
        files[path] = ConfigFile(
            host, path, FileRole.IIS, "malformed", error=exc.message, error_line=exc.line
        )
        return None


def chain_state(
    host: str, application: str | None, levels: Sequence[tuple[ConfigFile | None, Sequence[str]]]
) -> KeyState:
    """The key in effect after ``levels`` (machine.config first); unknown when a file of the
    chain could not be read or is encrypted."""
    usable: list[tuple[ConfigFacts, Sequence[str]]] = []
    for config, targets in levels:
        if config is None or config.status == "missing":
            continue
        if config.status == "unreadable":
            return KeyState(KeyStatus.UNREADABLE, reason=f"{config.path} could not be read")
        if config.facts is None:
            return KeyState(KeyStatus.MALFORMED, reason=f"{config.path} is not a valid config")
        if config.facts.encrypted:
            return KeyState(
                KeyStatus.ENCRYPTED, reason=f"{config.path}: system.web is encrypted (unknown key)"
            )
        usable.append((config.facts, targets))
    effective = resolve(usable)
    return KeyState(KeyStatus.OK, key_identity(effective.key, host, application), effective)


def resolve_node(host: Host, read: AuditRead, round_trips: int = 0) -> NodeModel:
    """The node's model: every file with its role and facts, then its scopes."""
    node = NodeModel(
        host.name,
        is_windows(host),
        registry=read.registry,
        rsa=read.rsa,
        facts_error=read.facts_error,
        env=dict(read.env),
        round_trips=round_trips,
    )
    chains = _Chains(host, node)
    node.iis = _parse_iis(host.name, read, node.files)
    applications = list(node.iis.applications) if node.iis is not None else []
    _classify_files(host, read, node, applications, chains.norm)
    chains.index()
    node.scopes += chains.root_scopes()
    node.scopes += chains.iis_scopes(applications)
    node.scopes += chains.listed_app_scopes({chains.norm(s.path) for s in node.scopes})
    return node


def _classify_files(
    host: Host,
    read: AuditRead,
    node: NodeModel,
    applications: Sequence[Application],
    norm: Callable[[str], str],
) -> None:
    """Each file read, by what it is to ASP.NET: root, machine, application, sub-folder."""
    roots = {norm(p) for p in host.root_configs}
    if node.windows:
        roots |= {norm(p) for p in windows_root_configs(ALL_FRAMEWORKS, (32, 64))}
    machines = {norm(machine_config_for(r)) for r in roots}
    iis_files = {norm(read.iis.redirection), norm(read.iis.application_host)} if read.iis else set()
    apps = {norm(a.web_config) for a in applications} | {norm(p) for p in host.app_configs}
    below = {norm(p) for paths in read.subfolder_configs.values() for p in paths}
    below |= {
        norm(join_windows(physical, "web.config"))
        for app in applications
        for _virtual, physical in app.virtual_dirs
    }
    hidden = _hidden_by_subdir_rule(applications, read, norm)
    for path, state in read.files.items():
        key = norm(path)
        if key in hidden:
            continue  # IIS does not read it (allowSubDirConfig="false")
        if key in iis_files:
            role = FileRole.IIS
        elif key in roots:
            role = FileRole.ROOT
        elif key in machines:
            role = FileRole.MACHINE
        elif key in below and key not in apps:
            role = FileRole.SUBFOLDER
        else:
            role = FileRole.APPLICATION
        if path not in node.files:  # a malformed applicationHost.config is already there
            node.files[path] = _file(host.name, path, state, role, read.leftovers.get(path, ()))


class _Chains:
    """Builds scopes from a node's classified files (Windows paths compare case-insensitively)."""

    def __init__(self, host: Host, node: NodeModel):
        self.host = host
        self.node = node
        self.norm: Callable[[str], str] = str.lower if node.windows else str
        self._by_norm: dict[str, ConfigFile] = {}

    def index(self) -> None:
        self._by_norm = {self.norm(p): f for p, f in self.node.files.items()}

    def level(self, path: str) -> ConfigFile | None:
        return self._by_norm.get(self.norm(path))

    def _scope(
        self, kind: ScopeKind, name: str, path: str, root: str, targets: Sequence[str], **kw: Any
    ) -> Scope:
        levels: list[tuple[ConfigFile | None, Sequence[str]]] = [
            (self.level(machine_config_for(root)), ()),
            (self.level(root), targets),
        ]
        if kind is ScopeKind.APPLICATION:
            levels.append((self.level(path), ()))
        application = name if kind is ScopeKind.APPLICATION else None
        state = chain_state(self.host.name, application, levels)
        return Scope(self.host.name, kind, name, path, root, state, **kw)

    def root_scopes(self) -> list[Scope]:
        """Each managed root config that exists, over the machine.config beside it."""
        found = []
        for root in self.host.root_configs:
            config = self.level(root)
            if config is None or config.status == "missing":
                continue  # e.g. no Framework64 on a 32-bit server
            found.append(
                self._scope(
                    ScopeKind.ROOT,
                    root,
                    root,
                    root,
                    (),
                    framework=framework_of_path(root),
                    bitness=bitness_of(root),
                )
            )
        return found

    def iis_scopes(self, applications: Sequence[Application]) -> list[Scope]:
        """Each IIS application with managed code, on the root config its pool inherits."""
        iis = self.node.iis
        found = []
        for app in applications if iis is not None else ():
            assert iis is not None
            pool = iis.pool_of(app)
            if pool.framework is None:
                continue  # "No Managed Code": ASP.NET never runs there
            root = root_config_for(pool.framework, pool.bitness)
            found.append(
                self._scope(
                    ScopeKind.APPLICATION,
                    app.name,
                    app.web_config,
                    root,
                    (app.name,),
                    framework=pool.framework,
                    bitness=pool.bitness,
                    pool=pool.name,
                    physical_path=app.physical_path,
                )
            )
        return found

    def listed_app_scopes(self, known: set[str]) -> list[Scope]:
        """farmsync_app_configs not found through IIS: on the host's first root config
        (POSIX) or Framework64 v4 (Windows)."""
        roots = self.host.root_configs
        default = root_config_for(FRAMEWORK_V4, 64) if self.node.windows or not roots else roots[0]
        found = []
        for path in self.host.app_configs:
            if self.norm(path) in known:
                continue
            known.add(self.norm(path))
            found.append(
                self._scope(
                    ScopeKind.APPLICATION,
                    path,
                    path,
                    default,
                    (),
                    framework=framework_of_path(default),
                    bitness=bitness_of(default),
                )
            )
        return found


def _hidden_by_subdir_rule(
    applications: Sequence[Application], read: AuditRead, norm: Callable[[str], str]
) -> set[str]:
    """Subfolder web.configs below an application whose root folder says
    allowSubDirConfig="false": IIS does not read them."""
    hidden: set[str] = set()
    for app in applications:
        if app.allow_subdir_config:
            continue
        for path in read.subfolder_configs.get(app.physical_path, ()):
            hidden.add(norm(path))
    return hidden
