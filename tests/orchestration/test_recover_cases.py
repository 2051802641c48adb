"""Recovery of a run whose controller was SIGKILLed, in the cases that need care.

Every case starts from a real crash: a controller process stalls at a known point of its
commit (web1 and web2 released, web3 not), waits until those commits have landed, and is
SIGKILLed. Then something else goes wrong before ``recover``: a backup that is not the
original, a node still down, a host removed from the inventory, journal lines damaged, a
recycle or cleanup that fails, or the run was a restore.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable

import yaml

from farmsync.keys.vault import KeyStatus, KeyVault, VaultSecret
from farmsync.lab.sshd import SshdNode, descendants
from farmsync.nodes.contract import backup_path
from farmsync.orchestration.farm import Farm
from farmsync.orchestration.journal import Journal
from farmsync.orchestration.result import Outcome
from tests.orchestration.farmkit import PASSPHRASE, TestFarm, hooked_factory
from tests.orchestration.test_crash_recovery import kill, run_until_stalled


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not the case after {timeout}s: {what}")
        time.sleep(0.05)


def crash_mid_commit(farm: TestFarm) -> str:
    """SIGKILL a rotation once web1 and web2 hold its new content and web3 does not."""
    proc = run_until_stalled(farm, "web3", "before")
    try:
        wait_until(
            lambda: all(
                farm.configs[h].read_bytes() != farm.originals[h] for h in ("web1", "web2")
            ),
            "web1 and web2 committed",
        )
    finally:
        kill(proc)
    [state] = Journal(farm.context().state.journal).unfinished_runs()
    assert farm.configs["web3"].read_bytes() == farm.originals["web3"]
    return state.run_id


def unfinished(farm: TestFarm) -> list[str]:
    return [r.run_id for r in Journal(farm.context().state.journal).unfinished_runs()]


def contents(farm: TestFarm) -> dict[str, bytes]:
    return {h: p.read_bytes() for h, p in farm.configs.items()}


def test_backups_that_are_not_the_original_leave_the_run_open_until_accepted(
    make_farm: Callable[..., TestFarm],
) -> None:
    farm = make_farm(ssh=3, ssh_windows=0, winrm=0)
    run_id = crash_mid_commit(farm)
    for host in ("web1", "web2"):  # what an overwritten backup looks like
        backup = backup_path(str(farm.configs[host]), run_id)
        with open(backup, "r+b") as f:
            f.write(b"<!-- overwritten -->")
    crashed = contents(farm)

    refused = farm.cli("recover")

    assert refused.returncode == 3, refused.stderr
    details = [line for line in refused.stderr.splitlines() if line.startswith("farmsync:   ")]
    for host in ("web1", "web2"):
        [line] = [d for d in details if f" {host} {farm.configs[host]}:" in d]
        assert "holds the run's new content (key mk-" in line
        assert "holds unknown content" in line and "not the original (sha256" in line
    [web3] = [d for d in details if " web3 " in d]
    assert "holds the original (key mk-" in web3
    assert "--accept-current web1 --accept-current web2" in details[-1]
    assert contents(farm) == crashed and unfinished(farm) == [run_id]

    one = farm.cli("recover", "--accept-current", "web1")

    assert one.returncode == 3, one.stderr
    assert "cannot be rolled back: web2 hold(s) the run's new content" in one.stderr
    assert contents(farm) == crashed and unfinished(farm) == [run_id]

    both = farm.cli("recover", "--accept-current", "web1", "--accept-current", "web2")

    assert both.returncode == 0, both.stderr + both.stdout
    assert contents(farm) == crashed  # accepted as they are; web3 never changed
    assert unfinished(farm) == []
    assert "accepted as the run's outcome" in both.stdout
    assert "the farm holds several keys" in both.stdout
    records = Journal(farm.context().state.journal).records()
    accepts = [r for r in records if r["event"] == "accept"]
    assert sorted(str(r["host"]) for r in accepts) == ["web1", "web2"]
    # The way out needs no hand edit: one rotation puts one key everywhere.
    rotated = farm.cli("rotate")
    assert rotated.returncode == 0, rotated.stderr
    assert len(set(farm.fingerprints().values())) == 1


def test_recover_with_a_node_still_down_exits_3_and_touches_nothing(
    make_farm: Callable[..., TestFarm],
) -> None:
    farm = make_farm(ssh=3, ssh_windows=0, winrm=0)
    run_id = crash_mid_commit(farm)
    sshd: SshdNode = farm.handles["web1"]
    port = sshd.port
    sshd.stop()
    crashed = contents(farm)

    down = farm.cli("recover")

    assert down.returncode == 3, down.stderr
    assert f"cannot settle unfinished run {run_id} yet: web1" in down.stderr
    assert contents(farm) == crashed and unfinished(farm) == [run_id]

    sshd.start(port=port)
    back = farm.cli("recover")

    assert back.returncode == 0, back.stderr + back.stdout
    assert farm.files_unchanged() and unfinished(farm) == []


def test_a_host_that_left_the_inventory_is_reported_and_left_as_it_is(
    make_farm: Callable[..., TestFarm],
) -> None:
    farm = make_farm(ssh=3, ssh_windows=0, winrm=0)
    run_id = crash_mid_commit(farm)
    document = yaml.safe_load(farm.inventory_path.read_text())
    del document["all"]["children"]["ssh_linux"]["hosts"]["web2"]
    farm.inventory_path.write_text(yaml.safe_dump(document, sort_keys=False))
    web2 = farm.configs["web2"].read_bytes()

    recovered = farm.cli("recover")

    assert recovered.returncode == 0, recovered.stderr + recovered.stdout
    assert f"run {run_id}: web2 is no longer in the inventory" in recovered.stdout
    assert farm.configs["web2"].read_bytes() == web2 != farm.originals["web2"]
    for host in ("web1", "web3"):
        assert farm.configs[host].read_bytes() == farm.originals[host]
    assert unfinished(farm) == []


def test_damaged_commit_lines_still_get_the_run_rolled_back(
    make_farm: Callable[..., TestFarm],
) -> None:
    farm = make_farm(ssh=3, ssh_windows=0, winrm=0)
    run_id = crash_mid_commit(farm)
    journal = farm.context().state.journal
    lines = journal.read_bytes().splitlines(keepends=True)
    damaged = [i for i, line in enumerate(lines) if b'"event":"commit"' in line]
    assert damaged
    for i in damaged:  # bit rot: the write-ahead records of the commit are unreadable
        lines[i] = lines[i].replace(b'"event":"commit"', b'"event":"c\xffmmit"')
    journal.write_bytes(b"".join(lines))

    recovered = farm.cli("recover")

    assert recovered.returncode == 0, recovered.stderr + recovered.stdout
    assert farm.files_unchanged() and unfinished(farm) == []
    assert f"line {damaged[0] + 1} is damaged" in recovered.stdout
    assert f"(run {run_id})" in recovered.stdout  # named from the raw bytes


def test_recycle_and_cleanup_failures_during_recovery_are_reported(
    make_farm: Callable[..., TestFarm],
) -> None:
    farm = make_farm(ssh=3, ssh_windows=0, winrm=0)
    run_id = crash_mid_commit(farm)
    document = yaml.safe_load(farm.inventory_path.read_text())
    document["all"]["children"]["ssh_linux"]["hosts"]["web1"]["farmsync_recycle"] = {
        "command": "echo pool refused >&2; exit 7"
    }
    farm.inventory_path.write_text(yaml.safe_dump(document, sort_keys=False))
    sshd: SshdNode = farm.handles["web2"]

    def drop_connection() -> None:
        # The session dies during cleanup; the listener stays for the next connection.
        assert sshd.pid is not None
        for pid in descendants(sshd.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    factory = hooked_factory({"web2": {"cleanup": drop_connection}})
    result = Farm(farm.context(factory=factory)).recover()

    assert result.exit_code == 0, result.to_dict()
    assert f"recovered unfinished run {run_id}: rolled-back" in result.messages
    assert any(m.startswith("web1: recycle failed: web1") for m in result.messages)
    assert any(m.startswith("web2: cleanup failed: web2") for m in result.messages)
    assert farm.files_unchanged() and unfinished(farm) == []
    records = Journal(farm.context().state.journal).records()
    assert any(r["event"] == "recycle" and r["result"] == "failed" for r in records)


def test_an_interrupted_restore_is_closed_with_advice(make_farm: Callable[..., TestFarm]) -> None:
    farm = make_farm(ssh=2, ssh_windows=0, winrm=0)
    rotated = farm.cli("rotate", "--json")
    assert rotated.returncode == 0, rotated.stderr
    [earlier] = [r.run_id for r in Journal(farm.context().state.journal).runs()]
    proc = run_until_stalled(farm, "web1", f"restore:{earlier}")
    kill(proc)
    [restore] = unfinished(farm)
    after_rotation = contents(farm)

    recovered = farm.cli("recover")

    assert recovered.returncode == 0, recovered.stderr + recovered.stdout
    assert f"restore {restore} was interrupted: run the same `farmsync restore` again" in (
        recovered.stdout
    )
    assert contents(farm) == after_rotation and unfinished(farm) == []
    vault = KeyVault.open(farm.context().state.vault, VaultSecret.from_passphrase(PASSPHRASE))
    current = vault.current()
    assert current is not None and current.status is KeyStatus.ACTIVE
    again = farm.cli("restore", "--host", "web1", "--run", earlier)
    assert again.returncode == 0, again.stderr
    assert farm.configs["web1"].read_bytes() == farm.originals["web1"]
    assert f"web1 is back on its files from before run {earlier}" in again.stdout


def test_a_rollback_whose_backup_is_not_the_original_leaves_the_file_and_the_run_open(
    make_farm: Callable[..., TestFarm],
) -> None:
    farm = make_farm(ssh=3, ssh_windows=0, winrm=0)
    holder: dict[str, str] = {}

    def spoil_web1_backup_then_fail_web3() -> None:
        # web1 and web2 were released before web3: once web1's commit has landed, its backup
        # loses the original (what an overwritten backup looks like), and web3's commit fails.
        wait_until(lambda: bool(farm.backups("web1")), "web1 committed")
        [backup] = farm.backups("web1")
        wait_until(
            lambda: farm.configs["web1"].read_bytes() != farm.originals["web1"], "web1 replaced"
        )
        backup.write_bytes(b"<configuration><!-- not the original --></configuration>\n")
        holder["new"] = farm.configs["web1"].read_bytes().decode()
        for staged in farm.configs["web3"].parent.glob("*.farmsync-*.new"):
            staged.unlink()

    factory = hooked_factory({"web3": {"release": spoil_web1_backup_then_fail_web3}})
    result = Farm(farm.context(factory=factory)).rotate()

    assert result.outcome is Outcome.INCONSISTENT, result.to_dict()
    assert farm.configs["web1"].read_bytes().decode() == holder["new"]  # left as it was
    for host in ("web2", "web3"):
        assert farm.configs[host].read_bytes() == farm.originals[host]
    assert unfinished(farm) == [result.run_id]

    refused = farm.cli("recover")

    assert refused.returncode == 3, refused.stderr
    assert "web1 hold(s) the run's new content" in refused.stderr
    assert "--accept-current web1" in refused.stderr

    accepted = farm.cli("recover", "--accept-current", "web1")

    assert accepted.returncode == 0, accepted.stderr + accepted.stdout
    assert unfinished(farm) == []
    assert farm.cli("rotate").returncode == 0
    assert len(set(farm.fingerprints().values())) == 1
