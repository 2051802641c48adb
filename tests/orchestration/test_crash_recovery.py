"""The controller SIGKILLed in the middle of a commit; the next run settles the farm."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from farmsync.orchestration.marker import without_marker
from tests.orchestration.farmkit import TestFarm


def run_until_stalled(farm: TestFarm, host: str, when: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.orchestration.stalling_controller",
            str(farm.inventory_path),
            host,
            when,
        ],
        env={**os.environ, **farm.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "STALLED":
        proc.kill()
        raise AssertionError(
            f"controller did not stall: {line!r} {proc.stderr.read() if proc.stderr else ''}"
        )
    return proc


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def test_sigkill_mid_commit_then_recover_rolls_back_to_the_old_key(
    make_farm: Callable[..., TestFarm],
) -> None:
    farm = make_farm(ssh=3, ssh_windows=0, winrm=0)
    proc = run_until_stalled(farm, "web3", "before")
    # web1 and web2 have been released; give their commits a moment to land for real.
    fingerprints = farm.fingerprints()
    for _ in range(100):
        fingerprints = farm.fingerprints()
        if fingerprints["web1"] == fingerprints["web2"]:
            break
        time.sleep(0.05)
    assert fingerprints["web1"] == fingerprints["web2"] != fingerprints["web3"]  # mixed farm
    kill(proc)

    recovered = farm.cli("recover", "--json")

    assert recovered.returncode == 0, recovered.stderr + recovered.stdout
    report = json.loads(recovered.stdout)
    # It says what it did, per host: the two released nodes were rolled back.
    assert report["outcome"] == "changed"
    assert any("recovered unfinished run" in m and "rolled-back" in m for m in report["messages"])
    statuses = {h["host"]: h["status"] for h in report["hosts"]}
    assert statuses == {"web1": "rolled-back", "web2": "rolled-back", "web3": "unchanged"}
    assert farm.files_unchanged()
    assert not farm.leftovers()
    # The farm works normally afterwards.
    rotated = farm.cli("rotate", "--json")
    assert rotated.returncode == 0, rotated.stderr
    assert set(farm.fingerprints().values()) == {json.loads(rotated.stdout)["target_fingerprint"]}


def test_sigkill_after_every_commit_then_rotate_finishes_the_run_first(
    make_farm: Callable[..., TestFarm],
) -> None:
    farm = make_farm(ssh=2, ssh_windows=0, winrm=1)
    proc = run_until_stalled(farm, "iis1", "after")
    for _ in range(100):
        if len(set(farm.fingerprints().values())) == 1:
            break
        time.sleep(0.05)
    kill(proc)
    target = next(iter(set(farm.fingerprints().values())))

    history_before = farm.cli("history", "--json")
    entry = json.loads(history_before.stdout)["keys"][0]
    assert entry["fingerprint"] == target and entry["status"] == "generated"

    # The next rotate first finishes the dead run (all nodes hold its key), then rotates.
    rotated = farm.cli("rotate", "--json")

    assert rotated.returncode == 0, rotated.stderr
    report = json.loads(rotated.stdout)
    assert any("recovered unfinished run" in m and "changed" in m for m in report["messages"])
    keys = {
        k["fingerprint"]: k["status"]
        for k in json.loads(farm.cli("history", "--json").stdout)["keys"]
    }
    assert keys[target] == "retired"  # it became active when recovered, then was rotated out
    assert keys[report["target_fingerprint"]] == "active"
    assert set(farm.fingerprints().values()) == {report["target_fingerprint"]}


def test_a_second_rotation_while_one_runs_is_refused(make_farm: Callable[..., TestFarm]) -> None:
    farm = make_farm(ssh=2, ssh_windows=0, winrm=0)
    proc = run_until_stalled(farm, "web2", "before")
    try:
        second = farm.cli("rotate")
        assert second.returncode == 3
        assert "locked by" in second.stderr and str(proc.pid) in second.stderr
    finally:
        kill(proc)


def test_recover_leaves_a_file_someone_else_changed_and_says_so(
    make_farm: Callable[..., TestFarm],
) -> None:
    farm = make_farm(ssh=3, ssh_windows=0, winrm=0)
    proc = run_until_stalled(farm, "web3", "before")
    for _ in range(100):
        if farm.configs["web1"].read_bytes() != farm.originals["web1"]:
            break
        time.sleep(0.05)
    kill(proc)
    hand_edit = farm.originals["web1"].replace(b"<configuration>", b"<configuration><!-- ops -->")
    farm.configs["web1"].write_bytes(hand_edit)

    recovered = farm.cli("recover", "--json")

    assert recovered.returncode == 0, recovered.stderr
    messages = json.loads(recovered.stdout)["messages"]
    assert any("web1" in m and "neither the run's old nor its new content" in m for m in messages)
    assert farm.configs["web1"].read_bytes() == hand_edit  # not farmsync's to undo
    assert farm.configs["web2"].read_bytes() == farm.originals["web2"]


def test_a_first_rotation_finished_by_recovery_can_still_be_rolled_back(
    make_farm: Callable[..., TestFarm],
) -> None:
    farm = make_farm(ssh=2, ssh_windows=0, winrm=0)
    shared = farm.originals["web1"]
    for path in farm.configs.values():  # a farm on one hand-made key before farmsync
        path.write_bytes(shared)
    before = farm.fingerprints()["web1"]
    proc = run_until_stalled(farm, "web2", "after")
    for _ in range(100):
        if len(set(farm.fingerprints().values()) - {before}) == 1 and before not in set(
            farm.fingerprints().values()
        ):
            break
        time.sleep(0.05)
    kill(proc)

    assert farm.cli("recover").returncode == 0
    back = farm.cli("rollback", "--json")

    assert back.returncode == 0, back.stderr
    assert set(farm.fingerprints().values()) == {before}
    assert all(without_marker(p.read_bytes()) == shared for p in farm.configs.values())
