"""``farmsync lab`` as a user runs it: from any directory, each lab its own farm, and a half-up
lab explained. A real one-node lab (sshd + Mono ASP.NET)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import yaml

from farmsync.lab.aspnet import pid_alive
from farmsync.lab.farm import lab_farm_name
from tests.cli.clikit import base_env, output_of, run_cli
from tests.servers.lab_fixtures import require_mono_or_fail

pytestmark = pytest.mark.xdist_group("lab-machinery")


def test_lab_commands_work_from_any_directory_and_explain_a_half_up_lab(tmp_path: Path) -> None:
    require_mono_or_fail()
    env = base_env({"XDG_STATE_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path)})
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    lab_dir = tmp_path / "mylab"
    inventory = tmp_path / "inv" / "lab.yml"

    up = run_cli(
        "lab",
        "up",
        "--nodes",
        "1",
        "--dir",
        str(lab_dir),
        "--inventory-out",
        str(inventory),
        env=env,
        cwd=here,
        timeout=300,
    )
    pids: list[int] = []
    try:
        assert up.returncode == 0, output_of(up)
        farm = yaml.safe_load(inventory.read_text())["all"]["children"]["lab"]["vars"]
        assert farm["farmsync_farm"] == lab_farm_name(lab_dir) != "lab"

        status = run_cli("lab", "status", "--json", env=env, cwd=elsewhere)

        assert status.returncode == 0, output_of(status)
        doc = json.loads(status.stdout)
        assert doc["state_dir"] == str(lab_dir) and doc["running"]
        (node,) = doc["nodes"]
        pids = [node["sshd_pid"], node["aspnet_pid"]]

        os.kill(node["sshd_pid"], signal.SIGTERM)  # the sshd this test's lab started
        half = run_cli("lab", "up", "--dir", str(lab_dir), env=env, cwd=elsewhere, timeout=300)

        assert half.returncode != 0, output_of(half)
        assert "half up" in half.stderr and "node1 (sshd not running)" in half.stderr
        assert f"farmsync lab down --dir {lab_dir}" in half.stderr
    finally:
        down = run_cli("lab", "down", env=env, cwd=elsewhere, timeout=120)
    assert down.returncode == 0, output_of(down)
    assert str(lab_dir) in down.stdout
    assert not [pid for pid in pids if pid_alive(pid)]
