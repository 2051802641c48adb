"""Journal records of one run, in the rollout's own terms (hosts, file changes, outcomes).

Per-file records carry the hashes recovery needs: the live file's hash before the run
(``old_sha256``) and the staged content's (``new_sha256``). Intent records (``started``) are
written before an action that changes live files, so a controller killed in the middle leaves
enough on disk to finish or undo it. A step's records for all its hosts go in one
:meth:`RunRecorder.batch` (one write, one fsync), and the step acts only after it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from farmsync.errors import NodeError, describe_error
from farmsync.orchestration.journal import DETAIL_MAX_BYTES, Journal, RunKind, Step, StepResult
from farmsync.orchestration.result import Outcome


@dataclass(frozen=True)
class FileHashes:
    path: str
    old_sha256: str
    new_sha256: str
    old_fp: str | None = None


_TS = "2000-01-01T00:00:00.000000+00:00"
_FILE_RECORDS = 7  # read, stage, commit intent and result, verify, rollback intent and result
_HOST_RECORDS = 2  # arm, recycle

# Outcomes after which the farm is consistent and the run needs no recovery.
_CONSISTENT = {
    Outcome.CHANGED: StepResult.OK,
    Outcome.UNCHANGED: StepResult.OK,
    Outcome.RECYCLE_FAILED: StepResult.OK,
    Outcome.ROLLED_BACK: StepResult.FAILED,
    Outcome.ABORTED: StepResult.FAILED,
}


class RunRecorder:
    def __init__(self, journal: Journal, run_id: str, kind: RunKind, *, settle_bytes: int = 0):
        self.journal = journal
        self.run_id = run_id
        self.kind = kind
        self.settle_bytes = settle_bytes  # what settling the run writes besides the journal

    def start(
        self, target_fp: str, files: Mapping[str, Sequence[FileHashes]], previous_fp: str | None
    ) -> None:
        """The run's start and what it read, on disk (one write) before anything is staged."""
        with self.journal.batch():
            self.journal.start_run(
                self.run_id,
                self.kind,
                hosts={host: [f.path for f in items] for host, items in files.items()},
                target_fp=target_fp,
                previous_fp=previous_fp,
            )
            for host, items in files.items():
                for item in items:
                    self.journal.append(
                        self.run_id,
                        self.kind,
                        Step.READ,
                        StepResult.OK,
                        host=host,
                        path=item.path,
                        old_sha256=item.old_sha256,
                        old_fp=item.old_fp,
                        new_fp=target_fp,
                    )

    def batch(self) -> AbstractContextManager[None]:
        """The records of the block, for many hosts, written and fsynced together when it
        ends (:meth:`Journal.batch`): act on them only after it."""
        return self.journal.batch()

    def reserve(self, files: Mapping[str, Sequence[str]]) -> None:
        """Set aside journal space for every record this run may still write (the read and
        stage records, commit intent and result, verify, rollback intent and result per file;
        arm and recycle per host; the start and the end), each with a full-size detail, and
        the :attr:`settle_bytes` of the vault's saves; the rollout frees it just before it
        settles the vault."""
        fp, sha, error_kind = "mk-" + "0" * 16, "0" * 64, "connection-lost"

        def size(event: Step, **fields: object) -> int:
            """One record's bytes, with the longest result and a full-size detail."""
            return (
                self.journal.line_size(
                    ts=_TS,
                    run_id=self.run_id,
                    kind=self.kind,
                    event=event,
                    result=StepResult.STARTED,
                    detail="",
                    **fields,
                )
                + DETAIL_MAX_BYTES
            )

        hosts = {h: list(ps) for h, ps in files.items()}
        start = {"target_fp": fp, "previous_fp": fp, "controller": "x" * 64, "pid": 2**31}
        total = size(Step.RUN_START, hosts=hosts, **start)
        total += size(Step.RUN_END, elapsed_ms=2**40)
        for host, paths in files.items():
            for path in paths:
                record = size(
                    Step.ROLLBACK,
                    host=host,
                    path=path,
                    old_sha256=sha,
                    new_sha256=sha,
                    old_fp=fp,
                    new_fp=fp,
                    error_kind=error_kind,
                )
                total += _FILE_RECORDS * record
            total += _HOST_RECORDS * size(Step.RECYCLE, host=host, error_kind=error_kind)
        self.journal.reserve(total + self.settle_bytes)

    def files(
        self,
        step: Step,
        host: str,
        items: Sequence[FileHashes],
        result: StepResult,
        error: BaseException | None = None,
    ) -> None:
        with self.journal.batch():
            for item in items:
                self.journal.append(
                    self.run_id,
                    self.kind,
                    step,
                    result,
                    host=host,
                    path=item.path,
                    old_sha256=item.old_sha256,
                    new_sha256=item.new_sha256,
                    **_error_fields(error),
                )

    def host(
        self, step: Step, host: str, result: StepResult, error: BaseException | None = None
    ) -> None:
        self.journal.append(self.run_id, self.kind, step, result, host=host, **_error_fields(error))

    def end(self, outcome: Outcome, elapsed_ms: int | None = None) -> None:
        """Close the run; an INCONSISTENT run stays open for ``recover``."""
        result = _CONSISTENT.get(outcome)
        if result is not None:
            self.journal.end_run(
                self.run_id, self.kind, result, detail=outcome.value, elapsed_ms=elapsed_ms
            )
            self.journal.release_reserve()


def _error_fields(exc: BaseException | None) -> dict[str, object]:
    if exc is None:
        return {}
    if isinstance(exc, NodeError):
        return {"error_kind": exc.kind.value, "detail": exc.detail}
    return {"error_kind": "error", "detail": describe_error(exc)}
