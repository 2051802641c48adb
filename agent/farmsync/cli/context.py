"""Assemble a FarmContext from command-line values: inventory, --limit, state dir, vault secret."""

from __future__ import annotations

import sys
from pathlib import Path

from farmsync.cli.secret import vault_secret_source
from farmsync.inventory.loader import load_inventory
from farmsync.inventory.paths import require_controller_files
from farmsync.inventory.patterns import select_hosts
from farmsync.orchestration.context import FarmContext
from farmsync.orchestration.events import Reporter
from farmsync.orchestration.rollout import RolloutOptions
from farmsync.orchestration.state import StateDir, default_state_root


def build_context(
    inventory_path: Path,
    limit: str | None,
    options: RolloutOptions,
    state_dir: Path | None,
    vault_key_file: Path | None,
    reporter: Reporter,
) -> FarmContext:
    inventory = load_inventory(inventory_path)
    for warning in inventory.warnings:  # a typo'd ansible_* name, a plain-text password, ...
        where = f"{warning.source}:{warning.line}" if warning.line else warning.source
        print(f"farmsync: warning: {where}: {warning.message}", file=sys.stderr, flush=True)
    require_controller_files(inventory)  # a missing key file is bad input, named, exit 2
    hosts = select_hosts(inventory, limit)
    state = StateDir(state_dir or default_state_root(), inventory.farm)
    return FarmContext(
        inventory=inventory,
        hosts=hosts,
        state=state,
        # The secret is read only by commands that open the vault, and only then.
        vault_secret=vault_secret_source(vault_key_file),
        options=options,
        reporter=reporter,
    )
