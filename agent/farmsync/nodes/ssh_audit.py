"""The ``audit`` read on a POSIX node: one SFTP batch over the connection's SFTP channel.

No exec, nothing written: stat and read each file, list each folder once for the farmsync
files beside the configs, and walk the application folders (bounded) for web.config files.
Windows discovery and facts do not apply on these nodes.
"""

from __future__ import annotations

import posixpath
import stat
from collections.abc import Callable

import paramiko

from farmsync.nodes.auditread import (
    FARMSYNC_MARK,
    SCAN_DEPTH,
    SCAN_LIMIT,
    AuditRead,
    AuditRequest,
)
from farmsync.nodes.contract import FileState, FileStatus
from farmsync.nodes.ssh_sftp import reraise_if_transport


def _names(sftp: paramiko.SFTPClient, folder: str) -> list[paramiko.SFTPAttributes] | None:
    try:
        return sftp.listdir_attr(folder or ".")
    except OSError as exc:
        reraise_if_transport(sftp, exc)
        return None


def _walk(sftp: paramiko.SFTPClient, top: str, budget: int) -> list[str]:
    """web.config files below ``top`` (not in it), at most SCAN_DEPTH levels, ``budget`` many."""
    found: list[str] = []
    stack = [(top, 0)]
    while stack and len(found) < budget:
        folder, depth = stack.pop()
        entries = _names(sftp, folder) or []
        for attrs in sorted(entries, key=lambda a: a.filename):
            path = posixpath.join(folder, attrs.filename)
            mode = attrs.st_mode or 0
            if stat.S_ISDIR(mode):
                if depth < SCAN_DEPTH:
                    stack.append((path, depth + 1))
            elif depth > 0 and attrs.filename.lower() == "web.config" and len(found) < budget:
                found.append(path)
    return found


def sftp_audit(
    sftp: paramiko.SFTPClient,
    read_one: Callable[[paramiko.SFTPClient, str], FileState],
    request: AuditRequest,
) -> AuditRead:
    files: dict[str, FileState] = {}
    for path in request.paths:
        if path not in files:
            files[path] = read_one(sftp, path)
    found: dict[str, tuple[str, ...]] = {}
    budget = SCAN_LIMIT
    for top in dict.fromkeys(request.scan_dirs):
        paths = _walk(sftp, top, budget)
        budget -= len(paths)
        found[top] = tuple(paths)
        for path in paths:
            if path not in files:
                files[path] = read_one(sftp, path)
    listings: dict[str, list[str]] = {}
    leftovers: dict[str, tuple[str, ...]] = {}
    for path, state in files.items():
        if state.status is not FileStatus.OK:
            continue
        folder, name = posixpath.split(path)
        if folder not in listings:
            listings[folder] = [a.filename for a in _names(sftp, folder) or []]
        mine = sorted(n for n in listings[folder] if n.startswith(name + FARMSYNC_MARK))
        if mine:
            leftovers[path] = tuple(mine)
    facts_error = "not a Windows node" if request.windows_facts else None
    return AuditRead(files, leftovers, found, facts_error=facts_error)
