"""End to end on the real lab: tickets and ViewState prove what farmsync did to the farm.

Three lab nodes (sshd + Mono System.Web), driven through the `farmsync` command line or, for
fault drills that need a precise moment, through the same engine in process with a hook
that causes a real fault at a known moment (a stopped sshd, an sshd held with SIGSTOP, an
immutable directory, a full tmpfs, a killed controller). Every test ends with the farm
consistent: every node accepts the same tickets, every live root web.config is valid XML and
nothing was lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from farmsync import Farm, Outcome, RolloutOptions, VaultSecret
from farmsync.fsutil import atomic_write_private
from farmsync.keys.generate import generate_key
from farmsync.lab.farm import lab_farm_name
from farmsync.lab.proof import Credentials, check, cross_check, issue
from farmsync.lab.sshd import SshdKeys, SshdNode, descendants
from farmsync.nodes.contract import backup_path
from farmsync.webconfig.editor import apply_machine_key
from farmsync.webconfig.parser import inspect_config
from tests.orchestration.farmkit import hooked_factory, slow_mv, wait_for_file
from tests.orchestration.stalling_controller import start_stalled
from tests.servers.lab_fixtures import LabFarm

LAB_NODES = 3
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("lab-e2e")]


class Driver:
    """The lab farm plus a vault and state dir of its own; runs farmsync like a user."""

    def __init__(self, lab: LabFarm, state_dir: Path):
        self.lab = lab
        self.env = {
            **os.environ,
            "FARMSYNC_STATE_DIR": str(state_dir),
            "FARMSYNC_VAULT_PASSPHRASE": secrets.token_urlsafe(16),
        }

    def farmsync(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "farmsync.cli.main", *args, "-i", str(self.lab.inventory_path)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def farm(
        self,
        hooks: dict[str, dict[str, Callable[[], None]]],
        timeout: float = 20,
        hung: str = "",
    ) -> Farm:
        """The lab farm in process, with ``hooks`` on its nodes and ``timeout`` for each
        commit. A ``hung`` node gets a short node timeout, so waiting on it costs seconds."""
        farm = Farm.open(
            self.lab.inventory_path,
            secret=VaultSecret.from_passphrase(self.env["FARMSYNC_VAULT_PASSPHRASE"]),
            options=RolloutOptions(forks=4, timeout=timeout),
            environ=self.env,
        )
        hosts = [replace(h, timeout=5.0) if h.name == hung else h for h in farm.ctx.hosts]
        return Farm(replace(farm.ctx, hosts=hosts, factory=hooked_factory(hooks)))

    @property
    def urls(self) -> dict[str, str]:
        return {node.name: node.http_url for node in self.lab.lab.status().nodes}

    def configs(self) -> dict[str, Path]:
        return {n: self.lab.aspnet(n).root_web_config for n in self.lab.names}

    def snapshot(self) -> dict[str, bytes]:
        return {n: p.read_bytes() for n, p in self.configs().items()}

    def fingerprints(self) -> set[str | None]:
        return {node.key_fingerprint for node in self.lab.lab.status().nodes}

    def ensure_one_key(self) -> None:
        """Bring the lab onto one key (if an earlier test has not) so each test stands alone."""
        farm = lab_farm_name(self.lab.lab.state_dir)
        state = Path(self.env["FARMSYNC_STATE_DIR"]) / farm / "vault.fsv"
        if len(self.fingerprints()) != 1 or not state.exists():
            done = self.farmsync("rotate")
            assert done.returncode == 0, done.stderr

    def assert_consistent(self, before: list[Credentials] | None = None) -> None:
        """One key in every file, every file valid XML, every node accepting every node's
        credentials, and (when given) credentials issued earlier still accepted."""
        for name, path in self.configs().items():
            inspect_config(path.read_bytes(), f"{name}:{path}")  # raises if not valid
        assert len(self.fingerprints()) == 1
        assert cross_check(self.urls).everywhere()
        if before is not None:
            assert check(self.urls, before).everywhere()


@pytest.fixture(scope="module")
def driver(lab_farm: LabFarm, tmp_path_factory: pytest.TempPathFactory) -> Driver:
    return Driver(lab_farm, tmp_path_factory.mktemp("farmsync-state"))


def test_rotate_makes_every_node_accept_every_nodes_tickets_and_viewstate(
    driver: Driver,
) -> None:
    mixed = issue(driver.urls)
    assert check(driver.urls, mixed).only_at_home()  # a fresh farm: every node on its own key

    done = driver.farmsync("rotate", "--json")

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outcome"] == "changed"
    driver.assert_consistent()
    after = check(driver.urls, mixed)
    assert not any(
        ok for m in (after.tickets, after.viewstate) for r in m.values() for ok in r.values()
    )  # credentials from before the rotation: rejected


def test_sync_brings_a_node_restored_from_an_old_image_back_into_the_farm(
    driver: Driver,
) -> None:
    driver.ensure_one_key()
    node3 = driver.lab.aspnet("node3")
    path = node3.root_web_config
    atomic_write_private(path, apply_machine_key(path.read_bytes(), generate_key(), str(path)))
    node3.restart()
    assert not cross_check(driver.urls, ["node1"]).tickets["node1"]["node3"]

    synced = driver.farmsync("sync", "--json")

    assert synced.returncode == 0, synced.stderr
    statuses = {h["host"]: h["status"] for h in json.loads(synced.stdout)["hosts"]}
    assert statuses == {"node1": "unchanged", "node2": "unchanged", "node3": "changed"}
    driver.assert_consistent()


def test_rollback_makes_tickets_of_the_previous_key_valid_again(driver: Driver) -> None:
    driver.ensure_one_key()
    previous = issue(driver.urls)
    assert driver.farmsync("rotate").returncode == 0
    assert not check(driver.urls, previous).everywhere()

    back = driver.farmsync("rollback")

    assert back.returncode == 0, back.stderr
    driver.assert_consistent(before=previous)


def test_sshd_killed_before_commit_leaves_the_farm_on_its_key(driver: Driver) -> None:
    driver.ensure_one_key()
    earlier, files = issue(driver.urls), driver.snapshot()

    result = driver.farm({"node2": {"arm": lambda: driver.lab.lab.stop_sshd("node2")}}).rotate()
    driver.lab.lab.start_sshd("node2")

    assert result.outcome is Outcome.ABORTED
    assert driver.snapshot() == files
    driver.assert_consistent(before=earlier)


class HeldSshd:
    """A lab node's sshd, its sessions and their commands held with SIGSTOP: the node keeps
    its TCP connections and answers nothing, like a hung host, until it is let go."""

    def __init__(self, lab: LabFarm, name: str):
        node = next(n for n in lab.lab.status().nodes if n.name == name)
        assert node.sshd_pid is not None, f"{name}'s sshd is not running"
        self.listener = node.sshd_pid
        self.sessions: list[int] = []

    def hold(self) -> None:
        os.kill(self.listener, signal.SIGSTOP)  # first: it can fork no new session now
        self.sessions = descendants(self.listener)
        for pid in self.sessions:
            os.kill(pid, signal.SIGSTOP)

    def let_go(self) -> None:
        """Resume everything and wait until the held sessions have ended (their client is
        gone), so nothing they do afterwards can race what the test does next."""
        exits = []
        for pid in self.sessions:
            with contextlib.suppress(ProcessLookupError):
                exits.append(os.pidfd_open(pid))
        for pid in [self.listener, *self.sessions]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        try:
            pending = list(exits)
            while pending:
                ready, _, _ = select.select(pending, [], [], 60)
                assert ready, f"held sshd sessions did not end: {self.sessions}"
                pending = [fd for fd in pending if fd not in ready]
        finally:
            for fd in exits:
                os.close(fd)


def test_node_hung_at_commit_leaves_the_run_inconsistent_then_recover_rolls_back(
    driver: Driver,
) -> None:
    driver.ensure_one_key()
    earlier, files = issue(driver.urls), driver.snapshot()
    node3 = HeldSshd(driver.lab, "node3")

    # node3 is armed and hangs just before it is told to commit: node1 and node2 commit,
    # node3 never answers, so neither its commit nor its rollback can be confirmed.
    result = driver.farm({"node3": {"release": node3.hold}}, timeout=10, hung="node3").rotate()
    node3.let_go()

    assert result.outcome is Outcome.INCONSISTENT, result.messages
    assert result.host("node3").error_kind == "timeout"
    assert driver.snapshot()["node1"] == files["node1"]  # rolled back by the run itself
    recovered = driver.farmsync("recover", "--json")
    assert recovered.returncode == 0, recovered.stderr + recovered.stdout
    messages = json.loads(recovered.stdout)["messages"]
    assert any("recovered unfinished run" in m and "rolled-back" in m for m in messages)
    assert driver.snapshot() == files
    driver.assert_consistent(before=earlier)


@contextlib.contextmanager
def immutable(directory: Path) -> Iterator[None]:
    subprocess.run(["chattr", "+i", str(directory)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


@pytest.mark.needs_root
def test_read_only_config_directory_stops_the_rotation_before_any_commit(
    driver: Driver,
) -> None:
    driver.ensure_one_key()
    earlier, files = issue(driver.urls), driver.snapshot()
    directory = driver.configs()["node2"].parent

    with immutable(directory):
        result = driver.farmsync("rotate", "--json")

    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["outcome"] == "aborted"
    node2 = next(h for h in report["hosts"] if h["host"] == "node2")
    assert node2["error_kind"] == "permission-denied"
    assert driver.snapshot() == files
    driver.assert_consistent(before=earlier)


@contextlib.contextmanager
def full_disk(directory: Path, tmp: Path) -> Iterator[None]:
    """Put ``directory`` on a small tmpfs that is full but for a few hundred bytes."""
    saved = tmp / "saved"
    shutil.copytree(directory, saved, symlinks=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(directory)], check=True)
    try:
        shutil.copytree(saved, directory, symlinks=True, dirs_exist_ok=True)
        with contextlib.suppress(OSError), open(directory / "filler", "wb", buffering=0) as f:
            while True:  # until ENOSPC: the tmpfs is full
                f.write(b"\0" * 4096)
        yield
    finally:
        (directory / "filler").unlink(missing_ok=True)
        shutil.copytree(directory, saved, symlinks=True, dirs_exist_ok=True)
        subprocess.run(["umount", str(directory)], check=True)
        shutil.copytree(saved, directory, symlinks=True, dirs_exist_ok=True)


@pytest.mark.needs_root
def test_full_disk_stops_the_rotation_before_any_commit(driver: Driver, tmp_path: Path) -> None:
    driver.ensure_one_key()
    earlier, files = issue(driver.urls), driver.snapshot()
    directory = driver.configs()["node1"].parent

    with full_disk(directory, tmp_path):
        result = driver.farmsync("rotate", "--json")
        assert driver.configs()["node1"].read_bytes() == files["node1"]

    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    node1 = next(h for h in report["hosts"] if h["host"] == "node1")
    assert node1["error_kind"] == "disk-full"
    assert driver.snapshot() == files
    driver.assert_consistent(before=earlier)


def test_controller_killed_mid_commit_then_recover(driver: Driver) -> None:
    driver.ensure_one_key()
    earlier, files = issue(driver.urls), driver.snapshot()
    controller = start_stalled(driver.lab.inventory_path, driver.env, "node3", "before")
    controller.send_signal(signal.SIGKILL)
    controller.wait(10)

    recovered = driver.farmsync("recover", "--json")

    assert recovered.returncode == 0, recovered.stderr
    assert any("rolled-back" in m for m in json.loads(recovered.stdout)["messages"])
    assert driver.snapshot() == files
    driver.assert_consistent(before=earlier)


# --- issue 14: faults found by fault injection, on the real lab ------------------------------


def _lab_inventory(driver: Driver) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(driver.lab.inventory_path.read_text())
    return document


def _hosts_of(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    groups = document["all"]["children"]
    hosts: dict[str, dict[str, Any]] = next(iter(groups.values()))["hosts"]
    return hosts


@pytest.mark.slow
def test_a_node_listed_twice_under_another_address_is_refused_and_the_farm_keeps_working(
    driver: Driver, tmp_path: Path
) -> None:
    """The reproduction: node2 again as `localhost`, its host key trusted under that name.
    Rotating in a loop once made the third run `inconsistent`; now the first is refused."""
    driver.ensure_one_key()
    earlier, files = issue(driver.urls), driver.snapshot()
    document = _lab_inventory(driver)
    hosts = _hosts_of(document)
    node2 = dict(hosts["node2"])
    known = tmp_path / "known_hosts"
    line = Path(node2["farmsync_known_hosts"]).read_text().strip()
    port = node2["ansible_port"]
    alias = line.replace(f"[127.0.0.1]:{port}", f"[localhost]:{port}")
    known.write_text(f"{line}\n{alias}\n")
    hosts["node2-by-name"] = {
        **node2,
        "ansible_host": "localhost",
        "farmsync_known_hosts": str(known),
    }
    inventory = tmp_path / "lab-twice.yml"
    inventory.write_text(yaml.safe_dump(document, sort_keys=False))

    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-m", "farmsync.cli.main", "rotate", "-i", str(inventory)],
            env=driver.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        said = done.stdout + done.stderr
        assert "'node2'" in said and "'node2-by-name'" in said

    assert driver.snapshot() == files
    driver.assert_consistent(before=earlier)
    assert driver.farmsync("rotate").returncode == 0  # the farm is not locked up
    driver.assert_consistent()


@pytest.mark.slow
def test_backups_dated_in_the_future_do_not_break_restore_of_this_run(driver: Driver) -> None:
    driver.ensure_one_key()
    config = driver.configs()["node1"]
    future = 1_900_000_000  # 2030: a node whose clock once ran ahead
    planted = []
    for i in range(10):
        old = Path(backup_path(str(config), f"20250101T0000{i:02d}Z-aaaaaa"))
        old.write_bytes(config.read_bytes())
        os.utime(old, (future + i, future + i))
        planted.append(old)
    before = driver.snapshot()

    rotated = driver.farmsync("rotate", "--json")
    assert rotated.returncode == 0, rotated.stderr
    run_id = json.loads(rotated.stdout)["run_id"]
    assert Path(backup_path(str(config), run_id)).read_bytes() == before["node1"]
    restored = driver.farmsync("restore", "--host", "node1", "--run", run_id)

    assert restored.returncode == 0, restored.stderr
    assert config.read_bytes() == before["node1"]
    for old in planted:
        old.unlink(missing_ok=True)
    assert driver.farmsync("sync").returncode == 0
    driver.assert_consistent()


@pytest.mark.slow
def test_a_device_at_a_managed_path_is_refused_before_anything_changes(driver: Driver) -> None:
    driver.ensure_one_key()
    earlier, files = issue(driver.urls), driver.snapshot()
    config = driver.configs()["node3"]
    saved = config.with_name("web.config.saved")
    os.replace(config, saved)
    config.symlink_to("/dev/zero")
    try:
        result = driver.farmsync("rotate", "--json")
    finally:
        config.unlink()
        os.replace(saved, config)

    assert result.returncode == 3, result.stderr
    node3 = next(h for h in json.loads(result.stdout)["hosts"] if h["host"] == "node3")
    assert node3["error_kind"] == "not-a-regular-file"
    assert driver.snapshot() == files
    driver.assert_consistent(before=earlier)


@pytest.mark.slow
def test_a_commit_that_timed_out_cannot_land_after_the_rollback(
    driver: Driver, tmp_path: Path
) -> None:
    """node1 (whose SFTP server refuses hard links, so it commits with the armed shell) finds
    an mv that sleeps 3 s; the commit timeout is 1.5 s. The
    rollback fences the late commit; the recycle (a Mono restart) waits until the late mv
    ran; the farm must end on its old key, with the run closed as rolled back."""
    driver.ensure_one_key()
    earlier, files = issue(driver.urls), driver.snapshot()
    lab = driver.lab.lab
    bin_dir, marker = slow_mv(tmp_path, 3.0)
    port = next(n.ssh_port for n in lab.status().nodes if n.name == "node1")
    lab.stop_sshd("node1")
    slow = SshdNode(
        driver.lab.aspnet("node1").node_dir / "sshd",
        keys=SshdKeys.load(lab.state_dir / "ssh"),
        honour_file_modes=False,
        path_prefix=(bin_dir,),
        # The armed shell runs where SFTP cannot commit: refuse hard links over SFTP.
        sftp_subsystem="internal-sftp -P hardlink",
    )
    slow.start(port=port)
    seen: list[str] = []
    try:
        hooks = {"node1": {"recycle": lambda: seen.append(wait_for_file(marker))}}
        result = driver.farm(hooks, timeout=1.5).rotate()
    finally:
        slow.stop()
        lab.start_sshd("node1")

    assert result.outcome is Outcome.ROLLED_BACK, result.messages
    assert seen, "the recycle did not wait for the late mv"
    assert wait_for_file(marker) != "0", "the late rename found a staging file"
    assert driver.snapshot() == files
    driver.assert_consistent(before=earlier)
