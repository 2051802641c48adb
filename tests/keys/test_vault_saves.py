"""Saves off the critical path: several changes in one save, a save's key derived ahead in a
worker thread, and a vault opened in the background. Real files, real scrypt."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from farmsync.errors import VaultError
from farmsync.inventory.model import Policy
from farmsync.keys.generate import generate_key
from farmsync.keys.vault import _HEADER, KeyStatus, KeyVault, ScryptParams, VaultSecret

FAST = ScryptParams(n=2**4, r=8, p=1)  # tests only: the format stores whatever is used
PASSPHRASE = "correct horse battery staple"


class WatchedSecret(VaultSecret):
    """The real passphrase; every use (each scrypt derivation) notes the thread it ran on."""

    __slots__ = ("threads",)

    def __init__(self, passphrase: str = PASSPHRASE):
        super().__init__(passphrase.encode(), "the test's passphrase")
        self.threads: list[str] = []

    def reveal(self) -> bytes:
        self.threads.append(threading.current_thread().name)
        return super().reveal()


def salt_of(path: Path) -> bytes:
    salt: bytes = _HEADER.unpack(path.read_bytes()[: _HEADER.size])[5]
    return salt


@pytest.fixture
def vault_path(tmp_path: Path) -> Path:
    KeyVault.create(tmp_path / "vault.fsv", VaultSecret.from_passphrase(PASSPHRASE), "web")
    return tmp_path / "vault.fsv"


def test_changes_inside_one_save_are_written_once_at_its_end(vault_path: Path) -> None:
    secret = WatchedSecret()
    vault = KeyVault.open(vault_path, secret)
    before = vault_path.read_bytes()
    key = generate_key(Policy())

    with vault.one_save():
        vault.add(key, "run-1")
        vault.advance(3, "farm-id")
        assert vault_path.read_bytes() == before  # nothing written yet
    derivations = len(secret.threads)

    again = KeyVault.open(vault_path, VaultSecret.from_passphrase(PASSPHRASE))
    assert [e.fingerprint for e in again.entries()] == [key.fingerprint()]
    assert (again.identity.generation, again.identity.farm_id) == (3, "farm-id")
    assert derivations == 2  # the open and one save, not one per change


def test_a_failed_block_or_save_keeps_nothing(vault_path: Path, tmp_path: Path) -> None:
    vault = KeyVault.open(vault_path, VaultSecret.from_passphrase(PASSPHRASE))
    before = vault_path.read_bytes()
    key = generate_key(Policy())

    with pytest.raises(RuntimeError), vault.one_save():
        vault.add(key, "run-1")
        raise RuntimeError("the block fails")
    assert vault.entries() == [] and vault.identity.generation == 0

    vault.path = tmp_path / "gone" / "vault.fsv"  # no such directory: the save fails
    with pytest.raises(VaultError), vault.one_save():
        vault.add(key, "run-1")
        vault.advance(1, "farm-id")
    assert vault.entries() == [] and vault.identity.generation == 0
    assert vault_path.read_bytes() == before


def test_a_prepared_save_derives_its_key_in_a_worker_with_a_fresh_salt(
    vault_path: Path,
) -> None:
    secret = WatchedSecret()
    vault = KeyVault.open(vault_path, secret)
    salts = {salt_of(vault_path)}
    keys = [generate_key(Policy()) for _ in range(3)]

    vault.prepare_saves(3)
    for key in keys:
        vault.add(key, "run")
        salts.add(salt_of(vault_path))
    vault.add(generate_key(Policy()), "unprepared")  # derived where it is saved
    salts.add(salt_of(vault_path))

    main = threading.current_thread().name
    assert secret.threads == [main, "vault-seal", "vault-seal", "vault-seal", main]
    assert len(salts) == 5  # every save its own salt: a prepared key seals one save only
    reopened = KeyVault.open(vault_path, VaultSecret.from_passphrase(PASSPHRASE))
    assert len(reopened.entries()) == 4


def test_a_key_prepared_under_the_old_secret_never_seals_the_new_one(vault_path: Path) -> None:
    vault = KeyVault.open(vault_path, VaultSecret.from_passphrase(PASSPHRASE))
    vault.prepare_saves(1)
    new = VaultSecret.from_passphrase("a new passphrase")

    vault.change_secret(new)

    KeyVault.open(vault_path, new)
    with pytest.raises(VaultError, match="wrong passphrase"):
        KeyVault.open(vault_path, VaultSecret.from_passphrase(PASSPHRASE))


def test_opening_in_the_background_gives_what_open_gives(vault_path: Path) -> None:
    secret = WatchedSecret()
    first = generate_key(Policy())
    vault = KeyVault.open(vault_path, VaultSecret.from_passphrase(PASSPHRASE))
    vault.add(first, "run-1")
    vault.mark_active(first.fingerprint(), "run-1")

    opened = KeyVault.opening(vault_path, secret, farm="web", prepare_saves=2).result()

    current = opened.current()
    assert current is not None and current.key == first and current.status is KeyStatus.ACTIVE
    second = generate_key(Policy())
    opened.add(second, "run-2")  # the keys prepared once the vault was open
    opened.mark_active(second.fingerprint(), "run-2")
    assert sorted(secret.threads) == ["vault-open", "vault-seal", "vault-seal"]
    assert KeyVault.open(vault_path, VaultSecret.from_passphrase(PASSPHRASE)).current() == (
        opened.current()
    )


def test_opening_in_the_background_refuses_as_open_does(vault_path: Path) -> None:
    wrong = KeyVault.opening(vault_path, VaultSecret.from_passphrase("wrong"))
    other_farm = KeyVault.opening(vault_path, VaultSecret.from_passphrase(PASSPHRASE), farm="other")

    for opening, text in ((wrong, "wrong passphrase"), (other_farm, "belongs to farm 'web'")):
        for _ in range(2):  # asked again, the same error
            with pytest.raises(VaultError, match=text):
                opening.result()
    with pytest.raises(VaultError, match="no key vault"):  # at once, not in the thread
        KeyVault.opening(vault_path.with_name("none.fsv"), VaultSecret.from_passphrase("x"))


def test_fast_parameters_are_kept_by_a_prepared_save(tmp_path: Path) -> None:
    path = tmp_path / "fast.fsv"
    vault = KeyVault.create(path, VaultSecret.from_passphrase(PASSPHRASE), "web", params=FAST)
    vault.prepare_saves(1)
    vault.add(generate_key(Policy()), "run")
    assert KeyVault.open(path, VaultSecret.from_passphrase(PASSPHRASE)).params == FAST
