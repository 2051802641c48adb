"""Bringing a run that a dead controller left unfinished to a consistent state.

The journal says, per node and file, the hash before the run and the hash of the staged
content, and whether a commit may have been released. The live files then say where each
node is. The rule: a run whose commit was never released changed nothing (only staging
files to clean); a run where every file holds the new content is finished; anything else is
rolled back to the backups, so the farm ends on the old key.

Recovery trusts nothing it cannot prove. It acts only on the paths the current inventory
manages for a host (a journal record naming any other file is reported, never acted on),
and puts a backup back only when the backup's hash is the original's hash the journal
recorded. When a file on the new content has no such backup, nothing is touched: the run
stays open and the error says which file holds what, until the operator accepts that host's
files as they are (``farmsync recover --accept-current HOST``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from farmsync.errors import ConfigFileError, ExitCode, FarmsyncError, InputError, describe_error
from farmsync.inventory.model import Inventory, RecycleKind
from farmsync.keys.machinekey import MachineKey
from farmsync.keys.vault import KeyVault
from farmsync.nodes.contract import FileState, FileStatus, NodeOperations, backup_path
from farmsync.orchestration.context import FarmContext
from farmsync.orchestration.events import Event, Phase, Status
from farmsync.orchestration.journal import Journal, RunState, Step, StepResult
from farmsync.orchestration.pool import run_each
from farmsync.orchestration.recorder import FileHashes, RunRecorder
from farmsync.orchestration.result import Outcome, RunResult
from farmsync.orchestration.rollout import restore_originals
from farmsync.orchestration.session import FarmSession
from farmsync.orchestration.survey import inspect_file
from farmsync.orchestration.vaultstate import settle_key
from farmsync.webconfig.parser import inspect_config


class RecoveryError(FarmsyncError):
    """An unfinished run cannot be settled yet (a node is unreachable, a backup unproven)."""

    exit_code = ExitCode.CANNOT_START

    def __init__(self, message: str, details: Sequence[str] = ()):
        super().__init__(message)
        self.details = tuple(details)


def recover_runs(
    journal: Journal, ctx: FarmContext, current_run: str, accept: Collection[str] = ()
) -> list[RunResult]:
    """Settle every unfinished run in the journal; raise RecoveryError if one cannot be.

    ``accept`` names hosts whose files, as they are now, the operator takes as the outcome of
    the unfinished run they belong to.
    """
    unfinished = [s for s in journal.unfinished_runs() if s.run_id != current_run]
    _check_accepted(accept, unfinished, ctx.inventory)
    return [recover_run(state, journal, ctx, accept) for state in unfinished]


def _check_accepted(
    accept: Collection[str], unfinished: Sequence[RunState], inventory: Inventory
) -> None:
    for host in accept:
        if host not in inventory.hosts:
            raise InputError(f"no host {host!r} in the inventory", source="--accept-current")
        if not any(_managed(state, inventory).get(host) for state in unfinished):
            raise InputError(
                f"{host} has no file in an unfinished run: there is nothing to accept",
                source="--accept-current",
            )


def _managed(state: RunState, inventory: Inventory) -> dict[str, list[str]]:
    """The run's paths that the current inventory manages, per host still in it."""
    managed: dict[str, list[str]] = {}
    for host, paths in state.hosts.items():
        entry = inventory.hosts.get(host)
        if entry is not None:
            managed[host] = [p for p in paths if p in entry.root_configs]
    return managed


def _unmanaged_notes(state: RunState, inventory: Inventory) -> list[str]:
    notes: list[str] = []
    for host, paths in state.hosts.items():
        entry = inventory.hosts.get(host)
        if entry is None:
            notes.append(
                f"run {state.run_id}: {host} is no longer in the inventory: its files were "
                "left as they are"
            )
            continue
        for path in paths:
            if path not in entry.root_configs:
                notes.append(
                    f"run {state.run_id} names {host}:{path}, which the inventory does not "
                    "manage: not touched"
                )
    return notes


# --- what each managed file holds ------------------------------------------------------------


@dataclass
class LiveFile:
    """One managed file of the run as recovery found it, judged by hash against the journal."""

    host: str
    run_id: str
    hashes: FileHashes
    old_fp: str | None  # the key it held when the run read it
    live: FileState
    backup: FileState | None = None  # read for files on the new content
    accepted: bool = False

    @property
    def path(self) -> str:
        return self.hashes.path

    @property
    def original(self) -> bool:
        return bool(self.hashes.old_sha256) and self.live.sha256 == self.hashes.old_sha256

    @property
    def new(self) -> bool:
        return bool(self.hashes.new_sha256) and self.live.sha256 == self.hashes.new_sha256

    @property
    def backup_proven(self) -> bool:
        """The run's backup holds exactly the original the journal recorded."""
        return (
            self.backup is not None
            and bool(self.hashes.old_sha256)
            and self.backup.sha256 == self.hashes.old_sha256
        )

    @property
    def key_fp(self) -> str | None:
        """The fingerprint of the key the file holds now (None: missing or unreadable)."""
        return _key_fp(self.host, self.path, self.live)

    def describe(self, *, backup: bool = True) -> str:
        """Which content the file holds, and its backup, for an operator deciding what to do."""
        if self.original:
            what = "the original"
        elif self.new:
            what = "the run's new content"
        elif self.live.status is FileStatus.MISSING:
            what = "nothing: the file is missing"
        else:
            what = "unknown content"
        text = f"{self.host} {self.path}: holds {what}{_key_text(self.key_fp, self.live)}"
        if not backup or self.backup is None:
            return text
        bpath = backup_path(self.path, self.run_id)
        if self.backup.status is FileStatus.MISSING:
            return text + f"; its backup {bpath} is missing"
        shown = _key_text(_key_fp(self.host, bpath, self.backup), self.backup)
        if self.backup_proven:
            return text + f"; its backup {bpath} is the original{shown}"
        original = f"sha256 {_short(self.hashes.old_sha256)}"
        if self.old_fp:
            original += f", key {self.old_fp}"
        return (
            text
            + f"; its backup {bpath} holds unknown content{shown}, not the original ({original})"
        )


def _key_fp(host: str, path: str, state: FileState) -> str | None:
    if state.content is None:
        return None
    return inspect_file(host, path, state.content).fingerprint


def _key_text(fingerprint: str | None, state: FileState) -> str:
    if state.status is FileStatus.MISSING:
        return ""
    if fingerprint is not None:
        return f" (key {fingerprint})"
    return f" (sha256 {_short(state.sha256)}, no readable key)"


def _short(digest: str | None) -> str:
    return f"{digest[:16]}…" if digest else "none"


def _classify(
    state: RunState,
    managed: Mapping[str, list[str]],
    nodes: Mapping[str, NodeOperations],
    accept: Collection[str],
    forks: int,
) -> dict[str, list[LiveFile]]:
    """Read every managed file, and the backup of each file on the new content."""

    def work(name: str, node: NodeOperations) -> list[LiveFile]:
        paths = managed[name]
        live = node.read(paths)
        files = [
            LiveFile(
                name,
                state.run_id,
                _hashes(state, name, p),
                state.file(name, p).old_fp or state.previous_fp,
                live[p],
                accepted=name in accept,
            )
            for p in paths
        ]
        unreadable = [f for f in files if f.live.status is FileStatus.ERROR]
        if unreadable:
            raise RecoveryError(
                f"cannot read {name}:{unreadable[0].path}: {unreadable[0].live.error}"
            )
        on_new = [f for f in files if f.new]
        if on_new:
            backups = node.read([backup_path(f.path, state.run_id) for f in on_new])
            for f in on_new:
                f.backup = backups[backup_path(f.path, state.run_id)]
        return files

    outcomes = run_each(((n, nodes[n]) for n in managed), work, forks)
    unread = {n: o.error for n, o in outcomes.items() if not o.ok}
    if unread:
        raise RecoveryError(
            f"cannot settle unfinished run {state.run_id} yet: "
            + "; ".join(describe_error(e) for e in unread.values())
        )
    return {n: o.value or [] for n, o in outcomes.items()}


def _unproven(state: RunState, files: Mapping[str, list[LiveFile]]) -> RecoveryError:
    everything = [f for fs in files.values() for f in fs]
    stuck = sorted({f.host for f in everything if f.new and not f.accepted and not f.backup_proven})
    return RecoveryError(
        f"run {state.run_id} cannot be rolled back: "
        + ", ".join(stuck)
        + " hold(s) the run's new content and no backup proven to be the original; "
        "nothing was changed, the run stays open",
        [
            *(f.describe() for f in everything),
            "to finish: put the original back on those files and run `farmsync recover`, "
            "or take their current files as the run's outcome with `farmsync recover "
            + " ".join(f"--accept-current {h}" for h in stuck)
            + "` (then `farmsync sync` or `farmsync rotate` puts one key everywhere)",
        ],
    )


# --- the recovery of one run -----------------------------------------------------------------


@dataclass
class _Recovery:
    """What every step of recovering one run works with."""

    state: RunState
    journal: Journal
    ctx: FarmContext
    accept: Collection[str]
    recorder: RunRecorder
    result: RunResult


def recover_run(
    state: RunState, journal: Journal, ctx: FarmContext, accept: Collection[str] = ()
) -> RunResult:
    ctx.reporter.event(Event(Phase.RECOVER, Status.INFO, None, f"unfinished run {state.run_id}"))
    run = _Recovery(
        state,
        journal,
        ctx,
        accept,
        RunRecorder(journal, state.run_id, state.kind),
        RunResult(
            state.run_id, state.kind, ctx.farm, Outcome.ABORTED, target_fingerprint=state.target_fp
        ),
    )
    if state.superseded_by is not None:
        return close_superseded_run(run)
    run.result.messages.extend(_unmanaged_notes(state, ctx.inventory))
    if state.kind == "restore":
        return close_interrupted_restore(run)
    managed = {h: ps for h, ps in _managed(state, ctx.inventory).items() if ps}
    if not managed:
        run.recorder.end(Outcome.ABORTED)
        run.result.messages.append(
            f"run {state.run_id} names no file the inventory manages: closed, nothing touched"
        )
        return run.result
    hosts = [ctx.inventory.hosts[h] for h in managed]
    with FarmSession(
        hosts, forks=ctx.options.forks, reporter=ctx.reporter, factory=ctx.factory
    ) as session:
        if not state.commit_attempted:
            return settle_unstarted_run(run, session, managed)
        if session.failures:
            raise RecoveryError(
                f"cannot settle unfinished run {state.run_id} yet: "
                + "; ".join(str(e) for e in session.failures.values())
            )
        files = classify_live_files(run, session, managed)
        outcome, replaced = finish_or_roll_back(run, session, files)
        outcome = recycle_and_clean_up(run, session, managed, files, outcome)
    return close_run(run, files, outcome, replaced)


def close_superseded_run(run: _Recovery) -> RunResult:
    """Every run settles the unfinished ones before it starts: a run left without an end when
    a later one started lost its end (a damaged line), and its nodes now hold what later runs
    wrote. Close it, touching nothing."""
    state = run.state
    run.journal.end_run(
        state.run_id, state.kind, StepResult.SKIPPED, detail="superseded by a later run"
    )
    run.result.outcome = Outcome.UNCHANGED
    run.result.messages.append(
        f"run {state.run_id} has no readable end, but run {state.superseded_by} started "
        "after it: closed without touching its nodes or the vault"
    )
    return run.result


def close_interrupted_restore(run: _Recovery) -> RunResult:
    """A restore puts one node's own backups back, file by file, each atomically: there is no
    farm-wide commit to finish or undo. Close it and say how to finish the job."""
    run.recorder.end(Outcome.ABORTED)
    run.result.messages.append(
        f"restore {run.state.run_id} was interrupted: run the same `farmsync restore` again"
    )
    return run.result


def settle_unstarted_run(
    run: _Recovery, session: FarmSession, managed: Mapping[str, list[str]]
) -> RunResult:
    """No commit was released, so no live file was touched: only harmless staging files may
    be left. Clean them up, abandon the run's key, close the run."""
    _clean_up(session, managed, run.state.run_id, run.ctx, run.result)
    _settle_vault(run.state, Outcome.ABORTED, run.ctx)
    run.recorder.end(Outcome.ABORTED)
    return run.result


def classify_live_files(
    run: _Recovery, session: FarmSession, managed: Mapping[str, list[str]]
) -> dict[str, list[LiveFile]]:
    """What every managed file holds now (the original, the run's new content or someone
    else's), and whether the backup of each file on the new content is the original."""
    files = _classify(run.state, managed, session.nodes, run.accept, run.ctx.options.forks)
    for live_files in files.values():
        for f in live_files:
            if not (f.original or f.new or f.accepted):
                # Changed by someone else since the run: not farmsync's to undo.
                run.result.messages.append(
                    f"{f.host}:{f.path} holds neither the run's old nor its new content; "
                    "left as it is"
                )
    return files


def finish_or_roll_back(
    run: _Recovery, session: FarmSession, files: Mapping[str, list[LiveFile]]
) -> tuple[Outcome, MachineKey | None]:
    """Finish the run when every file holds its new key, else roll the files on the new content
    back to their proven backups; refuse, touching nothing, if one has no such backup."""
    state, recorder = run.state, run.recorder
    everything = [f for fs in files.values() for f in fs]
    # Finished when every file holds the new key: the run's content, or accepted with it.
    everywhere = all(f.key_fp == state.target_fp if f.accepted else f.new for f in everything)
    undo = {n: [f for f in fs if f.new and not f.accepted] for n, fs in files.items()}
    undo = {n: fs for n, fs in undo.items() if fs}
    if not everywhere and any(not f.backup_proven for fs in undo.values() for f in fs):
        raise _unproven(state, files)

    for f in everything:
        if f.accepted:
            _record_accept(run.journal, state, f)
            run.result.messages.append(f"{f.describe(backup=False)}: accepted as the run's outcome")
    if everywhere:
        for name, live_files in files.items():
            hashes = [f.hashes for f in live_files if not f.accepted]
            recorder.files(Step.VERIFY, name, hashes, StepResult.OK)
        return Outcome.CHANGED, _replaced_key(state, files)

    def work(name: str, undone: list[LiveFile]) -> None:
        hashes = [f.hashes for f in undone]
        recorder.files(Step.ROLLBACK, name, hashes, StepResult.STARTED)
        restore_originals(session.nodes[name], hashes, state.run_id, "recover")
        recorder.files(Step.ROLLBACK, name, hashes, StepResult.OK)

    outcomes = run_each(undo.items(), work, run.ctx.options.forks)
    failed = {n: o.error for n, o in outcomes.items() if not o.ok}
    if failed:
        raise RecoveryError(
            f"could not roll back run {state.run_id}: "
            + "; ".join(describe_error(e) for e in failed.values())
        )
    return Outcome.ROLLED_BACK, None


def recycle_and_clean_up(
    run: _Recovery,
    session: FarmSession,
    managed: Mapping[str, list[str]],
    files: Mapping[str, list[LiveFile]],
    outcome: Outcome,
) -> Outcome:
    """Recycle the nodes the run changed (their processes must read the files as they now
    are), then remove staging files; failures are reported, not fatal."""
    touched = [n for n, fs in files.items() if any(f.new for f in fs)]
    recycled = _recycle(session, touched, run.recorder, run.ctx, run.result)
    _clean_up(session, managed, run.state.run_id, run.ctx, run.result)
    if not recycled and outcome is Outcome.CHANGED:
        return Outcome.RECYCLE_FAILED
    return outcome


def close_run(
    run: _Recovery,
    files: Mapping[str, list[LiveFile]],
    outcome: Outcome,
    replaced: MachineKey | None,
) -> RunResult:
    """Settle the run's key in the vault, then journal the run's end."""
    run.journal.release_reserve()  # what the dead run set aside, for the vault's save
    _settle_vault(run.state, outcome, run.ctx, replaced)
    run.recorder.end(outcome)
    run.result.outcome = outcome
    for name, live_files in files.items():
        status = "changed" if outcome is Outcome.CHANGED else "rolled-back"
        run.result.host(name).status = "accepted" if live_files[0].accepted else status
    return run.result


def _record_accept(journal: Journal, state: RunState, file: LiveFile) -> None:
    journal.append(
        state.run_id,
        state.kind,
        Step.ACCEPT,
        StepResult.OK,
        host=file.host,
        path=file.path,
        live_sha256=file.live.sha256 or "",
        detail="the operator accepted the file as it is (recover --accept-current)",
    )


def _recycle(
    session: FarmSession,
    touched: Sequence[str],
    recorder: RunRecorder,
    ctx: FarmContext,
    result: RunResult,
) -> bool:
    """Recycle the nodes whose live files the run changed; True when none failed."""
    if not ctx.options.recycle:
        return True
    targets = {
        n: session.nodes[n]
        for n in touched
        if n in session.nodes and session.hosts[n].recycle.kind is not RecycleKind.NONE
    }
    outcomes = run_each(targets.items(), lambda _n, node: node.recycle(), ctx.options.forks)
    for name, outcome in outcomes.items():
        recorder.host(
            Step.RECYCLE, name, StepResult.OK if outcome.ok else StepResult.FAILED, outcome.error
        )
        if outcome.ok:
            result.host(name).recycled = True
        else:
            result.messages.append(f"{name}: recycle failed: {describe_error(outcome.error)}")
    return all(o.ok for o in outcomes.values())


def _clean_up(
    session: FarmSession,
    managed: Mapping[str, list[str]],
    run_id: str,
    ctx: FarmContext,
    result: RunResult,
) -> None:
    outcomes = run_each(
        session.nodes.items(),
        lambda name, node: node.cleanup(managed[name], run_id, ctx.options.keep_backups),
        ctx.options.forks,
    )
    for name, outcome in outcomes.items():
        if not outcome.ok:
            # Leftover staging files are harmless; say so rather than fail the recovery.
            result.messages.append(f"{name}: cleanup failed: {describe_error(outcome.error)}")


def _hashes(state: RunState, host: str, path: str) -> FileHashes:
    progress = state.file(host, path)
    return FileHashes(path, progress.old_sha256 or "", progress.new_sha256 or "")


def _replaced_key(state: RunState, files: Mapping[str, list[LiveFile]]) -> MachineKey | None:
    """The one key every file held before a finished rotation, read back from a backup.

    A first rotation records that (hand-made) key in the vault so `rollback` can return to
    it; a run finished by recovery does the same. Only a backup proven to be the original
    counts.
    """
    if state.kind != "rotate" or not state.previous_fp:
        return None
    for host, live_files in files.items():
        for file in live_files:
            if not file.backup_proven or file.backup is None or file.backup.content is None:
                continue
            bpath = backup_path(file.path, state.run_id)
            try:
                found = inspect_config(file.backup.content, f"{host}:{bpath}").root_key
            except ConfigFileError:
                continue
            if found is not None and found.key.fingerprint() == state.previous_fp:
                return found.key
    return None


def _settle_vault(
    state: RunState, outcome: Outcome, ctx: FarmContext, replaced: MachineKey | None = None
) -> None:
    """A finished rotate or rollback makes its key the active one; an undone rotate abandons it
    (unless the vault already made it active: then it is the key `sync` should deploy)."""
    if state.kind not in ("rotate", "rollback") or not state.target_fp:
        return
    if not ctx.state.vault.exists():
        return  # a run that never got to store its key
    vault = KeyVault.open(ctx.state.vault, ctx.vault_secret())
    settle_key(vault, state.kind, state.target_fp, outcome, state.run_id, replaced)
