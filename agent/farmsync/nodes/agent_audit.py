"""The ``audit`` operation of the Python twin of the node agent (``scripts/audit.ps1``).

Read-only, one request: read the files asked for, list the farmsync files beside each, search
the application folders for web.config files below them, and when asked, discover IIS's
applications from its own files and answer the Windows facts.

The twin also stands in for a Windows node on this project's test machines (behind the SSH
``powershell.exe`` shim and the WS-Management endpoint). There, Windows paths are read with
``\\`` as ``/`` after ``%NAME%`` expansion, a UNC path is unreachable (no SMB here), and the
registry and RSA answers come from the JSON file named by ``FARMSYNC_AGENT_WINDOWS_FACTS``
(see PROTOCOL.md), which a test fixture writes. Nothing else reads that variable, and on a
real Windows node the PowerShell agent answers, never this module.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from farmsync.errors import ConfigFileError, NodeErrorKind
from farmsync.nodes import agent
from farmsync.nodes.auditread import (
    FARMSYNC_MARK,
    REGISTRY_VIEWS,
    RSA_CONTAINER_NAMES,
    SCAN_DEPTH,
    SCAN_LIMIT,
    AuditRead,
    AuditRequest,
    IisFiles,
    RsaContainer,
    rsa_fingerprint,
)
from farmsync.nodes.contract import FileState, FileStatus
from farmsync.webconfig.iis import (
    APPLICATION_HOST_CONFIG,
    REDIRECTION_CONFIG,
    env_names,
    is_unc,
    join_windows,
    parse_redirection,
    physical_paths,
)

FACTS_ENV = "FARMSYNC_AGENT_WINDOWS_FACTS"


def node_path(path: str) -> str | None:
    """This machine's name for a path the controller sent; None for an unreachable UNC path."""
    if os.name == "nt":
        return path
    if is_unc(path):
        return None
    return path.replace("\\", "/")


def read_path(path: str) -> FileState:
    local = node_path(path)
    if local is None:
        return FileState(
            path,
            FileStatus.ERROR,
            error_kind=NodeErrorKind.UNREACHABLE,
            error="network share not reachable from this node",
        )
    return replace(agent.read_one(local), path=path)


def _sep(path: str) -> str:
    return "\\" if "\\" in path else "/"


def leftovers_of(path: str) -> tuple[str, ...]:
    """Names of the ``<name>.farmsync-*`` files beside ``path`` (backups, staging files)."""
    local = node_path(path)
    if local is None:
        return ()
    target = agent.resolve(local)
    directory, name = os.path.split(target)
    try:
        entries = os.listdir(directory)
    except OSError:
        return ()
    return tuple(sorted(e for e in entries if e.startswith(name + FARMSYNC_MARK)))


def _walk(local: str, depth: int) -> Iterator[list[str]]:
    """Relative parts of every web.config below ``local`` (not in it), ``depth`` levels deep."""
    stack: list[tuple[str, list[str]]] = [(local, [])]
    while stack:
        folder, parts = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                if parts and entry.name.lower() == "web.config":
                    yield [*parts, entry.name]
                continue
            if len(parts) < depth:
                stack.append((entry.path, [*parts, entry.name]))


def subfolder_configs(scan_dirs: list[str], limit: int) -> dict[str, tuple[str, ...]]:
    found: dict[str, tuple[str, ...]] = {}
    budget = limit
    for scan in scan_dirs:
        local = node_path(scan)
        if local is None or budget <= 0:
            continue
        paths: list[str] = []
        for parts in _walk(agent.resolve(local), SCAN_DEPTH):
            if budget <= 0:
                break
            paths.append(scan.rstrip("\\/") + _sep(scan) + _sep(scan).join(parts))
            budget -= 1
        found[scan] = tuple(paths)
    return found


def _discover_iis(files: dict[str, FileState], scan_dirs: list[str]) -> IisFiles:
    files[REDIRECTION_CONFIG] = read_path(REDIRECTION_CONFIG)
    host_path = APPLICATION_HOST_CONFIG
    redirection = files[REDIRECTION_CONFIG]
    if redirection.status is FileStatus.OK and redirection.content is not None:
        # A malformed redirection.config is the controller's to report; IIS's default stands.
        with contextlib.suppress(ConfigFileError):
            host_path = parse_redirection(redirection.content, REDIRECTION_CONFIG).application_host
    files[host_path] = read_path(host_path)
    host = files[host_path]
    if host.status is FileStatus.OK and host.content is not None:
        for physical in physical_paths(host.content, host_path):
            config = join_windows(physical, "web.config")
            files.setdefault(config, read_path(config))
            scan_dirs.append(physical)
    return IisFiles(REDIRECTION_CONFIG, host_path)


Facts = tuple[dict[str, int | None] | None, dict[str, RsaContainer] | None, str | None]


def _windows_facts() -> Facts:
    """Registry and RSA answers: from the facts file when standing in for Windows."""
    source = os.environ.get(FACTS_ENV)
    if os.name == "nt" or not source:
        return None, None, "registry and key containers are read by the PowerShell agent only"
    try:
        with open(source, encoding="utf-8") as handle:
            facts = json.load(handle)
        registry_raw = facts.get("registry") or {}
        registry = {view: registry_raw.get(view) for view in REGISTRY_VIEWS}
        rsa: dict[str, RsaContainer] = {}
        for name in RSA_CONTAINER_NAMES:
            blob = (facts.get("rsa") or {}).get(name)
            if blob is None:
                rsa[name] = RsaContainer("missing", error="no such key container")
            else:
                rsa[name] = RsaContainer("ok", rsa_fingerprint(base64.b64decode(blob)))
    except (OSError, ValueError, AttributeError, binascii.Error):
        return None, None, "the Windows facts file cannot be read"
    return registry, rsa, None


def audit_read(request: AuditRequest) -> AuditRead:
    files: dict[str, FileState] = {}
    for path in request.paths:
        files.setdefault(path, read_path(path))
    scan_dirs = list(request.scan_dirs)
    iis = _discover_iis(files, scan_dirs) if request.iis else None
    found = subfolder_configs(list(dict.fromkeys(scan_dirs)), SCAN_LIMIT)
    for paths in found.values():
        for path in paths:
            files.setdefault(path, read_path(path))
    leftovers = {
        p: names
        for p, state in files.items()
        if state.status is FileStatus.OK and (names := leftovers_of(p))
    }
    wanted = {n for p in [*files, *scan_dirs] for n in env_names(p)}
    env = {n: os.environ[n] for n in sorted(wanted) if n in os.environ}
    registry, rsa, facts_error = (None, None, None)
    if request.windows_facts:
        registry, rsa, facts_error = _windows_facts()
    return AuditRead(files, leftovers, found, iis, env, registry, rsa, facts_error)


def audit_to_json(read: AuditRead) -> dict[str, Any]:
    return {
        "files": [agent.state_to_json(s) for s in read.files.values()],
        "leftovers": {p: list(n) for p, n in read.leftovers.items()},
        "subfolder_configs": {d: list(p) for d, p in read.subfolder_configs.items()},
        "iis": (
            {"redirection": read.iis.redirection, "application_host": read.iis.application_host}
            if read.iis is not None
            else None
        ),
        "env": dict(read.env),
        # As `read` does: a rollout's first read may be this op (node identity, staged runs).
        "machine_id": agent.machine_id(),
        "registry": dict(read.registry) if read.registry is not None else None,
        "rsa": (
            {
                n: {"status": c.status, "fingerprint": c.fingerprint, "error": c.error}
                for n, c in read.rsa.items()
            }
            if read.rsa is not None
            else None
        ),
        "facts_error": read.facts_error,
    }


def request_from_json(args: dict[str, Any]) -> AuditRequest:
    def strings(key: str) -> tuple[str, ...]:
        value = args.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise agent.AgentError(NodeErrorKind.PROTOCOL, f"argument {key!r} must list strings")
        return tuple(value)

    return AuditRequest(
        strings("paths"),
        strings("scan_dirs"),
        args.get("iis") is True,
        args.get("windows_facts") is True,
    )
