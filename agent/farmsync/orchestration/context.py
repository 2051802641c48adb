"""Everything a farm command needs, assembled once by the CLI (or a test)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from farmsync.inventory.model import Host, Inventory, Policy
from farmsync.keys.vault import VaultSecret
from farmsync.nodes.connect import node_for
from farmsync.orchestration.events import NullReporter, Reporter
from farmsync.orchestration.options import RolloutOptions
from farmsync.orchestration.session import NodeFactory
from farmsync.orchestration.state import StateDir


@dataclass
class FarmContext:
    inventory: Inventory
    hosts: Sequence[Host]  # after --limit
    state: StateDir
    vault_secret: Callable[[], VaultSecret]
    options: RolloutOptions = field(default_factory=RolloutOptions)
    reporter: Reporter = field(default_factory=NullReporter)
    factory: NodeFactory = node_for
    command: str = "farmsync"
    lock_wait: float = 0.0  # seconds to wait for a farm lock another run holds (--wait)

    @property
    def farm(self) -> str:
        return self.inventory.farm

    def policy(self) -> Policy:
        return self.inventory.policy  # one per farm: the inventory loader checks that
