"""`farmsync lab` machinery: up writes an ordinary inventory, status sees every process,
down stops everything by pid (even from another process, even after a recycle), and
start-up failures say where the node's log is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import paramiko
import pytest

from farmsync.fsutil import atomic_write_private
from farmsync.inventory.loader import load_inventory
from farmsync.inventory.model import Policy
from farmsync.keys.generate import generate_key
from farmsync.lab.aspnet import (
    MONO_MISSING,
    AspNetNode,
    LabError,
    build_host,
    pid_alive,
    require_mono,
)
from farmsync.lab.farm import Lab, lab_farm_name
from farmsync.webconfig.editor import apply_machine_key
from tests.servers.lab_fixtures import require_mono_or_fail

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("lab-machinery")]


@pytest.fixture
def lab(tmp_path: Path, lab_host_cache: Path) -> Lab:
    require_mono_or_fail()
    return Lab(
        tmp_path / ".lab", inventory_path=tmp_path / "inv" / "lab.yml", cache_dir=lab_host_cache
    )


def test_up_status_recycle_and_down_from_another_process_leave_nothing_running(
    lab: Lab, tmp_path: Path
) -> None:
    started = lab.up(2)
    try:
        assert started.running
        assert [n.name for n in started.nodes] == ["node1", "node2"]
        pids = [p for n in started.nodes for p in (n.aspnet_pid, n.sshd_pid) if p]
        assert len(pids) == 4 and all(pid_alive(p) for p in pids)

        # The inventory is an ordinary one: farmsync's own loader reads it.
        inventory = load_inventory(lab.inventory_path)
        # Its own farm name: another lab directory is another farm (vault, journal, lock).
        assert inventory.farm == lab_farm_name(lab.state_dir)
        assert inventory.farm.startswith("lab-") and inventory.farm != lab_farm_name(tmp_path)
        host = inventory.hosts["node1"]
        node1 = AspNetNode.load(lab.state_dir / "node1")
        assert host.port == started.nodes[0].ssh_port
        assert host.root_configs == (str(node1.root_web_config),)
        assert host.recycle.command == str(node1.restart_script)
        assert host.variables["lab_http_url"] == node1.url

        # A recycle (the node's restart command) replaces the ASP.NET process.
        result = subprocess.run(
            [str(node1.restart_script)], capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == 0, result.stderr
        recycled = node1.pid
        assert recycled is not None and recycled not in pids and node1.reachable()
        pids.append(recycled)

        # An open SSH session: its sshd child must go down with the lab too.
        client = paramiko.SSHClient()
        client.load_host_keys(str(host.ssh.known_hosts_file))
        client.connect(
            host.address,
            host.port,
            username=host.user,
            key_filename=host.ssh.private_key_file,
            allow_agent=False,
            look_for_keys=False,
        )
        assert lab.status().running
    except BaseException:
        lab.down()
        raise

    # `down` from another process, reading only the state file.
    code = (
        "import json, sys; from farmsync.lab.farm import Lab; "
        "print(json.dumps([p.__dict__ for p in Lab(sys.argv[1]).down()]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(lab.state_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    client.close()
    stopped = json.loads(out)
    assert {p["pid"] for p in stopped} >= set(pids) - {started.nodes[0].aspnet_pid}
    assert {p["role"] for p in stopped} >= {"aspnet", "sshd", "ssh-session"}
    left = [p for p in pids if pid_alive(p)]
    assert not left, f"still running after down: {left}"
    assert lab.status().nodes == ()
    assert lab.down() == ()  # nothing left to stop (and this process reaps its children)


def test_up_refuses_to_start_over_a_running_lab(lab: Lab) -> None:
    lab.up(1)
    try:
        with pytest.raises(LabError, match="already running"):
            lab.up(1)
    finally:
        lab.down()
    assert not lab.status().any_alive


def test_a_node_that_dies_at_start_up_is_reported_with_its_log(
    tmp_path: Path, lab_host_cache: Path
) -> None:
    require_mono_or_fail()
    node = AspNetNode.create("broken", tmp_path / "broken", build_host(lab_host_cache))
    (node.app_dir / "bin" / "FarmsyncLab.dll").unlink()  # the host type cannot load
    with pytest.raises(LabError) as raised:
        node.start(timeout=60)
    assert str(node.log_path) in str(raised.value)
    assert not node.alive()


def test_a_root_web_config_system_web_rejects_fails_start_up_naming_the_file(
    tmp_path: Path, lab_host_cache: Path
) -> None:
    require_mono_or_fail()
    node = AspNetNode.create("strict", tmp_path / "strict", build_host(lab_host_cache))
    # Mono's System.Web does not know compatibilityMode: every request using the key fails.
    key = generate_key(Policy(compatibility_mode="Framework45"))
    path = node.root_web_config
    atomic_write_private(path, apply_machine_key(path.read_bytes(), key, str(path)))
    with pytest.raises(LabError) as raised:
        node.start(timeout=60)
    assert "ConfigurationErrorsException" in str(raised.value)
    assert str(path) in str(raised.value)
    assert not node.alive()


def test_missing_mono_is_an_error_naming_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(LabError) as raised:
        require_mono()
    assert str(raised.value) == MONO_MISSING
    assert "run make test" in MONO_MISSING
