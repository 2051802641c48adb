"""The farm-level commands: rotate, sync, rollback, restore, recover, history.

Each command takes the farm's lock, first brings any run a dead controller left unfinished to
a consistent state, then does its own two-phase rollout. Key material flows from the vault to
the rollout and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from farmsync.errors import InputError
from farmsync.inventory.durations import format_duration
from farmsync.inventory.model import RecycleKind
from farmsync.keys.generate import generate_key
from farmsync.keys.machinekey import MachineKey
from farmsync.keys.vault import KeyVault, VaultEntry
from farmsync.orchestration.context import FarmContext
from farmsync.orchestration.journal import Journal, Step, StepResult, new_run_id
from farmsync.orchestration.lock import FarmLock
from farmsync.orchestration.plan import Plan
from farmsync.orchestration.recorder import RunRecorder
from farmsync.orchestration.recover import recover_runs
from farmsync.orchestration.result import FileResult, Outcome, RunResult
from farmsync.orchestration.rollout import Rollout
from farmsync.orchestration.session import FarmSession
from farmsync.orchestration.survey import survey
from farmsync.orchestration.vaultstate import settle_key


class Farm:
    def __init__(self, ctx: FarmContext):
        self.ctx = ctx

    # --- the commands --------------------------------------------------------------------
    def rotate(
        self, *, if_older_than: timedelta | None = None, if_due: bool = False, force: bool = False
    ) -> RunResult:
        """Rotate; with ``if_older_than`` (or ``if_due``: the policy's max_key_age) only when
        the current key is at least that old, which is what a scheduler runs."""
        ctx = self.ctx
        run_id = new_run_id()
        if if_due:
            max_age = ctx.policy().max_key_age_days
            if max_age is None:
                raise InputError(
                    "--if-due needs farmsync_policy.max_key_age in the inventory",
                    source=ctx.inventory.path,
                )
            if_older_than = timedelta(days=max_age)
        with self._locked(run_id, "rotate") as (journal, recovered):
            check = ctx.options.check
            vault = self._vault(create=not check)
            current = vault.current() if vault is not None else None
            if if_older_than is not None and current is not None:
                age = datetime.now(UTC) - _parse_time(current.activated_at or current.created_at)
                if age < if_older_than:
                    result = RunResult(
                        run_id,
                        "rotate",
                        ctx.farm,
                        Outcome.UNCHANGED,
                        target_fingerprint=current.fingerprint,
                    )
                    result.messages.append(
                        f"current key {current.fingerprint} is {format_duration(age)} old, "
                        f"younger than {format_duration(if_older_than)}: nothing to do"
                    )
                    return self._with_recovered(result, recovered)
            key = generate_key(ctx.policy(), force=force)
            if vault is None or check:
                result = self._roll_out(journal, run_id, "rotate", key)
                return self._with_recovered(result, recovered)

            def store(plan: Plan) -> None:
                # The last moment before a node is touched: from here on, a key on a node is
                # always in the vault.
                vault.add(key, run_id)

            def settle(outcome: Outcome, plan: Plan) -> None:
                settle_key(
                    vault, "rotate", key.fingerprint(), outcome, run_id, plan.single_old_key()
                )

            result = self._roll_out(journal, run_id, "rotate", key, store, settle)
            return self._with_recovered(result, recovered)

    def sync(self) -> RunResult:
        """Put the vault's active key on every node that lacks it (no new key)."""
        return self._deploy_stored(
            "sync", KeyVault.current, "the vault holds no active key yet: run `farmsync rotate`"
        )

    def rollback(self) -> RunResult:
        """Go back to the key the farm held before the active one."""
        return self._deploy_stored(
            "rollback", KeyVault.previous, "the vault holds no previous key to go back to"
        )

    def _deploy_stored(
        self, kind: str, pick: Callable[[KeyVault], VaultEntry | None], none_left: str
    ) -> RunResult:
        ctx = self.ctx
        run_id = new_run_id()
        with self._locked(run_id, kind) as (journal, recovered):
            vault = self._vault(create=False)
            entry = pick(vault) if vault is not None else None
            if entry is None:
                raise InputError(none_left, source=str(ctx.state.vault))
            assert vault is not None  # an entry came from it

            def settle(outcome: Outcome, _plan: Plan) -> None:
                settle_key(vault, kind, entry.fingerprint, outcome, run_id)

            result = self._roll_out(journal, run_id, kind, entry.key, settle=settle)
            return self._with_recovered(result, recovered)

    def recover(self) -> RunResult:
        """Finish or undo unfinished runs, then report the keys the farm holds.

        Exit 0 means no run is left half done: every node is on its run's old key or all on
        its new one. Recovery raises (exit 3) while a node it needs is unreachable.
        """
        ctx = self.ctx
        run_id = new_run_id()
        with self._locked(run_id, "recover") as (_journal, recovered):
            result = RunResult(run_id, "recover", ctx.farm, Outcome.UNCHANGED)
            with FarmSession(
                ctx.hosts, forks=ctx.options.forks, reporter=ctx.reporter, factory=ctx.factory
            ) as session:
                if session.failures:
                    result.outcome = Outcome.NOT_STARTED
                    result.messages.extend(str(e) for e in session.failures.values())
                    return self._with_recovered(result, recovered)
                reports = survey(
                    session.nodes,
                    session.hosts,
                    {h.name: list(h.root_configs) for h in ctx.hosts},
                    forks=ctx.options.forks,
                    reporter=ctx.reporter,
                )
            fingerprints: set[str] = set()
            for name, report in reports.items():
                host_result = result.host(name)
                if report.error is not None:
                    host_result.status, host_result.error = "unreachable", str(report.error)
                    result.outcome = Outcome.NOT_STARTED
                    continue
                fingerprints |= report.fingerprints()
            if len(fingerprints) > 1:
                # No run is half done any more; keys that differ as they did before the run
                # are drift, which `sync` fixes and the audit reports, not a failed recovery.
                result.messages.append(
                    "no unfinished run; the farm holds several keys: "
                    + ", ".join(sorted(fingerprints))
                    + " (run `farmsync sync` to put the vault's key everywhere)"
                )
            elif len(fingerprints) == 1:
                result.target_fingerprint = next(iter(fingerprints))
            return self._with_recovered(result, recovered)

    def restore(self, host_name: str, backup_run: str) -> RunResult:
        """Put ``host_name``'s backups from ``backup_run`` back (one node, not the farm)."""
        ctx = self.ctx
        run_id = new_run_id()
        with self._locked(run_id, "restore") as (journal, recovered):
            host = ctx.inventory.hosts.get(host_name)
            if host is None:
                raise InputError(f"no host {host_name!r} in the inventory", source="--host")
            hosts = [host]
            result = RunResult(run_id, "restore", ctx.farm, Outcome.UNCHANGED)
            recorder = RunRecorder(journal, run_id, "restore")
            with FarmSession(hosts, forks=1, reporter=ctx.reporter, factory=ctx.factory) as session:
                if session.failures:
                    result.outcome = Outcome.NOT_STARTED
                    result.messages.extend(str(e) for e in session.failures.values())
                    return self._with_recovered(result, recovered)
                node = session.nodes[host.name]
                backups = node.list_backups(list(host.root_configs))
                paths = [p for p, runs in backups.items() if backup_run in runs]
                if not paths:
                    raise InputError(
                        f"{host.name} has no backup from run {backup_run!r}", source="--run"
                    )
                before = survey(
                    session.nodes, session.hosts, {host.name: paths}, forks=1, reporter=ctx.reporter
                )[host.name]
                if ctx.options.check:
                    result.outcome = Outcome.CHECKED
                    return self._with_recovered(result, recovered)
                journal.start_run(
                    run_id,
                    "restore",
                    hosts={host.name: paths},
                    detail=f"restore backups of run {backup_run}",
                )
                recorder.host(Step.ROLLBACK, host.name, StepResult.STARTED)
                node.rollback(paths, backup_run)
                after = survey(
                    session.nodes, session.hosts, {host.name: paths}, forks=1, reporter=ctx.reporter
                )[host.name]
                recorder.host(Step.ROLLBACK, host.name, StepResult.OK)
                recycled = ctx.options.recycle and host.recycle.kind is not RecycleKind.NONE
                if recycled:
                    node.recycle()  # the running application must read the restored file
                recorder.end(Outcome.CHANGED)
            host_result = result.host(host.name)
            host_result.recycled = recycled
            host_result.status = "changed"
            now = {f.path: f.fingerprint for f in after.files}  # empty if the read-back failed
            for old in before.files:
                host_result.files.append(
                    FileResult(old.path, "changed", old.fingerprint, now.get(old.path))
                )
            result.outcome = Outcome.CHANGED
            result.messages.append(f"{host.name} is back on its files from run {backup_run}")
            return self._with_recovered(result, recovered)

    # --- shared steps --------------------------------------------------------------------
    def _roll_out(
        self,
        journal: Journal,
        run_id: str,
        kind: str,
        key: MachineKey,
        before_change: Callable[[Plan], None] | None = None,
        settle: Callable[[Outcome, Plan], None] | None = None,
    ) -> RunResult:
        ctx = self.ctx
        result = RunResult(run_id, kind, ctx.farm, Outcome.UNCHANGED)
        # Belt and braces: the journal refuses any record that contains this run's key.
        journal.forbid(key.validation_key, key.decryption_key)
        recorder = RunRecorder(journal, run_id, kind)
        with FarmSession(
            ctx.hosts, forks=ctx.options.forks, reporter=ctx.reporter, factory=ctx.factory
        ) as session:
            rollout = Rollout(
                session, result, recorder, ctx.reporter, ctx.options, source=ctx.inventory.path
            )
            rollout.run(key, ctx.hosts, before_change, settle)
        left_out = len(ctx.inventory.hosts) - len(ctx.hosts)
        if left_out and kind in ("rotate", "rollback") and result.outcome is Outcome.CHANGED:
            result.messages.append(
                f"--limit left {left_out} host(s) out: they keep their old key until "
                "`farmsync sync` puts this one on them"
            )
        return result

    def _vault(self, *, create: bool) -> KeyVault | None:
        """The farm's vault; with ``create`` made on first use, else None when there is none."""
        ctx = self.ctx
        if create:
            return KeyVault.open_or_create(ctx.state.vault, ctx.vault_secret(), ctx.farm)
        if not ctx.state.vault.exists():
            return None
        return KeyVault.open(ctx.state.vault, ctx.vault_secret())

    def _locked(self, run_id: str, kind: str) -> _LockedRun:
        return _LockedRun(self, run_id, kind)

    def _with_recovered(self, result: RunResult, recovered: Sequence[RunResult]) -> RunResult:
        earlier_lines: list[str] = []
        for earlier in recovered:
            if earlier.outcome is Outcome.CHECKED:
                text = f"unfinished run {earlier.run_id} would be settled first (not in --check)"
            else:
                text = f"recovered unfinished run {earlier.run_id}: {earlier.outcome.value}"
            earlier_lines += [text, *earlier.messages]
        result.messages[:0] = earlier_lines
        return result


class _LockedRun:
    """Lock the farm, recover what a dead controller left, hand over the journal."""

    def __init__(self, farm: Farm, run_id: str, kind: str):
        self.farm = farm
        self.run_id = run_id
        self.kind = kind
        self.lock: FarmLock | None = None

    def __enter__(self) -> tuple[Journal, list[RunResult]]:
        ctx = self.farm.ctx
        ctx.state.ensure()
        self.lock = FarmLock(ctx.state.lock, ctx.farm, command=f"{ctx.command} {self.kind}")
        self.lock.acquire()
        try:
            self.lock.set_run_id(self.run_id)
            journal = Journal(ctx.state.journal)
            if ctx.options.check:
                # --check changes nothing, not even to settle an earlier run: say so instead.
                recovered = [
                    RunResult(state.run_id, state.kind, ctx.farm, Outcome.CHECKED)
                    for state in journal.unfinished_runs()
                ]
            else:
                recovered = recover_runs(journal, ctx, self.run_id)
        except BaseException:
            self.lock.release()
            raise
        return journal, recovered

    def __exit__(self, *exc: object) -> None:
        if self.lock is not None:
            self.lock.release()


def _parse_time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
