"""Fixtures: a real lab farm (farmsync.lab): sshd + Mono System.Web per node.

``lab_host_cache``  session: where the lab host is compiled with mcs (once per session/worker)
``lab_farm``        module: a running :class:`LabFarm` of N nodes, each on its own key, torn
                    down by pid. N is 2, or the test module's ``LAB_NODES``, or the value of
                    an indirect parametrisation (``@pytest.mark.parametrize("lab_farm", [3],
                    indirect=True)``). Tests sharing one lab should keep to one xdist worker:
                    ``pytestmark = pytest.mark.xdist_group("<module>")``.

A missing Mono is a failure with a clear message, never a skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from farmsync.inventory.loader import load_inventory
from farmsync.inventory.model import Inventory
from farmsync.lab.aspnet import AspNetNode, LabError, pid_alive, require_mono
from farmsync.lab.farm import Lab, LabStatus

MONO_MISSING = "Mono is not installed; run make test"
DEFAULT_LAB_NODES = 2


@dataclass
class LabFarm:
    lab: Lab
    started: LabStatus  # as it was right after `up`
    inventory_path: Path

    @property
    def urls(self) -> list[str]:
        return [node.http_url for node in self.started.nodes]

    @property
    def names(self) -> list[str]:
        return [node.name for node in self.started.nodes]

    def aspnet(self, name: str) -> AspNetNode:
        return AspNetNode.load(self.lab.state_dir / name)

    def url(self, name: str) -> str:
        return self.aspnet(name).url

    def inventory(self) -> Inventory:
        return load_inventory(self.inventory_path)

    def pids(self) -> list[int]:
        """Every lab process alive now (ASP.NET hosts, possibly restarted, and sshds)."""
        found: list[int] = []
        for node in self.lab.status().nodes:
            found += [p for p in (node.aspnet_pid, node.sshd_pid) if p is not None]
        return found


def require_mono_or_fail() -> None:
    try:
        require_mono()
    except LabError:
        pytest.fail(MONO_MISSING, pytrace=False)


@pytest.fixture(scope="session")
def lab_host_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lab-host-cache")


@pytest.fixture(scope="module")
def lab_farm(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    lab_host_cache: Path,
) -> Iterator[LabFarm]:
    require_mono_or_fail()
    count = int(
        getattr(request, "param", None) or getattr(request.module, "LAB_NODES", DEFAULT_LAB_NODES)
    )
    root = tmp_path_factory.mktemp("lab")
    inventory_path = root / "inventory" / "lab.yml"
    lab = Lab(root / ".lab", inventory_path=inventory_path, cache_dir=lab_host_cache)
    started = lab.up(count)
    farm = LabFarm(lab, started, inventory_path)
    try:
        yield farm
    finally:
        pids = farm.pids() + [p for n in started.nodes for p in (n.aspnet_pid, n.sshd_pid) if p]
        lab.down()
        left = sorted({pid for pid in pids if pid_alive(pid)})
        assert not left, f"lab processes left running after down: {left}"
