"""A node failing at every phase of a rotation: the farm ends on one key, originals intact.

Faults are real: a stopped sshd, a live file edited between read and stage, a staging file
removed before the commit, a file changed after the commit, a killed SSH session, a dropped
WinRM connection. Hooks only choose the moment.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from farmsync.keys.vault import KeyStatus, KeyVault, VaultSecret
from farmsync.lab.sshd import SshdNode, descendants
from farmsync.orchestration.farm import Farm
from farmsync.orchestration.journal import Journal
from farmsync.orchestration.result import Outcome, RunResult
from tests.orchestration.farmkit import PASSPHRASE, TestFarm, hooked_factory
from tests.servers.wsman_endpoint import WsmanEndpoint

pytestmark = pytest.mark.slow  # a fault suite: `make fast` leaves it out


def assert_back_on_old_keys(
    farm: TestFarm, result: RunResult, *, except_host: str = "", key_stored: bool = True
) -> None:
    """Every file byte-identical to its original; nothing staged left behind."""
    for host, path in farm.configs.items():
        if host != except_host:
            assert path.read_bytes() == farm.originals[host], host
    assert not farm.leftovers()
    state = farm.context().state
    if key_stored:  # stored before the first node was touched, abandoned since
        vault = KeyVault.open(state.vault, VaultSecret.from_passphrase(PASSPHRASE))
        entry = vault.find(str(result.target_fingerprint))
        assert entry is not None and entry.status is KeyStatus.ABANDONED
        assert vault.current() is None
    else:  # never stored: no node was ever going to be touched, so no vault was written
        assert not state.vault.exists()
    assert Journal(state.journal).unfinished_runs() == []


def staged_files(config: Path) -> list[Path]:
    return list(config.parent.glob("*.farmsync-*.new"))


def test_unreachable_node_before_read_stops_everything(make_farm: Callable[..., TestFarm]) -> None:
    farm = make_farm(ssh=2, ssh_windows=0, winrm=1)
    sshd: SshdNode = farm.handles["web2"]
    sshd.stop()

    result = Farm(farm.context()).rotate()

    assert result.outcome is Outcome.NOT_STARTED and result.exit_code == 3
    assert result.host("web2").status == "unreachable"
    assert result.host("web2").error_kind == "unreachable"
    assert_back_on_old_keys(farm, result, key_stored=False)


def test_stage_refused_when_a_live_file_changed_since_read(
    make_farm: Callable[..., TestFarm],
) -> None:
    farm = make_farm(ssh=2, ssh_windows=0, winrm=1)
    edited = farm.originals["web2"].replace(
        b"<configuration>", b"<configuration><!-- hand edit -->"
    )

    def hand_edit() -> None:
        farm.configs["web2"].write_bytes(edited)

    result = Farm(farm.context(factory=hooked_factory({"web2": {"stage": hand_edit}}))).rotate()

    assert result.outcome is Outcome.ABORTED and result.exit_code == 1
    assert result.host("web2").error_kind == "changed-since-read"
    assert farm.configs["web2"].read_bytes() == edited  # someone else's edit is kept
    assert_back_on_old_keys(farm, result, except_host="web2")


def test_arm_refused_when_a_staging_file_vanished(make_farm: Callable[..., TestFarm]) -> None:
    farm = make_farm(ssh=1, ssh_windows=1, winrm=1)

    def remove_staged() -> None:
        for path in staged_files(farm.configs["win2"]):
            path.unlink()

    result = Farm(farm.context(factory=hooked_factory({"win2": {"arm": remove_staged}}))).rotate()

    assert result.outcome is Outcome.ABORTED and result.exit_code == 1
    assert result.host("win2").status == "failed"
    assert_back_on_old_keys(farm, result)


def test_commit_failure_on_one_node_rolls_every_node_back(
    make_farm: Callable[..., TestFarm],
) -> None:
    farm = make_farm(ssh=2, ssh_windows=0, winrm=1)

    def remove_staged() -> None:
        for path in staged_files(farm.configs["iis1"]):
            path.unlink()

    # iis1 is released last, so web1 and web2 have really committed before it fails.
    factory = hooked_factory({"iis1": {"release": remove_staged}})
    result = Farm(farm.context(factory=factory)).rotate()

    assert result.outcome is Outcome.ROLLED_BACK and result.exit_code == 1
    assert result.host("iis1").status == "failed"
    assert {result.host(h).status for h in ("web1", "web2")} == {"rolled-back"}
    assert all(farm.backups(h) for h in ("web1", "web2"))  # they did commit
    assert_back_on_old_keys(farm, result)


def test_verify_mismatch_rolls_every_node_back(make_farm: Callable[..., TestFarm]) -> None:
    farm = make_farm(ssh=2, ssh_windows=0, winrm=1)
    reads = {"n": 0}

    def edit_after_commit() -> None:
        reads["n"] += 1
        if reads["n"] == 2:  # the verify read: the committed file is changed under us
            path = farm.configs["web1"]
            path.write_bytes(path.read_bytes().replace(b"<compilation", b"<compilation "))

    result = Farm(
        farm.context(factory=hooked_factory({"web1": {"read": edit_after_commit}}))
    ).rotate()

    assert result.outcome is Outcome.ROLLED_BACK
    assert result.host("web1").error_kind == "verify-mismatch"
    assert_back_on_old_keys(farm, result)


def test_ssh_connection_dropped_mid_commit_rolls_back(make_farm: Callable[..., TestFarm]) -> None:
    farm = make_farm(ssh=3, ssh_windows=0, winrm=0)
    sshd: SshdNode = farm.handles["web3"]

    def kill_session() -> None:
        # Kill the per-connection sshd processes (and their session) of web3; the listener
        # stays, so a fresh connection can roll it back, as after a network blip.
        assert sshd.pid is not None
        for pid in descendants(sshd.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    factory = hooked_factory({"web3": {"release": kill_session}})
    result = Farm(farm.context(factory=factory)).rotate()

    assert result.outcome is Outcome.ROLLED_BACK, result.to_dict()
    assert result.host("web3").status == "failed"
    assert_back_on_old_keys(farm, result)


def test_winrm_connection_dropped_mid_commit_rolls_back(
    make_farm: Callable[..., TestFarm],
) -> None:
    farm = make_farm(ssh=1, ssh_windows=0, winrm=2)
    server: WsmanEndpoint = farm.handles["iis2"]

    def drop_next() -> None:
        server.drop(count=1)

    factory = hooked_factory({"iis2": {"release": drop_next}})
    result = Farm(farm.context(factory=factory)).rotate()

    assert result.outcome is Outcome.ROLLED_BACK, result.to_dict()
    assert result.host("iis2").status == "failed"
    assert result.host("iis2").error_kind == "connection-lost"
    assert_back_on_old_keys(farm, result)


def test_vault_save_failing_after_the_commit_leaves_the_run_for_recover(
    make_farm: Callable[..., TestFarm],
) -> None:
    """The journal never calls a run finished while the vault is behind it: else `sync` would
    put the replaced key back on a farm that holds the new one."""
    farm = make_farm(ssh=2, ssh_windows=0, winrm=0)
    vault_file = farm.context().state.vault
    parked = vault_file.with_name("parked.fsv")

    def break_vault() -> None:  # the vault holds the new key by now; its next save fails
        vault_file.rename(parked)
        vault_file.mkdir()
        (vault_file / "in-the-way").write_bytes(b"")

    factory = hooked_factory({"web2": {"released": break_vault}})
    result = Farm(farm.context(factory=factory)).rotate()

    assert set(farm.fingerprints().values()) == {result.target_fingerprint}
    assert result.outcome is Outcome.INCONSISTENT and result.exit_code == 1
    assert any("farmsync recover" in m and "vault" in m for m in result.messages)
    state = farm.context().state
    assert [r.run_id for r in Journal(state.journal).unfinished_runs()] == [result.run_id]

    (vault_file / "in-the-way").unlink()
    vault_file.rmdir()
    parked.rename(vault_file)
    recovered = Farm(farm.context()).recover()

    assert recovered.exit_code == 0, recovered.to_dict()
    vault = KeyVault.open(state.vault, VaultSecret.from_passphrase(PASSPHRASE))
    current = vault.current()
    assert current is not None and current.fingerprint == result.target_fingerprint
    assert Journal(state.journal).unfinished_runs() == []
