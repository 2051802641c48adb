"""Issue 14's journal and recovery faults on the real lab, proven with tickets and ViewState.

A controller SIGKILLed mid-commit whose backup was then spoiled, a forged journal record
naming a file outside the inventory, and a journal line the whitelist refuses. Each test ends
with the farm on one key that every node accepts, with the way out taken through the command
line only: no file edited by hand.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from farmsync.lab.proof import issue
from farmsync.nodes.contract import backup_path, sha256_hex
from tests.lab.test_e2e import Driver
from tests.orchestration.stalling_controller import start_stalled
from tests.servers.lab_fixtures import LabFarm

LAB_NODES = 3
pytestmark = pytest.mark.xdist_group("lab-recover")


@pytest.fixture(scope="module")
def driver(lab_farm: LabFarm, tmp_path_factory: pytest.TempPathFactory) -> Driver:
    return Driver(lab_farm, tmp_path_factory.mktemp("farmsync-state"))


def journal_of(driver: Driver) -> Path:
    farm = driver.lab.inventory().farm
    return Path(driver.env["FARMSYNC_STATE_DIR"]) / farm / "journal.jsonl"


def crash_mid_commit(driver: Driver) -> str:
    """SIGKILL a rotation once node1 and node2 hold its new content, node3 not; its run id."""
    before = driver.snapshot()
    controller = start_stalled(driver.lab.inventory_path, driver.env, "node3", "before")
    try:
        deadline = time.monotonic() + 30
        while any(driver.snapshot()[n] == before[n] for n in ("node1", "node2")):
            assert time.monotonic() < deadline, "node1 and node2 never committed"
            time.sleep(0.05)
    finally:
        controller.send_signal(signal.SIGKILL)
        controller.wait(10)
    runs = [json.loads(line) for line in journal_of(driver).read_text().splitlines()]
    return str([r for r in runs if r["event"] == "run-start"][-1]["run_id"])


def test_a_spoiled_backup_is_reported_then_accepted_then_synced_away(driver: Driver) -> None:
    driver.ensure_one_key()
    earlier = issue(driver.urls)
    run_id = crash_mid_commit(driver)
    node1 = driver.configs()["node1"]
    Path(backup_path(str(node1), run_id)).write_bytes(b"<configuration/>\n")
    crashed = driver.snapshot()

    refused = driver.farmsync("recover")

    assert refused.returncode == 3, refused.stderr
    assert f"node1 {node1}: holds the run's new content" in refused.stderr
    assert "--accept-current node1" in refused.stderr
    assert driver.snapshot() == crashed

    accepted = driver.farmsync("recover", "--accept-current", "node1")
    synced = driver.farmsync("sync")

    assert accepted.returncode == 0, accepted.stderr + accepted.stdout
    assert synced.returncode == 0, synced.stderr + synced.stdout
    driver.assert_consistent(before=earlier)


def test_a_forged_run_naming_a_file_outside_the_inventory_is_never_acted_on(
    driver: Driver, tmp_path: Path
) -> None:
    driver.ensure_one_key()
    earlier, files = issue(driver.urls), driver.snapshot()
    victim = tmp_path / "victim.conf"
    victim.write_bytes(b"precious\n")
    run = "20250101T000000Z-f0f0f0"
    planted = Path(backup_path(str(victim), run))
    planted.write_bytes(b"planted\n")
    old, new = sha256_hex(b"planted\n"), sha256_hex(b"precious\n")
    base = {"ts": "2025-01-01T00:00:00+00:00", "run_id": run, "kind": "rotate"}
    where = {"host": "node1", "path": str(victim)}
    forged = [
        {**base, "event": "run-start", "result": "started", "hosts": {"node1": [str(victim)]}},
        {**base, "event": "stage", "result": "ok", **where, "old_sha256": old, "new_sha256": new},
        {**base, "event": "commit", "result": "started", **where},
    ]
    with journal_of(driver).open("a") as f:
        f.writelines(json.dumps(record) + "\n" for record in forged)

    recovered = driver.farmsync("recover")

    assert recovered.returncode == 0, recovered.stderr + recovered.stdout
    assert "which the inventory does not manage: not touched" in recovered.stdout
    assert victim.read_bytes() == b"precious\n" and planted.read_bytes() == b"planted\n"
    assert driver.snapshot() == files
    driver.assert_consistent(before=earlier)


def test_a_journal_line_the_whitelist_refuses_does_not_stop_a_rotation(driver: Driver) -> None:
    driver.ensure_one_key()
    no_kind = {"ts": "2025-01-01T00:00:00+00:00", "run_id": "x-1", "event": "run-start"}
    with journal_of(driver).open("a") as f:
        f.write(json.dumps(no_kind) + "\n")
    line = len(journal_of(driver).read_text().splitlines())

    rotated = driver.farmsync("rotate")
    recovered = driver.farmsync("recover")

    assert rotated.returncode == 0, rotated.stderr + rotated.stdout
    assert "damaged line(s), ignored" in rotated.stdout
    assert recovered.returncode == 0, recovered.stderr + recovered.stdout
    assert f"line {line} is damaged and was ignored: journal record lacks 'kind'" in (
        recovered.stdout
    )
    driver.assert_consistent()
