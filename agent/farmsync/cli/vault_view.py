"""``farmsync vault rekey``: the same vault under a new passphrase or key file."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from farmsync.cli.secret import prompt_secret, vault_secret_source
from farmsync.errors import InputError, VaultError
from farmsync.inventory.loader import load_inventory
from farmsync.keys.vault import KeyVault, VaultSecret
from farmsync.orchestration.lock import FarmLock
from farmsync.orchestration.state import StateDir, default_state_root


def rekey(
    inventory_path: Path,
    state_dir: Path | None,
    key_file: Path | None,
    new_key_file: Path | None,
    new_passphrase_env: str | None,
    out: Console,
) -> None:
    """Open the vault with the current secret and save it under the new one, under the
    farm's lock (no run saves it meanwhile). The file is replaced atomically: a crash leaves
    the old vault or the new one, never neither."""
    inventory = load_inventory(inventory_path)
    state = StateDir(state_dir or default_state_root(), inventory.farm)
    if not state.vault.exists():
        raise VaultError(f"no key vault at {state.vault}")
    if new_key_file is not None and new_passphrase_env is not None:
        raise InputError("give --new-key-file or --new-passphrase-env, not both")
    with FarmLock(state.lock, inventory.farm, command="farmsync vault rekey"):
        vault = KeyVault.open(state.vault, vault_secret_source(key_file)(), farm=inventory.farm)
        if new_key_file is not None:
            new = VaultSecret.from_key_file(new_key_file)
        elif new_passphrase_env is not None:
            value = os.environ.get(new_passphrase_env)
            if not value:
                raise InputError(
                    f"environment variable {new_passphrase_env} is not set",
                    source="--new-passphrase-env",
                )
            new = VaultSecret.from_passphrase(value, new_passphrase_env)
        else:
            new = prompt_secret("New vault passphrase", confirm=True)
        vault.change_secret(new)
        # The proof: the file opens with the new secret.
        KeyVault.open(state.vault, new, farm=inventory.farm)
    out.print(
        f"vault {escape(str(state.vault))} of farm {escape(inventory.farm)} is now sealed "
        f"with {escape(new.source)}; the old secret no longer opens it"
    )
