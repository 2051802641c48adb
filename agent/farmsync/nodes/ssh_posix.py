"""Node operations on a POSIX node over SSH: SFTP only, no process started on the node.

Why SFTP: on this kind of node a shell exec costs ~150 ms of start-up, while a whole SFTP
read, write and rename of a root web.config costs ~60 ms over the connection's one SFTP
channel, and OpenSSH's sftp-server gives us what we need: O_EXCL create with a mode,
``fsync@openssh.com``, ``hardlink@openssh.com`` (link(2)), ``posix-rename@openssh.com``
(rename(2)).

The commit (issue 9) is ``sftp_commit``: armed = the open SFTP channel plus a check of every
file just before the barrier; release = a hard link and a rename per file, pipelined.

Where the node's SFTP server cannot do that (an extension missing or refused, no hard links on
the filesystem), the commit falls back to one armed ``/bin/sh`` per node (start-up paid before
the barrier) running a fixed script: it reads the paths on stdin, checks the hashes, prints
ARMED and blocks on stdin. Release is the 7 bytes ``COMMIT\\n``; the node then does
``ln``/``mv`` (rename(2)) per file and syncs. The command line is the same for every run and
never carries a path, content or key.
"""

from __future__ import annotations

import contextlib
import errno
import posixpath
import secrets
import shlex
import stat
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import paramiko

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.inventory.model import RecycleKind, RecycleSpec
from farmsync.nodes.agent import AgentError, check_run_id
from farmsync.nodes.auditread import AuditRead, AuditRequest
from farmsync.nodes.contract import (
    MAX_FILE_BYTES,
    ArmedCommit,
    CommitItem,
    FileState,
    FileStatus,
    StageItem,
    backup_path,
    backups_newest_first,
    raise_for_state,
    sha256_hex,
    staging_path,
)
from farmsync.nodes.sftp_commit import (
    UNDO_SUFFIX,
    Seen,
    SftpArmedCommit,
    Unavailable,
    make_durable,
    probe,
    probe_paths,
    stat_proves,
)
from farmsync.nodes.ssh_audit import sftp_audit
from farmsync.nodes.ssh_connect import SshConnection, node_errors
from farmsync.nodes.ssh_sftp import (
    StagingFailure,
    TooLarge,
    create_exclusive,
    exists,
    failure,
    free_bytes,
    read_all,
    remove_quietly,
    reraise_if_transport,
    write_file,
)

BACKUP_MARK = ".farmsync-"
ROLLBACK_SUFFIX = ".farmsync-{run_id}.rbk"

# The armed commit. stdin: lines "expected<TAB>staged<TAB>live<TAB>new<TAB>backup", then ".",
# later COMMIT or ABORT. stdout: ARMED, then COMMITTED/ABORTED, or "FAIL<TAB>step<TAB>path".
COMMIT_SCRIPT = r"""set -u
tab=$(printf '\t')
items=''
while IFS= read -r line; do
  [ "$line" = . ] && break
  items="$items$line
"
done
check() {
  printf '%s' "$items" | while IFS="$tab" read -r exp stg live new bak; do
    h=$(sha256sum < "$live") && [ -f "$live" ] && [ "${h%% *}" = "$exp" ] \
      || { printf 'FAIL\tchanged\t%s\n' "$live"; exit 1; }
    [ -f "$new" ] || { printf 'FAIL\tnotstaged\t%s\n' "$live"; exit 1; }
    h=$(sha256sum < "$new") && [ "${h%% *}" = "$stg" ] \
      || { printf 'FAIL\tstaged\t%s\n' "$live"; exit 1; }
    # A run makes one backup per file: one already there means two paths reach this file.
    [ ! -e "$bak" ] && [ ! -L "$bak" ] || { printf 'FAIL\tbackupexists\t%s\n' "$bak"; exit 1; }
  done
}
check || exit 1
printf 'ARMED\n'
read -r word || word=ABORT
[ "$word" = COMMIT ] || { printf 'ABORTED\n'; exit 0; }
check || exit 1  # again, a few ms later: narrows the window between arm and release
printf '%s' "$items" | {
  undo=''
  while IFS="$tab" read -r exp stg live new bak; do
    # Exclusive: ln never replaces an existing name, and without hard links the copy is
    # made under noclobber (O_EXCL), so an existing backup is never overwritten.
    if ! { ln -- "$live" "$bak" 2>/dev/null \
        || if [ -e "$bak" ] || [ -L "$bak" ]; then
             printf '%s: File exists\n' "$bak" >&2; false
           else
             (set -C; cat -- "$live" > "$bak") \
               && chmod --reference="$live" -- "$bak" && touch -r "$live" -- "$bak"
           fi; }; then
      step=backup
    elif ! mv -f -- "$new" "$live"; then
      step=replace
    else
      undo="$undo$live$tab$bak
"
      continue
    fi
    printf '%s' "$undo" | while IFS="$tab" read -r l b; do
      cp -p -- "$b" "$l.farmsync-undo" && mv -f -- "$l.farmsync-undo" "$l"
    done
    printf 'FAIL\t%s\t%s\n' "$step" "$live"
    exit 1
  done
} || exit 1
printf '%s' "$items" | while IFS="$tab" read -r exp stg live new bak; do
  sync -- "$bak" "$live" "${live%/*}" 2>/dev/null || sync
done
printf 'COMMITTED\n'
"""
COMMIT_COMMAND = "/bin/sh -c " + shlex.quote(COMMIT_SCRIPT)


def classify_stderr(text: str) -> NodeErrorKind:
    """Kind of a coreutils failure from its message (the C locale's strerror texts)."""
    for needle, kind in (
        ("Permission denied", NodeErrorKind.PERMISSION),
        ("Operation not permitted", NodeErrorKind.PERMISSION),
        ("Read-only file system", NodeErrorKind.PERMISSION),
        ("No space left", NodeErrorKind.DISK_FULL),
        ("Disk quota", NodeErrorKind.DISK_FULL),  # EDQUOT: disk-full on every transport
        ("Is a directory", NodeErrorKind.IS_DIRECTORY),
        ("File exists", NodeErrorKind.BACKUP_EXISTS),  # the backup, created under noclobber
    ):
        if needle in text:
            return kind
    return NodeErrorKind.REMOTE


# What the armed shell's "FAIL\t<step>\t<path>" answers mean; anything else reads stderr.
_COMMIT_FAILURES: dict[str, tuple[NodeErrorKind, str]] = {
    "changed": (NodeErrorKind.CHANGED, "live file changed since staging; nothing committed"),
    "notstaged": (
        NodeErrorKind.NOT_FOUND,
        "staging file missing (stage first); nothing committed",
    ),
    "staged": (NodeErrorKind.CHANGED, "staging file missing or changed; nothing committed"),
    "backupexists": (
        NodeErrorKind.BACKUP_EXISTS,
        "this run's backup already exists (two paths reach one file?); it was not replaced",
    ),
}


class LineChannel:
    """Line-wise reading of an exec channel's stdout, with a deadline."""

    def __init__(self, host: str, channel: paramiko.Channel, phase: str):
        self.host = host
        self.channel = channel
        self.phase = phase
        self._buffer = b""

    def readline(self, timeout: float) -> str | None:
        """The next stdout line, or None at end of output."""
        deadline = time.monotonic() + timeout
        with node_errors(self.host, self.phase):
            while b"\n" not in self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise NodeError(
                        self.host,
                        NodeErrorKind.TIMEOUT,
                        "no answer from the node",
                        phase=self.phase,
                    )
                self.channel.settimeout(remaining)
                chunk = self.channel.recv(65536)
                if not chunk:
                    if not self._buffer:
                        return None
                    break
                self._buffer += chunk
            line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode("utf-8", "replace").rstrip("\r")

    def stderr(self) -> str:
        with node_errors(self.host, self.phase):
            data = b""
            while self.channel.recv_stderr_ready():
                data += self.channel.recv_stderr(65536)
        return data.decode("utf-8", "replace").strip()

    def exit_status(self, timeout: float) -> int:
        with node_errors(self.host, self.phase):
            if not self.channel.status_event.wait(timeout):
                raise NodeError(
                    self.host,
                    NodeErrorKind.TIMEOUT,
                    "node command did not finish",
                    phase=self.phase,
                )
            return self.channel.recv_exit_status()


class ShellArmedCommit(ArmedCommit):
    """An armed ``sh`` on the node, blocked on stdin; release writes one line."""

    def __init__(self, host: str, lines: LineChannel, paths: Sequence[str]):
        self.host = host
        self.lines = lines
        self.paths = list(paths)
        self._done = False

    def release(self) -> None:
        with node_errors(self.host, "commit"):
            self.lines.channel.sendall(b"COMMIT\n")

    def wait(self, timeout: float) -> None:
        try:
            line = self.lines.readline(timeout)
            if line == "COMMITTED":
                return
            raise self._failure(line)
        finally:
            self._finish()

    def abort(self) -> None:
        if self._done:
            return
        try:
            with node_errors(self.host, "commit"):
                self.lines.channel.sendall(b"ABORT\n")
            self.lines.readline(self.lines.channel.gettimeout() or 30.0)
        finally:
            self._finish()

    def _failure(self, line: str | None) -> NodeError:
        if line is None:
            return NodeError(
                self.host,
                NodeErrorKind.CONNECTION_LOST,
                "commit process ended without answer",
                phase="commit",
            )
        parts = line.split("\t", 2)
        if len(parts) != 3 or parts[0] != "FAIL":
            return NodeError(self.host, NodeErrorKind.PROTOCOL, "unexpected answer", phase="commit")
        _, step, path = parts
        known = _COMMIT_FAILURES.get(step)
        if known is not None:
            kind, detail = known
            return NodeError(self.host, kind, detail, phase="commit", path=path)
        with contextlib.suppress(NodeError):  # a slow exit must not hide the failure itself
            self.lines.exit_status(10.0)  # stderr is complete once the process has exited
        message = self.lines.stderr().splitlines()
        detail = message[0][:300] if message else f"{step} failed"
        return NodeError(
            self.host, classify_stderr(detail), f"{step}: {detail}", phase="commit", path=path
        )

    def _finish(self) -> None:
        self._done = True
        self.lines.channel.close()


def _check_run_id(host: str, run_id: str, phase: str) -> None:
    """Run ids become part of file names: the node agent's rule, same error."""
    try:
        check_run_id(run_id)
    except AgentError:
        raise NodeError(host, NodeErrorKind.PROTOCOL, "invalid run id", phase=phase) from None


def _is_run_id(run_id: str) -> bool:
    try:
        check_run_id(run_id)
    except AgentError:
        return False
    return True


def _check_path(host: str, path: str, phase: str) -> None:
    # The commit script takes tab-separated lines; node paths never hold these.
    if "\n" in path or "\t" in path or not path:
        raise NodeError(host, NodeErrorKind.PROTOCOL, "unusable path", phase=phase, path=path)


_TOO_LARGE = f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB"


def _error_state(path: str, kind: NodeErrorKind, detail: str) -> FileState:
    return FileState(path, FileStatus.ERROR, error_kind=kind, error=detail)


@contextlib.contextmanager
def sftp_errors(host: str, phase: str, path: str | None = None) -> Iterator[None]:
    """node_errors, plus the classified SFTP failures of ssh_sftp as NodeErrors."""
    try:
        with node_errors(host, phase, path):
            yield
    except StagingFailure as exc:
        raise NodeError(host, exc.kind, exc.detail, phase=phase, path=path) from None


class PosixOps:
    """The phases for a POSIX node; SshNode counts round trips and owns the connection."""

    def __init__(self, conn: SshConnection, warnings: list[str] | None = None):
        self.conn = conn
        self.host = conn.host.name
        self.timeout = conn.host.timeout
        self.warnings = warnings if warnings is not None else []
        self._seen: dict[tuple[str, str], Seen] = {}  # (run id, path): the live file at stage
        self._unflushed: list[str] = []  # replaced by an SFTP release, not yet fsynced

    # --- read ---------------------------------------------------------------------------
    def read_one(self, sftp: paramiko.SFTPClient, path: str) -> FileState:
        """One file: only a regular file, its size checked before reading, the read bounded.

        The file id is the path with every symlink resolved (SFTP REALPATH): SFTP v3 carries
        no inode number. Two paths reaching one file through links or a symlinked directory
        get the same id; a bind mount is caught at commit time, where the run's one backup
        per file already exists (BACKUP_EXISTS)."""
        try:
            attrs = sftp.stat(path)
            mode = attrs.st_mode or 0
            if stat.S_ISDIR(mode):
                return _error_state(path, NodeErrorKind.IS_DIRECTORY, "is a directory")
            if not stat.S_ISREG(mode):
                return _error_state(path, NodeErrorKind.NOT_REGULAR, "not a regular file")
            if (attrs.st_size or 0) > MAX_FILE_BYTES:
                return _error_state(path, NodeErrorKind.TOO_LARGE, _TOO_LARGE)
            content = read_all(sftp, path)
            real = sftp.normalize(path)
        except TooLarge:
            return _error_state(path, NodeErrorKind.TOO_LARGE, _TOO_LARGE)
        except OSError as exc:
            reraise_if_transport(sftp, exc)
            if exc.errno == errno.ENOENT:
                return FileState(path, FileStatus.MISSING)
            kind, detail = failure(sftp, exc, path)
            return _error_state(path, kind, detail)
        return FileState(
            path,
            FileStatus.OK,
            content=content,
            sha256=sha256_hex(content),
            mtime=float(attrs.st_mtime or 0),
            file_id="path:" + real,
        )

    def read(self, paths: Sequence[str]) -> dict[str, FileState]:
        sftp = self.conn.sftp()
        with node_errors(self.host, "read"):
            if self._unflushed:  # the verify after an SFTP release, outside the window
                flush, self._unflushed = self._unflushed, []
                make_durable(sftp, flush)
            return {path: self.read_one(sftp, path) for path in paths}

    def audit(self, request: AuditRequest) -> AuditRead:
        sftp = self.conn.sftp()
        with node_errors(self.host, "audit"):
            return sftp_audit(sftp, self.read_one, request)

    # --- stage --------------------------------------------------------------------------
    def stage(self, items: Sequence[StageItem], run_id: str) -> None:
        _check_run_id(self.host, run_id, "stage")
        sftp = self.conn.sftp()
        with sftp_errors(self.host, "stage"):
            live_attrs: dict[str, paramiko.SFTPAttributes] = {}
            states: dict[str, FileState] = {}
            started = time.monotonic()
            for item in items:  # every live hash first: refuse before writing anything
                _check_path(self.host, item.path, "stage")
                state = states[item.path] = self.read_one(sftp, item.path)
                raise_for_state(self.host, state, "stage")
                if state.status is FileStatus.MISSING:
                    raise NodeError(
                        self.host,
                        NodeErrorKind.NOT_FOUND,
                        "live file missing; nothing staged",
                        phase="stage",
                        path=item.path,
                    )
                if state.sha256 != item.expected_sha256.lower():
                    raise NodeError(
                        self.host,
                        NodeErrorKind.CHANGED,
                        "live file changed since it was read; nothing staged",
                        phase="stage",
                        path=item.path,
                    )
                if stat.S_ISLNK(sftp.lstat(item.path).st_mode or 0):
                    # A rename would replace the link with a regular file: refuse instead.
                    raise NodeError(
                        self.host,
                        NodeErrorKind.PROTOCOL,
                        "is a symbolic link; list the real file in farmsync_root_configs",
                        phase="stage",
                        path=item.path,
                    )
                live_attrs[item.path] = sftp.stat(item.path)
            written: list[str] = []
            try:
                for item in items:
                    target = staging_path(item.path, run_id)
                    remove_quietly(sftp, target)
                    written.append(target)
                    try:
                        write_file(sftp, target, item.new_content, live_attrs[item.path])
                    except StagingFailure as exc:
                        raise NodeError(
                            self.host, exc.kind, exc.detail, phase="stage", path=item.path
                        ) from None
                    self._remember(sftp, states[item.path], target, started, run_id)
            except BaseException:
                for target in written:
                    # The first error is the one to report.
                    with contextlib.suppress(OSError, StagingFailure):
                        remove_quietly(sftp, target)
                raise

    def _remember(
        self,
        sftp: paramiko.SFTPClient,
        state: FileState,
        staged: str,
        started: float,
        run_id: str,
    ) -> None:
        """Keep what the armed check needs to tell, by stat alone, that the file is as read."""
        staged_mtime = int(sftp.stat(staged).st_mtime or 0)
        mtime = int(state.mtime or 0)
        proves = stat_proves(mtime, staged_mtime, time.monotonic() - started)
        self._seen[(run_id, state.path)] = Seen(mtime, len(state.content or b""), proves)

    # --- commit -------------------------------------------------------------------------
    def arm_commit(self, items: Sequence[CommitItem], run_id: str) -> ArmedCommit:
        """The SFTP commit (sftp_commit.py); the armed shell where the node cannot do it."""
        _check_run_id(self.host, run_id, "commit")
        for item in items:
            _check_path(self.host, item.path, "commit")
        sftp = self.conn.sftp()
        try:
            with sftp_errors(self.host, "commit"):
                probe(sftp, self.host, [i.path for i in items], run_id, self.timeout)
        except Unavailable as why:
            notice = f"SFTP commit unavailable ({why}); using the armed shell"
            if notice not in self.warnings:  # said once per node
                self.warnings.append(notice)
            return self.arm_shell(items, run_id)
        with sftp_errors(self.host, "commit"):
            for item in items:
                self._check_armed(sftp, item, run_id)
        return SftpArmedCommit(
            self.host,
            sftp,
            items,
            run_id,
            undo=lambda done: self.rollback(
                [i.path for i in done], run_id, {i.path: i.expected_sha256 for i in done}
            ),
            discard=self.conn.discard_sftp,
            replaced=lambda paths: self._unflushed.extend(paths),
        )

    def _check_armed(self, sftp: paramiko.SFTPClient, item: CommitItem, run_id: str) -> None:
        """The armed shell's checks, over SFTP: the live file is what was read, the staging
        file what was staged, and this run has no backup yet."""
        path = item.path
        seen = self._seen.get((run_id, path))
        unchanged = False
        if seen is not None and seen.stat_proves:
            try:
                attrs = sftp.stat(path)
            except OSError as exc:  # gone, unreadable...: the read below says which
                reraise_if_transport(sftp, exc)
            else:
                unchanged = stat.S_ISREG(attrs.st_mode or 0) and (
                    int(attrs.st_mtime or 0),
                    attrs.st_size,
                ) == (seen.mtime, seen.size)
        if not unchanged and self.read_one(sftp, path).sha256 != item.expected_sha256.lower():
            raise NodeError(
                self.host,
                NodeErrorKind.CHANGED,
                "live file changed since staging; nothing committed",
                phase="commit",
                path=path,
            )
        staged = self.read_one(sftp, staging_path(path, run_id))
        if staged.status is FileStatus.MISSING:
            raise NodeError(
                self.host,
                NodeErrorKind.NOT_FOUND,
                "staging file missing (stage first); nothing committed",
                phase="commit",
                path=path,
            )
        if staged.sha256 != item.staged_sha256.lower():
            raise NodeError(
                self.host,
                NodeErrorKind.CHANGED,
                "staging file missing or changed; nothing committed",
                phase="commit",
                path=path,
            )
        if exists(sftp, backup_path(path, run_id)):
            raise NodeError(
                self.host,
                NodeErrorKind.BACKUP_EXISTS,
                "this run's backup already exists (two paths reach one file?); it was not replaced",
                phase="commit",
                path=backup_path(path, run_id),
            )

    def arm_shell(self, items: Sequence[CommitItem], run_id: str) -> ArmedCommit:
        """The armed ``sh`` (COMMIT_SCRIPT): for a node whose SFTP server cannot commit."""
        lines_out = []
        for item in items:
            lines_out.append(
                "\t".join(
                    (
                        item.expected_sha256.lower(),
                        item.staged_sha256.lower(),
                        item.path,
                        staging_path(item.path, run_id),
                        backup_path(item.path, run_id),
                    )
                )
            )
        channel = self.conn.exec(COMMIT_COMMAND)
        lines = LineChannel(self.host, channel, "commit")
        armed = ShellArmedCommit(self.host, lines, [i.path for i in items])
        try:
            with node_errors(self.host, "commit"):
                channel.sendall(("\n".join([*lines_out, "."]) + "\n").encode())
            answer = lines.readline(self.timeout)
            if answer != "ARMED":
                raise armed._failure(answer)
        except BaseException:
            armed._finish()
            raise
        return armed

    # --- rollback / cleanup / backups ---------------------------------------------------
    def _hash_or_none(self, sftp: paramiko.SFTPClient, path: str) -> str | None:
        state = self.read_one(sftp, path)
        raise_for_state(self.host, state, "rollback")
        return state.sha256

    def rollback(
        self, paths: Sequence[str], run_id: str, expected: Mapping[str, str] | None = None
    ) -> None:
        """The fence first (the staging file goes, so a late commit's ``mv`` finds nothing),
        then the live file decides; see NodeOperations.rollback."""
        _check_run_id(self.host, run_id, "rollback")
        expected = expected or {}
        sftp = self.conn.sftp()
        for path in paths:
            with sftp_errors(self.host, "rollback", path):
                remove_quietly(sftp, staging_path(path, run_id))
                want = expected.get(path)
                if want is not None and self._hash_or_none(sftp, path) == want.lower():
                    continue  # already the original: nothing to put back
                backup = backup_path(path, run_id)
                found = self.read_one(sftp, backup)  # a regular file, bounded like any read
                if found.status is FileStatus.MISSING:
                    continue
                raise_for_state(self.host, found, "rollback")
                content = found.content or b""
                attrs = sftp.stat(backup)  # its mode and owner, for the restored file
                if want is not None and sha256_hex(content) != want.lower():
                    raise NodeError(
                        self.host,
                        NodeErrorKind.VERIFY,
                        "neither the live file nor this run's backup holds the original; "
                        "both left as they are",
                        phase="rollback",
                        path=path,
                    )
                temp = path + ROLLBACK_SUFFIX.format(run_id=run_id)
                remove_quietly(sftp, temp)
                try:
                    write_file(sftp, temp, content, attrs)
                except StagingFailure:
                    remove_quietly(sftp, temp)
                    raise
                sftp.posix_rename(temp, path)

    def _backups(
        self, sftp: paramiko.SFTPClient, paths: Sequence[str]
    ) -> dict[str, list[tuple[str, str]]]:
        """Per path: (run_id, backup path), newest run first. One listing per directory."""
        listings: dict[str, list[paramiko.SFTPAttributes]] = {}
        found: dict[str, list[tuple[str, str]]] = {}
        for path in paths:
            directory, name = posixpath.split(path)
            if directory not in listings:
                try:
                    listings[directory] = sftp.listdir_attr(directory or ".")
                except OSError as exc:
                    reraise_if_transport(sftp, exc)
                    if exc.errno != errno.ENOENT:
                        raise
                    listings[directory] = []
            prefix = name + BACKUP_MARK
            entries: dict[str, str] = {}
            for attrs in listings[directory]:
                entry = attrs.filename
                if entry.startswith(prefix) and entry.endswith(".bak"):
                    run_id = entry[len(prefix) : -len(".bak")]
                    if _is_run_id(run_id) and stat.S_ISREG(attrs.st_mode or 0):
                        entries[run_id] = posixpath.join(directory, entry)
            found[path] = [(run, entries[run]) for run in backups_newest_first(entries)]
        return found

    def list_backups(self, paths: Sequence[str]) -> dict[str, list[str]]:
        sftp = self.conn.sftp()
        with sftp_errors(self.host, "list-backups"):
            return {p: [run for run, _ in e] for p, e in self._backups(sftp, paths).items()}

    def cleanup(self, paths: Sequence[str], run_id: str, keep_backups: int) -> None:
        _check_run_id(self.host, run_id, "cleanup")
        sftp = self.conn.sftp()
        with sftp_errors(self.host, "cleanup"):
            for path in paths:
                remove_quietly(sftp, staging_path(path, run_id))
                remove_quietly(sftp, path + ROLLBACK_SUFFIX.format(run_id=run_id))
                # The SFTP commit's probe and safety link, and an undo cut short.
                undo = path + UNDO_SUFFIX.format(run_id=run_id)
                for name in (*probe_paths(path, run_id), undo):
                    remove_quietly(sftp, name)
            for entries in self._backups(sftp, paths).values():
                for run, old in entries[max(keep_backups, 0) :]:
                    if run != run_id:  # never the backup of the run in progress
                        remove_quietly(sftp, old)

    # --- recycle ------------------------------------------------------------------------
    def recycle(self, spec: RecycleSpec) -> None:
        if spec.kind is RecycleKind.IIS:
            raise NodeError(
                self.host,
                NodeErrorKind.PROTOCOL,
                "IIS app-pool recycling needs a Windows (PowerShell) node",
                phase="recycle",
            )
        if spec.kind is not RecycleKind.COMMAND or not spec.command:
            return
        lines = LineChannel(self.host, self.conn.exec(spec.command), "recycle")
        # One deadline for the whole command, however much it prints; stderr is merged into
        # stdout so a chatty command cannot stall on a full stderr window.
        deadline = time.monotonic() + self.timeout
        try:
            with node_errors(self.host, "recycle"):
                lines.channel.set_combine_stderr(True)
                lines.channel.shutdown_write()
            while lines.readline(max(deadline - time.monotonic(), 0.001)) is not None:
                pass
            status = lines.exit_status(max(deadline - time.monotonic(), 0.001))
        finally:
            lines.channel.close()  # also on a timeout: the channel must not outlive the phase
        if status != 0:
            raise NodeError(
                self.host,
                NodeErrorKind.REMOTE,
                f"recycle command exited with status {status}",
                phase="recycle",
            )

    # --- doctor (read-only preflight over SFTP: no process on the node) --------------------
    def doctor(self, paths: Sequence[str]) -> dict[str, Any]:
        """The ``doctor`` answer (PROTOCOL.md) from SFTP alone: OS from the SSH banner, FIPS
        from /proc, each file append-opened and a probe file made and removed beside it; the
        node's clock is the probe file's mtime (whole seconds)."""
        sftp = self.conn.sftp()
        clock: list[float] = []
        with node_errors(self.host, "doctor"):
            files = [self._doctor_file(sftp, path, clock) for path in paths]
            fips: bool | None = None
            try:
                with sftp.open("/proc/sys/crypto/fips_enabled", "rb") as fh:
                    fips = fh.read(1) == b"1"
            except OSError as exc:
                reraise_if_transport(sftp, exc)
        transport = self.conn.client.get_transport()
        banner = transport.remote_version if transport is not None else "unknown"
        return {
            "os": f"POSIX over SFTP ({banner})",
            "agent": "none: sftp-server only",
            "powershell": None,
            "dotnet": None,
            "language_mode": None,
            "fips": fips,
            "module_logging": None,
            "script_block_logging": None,
            "time": clock[0] if clock else None,
            "files": files,
            "iis": None,
        }

    def _doctor_file(
        self, sftp: paramiko.SFTPClient, path: str, clock: list[float]
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {"path": path, "exists": False, "size": None, "free_bytes": None}
        entry["free_bytes"] = free_bytes(sftp, posixpath.dirname(path) or ".")
        step = "stat"
        try:
            attrs = sftp.lstat(path)
            entry["exists"] = True
            entry["size"] = attrs.st_size
            mode = attrs.st_mode or 0
            if stat.S_ISLNK(mode):
                return {**entry, **_refused("check", "is a symbolic link; list the real file")}
            if not stat.S_ISREG(mode):
                return {**entry, **_refused("check", "not a regular file", "is-directory")}
            step = "open for append"
            sftp.open(path, "a").close()  # no byte written: the file takes writes
            step = "create a file beside it"
            probe = f"{path}.farmsync-doctor-{secrets.token_hex(4)}.tmp"
            handle = create_exclusive(sftp, probe, 0o600)
            try:
                clock.append(float(handle.stat().st_mtime or 0))
            finally:
                handle.close()
                sftp.remove(probe)
        except OSError as exc:
            reraise_if_transport(sftp, exc)
            kind, reason = failure(sftp, exc, path)  # SFTP's bare FAILURE told apart
            return {**entry, **_refused(step, reason, kind.value)}
        entry["replaceable"] = True
        return entry


def _refused(step: str, reason: str, kind: str = "protocol") -> dict[str, Any]:
    return {"replaceable": False, "error_kind": kind, "error": f"{step}: {reason}"}
