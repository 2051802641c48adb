"""The ``doctor`` op on this node: the Python twin of ``scripts/doctor.ps1``.

Read-only: it finds what would stop a commit without changing a live file. Each managed
file is opened for append and closed with no byte written (that catches ACLs, read-only
attributes, immutable files and read-only mounts), and a probe file is created exclusively
and removed beside it (that catches a directory where the staging file could not be made).
The answer's fields are listed in PROTOCOL.md ("doctor"); the PowerShell agent fills the
Windows-only ones (PowerShell, .NET, language mode, logging policy, IIS), the twin leaves
them null.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import time
from collections.abc import Sequence
from typing import Any

from farmsync.errors import NodeErrorKind
from farmsync.nodes.agent import AgentError, error_kind, resolve

PROBE_SUFFIX = ".farmsync-doctor-{pid}.tmp"
_FIPS_FLAG = "/proc/sys/crypto/fips_enabled"


def _fips() -> bool | None:
    try:
        with open(_FIPS_FLAG, "rb") as fh:
            return fh.read(1) == b"1"
    except OSError:
        return None


def _failure(kind: NodeErrorKind, step: str, reason: str) -> dict[str, Any]:
    return {"replaceable": False, "error_kind": kind.value, "error": f"{step}: {reason}"}


def _os_failure(exc: OSError, step: str) -> dict[str, Any]:
    return _failure(error_kind(exc), step, exc.strerror or type(exc).__name__)


def probe_file(path: str) -> dict[str, Any]:
    """Whether the login could replace ``path``: exists, append-open, probe file, space."""
    target = resolve(path)
    entry: dict[str, Any] = {"path": path, "exists": False, "size": None, "free_bytes": None}
    directory = os.path.dirname(target)
    with contextlib.suppress(OSError):
        entry["free_bytes"] = shutil.disk_usage(directory).free
    try:
        st = os.lstat(target)
    except OSError as exc:
        entry.update(_os_failure(exc, "stat"))
        return entry
    entry["exists"] = True
    entry["size"] = st.st_size
    if os.path.islink(target):
        entry.update(
            _failure(NodeErrorKind.PROTOCOL, "check", "is a symbolic link; list the real file")
        )
        return entry
    if not os.path.isfile(target):
        entry.update(_failure(NodeErrorKind.IS_DIRECTORY, "check", "not a regular file"))
        return entry
    try:  # what a replace needs of the file itself; no byte is written
        os.close(os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW))
    except OSError as exc:
        entry.update(_os_failure(exc, "open for append"))
        return entry
    probe = target + PROBE_SUFFIX.format(pid=os.getpid())
    try:  # what the staging file and the rename need of the directory
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        entry.update(_os_failure(exc, "create a file beside it"))
        return entry
    entry["replaceable"] = True
    return entry


def probe(paths: Sequence[str]) -> dict[str, Any]:
    """The ``doctor`` answer for this node (PROTOCOL.md)."""
    if not all(isinstance(p, str) for p in paths):
        raise AgentError(NodeErrorKind.PROTOCOL, "paths must be strings")
    return {
        "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "agent": f"python {platform.python_version()} (farmsync twin)",
        "powershell": None,
        "dotnet": None,
        "language_mode": None,
        "fips": _fips(),
        "module_logging": None,
        "script_block_logging": None,
        "time": time.time(),
        "files": [probe_file(p) for p in paths],
        "iis": None if os.name != "nt" else {"installed": False, "was": None, "pools": []},
    }
