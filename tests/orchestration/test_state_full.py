"""The controller's state directory on a real tmpfs that is full, or mounted read-only.

Lock, journal and vault live there. A state directory that cannot be written is exit 3 with
a message naming the directory, never an internal error, and never a run cut off between a
commit and its journal record: before the first node is touched, the run sets aside the
journal space its remaining records need, so a file system that fills up during the commit
still takes every record. Mounting a tmpfs needs root (CAP_SYS_ADMIN).
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from farmsync.inventory.loader import load_inventory
from farmsync.inventory.patterns import select_hosts
from farmsync.keys.vault import KeyVault, VaultSecret
from farmsync.orchestration.context import FarmContext
from farmsync.orchestration.farm import Farm
from farmsync.orchestration.journal import Journal
from farmsync.orchestration.options import RolloutOptions
from farmsync.orchestration.result import Outcome
from farmsync.orchestration.state import StateDir
from tests.cli.clikit import FARM, PASSPHRASE, LocalFarm, error_lines, make_local_farm, output_of
from tests.orchestration.farmkit import hooked_factory


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 512 KiB tmpfs, unmounted at teardown."""
    if os.geteuid() != 0:
        pytest.fail("the state-directory tests mount a tmpfs and must run as root")
    mount = tmp_path / "state"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "state", str(mount)], check=True
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(directory: Path) -> Path:
    """Write a file in ``directory`` until its file system has no byte left."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as f:
        block = b"\xa5" * 4096
        try:
            while True:
                f.write(block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        try:
            while True:
                f.write(b"\xa5")
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def farm_on(tmp_path: Path, state: Path) -> LocalFarm:
    farm = make_local_farm(tmp_path / "farm")
    farm.state_root.symlink_to(state)  # FARMSYNC_STATE_DIR points there
    return farm


def test_a_full_state_directory_refuses_the_run_before_it_starts(
    tmp_path: Path, tmpfs: Path
) -> None:
    farm = farm_on(tmp_path, tmpfs)
    fill(tmpfs)

    result = farm.run("rotate")

    assert result.returncode == 3, output_of(result)
    (message,) = error_lines(result)
    assert message.startswith(f"farmsync: error: the state directory {farm.farm_dir} is full")
    assert "internal error" not in result.stderr
    assert farm.contents() == farm.originals


def test_a_read_only_state_directory_is_named_with_exit_3(tmp_path: Path, tmpfs: Path) -> None:
    farm = farm_on(tmp_path, tmpfs)
    assert farm.run("rotate").returncode == 0
    rotated = farm.contents()
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)

    for command in ("rotate", "sync", "recover"):
        result = farm.run(command)

        assert result.returncode == 3, output_of(result)
        (message,) = error_lines(result)
        assert message.startswith(
            f"farmsync: error: the state directory {farm.farm_dir} is on a read-only file system"
        ), message
    assert farm.contents() == rotated


def test_a_state_directory_too_full_for_the_runs_records_refuses_before_any_change(
    tmp_path: Path, tmpfs: Path
) -> None:
    farm = farm_on(tmp_path, tmpfs)
    assert farm.run("rotate").returncode == 0
    vault_before = (farm.farm_dir / "vault.fsv").read_bytes()
    filler = fill(tmpfs)
    # Free three pages: enough for the lock and a journal line, far less than the
    # run's records need.
    with filler.open("r+b") as f:
        f.truncate(filler.stat().st_size - 3 * 4096)

    result = farm.run("rotate")

    assert result.returncode == 3, output_of(result)
    assert "could not reserve space for the journal" in result.stderr, output_of(result)
    assert (farm.farm_dir / "vault.fsv").read_bytes() == vault_before  # no new key stored
    assert not (farm.farm_dir / "journal.jsonl.reserve").exists()
    assert Journal(farm.farm_dir / "journal.jsonl").unfinished_runs() == []


def test_a_state_file_system_filling_up_mid_commit_still_journals_every_record(
    tmp_path: Path, tmpfs: Path
) -> None:
    farm = farm_on(tmp_path, tmpfs)
    inventory = load_inventory(farm.inventory)
    filled: list[Path] = []

    journal_path = tmpfs / FARM / "journal.jsonl"

    def fill_once() -> None:  # someone else takes every free byte while the commit runs
        if filled:
            return
        # End the journal on a page boundary (blank lines are no records), so that its next
        # record needs a page of its own, which only the reserve can give it.
        with journal_path.open("ab") as f:
            f.write(b"\n" * (-journal_path.stat().st_size % 4096))
        assert (tmpfs / FARM / "journal.jsonl.reserve").stat().st_size > 3 * 7 * 2048
        filled.append(fill(tmpfs))

    ctx = FarmContext(
        inventory=inventory,
        hosts=select_hosts(inventory, None),
        state=StateDir(tmpfs, FARM),
        vault_secret=lambda: VaultSecret.from_passphrase(PASSPHRASE),
        options=RolloutOptions(forks=1, timeout=20),
        factory=hooked_factory({"web1": {"release": fill_once}}),
    )

    result = Farm(ctx).rotate()

    assert filled, "the file system was never filled"
    assert result.outcome is Outcome.CHANGED, result.to_dict()
    journal = Journal(journal_path)
    [run] = [r for r in journal.runs() if r.run_id == result.run_id]
    assert run.finished and run.result == "ok" and journal.damage == []
    assert not (tmpfs / FARM / "journal.jsonl.reserve").exists()
    assert all(f.committed and f.verified for f in run.files.values())
    assert set(farm.fingerprints().values()) == {result.target_fingerprint}
    vault = KeyVault.open(tmpfs / FARM / "vault.fsv", VaultSecret.from_passphrase(PASSPHRASE))
    current = vault.current()
    assert current is not None and current.fingerprint == result.target_fingerprint
