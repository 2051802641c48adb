"""The two-phase rollout of one key to a set of nodes.

read -> plan -> stage everywhere -> arm everywhere -> release behind a barrier -> verify.
On any failure after the first release, every changed node is rolled back to its backup so
the farm ends on one key: all new or all old. Each step that changes live files is journaled
(and fsynced) before it happens, so ``recover`` can finish or undo a run whose controller died.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from farmsync.errors import FarmsyncError, NodeError, NodeErrorKind, describe_error
from farmsync.inventory.model import Host, RecycleKind
from farmsync.keys.machinekey import MachineKey
from farmsync.nodes.contract import ArmedCommit, NodeOperations
from farmsync.orchestration.events import Event, Phase, Reporter, Status
from farmsync.orchestration.identity import identity_problems
from farmsync.orchestration.journal import Step, StepResult
from farmsync.orchestration.plan import Plan, make_plan
from farmsync.orchestration.pool import Outcome as PoolOutcome
from farmsync.orchestration.pool import run_each
from farmsync.orchestration.recorder import FileHashes, RunRecorder
from farmsync.orchestration.result import Outcome, RunResult
from farmsync.orchestration.session import FarmSession
from farmsync.orchestration.survey import NodeReport, survey

T = TypeVar("T")
V = TypeVar("V")


@dataclass(frozen=True)
class RolloutOptions:
    forks: int = 50
    check: bool = False
    diff: bool = False
    timeout: float = 60.0
    keep_backups: int = 10
    recycle: bool = True


class Rollout:
    def __init__(
        self,
        session: FarmSession,
        result: RunResult,
        recorder: RunRecorder,
        reporter: Reporter,
        options: RolloutOptions,
        clock: Callable[[], float] = time.monotonic,
        source: str | None = None,
    ):
        self.source = source  # the inventory file, named by identity problems
        self.session = session
        self.result = result
        self.recorder = recorder
        self.reporter = reporter
        self.options = options
        self.clock = clock
        self.run_id = result.run_id

    # --- the whole run -------------------------------------------------------------------
    def run(
        self,
        key: MachineKey,
        hosts: Sequence[Host],
        before_change: Callable[[Plan], None] | None = None,
        settle: Callable[[Outcome, Plan], None] | None = None,
    ) -> RunResult:
        """Roll ``key`` out; ``before_change`` runs after planning, just before the first node
        is touched (the rotation stores its new key in the vault there). ``settle`` runs once
        the farm is on one key again (CHANGED, ROLLED_BACK or ABORTED) and before the run's
        end is journaled, so the vault is never behind a run the journal calls finished."""
        result = self.result
        result.target_fingerprint = key.fingerprint()
        if self.session.failures:
            return self._not_started(self.session.failures)

        reports = self._timed(Phase.READ, lambda: self._read(hosts))
        unreachable = {n: r.error for n, r in reports.items() if r.error is not None}
        if unreachable:
            return self._not_started(unreachable)
        clashes = identity_problems(hosts, self.session.nodes, reports, self.source)
        if clashes:  # before anything is staged or the vault is touched
            result.outcome = Outcome.BAD_INPUT
            result.messages.extend(str(p) for p in clashes)
            return result

        plan = self._timed(
            Phase.PLAN,
            lambda: make_plan(
                key, hosts, reports, result, check=self.options.check, diff=self.options.diff
            ),
        )
        if plan.problems:
            result.outcome = Outcome.BAD_INPUT if plan.bad_input else Outcome.NOT_STARTED
            result.messages.extend(str(p) for p in plan.problems)
            for host in plan.changes:  # planned, never started
                self._settle(host, "unchanged")
            return result
        if self.options.check or not plan.changes:
            result.outcome = Outcome.CHECKED if self.options.check else Outcome.UNCHANGED
            return result

        if before_change is not None:
            before_change(plan)
        previous = next(iter(plan.old_fingerprints)) if len(plan.old_fingerprints) == 1 else None
        self.recorder.start(
            result.target_fingerprint, {h: plan.hashes(h) for h in plan.changes}, previous
        )
        return self._finish(self._apply(key, plan), plan, settle)

    def _apply(self, key: MachineKey, plan: Plan) -> Outcome:
        if not self._timed(Phase.STAGE, lambda: self._stage(plan)):
            return Outcome.ABORTED
        armed = self._timed(Phase.ARM, lambda: self._arm(plan))
        if armed is None:
            return Outcome.ABORTED
        if self._timed(Phase.COMMIT, lambda: self._release(armed, plan)) and self._timed(
            Phase.VERIFY, lambda: self._verify(key, plan)
        ):
            return Outcome.CHANGED
        if self._timed(Phase.ROLLBACK, lambda: self._rollback(plan)):
            return Outcome.ROLLED_BACK
        return Outcome.INCONSISTENT

    def _finish(
        self, outcome: Outcome, plan: Plan, settle: Callable[[Outcome, Plan], None] | None
    ) -> RunResult:
        result = self.result
        if outcome is Outcome.INCONSISTENT:
            # Leave staging files and the open journal run for `farmsync recover`.
            result.outcome = outcome
            result.messages.append(
                f"run {self.run_id} could not restore every node: "
                "run `farmsync recover` once they are reachable"
            )
            return result
        vault_settled = True
        if settle is not None:
            try:
                settle(outcome, plan)
            except FarmsyncError as exc:
                # The nodes are consistent but the vault is not up to date: keep the run open
                # so that `recover` settles the vault from the journal.
                vault_settled = False
                result.messages.append(
                    f"run {self.run_id}: {describe_error(exc)}; "
                    "run `farmsync recover` to bring the vault up to date"
                )
        settled = {
            Outcome.CHANGED: "changed",
            Outcome.ROLLED_BACK: "rolled-back",
            Outcome.ABORTED: "unchanged",
        }[outcome]
        for host in plan.changes:
            self._settle(host, settled)
        # Committed nodes recycle whether they kept the new key or went back to the old:
        # either way the running processes must read the file as it now is.
        recycled = outcome is Outcome.ABORTED or self._timed(
            Phase.RECYCLE, lambda: self._recycle(plan)
        )
        if not recycled and outcome is Outcome.CHANGED:
            outcome = Outcome.RECYCLE_FAILED
        self._timed(Phase.CLEANUP, lambda: self._cleanup(plan))
        if not vault_settled:
            result.outcome = Outcome.INCONSISTENT
            return result
        result.outcome = outcome
        self.recorder.end(outcome, int(sum(result.phase_ms.values())))
        return result

    # --- phases --------------------------------------------------------------------------
    def _read(self, hosts: Sequence[Host]) -> dict[str, NodeReport]:
        return survey(
            self.session.nodes,
            {h.name: h for h in hosts},
            {h.name: list(h.root_configs) for h in hosts},
            forks=self.options.forks,
            reporter=self.reporter,
        )

    def _stage(self, plan: Plan) -> bool:
        def work(name: str, node: NodeOperations) -> None:
            node.stage([c.stage_item() for c in plan.changes[name]], self.run_id)

        outcomes = self._each(Phase.STAGE, self._nodes(plan), work)
        return self._record(Step.STAGE, plan, outcomes)

    def _arm(self, plan: Plan) -> dict[str, ArmedCommit] | None:
        def work(name: str, node: NodeOperations) -> ArmedCommit:
            return node.arm_commit([c.commit_item() for c in plan.changes[name]], self.run_id)

        outcomes = self._each(Phase.ARM, self._nodes(plan), work)
        armed = {n: o.value for n, o in outcomes.items() if o.value is not None}
        if self._record(Step.ARM, plan, outcomes, per_file=False):
            return armed
        for commit in armed.values():
            _quietly(commit.abort)
        return None

    def _release(self, armed: dict[str, ArmedCommit], plan: Plan) -> bool:
        """Release every armed commit at once, then collect the results."""
        # Write-ahead: once these records are on disk, recovery knows live files may change.
        for name in armed:
            self.recorder.files(Step.COMMIT, name, plan.hashes(name), StepResult.STARTED)
        # Releases go out concurrently: on SSH one costs a channel write, but on WinRM it is an
        # HTTP exchange, and a thousand of those back to back would be a long mixed-key window.
        sent: list[float] = []

        def send(name: str, commit: ArmedCommit) -> None:
            commit.release()
            sent.append(self.clock())

        first = self.clock()
        sending = run_each(armed.items(), send, self.options.forks)
        released = {name: armed[name] for name, outcome in sending.items() if outcome.ok}
        outcomes: dict[str, PoolOutcome[None]] = {
            name: PoolOutcome(error=outcome.error)
            for name, outcome in sending.items()
            if not outcome.ok
        }
        last_sent = max(sent, default=first)
        acked: list[float] = []

        def work(name: str, commit: ArmedCommit) -> None:
            commit.wait(self.options.timeout)
            acked.append(self.clock())

        outcomes.update(self._each(Phase.COMMIT, released, work, total=len(armed)))
        for name, outcome in outcomes.items():
            if name not in released:
                self.reporter.event(
                    Event(Phase.COMMIT, Status.FAILED, name, describe_error(outcome.error))
                )
        for name, outcome in outcomes.items():
            if not outcome.ok:
                # Withdraw a commit that never acknowledged (its release failed or its wait
                # timed out), so it cannot land behind the rollback that follows.
                _quietly(armed[name].abort)
        self.result.release_span_ms = round((last_sent - first) * 1000, 3)
        if acked:
            self.result.commit_window_ms = round((max(acked) - first) * 1000, 3)
        return self._record(Step.COMMIT, plan, outcomes)

    def _verify(self, key: MachineKey, plan: Plan) -> bool:
        target = key.fingerprint()
        nodes = self._nodes(plan)
        reports = survey(
            nodes,
            self.session.hosts,
            {h: plan.paths(h) for h in nodes},
            forks=self.options.forks,
            reporter=self.reporter,
            phase=Phase.VERIFY,
        )
        outcomes: dict[str, PoolOutcome[None]] = {}
        for name in plan.changes:
            report = reports.get(name)
            error: FarmsyncError | None = None
            if report is None or report.error is not None:
                error = report.error if report is not None else _no_connection(name)
            else:
                wanted = {c.path: c.new_sha256 for c in plan.changes[name]}
                for file in report.files:
                    if file.fingerprint != target or file.sha256 != wanted[file.path]:
                        error = NodeError(
                            name,
                            NodeErrorKind.VERIFY,
                            f"holds {file.fingerprint}, expected {target}",
                            phase="verify",
                            path=file.path,
                        )
            outcomes[name] = PoolOutcome(error=error)
        return self._record(Step.VERIFY, plan, outcomes)

    def _rollback(self, plan: Plan) -> bool:
        """Put every changed node back on its backup; True when all are on the old key."""
        for name in plan.changes:
            self.recorder.files(Step.ROLLBACK, name, plan.hashes(name), StepResult.STARTED)

        def work(name: str, changes: object) -> None:
            files = plan.hashes(name)
            node = self.session.nodes.get(name)
            try:
                if node is None:
                    raise _no_connection(name)
                restore_originals(node, files, self.run_id, "rollback")
            except FarmsyncError:
                # The connection may have died with the commit: rollback is idempotent, so
                # one retry on a fresh connection is always safe.
                node = self.session.reconnect(name)
                if node is None:
                    raise
                restore_originals(node, files, self.run_id, "rollback")

        outcomes = self._each(Phase.ROLLBACK, plan.changes, work)
        return self._record(Step.ROLLBACK, plan, outcomes, fail_host=False)

    def _recycle(self, plan: Plan) -> bool:
        targets = {
            name: node
            for name, node in self._nodes(plan).items()
            if self.session.hosts[name].recycle.kind is not RecycleKind.NONE
        }
        if not self.options.recycle or not targets:
            return True

        def work(name: str, node: NodeOperations) -> None:
            node.recycle()

        outcomes = self._each(Phase.RECYCLE, targets, work)
        for name, outcome in outcomes.items():
            self.recorder.host(
                Step.RECYCLE,
                name,
                StepResult.OK if outcome.ok else StepResult.FAILED,
                outcome.error,
            )
            if outcome.ok:
                self.result.host(name).recycled = True
            else:
                self.result.messages.append(
                    f"{name}: recycle failed: {describe_error(outcome.error)}"
                )
        return all(o.ok for o in outcomes.values())

    def _cleanup(self, plan: Plan) -> None:
        def work(name: str, node: NodeOperations) -> None:
            node.cleanup(plan.paths(name), self.run_id, self.options.keep_backups)

        for name, outcome in run_each(self._nodes(plan).items(), work, self.options.forks).items():
            if not outcome.ok:
                # Leftover staging files are harmless; say so rather than fail the run.
                self.result.messages.append(
                    f"{name}: cleanup failed: {describe_error(outcome.error)}"
                )

    # --- helpers -------------------------------------------------------------------------
    def _nodes(self, plan: Plan) -> dict[str, NodeOperations]:
        return {n: self.session.nodes[n] for n in plan.changes if n in self.session.nodes}

    def _each(
        self,
        phase: Phase,
        items: Mapping[str, V],
        work: Callable[[str, V], T],
        total: int | None = None,
    ) -> dict[str, PoolOutcome[T]]:
        self.reporter.event(Event(phase, Status.START, total=total or len(items)))

        def done(name: str, outcome: PoolOutcome[T]) -> None:
            status = Status.OK if outcome.ok else Status.FAILED
            self.reporter.event(Event(phase, status, name, describe_error(outcome.error)))

        return run_each(items.items(), work, self.options.forks, done)

    def _record(
        self,
        step: Step,
        plan: Plan,
        outcomes: Mapping[str, PoolOutcome[T]],
        per_file: bool = True,
        fail_host: bool = True,
    ) -> bool:
        """Journal each host's outcome; mark failed hosts; True when every host succeeded."""
        ok = True
        for name in plan.changes:
            outcome = outcomes.get(name) or PoolOutcome(error=_no_connection(name))
            status = StepResult.OK if outcome.ok else StepResult.FAILED
            if per_file:
                self.recorder.files(step, name, plan.hashes(name), status, outcome.error)
            else:
                self.recorder.host(step, name, status, outcome.error)
            if not outcome.ok:
                ok = False
                if fail_host or self.result.host(name).status != "failed":
                    self._fail_host(name, outcome.error)
                else:
                    self.result.messages.append(
                        f"{name}: {step.value} failed: {describe_error(outcome.error)}"
                    )
        return ok

    def _settle(self, name: str, status: str) -> None:
        """Give a host's pending files (and the host, unless it failed) their final status."""
        host_result = self.result.host(name)
        if host_result.status != "failed":
            host_result.status = status
        for file in host_result.files:
            if file.status == "pending":
                file.status = status

    def _fail_host(self, name: str, exc: BaseException | None) -> None:
        host_result = self.result.host(name)
        host_result.status = "failed"
        host_result.error = describe_error(exc)
        if isinstance(exc, NodeError):
            host_result.error_kind = exc.kind.value

    def _not_started(self, errors: Mapping[str, FarmsyncError]) -> RunResult:
        for name, exc in errors.items():
            self._fail_host(name, exc)
            self.result.host(name).status = "unreachable"
        self.result.outcome = Outcome.NOT_STARTED
        self.result.messages.append(
            "not started: " + ", ".join(sorted(errors)) + " could not be read; nothing was changed"
        )
        return self.result

    def _timed(self, phase: Phase, step: Callable[[], T]) -> T:
        start = self.clock()
        try:
            return step()
        finally:
            self.result.phase_ms[phase.value] = round((self.clock() - start) * 1000, 3)


def restore_originals(
    node: NodeOperations, files: Sequence[FileHashes], run_id: str, phase: str
) -> None:
    """Put ``run_id``'s backups back on one node, then check each file is its original again."""
    paths = [f.path for f in files]
    # The node fences a late commit, then restores only where the live file is not the
    # original, and only from a backup that is (PROTOCOL.md, rollback).
    node.rollback(paths, run_id, {f.path: f.old_sha256 for f in files if f.old_sha256})
    states = node.read(paths)
    for f in files:
        if states[f.path].sha256 != f.old_sha256:
            raise NodeError(
                node.host_name,
                NodeErrorKind.VERIFY,
                "file differs from its original after rollback",
                phase=phase,
                path=f.path,
            )


def _no_connection(name: str) -> NodeError:
    return NodeError(name, NodeErrorKind.CONNECTION_LOST, "no connection to the node")


def _quietly(action: Callable[[], None]) -> None:
    with contextlib.suppress(Exception):  # withdrawing an armed commit is best effort
        action()
