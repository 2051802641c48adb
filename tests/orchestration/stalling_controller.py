"""A real controller process that stalls at a chosen point of its commit, to be SIGKILLed.

Usage: python -m tests.orchestration.stalling_controller INVENTORY HOST before|after|restore:RUN
  before: stall just before releasing HOST's commit (others already released)
  after:  stall just after releasing HOST's commit (before verification and run end)
  restore:RUN: restore HOST's backups of run RUN, stalling just before they are put back
Prints "STALLED" when it reaches the point, then sleeps until killed.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from farmsync.inventory.loader import load_inventory
from farmsync.inventory.patterns import select_hosts
from farmsync.keys.vault import VaultSecret
from farmsync.orchestration.context import FarmContext
from farmsync.orchestration.farm import Farm
from farmsync.orchestration.rollout import RolloutOptions
from farmsync.orchestration.state import StateDir
from tests.orchestration.farmkit import hooked_factory


def stall() -> None:
    print("STALLED", flush=True)
    while True:
        time.sleep(60)


def main() -> None:
    inventory_path, host, when = sys.argv[1], sys.argv[2], sys.argv[3]
    inventory = load_inventory(inventory_path)
    restore_run = when.removeprefix("restore:") if when.startswith("restore:") else None
    hook = "rollback" if restore_run else "release" if when == "before" else "released"
    ctx = FarmContext(
        inventory=inventory,
        hosts=select_hosts(inventory, None),
        state=StateDir(Path(os.environ["FARMSYNC_STATE_DIR"]), inventory.farm),
        vault_secret=lambda: VaultSecret.from_env(os.environ),
        options=RolloutOptions(forks=1, timeout=30),
        factory=hooked_factory({host: {hook: stall}}),
    )
    farm = Farm(ctx)
    result = farm.restore(host, restore_run) if restore_run else farm.rotate()
    # Never stalled: say why, for the test that waits for "STALLED".
    print(f"FINISHED {result.outcome.value}: {'; '.join(result.messages)}", flush=True)


if __name__ == "__main__":
    main()
