"""The run journal: an append-only JSON-lines log of what every run did to which file.

It is what makes a killed controller recoverable: the next run reads it, finds runs with a
``run-start`` and no ``run-end`` (:meth:`Journal.unfinished_runs`) and learns, per host and
file, how far the run got and which hashes to expect, so it can finish or undo the commit.

Durability: every record is one ``write`` of a whole line followed by ``fsync`` before
``append`` returns, so a record the orchestrator has written is on disk before its next
action. A SIGKILL during the write can leave a torn last line; readers ignore it and the
next writer cuts it off before appending.

Secrecy: records are checked against a whitelist of fields and types, and no string in a
structured field may contain a run of 32 or more hex digits (key material looks like that:
validationKey is 64-128 hex, decryptionKey 16-64). Structured fields that break the rule are
refused (:class:`JournalRecordError`); free text (``detail``) has such runs replaced by
``<redacted>`` instead, because error messages from nodes are not under our control and a
journal write must not fail in the middle of a commit. File hashes are 64 hex digits, so
they go in the two dedicated fields ``old_sha256``/``new_sha256``, which accept exactly a
lowercase SHA-256 and nothing else. An AES-256 decryptionKey has the same shape as a hash,
so callers also register the run's keys with :meth:`Journal.forbid`: a registered value is
refused in every field, hash fields included.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from farmsync.fsutil import fsync_directory


class RunKind(StrEnum):
    ROTATE = "rotate"
    SYNC = "sync"
    ROLLBACK = "rollback"
    RESTORE = "restore"
    RECOVER = "recover"


class Step(StrEnum):
    RUN_START = "run-start"
    READ = "read"
    STAGE = "stage"
    ARM = "arm"
    COMMIT = "commit"
    VERIFY = "verify"
    ROLLBACK = "rollback"
    CLEANUP = "cleanup"
    RECYCLE = "recycle"
    RUN_END = "run-end"


class StepResult(StrEnum):
    STARTED = "started"  # intent, written before the action (commit, rollback)
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


class JournalRecordError(ValueError):
    """A record that may not be journaled (unknown field, wrong type, looks like key material).

    The message names the field, never the value.
    """


KEY_MATERIAL_HEX_RUN = 32
_HEX_RUN = re.compile(rf"[0-9A-Fa-f]{{{KEY_MATERIAL_HEX_RUN},}}")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DETAIL_MAX = 2000
REDACTED = "<redacted>"
# Other processes are kept out by the farm lock; threads of this one (the orchestrator works
# on nodes in parallel) by this lock, so one never "repairs" a line another is writing.
_APPEND_LOCK = threading.Lock()


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, file-name-safe run id such as ``20250101T120000Z-3fa9c2``."""
    when = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{when:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


# --- the whitelist -----------------------------------------------------------------------


def _is_str(v: object) -> bool:
    return isinstance(v, str)


def _is_count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _one_of(enum: type[StrEnum]) -> Callable[[object], bool]:
    values = {e.value for e in enum}
    return lambda v: isinstance(v, str) and v in values


def _is_sha256(v: object) -> bool:
    return isinstance(v, str) and bool(_SHA256.match(v))


def _is_run_id(v: object) -> bool:
    return isinstance(v, str) and bool(_RUN_ID.match(v))


def _is_host_map(v: object) -> bool:
    return isinstance(v, dict) and all(
        isinstance(h, str) and isinstance(ps, list) and all(isinstance(p, str) for p in ps)
        for h, ps in v.items()
    )


_FIELDS: dict[str, Callable[[object], bool]] = {
    "ts": _is_str,
    "run_id": _is_run_id,
    "kind": _one_of(RunKind),
    "event": _one_of(Step),
    "result": _one_of(StepResult),
    "host": _is_str,
    "path": _is_str,
    "old_fp": _is_str,
    "new_fp": _is_str,
    "old_sha256": _is_sha256,
    "new_sha256": _is_sha256,
    "error_kind": _is_str,
    "detail": _is_str,
    "elapsed_ms": _is_count,
    # run-start only
    "target_fp": _is_str,
    "previous_fp": _is_str,
    "hosts": _is_host_map,  # host -> the paths this run manages on it
    "controller": _is_str,
    "pid": _is_count,
}
_REQUIRED = ("ts", "run_id", "kind", "event")
_HASH_FIELDS = frozenset({"old_sha256", "new_sha256"})
_FREE_TEXT = frozenset({"detail"})


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


# --- records as read back ----------------------------------------------------------------


@dataclass
class FileProgress:
    """How far one run got with one file on one host, rebuilt from the journal."""

    host: str
    path: str
    old_sha256: str | None = None  # the live file when read / when staged against
    new_sha256: str | None = None  # the staged content, what a finished commit leaves
    last: dict[str, str] = field(default_factory=dict)  # step -> its latest result

    @property
    def staged(self) -> bool:
        return self.last.get(Step.STAGE) == StepResult.OK

    @property
    def commit_attempted(self) -> bool:
        """A commit was released (or may have been): the live file may be the new one."""
        return Step.COMMIT in self.last

    @property
    def committed(self) -> bool:
        return self.last.get(Step.COMMIT) == StepResult.OK

    @property
    def verified(self) -> bool:
        return self.last.get(Step.VERIFY) == StepResult.OK

    @property
    def rolled_back(self) -> bool:
        return self.last.get(Step.ROLLBACK) == StepResult.OK

    @property
    def cleaned(self) -> bool:
        return self.last.get(Step.CLEANUP) == StepResult.OK


@dataclass
class RunState:
    """A run as the journal tells it; for unfinished runs, what recovery must finish or undo."""

    run_id: str
    kind: str
    started_at: str
    target_fp: str | None = None
    previous_fp: str | None = None
    hosts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    files: dict[tuple[str, str], FileProgress] = field(default_factory=dict)
    controller: str | None = None
    pid: int | None = None
    last_event: str | None = None
    ended_at: str | None = None
    result: str | None = None  # the run-end result; None while unfinished
    end_detail: str | None = None
    failed_hosts: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.ended_at is not None

    @property
    def commit_attempted(self) -> bool:
        return any(f.commit_attempted for f in self.files.values())

    @property
    def all_committed(self) -> bool:
        return bool(self.files) and all(f.committed for f in self.files.values())

    def file(self, host: str, path: str) -> FileProgress:
        key = (host, path)
        if key not in self.files:
            self.files[key] = FileProgress(host, path)
            if path not in self.hosts.get(host, ()):
                self.hosts[host] = (*self.hosts.get(host, ()), path)
        return self.files[key]

    def _targets(self, host: str | None, path: str | None) -> list[FileProgress]:
        if host is not None and path is not None:
            return [self.file(host, path)]
        return [f for (h, _), f in self.files.items() if host is None or h == host]

    def apply(self, rec: Mapping[str, object]) -> None:
        event = str(rec.get("event"))
        self.last_event = event
        result = rec.get("result")
        raw_host, raw_path = rec.get("host"), rec.get("path")
        host = raw_host if isinstance(raw_host, str) else None
        path = raw_path if isinstance(raw_path, str) else None
        if event == Step.RUN_END:
            self.ended_at = str(rec.get("ts"))
            self.result = str(result) if result is not None else None
            detail = rec.get("detail")
            self.end_detail = detail if isinstance(detail, str) else None
            return
        if result == StepResult.FAILED and host is not None and host not in self.failed_hosts:
            self.failed_hosts.append(host)
        if result is None:
            return
        for progress in self._targets(host, path):
            progress.last[event] = str(result)
            old, new = rec.get("old_sha256"), rec.get("new_sha256")
            if isinstance(old, str) and event in (Step.READ, Step.STAGE):
                progress.old_sha256 = old
            if isinstance(new, str) and event == Step.STAGE:
                progress.new_sha256 = new

    @classmethod
    def from_start(cls, rec: Mapping[str, object]) -> RunState:
        def opt_str(name: str) -> str | None:
            v = rec.get(name)
            return v if isinstance(v, str) else None

        pid = rec.get("pid")
        state = cls(
            run_id=str(rec["run_id"]),
            kind=str(rec.get("kind")),
            started_at=str(rec.get("ts")),
            target_fp=opt_str("target_fp"),
            previous_fp=opt_str("previous_fp"),
            controller=opt_str("controller"),
            pid=pid if isinstance(pid, int) else None,
            last_event=Step.RUN_START,
        )
        hosts = rec.get("hosts")
        if isinstance(hosts, dict):
            for host, paths in hosts.items():
                state.hosts[str(host)] = ()
                for p in paths if isinstance(paths, list) else ():
                    state.file(str(host), str(p))
        return state


# --- the journal -------------------------------------------------------------------------


class Journal:
    """Append-only journal of one farm. Writers hold the farm lock; readers need not."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._forbidden: set[str] = set()
        self.damaged_lines: list[int] = []  # 1-based lines skipped by the last read

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    # -- guarding -------------------------------------------------------------------------
    def forbid(self, *values: str) -> None:
        """Refuse any record containing one of ``values`` (the run's key material)."""
        for v in values:
            if v:
                self._forbidden.add(v.lower())

    def _contains_forbidden(self, text: str) -> bool:
        low = text.lower()
        return any(secret in low for secret in self._forbidden)

    def _redact(self, text: str) -> str:
        text = _HEX_RUN.sub(REDACTED, text)
        for secret in self._forbidden:
            text = re.sub(re.escape(secret), REDACTED, text, flags=re.IGNORECASE)
        if len(text) > _DETAIL_MAX:
            text = text[: _DETAIL_MAX - 3] + "..."
        return text

    def validate(self, record: Mapping[str, object]) -> dict[str, object]:
        """The record as it will be written; raises JournalRecordError if it may not be."""
        clean: dict[str, object] = {}
        for name, value in record.items():
            if value is None or (value == "" and name in _HASH_FIELDS):
                continue  # absent, None and "no hash" mean the same; keep lines short
            check = _FIELDS.get(name)
            if check is None:
                raise JournalRecordError(f"journal field {name!r} is not allowed")
            if name in _FREE_TEXT and isinstance(value, str):
                value = self._redact(value)
            if not check(value):
                raise JournalRecordError(f"journal field {name!r} has a wrong type or format")
            for text in _strings(value):
                if self._contains_forbidden(text):
                    raise JournalRecordError(f"journal field {name!r} contains key material")
                if name not in _HASH_FIELDS and _HEX_RUN.search(text):
                    raise JournalRecordError(
                        f"journal field {name!r} looks like key material "
                        f"({KEY_MATERIAL_HEX_RUN}+ hex digits)"
                    )
            clean[name] = value
        for name in _REQUIRED:
            if name not in clean:
                raise JournalRecordError(f"journal record lacks {name!r}")
        return clean

    # -- writing --------------------------------------------------------------------------
    def append(
        self,
        run_id: str,
        kind: str,
        event: str,
        result: str | None = None,
        **fields: object,
    ) -> dict[str, object]:
        """Validate, write and fsync one record; returns it as written."""
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
        line = (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        self._write_line(line)
        return record

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

    def _write_line(self, line: bytes) -> None:
        with _APPEND_LOCK:
            self._write_line_locked(line)

    def _write_line_locked(self, line: bytes) -> None:
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            self._repair_torn_tail(fd)
            view = memoryview(line)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_directory(self.path.parent)

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
        """Every readable record, in order. A torn last line is ignored silently; any other
        unreadable line is skipped and its number kept in :attr:`damaged_lines`."""
        self.damaged_lines = []
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")
        torn_tail = lines.pop()  # b"" when the file ends with a newline
        out: list[dict[str, object]] = []
        for number, raw in enumerate(lines, start=1):
            rec = _parse(raw)
            if rec is None:
                if raw.strip():
                    self.damaged_lines.append(number)
                continue
            out.append(rec)
        last = _parse(torn_tail) if torn_tail else None
        if last is not None:  # complete record that only lacks its newline
            out.append(last)
        return out

    def runs(self) -> list[RunState]:
        """Every run in the journal, oldest first (records of unknown runs are ignored)."""
        runs: dict[str, RunState] = {}
        for rec in self.records():
            run_id = rec.get("run_id")
            if not isinstance(run_id, str):
                continue
            if rec.get("event") == Step.RUN_START:
                runs[run_id] = RunState.from_start(rec)
            elif run_id in runs:
                runs[run_id].apply(rec)
        return list(runs.values())

    def unfinished_runs(self) -> list[RunState]:
        """Runs with a run-start and no run-end, oldest first."""
        return [r for r in self.runs() if not r.finished]


def _parse(raw: bytes) -> dict[str, object] | None:
    try:
        rec = json.loads(raw.decode())
    except ValueError:  # UnicodeDecodeError and JSONDecodeError both are
        return None
    if not isinstance(rec, dict) or "run_id" not in rec or "event" not in rec:
        return None
    return rec
