"""Assemble a FarmContext from command-line values: inventory, --limit, state dir, vault secret."""

from __future__ import annotations

import sys
from pathlib import Path

from farmsync.cli.printable import printable
from farmsync.cli.secret import vault_secret_source
from farmsync.inventory.loader import load_inventory
from farmsync.orchestration.context import FarmContext
from farmsync.orchestration.events import Reporter
from farmsync.orchestration.farm import Farm
from farmsync.orchestration.options import RolloutOptions


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
        text = printable(f"{where}: {warning.message}")
        print(f"farmsync: warning: {text}", file=sys.stderr, flush=True)
    return Farm.open(
        inventory,
        limit=limit,
        state_dir=state_dir,
        # The secret is read only by commands that open the vault, and only then.
        secret=vault_secret_source(vault_key_file),
        options=options,
        reporter=reporter,
    ).ctx
