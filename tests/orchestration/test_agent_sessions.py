"""Windows nodes run one agent process for the whole rotation (PROTOCOL.md, "Sessions"),
counted where the processes start: the WS-Management endpoint's spawns and requests per
action, and sshd's own log of exec sessions. The agent killed mid-run, and the controller
killed between a release and its acknowledgement, leave a farm on one key."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import pytest

from farmsync.inventory.model import Host
from farmsync.lab.sshd import SshdNode
from farmsync.nodes.connect import node_for
from farmsync.nodes.contract import ArmedCommit, NodeOperations
from farmsync.orchestration.result import Outcome
from tests.orchestration.farmkit import HookedNode, TestFarm, hooked_factory
from tests.orchestration.stalling_controller import kill, run_until_stalled
from tests.servers.sshd_fixtures import kill_agents_under, sshd_sessions
from tests.servers.wsman_endpoint import WsmanEndpoint

# Create Shell, one Command, a Send and a Receive per exchange (read, stage+arm, release),
# Delete Shell: nothing else (no Signal, no end-of-stdin Send).
NINE = Counter({"Create": 1, "Command": 1, "Send": 3, "Receive": 3, "Delete": 1})


def winrm_requests(server: WsmanEndpoint) -> Counter[str]:
    return Counter({a: n for a, n in server.requests.items() if n})


def wait_until(check: Callable[[], bool], limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, "the node never got there"
        time.sleep(0.05)


def kill_agent(handle: SshdNode | WsmanEndpoint) -> None:
    """SIGKILL the node's running agent process(es), as a crash on the node would."""
    if isinstance(handle, WsmanEndpoint):
        assert handle.kill_agents() >= 1
        return
    killed = kill_agents_under(handle)
    assert killed >= 1, "no agent process was running under this sshd"


def test_a_rotation_is_one_agent_per_windows_node_and_nine_winrm_requests(
    make_farm: Callable[..., TestFarm],
) -> None:
    farm = make_farm(ssh=0, ssh_windows=1, winrm=2)

    result = farm.open().rotate()

    assert result.outcome is Outcome.CHANGED, result.messages
    for name in ("iis1", "iis2"):
        server: WsmanEndpoint = farm.handles[name]
        assert server.spawned == 1  # one agent process for the run
        assert winrm_requests(server) == NINE
        assert server.running_processes() == 0 and server.open_shells == 0
    # (connections, SFTP sessions, exec sessions): one connection, one agent for the run.
    assert sshd_sessions(farm.handles["win1"]) == (1, 0, 1)
    target = result.target_fingerprint
    assert set(farm.fingerprints().values()) == {target}
    for host in farm.hosts:
        (backup,) = farm.backups(host)
        assert backup.read_bytes() == farm.originals[host]  # byte-identical
    assert not farm.leftovers()
    # Verified from the hashes the agents answered with their acknowledgement; the mtimes
    # they reported give the commit skew.
    assert result.mtime_skew_ms is not None and result.mtime_resolution_ms == 1.0
    assert {"stage", "arm", "commit", "verify"} <= set(result.phase_ms)


@pytest.mark.parametrize("host", ["iis1", "win2"])
def test_the_agent_killed_after_the_read_leaves_the_farm_all_old(
    make_farm: Callable[..., TestFarm], host: str
) -> None:
    farm = make_farm(ssh=1, ssh_windows=1, winrm=1)
    handle = farm.handles[host]

    hooks = {host: {"stage": lambda: kill_agent(handle)}}  # after the read, before stage+arm
    result = farm.open(factory=hooked_factory(hooks)).rotate()

    assert result.outcome is Outcome.ABORTED, result.messages
    failed = result.host(host)
    assert failed.error_kind == "connection-lost"
    assert "the node agent ended before answering" in (failed.error or "")
    assert farm.files_unchanged()
    assert not farm.leftovers()
    assert all(not farm.backups(h) for h in farm.hosts)  # nothing was committed anywhere


@pytest.mark.parametrize("host", ["iis1", "win2"])
def test_the_agent_killed_while_armed_rolls_the_farm_back(
    make_farm: Callable[..., TestFarm], host: str
) -> None:
    farm = make_farm(ssh=1, ssh_windows=1, winrm=1)
    handle = farm.handles[host]

    hooks = {host: {"release": lambda: kill_agent(handle)}}
    result = farm.open(factory=hooked_factory(hooks)).rotate()

    assert result.outcome is Outcome.ROLLED_BACK, result.messages
    assert result.host(host).error_kind == "connection-lost"
    assert farm.files_unchanged()  # every node back on the original, byte for byte
    assert not farm.leftovers()
    for name in farm.hosts:
        for backup in farm.backups(name):
            assert backup.read_bytes() == farm.originals[name]
    if isinstance(handle, WsmanEndpoint):
        assert handle.spawned == 2  # the killed agent, then a fresh one for the rollback


def test_a_controller_killed_between_release_and_acknowledgement_is_recovered(
    make_farm: Callable[..., TestFarm],
) -> None:
    farm = make_farm(ssh=0, ssh_windows=0, winrm=2)
    # iis1 is released and acknowledged; iis2's release is sent, its answer never read.
    proc = run_until_stalled(farm, "iis2", "unacked")
    try:
        # The agent carries the release out on its own: the new file lands unacknowledged.
        wait_until(lambda: farm.configs["iis2"].read_bytes() != farm.originals["iis2"])
    finally:
        kill(proc)
    assert len(set(farm.fingerprints().values())) == 1  # both hold the run's new key

    recovered = farm.cli("recover", "--json")

    assert recovered.returncode == 0, recovered.stderr + recovered.stdout
    report = json.loads(recovered.stdout)
    assert any("recovered unfinished run" in m for m in report["messages"]), report
    assert len(set(farm.fingerprints().values())) == 1
    assert not farm.leftovers()
    for name in farm.hosts:
        (kept,) = farm.backups(name)
        assert kept.read_bytes() == farm.originals[name]
    # The farm works normally afterwards.
    rotated = farm.cli("rotate", "--json")
    assert rotated.returncode == 0, rotated.stderr
    assert set(farm.fingerprints().values()) == {json.loads(rotated.stdout)["target_fingerprint"]}


class Misreporting(HookedNode):
    """A real agent node whose acknowledgement is made to report another file's hash."""

    def stage_and_arm(
        self, stage_items: Sequence[Any], commit_items: Sequence[Any], run_id: str, keep: int = 10
    ) -> Any:
        armed = self.inner.stage_and_arm(stage_items, commit_items, run_id, keep)

        class Armed(ArmedCommit):
            def release(self) -> None:
                armed.release()

            def wait(self, timeout: float) -> Any:
                states = armed.wait(timeout)
                assert states is not None  # the agent reported them
                return {p: replace(s, sha256="0" * 64) for p, s in states.items()}

            def abort(self) -> None:
                armed.abort()

        return Armed()


def test_verify_trusts_no_reported_hash_but_the_staged_one(
    make_farm: Callable[..., TestFarm],
) -> None:
    farm = make_farm(ssh=1, ssh_windows=0, winrm=1)

    def factory(host: Host) -> NodeOperations:
        node = node_for(host)
        return Misreporting(node, {}) if host.name == "iis1" else node

    result = farm.open(factory=factory).rotate()

    assert result.outcome is Outcome.ROLLED_BACK, result.messages
    assert result.host("iis1").error_kind == "verify-mismatch"
    assert farm.files_unchanged()
