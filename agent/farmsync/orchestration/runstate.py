"""A run as the journal tells it, rebuilt from its records.

Per host and file: how far the run got and which hashes to expect (the live file before the
run, the staged content), so that recovery can finish or undo a run a dead controller left.
Damaged lines count against the run they name (or, naming none, every run open at that line):
such a run is no longer told whole, and recovery then reads its nodes rather than trust it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from farmsync.orchestration.journal_guard import Step, StepResult


@dataclass
class FileProgress:
    """How far one run got with one file on one host, rebuilt from the journal."""

    host: str
    path: str
    old_sha256: str | None = None  # the live file when read / when staged against
    new_sha256: str | None = None  # the staged content, what a finished commit leaves
    old_fp: str | None = None  # the key the file held when the run read it
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
    damaged_lines: list[int] = field(default_factory=list)  # unreadable lines naming this run
    start_missing: bool = False  # rebuilt from later records: its run-start line is unreadable
    superseded_by: str | None = None  # a later run started while this one had no end

    @property
    def finished(self) -> bool:
        return self.ended_at is not None

    @property
    def complete(self) -> bool:
        """The journal tells this run whole: no line of it is damaged or missing."""
        return not self.damaged_lines and not self.start_missing

    @property
    def commit_attempted(self) -> bool:
        # A run the journal does not tell whole may have released its commit: assume it did,
        # so recovery reads its nodes instead of trusting the lines that are left.
        if not self.complete:
            return True
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
            old_fp = rec.get("old_fp")
            if isinstance(old_fp, str) and event == Step.READ:
                progress.old_fp = old_fp

    @classmethod
    def from_orphan(cls, rec: Mapping[str, object]) -> RunState:
        """A run whose run-start line is unreadable, rebuilt from its first readable record."""
        return cls(
            run_id=str(rec["run_id"]),
            kind=str(rec.get("kind")),
            started_at=str(rec.get("ts")),
            start_missing=True,
        )

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


@dataclass(frozen=True)
class DamagedLine:
    """A journal line that is not a valid record; ``problem`` names a field, never a value."""

    line: int  # 1-based
    problem: str
    run_id: str | None = None  # the run it names, when that much can be read


def rebuild_runs(
    records: Iterable[tuple[int, Mapping[str, object]]], damage: Sequence[DamagedLine]
) -> list[RunState]:
    """Every run of valid ``(line, record)`` pairs, oldest first.

    A run whose run-start line is damaged is rebuilt from its other records; damaged lines
    that name a run are attached to it (:attr:`RunState.complete` turns false); a run left
    without an end when a later run started is marked :attr:`RunState.superseded_by`.
    """
    runs: dict[str, RunState] = {}
    spans: dict[str, list[int]] = {}  # run -> [first line, end line or 0 while open]
    for number, rec in records:
        run_id = str(rec["run_id"])
        if rec.get("event") == Step.RUN_START:
            for earlier in runs.values():
                if not earlier.finished and earlier.superseded_by is None:
                    earlier.superseded_by = run_id
            runs[run_id] = RunState.from_start(rec)
            spans[run_id] = [number, 0]
            continue
        if run_id not in runs:
            runs[run_id] = RunState.from_orphan(rec)
            spans[run_id] = [number, 0]
        runs[run_id].apply(rec)
        if rec.get("event") == Step.RUN_END:
            spans[run_id][1] = number
    for damaged in damage:
        if damaged.run_id is not None:
            named = [damaged.run_id] if damaged.run_id in runs else []
        else:  # no run named: it may belong to any run open at that line
            named = [r for r, (first, end) in spans.items() if first < damaged.line]
            named = [r for r in named if not spans[r][1] or damaged.line < spans[r][1]]
        for run_id in named:
            runs[run_id].damaged_lines.append(damaged.line)
    return list(runs.values())
