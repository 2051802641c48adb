"""The audit's read: one round trip per node that gathers everything the audit looks at.

Request and result of the ``audit`` node operation (PROTOCOL.md, "audit"), the same on every
transport: the files asked for, the farmsync files beside them (backups, staging files),
web.config files in the folders below applications, and on Windows nodes what IIS's own
files name (redirection.config, applicationHost.config and every application's web.config),
the registry value that can turn the ViewState MAC off and the public-key fingerprints of
IIS's RSA key containers. Read-only: nothing is created, changed or removed on the node.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.nodes.contract import FileState

SCAN_DEPTH = 3  # folder levels searched below an application for stray web.config files
SCAN_LIMIT = 200  # web.config files reported per node at most (bounded answer)
FARMSYNC_MARK = ".farmsync-"
VIEWSTATE_MAC_VALUE = "AspNetEnforceViewStateMac"
VIEWSTATE_MAC_KEY = r"SOFTWARE\Microsoft\.NETFramework\v4.0.30319"
REGISTRY_VIEWS = ("64", "32")
# IIS's configuration-encryption key containers: shared or encrypted configuration needs the
# same ones on every node.
RSA_CONTAINER_NAMES = ("iisConfigurationKey", "iisWasKey")


@dataclass(frozen=True)
class AuditRequest:
    paths: tuple[str, ...]  # files to read: root and application web.configs, machine.configs
    scan_dirs: tuple[str, ...] = ()  # application folders to search below for web.config files
    iis: bool = False  # Windows: discover applications from redirection/applicationHost.config
    windows_facts: bool = False  # Windows: registry value and RSA key containers

    def to_json(self) -> dict[str, Any]:
        return {
            "paths": list(self.paths),
            "scan_dirs": list(self.scan_dirs),
            "iis": self.iis,
            "windows_facts": self.windows_facts,
        }


@dataclass(frozen=True)
class RsaContainer:
    """A machine RSA key container: its public key's fingerprint, or why there is none."""

    status: str  # "ok", "missing" or "error"
    fingerprint: str | None = None  # "rsa-" + 16 hex of SHA-256 of the public key blob
    error: str | None = None


@dataclass(frozen=True)
class IisFiles:
    redirection: str  # the redirection.config path read
    application_host: str  # the applicationHost.config path read (shared config: elsewhere)


@dataclass(frozen=True)
class AuditRead:
    files: Mapping[str, FileState] = field(repr=False)
    # path -> names of its <name>.farmsync-* siblings (backups, staging files)
    leftovers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    subfolder_configs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    iis: IisFiles | None = None
    env: Mapping[str, str] = field(default_factory=dict)  # %NAME% values the paths refer to
    registry: Mapping[str, int | None] | None = None  # view ("64"/"32") -> value, None absent
    rsa: Mapping[str, RsaContainer] | None = None
    facts_error: str | None = None  # why registry/RSA answers are missing


def rsa_fingerprint(public_blob: bytes) -> str:
    """The name of an RSA public key: the same on the PowerShell agent and its twin."""
    return "rsa-" + hashlib.sha256(public_blob).hexdigest()[:16]


# --- wire form: the agent writes it (agent.audit_to_json), the controller reads it here ----


def _bad(host: str) -> NodeError:
    return NodeError(host, NodeErrorKind.PROTOCOL, "malformed audit answer", phase="audit")


def _str_map(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise TypeError
    return value


def _optional_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError
    return value


def read_from_json(
    result: Mapping[str, Any], file_states: Mapping[str, FileState], host: str
) -> AuditRead:
    """An AuditRead from an agent's ``audit`` result (files already decoded by the caller)."""
    try:
        leftovers = {
            p: tuple(str(n) for n in names)
            for p, names in _str_map(result.get("leftovers") or {}).items()
        }
        subfolders = {
            d: tuple(str(p) for p in paths)
            for d, paths in _str_map(result.get("subfolder_configs") or {}).items()
        }
        iis_raw = result.get("iis")
        iis = None
        if iis_raw is not None:
            iis_map = _str_map(iis_raw)
            iis = IisFiles(str(iis_map["redirection"]), str(iis_map["application_host"]))
        env = {k: str(v) for k, v in _str_map(result.get("env") or {}).items()}
        registry_raw = result.get("registry")
        registry = (
            {k: _optional_int(v) for k, v in _str_map(registry_raw).items()}
            if registry_raw is not None
            else None
        )
        rsa_raw = result.get("rsa")
        rsa = None
        if rsa_raw is not None:
            rsa = {}
            for name, entry in _str_map(rsa_raw).items():
                e = _str_map(entry)
                fp, err = e.get("fingerprint"), e.get("error")
                rsa[name] = RsaContainer(
                    str(e["status"]),
                    str(fp) if fp is not None else None,
                    str(err) if err is not None else None,
                )
        facts_error = result.get("facts_error")
    except (KeyError, TypeError, ValueError):
        raise _bad(host) from None
    return AuditRead(
        files=dict(file_states),
        leftovers=leftovers,
        subfolder_configs=subfolders,
        iis=iis,
        env=env,
        registry=registry,
        rsa=rsa,
        facts_error=str(facts_error) if facts_error is not None else None,
    )
