"""What a run's outcome means for its key in the vault: one rule for runs and for recovery."""

from __future__ import annotations

from farmsync.keys.machinekey import MachineKey
from farmsync.keys.vault import KeyStatus, KeyVault
from farmsync.orchestration.journal import RunKind
from farmsync.orchestration.result import Outcome


def settle_key(
    vault: KeyVault,
    kind: RunKind,
    fingerprint: str,
    outcome: Outcome,
    run_id: str,
    replaced: MachineKey | None = None,
) -> None:
    """A deployed key becomes the farm's active key; a first rotation also records the
    hand-made key it ``replaced`` (as retired) so `rollback` can go back to it. A rotation's
    key that was not deployed is abandoned, unless the vault already moved it on (active,
    retired)."""
    entry = vault.find(fingerprint)
    if entry is None:
        return
    if outcome is Outcome.CHANGED:
        with vault.one_save():  # one scrypt, not one per change
            if replaced is not None and replaced.is_explicit:
                vault.import_retired(replaced, run_id)
            vault.mark_active(fingerprint, run_id)
    elif kind is RunKind.ROTATE and entry.status is KeyStatus.GENERATED:
        # Only a key that never went further: a retired key stays a rollback target even if
        # a journal record (damaged, forged) says its run failed.
        vault.mark_abandoned(fingerprint)
