"""Durable file operations shared by every layer (no farmsync imports).

The vault, the journal, the node agent and the lab all need the same two guarantees: a
directory entry that survives a crash, and a private file replaced whole or not at all.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make a rename or create in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: a 0600 temp file in the same directory, fsynced, renamed
    over the target, then the directory fsynced. On failure the old file is untouched and the
    temp file removed."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(tmp, flags, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # exactly 0600 whatever the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
