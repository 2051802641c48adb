"""A rotation derives the vault key while the nodes are read, and still refuses a wrong secret
before anything is staged or written.

The overlap is shown by a rendezvous, not by timings: every use of the secret (a scrypt
derivation) waits for a node read to be under way, and a node read does not return before the
vault's open derivation has started. Opened before the nodes were contacted, the vault would
wait for a read that never comes (the guard's timeout fails the test).
"""

from __future__ import annotations

import socket
import threading
from dataclasses import replace
from pathlib import Path

from farmsync import Farm, Outcome, RolloutOptions, VaultError, VaultSecret
from farmsync.inventory.model import Host
from farmsync.nodes.connect import node_for
from farmsync.nodes.contract import NodeOperations
from farmsync.orchestration.journal import Journal
from tests.cli.clikit import PASSPHRASE, LocalFarm, error_lines, output_of, run_cli
from tests.orchestration.farmkit import HookedNode, write_inventory

DEADLOCK_GUARD = 30.0  # seconds; only reached when the two never meet


class Rendezvous:
    """The vault's key derivations and the nodes' reads, each waiting for the other."""

    def __init__(self) -> None:
        self.reading = threading.Event()  # a node read is under way
        self.opening = threading.Event()  # the vault's open derivation has started
        self.threads: list[str] = []  # where each derivation ran

    def derivation(self) -> None:
        name = threading.current_thread().name
        self.threads.append(name)
        if name == "vault-open":
            self.opening.set()
        if not self.reading.wait(DEADLOCK_GUARD):
            raise TimeoutError("the vault key was derived before any node was read")

    def read(self) -> None:
        self.reading.set()
        if not self.opening.wait(DEADLOCK_GUARD):
            raise TimeoutError("a node read ended before the vault key's derivation started")


class MeetingSecret(VaultSecret):
    """The real passphrase; each use (a scrypt derivation) waits for a node read."""

    __slots__ = ("rendezvous",)

    def __init__(self, rendezvous: Rendezvous):
        super().__init__(PASSPHRASE.encode(), "the test's passphrase")
        self.rendezvous = rendezvous

    def reveal(self) -> bytes:
        self.rendezvous.derivation()
        return super().reveal()


def _farm(local_farm: LocalFarm, secret: VaultSecret, *, check: bool = False) -> Farm:
    return Farm.open(
        local_farm.inventory,
        state_dir=local_farm.state_root,
        secret=secret,
        options=RolloutOptions(forks=4, check=check),
    )


def test_the_vault_key_is_derived_while_the_nodes_are_read(local_farm: LocalFarm) -> None:
    first = _farm(local_farm, VaultSecret.from_passphrase(PASSPHRASE)).rotate()
    assert first.outcome is Outcome.CHANGED  # the vault exists now: the next run opens it
    rendezvous = Rendezvous()

    def meeting_node(host: Host) -> NodeOperations:
        return HookedNode(node_for(host), {"read": rendezvous.read})

    farm = _farm(local_farm, MeetingSecret(rendezvous))
    result = Farm(replace(farm.ctx, factory=meeting_node)).rotate()

    assert result.outcome is Outcome.CHANGED, result.to_dict()
    # The open's key and both saves' keys (store, settle), none on the run's own thread.
    assert sorted(rendezvous.threads) == ["vault-open", "vault-seal", "vault-seal"]
    assert set(local_farm.fingerprints().values()) == {result.target_fingerprint}
    current = local_farm.vault().current()
    assert current is not None and current.fingerprint == result.target_fingerprint


def test_a_wrong_passphrase_is_refused_after_the_read_with_nothing_staged_or_written(
    local_farm: LocalFarm,
) -> None:
    assert _farm(local_farm, VaultSecret.from_passphrase(PASSPHRASE)).rotate().exit_code == 0
    files = local_farm.node_files()
    vault = (local_farm.farm_dir / "vault.fsv").read_bytes()
    journal = Journal(local_farm.farm_dir / "journal.jsonl")
    runs = [run.run_id for run in journal.runs()]
    wrong = VaultSecret.from_passphrase("not the passphrase")

    for check in (False, True):
        farm = _farm(local_farm, wrong, check=check)
        try:
            farm.rotate()
        except VaultError as refused:
            assert "wrong passphrase" in str(refused)
            assert refused.exit_code == 2
        else:
            raise AssertionError("a wrong passphrase was accepted")

    assert local_farm.node_files() == files  # nothing staged, no backup, no marker
    assert (local_farm.farm_dir / "vault.fsv").read_bytes() == vault
    assert [run.run_id for run in Journal(journal.path).runs()] == runs  # no run started


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_wrong_passphrase_still_wins_over_an_unreachable_node(
    local_farm: LocalFarm, tmp_path: Path
) -> None:
    # Opened first, the vault refused the run before any node was tried (exit 2). The node
    # is tried first now; the exit code and the message are the vault's still.
    assert local_farm.run("rotate").returncode == 0
    key = tmp_path / "id"
    key.write_text("never read: the connection is refused first\n")
    key.chmod(0o600)
    (tmp_path / "known_hosts").write_text("")
    inventory = tmp_path / "one.yml"
    host = {
        "_group": "web",
        "ansible_connection": "ssh",
        "ansible_host": "127.0.0.1",
        "ansible_port": _refused_port(),
        "ansible_user": "farmsync",
        "ansible_ssh_private_key_file": str(key),
        "farmsync_known_hosts": str(tmp_path / "known_hosts"),
        "farmsync_root_configs": ["/srv/www/web.config"],
    }
    write_inventory(inventory, "clifarm", {"web1": host})  # the local farm's vault
    env = local_farm.env(FARMSYNC_VAULT_PASSPHRASE="not-the-passphrase")
    result = run_cli("rotate", "-i", str(inventory), env=env)

    assert result.returncode == 2, output_of(result)
    assert "unreachable" in result.stderr  # the node was tried
    errors = [line for line in error_lines(result) if line.startswith("farmsync:")]
    assert len(errors) == 1 and "wrong passphrase" in errors[0], output_of(result)


def test_a_run_that_decides_by_the_key_age_opens_the_vault_before_any_node(
    local_farm: LocalFarm,
) -> None:
    assert local_farm.run("rotate").returncode == 0
    env = local_farm.env(FARMSYNC_VAULT_PASSPHRASE="not-the-passphrase")

    for extra in (("--if-older-than", "1d"), ("--clear-staged", "20260101T000000Z-abcdef")):
        result = local_farm.run("rotate", *extra, env=env)

        assert result.returncode == 2, output_of(result)
        assert error_lines(result) == [
            line for line in error_lines(result) if line.startswith("farmsync:")
        ], output_of(result)  # no progress line: no node was contacted
        assert "wrong passphrase" in result.stderr
