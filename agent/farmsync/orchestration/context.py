"""Everything a farm command needs, assembled once by the CLI (or a test)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from farmsync.errors import InputError
from farmsync.inventory.model import Host, Inventory, Policy
from farmsync.keys.vault import VaultSecret
from farmsync.nodes.connect import node_for
from farmsync.orchestration.events import NullReporter, Reporter
from farmsync.orchestration.rollout import RolloutOptions
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
        policies = {h.policy for h in self.hosts}
        if len(policies) > 1:
            raise InputError(
                "hosts of one farm must share one farmsync_policy",
                source=self.inventory.path,
            )
        return next(iter(policies)) if policies else Policy()
