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
files as they are (``farmsync recover --accept-current HOST``). What each file holds, and
what recovery may touch, is :mod:`livefiles`'s; this module is the steps.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from farmsync.errors import ConfigFileError, ExitCode, FarmsyncError, InputError, describe_error
from farmsync.inventory.model import Inventory, RecycleKind
from farmsync.keys.machinekey import MachineKey
from farmsync.keys.vault import KeyVault
from farmsync.nodes.contract import backup_path
from farmsync.orchestration.context import FarmContext
from farmsync.orchestration.events import Event, Phase, Status
from farmsync.orchestration.journal import Journal, RunKind, RunState, Step, StepResult
from farmsync.orchestration.livefiles import (
    LiveFile,
    managed_paths,
    read_live_files,
    unmanaged_notes,
    unproven_report,
)
from farmsync.orchestration.pool import run_each
from farmsync.orchestration.recorder import RunRecorder
from farmsync.orchestration.result import HostStatus, Outcome, RunResult
from farmsync.orchestration.rollout import restore_originals
from farmsync.orchestration.session import FarmSession
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
        if not any(managed_paths(state, inventory).get(host) for state in unfinished):
            raise InputError(
                f"{host} has no file in an unfinished run: there is nothing to accept",
                source="--accept-current",
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
        RunRecorder(journal, state.run_id, RunKind(state.kind)),
        RunResult(
            state.run_id,
            RunKind(state.kind),
            ctx.farm,
            Outcome.ABORTED,
            target_fingerprint=state.target_fp,
        ),
    )
    if state.superseded_by is not None:
        return close_superseded_run(run)
    run.result.messages.extend(unmanaged_notes(state, ctx.inventory))
    if state.kind == RunKind.RESTORE:
        return close_interrupted_restore(run)
    managed = {h: ps for h, ps in managed_paths(state, ctx.inventory).items() if ps}
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
    for name in managed:
        run.result.host(name).status = HostStatus.CLEANED_UP  # staging files only
    return run.result


def classify_live_files(
    run: _Recovery, session: FarmSession, managed: Mapping[str, list[str]]
) -> dict[str, list[LiveFile]]:
    """What every managed file holds now (the original, the run's new content or someone
    else's), and whether the backup of each file on the new content is the original."""
    outcomes = read_live_files(run.state, managed, session.nodes, run.accept, run.ctx.options.forks)
    unread = {n: o.error for n, o in outcomes.items() if not o.ok}
    if unread:
        raise RecoveryError(
            f"cannot settle unfinished run {run.state.run_id} yet: "
            + "; ".join(describe_error(e) for e in unread.values())
        )
    files = {n: o.value or [] for n, o in outcomes.items()}
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
        raise RecoveryError(*unproven_report(state, files))

    for f in everything:
        if f.accepted:
            _record_accept(run.journal, state, f)
            run.result.messages.append(f"{f.describe(backup=False)}: accepted as the run's outcome")
    if everywhere:
        with recorder.batch():
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
        # A host none of whose files had the new content had nothing to undo.
        done = HostStatus.ROLLED_BACK if any(f.new for f in live_files) else HostStatus.UNCHANGED
        status = HostStatus.CHANGED if outcome is Outcome.CHANGED else done
        run.result.host(name).status = HostStatus.ACCEPTED if live_files[0].accepted else status
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
    with recorder.batch():
        for name, outcome in outcomes.items():
            recorder.host(
                Step.RECYCLE,
                name,
                StepResult.OK if outcome.ok else StepResult.FAILED,
                outcome.error,
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


def _replaced_key(state: RunState, files: Mapping[str, list[LiveFile]]) -> MachineKey | None:
    """The one key every file held before a finished rotation, read back from a backup.

    A first rotation records that (hand-made) key in the vault so `rollback` can return to
    it; a run finished by recovery does the same. Only a backup proven to be the original
    counts.
    """
    if state.kind != RunKind.ROTATE or not state.previous_fp:
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
    if state.kind not in (RunKind.ROTATE, RunKind.ROLLBACK) or not state.target_fp:
        return
    if not ctx.state.vault.exists():
        return  # a run that never got to store its key
    vault = KeyVault.open(ctx.state.vault, ctx.vault_secret())
    settle_key(vault, RunKind(state.kind), state.target_fp, outcome, state.run_id, replaced)
