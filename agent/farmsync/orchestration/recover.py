"""Bringing a run that a dead controller left unfinished to a consistent state.

The journal says, per node and file, the hash before the run and the hash of the staged
content, and whether a commit may have been released. The live files then say where each
node is. The rule: a run whose commit was never released changed nothing (only staging
files to clean); a run where every file holds the new content is finished; anything else is
rolled back to the backups, so the farm ends on the old key.
"""

from __future__ import annotations

from collections.abc import Mapping

from farmsync.errors import ConfigFileError, ExitCode, FarmsyncError, InputError, describe_error
from farmsync.inventory.model import RecycleKind
from farmsync.keys.machinekey import MachineKey
from farmsync.keys.vault import KeyVault
from farmsync.nodes.contract import NodeOperations, backup_path
from farmsync.orchestration.context import FarmContext
from farmsync.orchestration.events import Event, Phase, Status
from farmsync.orchestration.journal import Journal, RunKind, RunState, Step, StepResult
from farmsync.orchestration.pool import run_each
from farmsync.orchestration.recorder import FileHashes, RunRecorder
from farmsync.orchestration.result import HostStatus, Outcome, RunResult
from farmsync.orchestration.rollout import restore_originals
from farmsync.orchestration.session import FarmSession
from farmsync.orchestration.vaultstate import settle_key
from farmsync.webconfig.parser import inspect_config


class RecoveryError(FarmsyncError):
    """An unfinished run cannot be settled yet (a node is unreachable)."""

    exit_code = ExitCode.CANNOT_START


def recover_runs(journal: Journal, ctx: FarmContext, current_run: str) -> list[RunResult]:
    """Settle every unfinished run in the journal; raise RecoveryError if one cannot be."""
    return [
        recover_run(state, journal, ctx)
        for state in journal.unfinished_runs()
        if state.run_id != current_run
    ]


def recover_run(state: RunState, journal: Journal, ctx: FarmContext) -> RunResult:
    ctx.reporter.event(Event(Phase.RECOVER, Status.INFO, None, f"unfinished run {state.run_id}"))
    missing = [h for h in state.hosts if h not in ctx.inventory.hosts]
    if missing:
        raise InputError(
            f"unfinished run {state.run_id} involves hosts not in this inventory: "
            + ", ".join(sorted(missing)),
            source=ctx.inventory.path,
        )
    hosts = [ctx.inventory.hosts[h] for h in state.hosts]
    recorder = RunRecorder(journal, state.run_id, RunKind(state.kind))
    result = RunResult(
        state.run_id,
        RunKind(state.kind),
        ctx.farm,
        Outcome.ABORTED,
        target_fingerprint=state.target_fp,
    )
    if state.kind == RunKind.RESTORE:
        # A restore puts one node's own backups back, file by file, each atomically: there is
        # no farm-wide commit to finish or undo. Close it and say how to finish the job.
        recorder.end(Outcome.ABORTED)
        result.messages.append(
            f"restore {state.run_id} was interrupted: run the same `farmsync restore` again"
        )
        return result
    hashes = {h: [_hashes(state, h, p) for p in paths] for h, paths in state.hosts.items()}

    with FarmSession(
        hosts, forks=ctx.options.forks, reporter=ctx.reporter, factory=ctx.factory
    ) as session:
        if not state.commit_attempted:
            # No live file was touched: only staging files may be left, and they are harmless.
            run_each(
                session.nodes.items(),
                lambda name, node: node.cleanup(
                    list(state.hosts[name]), state.run_id, ctx.options.keep_backups
                ),
                ctx.options.forks,
            )
            _settle_vault(state, Outcome.ABORTED, ctx)
            recorder.end(Outcome.ABORTED)
            for name in state.hosts:
                result.host(name).status = HostStatus.CLEANED_UP  # staging files only
            return result
        if session.failures:
            raise RecoveryError(
                f"cannot settle unfinished run {state.run_id} yet: "
                + "; ".join(str(e) for e in session.failures.values())
            )

        live = run_each(
            session.nodes.items(),
            lambda name, node: node.read(list(state.hosts[name])),
            ctx.options.forks,
        )
        unread = {n: o.error for n, o in live.items() if not o.ok}
        if unread:
            raise RecoveryError(
                f"cannot settle unfinished run {state.run_id} yet: "
                + "; ".join(describe_error(e) for e in unread.values())
            )
        on_new = {
            name: [f for f in hashes[name] if (o.value or {})[f.path].sha256 == f.new_sha256]
            for name, o in live.items()
        }
        for name, o in live.items():
            for f in hashes[name]:
                if (o.value or {})[f.path].sha256 not in (f.old_sha256, f.new_sha256):
                    # Changed by someone else since the run: not farmsync's to undo.
                    result.messages.append(
                        f"{name}:{f.path} holds neither the run's old nor its new content; "
                        "left as it is"
                    )
        everywhere = all(len(on_new[n]) == len(hashes[n]) for n in hashes)

        replaced: MachineKey | None = None
        if everywhere:
            outcome = Outcome.CHANGED
            for name in hashes:
                recorder.files(Step.VERIFY, name, hashes[name], StepResult.OK)
            replaced = _replaced_key(state, session.nodes)
        else:
            outcome = Outcome.ROLLED_BACK
            undo = {n: files for n, files in on_new.items() if files}

            def work(name: str, files: list[FileHashes]) -> None:
                node = session.nodes[name]
                recorder.files(Step.ROLLBACK, name, files, StepResult.STARTED)
                restore_originals(node, files, state.run_id, "recover")
                recorder.files(Step.ROLLBACK, name, files, StepResult.OK)

            failed = {
                n: o.error
                for n, o in run_each(undo.items(), work, ctx.options.forks).items()
                if not o.ok
            }
            if failed:
                raise RecoveryError(
                    f"could not roll back run {state.run_id}: "
                    + "; ".join(describe_error(e) for e in failed.values())
                )

        touched = {n: session.nodes[n] for n in hashes if on_new[n]}
        recycled: set[str] = set()
        if ctx.options.recycle:
            recycling = run_each(
                (
                    (n, node)
                    for n, node in touched.items()
                    if session.hosts[n].recycle.kind is not RecycleKind.NONE
                ),
                lambda _n, node: node.recycle(),
                ctx.options.forks,
            )
            recycled = {n for n, o in recycling.items() if o.ok}
        run_each(
            session.nodes.items(),
            lambda name, node: node.cleanup(
                list(state.hosts[name]), state.run_id, ctx.options.keep_backups
            ),
            ctx.options.forks,
        )

    _settle_vault(state, outcome, ctx, replaced)
    recorder.end(outcome)
    result.outcome = outcome
    for name in hashes:
        # A host none of whose files had the new content had nothing to undo.
        done = HostStatus.ROLLED_BACK if on_new[name] else HostStatus.UNCHANGED
        result.host(name).status = HostStatus.CHANGED if outcome is Outcome.CHANGED else done
        result.host(name).recycled = name in recycled
    return result


def _hashes(state: RunState, host: str, path: str) -> FileHashes:
    progress = state.file(host, path)
    return FileHashes(path, progress.old_sha256 or "", progress.new_sha256 or "")


def _replaced_key(state: RunState, nodes: Mapping[str, NodeOperations]) -> MachineKey | None:
    """The one key every file held before a finished rotation, read back from a backup.

    A first rotation records that (hand-made) key in the vault so `rollback` can return to
    it; a run finished by recovery does the same.
    """
    if state.kind != RunKind.ROTATE or not state.previous_fp:
        return None
    for host, paths in state.hosts.items():
        node = nodes.get(host)
        if node is None or not paths:
            continue
        backup = backup_path(paths[0], state.run_id)
        content = node.read([backup])[backup].content
        if content is None:
            continue
        try:
            found = inspect_config(content, f"{host}:{backup}").root_key
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
