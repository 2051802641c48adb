"""Assemble a FarmContext from command-line values: inventory, --limit, state dir, vault secret."""

from __future__ import annotations

import os
from pathlib import Path

from farmsync.keys.vault import VaultSecret
from farmsync.orchestration.context import FarmContext
from farmsync.orchestration.events import Reporter
from farmsync.orchestration.farm import Farm
from farmsync.orchestration.rollout import RolloutOptions


def build_context(
    inventory_path: Path,
    limit: str | None,
    options: RolloutOptions,
    state_dir: Path | None,
    vault_key_file: Path | None,
    reporter: Reporter,
) -> FarmContext:
    key_file = str(vault_key_file) if vault_key_file else None
    return Farm.open(
        inventory_path,
        limit=limit,
        state_dir=state_dir,
        # The secret is read only by commands that open the vault, and only then.
        secret=lambda: VaultSecret.from_env(os.environ, key_file),
        options=options,
        reporter=reporter,
    ).ctx
