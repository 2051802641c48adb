"""IIS's own configuration, read from its files: redirection.config and applicationHost.config.

Pure functions over bytes (no node, no cmdlet): which applications exist, where their content
lives, which application pool runs them, and so which root web.config (framework and
bitness) each one inherits from. The audit uses them on the controller; the Python twin of
the node agent uses :func:`physical_paths` to know which web.config files to read.

Schema followed: ``system.applicationHost/sites/site/application/virtualDirectory`` with
``applicationDefaults`` and ``virtualDirectoryDefaults`` (server level, then site level),
``system.applicationHost/applicationPools/add`` with ``applicationPoolDefaults``, and
``configurationRedirection`` in redirection.config (shared configuration).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from lxml import etree

from farmsync.algorithms import FRAMEWORK_V2, FRAMEWORK_V4
from farmsync.errors import ConfigFileError
from farmsync.inventory.loader import windows_root_configs
from farmsync.webconfig.effective import line_of
from farmsync.webconfig.parser import parse_config

INETSRV_CONFIG = r"%windir%\System32\inetsrv\config"
REDIRECTION_CONFIG = INETSRV_CONFIG + r"\redirection.config"
APPLICATION_HOST_CONFIG = INETSRV_CONFIG + r"\applicationHost.config"
APPLICATION_HOST_NAME = "applicationHost.config"
RUNTIME_VERSIONS = {"v4.0": FRAMEWORK_V4, "v2.0": FRAMEWORK_V2}
DEFAULT_RUNTIME = "v4.0"  # IIS 8 and later; "" means "No Managed Code"
_ENV_REF = re.compile(r"%([A-Za-z_][A-Za-z0-9_()]*)%")


@dataclass(frozen=True)
class Redirection:
    """redirection.config: shared configuration sends IIS to another applicationHost.config."""

    enabled: bool
    path: str | None  # the folder holding the shared applicationHost.config
    line: int | None = None

    @property
    def application_host(self) -> str:
        if self.enabled and self.path:
            return join_windows(self.path, APPLICATION_HOST_NAME)
        return APPLICATION_HOST_CONFIG


@dataclass(frozen=True)
class Pool:
    name: str
    runtime: str  # managedRuntimeVersion: "v4.0", "v2.0" or "" (no managed code)
    enable_32bit: bool

    @property
    def framework(self) -> str | None:
        return RUNTIME_VERSIONS.get(self.runtime)

    @property
    def bitness(self) -> int:
        return 32 if self.enable_32bit else 64


@dataclass(frozen=True)
class Application:
    site: str
    path: str  # "/", "/shop", "/shop/admin"
    pool: str
    physical_path: str  # of the application's root virtual directory, as written
    allow_subdir_config: bool
    line: int
    # Other virtual directories of the application: (virtual path, physical path). Their
    # web.config files are folders of this application, not applications.
    virtual_dirs: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        """ "Default Web Site/shop": how <location path=...> and IIS Manager name it."""
        return self.site + ("" if self.path == "/" else self.path)

    @property
    def web_config(self) -> str:
        return join_windows(self.physical_path, "web.config")


@dataclass(frozen=True)
class Provider:
    name: str
    kind: str  # "rsa", "aes" (RSA-wrapped session key), "cng" or "other"
    key_container: str | None


@dataclass(frozen=True)
class ApplicationHost:
    source: str
    applications: tuple[Application, ...]
    pools: Mapping[str, Pool]
    providers: tuple[Provider, ...]
    used_providers: tuple[str, ...]  # providers that protect something in this file

    def pool_of(self, app: Application) -> Pool:
        return self.pools.get(app.pool) or Pool(app.pool, DEFAULT_RUNTIME, False)

    def rsa_in_use(self) -> bool:
        used = set(self.used_providers)
        return any(p.kind in ("rsa", "aes") for p in self.providers if p.name in used)

    def cng_in_use(self) -> bool:
        used = set(self.used_providers)
        return any(p.kind == "cng" for p in self.providers if p.name in used)


# --------------------------------------------------------------------------- helpers


def join_windows(folder: str, name: str) -> str:
    return folder.rstrip("\\/") + "\\" + name


def is_unc(path: str) -> bool:
    return path.startswith("\\\\") or path.startswith("//")


def env_names(path: str) -> list[str]:
    """The %NAME% references in a path."""
    return _ENV_REF.findall(path)


def expand_env(path: str, env: Mapping[str, str]) -> str:
    """Expand %NAME% as Windows does (names case-insensitive; unknown names stay as written)."""
    folded = {k.lower(): v for k, v in env.items()}
    return _ENV_REF.sub(lambda m: folded.get(m.group(1).lower(), m.group(0)), path)


def root_config_for(framework: str, bitness: int) -> str:
    """The root web.config a pool of that framework and bitness inherits from."""
    return windows_root_configs((framework,), (bitness,))[0]


def machine_config_for(root_config: str) -> str:
    """machine.config sits beside the root web.config (on Windows and on Mono alike)."""
    sep = "\\" if "\\" in root_config else "/"
    folder = root_config.rsplit(sep, 1)[0] if sep in root_config else "."
    return folder + sep + "machine.config"


def _bool(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return value.strip().lower() == "true"


def _children(el: etree._Element | None, name: str) -> list[etree._Element]:
    if el is None:
        return []
    return [c for c in el if isinstance(c.tag, str) and etree.QName(c).localname == name]


def _child(el: etree._Element | None, name: str) -> etree._Element | None:
    found = _children(el, name)
    return found[0] if found else None


def _document(data: bytes, source: str) -> etree._Element:
    """The parsed document, through the same hardened reader as every web.config."""
    parsed = parse_config(data, source)
    assert parsed.document is not None
    return parsed.document


# --------------------------------------------------------------------------- parsing


def parse_redirection(data: bytes, source: str) -> Redirection:
    root = _document(data, source)
    el = _child(root, "configurationRedirection")
    if el is None:
        return Redirection(False, None)
    path = (el.get("path") or "").strip() or None
    return Redirection(_bool(el.get("enabled"), False), path, line_of(el))


def _pools(host: etree._Element | None) -> dict[str, Pool]:
    pools_el = _child(host, "applicationPools")
    defaults = _child(pools_el, "applicationPoolDefaults")
    runtime_default = DEFAULT_RUNTIME
    bit32_default = False
    if defaults is not None:
        runtime_default = defaults.get("managedRuntimeVersion", DEFAULT_RUNTIME)
        bit32_default = _bool(defaults.get("enable32BitAppOnWin64"), False)
    pools: dict[str, Pool] = {}
    for add in _children(pools_el, "add"):
        name = add.get("name")
        if not name:
            continue
        pools[name] = Pool(
            name,
            add.get("managedRuntimeVersion", runtime_default).strip(),
            _bool(add.get("enable32BitAppOnWin64"), bit32_default),
        )
    return pools


def _site_applications(
    site: etree._Element, app_pool_default: str, subdir_default: bool
) -> list[Application]:
    name = site.get("name") or f"site {site.get('id', '?')}"
    site_defaults = _child(site, "applicationDefaults")
    pool_default = (
        site_defaults.get("applicationPool", app_pool_default)
        if site_defaults is not None
        else app_pool_default
    )
    vdir_defaults = _child(site, "virtualDirectoryDefaults")
    subdir_site = _bool(
        vdir_defaults.get("allowSubDirConfig") if vdir_defaults is not None else None,
        subdir_default,
    )
    found: list[Application] = []
    for app in _children(site, "application"):
        path = "/" + (app.get("path") or "/").strip("/")
        vdirs = _children(app, "virtualDirectory")
        root = next((v for v in vdirs if (v.get("path") or "/").strip("/") == ""), None)
        if root is None or not root.get("physicalPath"):
            continue  # an application without content: nothing for ASP.NET to read
        others = tuple(
            (v.get("path") or "", v.get("physicalPath") or "")
            for v in vdirs
            if v is not root and v.get("physicalPath")
        )
        found.append(
            Application(
                site=name,
                path="/" if path == "/" else path,
                pool=app.get("applicationPool", pool_default),
                physical_path=root.get("physicalPath", ""),
                allow_subdir_config=_bool(root.get("allowSubDirConfig"), subdir_site),
                line=line_of(app),
                virtual_dirs=others,
            )
        )
    return found


def _providers(root: etree._Element) -> list[Provider]:
    found: list[Provider] = []
    providers = _child(_child(root, "configProtectedData"), "providers")
    for add in _children(providers, "add"):
        kind_text = (add.get("type") or "") + " " + (add.get("name") or "")
        lowered = kind_text.lower()
        if "cng" in lowered:
            kind = "cng"
        elif "aes" in lowered:
            kind = "aes"
        elif "rsa" in lowered:
            kind = "rsa"
        else:
            kind = "other"
        found.append(Provider(add.get("name") or "", kind, add.get("keyContainerName")))
    return found


_ENC_VALUE = re.compile(r"\[enc:([^:\]]+):")


def _used_providers(root: etree._Element) -> list[str]:
    used: set[str] = set()
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        provider = el.get("configProtectionProvider")
        if provider:
            used.add(provider)
        for value in el.attrib.values():
            used.update(_ENC_VALUE.findall(str(value)))
    return sorted(used)


def parse_application_host(data: bytes, source: str) -> ApplicationHost:
    """Sites, applications, pools and protection providers of one applicationHost.config."""
    root = _document(data, source)
    host = _child(root, "system.applicationHost")
    sites_el = _child(host, "sites")
    app_defaults = _child(sites_el, "applicationDefaults")
    pool_default = (
        app_defaults.get("applicationPool", "DefaultAppPool")
        if app_defaults is not None
        else "DefaultAppPool"
    )
    vdir_defaults = _child(sites_el, "virtualDirectoryDefaults")
    subdir_default = _bool(
        vdir_defaults.get("allowSubDirConfig") if vdir_defaults is not None else None, True
    )
    applications: list[Application] = []
    for site in _children(sites_el, "site"):
        applications += _site_applications(site, pool_default, subdir_default)
    return ApplicationHost(
        source=source,
        applications=tuple(applications),
        pools=_pools(host),
        providers=tuple(_providers(root)),
        used_providers=tuple(_used_providers(root)),
    )


def physical_paths(data: bytes, source: str) -> list[str]:
    """Every physical path (as written) whose web.config ASP.NET may read: each application's
    root folder, then its other virtual directories. What the node agent reads."""
    try:
        parsed = parse_application_host(data, source)
    except ConfigFileError:
        return []
    seen: dict[str, None] = {}
    for app in parsed.applications:
        seen.setdefault(app.physical_path, None)
        for _vpath, physical in app.virtual_dirs:
            seen.setdefault(physical, None)
    return list(seen)
