"""The bench's simulated transport (bench/sim_transport.py) holds the node contract.

It proves the harness, not a speed: a real rotation (inventory, vault, journal, two-phase
rollout) over 20 simulated nodes with a 2 ms round trip must leave every node's file on the
new key, keep byte-identical backups, count its round trips, and, when a node's file changes
under the barrier, end all-old with every original back byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench.farm import BenchFarm, NodeLedger, rotate
from bench.measure import PhaseClock
from bench.sim_scenario import CONFIG_PATH, sim_fingerprints, sim_hosts
from bench.sim_transport import SimNetwork, SimNode

from farmsync.inventory.model import Host
from farmsync.nodes.contract import NodeOperations, backup_path
from farmsync.orchestration.result import Outcome
from tests.orchestration.farmkit import HookedNode, node_config

NODES = 20


def _farm(tmp_path: Path, network: SimNetwork) -> tuple[BenchFarm, dict[str, bytes]]:
    hosts = sim_hosts(NODES)
    originals = {name: node_config(name) for name in hosts}
    for name, content in originals.items():
        network.disk(name).write(CONFIG_PATH, content)
    return BenchFarm.write(tmp_path, "simtest", hosts, {}), originals


def _rotate(
    farm: BenchFarm, factory: Callable[[Host], NodeOperations]
) -> tuple[Outcome, str | None, NodeLedger]:
    ledger = NodeLedger(factory)
    result, _wall = rotate(farm.context(forks=8, reporter=PhaseClock(), factory=ledger))
    return result.outcome, result.target_fingerprint, ledger


def test_rotation_puts_every_simulated_node_on_the_new_key(tmp_path: Path) -> None:
    with SimNetwork(rtt=0.002, jitter=0.001, connect_rtts=1) as network:
        farm, originals = _farm(tmp_path, network)
        outcome, target, ledger = _rotate(farm, network.factory)

        assert outcome is Outcome.CHANGED
        assert set(sim_fingerprints(network).values()) == {target}
        # read, stage, arm(+release), verify read, cleanup: one connection, five round trips.
        assert ledger.connections() == dict.fromkeys(originals, 1)
        assert ledger.round_trips() == dict.fromkeys(originals, 5)
        for name, original in originals.items():
            files = network.disks[name].files
            backups = [p for p in files if p.startswith(CONFIG_PATH + ".farmsync-")]
            assert len(backups) == 1 and backups[0].endswith(".bak")  # no staging file left
            assert files[backups[0]].content == original


def test_a_commit_refused_by_one_node_leaves_the_farm_all_old(tmp_path: Path) -> None:
    with SimNetwork(rtt=0.002, jitter=0.001, connect_rtts=1) as network:
        farm, originals = _farm(tmp_path, network)
        victim = sorted(originals)[7]

        def lose_staged_file() -> None:
            # Between arm and release the staged file vanishes: the node's re-check refuses.
            files = network.disk(victim).files
            for path in [p for p in files if p.endswith(".new")]:
                del files[path]

        def factory(host: Host) -> NodeOperations:
            node = network.factory(host)
            return HookedNode(node, {"release": lose_staged_file}) if host.name == victim else node

        outcome, _target, _ledger = _rotate(farm, factory)

        assert outcome is Outcome.ROLLED_BACK
        for name, original in originals.items():
            files = network.disks[name].files
            assert files[CONFIG_PATH].content == original
            run_backups = [p for p in files if p.endswith(".bak")]
            if name == victim:
                assert run_backups == []  # refused before anything was replaced
            else:
                assert len(run_backups) == 1 and files[run_backups[0]].content == original


def test_list_backups_is_newest_first_and_one_round_trip() -> None:
    with SimNetwork(rtt=0.0, jitter=0.0, connect_rtts=0) as network:
        disk = network.disk("web1")
        disk.write(CONFIG_PATH, b"x")
        for run_id in ("run-a", "run-b"):
            disk.copy(CONFIG_PATH, backup_path(CONFIG_PATH, run_id))
        node = SimNode("web1", network)
        assert node.list_backups([CONFIG_PATH]) == {CONFIG_PATH: ["run-b", "run-a"]}
        assert node.round_trips == 1
