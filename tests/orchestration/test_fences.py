"""A commit that timed out must not land after the rollback (issue 14, High #2), on the
armed shell (a node whose SFTP server cannot commit) and on the SFTP commit (issue 9).

Reproduction: on one node the armed shell finds first on its PATH an ``mv`` that sleeps
before doing the rename, and the rotation's commit timeout is shorter than the sleep. The
controller gives up on that node and rolls every node back; the recycle that follows (as
app-pool recycling would) waits until the late ``mv`` has run, before cleanup. Without a
fence, that rename lands after the rollback was verified and the node ends on the new key
under a journal that says "rolled back".
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from farmsync.keys.vault import KeyStatus, KeyVault, VaultSecret
from farmsync.lab.sshd import SshdNode
from farmsync.orchestration.farm import Farm
from farmsync.orchestration.journal import Journal
from farmsync.orchestration.options import RolloutOptions
from farmsync.orchestration.result import Outcome
from tests.orchestration.farmkit import (
    PASSPHRASE,
    TestFarm,
    file_key,
    hooked_factory,
    slow_mv,
    wait_for_file,
)
from tests.servers import sftp_proxy

MV_DELAY = 3.0
COMMIT_TIMEOUT = 1.5


def _slow_mv_on_path(farm: TestFarm, name: str, request: pytest.FixtureRequest) -> Path:
    """Restart ``name``'s sshd with the slow mv first on its PATH; the file it writes when
    the late mv has run (its exit status)."""
    bin_dir, marker = slow_mv(farm.root / name, MV_DELAY)
    old: SshdNode = farm.handles[name]
    port = old.port
    old.stop()
    # The armed shell runs only where the SFTP commit cannot: deny the hard link (by the
    # request name `sftp-server -Q requests` lists), keep posix-rename for the rollback.
    node = SshdNode(
        old.directory,
        keys=old.keys,
        path_prefix=(bin_dir,),
        sftp_subsystem="internal-sftp -P hardlink",
    )
    request.addfinalizer(node.stop)
    node.start(port=port)
    farm.handles[name] = node
    return marker


def _recycle(farm: TestFarm) -> None:
    document = yaml.safe_load(farm.inventory_path.read_text())
    document["all"]["vars"]["farmsync_recycle"] = {"command": "true"}
    farm.inventory_path.write_text(yaml.safe_dump(document, sort_keys=False))


def test_a_commit_that_timed_out_cannot_land_after_the_rollback(
    make_farm: Callable[..., TestFarm], request: pytest.FixtureRequest
) -> None:
    farm = make_farm(ssh=2, ssh_windows=0, winrm=0)
    marker = _slow_mv_on_path(farm, "web1", request)
    _recycle(farm)
    options = RolloutOptions(forks=8, timeout=COMMIT_TIMEOUT)
    seen: list[str] = []
    # The recycle comes after the rollback and before cleanup: hold it until the late mv ran.
    hooks = {"web1": {"recycle": lambda: seen.append(wait_for_file(marker))}}

    result = Farm(farm.context(options, factory=hooked_factory(hooks))).rotate()

    assert result.outcome is Outcome.ROLLED_BACK, result.messages
    assert result.host("web1").error_kind == "timeout"
    assert [m for m in result.messages if "using the armed shell" in m] == [
        "web1: SFTP commit unavailable (hardlink@openssh.com is refused by the node's SFTP "
        "server); using the armed shell"
    ]
    assert seen, "the recycle did not wait for the late mv"
    status = wait_for_file(marker)
    assert status != "0", "the late rename found a staging file to put in place"
    # The farm is on one key, the old one, and stays there: the journal tells the truth.
    assert farm.files_unchanged()
    assert not farm.leftovers()
    state = farm.context().state
    assert Journal(state.journal).unfinished_runs() == []
    vault = KeyVault.open(state.vault, VaultSecret.from_passphrase(PASSPHRASE))
    entry = vault.find(str(result.target_fingerprint))
    assert entry is not None and entry.status is KeyStatus.ABANDONED


@pytest.mark.parametrize("broken", ["web1", "win3", "iis1"])
def test_a_rollback_that_cannot_verify_overwrites_nothing_and_keeps_the_run_open(
    make_farm: Callable[..., TestFarm], broken: str
) -> None:
    """A backup that does not hold the original (as when two entries reached one file before
    backups were exclusive) is never restored: every file stays as it is, the run stays open
    for `recover`, and no backup is pruned."""
    farm = make_farm(ssh=2, ssh_windows=1, winrm=1)

    def fail_commit() -> None:  # web2's commit fails: the farm must roll back
        for path in farm.configs["web2"].parent.glob("*.farmsync-*.new"):
            path.unlink()

    def spoil_backup() -> None:
        for backup in farm.backups(broken):
            backup.write_bytes(b"<configuration/>")

    hooks = {"web2": {"release": fail_commit}, broken: {"rollback": spoil_backup}}
    result = Farm(farm.context(factory=hooked_factory(hooks))).rotate()

    assert result.outcome is Outcome.INCONSISTENT, result.messages
    assert result.host(broken).error_kind == "verify-mismatch"
    # Left as found: on the run's new key, not overwritten by the spoiled backup.
    assert file_key(farm.configs[broken]).fingerprint() == result.target_fingerprint
    assert [b.read_bytes() for b in farm.backups(broken)] == [b"<configuration/>"]
    state = farm.context().state
    assert [r.run_id for r in Journal(state.journal).unfinished_runs()] == [result.run_id]


def test_an_sftp_release_that_stalled_cannot_land_after_the_rollback(
    make_farm: Callable[..., TestFarm], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """web1's release reaches its node and is held there (sftp_proxy ``hold``): no answer
    comes, the commit times out and the farm rolls back. The recycle, after the rollback and
    before cleanup, lets the held requests run on the node, late."""
    farm = make_farm(ssh=2, ssh_windows=0, winrm=0)
    control = tmp_path / "control"
    control.mkdir()
    (control / "mode").write_text("hold")
    old: SshdNode = farm.handles["web1"]
    port = old.port
    old.stop()
    node = SshdNode(
        old.directory,
        keys=old.keys,
        sftp_subsystem=f"{sys.executable} {sftp_proxy.__file__} {control}",
    )
    request.addfinalizer(node.stop)
    node.start(port=port)
    farm.handles["web1"] = node
    _recycle(farm)
    late: list[str] = []

    def release_late() -> None:
        (control / "go").touch()
        late.extend(wait_for_file(control / "late").split())

    hooks = {"web1": {"recycle": release_late}}
    options = RolloutOptions(forks=8, timeout=COMMIT_TIMEOUT)
    result = Farm(farm.context(options, factory=hooked_factory(hooks))).rotate()

    assert result.outcome is Outcome.ROLLED_BACK, result.messages
    assert result.host("web1").error_kind == "timeout"
    assert late == ["0", "2"], "the late rename found a staging file to put in place"
    assert farm.files_unchanged()
    assert not farm.leftovers()
    state = farm.context().state
    assert Journal(state.journal).unfinished_runs() == []
