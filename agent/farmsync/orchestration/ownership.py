"""One farm, one history: a run's farm marker, and the refusal to move a farm backwards.

Between reading the nodes and planning, a run that changes keys compares the markers on the
nodes with its vault (:func:`farmsync.orchestration.marker.check_farm`), then picks the marker
it will write: the next generation, the farm's id. Just before the first node is touched the
vault records that generation (write-ahead, like the key itself), so a vault is never behind
a farm it wrote, even when its controller dies mid-run.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from farmsync.keys.vault import KeyVault
from farmsync.orchestration.marker import Marker, check_farm, markers_of
from farmsync.orchestration.survey import NodeReport


def vault_location(vault_path: str) -> str:
    """Where a vault lives, as a marker names it: the controller's host name and the path."""
    return f"{socket.gethostname()}:{vault_path}"


@dataclass
class Ownership:
    """The marker step of one run (``marker_for`` of :meth:`Rollout.run`)."""

    # The run's vault (None: --check before any vault exists), called where it is first
    # needed: a rotation's is still being opened while the nodes are read.
    vault: Callable[[], KeyVault | None]
    vault_path: str
    farm: str
    run_id: str
    command: str  # rotate | sync | rollback
    target_fp: str
    adopt: bool = False
    chosen: Marker | None = None
    takeover: dict[str, Any] | None = None

    def __call__(self, reports: Mapping[str, NodeReport]) -> Marker:
        found = markers_of(reports)
        vault = self.vault()
        identity = vault.identity if vault is not None else None
        vault_generation = identity.generation if identity is not None else 0
        newest = found.newest
        if self.adopt:
            if newest is not None and (identity is None or newest.vault_id != identity.vault_id):
                self.takeover = {
                    "at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "run_id": self.run_id,
                    "from_vault_id": newest.vault_id,
                    "from_vault": newest.vault,
                    "from_generation": newest.generation,
                    "from_farm": newest.farm,
                }
        else:
            check_farm(
                found,
                farm=self.farm,
                vault_id=identity.vault_id if identity is not None else "(no vault yet)",
                vault_generation=vault_generation,
                vault_path=self.vault_path,
                command=self.command,
            )
        farm_id = (
            found.farm_id
            or (identity.farm_id if identity is not None else None)
            or secrets.token_hex(8)
        )
        self.chosen = Marker(
            farm=self.farm,
            farm_id=farm_id,
            generation=max(vault_generation, found.generation) + 1,
            fingerprint=self.target_fp,
            run_id=self.run_id,
            vault_id=identity.vault_id if identity is not None else "",
            vault=vault_location(self.vault_path),
        )
        return self.chosen

    def record(self) -> None:
        """Write-ahead: the vault learns the generation before any node carries it."""
        vault = self.vault()
        if vault is not None and self.chosen is not None:
            vault.advance(self.chosen.generation, self.chosen.farm_id, self.takeover)

    def message(self) -> str | None:
        if self.takeover is None:
            return None
        return (
            f"took the farm over from vault {self.takeover['from_vault_id']} at "
            f"{self.takeover['from_vault'] or 'an unknown place'} (generation "
            f"{self.takeover['from_generation']}); this vault now writes its key"
        )
