"""The run journal: an append-only JSON-lines log of what every run did to which file.

It is what makes a killed controller recoverable: the next run reads it, finds runs with a
``run-start`` and no ``run-end`` (:meth:`Journal.unfinished_runs`) and learns, per host and
file, how far the run got and which hashes to expect, so it can finish or undo the commit.

Durability: every record is one ``write`` of a whole line followed by ``fsync`` before
``append`` returns, so a record the orchestrator has written is on disk before its next
action. Inside :meth:`Journal.batch` the records one step writes for many hosts are written
together when the block ends (one ``write``, one ``fsync``), and the step acts only after
it. A SIGKILL during a write can leave a torn last line; readers ignore it and the next
writer cuts it off before appending.

The journal file is this module; what a record may hold is :mod:`journal_guard`'s, and what
a run's records add up to is :mod:`runstate`'s (both re-exported here).
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from farmsync.errors import state_writes
from farmsync.fsutil import fsync_directory
from farmsync.orchestration.journal_guard import (
    DETAIL_MAX_BYTES,
    KEY_MATERIAL_HEX_RUN,
    REDACTED,
    JournalRecordError,
    RecordGuard,
    RunKind,
    Step,
    StepResult,
    is_run_id,
)
from farmsync.orchestration.runstate import DamagedLine, FileProgress, RunState, rebuild_runs

__all__ = [
    "DETAIL_MAX_BYTES",
    "KEY_MATERIAL_HEX_RUN",
    "REDACTED",
    "DamagedLine",
    "FileProgress",
    "Journal",
    "JournalRecordError",
    "RunKind",
    "RunState",
    "Step",
    "StepResult",
    "new_run_id",
]

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_RAW_RUN_ID = re.compile(rb'"run_id"\s*:\s*"([A-Za-z0-9][A-Za-z0-9._-]{0,63})"')
# Other processes are kept out by the farm lock; threads of this one (the orchestrator works
# on nodes in parallel) by this lock, so one never "repairs" a line another is writing.
_APPEND_LOCK = threading.Lock()


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, file-name-safe run id such as ``20250101T120000Z-3fa9c2``."""
    when = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{when:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


# --- the journal -------------------------------------------------------------------------


class Journal:
    """Append-only journal of one farm. Writers hold the farm lock; readers need not."""

    def __init__(self, path: Path | str, *, sync: Callable[[int], None] = os.fsync):
        self.path = Path(path)
        self.guard = RecordGuard()
        self.damage: list[DamagedLine] = []  # lines skipped by the last read
        self.torn_tail = False  # the last read ignored a last line cut short by a crash
        self.sync = sync  # makes a write durable: os.fsync (a test passes one that also counts)
        self._batch = threading.local()  # .lines: a batch's records, per thread

    @property
    def damaged_lines(self) -> list[int]:
        """1-based numbers of the lines the last read skipped (a torn last line aside)."""
        return [d.line for d in self.damage]

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    # -- guarding -------------------------------------------------------------------------
    def forbid(self, *values: str) -> None:
        """Refuse any record containing one of ``values`` (the run's key material)."""
        self.guard.forbid(*values)

    def validate(self, record: Mapping[str, object]) -> dict[str, object]:
        """The record as it will be written; raises JournalRecordError if it may not be."""
        return self.guard.validate(record)

    # -- writing --------------------------------------------------------------------------
    def append(
        self,
        run_id: str,
        kind: str,
        event: str,
        result: str | None = None,
        **fields: object,
    ) -> dict[str, object]:
        """Validate, write and fsync one record; returns it as written.

        Inside :meth:`batch` (on this thread) the record is validated now and written when
        the block ends."""
        record = self.validate(
            {
                "ts": _utc_now(),
                "run_id": run_id,
                "kind": kind,
                "event": event,
                "result": result,
                **fields,
            }
        )
        line = _encode(record)
        pending: list[bytes] | None = getattr(self._batch, "lines", None)
        if pending is not None:
            pending.append(line)
        else:
            self._write_line(line)
        return record

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Write the records this thread appends inside the block together, when it ends.

        One ``write`` and one ``fsync`` for all of them, where one step's records for a
        thousand hosts would otherwise be a thousand fsyncs. Write-ahead then holds at the
        block's end, not at each append: the caller acts on the records (sends a release,
        starts a rollback) only after the block. The block writes what it holds however it
        ends, an exception included, so the journal gets the records unbatched appends
        would have given, in the same order. A controller killed inside the block leaves
        none of them; killed during the write, whole lines and perhaps a torn last line,
        which readers ignore and the next writer cuts off, as with one record at a time.
        A nested block writes nothing of its own (the outermost one writes); other
        threads' appends are written at once, as always.
        """
        if getattr(self._batch, "lines", None) is not None:
            yield
            return
        lines: list[bytes] = []
        self._batch.lines = lines
        try:
            yield
        finally:
            self._batch.lines = None
            if lines:
                self._write_line(b"".join(lines))

    def start_run(
        self,
        run_id: str,
        kind: str,
        *,
        hosts: Mapping[str, Sequence[str]],
        target_fp: str | None = None,
        previous_fp: str | None = None,
        detail: str | None = None,
    ) -> dict[str, object]:
        return self.append(
            run_id,
            kind,
            Step.RUN_START,
            StepResult.STARTED,
            hosts={h: list(ps) for h, ps in hosts.items()},
            target_fp=target_fp,
            previous_fp=previous_fp,
            controller=socket.gethostname(),
            pid=os.getpid(),
            detail=detail,
        )

    def end_run(
        self,
        run_id: str,
        kind: str,
        result: str,
        *,
        detail: str | None = None,
        elapsed_ms: int | None = None,
    ) -> dict[str, object]:
        return self.append(run_id, kind, Step.RUN_END, result, detail=detail, elapsed_ms=elapsed_ms)

    # -- space for the records of a run in progress ---------------------------------------
    @property
    def reserve_path(self) -> Path:
        return self.path.with_name(self.path.name + ".reserve")

    def reserve(self, nbytes: int) -> None:
        """Set ``nbytes`` of the state file system aside for the records a run will write.

        A run that changes live files must be able to journal every step to the end: a
        journal that fills up between a commit and its record leaves a run that only
        ``recover`` can settle. So, before the first node is touched, the run writes (and
        fsyncs) a reserve file as large as its remaining records can be; an append that
        meets a full file system or quota drops the reserve and writes again into the space
        it freed. Random bytes, because a compressing file system would store zeros in
        nothing; a plain file rather than ``fallocate`` beyond the journal's end, because it
        works on every file system and quota and the journal's format stays untouched. A
        state directory too full to hold the reserve refuses the run before it starts.
        """
        with _APPEND_LOCK, state_writes(self.path.parent, "reserve space for the journal"):
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(self.reserve_path, flags, 0o600)
            try:
                chunk = os.urandom(min(max(nbytes, 1), 1 << 20))
                left = nbytes
                while left > 0:
                    left -= os.write(fd, chunk[:left])
                self.sync(fd)
            except BaseException:
                os.close(fd)
                self.reserve_path.unlink(missing_ok=True)
                raise
            os.close(fd)

    def release_reserve(self) -> None:
        self.reserve_path.unlink(missing_ok=True)

    def line_size(self, **fields: object) -> int:
        """Bytes one record of these fields takes in the journal (for :meth:`reserve`)."""
        return len(_encode(fields))

    def _write_line(self, lines: bytes) -> None:
        """Append whole lines (one record, or a batch's) in one write and one fsync."""
        with _APPEND_LOCK, state_writes(self.path.parent, "write the journal"):
            self._write_line_locked(lines)

    def _write_line_locked(self, lines: bytes) -> None:
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            self._repair_torn_tail(fd)
            start = os.fstat(fd).st_size
            try:
                self._write_synced(fd, lines)
            except OSError as exc:
                if exc.errno not in _NO_SPACE or not self.reserve_path.exists():
                    raise
                # The space set aside for this run: free it, cut off what part of the lines
                # got written, and write them again.
                self.release_reserve()
                os.ftruncate(fd, start)
                self._write_synced(fd, lines)
        finally:
            os.close(fd)
        if created:
            fsync_directory(self.path.parent)

    def _write_synced(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        self.sync(fd)

    @staticmethod
    def _repair_torn_tail(fd: int) -> None:
        """Cut off a partial last line left by a writer killed mid-write.

        A complete record that only lacks its newline is kept (the newline is added).
        """
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return
        start, chunk = size, 65536
        tail = b""
        while start > 0:
            start = max(0, start - chunk)
            tail = os.pread(fd, min(chunk, size - start), start) + tail
            cut = tail.rfind(b"\n")
            if cut >= 0:
                start, tail = start + cut + 1, tail[cut + 1 :]
                break
        try:
            complete = isinstance(json.loads(tail.decode()), dict)
        except ValueError:
            complete = False
        if complete:
            os.write(fd, b"\n")
        else:
            os.ftruncate(fd, start)

    # -- reading --------------------------------------------------------------------------
    def records(self) -> list[dict[str, object]]:
        """Every valid record, in order. A line that is not one (not JSON, or a record the
        whitelist refuses, such as a run-start without ``kind``) is skipped and described in
        :attr:`damage`; a last line cut short by a crash sets :attr:`torn_tail`."""
        return [rec for _, rec in self._numbered_records()]

    def _numbered_records(self) -> list[tuple[int, dict[str, object]]]:
        self.damage = []
        self.torn_tail = False
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")
        torn_tail = lines.pop()  # b"" when the file ends with a newline
        out: list[tuple[int, dict[str, object]]] = []
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            rec = self._checked(number, raw)
            if rec is not None:
                out.append((number, rec))
        if torn_tail.strip():
            if _parse(torn_tail) is None:
                self.torn_tail = True
            else:  # a complete record that only lacks its newline
                rec = self._checked(len(lines) + 1, torn_tail)
                if rec is not None:
                    out.append((len(lines) + 1, rec))
        return out

    def _checked(self, number: int, raw: bytes) -> dict[str, object] | None:
        rec = _parse(raw)
        if rec is None:
            found = _RAW_RUN_ID.search(raw)
            self.damage.append(
                DamagedLine(
                    number,
                    "not a JSON record with run_id and event",
                    found.group(1).decode() if found else None,
                )
            )
            return None
        try:
            return self.validate(rec)
        except JournalRecordError as exc:
            run_id = rec.get("run_id")
            named = run_id if isinstance(run_id, str) and is_run_id(run_id) else None
            self.damage.append(DamagedLine(number, str(exc), named))
            return None

    def damage_report(self) -> list[str]:
        """What the last read skipped, line by line, and what the operator should do."""
        notes = [
            f"journal {self.path} line {d.line} is damaged and was ignored: {d.problem}"
            + (f" (run {d.run_id})" if d.run_id else "")
            for d in self.damage
        ]
        if self.torn_tail:
            notes.append(
                f"journal {self.path}: its last line was cut short by a crash and was ignored "
                "(the next write removes it)"
            )
        if self.damage:
            notes.append(
                "farmsync relies on no damaged line: a run they belong to is settled by reading "
                "its nodes, not from the journal; keep the journal as evidence, or move those "
                "lines into a file of your own to silence this notice"
            )
        return notes

    def runs(self) -> list[RunState]:
        """Every run in the journal, oldest first (see :func:`rebuild_runs`)."""
        return rebuild_runs(self._numbered_records(), self.damage)

    def unfinished_runs(self) -> list[RunState]:
        """Runs with a run-start and no run-end, oldest first."""
        return [r for r in self.runs() if not r.finished]


def _encode(record: Mapping[str, object]) -> bytes:
    return (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def _parse(raw: bytes) -> dict[str, object] | None:
    try:
        rec = json.loads(raw.decode())
    except ValueError:  # UnicodeDecodeError and JSONDecodeError both are
        return None
    if not isinstance(rec, dict) or "run_id" not in rec or "event" not in rec:
        return None
    return rec
