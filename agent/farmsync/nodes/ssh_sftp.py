"""The few SFTP requests paramiko has no public call for, and what an SFTP failure means.

paramiko cannot pass attributes on OPEN (so a new file would exist, briefly, with the
server's default mode before a chmod) nor send OpenSSH's ``fsync@openssh.com`` or
``statvfs@openssh.com``. They are plain SFTP v3 requests; they go through paramiko's request
machinery here, in one place.

SFTP v3 carries only a few status codes: OpenSSH's sftp-server sends ENOENT as NO_SUCH_FILE,
EACCES/EPERM as PERMISSION_DENIED and everything else (EROFS, ENOSPC, EDQUOT...) as a bare
FAILURE. :func:`failure` tells those apart by asking the filesystem (statvfs) whether it is
read-only or full, so a read-only mount is ``permission-denied``, never ``connection-lost``.
"""

from __future__ import annotations

import errno
import hashlib
import posixpath
import stat
from dataclasses import dataclass
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
from farmsync.nodes.agent import error_kind
from farmsync.nodes.contract import MAX_FILE_BYTES

_ST_RDONLY = 0x1  # statvfs@openssh.com's f_flag bit for a read-only mount


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


class StagingFailure(Exception):
    """Writing a staging file failed at a known step; ``detail`` never holds contents."""

    def __init__(self, kind: NodeErrorKind, detail: str):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def read_all(sftp: paramiko.SFTPClient, path: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """The file's bytes, reading at most ``limit`` + 1 of them (TooLarge past the limit)."""
    # No prefetch(): for files this small its reader thread costs more than it saves.
    chunks: list[bytes] = []
    left = limit + 1
    with sftp.open(path, "rb") as f:
        while left > 0:
            chunk = f.read(min(left, 32768))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    if left <= 0:
        raise TooLarge(path)
    return b"".join(chunks)


class TooLarge(StagingFailure):
    """The file is past the limit (it grew while it was read)."""

    def __init__(self, path: str):
        limit = MAX_FILE_BYTES // (1024 * 1024)
        name = posixpath.basename(path)
        super().__init__(NodeErrorKind.TOO_LARGE, f"{name} is larger than {limit} MiB")


@dataclass(frozen=True)
class FsState:
    read_only: bool
    full: bool


def statvfs(sftp: paramiko.SFTPClient, path: str) -> FsState | None:
    """Is the filesystem holding ``path`` read-only, or full? None when the server cannot say."""
    try:
        t, msg = _request(sftp)(CMD_EXTENDED, "statvfs@openssh.com", path)
    except (OSError, EOFError):
        return None
    if t != CMD_EXTENDED_REPLY:
        return None
    # bsize, frsize, blocks, bfree, bavail, files, ffree, favail, fsid, flag, namemax
    fields = [msg.get_int64() for _ in range(11)]
    return FsState(read_only=bool(fields[9] & _ST_RDONLY), full=fields[4] == 0 or fields[7] == 0)


def failure(
    sftp: paramiko.SFTPClient, exc: OSError, path: str, writing: bool = False
) -> tuple[NodeErrorKind, str]:
    """(kind, detail) of an SFTP status failure about ``path``; call reraise_if_transport first.

    ``writing``: the request wrote data, so a bare FAILURE with space left is most likely a
    quota (EDQUOT, EFBIG), which the node agent also reports as disk-full."""
    if exc.errno is not None:
        return error_kind(exc), exc.strerror or str(exc)
    fs = statvfs(sftp, posixpath.dirname(path) or ".")
    if fs is not None and fs.read_only:
        return NodeErrorKind.PERMISSION, "read-only file system"
    if fs is not None and fs.full:
        return NodeErrorKind.DISK_FULL, "no space left on the device"
    if writing:
        return NodeErrorKind.DISK_FULL, "the write failed (disk full or quota exceeded?)"
    text = " ".join(str(exc).split())[:200] or "failure"
    return NodeErrorKind.REMOTE, f"the SFTP server reported: {text}"


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
        kind, reason = failure(sftp, exc, path)
        raise StagingFailure(kind, f"cannot create {posixpath.basename(path)}: {reason}") from None
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
            kind, reason = failure(sftp, exc, path, writing=True)
            detail = f"writing {posixpath.basename(path)} failed: {reason}"
            raise StagingFailure(kind, detail) from None
    back = read_all(sftp, path)
    if hashlib.sha256(back).digest() != hashlib.sha256(content).digest():
        raise StagingFailure(NodeErrorKind.VERIFY, "staging file reads back different")


def remove_quietly(sftp: paramiko.SFTPClient, path: str) -> None:
    """Remove one of our files if it is there. On a read-only mount, unlink(2) fails with
    EROFS even for a name that does not exist: that is nothing to remove, not a failure."""
    try:
        sftp.remove(path)
    except OSError as exc:
        reraise_if_transport(sftp, exc)
        if exc.errno == errno.ENOENT or not exists(sftp, path):
            return
        kind, reason = failure(sftp, exc, path)
        raise SftpFailure(kind, f"cannot remove {posixpath.basename(path)}: {reason}") from None


def exists(sftp: paramiko.SFTPClient, path: str) -> bool:
    try:
        sftp.lstat(path)
    except OSError as exc:
        reraise_if_transport(sftp, exc)
        if exc.errno == errno.ENOENT:
            return False
        raise
    return True


class SftpFailure(StagingFailure):
    """A classified failure of one SFTP request (see :func:`failure`)."""
