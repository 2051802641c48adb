"""The few SFTP requests paramiko has no public call for.

paramiko cannot pass attributes on OPEN (so a new file would exist, briefly, with the
server's default mode before a chmod) nor send OpenSSH's ``fsync@openssh.com``. Both are
plain SFTP v3 requests; they go through paramiko's request machinery here, in one place.
"""

from __future__ import annotations

import errno
import hashlib
import stat
from typing import Any, Protocol, cast

import paramiko
from paramiko.sftp import (
    CMD_EXTENDED,
    CMD_EXTENDED_REPLY,
    CMD_HANDLE,
    CMD_OPEN,
    SFTP_FLAG_CREATE,
    SFTP_FLAG_EXCL,
    SFTP_FLAG_WRITE,
)

from farmsync.errors import NodeErrorKind


class _Requester(Protocol):
    def __call__(self, t: int, *args: Any) -> tuple[int, paramiko.Message]: ...


def _request(sftp: paramiko.SFTPClient) -> _Requester:
    return cast(_Requester, sftp._request)  # type: ignore[attr-defined]


def reraise_if_transport(sftp: paramiko.SFTPClient, exc: OSError) -> None:
    """Re-raise ``exc`` unless it is an SFTP status answer about one file.

    paramiko raises OSError both for the server's per-file status codes and for a dead
    connection ("Socket is closed", timeouts); only the former may become a per-file result.
    """
    channel = sftp.get_channel()
    if isinstance(exc, TimeoutError) or channel is None or channel.closed:
        raise exc
    transport = channel.get_transport()
    if transport is None or not transport.is_active():
        raise exc


def create_exclusive(sftp: paramiko.SFTPClient, path: str, mode: int) -> paramiko.SFTPFile:
    """Create ``path`` (O_CREAT|O_EXCL) with ``mode`` from the start, opened for writing.

    O_EXCL never follows a symlink planted at the name, and the mode given on OPEN means the
    file is never more open than the live file it will replace (the server applies its umask;
    the caller sets the exact mode afterwards).
    """
    attrs = paramiko.SFTPAttributes()
    attrs.st_mode = stat.S_IMODE(mode)
    flags = SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_EXCL
    t, msg = _request(sftp)(CMD_OPEN, path, flags, attrs)
    if t != CMD_HANDLE:
        raise OSError(errno.EPROTO, "unexpected answer to OPEN")
    return paramiko.SFTPFile(sftp, msg.get_binary(), "wb")


def fsync(sftp: paramiko.SFTPClient, handle: paramiko.SFTPFile) -> None:
    """Flush the file to the node's disk (OpenSSH ``fsync@openssh.com``)."""
    handle.flush()
    _request(sftp)(CMD_EXTENDED, "fsync@openssh.com", handle.handle)


def free_bytes(sftp: paramiko.SFTPClient, path: str) -> int | None:
    """Bytes available to the login on ``path``'s file system (``statvfs@openssh.com``), or
    None where the server lacks the extension."""
    try:
        t, msg = _request(sftp)(CMD_EXTENDED, "statvfs@openssh.com", path)
    except (OSError, EOFError):
        return None
    if t != CMD_EXTENDED_REPLY:
        return None
    _bsize, frsize, _blocks, _bfree, bavail = (msg.get_int64() for _ in range(5))
    return int(bavail * frsize)


def read_all(sftp: paramiko.SFTPClient, path: str) -> bytes:
    # No prefetch(): for files this small its reader thread costs more than it saves.
    with sftp.open(path, "rb") as f:
        return f.read()


class StagingFailure(Exception):
    """Writing a staging file failed at a known step; ``detail`` never holds contents."""

    def __init__(self, kind: NodeErrorKind, detail: str):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def _is_permission(exc: OSError) -> bool:
    return exc.errno in (errno.EACCES, errno.EPERM)


def write_file(
    sftp: paramiko.SFTPClient, path: str, content: bytes, like: paramiko.SFTPAttributes
) -> None:
    """Create ``path`` exclusively with ``like``'s mode and owner, write, fsync, read back.

    Raises :class:`StagingFailure` naming the step that failed.
    """
    mode = stat.S_IMODE(like.st_mode or 0o600)
    try:
        f = create_exclusive(sftp, path, mode)
    except OSError as exc:
        reraise_if_transport(sftp, exc)
        kind = NodeErrorKind.PERMISSION if _is_permission(exc) else NodeErrorKind.REMOTE
        detail = f"cannot create the staging file: {exc.strerror or exc}"
        raise StagingFailure(kind, detail) from None
    with f:
        try:
            f.chmod(mode)  # exact mode, whatever the server's umask took away
            if like.st_uid is not None and like.st_gid is not None:
                mine = f.stat()
                if (mine.st_uid, mine.st_gid) != (like.st_uid, like.st_gid):
                    f.chown(like.st_uid, like.st_gid)
        except OSError as exc:
            reraise_if_transport(sftp, exc)
            raise StagingFailure(
                NodeErrorKind.PERMISSION,
                "cannot give the staging file the live file's mode and owner: "
                f"{exc.strerror or exc}",
            ) from None
        try:
            f.write(content)
            try:
                fsync(sftp, f)
            except OSError as exc:
                if "unsupported" not in str(exc).lower():
                    raise
                # Without a flush to disk, a crash could leave a staged file that is not
                # there: refuse rather than stage without durability.
                raise StagingFailure(
                    NodeErrorKind.PROTOCOL,
                    "the node's SFTP server cannot fsync (no fsync@openssh.com extension)",
                ) from None
            f.close()
        except OSError as exc:
            reraise_if_transport(sftp, exc)
            # SFTP v3 reports ENOSPC/EDQUOT/EFBIG as a bare FAILURE; on a write that is "full".
            kind = NodeErrorKind.PERMISSION if _is_permission(exc) else NodeErrorKind.DISK_FULL
            raise StagingFailure(
                kind, f"writing the staging file failed (disk full?): {exc.strerror or exc}"
            ) from None
    back = read_all(sftp, path)
    if hashlib.sha256(back).digest() != hashlib.sha256(content).digest():
        raise StagingFailure(NodeErrorKind.VERIFY, "staging file reads back different")


def remove_quietly(sftp: paramiko.SFTPClient, path: str) -> None:
    try:
        sftp.remove(path)
    except OSError as exc:
        reraise_if_transport(sftp, exc)
        if exc.errno != errno.ENOENT:
            raise
