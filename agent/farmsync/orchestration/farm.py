"""The farm-level commands: rotate, sync, rollback, restore, recover, history.

Each command takes the farm's lock, first brings any run a dead controller left unfinished to
a consistent state, then does its own two-phase rollout. Key material flows from the vault to
the rollout and nowhere else.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from farmsync.errors import FarmsyncError, InputError
from farmsync.inventory.durations import format_duration
from farmsync.inventory.loader import load_inventory
from farmsync.inventory.model import Host, Inventory, RecycleKind
from farmsync.inventory.paths import require_controller_files
from farmsync.inventory.patterns import select_hosts
from farmsync.keys.disclosed import DisclosedKeys
from farmsync.keys.generate import generate_key
from farmsync.keys.machinekey import MachineKey
from farmsync.keys.vault import KeyVault, VaultEntry, VaultSecret
from farmsync.nodes.contract import backup_path
from farmsync.orchestration import interrupt
from farmsync.orchestration.context import FarmContext
from farmsync.orchestration.events import NullReporter, Reporter
from farmsync.orchestration.interrupt_report import explain_interrupt
from farmsync.orchestration.journal import (
    Journal,
    RunKind,
    RunState,
    Step,
    StepResult,
    new_run_id,
)
from farmsync.orchestration.lock import FarmLock
from farmsync.orchestration.lockwait import acquire_waiting
from farmsync.orchestration.marker import FarmBehindError, check_farm, markers_of
from farmsync.orchestration.options import RolloutOptions
from farmsync.orchestration.ownership import Ownership
from farmsync.orchestration.plan import Plan
from farmsync.orchestration.recorder import RunRecorder
from farmsync.orchestration.recover import recover_runs
from farmsync.orchestration.recovery_report import (
    farm_keys,
    host_rows,
    keys_message,
    what_recovery_did,
    what_recovery_would_do,
)
from farmsync.orchestration.result import (
    FileResult,
    FileStatus,
    HostStatus,
    Outcome,
    RunResult,
)
from farmsync.orchestration.rollout import Rollout
from farmsync.orchestration.session import FarmSession
from farmsync.orchestration.staged import clear_staged_runs
from farmsync.orchestration.state import StateDir, default_state_root
from farmsync.orchestration.survey import NodeReport, survey
from farmsync.orchestration.vaultstate import settle_key

if TYPE_CHECKING:  # the audit loads when a farm is audited, never for a rotation
    from farmsync.orchestration.audit import AuditOptions, AuditReport


# A run that changes keys saves its vault twice: the store just before the first node is
# touched, and the settle once the farm is on one key again. Both keys are derived while the
# nodes are connected and read, so neither save waits for scrypt and no derivation competes
# with the stage and the commit for the CPU.
RUN_SAVES = 2


class Farm:
    """One farm's commands. ``Farm.open`` is the front door; ``Farm(ctx)`` takes a context
    assembled by hand (tests that swap the node factory, benchmarks)."""

    def __init__(self, ctx: FarmContext):
        self.ctx = ctx
        self.notes: list[str] = []  # said once at the top of the result
        self._new_vault: KeyVault | None = None  # a vault this run made, saved on first change
        self.unfinished: list[RunState] = []  # with --check: the runs a real run would settle
        self.journal_notes: list[str] = []  # what the journal's last read could not use

    @classmethod
    def open(
        cls,
        inventory: str | os.PathLike[str] | Inventory,
        *,
        limit: str | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        secret: VaultSecret | Callable[[], VaultSecret] | None = None,
        options: RolloutOptions | None = None,
        reporter: Reporter | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Farm:
        """Load and check ``inventory`` (a file, or an Inventory already loaded) and select
        ``limit`` (an Ansible host pattern).

        Defaults are the command line's: state under ``$FARMSYNC_STATE_DIR`` (else the XDG
        state directory), the vault secret from ``$FARMSYNC_VAULT_KEY_FILE`` or
        ``$FARMSYNC_VAULT_PASSPHRASE``, read only when a command opens the vault. ``environ``
        (default ``os.environ``) is where those and the inventory's password variables are
        looked up. Raises InputError for a bad inventory, a controller-side file it names
        that is missing, or a pattern matching nothing; nothing is contacted.
        """
        env = os.environ if environ is None else environ
        if isinstance(inventory, Inventory):
            loaded = inventory
        else:
            loaded = load_inventory(inventory, environ=env)
        require_controller_files(loaded)  # a missing key or CA file is bad input, named
        hosts = select_hosts(loaded, limit)
        root = Path(state_dir) if state_dir is not None else default_state_root(env)
        ctx = FarmContext(
            inventory=loaded,
            hosts=hosts,
            state=StateDir(root, loaded.farm),
            vault_secret=_secret_reader(secret, env),
            options=options or RolloutOptions(),
            reporter=reporter or NullReporter(),
        )
        return cls(ctx)

    # --- the commands --------------------------------------------------------------------
    def rotate(
        self,
        *,
        if_older_than: timedelta | None = None,
        if_due: bool = False,
        force: bool = False,
        adopt: bool = False,
    ) -> RunResult:
        """Rotate; with ``if_older_than`` (or ``if_due``: the policy's max_key_age) only when
        the current key is at least that old, which is what a scheduler runs. ``adopt`` takes
        over a farm whose markers name another vault (or a newer generation)."""
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
        with self._locked(run_id, RunKind.ROTATE) as (journal, recovered):
            vault = self._vault_later(create=not ctx.options.check)
            try:
                result = self._rotate(journal, run_id, vault, if_older_than, force, adopt)
            except Exception:
                vault()  # a vault that cannot be opened is the error, as if opened first
                raise
            vault()  # likewise when the run ended before it needed the vault
            return self._with_recovered(result, recovered)

    def _rotate(
        self,
        journal: Journal,
        run_id: str,
        vault: Callable[[], KeyVault | None],
        if_older_than: timedelta | None,
        force: bool,
        adopt: bool,
    ) -> RunResult:
        ctx = self.ctx
        if ctx.options.clear_staged:
            vault()  # --clear-staged writes to nodes before the markers are checked: open first
        # The key's age decides whether the nodes are contacted at all: open first.
        opened = vault() if if_older_than is not None else None
        current = opened.current() if opened is not None else None
        if if_older_than is not None and current is not None:
            age = datetime.now(UTC) - _parse_time(current.activated_at or current.created_at)
            if age < if_older_than:
                result = RunResult(
                    run_id,
                    RunKind.ROTATE,
                    ctx.farm,
                    Outcome.UNCHANGED,
                    target_fingerprint=current.fingerprint,
                )
                result.messages.append(
                    f"current key {current.fingerprint} is {format_duration(age)} old, "
                    f"younger than {format_duration(if_older_than)}: nothing to do"
                )
                return result
        key = generate_key(ctx.policy(), force=force)
        owner = self._ownership(vault, run_id, RunKind.ROTATE, key.fingerprint(), adopt=adopt)
        if ctx.options.check:  # the key is not stored (and a vault may not exist)
            return _unstored_key(self._roll_out(journal, run_id, RunKind.ROTATE, key, owner=owner))

        def store(plan: Plan) -> None:
            # The last moment before a node is touched: from here on, a key on a node is
            # always in the vault, and so is the marker generation that goes with it.
            opened = _opened(vault)
            with opened.one_save():
                opened.add(key, run_id)
                owner.record()

        def settle(outcome: Outcome, plan: Plan) -> None:
            settle_key(
                _opened(vault),
                RunKind.ROTATE,
                key.fingerprint(),
                outcome,
                run_id,
                plan.single_old_key(),
            )

        result = self._roll_out(journal, run_id, RunKind.ROTATE, key, store, settle, owner=owner)
        return _unstored_key(result)

    def audit(
        self, options: AuditOptions | None = None, *, disclosed: DisclosedKeys | None = None
    ) -> AuditReport:
        """Read every node and judge the keys it uses (read-only: no lock, no vault)."""
        from farmsync.orchestration.audit import AuditOptions, run_audit

        ctx = self.ctx
        return run_audit(
            ctx.farm,
            ctx.hosts,
            ctx.state.journal,
            options or AuditOptions(),
            ctx.reporter,
            disclosed=disclosed,
            factory=ctx.factory,
        )

    def sync(self) -> RunResult:
        """Put the vault's active key on every node that lacks it (no new key)."""
        return self._deploy_stored(
            RunKind.SYNC,
            KeyVault.current,
            "the vault holds no active key yet: run `farmsync rotate`",
        )

    def rollback(self) -> RunResult:
        """Go back to the key the farm held before the active one."""
        return self._deploy_stored(
            RunKind.ROLLBACK, KeyVault.previous, "the vault holds no previous key to go back to"
        )

    def _deploy_stored(
        self, kind: RunKind, pick: Callable[[KeyVault], VaultEntry | None], none_left: str
    ) -> RunResult:
        ctx = self.ctx
        run_id = new_run_id()
        with self._locked(run_id, kind) as (journal, recovered):
            vault = self._vault(create=False)
            entry = pick(vault) if vault is not None else None
            if entry is None:
                raise InputError(none_left, source=str(ctx.state.vault))
            assert vault is not None  # an entry came from it
            owner = self._ownership(lambda: vault, run_id, kind, entry.fingerprint)
            if not ctx.options.check:
                vault.prepare_saves(RUN_SAVES)

            def store(_plan: Plan) -> None:
                if not ctx.options.check:
                    owner.record()

            def settle(outcome: Outcome, _plan: Plan) -> None:
                settle_key(vault, kind, entry.fingerprint, outcome, run_id)

            result = self._roll_out(
                journal, run_id, kind, entry.key, store, settle=settle, owner=owner
            )
            return self._with_recovered(result, recovered)

    def recover(self, accept_current: Sequence[str] = ()) -> RunResult:
        """Finish or undo unfinished runs, then report the keys the farm holds.

        Exit 0 means no run is left half done: every node is on its run's old key or all on
        its new one. Recovery raises (exit 3) while a node it needs is unreachable, or while a
        file on the new content has no backup proven to be its original: ``accept_current``
        names hosts whose files, as they are now, are then taken as the run's outcome.
        """
        ctx = self.ctx
        run_id = new_run_id()
        with self._locked(run_id, RunKind.RECOVER, accept_current) as (journal, recovered):
            result = RunResult(run_id, RunKind.RECOVER, ctx.farm, Outcome.UNCHANGED)
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
                    staged=True,
                )
                own = {run.run_id for run in journal.runs()}
                staged = {
                    n: [r for r in report.staged_runs if r not in own]
                    for n, report in reports.items()
                    if report.staged_runs
                }
                if not ctx.options.check:
                    result.messages.extend(
                        clear_staged_runs(session, staged, ctx.options.clear_staged, ctx.options)
                    )
                for name, runs in sorted(staged.items()):
                    for run in runs:
                        if run not in ctx.options.clear_staged:
                            result.messages.append(
                                f"{name}: run {run} is staged here, not by this controller's "
                                f"journal; if its controller is gone: --clear-staged {run}"
                            )
            host_rows(result, reports)
            what_recovery_did(result, recovered)
            owner_note = self._marker_note(reports)
            if owner_note is not None:
                result.messages.append(owner_note)
            if any(r.error is not None for r in reports.values()):
                result.outcome = Outcome.NOT_STARTED
            elif ctx.options.check:
                result.outcome = Outcome.CHECKED
                recovered = []  # worded below from the live files, not "would be settled"
                result.messages.extend(
                    what_recovery_would_do(state, reports) for state in self.unfinished
                )
                if not self.unfinished:
                    result.messages.append("no run is unfinished: recover has nothing to do")
            elif any(r.outcome is not Outcome.CHECKED for r in recovered):
                result.outcome = Outcome.CHANGED
            explicit, autogenerate = farm_keys(reports)
            drift = keys_message(explicit, autogenerate)
            if drift is not None:
                # No run is half done any more; keys that differ as they did before the run
                # are drift, which `sync` fixes and the audit reports, not a failed recovery.
                result.messages.append(drift)
            elif len(explicit) == 1:
                result.target_fingerprint = next(iter(explicit))
            return self._with_recovered(result, recovered)

    def restore(self, host_name: str, backup_run: str) -> RunResult:
        """Put ``host_name``'s backups from ``backup_run`` back (one node, not the farm)."""
        ctx = self.ctx
        run_id = new_run_id()
        with self._locked(run_id, RunKind.RESTORE) as (journal, recovered):
            host = self._restore_host(host_name)
            result = RunResult(run_id, RunKind.RESTORE, ctx.farm, Outcome.UNCHANGED)
            session = FarmSession([host], forks=1, reporter=ctx.reporter, factory=ctx.factory)
            with session:
                if session.failures:
                    result.outcome = Outcome.NOT_STARTED
                    result.messages.extend(str(e) for e in session.failures.values())
                    return self._with_recovered(result, recovered)
                paths = _paths_backed_up_by(session, host, backup_run)
                before = self._read_files(session, host, paths)
                if ctx.options.check:
                    backups = [backup_path(p, backup_run) for p in paths]
                    saved = self._read_files(session, host, backups)
                    _report_would_restore(result, host.name, before, saved, backup_run)
                    return self._with_recovered(result, recovered)
                after, recycled = self._put_back(session, journal, run_id, host, paths, backup_run)
            _report_restored(result, host.name, before, after, recycled, backup_run)
            warning = self._mixed_after_restore(host.name, after)
            if warning is not None:
                result.messages.append(warning)
            return self._with_recovered(result, recovered)

    def _restore_host(self, host_name: str) -> Host:
        inventory = self.ctx.inventory
        host = inventory.hosts.get(host_name)
        if host is None:
            close = difflib.get_close_matches(host_name, list(inventory.hosts), n=3)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            raise InputError(f"no host {host_name!r} in the inventory{hint}", source="--host")
        return host

    def _read_files(self, session: FarmSession, host: Host, paths: list[str]) -> NodeReport:
        return survey(
            session.nodes, session.hosts, {host.name: paths}, forks=1, reporter=self.ctx.reporter
        )[host.name]

    def _put_back(
        self,
        session: FarmSession,
        journal: Journal,
        run_id: str,
        host: Host,
        paths: list[str],
        backup_run: str,
    ) -> tuple[NodeReport, bool]:
        """Journal, roll the node back to the run's backups, read them back, recycle."""
        recorder = RunRecorder(journal, run_id, RunKind.RESTORE)
        journal.start_run(
            run_id,
            RunKind.RESTORE,
            hosts={host.name: paths},
            detail=f"restore backups of run {backup_run}",
        )
        node = session.nodes[host.name]
        recorder.host(Step.ROLLBACK, host.name, StepResult.STARTED)
        node.rollback(paths, backup_run)
        after = self._read_files(session, host, paths)
        recorder.host(Step.ROLLBACK, host.name, StepResult.OK)
        recycled = self.ctx.options.recycle and host.recycle.kind is not RecycleKind.NONE
        if recycled:
            node.recycle()  # the running application must read the restored file
        recorder.end(Outcome.CHANGED)
        return after, recycled

    def _marker_note(self, reports: Mapping[str, NodeReport]) -> str | None:
        """recover reads the farm markers too: say when this vault is behind the farm, which
        is why its sync, rollback and rotate would refuse."""
        try:
            vault = self._vault(create=False)
        except FarmsyncError:
            return None  # no secret here: recover reports without the vault
        if vault is None:
            return None
        try:
            check_farm(
                markers_of(reports),
                farm=self.ctx.farm,
                vault_id=vault.identity.vault_id,
                vault_generation=vault.identity.generation,
                vault_path=str(self.ctx.state.vault.absolute()),
                command="sync, rollback or rotate from here",
            )
        except FarmBehindError as behind:
            return f"note: {behind}"
        return None

    def _mixed_after_restore(self, host: str, after: NodeReport) -> str | None:
        """A restore puts one node back: say so when that leaves it off the vault's key."""
        try:
            vault = self._vault(create=False)
        except FarmsyncError:
            return None  # no secret here: restore does not need the vault
        current = vault.current() if vault is not None else None
        if current is None:
            return None
        held = sorted({f.fingerprint or "" for f in after.files} - {current.fingerprint})
        if not held:
            return None
        shown = ", ".join(h if h.startswith("mk-") else "AutoGenerate" for h in held)
        return (
            f"warning: {host} now holds {shown}, not the vault's key {current.fingerprint}: "
            f"the farm is on mixed keys; `farmsync sync -l {host}` puts the vault's key back"
        )

    # --- shared steps --------------------------------------------------------------------
    def _roll_out(
        self,
        journal: Journal,
        run_id: str,
        kind: RunKind,
        key: MachineKey,
        before_change: Callable[[Plan], None] | None = None,
        settle: Callable[[Outcome, Plan], None] | None = None,
        *,
        owner: Ownership | None = None,
    ) -> RunResult:
        ctx = self.ctx
        result = RunResult(run_id, kind, ctx.farm, Outcome.UNCHANGED)
        result.messages.extend(self.notes)
        # Belt and braces: the journal refuses any record that contains this run's key.
        journal.forbid(key.validation_key, key.decryption_key)
        recorder = RunRecorder(journal, run_id, kind, settle_bytes=_vault_saves(ctx.state.vault))
        with (
            interrupt.deferred(),
            FarmSession(
                ctx.hosts, forks=ctx.options.forks, reporter=ctx.reporter, factory=ctx.factory
            ) as session,
        ):
            rollout = Rollout(
                session, result, recorder, ctx.reporter, ctx.options, source=ctx.inventory.path
            )
            rollout.run(key, ctx.hosts, before_change, settle, owner)
            if interrupt.REQUESTED:
                explain_interrupt(result, interrupt.REQUESTED.signal_name or "SIGINT")
        if owner is not None and (taken := owner.message()) is not None:
            result.messages.append(taken)
        selected = {h.name for h in ctx.hosts}
        result.left_out = sorted(h for h in ctx.inventory.hosts if h not in selected)
        return result

    def _ownership(
        self,
        vault: Callable[[], KeyVault | None],
        run_id: str,
        kind: RunKind,
        target: str,
        *,
        adopt: bool = False,
    ) -> Ownership:
        ctx = self.ctx
        return Ownership(
            vault, str(ctx.state.vault.absolute()), ctx.farm, run_id, kind, target, adopt=adopt
        )

    def _vault(self, *, create: bool) -> KeyVault | None:
        """The farm's vault; with ``create`` made on first use, else None when there is none."""
        ctx = self.ctx
        if create:
            if ctx.state.vault.exists():
                return KeyVault.open(ctx.state.vault, ctx.vault_secret(), farm=ctx.farm)
            # Written by its first change (the key stored just before a node is touched), so a
            # refused or unstarted run leaves no empty vault; the run says when it made one.
            self._new_vault = KeyVault.new(ctx.state.vault, ctx.vault_secret(), ctx.farm)
            return self._new_vault
        if not ctx.state.vault.exists():
            return None
        return KeyVault.open(ctx.state.vault, ctx.vault_secret())

    def _vault_later(self, *, create: bool) -> Callable[[], KeyVault | None]:
        """:meth:`_vault` for a rotation: the secret is read now, but an existing vault's key
        is derived in a worker thread (scrypt, the largest cost before the first node is
        touched) while the nodes are connected and read. Call the result where the vault is
        needed: it waits for the key, and raises what opening the vault raises."""
        ctx = self.ctx
        if not ctx.state.vault.exists():
            made = self._vault(create=create)
            if made is not None:
                made.prepare_saves(RUN_SAVES)
            return lambda: made
        opening = KeyVault.opening(
            ctx.state.vault,
            ctx.vault_secret(),
            farm=ctx.farm if create else None,
            prepare_saves=RUN_SAVES if create else 0,  # --check saves nothing
        )
        return opening.result

    @contextmanager
    def _locked(
        self, run_id: str, kind: RunKind, accept: Sequence[str] = ()
    ) -> Iterator[tuple[Journal, list[RunResult]]]:
        """Lock the farm, settle what a dead controller left, hand over the journal."""
        ctx = self.ctx
        ctx.state.ensure()
        lock = FarmLock(ctx.state.lock, ctx.farm, command=f"{ctx.command} {kind}")
        acquire_waiting(lock, ctx.lock_wait, ctx.reporter)
        try:
            lock.set_run_id(run_id)
            journal = Journal(ctx.state.journal)
            if ctx.options.check:
                # --check changes nothing, not even to settle an earlier run: say so instead.
                self.unfinished = journal.unfinished_runs()
                recovered = [
                    RunResult(state.run_id, RunKind(state.kind), ctx.farm, Outcome.CHECKED)
                    for state in self.unfinished
                ]
            else:
                recovered = recover_runs(journal, ctx, run_id, accept)
            self.journal_notes = _journal_notes(journal, kind)
            yield journal, recovered
        finally:
            lock.release()

    def _with_recovered(self, result: RunResult, recovered: Sequence[RunResult]) -> RunResult:
        earlier_lines: list[str] = []
        for earlier in recovered:
            if earlier.outcome is Outcome.CHECKED:
                text = f"unfinished run {earlier.run_id} would be settled first (not in --check)"
            else:
                text = f"recovered unfinished run {earlier.run_id}: {earlier.outcome.value}"
            earlier_lines += [text, *earlier.messages]
        created: list[str] = []
        if self._new_vault is not None and self._new_vault.path.exists():
            # A second state directory silently made a second vault: say so, and where.
            created = [f"created vault {self._new_vault.path} for farm {self.ctx.farm}"]
        result.messages[:0] = [*self.journal_notes, *earlier_lines, *created]
        return result


def _secret_reader(
    secret: VaultSecret | Callable[[], VaultSecret] | None, environ: Mapping[str, str]
) -> Callable[[], VaultSecret]:
    """The vault secret as the context takes it: read when a command opens the vault."""
    if isinstance(secret, VaultSecret):
        given = secret
        return lambda: given
    if secret is not None:
        return secret
    return lambda: VaultSecret.from_env(environ)


def _opened(vault: Callable[[], KeyVault | None]) -> KeyVault:
    """The vault a run that stores its key always has (made or opened before it started)."""
    opened = vault()
    assert opened is not None
    return opened


def _paths_backed_up_by(session: FarmSession, host: Host, backup_run: str) -> list[str]:
    """The host's managed files that have a backup from ``backup_run``."""
    backups = session.nodes[host.name].list_backups(list(host.root_configs))
    paths = [p for p, runs in backups.items() if backup_run in runs]
    if not paths:
        raise InputError(f"{host.name} has no backup from run {backup_run!r}", source="--run")
    return paths


def _report_would_restore(
    result: RunResult, host_name: str, before: NodeReport, saved: NodeReport, backup_run: str
) -> None:
    """--check: each file's key now and in the run's backup."""
    host_result = result.host(host_name)
    host_result.status = HostStatus.WOULD_CHANGE
    for old, backup in zip(before.files, saved.files, strict=True):
        host_result.files.append(
            FileResult(
                old.path,
                FileStatus.WOULD_CHANGE,
                old.fingerprint if old.explicit else None,
                backup.fingerprint if backup.explicit else None,
                old_autogenerate=old.fingerprint is not None and not old.explicit,
            )
        )
    result.outcome = Outcome.CHECKED
    result.summary = (
        f"would put back {host_name}'s files from before run {backup_run} "
        "(the backups that run made)"
    )


def _report_restored(
    result: RunResult,
    host_name: str,
    before: NodeReport,
    after: NodeReport,
    recycled: bool,
    backup_run: str,
) -> None:
    host_result = result.host(host_name)
    host_result.recycled = recycled
    host_result.status = HostStatus.CHANGED
    now = {f.path: f.fingerprint for f in after.files}  # empty if the read-back failed
    for old in before.files:
        host_result.files.append(
            FileResult(old.path, FileStatus.CHANGED, old.fingerprint, now.get(old.path))
        )
    result.outcome = Outcome.CHANGED
    result.summary = (
        f"{host_name} is back on its files from before run {backup_run} (the backups that run made)"
    )


def _vault_saves(vault: Path) -> int:
    """Room for settling a run: up to two vault saves (a first rotation also records the key
    it replaced), each a whole new copy beside the old one, plus the entry it adds."""
    try:
        size = vault.stat().st_size
    except FileNotFoundError:
        size = 0
    return 2 * (size + 4096) + 8192


def _journal_notes(journal: Journal, kind: RunKind) -> list[str]:
    """Damaged journal lines block nothing, but are never silent: `recover` lists them and
    says what to do; the other commands mention them in one line."""
    if kind is RunKind.RECOVER:
        return journal.damage_report()
    if journal.damage:
        return [
            f"journal {journal.path} has {len(journal.damage)} damaged line(s), ignored: "
            "`farmsync recover` lists them"
        ]
    return []


def _unstored_key(result: RunResult) -> RunResult:
    """A rotation that stopped before its key was stored shows no fingerprint for it: that key
    exists nowhere (and a --check's key is not the one the real run will generate)."""
    if result.outcome in (Outcome.CHECKED, Outcome.NOT_STARTED, Outcome.BAD_INPUT):
        result.target_fingerprint = None
        for host in result.hosts:
            for file in host.files:
                file.new_fingerprint = None
    return result


def _parse_time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
