"""The POSIX commit over SFTP alone: no process is started on the node (issue 9).

Armed: the connection's open SFTP channel, after a check made as late as the controller can
before the barrier (every live file is still what was read, every staging file holds what
was staged, no backup of this run exists yet, and the server really performs
``hardlink@openssh.com`` and ``posix-rename@openssh.com`` in each directory). Release: per
file, ``hardlink@openssh.com`` live -> backup (link(2): exclusive, it never replaces a name)
then ``posix-rename@openssh.com`` staged -> live (rename(2)), all written to the channel
back to back without waiting for an answer; :meth:`SftpArmedCommit.wait` collects them.

The requests go through paramiko's request machinery (``_async_request`` to send,
``_read_response`` to collect into an object registered for the answers), which has no
public call for pipelined extended requests; this module is the only place that does it.

Durability: the staging files were fsynced at stage. SFTP cannot fsync a directory; instead
the next read on the node (the verify, after the commit window) first sends
``fsync@openssh.com`` on each replaced file (:func:`make_durable`). On ext4, XFS and btrfs that
commits the journal transaction holding the rename and the backup link; POSIX promises that
only for a directory fsync, so on other filesystems the rename is as durable as the filesystem
makes it on its own. A node that loses power between the release and that fsync may come back
with the old file, whole: on the old key, which the next run's read and ``farmsync audit`` see.
"""

from __future__ import annotations

import contextlib
import posixpath
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import paramiko
from paramiko.sftp import CMD_EXTENDED, CMD_REMOVE, CMD_STATUS, SFTP_NO_SUCH_FILE, SFTP_OK

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.nodes.contract import ArmedCommit, CommitItem, backup_path, staging_path
from farmsync.nodes.ssh_connect import node_errors
from farmsync.nodes.ssh_sftp import fsync, reraise_if_transport

HARDLINK = "hardlink@openssh.com"
POSIX_RENAME = "posix-rename@openssh.com"
PROBE_SUFFIX = ".farmsync-{run_id}.probe"
UNDO_SUFFIX = ".farmsync-{run_id}.undo"
_SFTP_PERMISSION_DENIED = 3
_SFTP_OP_UNSUPPORTED = 8


class Unavailable(Exception):
    """The node cannot do the SFTP commit here (an extension missing, denied, or no hard
    links on that filesystem); the caller falls back to the armed shell."""


@dataclass(frozen=True)
class Seen:
    """What stage saw of a live file: its stat before the read, and whether that stat alone
    proves later that the file is unchanged (see :func:`stat_proves`)."""

    mtime: int
    size: int
    stat_proves: bool


def stat_proves(mtime: int, staged_mtime: int, gap: float) -> bool:
    """Whether an unchanged (mtime, size) proves an unchanged file.

    SFTP v3 mtimes are whole seconds. Any write after the stat taken at time T lands with an
    mtime >= floor(T). The staging file was written at most ``gap`` seconds (controller
    clock, stat sent to staging written) after T, with mtime ``staged_mtime``, so
    T > staged_mtime - 1 when gap < 1: an mtime <= staged_mtime - 2 is then strictly older
    than any later write. Anything more recent is checked by hash."""
    return gap < 1.0 and mtime <= staged_mtime - 2


class _Answers:
    """Collects the server's answers by request number (paramiko calls _async_response)."""

    def __init__(self) -> None:
        self.got: dict[int, tuple[int, int, str]] = {}

    def _async_response(self, t: int, msg: paramiko.Message, num: int) -> None:
        if t == CMD_STATUS:
            code = msg.get_int()
            self.got[num] = (t, code, msg.get_text())
        else:
            self.got[num] = (t, -1, "")


class Pipeline:
    """Extended requests sent back to back on one SFTP channel, answers collected later."""

    def __init__(self, sftp: paramiko.SFTPClient):
        self.sftp = sftp
        self.answers = _Answers()

    def send(self, t: int, *args: str) -> int:
        num: int = self.sftp._async_request(self.answers, t, *args)  # type: ignore[attr-defined]
        return num

    def extended(self, name: str, *args: str) -> int:
        return self.send(CMD_EXTENDED, name, *args)

    def collect(self, nums: Sequence[int], deadline: float) -> dict[int, tuple[int, str]]:
        """(status code, text) per request; raises TimeoutError at the deadline."""
        channel = self.sftp.get_channel()
        assert channel is not None
        usual = channel.gettimeout()  # every other request keeps the host's deadline
        try:
            while any(n not in self.answers.got for n in nums):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("no answer from the SFTP server")
                channel.settimeout(remaining)
                self.sftp._read_response()  # type: ignore[attr-defined]
        finally:
            channel.settimeout(usual)
        return {n: (self.answers.got[n][1], self.answers.got[n][2]) for n in nums}


def probe_paths(live: str, run_id: str) -> tuple[str, str]:
    """The probe's names beside ``live``: the link it makes, and the name it renames that to,
    which stays (the safety link, see :func:`probe`) until cleanup."""
    first = live + PROBE_SUFFIX.format(run_id=run_id)
    return first, first + "2"


def safety_link(live: str, run_id: str) -> str:
    return probe_paths(live, run_id)[1]


def probe(
    sftp: paramiko.SFTPClient, host: str, lives: Sequence[str], run_id: str, timeout: float
) -> None:
    """Try both extensions for real on each live file, pipelined: hard-link the live file to
    a probe name and rename that to the safety link. Raises Unavailable (and removes both).

    The live file itself is linked, so a file at its link limit (EMLINK) or on a filesystem
    without hard links never reaches a release whose link would fail. The safety link keeps
    the original's inode under a second name until cleanup: a pipelined release cannot make
    its rename wait for its backup link, and if that link still fails (a backup name planted
    between the check and the release, a full directory), the original is not lost."""
    pipe = Pipeline(sftp)
    checks: list[tuple[int, int]] = []
    for live in lives:
        first, second = probe_paths(live, run_id)
        checks.append(
            (pipe.extended(HARDLINK, live, first), pipe.extended(POSIX_RENAME, first, second))
        )
    with node_errors(host, "commit"):
        got = pipe.collect([n for pair in checks for n in pair], time.monotonic() + timeout)
    for link, rename in checks:
        for num, name in ((link, HARDLINK), (rename, POSIX_RENAME)):
            code, _ = got[num]
            if code != SFTP_OK:
                with node_errors(host, "commit"):
                    drop = [pipe.send(CMD_REMOVE, p) for v in lives for p in probe_paths(v, run_id)]
                    pipe.collect(drop, time.monotonic() + timeout)
                raise Unavailable(f"{name} {_describe(code)}")


def _describe(code: int) -> str:
    if code == _SFTP_OP_UNSUPPORTED:
        return "is not supported by the node's SFTP server"
    if code == _SFTP_PERMISSION_DENIED:
        return "is refused by the node's SFTP server"
    return "failed on the node's filesystem"


class SftpArmedCommit(ArmedCommit):
    """An armed commit over the open SFTP channel; release writes 2 requests per file."""

    def __init__(
        self,
        host: str,
        sftp: paramiko.SFTPClient,
        items: Sequence[CommitItem],
        run_id: str,
        undo: Callable[[Sequence[CommitItem]], None],
        discard: Callable[[], None],
        replaced: Callable[[Sequence[str]], None],
    ):
        self.host = host
        self.sftp = sftp
        self.items = list(items)
        self.run_id = run_id
        self._undo = undo  # the rollback of the files this commit did replace
        self._discard = discard  # drop the SFTP channel from the connection
        self._replaced = replaced  # files to make durable after the commit window
        self._pipe = Pipeline(sftp)
        self._sent: list[tuple[CommitItem, int, int]] = []
        self._released = False
        self._done = False

    def release(self) -> None:
        self._released = True
        with node_errors(self.host, "commit"):
            for item in self.items:
                live = item.path
                link = self._pipe.extended(HARDLINK, live, backup_path(live, self.run_id))
                rename = self._pipe.extended(POSIX_RENAME, staging_path(live, self.run_id), live)
                self._sent.append((item, link, rename))

    def wait(self, timeout: float) -> None:
        nums = [n for _, link, rename in self._sent for n in (link, rename)]
        try:
            with node_errors(self.host, "commit"):
                got = self._pipe.collect(nums, time.monotonic() + timeout)
        except NodeError:
            self.abort()  # the channel's stream is unusable after a timeout or a drop
            raise
        self._done = True
        committed: list[CommitItem] = []
        unbacked: list[CommitItem] = []
        failed: NodeError | None = None
        for item, link, rename in self._sent:
            (link_code, link_text), (rename_code, rename_text) = got[link], got[rename]
            if rename_code == SFTP_OK:
                (committed if link_code == SFTP_OK else unbacked).append(item)
            if failed is None and (link_code != SFTP_OK or rename_code != SFTP_OK):
                failed = self._failure(item, link_code, link_text, rename_code, rename_text)
        if failed is None:
            self._replaced([item.path for item in committed])
            return
        if unbacked:
            failed = self._restore_unbacked(unbacked, timeout) or failed
        if committed:
            # As the armed shell does: a failed file puts back those already replaced.
            with contextlib.suppress(NodeError):
                self._undo(committed)
        raise failed

    def _restore_unbacked(self, items: Sequence[CommitItem], timeout: float) -> NodeError | None:
        """Files replaced although their backup link failed: put the original inode back
        from the safety link, atomically (link it to a temporary name, rename that over the
        live file). None when done; else the error that says where the original is."""
        pipe = Pipeline(self.sftp)
        sent = []
        for item in items:
            temp = item.path + UNDO_SUFFIX.format(run_id=self.run_id)
            keep = safety_link(item.path, self.run_id)
            sent.append(
                (
                    item,
                    pipe.extended(HARDLINK, keep, temp),
                    pipe.extended(POSIX_RENAME, temp, item.path),
                )
            )
        try:
            with node_errors(self.host, "commit"):
                got = pipe.collect(
                    [n for _, a, b in sent for n in (a, b)], time.monotonic() + timeout
                )
        except NodeError:
            got = {}
        for item, link, rename in sent:
            if got.get(link, (-1, ""))[0] != SFTP_OK or got.get(rename, (-1, ""))[0] != SFTP_OK:
                return NodeError(
                    self.host,
                    NodeErrorKind.VERIFY,
                    "replaced without a backup, and putting the original back failed: it is "
                    f"kept as {posixpath.basename(safety_link(item.path, self.run_id))}",
                    phase="commit",
                    path=item.path,
                )
        return None

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        if self._released:
            # Released, never answered: answers may still be in flight on this channel, so
            # nothing else may use it. The rollback's fence runs on a fresh channel.
            self._discard()

    def _failure(
        self,
        item: CommitItem,
        link_code: int,
        link_text: str,
        rename_code: int,
        rename_text: str,
    ) -> NodeError:
        path = item.path
        if link_code != SFTP_OK:
            backup = backup_path(path, self.run_id)
            if _exists(self.sftp, backup):
                return NodeError(
                    self.host,
                    NodeErrorKind.BACKUP_EXISTS,
                    "this run's backup already exists (two paths reach one file?); "
                    "it was not replaced",
                    phase="commit",
                    path=backup,
                )
            return NodeError(
                self.host,
                _kind(link_code),
                f"backup: {link_text or 'failed'}",
                phase="commit",
                path=path,
            )
        if rename_code == SFTP_NO_SUCH_FILE:
            return NodeError(
                self.host,
                NodeErrorKind.NOT_FOUND,
                "staging file missing; not committed",
                phase="commit",
                path=path,
            )
        return NodeError(
            self.host,
            _kind(rename_code),
            f"replace: {rename_text or 'failed'}",
            phase="commit",
            path=path,
        )


def _kind(code: int) -> NodeErrorKind:
    if code == _SFTP_PERMISSION_DENIED:
        return NodeErrorKind.PERMISSION
    if code == SFTP_NO_SUCH_FILE:
        return NodeErrorKind.NOT_FOUND
    return NodeErrorKind.REMOTE


def _exists(sftp: paramiko.SFTPClient, path: str) -> bool:
    try:
        return stat.S_IFMT(sftp.lstat(path).st_mode or 0) != 0
    except OSError:
        return False


def make_durable(sftp: paramiko.SFTPClient, paths: Sequence[str]) -> None:
    """``fsync@openssh.com`` on each file the release put in place (see the module notes).

    Best effort: the files are in place whatever this answers, and verify reads them next."""
    for path in paths:
        try:
            with sftp.open(path, "rb") as handle:
                fsync(sftp, handle)
        except OSError as exc:
            reraise_if_transport(sftp, exc)  # a lost connection is the verify's to report
