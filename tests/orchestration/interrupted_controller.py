"""A real controller process that waits for a real SIGINT/SIGTERM at a chosen point of a run.

Usage: python -m tests.orchestration.interrupted_controller INVENTORY HOST HOOK
  HOOK is a HookedNode hook name (stage, arm, release, released, ...) on HOST.
Prints "WAITING" when it reaches the point, waits there until the signal has been handled,
then lets the run go on and decide; prints the result as JSON and exits with its code.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from farmsync.inventory.loader import load_inventory
from farmsync.inventory.patterns import select_hosts
from farmsync.keys.vault import VaultSecret
from farmsync.orchestration import interrupt
from farmsync.orchestration.context import FarmContext
from farmsync.orchestration.farm import Farm
from farmsync.orchestration.options import RolloutOptions
from farmsync.orchestration.state import StateDir
from tests.orchestration.farmkit import hooked_factory


def wait_for_signal() -> None:
    print("WAITING", flush=True)
    interrupt.REQUESTED._event.wait(30)


def main() -> None:
    inventory_path, host, hook = sys.argv[1], sys.argv[2], sys.argv[3]
    interrupt.install()
    inventory = load_inventory(inventory_path)
    ctx = FarmContext(
        inventory=inventory,
        hosts=select_hosts(inventory, None),
        state=StateDir(Path(os.environ["FARMSYNC_STATE_DIR"]), inventory.farm),
        vault_secret=lambda: VaultSecret.from_env(os.environ),
        options=RolloutOptions(forks=1, timeout=30),
        factory=hooked_factory({host: {hook: wait_for_signal}}),
    )
    result = Farm(ctx).rotate()
    print(json.dumps(result.to_dict()), flush=True)
    sys.exit(result.exit_code)


if __name__ == "__main__":
    main()
