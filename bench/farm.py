"""A benchmark farm: an inventory file, one root web.config per host, a FarmContext to rotate it.

The configs and the inventory are written with the test farm's helpers (tests.orchestration.
farmkit), so the bench and the tests drive farmsync through exactly the same front door.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.orchestration.farmkit import PASSPHRASE, node_config, write_inventory

from farmsync.inventory.loader import load_inventory
from farmsync.inventory.model import Host
from farmsync.inventory.patterns import select_hosts
from farmsync.keys.vault import VaultSecret
from farmsync.nodes.connect import node_for
from farmsync.nodes.contract import NodeOperations
from farmsync.orchestration.context import FarmContext
from farmsync.orchestration.events import Reporter
from farmsync.orchestration.farm import Farm
from farmsync.orchestration.options import RolloutOptions
from farmsync.orchestration.result import RunResult
from farmsync.orchestration.state import StateDir

HostVars = dict[str, Any]


class NodeLedger:
    """A node factory that keeps every node it made, to read ``round_trips`` after the run."""

    def __init__(self, factory: Callable[[Host], NodeOperations] = node_for):
        self._factory = factory
        self._lock = threading.Lock()
        self.nodes: dict[str, list[NodeOperations]] = {}

    def __call__(self, host: Host) -> NodeOperations:
        node = self._factory(host)
        with self._lock:
            self.nodes.setdefault(host.name, []).append(node)
        return node

    def reset(self) -> None:
        with self._lock:
            self.nodes = {}

    def round_trips(self) -> dict[str, int]:
        """Per host, over every connection the run opened (a reconnect is a second node)."""
        return {name: sum(n.round_trips for n in nodes) for name, nodes in self.nodes.items()}

    def connections(self) -> dict[str, int]:
        return {name: len(nodes) for name, nodes in self.nodes.items()}


@dataclass
class BenchFarm:
    root: Path
    inventory_path: Path
    state_root: Path
    configs: dict[str, Path] = field(default_factory=dict)
    environ: dict[str, str] = field(default_factory=dict)  # what the inventory's *_env names

    @classmethod
    def write(
        cls,
        root: Path,
        farm: str,
        hosts: dict[str, HostVars],
        configs: dict[str, Path],
        environ: dict[str, str] | None = None,
    ) -> BenchFarm:
        """Write each host's web.config (its own explicit key) and the inventory naming them."""
        for name, path in configs.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(node_config(name))
        inventory = root / f"{farm}.yml"
        write_inventory(inventory, farm, hosts)
        return cls(root, inventory, root / "state", dict(configs), dict(environ or {}))

    def context(
        self,
        *,
        forks: int,
        reporter: Reporter,
        factory: Callable[[Host], NodeOperations],
        timeout: float = 30.0,
    ) -> FarmContext:
        inventory = load_inventory(self.inventory_path, environ=self.environ)
        return FarmContext(
            inventory=inventory,
            hosts=select_hosts(inventory, None),
            state=StateDir(self.state_root, inventory.farm),
            vault_secret=lambda: VaultSecret.from_passphrase(PASSPHRASE),
            options=RolloutOptions(forks=forks, timeout=timeout),
            reporter=reporter,
            factory=factory,
        )


def rotate(ctx: FarmContext) -> tuple[RunResult, float]:
    """One full ``rotate`` in process; returns the result and its wall time in seconds."""
    start = time.monotonic()
    result = Farm(ctx).rotate()
    return result, time.monotonic() - start
