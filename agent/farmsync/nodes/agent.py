"""Node operations on this machine's filesystem: the Python twin of ``scripts/*.ps1``.

Two faces:
  * pure functions per operation (``read_files``, ``stage_files``, ``check_commit``,
    ``commit_files``, ``rollback_files``, ``cleanup_files``, ``list_backups``, ``recycle``)
    raising :class:`AgentError` with a :class:`NodeErrorKind`; the ``local`` transport calls
    them in-process;
  * ``main()``, the stdin protocol of docs PROTOCOL.md (``python -m farmsync.nodes.agent``),
    which tests run in place of PowerShell behind the SSH and WinRM transports.

POSIX atomicity: staging files are created O_EXCL beside the target with the live file's
owner and mode, fsynced and read back; a commit hard-links (or durably copies) the live file
to its backup, ``os.replace``s the staging file over it and fsyncs the directory, so a reader
sees the old file or the new one, never a partial or missing one.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

from farmsync.errors import NodeErrorKind
from farmsync.fsutil import fsync_directory
from farmsync.nodes import protocol
from farmsync.nodes.contract import (
    MAX_FILE_BYTES,
    CommitItem,
    FileState,
    FileStatus,
    StageItem,
    backup_path,
    backups_newest_first,
    file_id,
    sha256_hex,
    staging_path,
)

PROTOCOL_VERSION = protocol.PROTOCOL_VERSION
OPS = protocol.OPS
TEMP_SUFFIX = ".farmsync-{run_id}.tmp"  # rollback / backup copies before their rename
# Run ids become part of file names: keep them to a safe alphabet (no separators, no '..').
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z")
_ENV_REF = re.compile(r"%([A-Za-z_][A-Za-z0-9_()]*)%")

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_PERMISSION = {errno.EACCES, errno.EPERM, errno.EROFS}
_NOT_FOUND = {errno.ENOENT, errno.ENOTDIR}
# os.link failures after which a durable copy is the way to make the backup.
_NO_HARDLINK = {errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV, errno.ENOSYS}
# A replace that another process's handle blocks for a moment: Windows' sharing and lock
# violations (protocol.BUSY_WIN32_ERRORS) and their POSIX kin (a busy mount point, text file).
_BUSY_ERRNO = {errno.EBUSY, errno.ETXTBSY}
_ACL_XATTR = "system.posix_acl_access"
# Where this machine keeps its stable id (systemd, then D-Bus): the twin's MachineGuid.
_MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")


class AgentError(Exception):
    """One operation failed on this node. ``detail`` never holds file contents."""

    def __init__(self, kind: NodeErrorKind, detail: str, path: str | None = None):
        self.kind = kind
        self.detail = detail
        self.path = path
        super().__init__(f"{kind.value}: {detail}" + (f" ({path})" if path else ""))

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "detail": self.detail, "path": self.path}


def error_kind(exc: OSError) -> NodeErrorKind:
    """The NodeErrorKind of an OS error (same table as Get-FarmsyncErrorKind in common.ps1)."""
    if exc.errno in _DISK_FULL:
        return NodeErrorKind.DISK_FULL
    if exc.errno in _PERMISSION:
        return NodeErrorKind.PERMISSION
    if exc.errno == errno.EISDIR:
        return NodeErrorKind.IS_DIRECTORY
    if exc.errno in _NOT_FOUND:
        return NodeErrorKind.NOT_FOUND
    return NodeErrorKind.REMOTE


def os_error(exc: OSError, action: str, path: str | None) -> AgentError:
    reason = exc.strerror or type(exc).__name__
    return AgentError(error_kind(exc), f"cannot {action}: {reason}", path)


def check_run_id(run_id: str) -> None:
    if not _RUN_ID.match(run_id) or ".." in run_id:
        raise AgentError(NodeErrorKind.PROTOCOL, "invalid run id")


def resolve(path: str) -> str:
    """The file a path names on this node: %VAR% references expanded, made absolute.

    Symbolic links are not followed: a managed file that is a link is refused at stage and
    commit (:func:`_refuse_link`), as the PowerShell agent refuses reparse points."""
    expanded = _ENV_REF.sub(lambda m: os.environ.get(m.group(1), m.group(0)), path)
    return os.path.abspath(os.path.expanduser(expanded))


def _refuse_link(target: str, shown: str) -> None:
    """A replace would act on the link, not on the file it points to: refuse instead."""
    if os.path.islink(target):
        raise AgentError(
            NodeErrorKind.PROTOCOL, "is a symbolic link or junction; list the real file", shown
        )


def temp_path(path: str, run_id: str) -> str:
    return path + TEMP_SUFFIX.format(run_id=run_id)


# --- small durable-file helpers -------------------------------------------------------------


def _read_regular(path: str, shown: str, action: str = "read") -> tuple[bytes, os.stat_result]:
    """Bytes and stat of a regular file of at most MAX_FILE_BYTES; raises AgentError
    (NOT_FOUND when missing, NOT_REGULAR for a device or FIFO, TOO_LARGE past the limit).

    The size is checked on the open descriptor before reading, and the read stops one byte
    past the limit, so a huge or endless file costs no more than the limit in memory."""
    try:
        # O_NONBLOCK: opening a FIFO planted at the path must not wait forever for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise os_error(exc, action, shown) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise AgentError(NodeErrorKind.IS_DIRECTORY, f"cannot {action}: is a directory", shown)
        if not stat.S_ISREG(st.st_mode):
            raise AgentError(
                NodeErrorKind.NOT_REGULAR, f"cannot {action}: not a regular file", shown
            )
        if st.st_size > MAX_FILE_BYTES:
            raise _too_large(action, shown)
        chunks = []
        left = MAX_FILE_BYTES + 1
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:  # grew past the limit while being read
            raise _too_large(action, shown)
        return b"".join(chunks), st
    except OSError as exc:
        raise os_error(exc, action, shown) from None
    finally:
        os.close(fd)


def _too_large(action: str, shown: str) -> AgentError:
    limit = MAX_FILE_BYTES // (1024 * 1024)
    return AgentError(NodeErrorKind.TOO_LARGE, f"cannot {action}: larger than {limit} MiB", shown)


def machine_id() -> str | None:
    """This machine's stable id (Windows: MachineGuid; elsewhere: the systemd machine id)."""
    if sys.platform == "win32":  # pragma: no cover - Windows only
        import winreg

        try:
            with winreg.OpenKey(
                winreg.HKEY_LOCAL_MACHINE,
                r"SOFTWARE\Microsoft\Cryptography",
                0,
                winreg.KEY_READ | winreg.KEY_WOW64_64KEY,
            ) as key:
                return str(winreg.QueryValueEx(key, "MachineGuid")[0]).lower()
        except OSError:
            return None
    for name in _MACHINE_ID_FILES:
        try:
            with open(name, "rb") as f:
                text = f.read(64).decode("ascii", "replace").strip()
        except OSError:
            continue
        if text:
            return text
    return None


def _remove_file(path: str) -> bool:
    """Remove a file of ours if it is there; True when something was removed."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _copy_permissions(fd: int, like_path: str, like: os.stat_result) -> None:
    """Give an open new file the owner, mode and POSIX ACL of ``like_path``."""
    with contextlib.suppress(PermissionError):  # unprivileged: stays ours, same mode bits
        os.fchown(fd, like.st_uid, like.st_gid)
    os.fchmod(fd, stat.S_IMODE(like.st_mode))  # after chown, which clears set-id bits
    try:
        acl = os.getxattr(like_path, _ACL_XATTR)
    except OSError:
        return  # no extended ACL (or no xattr support): mode bits say it all
    os.setxattr(fd, _ACL_XATTR, acl)


def _write_new(
    path: str, data: bytes, like_path: str, like: os.stat_result, *, replace_ours: bool = True
) -> None:
    """Create ``path`` exclusively with ``like``'s permissions, write ``data``, fsync.

    Permissions are set before any byte is written, so secret content is never readable by
    anyone the live file does not allow. On failure the partial file is removed.
    ``replace_ours``: first remove a leftover of an earlier attempt of the same run (staging
    and temp files); a backup passes False and fails with EEXIST instead.
    """
    if replace_ours:
        _remove_file(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    try:
        _copy_permissions(fd, like_path, like)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _remove_file(path)
        raise
    try:
        os.close(fd)
    except OSError:
        _remove_file(path)
        raise


def _exclusive_copy(src: str, dst: str) -> None:
    """Copy ``src`` to a new ``dst`` (bytes, permissions, mtime); EEXIST if ``dst`` exists.

    Written in place with O_EXCL rather than through a rename, which would replace an
    existing file: a backup is never overwritten."""
    data, st = _read_regular(src, src, "copy")
    _write_new(dst, data, src, st, replace_ours=False)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


# --- the operations -------------------------------------------------------------------------


def read_one(path: str) -> FileState:
    """Content, hash, mtime and identity of one file; missing and unreadable files are
    states, not errors."""
    try:
        data, st = _read_regular(resolve(path), path)
    except AgentError as err:
        if err.kind is NodeErrorKind.NOT_FOUND:
            return FileState(path=path, status=FileStatus.MISSING)
        return FileState(path, FileStatus.ERROR, error_kind=err.kind, error=err.detail)
    # (st_dev, st_ino): on Windows CPython fills them from GetFileInformationByHandle(Ex),
    # volume serial number and file index, the same pair read.ps1 reports.
    return FileState(
        path, FileStatus.OK, data, sha256_hex(data), st.st_mtime, file_id(st.st_dev, st.st_ino)
    )


def read_files(paths: Sequence[str]) -> list[FileState]:
    return [read_one(p) for p in paths]


def _check_live(path: str, target: str, expected_sha256: str) -> os.stat_result:
    data, st = _read_regular(target, path, "read live file")
    if sha256_hex(data) != expected_sha256.lower():
        raise AgentError(NodeErrorKind.CHANGED, "live file changed since it was read", path)
    return st


def _unique(paths: Sequence[str]) -> None:
    """Refuse a path listed twice, compared as the node's filesystem compares names
    (case-insensitively on Windows: normcase), after %VAR% expansion."""
    seen: set[str] = set()
    for path in paths:
        key = os.path.normcase(resolve(path))
        if key in seen:
            raise AgentError(NodeErrorKind.PROTOCOL, "the same path is listed twice", path)
        seen.add(key)


def stage_files(items: Sequence[StageItem], run_id: str) -> list[str]:
    """Write every staging file, all or nothing; refuses (CHANGED) before writing anything if a
    live file no longer has its expected hash."""
    check_run_id(run_id)
    _unique([i.path for i in items])
    targets = [resolve(i.path) for i in items]
    for item, target in zip(items, targets, strict=True):
        _refuse_link(target, item.path)
    lives = [_check_live(i.path, t, i.expected_sha256) for i, t in zip(items, targets, strict=True)]
    written: list[str] = []
    try:
        for item, target, st in zip(items, targets, lives, strict=True):
            spath = staging_path(target, run_id)
            try:
                _write_new(spath, item.new_content, target, st)
            except OSError as exc:
                raise os_error(exc, "write staging file", spath) from None
            written.append(spath)
            back, _ = _read_regular(spath, spath, "read back staging file")
            if sha256_hex(back) != sha256_hex(item.new_content):
                raise AgentError(NodeErrorKind.VERIFY, "staging file read back differs", spath)
        for directory in {os.path.dirname(t) for t in targets}:
            try:
                fsync_directory(directory)
            except OSError as exc:
                raise os_error(exc, "flush directory", directory) from None
    except BaseException:
        for spath in written:
            _remove_file(spath)
        raise
    return [i.path for i in items]


def check_commit(items: Sequence[CommitItem], run_id: str) -> None:
    """The arm-time checks: every staging file holds what was staged and every live file is
    still what was read. Touches nothing."""
    check_run_id(run_id)
    _unique([i.path for i in items])
    for item in items:
        target = resolve(item.path)
        _refuse_link(target, item.path)
        spath = staging_path(target, run_id)
        if not os.path.lexists(spath):
            raise AgentError(NodeErrorKind.NOT_FOUND, "staging file missing (stage first)", spath)
        data, _ = _read_regular(spath, spath, "read staging file")
        if sha256_hex(data) != item.staged_sha256.lower():
            raise AgentError(NodeErrorKind.CHANGED, "staging file changed since staged", spath)
        _check_live(item.path, target, item.expected_sha256)
        bpath = backup_path(target, run_id)
        if os.path.lexists(bpath):  # as commit.ps1: fail before any live file changes
            raise _backup_exists(bpath)


def _make_backup(target: str, bpath: str) -> None:
    """Keep the live file at ``bpath``, never replacing a file already there: a run makes
    one backup per file, so an existing one means a second path (an alias, a symlinked
    directory) reached the same file, and replacing it would lose the original."""
    try:
        os.link(target, bpath, follow_symlinks=False)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise _backup_exists(bpath) from None
        if exc.errno not in _NO_HARDLINK:
            raise
        try:
            _exclusive_copy(target, bpath)
        except FileExistsError:
            raise _backup_exists(bpath) from None


def _backup_exists(bpath: str) -> AgentError:
    detail = "this run's backup already exists (two paths reach one file?); it was not replaced"
    return AgentError(NodeErrorKind.BACKUP_EXISTS, detail, bpath)


def _restore(bpath: str, target: str, run_id: str) -> None:
    """Atomically put a backup's bytes back over ``target``; the backup stays."""
    data, st = _read_regular(bpath, bpath, "read backup")
    tmp = temp_path(target, run_id)
    try:
        _write_new(tmp, data, bpath, st)
        back, _ = _read_regular(tmp, tmp, "read back restored file")
        if back != data:
            raise AgentError(NodeErrorKind.VERIFY, "restored copy read back differs", tmp)
        os.replace(tmp, target)
        fsync_directory(os.path.dirname(target))
    except OSError as exc:
        _remove_file(tmp)
        raise os_error(exc, "restore backup", target) from None
    except BaseException:
        _remove_file(tmp)
        raise


def is_busy(exc: OSError) -> bool:
    """Whether ``exc`` says another process holds the file for now (worth a retry)."""
    winerror = getattr(exc, "winerror", None)
    return winerror in protocol.BUSY_WIN32_ERRORS or exc.errno in _BUSY_ERRNO


def replace_when_free(
    source: str,
    target: str,
    shown: str,
    sleep: Callable[[float], None] = time.sleep,
    warnings: list[str] | None = None,
) -> None:
    """``os.replace`` retried, bounded, while the target is busy; each retry is reported.

    The same loop as Invoke-FarmsyncReplace in common.ps1 (protocol.REPLACE_ATTEMPTS
    attempts, the delay doubling from protocol.REPLACE_FIRST_DELAY). ``sleep`` is the seam
    the tests use to free the file between attempts."""
    delay = protocol.REPLACE_FIRST_DELAY
    for attempt in range(1, protocol.REPLACE_ATTEMPTS + 1):
        try:
            os.replace(source, target)
        except OSError as exc:
            if not is_busy(exc):
                raise
            if attempt == protocol.REPLACE_ATTEMPTS:
                raise AgentError(
                    NodeErrorKind.REMOTE,
                    f"live file still in use by another process after {attempt} attempts",
                    shown,
                ) from None
            sleep(delay)
            delay *= 2
            continue
        if attempt > 1 and warnings is not None:
            warnings.append(f"{shown}: replaced after {attempt - 1} retries (file in use)")
        return


def commit_files(
    items: Sequence[CommitItem],
    run_id: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
    warnings: list[str] | None = None,
) -> list[str]:
    """Back up and atomically replace every live file. If one fails, the ones already replaced
    by this call are restored from their backups before the error is raised. A live file
    held busy by another process is retried (:func:`replace_when_free`), and the retries are
    added to ``warnings``."""
    check_commit(items, run_id)  # again: narrows the window between arm and release
    done: list[tuple[str, str]] = []
    current = ""
    try:
        for item in items:
            target = current = resolve(item.path)
            bpath = backup_path(target, run_id)
            _make_backup(target, bpath)
            replace_when_free(staging_path(target, run_id), target, item.path, sleep, warnings)
            done.append((target, bpath))
            fsync_directory(os.path.dirname(target))
    except BaseException as exc:
        for target, bpath in reversed(done):
            try:
                _restore(bpath, target, run_id)
            except AgentError as again:  # pragma: no cover - double fault, reported on stderr
                print(f"farmsync: could not restore {target}: {again.detail}", file=sys.stderr)
        if isinstance(exc, OSError):
            raise os_error(exc, "replace live file", current) from None
        raise
    return [i.path for i in items]


def _hash_or_none(path: str, shown: str) -> str | None:
    """SHA-256 of a regular file, None when it does not exist."""
    try:
        data, _ = _read_regular(path, shown)
    except AgentError as err:
        if err.kind is NodeErrorKind.NOT_FOUND:
            return None
        raise
    return sha256_hex(data)


def rollback_files(
    paths: Sequence[str], run_id: str, expected: Mapping[str, str] | None = None
) -> tuple[list[str], list[str]]:
    """Put each path's backup of ``run_id`` back; (restored, skipped).

    The fence comes first: the run's staging file is removed before anything else, so a
    commit released earlier and not acknowledged (still running, or about to) finds nothing
    to rename and can no longer land behind this rollback. Then, when ``expected`` gives a
    path's original hash, the live file decides: already the original -> skipped; otherwise
    restored only from a backup that holds the original, and if none does, both files are
    left as they are (VERIFY): an original is never overwritten with anything else.
    """
    check_run_id(run_id)
    expected = expected or {}
    restored: list[str] = []
    skipped: list[str] = []
    for path in paths:
        target = resolve(path)
        spath = staging_path(target, run_id)
        try:
            _remove_file(spath)
        except OSError as exc:
            raise os_error(exc, "remove staging file", spath) from None
        bpath = backup_path(target, run_id)
        want = expected.get(path)
        if want is not None and _hash_or_none(target, path) == want.lower():
            skipped.append(path)
            continue
        if not os.path.lexists(bpath):
            skipped.append(path)
            continue
        if want is not None and _hash_or_none(bpath, bpath) != want.lower():
            raise AgentError(
                NodeErrorKind.VERIFY,
                "neither the live file nor this run's backup holds the original; "
                "both left as they are",
                path,
            )
        _restore(bpath, target, run_id)
        restored.append(path)
    return restored, skipped


def _backups(target: str) -> list[tuple[str, str]]:
    """(run_id, backup file) of every farmsync backup of ``target``, newest run first.

    Ordered by run id (the controller's timestamps), never by mtime: a file dated in the
    future must not outlive the backups of real runs."""
    directory, name = os.path.split(target)
    prefix, suffix = name + ".farmsync-", ".bak"
    found: dict[str, str] = {}
    try:
        entries = list(os.scandir(directory))
    except OSError as exc:
        raise os_error(exc, "list backups", directory) from None
    for entry in entries:
        if not (entry.name.startswith(prefix) and entry.name.endswith(suffix)):
            continue
        run_id = entry.name[len(prefix) : -len(suffix)]
        if not _RUN_ID.match(run_id) or not entry.is_file(follow_symlinks=False):
            continue
        found[run_id] = entry.path
    return [(run_id, found[run_id]) for run_id in backups_newest_first(found)]


def cleanup_files(paths: Sequence[str], run_id: str, keep_backups: int) -> list[str]:
    """Remove this run's staging and temp files, and backups beyond the newest ``keep_backups``
    (never this run's own backup)."""
    check_run_id(run_id)
    if keep_backups < 0:
        raise AgentError(NodeErrorKind.PROTOCOL, "keep_backups must be >= 0")
    removed: list[str] = []
    for path in paths:
        target = resolve(path)
        doomed = [staging_path(target, run_id), temp_path(target, run_id)]
        doomed += [full for rid, full in _backups(target)[keep_backups:] if rid != run_id]
        for victim in doomed:
            try:
                if _remove_file(victim):
                    removed.append(victim)
            except OSError as exc:
                raise os_error(exc, "remove", victim) from None
    return removed


def list_backups(paths: Sequence[str]) -> dict[str, list[str]]:
    return {p: [run_id for run_id, _ in _backups(resolve(p))] for p in paths}


def recycle(
    kind: str,
    command: str | None,
    app_pools: Sequence[str],
    timeout: float | None = None,
    warnings: list[str] | None = None,
) -> None:
    """Do what ``farmsync_recycle`` says: nothing, a command, or IIS app pools.

    ``command`` runs through the node's command interpreter, ``cmd.exe /d /s /c "…"`` on
    Windows and ``/bin/sh -c`` elsewhere, on both agents (PROTOCOL.md, "recycle").
    ``iis`` recycles Started pools only; others are skipped with a warning.
    ``timeout`` bounds each process started (TIMEOUT past it); None waits as long as it takes,
    for the remote agent, whose transport already bounds the whole request."""
    if kind == "none":
        return
    if kind == "command":
        if not command or not command.strip():
            raise AgentError(NodeErrorKind.PROTOCOL, "recycle command is empty")
        _run_recycle(command_argv(command), "recycle command", timeout)
        return
    if kind == "iis":
        if os.name != "nt":
            raise AgentError(NodeErrorKind.NOT_FOUND, "IIS is not installed on this node")
        appcmd = resolve(r"%windir%\system32\inetsrv\appcmd.exe")  # pragma: no cover
        chosen, skipped = plan_iis_recycle(_iis_pools(appcmd), app_pools)  # pragma: no cover
        if warnings is not None:  # pragma: no cover
            warnings.extend(skipped)
        for pool in chosen:  # pragma: no cover - Windows only
            _run_recycle([appcmd, "recycle", "apppool", f"/apppool.name:{pool}"], "appcmd", timeout)
        return
    raise AgentError(NodeErrorKind.PROTOCOL, "unknown recycle kind")


def command_argv(command: str) -> str | list[str]:
    """How a ``{command: …}`` recycle is started: the same interpreter recycle.ps1 uses."""
    if os.name == "nt":  # pragma: no cover - a command line, quoted the way cmd /s expects
        return f'cmd.exe /d /s /c "{command}"'
    return ["/bin/sh", "-c", command]


def plan_iis_recycle(
    pools: Sequence[tuple[str, str]], requested: Sequence[str]
) -> tuple[list[str], list[str]]:
    """(pools to recycle, warnings) from every pool's (name, state) and the requested names.

    No names: every Started pool. Named pools must exist (NOT_FOUND otherwise; IIS compares
    names case-insensitively); a pool that is not Started is skipped with a warning, since
    recycling a stopped pool fails and would start nothing. Same rules as recycle.ps1."""
    states = {name.lower(): (name, state) for name, state in pools}
    wanted = list(requested) or [name for name, _ in pools]
    chosen: list[str] = []
    warnings: list[str] = []
    for name in wanted:
        found = states.get(name.lower())
        if found is None:
            raise AgentError(NodeErrorKind.NOT_FOUND, f"no IIS application pool named {name!r}")
        real, state = found
        if state.lower() == "started":
            chosen.append(real)
        else:
            warnings.append(f"app pool {real!r} is {state}: not recycled")
    return chosen, warnings


def _iis_pools(appcmd: str) -> list[tuple[str, str]]:  # pragma: no cover - Windows only
    """(name, state) of every pool; WAS stopped or IIS absent are clear errors."""
    if not os.path.isfile(appcmd):
        raise AgentError(NodeErrorKind.NOT_FOUND, "IIS is not installed on this node")
    out = subprocess.run([appcmd, "list", "apppool", "/text:*"], capture_output=True, check=False)
    if out.returncode != 0:
        raise AgentError(
            NodeErrorKind.REMOTE,
            "cannot list IIS application pools (is the Windows Process Activation Service "
            f"running?): appcmd exited with status {out.returncode}",
        )
    pools: list[tuple[str, str]] = []
    name = state = ""
    for line in out.stdout.decode(errors="replace").splitlines():
        key, _, value = line.strip().partition(":")
        if key == "APPPOOL.NAME":
            name = value.strip('"')
        elif key == "state":
            state = value.strip('"')
            pools.append((name, state))
    return pools


def _run_recycle(argv: str | list[str], what: str, timeout: float | None) -> None:
    # The command's own output is diagnostics: stderr, never the JSON channel on stdout.
    try:
        # Its own session, so a timeout can stop everything it started, not just the shell.
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=sys.stderr, start_new_session=True
        )
    except OSError as exc:
        raise os_error(exc, f"run {what}", None) from None
    try:
        returncode = proc.wait(timeout)
    except BaseException as exc:
        _kill_tree(proc)
        if isinstance(exc, subprocess.TimeoutExpired):
            raise AgentError(
                NodeErrorKind.TIMEOUT, f"{what} did not finish within {timeout:g}s"
            ) from None
        raise
    if returncode != 0:
        raise AgentError(NodeErrorKind.REMOTE, f"{what} exited with status {returncode}")


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    if os.name == "nt":  # pragma: no cover - no process groups there
        proc.kill()
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


# --- the stdin protocol ---------------------------------------------------------------------


def _b64(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise AgentError(NodeErrorKind.PROTOCOL, "content_b64 is not base64") from None


def state_to_json(state: FileState, *, content: bool = True) -> dict[str, Any]:
    """A ``read`` entry; ``content=False``: the verify entry of ``stage_commit`` (no bytes)."""
    out: dict[str, Any] = {"path": state.path, "status": state.status.value}
    if state.status is FileStatus.OK and state.content is not None:
        if content:
            out["content_b64"] = base64.b64encode(state.content).decode("ascii")
        out["sha256"] = state.sha256
        out["mtime"] = state.mtime
        out["file_id"] = state.file_id
    elif state.status is FileStatus.ERROR:
        out["error_kind"] = state.error_kind.value if state.error_kind else None
        out["error"] = state.error
    return out


class FrameError(AgentError):
    """A request line that cannot be read as a request at all (not base64 JSON, another
    protocol version): the session cannot know where the next request starts, so it ends."""

    def __init__(self, detail: str):
        super().__init__(NodeErrorKind.PROTOCOL, detail)


def decode_request(line: bytes) -> tuple[str, dict[str, Any]]:
    """(op, args) of a request line (base64 of the JSON request), args checked against the
    protocol table (protocol.OP_ARGS): a missing or mistyped argument is a PROTOCOL error.
    A broken frame raises :class:`FrameError`; a wrong op or argument a plain AgentError."""
    try:
        request = json.loads(base64.b64decode(line.strip(), validate=True))
    except (binascii.Error, ValueError):
        raise FrameError("request line is not base64 JSON") from None
    if not isinstance(request, dict) or request.get("v") != PROTOCOL_VERSION:
        raise FrameError("unsupported protocol version")
    op, args = request.get("op"), request.get("args")
    if op not in OPS or not isinstance(args, dict):
        raise AgentError(NodeErrorKind.PROTOCOL, "unknown op or missing args")
    try:
        protocol.check_args(op, args)
    except protocol.ArgumentError as exc:
        raise AgentError(NodeErrorKind.PROTOCOL, str(exc)) from None
    return str(op), args


def run_op(
    op: str, args: dict[str, Any], next_line: Callable[[], bytes], emit: Callable[[Any], None]
) -> dict[str, Any]:
    """Run one decoded, checked request; ``commit`` emits the armed line and reads the word.

    Answers may carry ``warnings`` (text for the operator: retries, skipped pools)."""
    warnings: list[str] = []
    result = _dispatch(op, args, next_line, emit, warnings)
    if warnings:
        result["warnings"] = warnings
    return result


def _dispatch(
    op: str,
    args: dict[str, Any],
    next_line: Callable[[], bytes],
    emit: Callable[[Any], None],
    warnings: list[str],
) -> dict[str, Any]:
    if op == "read":
        files = [state_to_json(s) for s in read_files(args["paths"])]
        return {"files": files, "machine_id": machine_id()}
    if op == "list_backups":
        return {"backups": list_backups(args["paths"])}
    if op == "audit":  # read-only; its own module (agent_audit.py), loaded when asked for
        from farmsync.nodes import agent_audit

        request = agent_audit.request_from_json(args)
        return agent_audit.audit_to_json(agent_audit.audit_read(request))
    if op == "recycle":
        recycle(args["kind"], args["command"], args["app_pools"], warnings=warnings)
        return {}
    if op == "doctor":
        from farmsync.nodes.doctor_probe import probe

        return probe(args["paths"])
    run_id: str = args["run_id"]
    if op == "stage":
        stage_items = [
            StageItem(i["path"], _b64(i["content_b64"]), i["expected_sha256"])
            for i in args["items"]
        ]
        return {"staged": stage_files(stage_items, run_id)}
    if op == "commit":
        commit_items = [
            CommitItem(i["path"], i["expected_sha256"], i["staged_sha256"]) for i in args["items"]
        ]
        check_commit(commit_items, run_id)
        if not _armed_released(next_line, emit):
            return {"aborted": True}
        return {"committed": commit_files(commit_items, run_id, warnings=warnings)}
    if op == "stage_commit":
        return stage_commit(
            [
                (
                    StageItem(i["path"], _b64(i["content_b64"]), i["expected_sha256"]),
                    CommitItem(i["path"], i["expected_sha256"], i["staged_sha256"]),
                )
                for i in args["items"]
            ],
            run_id,
            args["keep_backups"],
            next_line,
            emit,
            warnings,
        )
    if op == "rollback":
        restored, skipped = rollback_files(args["paths"], run_id, args["expected"])
        return {"restored": restored, "skipped": skipped}
    return {"removed": cleanup_files(args["paths"], run_id, args["keep_backups"])}


def _armed_released(next_line: Callable[[], bytes], emit: Callable[[Any], None]) -> bool:
    """Say ``armed`` and read the release word: True only for exactly ``COMMIT``."""
    emit({"armed": True})
    # The word is compared exactly: "commit" or " COMMIT" is not a release.
    return next_line().rstrip(b"\r\n") == protocol.COMMIT_WORD.encode()


def verify_entries(paths: Sequence[str]) -> list[dict[str, Any]]:
    """Each live file read again (bounded, hashed), as ``read`` entries without content."""
    return [state_to_json(read_one(p), content=False) for p in paths]


def stage_commit(
    items: Sequence[tuple[StageItem, CommitItem]],
    run_id: str,
    keep_backups: int,
    next_line: Callable[[], bytes],
    emit: Callable[[Any], None],
    warnings: list[str],
) -> dict[str, Any]:
    """``stage``, ``commit``'s arm-time checks, the armed line, the release, a verify read and
    ``cleanup``, in one request (PROTOCOL.md, ``stage_commit``).

    Staging files this request wrote are removed when the checks fail or the release word
    is not given; a failed cleanup after the commit is a warning, not a failure."""
    if keep_backups < 0:  # before anything is written, as cleanup would refuse it after
        raise AgentError(NodeErrorKind.PROTOCOL, "keep_backups must be >= 0")
    stage_items = [s for s, _ in items]
    commit_items = [c for _, c in items]
    paths = stage_files(stage_items, run_id)
    try:
        check_commit(commit_items, run_id)
        released = _armed_released(next_line, emit)
    except BaseException:
        _remove_staged(paths, run_id)
        raise
    if not released:
        _remove_staged(paths, run_id)
        return {"aborted": True}
    committed = commit_files(commit_items, run_id, warnings=warnings)
    files = verify_entries(paths)
    removed: list[str] = []
    try:
        removed = cleanup_files(paths, run_id, keep_backups)
    except AgentError as err:  # the commit stands; leftovers are for the next cleanup
        warnings.append(f"cleanup: {err.kind.value}: {err.detail}")
    return {"committed": committed, "files": files, "removed": removed}


def _remove_staged(paths: Sequence[str], run_id: str) -> None:
    for path in paths:
        with contextlib.suppress(OSError):  # best effort: cleanup and rollback remove it too
            _remove_file(staging_path(resolve(path), run_id))


def serve_one(
    line: bytes, next_line: Callable[[], bytes], emit: Callable[[Any], None]
) -> tuple[int, bool]:
    """Answer one request line: (exit status of the answer, whether the session goes on)."""
    try:
        op, args = decode_request(line)
        result = run_op(op, args, next_line, emit)
    except FrameError as err:
        emit({"ok": False, "error": err.to_json()})
        return 1, False
    except AgentError as err:
        emit({"ok": False, "error": err.to_json()})
        return 1, True
    except OSError as exc:
        emit({"ok": False, "error": os_error(exc, "complete the operation", None).to_json()})
        return 1, True
    except Exception as exc:
        # Unexpected: name the type only; a message might echo arguments.
        detail = f"internal error in the node agent: {type(exc).__name__}"
        emit({"ok": False, "error": {"kind": "remote-error", "detail": detail, "path": None}})
        return 1, True
    emit({"ok": True, "result": result})
    return 0, True


def main(stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None) -> int:
    """Serve a session (PROTOCOL.md, "Sessions"): one request line after another until end
    of input, JSON lines on stdout, each request's last line its result. Exit status: that
    of the last answer (0 when none was asked for); a broken frame ends the session at once.
    """
    inp = stdin if stdin is not None else sys.stdin.buffer
    out = stdout if stdout is not None else sys.stdout.buffer

    def emit(obj: Any) -> None:
        out.write(json.dumps(obj, separators=(",", ":")).encode("ascii") + b"\n")
        out.flush()

    status = 0
    while line := inp.readline():
        status, going_on = serve_one(line, inp.readline, emit)
        if not going_on:
            break
    return status


if __name__ == "__main__":
    raise SystemExit(main())
