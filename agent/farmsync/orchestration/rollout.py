"""The two-phase rollout of one key to a set of nodes.

read -> plan -> stage everywhere -> arm everywhere -> release behind a barrier -> verify.
On any failure after the first release, every changed node is rolled back to its backup so
the farm ends on one key: all new or all old. Each step that changes live files is journaled
(and fsynced) before it happens, so ``recover`` can finish or undo a run whose controller died.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

from farmsync.errors import FarmsyncError, NodeError, NodeErrorKind, describe_error
from farmsync.inventory.model import Host, RecycleKind
from farmsync.keys.machinekey import MachineKey
from farmsync.nodes.contract import (
    ArmedCommit,
    FileState,
    NodeOperations,
)
from farmsync.orchestration import interrupt
from farmsync.orchestration.events import Event, Phase, Reporter, Status
from farmsync.orchestration.identity import identity_problems
from farmsync.orchestration.journal import Step, StepResult
from farmsync.orchestration.marker import Marker
from farmsync.orchestration.options import RolloutOptions
from farmsync.orchestration.plan import FileChange, Plan, make_plan
from farmsync.orchestration.pool import TaskResult, run_each
from farmsync.orchestration.recorder import FileHashes, RunRecorder
from farmsync.orchestration.result import FileStatus, HostStatus, Outcome, RunResult
from farmsync.orchestration.session import FarmSession
from farmsync.orchestration.staged import check_staged, clear_staged_runs
from farmsync.orchestration.survey import NodeReport, survey

T = TypeVar("T")
V = TypeVar("V")


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
        self._warned: set[tuple[str, str]] = set()
        # What the nodes said with their commit acknowledgement: the files' states read
        # back right after the commit (verify needs no read there), and who cleaned up.
        self._reported: dict[str, Mapping[str, FileState]] = {}
        self._cleaned: set[str] = set()

    # --- the whole run -------------------------------------------------------------------
    def run(
        self,
        key: MachineKey,
        hosts: Sequence[Host],
        before_change: Callable[[Plan], None] | None = None,
        settle: Callable[[Outcome, Plan], None] | None = None,
        marker_for: Callable[[Mapping[str, NodeReport]], Marker | None] | None = None,
    ) -> RunResult:
        """Roll ``key`` out; ``marker_for`` sees what every node holds before anything is
        planned: it refuses a farm this vault is behind and gives the farm marker to write.
        ``before_change`` runs after planning, just before the first node is touched (the
        rotation stores its new key in the vault there). ``settle`` runs once the farm is on
        one key again (CHANGED, ROLLED_BACK or ABORTED) and before the run's
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
        staged: dict[str, Sequence[str]] = {
            n: r.staged_runs for n, r in reports.items() if r.staged_runs
        }
        if staged:  # this controller's own runs (a failed cleanup) are not another's
            own = {run.run_id for run in self.recorder.journal.runs()}
            staged = {n: [r for r in runs if r not in own] for n, runs in staged.items()}
        check_staged(staged, self.run_id, self.options.clear_staged)
        self._clear_staged(staged)
        marker = marker_for(reports) if marker_for is not None else None

        plan = self._timed(
            Phase.PLAN,
            lambda: make_plan(
                key,
                hosts,
                reports,
                result,
                check=self.options.check,
                diff=self.options.diff,
                marker=marker,
            ),
        )
        if plan.problems:
            result.outcome = Outcome.BAD_INPUT if plan.bad_input else Outcome.NOT_STARTED
            result.messages.extend(str(p) for p in plan.problems)
            self._mark_not_started(hosts)
            return result
        if self.options.check or not plan.changes:
            result.outcome = Outcome.CHECKED if self.options.check else Outcome.UNCHANGED
            return result
        if interrupt.requested():  # nothing stored, nothing touched: stop here
            self._mark_not_started(hosts)
            result.outcome = Outcome.ABORTED
            return result

        # Room in the journal for every record of the run, before anything is stored or staged.
        self.recorder.reserve({h: plan.paths(h) for h in plan.changes})
        try:
            if before_change is not None:
                before_change(plan)
            previous = (
                next(iter(plan.old_fingerprints)) if len(plan.old_fingerprints) == 1 else None
            )
            self.recorder.start(
                result.target_fingerprint, {h: plan.hashes(h) for h in plan.changes}, previous
            )
        except BaseException:
            self.recorder.journal.release_reserve()  # no node touched: nothing to journal
            raise
        return self._finish(self._apply(key, plan), plan, settle)

    def _apply(self, key: MachineKey, plan: Plan) -> Outcome:
        # STAGE: each node staged and armed in one call (one exchange on the Windows agent);
        # ARM: the armed nodes journaled, or every armed commit withdrawn.
        staged = self._timed(Phase.STAGE, lambda: self._stage(plan))
        armed = self._timed(Phase.ARM, lambda: self._arm(plan, staged))
        if armed is None:
            return Outcome.ABORTED  # _finish removes the staging files
        if (
            self._timed(Phase.COMMIT, lambda: self._release(armed, plan))
            and self._timed(Phase.VERIFY, lambda: self._verify(key, plan))
            and not interrupt.requested()  # stopped during the barrier: roll back below
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
            # The vault's save is what the journal's reserve was partly set aside for.
            self.recorder.journal.release_reserve()
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
            Outcome.CHANGED: HostStatus.CHANGED,
            Outcome.ROLLED_BACK: HostStatus.ROLLED_BACK,
            Outcome.ABORTED: HostStatus.UNCHANGED,
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
        self._timed(Phase.CLEANUP, lambda: self._cleanup(plan, outcome))
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
            staged=True,  # other runs' staging files, in the same round trip
        )

    def _clear_staged(self, staged: Mapping[str, Sequence[str]]) -> None:
        """Remove the staging files of the runs named by --clear-staged (on purpose only)."""
        self.result.messages.extend(
            clear_staged_runs(self.session, staged, self.options.clear_staged, self.options)
        )

    def _stage(self, plan: Plan) -> dict[str, TaskResult[ArmedCommit]]:
        """Stage and arm every node; a failure before a node is armed is its STAGE failing."""

        def work(name: str, node: NodeOperations) -> ArmedCommit:
            changes = plan.changes[name]
            return node.stage_and_arm(
                [c.stage_item() for c in changes],
                [c.commit_item() for c in changes],
                self.run_id,
                self.options.keep_backups,
            )

        outcomes = self._each(Phase.STAGE, self._nodes(plan), work)
        self._record(Step.STAGE, plan, outcomes)
        return outcomes

    def _arm(
        self, plan: Plan, staged: Mapping[str, TaskResult[ArmedCommit]]
    ) -> dict[str, ArmedCommit] | None:
        armed = {n: o.value for n, o in staged.items() if o.ok and o.value is not None}
        self.reporter.event(Event(Phase.ARM, Status.START, total=len(plan.changes)))
        self._warn(Phase.ARM, self._nodes(plan))  # a slower path arming took (SFTP fallback)
        with self.recorder.batch():  # armed in the STAGE call: journaled and shown here
            for name in armed:
                self.recorder.host(Step.ARM, name, StepResult.OK, None)
        for name in armed:
            self.reporter.event(Event(Phase.ARM, Status.OK, name))
        if len(armed) == len(plan.changes) and not interrupt.requested():
            return armed
        self._withdraw(armed)  # a node failed, or we were asked to stop
        return None

    def _withdraw(self, armed: Mapping[str, ArmedCommit]) -> None:
        """Withdraw armed commits, all nodes at once: over WinRM a withdrawal is an exchange,
        and a node that stopped answering costs its timeout, which must not add up."""
        run_each(armed.items(), lambda _name, commit: _quietly(commit.abort), self.options.forks)

    def _release(self, armed: dict[str, ArmedCommit], plan: Plan) -> bool:
        """Release every armed commit at once, then collect the results."""
        # Write-ahead: once these records are on disk, recovery knows live files may change.
        with self.recorder.batch():
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
        outcomes: dict[str, TaskResult[None]] = {
            name: TaskResult(error=outcome.error)
            for name, outcome in sending.items()
            if not outcome.ok
        }
        last_sent = max(sent, default=first)
        acked: list[float] = []

        def work(name: str, commit: ArmedCommit) -> None:
            states = commit.wait(self.options.timeout)
            acked.append(self.clock())
            if states is not None:
                self._reported[name] = states
            if commit.cleaned_up:
                self._cleaned.add(name)

        outcomes.update(self._each(Phase.COMMIT, released, work, total=len(armed)))
        for name, outcome in outcomes.items():
            if name not in released:
                self.reporter.event(
                    Event(Phase.COMMIT, Status.FAILED, name, describe_error(outcome.error))
                )
        # Withdraw the commits that never acknowledged (their release failed or their wait
        # timed out), so none can land behind the rollback that follows.
        self._withdraw({n: armed[n] for n, outcome in outcomes.items() if not outcome.ok})
        self.result.release_span_ms = round((last_sent - first) * 1000, 3)
        if acked:
            self.result.commit_window_ms = round((max(acked) - first) * 1000, 3)
        return self._record(Step.COMMIT, plan, outcomes)

    def _verify(self, key: MachineKey, plan: Plan) -> bool:
        """Every changed file holds what was staged: by the hashes the node reported with its
        acknowledgement where it did, by reading the files back elsewhere."""
        target = key.fingerprint()
        nodes = {n: node for n, node in self._nodes(plan).items() if n not in self._reported}
        self.reporter.event(Event(Phase.VERIFY, Status.START, total=len(plan.changes)))
        reports = survey(
            nodes,
            self.session.hosts,
            {h: plan.paths(h) for h in nodes},
            forks=self.options.forks,
            reporter=_WithoutStart(self.reporter),  # counted above, with the reported nodes
            phase=Phase.VERIFY,
        )
        outcomes: dict[str, TaskResult[None]] = {}
        mtimes: list[float] = []
        for name in plan.changes:
            report = reports.get(name)
            error: FarmsyncError | None = None
            if name in self._reported:
                states = self._reported[name]
                error = _reported_mismatch(name, states, plan.changes[name])
                mtimes += [s.mtime for s in states.values() if s.mtime is not None]
                status = Status.OK if error is None else Status.FAILED
                self.reporter.event(Event(Phase.VERIFY, status, name, describe_error(error)))
            elif report is None or report.error is not None:
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
            outcomes[name] = TaskResult(error=error)
        files = [f for r in reports.values() for f in r.files if f.host in plan.changes]
        self._skew(mtimes + [f.mtime for f in files if f.mtime is not None])
        return self._record(Step.VERIFY, plan, outcomes)

    def _skew(self, mtimes: Sequence[float]) -> None:
        """The spread of the verified files' mtimes, at the coarsest resolution among them."""
        if not mtimes:
            return
        whole = any(float(m).is_integer() for m in mtimes)  # SFTP v3: whole seconds
        self.result.mtime_skew_ms = round((max(mtimes) - min(mtimes)) * 1000, 3)
        self.result.mtime_resolution_ms = 1000.0 if whole else 1.0

    def _rollback(self, plan: Plan) -> bool:
        """Put every changed node back on its backup; True when all are on the old key."""
        with self.recorder.batch():
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
        with self.recorder.batch():
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

    def _cleanup(self, plan: Plan, run_outcome: Outcome) -> None:
        def work(name: str, node: NodeOperations) -> None:
            node.cleanup(plan.paths(name), self.run_id, self.options.keep_backups)

        nodes = self._nodes(plan)
        if run_outcome is Outcome.CHANGED:  # those that cleaned up in their release are done
            nodes = {n: node for n, node in nodes.items() if n not in self._cleaned}
        for name, outcome in run_each(nodes.items(), work, self.options.forks).items():
            if not outcome.ok:
                # Leftover staging files are harmless; say so rather than fail the run.
                self.result.messages.append(
                    f"{name}: cleanup failed: {describe_error(outcome.error)}"
                )

    # --- helpers -------------------------------------------------------------------------
    def _warn(self, phase: Phase, nodes: Mapping[str, NodeOperations]) -> None:
        """Report each node's new warnings once (a slower path it had to take, ...)."""
        for name, node in nodes.items():
            for text in node.warnings:
                if (name, text) not in self._warned:
                    self._warned.add((name, text))
                    self.reporter.event(Event(phase, Status.WARNING, name, text))
                    self.result.messages.append(f"{name}: {text}")

    def _nodes(self, plan: Plan) -> dict[str, NodeOperations]:
        return {n: self.session.nodes[n] for n in plan.changes if n in self.session.nodes}

    def _each(
        self,
        phase: Phase,
        items: Mapping[str, V],
        work: Callable[[str, V], T],
        total: int | None = None,
    ) -> dict[str, TaskResult[T]]:
        self.reporter.event(Event(phase, Status.START, total=total or len(items)))

        def done(name: str, outcome: TaskResult[T]) -> None:
            status = Status.OK if outcome.ok else Status.FAILED
            self.reporter.event(Event(phase, status, name, describe_error(outcome.error)))

        return run_each(items.items(), work, self.options.forks, done)

    def _record(
        self,
        step: Step,
        plan: Plan,
        outcomes: Mapping[str, TaskResult[T]],
        per_file: bool = True,
        fail_host: bool = True,
    ) -> bool:
        """Journal each host's outcome; mark failed hosts; True when every host succeeded."""
        ok = True
        with self.recorder.batch():
            for name in plan.changes:
                outcome = outcomes.get(name) or TaskResult(error=_no_connection(name))
                status = StepResult.OK if outcome.ok else StepResult.FAILED
                if per_file:
                    self.recorder.files(step, name, plan.hashes(name), status, outcome.error)
                else:
                    self.recorder.host(step, name, status, outcome.error)
                if not outcome.ok:
                    ok = False
                    if fail_host or self.result.host(name).status is not HostStatus.FAILED:
                        self._fail_host(name, outcome.error)
                    else:
                        self.result.messages.append(
                            f"{name}: {step.value} failed: {describe_error(outcome.error)}"
                        )
        return ok

    def _settle(self, name: str, status: HostStatus) -> None:
        """Give a host's pending files (and the host, unless it failed) their final status."""
        host_result = self.result.host(name)
        if host_result.status is not HostStatus.FAILED:
            host_result.status = status
        for file in host_result.files:
            if file.status is FileStatus.PENDING:
                file.status = FileStatus(status.value)

    def _fail_host(self, name: str, exc: BaseException | None) -> None:
        host_result = self.result.host(name)
        host_result.status = HostStatus.FAILED
        host_result.error = describe_error(exc)
        if isinstance(exc, NodeError):
            host_result.error_kind = exc.kind.value

    def _not_started(self, errors: Mapping[str, FarmsyncError]) -> RunResult:
        for name, exc in errors.items():
            self._fail_host(name, exc)
            # error_kind says what went wrong (auth, host-key, tls, timeout, ...).
            self.result.host(name).status = HostStatus.UNREACHABLE
        self._mark_not_started(self.session.hosts.values())
        self.result.outcome = Outcome.NOT_STARTED
        self.result.messages.append(
            "not started: " + ", ".join(sorted(errors)) + " could not be read; nothing was changed"
        )
        return self.result

    def _mark_not_started(self, hosts: Iterable[Host]) -> None:
        """Every host that did not fail itself: ``not-started``, with no new key shown, since
        none was written."""
        for host in hosts:
            host_result = self.result.host(host.name)
            if host_result.status is not HostStatus.FAILED and host_result.error is None:
                host_result.status = HostStatus.NOT_STARTED
            for file in host_result.files:
                if file.status in (FileStatus.PENDING, FileStatus.UNCHANGED):
                    file.status = FileStatus.NOT_STARTED
                    file.new_fingerprint = None

    def _timed(self, phase: Phase, step: Callable[[], T]) -> T:
        start = self.clock()
        try:
            return step()
        finally:
            self.result.phase_ms[phase.value] = round((self.clock() - start) * 1000, 3)


def restore_originals(
    node: NodeOperations, files: Sequence[FileHashes], run_id: str, phase: str
) -> None:
    """Put ``run_id``'s backups back on one node, then check each file is its original again.

    A file that is no longer its original is restored only from a backup proven to be that
    original (by its hash): otherwise nothing on the node is touched, and the run stays open
    for `recover` to say which file holds what.
    """
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


class _WithoutStart:
    """A reporter passing on every event but the phase's start (already reported)."""

    def __init__(self, inner: Reporter):
        self.inner = inner

    def event(self, event: Event) -> None:
        if event.status is not Status.START:
            self.inner.event(event)


def _reported_mismatch(
    name: str, states: Mapping[str, FileState], changes: Sequence[FileChange]
) -> NodeError | None:
    """The first changed file whose reported post-commit hash is not the staged content's."""
    for change in changes:
        state = states.get(change.path)
        if state is None or state.sha256 != change.new_sha256:
            held = state.sha256[:12] if state is not None and state.sha256 else "nothing"
            return NodeError(
                name,
                NodeErrorKind.VERIFY,
                f"holds sha256 {held}…, not the staged content",
                phase="verify",
                path=change.path,
            )
    return None


def _no_connection(name: str) -> NodeError:
    return NodeError(name, NodeErrorKind.CONNECTION_LOST, "no connection to the node")


def _quietly(action: Callable[[], None]) -> None:
    with contextlib.suppress(Exception):  # withdrawing an armed commit is best effort
        action()
