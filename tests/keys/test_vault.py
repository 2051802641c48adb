"""The key vault on real files with real keys: round trip, secrecy, tamper and crash safety."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from farmsync.errors import VaultError
from farmsync.inventory.model import Policy
from farmsync.keys.generate import generate_key
from farmsync.keys.machinekey import MachineKey
from farmsync.keys.vault import (
    _HEADER,
    KEY_FILE_ENV,
    PASSPHRASE_ENV,
    KeyOrigin,
    KeyStatus,
    KeyVault,
    ScryptParams,
    VaultSecret,
)

FAST = ScryptParams(n=2**4, r=8, p=1)  # tests only: the format stores whatever is used
SECRET = VaultSecret.from_passphrase("correct horse battery staple")


def damaged(path: Path) -> str:
    return f"cannot open vault {path}: wrong passphrase or damaged file"


@pytest.fixture
def vault_path(tmp_path: Path) -> Path:
    return tmp_path / "vault.fsv"


@pytest.fixture
def vault(vault_path: Path) -> KeyVault:
    return KeyVault.create(vault_path, SECRET, "web", params=FAST)


def _secrets_of(key: MachineKey) -> list[str]:
    return [key.validation_key, key.decryption_key]


def test_round_trip_with_real_keys_and_default_parameters(vault_path: Path) -> None:
    vault = KeyVault.create(vault_path, SECRET, "web")  # n=2**15, as in production
    key = generate_key(Policy(validation="HMACSHA512", compatibility_mode="Framework45"))
    entry = vault.add(key, "run-1")
    vault.mark_active(entry.fingerprint, "run-1")

    again = KeyVault.open(vault_path, SECRET, farm="web")
    assert again.params == ScryptParams()
    [stored] = again.entries()
    assert stored.key == key and stored.fingerprint == key.fingerprint()
    assert stored.status is KeyStatus.ACTIVE and stored.run_id == "run-1"
    assert stored.activated_run == "run-1" and stored.activated_at
    assert again.current() == stored and again.previous() is None

    raw = vault_path.read_bytes()
    assert raw.startswith(b"FSVAULT\x00")
    for secret in [*_secrets_of(key), key.fingerprint()]:
        assert secret.encode() not in raw and secret.lower().encode() not in raw


def test_vault_file_is_0600_and_no_temp_file_is_left(vault: KeyVault, vault_path: Path) -> None:
    for i in range(3):
        vault.add(generate_key(), f"run-{i}")
    assert stat.S_IMODE(vault_path.stat().st_mode) == 0o600
    assert sorted(p.name for p in vault_path.parent.iterdir()) == ["vault.fsv"]


def test_every_save_uses_a_fresh_salt_and_nonce(vault: KeyVault, vault_path: Path) -> None:
    headers = set()
    for _ in range(4):
        vault.change_secret(SECRET)  # same content, saved again
        header = _HEADER.unpack(vault_path.read_bytes()[: _HEADER.size])
        headers.add((header[5], header[6]))
    assert len({salt for salt, _ in headers}) == 4
    assert len({nonce for _, nonce in headers}) == 4


def test_history_life_cycle_rotate_then_roll_back(vault: KeyVault, vault_path: Path) -> None:
    a, b, c = generate_key(), generate_key(), generate_key()
    ea = vault.add(a, "run-a", origin=KeyOrigin.IMPORTED)
    assert ea.status is KeyStatus.GENERATED and vault.current() is None
    vault.mark_active(ea.fingerprint, "run-a")
    eb = vault.add(b, "run-b")
    assert vault.current().fingerprint == ea.fingerprint  # type: ignore[union-attr]
    vault.mark_active(eb.fingerprint, "run-b")
    ec = vault.add(c, "run-c")
    vault.mark_abandoned(ec.fingerprint)  # run-c failed and was rolled back

    vault = KeyVault.open(vault_path, SECRET)
    assert [e.fingerprint for e in vault.entries()] == [
        ec.fingerprint,
        eb.fingerprint,
        ea.fingerprint,
    ]
    assert [e.status for e in vault.entries()] == [
        KeyStatus.ABANDONED,
        KeyStatus.ACTIVE,
        KeyStatus.RETIRED,
    ]
    assert vault.find(ea.fingerprint).origin is KeyOrigin.IMPORTED  # type: ignore[union-attr]
    assert vault.current().key == b  # type: ignore[union-attr]
    assert vault.previous().key == a  # type: ignore[union-attr]

    # Rollback: the previous key becomes active again, the one it replaces is retired.
    vault.mark_active(ea.fingerprint, "run-d")
    assert vault.current().fingerprint == ea.fingerprint  # type: ignore[union-attr]
    assert vault.current().activated_run == "run-d"  # type: ignore[union-attr]
    assert vault.previous().fingerprint == eb.fingerprint  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="active"):
        vault.mark_abandoned(ea.fingerprint)
    # Storing a key twice keeps the one entry and its history.
    assert vault.add(b, "run-e").run_id == "run-b" and len(vault.entries()) == 3


def test_find_by_fingerprint(vault: KeyVault) -> None:
    entry = vault.add(generate_key(), "run-1")
    assert vault.find(entry.fingerprint) == entry
    assert vault.find(entry.fingerprint[:8]) is None  # whole fingerprints only
    with pytest.raises(VaultError, match="no key with fingerprint"):
        vault.mark_active("mk-0000", "run-3")


def test_reprs_and_summaries_never_show_key_material(vault: KeyVault) -> None:
    key = generate_key()
    entry = vault.add(key, "run-1")
    shown = " ".join(
        [
            repr(entry),
            str(entry),
            repr(vault),
            repr(SECRET),
            str(SECRET),
            json.dumps(entry.summary()),
        ]
    )
    for secret in _secrets_of(key):
        assert secret not in shown
    assert "correct horse" not in shown
    assert entry.fingerprint in shown


# --- refusing to open --------------------------------------------------------------------


def test_wrong_passphrase_is_one_clear_error(vault: KeyVault, vault_path: Path) -> None:
    vault.add(generate_key(), "run-1")
    with pytest.raises(VaultError) as caught:
        KeyVault.open(vault_path, VaultSecret.from_passphrase("correct horse battery stapler"))
    assert str(caught.value) == damaged(vault_path)


def _regions() -> list[tuple[str, int]]:
    size = _HEADER.size
    return [
        ("magic", 0),
        ("version", 9),
        ("scrypt-n", 10),
        ("scrypt-r", 14),
        ("scrypt-p", 18),
        ("salt", 19),
        ("salt-end", 34),
        ("nonce", 35),
        ("nonce-end", size - 1),
        ("ciphertext", size),
        ("ciphertext-middle", size + 100),
        ("tag", -16),
        ("tag-end", -1),
    ]


@pytest.mark.parametrize(("region", "offset"), _regions(), ids=[r for r, _ in _regions()])
def test_any_flipped_byte_is_refused(
    vault: KeyVault, vault_path: Path, region: str, offset: int
) -> None:
    vault.add(generate_key(), "run-1")
    data = bytearray(vault_path.read_bytes())
    assert len(data) > _HEADER.size + 116
    data[offset] ^= 0x01
    vault_path.write_bytes(bytes(data))
    with pytest.raises(VaultError) as caught:
        KeyVault.open(vault_path, SECRET)
    assert str(caught.value) == damaged(vault_path)


def test_header_asking_for_huge_scrypt_memory_is_refused_without_trying(
    vault: KeyVault, vault_path: Path
) -> None:
    data = bytearray(vault_path.read_bytes())
    data[10] = 40  # n = 2**40
    vault_path.write_bytes(bytes(data))
    with pytest.raises(VaultError, match="wrong passphrase or damaged file"):
        KeyVault.open(vault_path, SECRET)


@pytest.mark.parametrize("keep", [0, 7, _HEADER.size, _HEADER.size + 15, -1])
def test_truncated_vault_is_refused(vault: KeyVault, vault_path: Path, keep: int) -> None:
    vault.add(generate_key(), "run-1")
    data = vault_path.read_bytes()
    vault_path.write_bytes(data[:keep])
    with pytest.raises(VaultError) as caught:
        KeyVault.open(vault_path, SECRET)
    assert str(caught.value) == damaged(vault_path)


def test_appended_bytes_are_refused(vault: KeyVault, vault_path: Path) -> None:
    vault_path.write_bytes(vault_path.read_bytes() + b"\x00")
    with pytest.raises(VaultError, match="damaged"):
        KeyVault.open(vault_path, SECRET)


def test_missing_vault_existing_vault_and_other_farm(vault: KeyVault, vault_path: Path) -> None:
    with pytest.raises(VaultError, match="no key vault at"):
        KeyVault.open(vault_path.with_name("other.fsv"), SECRET)
    with pytest.raises(VaultError, match="already exists"):
        KeyVault.create(vault_path, SECRET, "web", params=FAST)
    with pytest.raises(VaultError, match="belongs to farm 'web', not 'api'"):
        KeyVault.open_or_create(vault_path, SECRET, "api", params=FAST)
    fresh = KeyVault.open_or_create(vault_path.with_name("api.fsv"), SECRET, "api", params=FAST)
    assert fresh.farm == "api" and fresh.entries() == []
    assert KeyVault.open_or_create(vault_path, SECRET, "web").farm == "web"


def test_change_secret_re_encrypts(vault: KeyVault, vault_path: Path) -> None:
    key = generate_key()
    vault.add(key, "run-1")
    new = VaultSecret.from_passphrase("another passphrase")
    vault.change_secret(new)
    with pytest.raises(VaultError):
        KeyVault.open(vault_path, SECRET)
    assert KeyVault.open(vault_path, new).entries()[0].key == key


# --- crash safety of a save --------------------------------------------------------------

FAILING_SAVE = textwrap.dedent(
    """
    import json, resource, signal, sys
    from farmsync.errors import VaultError
    from farmsync.keys.generate import generate_key
    from farmsync.keys.vault import KeyVault, VaultSecret
    vault = KeyVault.open(sys.argv[1], VaultSecret.from_passphrase(sys.argv[2]))
    key = generate_key()
    # A real write failure: the kernel refuses to grow any file past 64 bytes (EFBIG).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))
    try:
        vault.add(key, "run-2")
    except VaultError as e:
        print(json.dumps({"error": str(e)}))
    else:
        print(json.dumps({"error": None}))
    """
)


def test_failed_save_leaves_the_old_vault_intact_and_no_temp_file(
    vault: KeyVault, vault_path: Path
) -> None:
    first = vault.add(generate_key(), "run-1")
    before = vault_path.read_bytes()
    out = subprocess.run(
        [sys.executable, "-c", FAILING_SAVE, str(vault_path), "correct horse battery staple"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    error = json.loads(out.stdout)["error"]
    assert error is not None and error.startswith(f"cannot write vault {vault_path}: ")
    assert "too large" in error.lower()
    assert vault_path.read_bytes() == before
    assert sorted(p.name for p in vault_path.parent.iterdir()) == ["vault.fsv"]
    [entry] = KeyVault.open(vault_path, SECRET).entries()
    assert entry.fingerprint == first.fingerprint


# --- where the secret comes from ---------------------------------------------------------


def _key_file(tmp_path: Path, mode: int, content: bytes = b"s3cret-key-file\n") -> Path:
    path = tmp_path / "vault.key"
    path.write_bytes(content)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_private_key_file_is_accepted(tmp_path: Path, mode: int) -> None:
    path = _key_file(tmp_path, mode)
    secret = VaultSecret.from_env({}, key_file=str(path))
    assert secret.reveal() == b"s3cret-key-file"  # one trailing newline dropped
    assert str(path) in secret.source
    # Same secret whether named by option or environment; opens the same vault.
    vault = KeyVault.create(tmp_path / "v.fsv", secret, "web", params=FAST)
    vault.add(generate_key(), "run-1")
    from_env = VaultSecret.from_env({KEY_FILE_ENV: str(path)})
    assert len(KeyVault.open(tmp_path / "v.fsv", from_env).entries()) == 1


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660])
def test_key_file_readable_or_writable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = _key_file(tmp_path, mode)
    with pytest.raises(VaultError, match=rf"mode 0{mode:o}.*chmod 600") as caught:
        VaultSecret.from_env({}, key_file=str(path))
    assert "s3cret" not in str(caught.value)


def test_key_file_missing_empty_or_a_directory(tmp_path: Path) -> None:
    with pytest.raises(VaultError, match="cannot read vault key file"):
        VaultSecret.from_env({KEY_FILE_ENV: str(tmp_path / "nope")})
    with pytest.raises(VaultError, match="empty"):
        VaultSecret.from_env({}, key_file=str(_key_file(tmp_path, 0o600, b"\n")))
    (tmp_path / "d").mkdir(mode=0o700)
    with pytest.raises(VaultError, match="not a regular file"):
        VaultSecret.from_env({}, key_file=str(tmp_path / "d"))


def test_secret_precedence_and_the_missing_secret_message(tmp_path: Path) -> None:
    path = _key_file(tmp_path, 0o600)
    env = {PASSPHRASE_ENV: "from-env", KEY_FILE_ENV: str(path)}
    assert VaultSecret.from_env(env).reveal() == b"s3cret-key-file"
    assert VaultSecret.from_env({PASSPHRASE_ENV: "from-env"}).reveal() == b"from-env"
    assert VaultSecret.from_env({PASSPHRASE_ENV: "from-env"}).source == PASSPHRASE_ENV
    with pytest.raises(VaultError) as caught:
        VaultSecret.from_env({PASSPHRASE_ENV: ""})
    message = str(caught.value)
    assert PASSPHRASE_ENV in message and KEY_FILE_ENV in message
    assert "--vault-key-file" in message


def test_scrypt_parameters_are_checked() -> None:
    for bad in ({"n": 3}, {"n": 1}, {"r": 0}, {"p": 0}, {"p": 17}, {"n": 2**22, "r": 8}):
        with pytest.raises(ValueError):
            ScryptParams(**bad)


def test_a_change_that_cannot_be_saved_is_not_kept(vault: KeyVault, tmp_path: Path) -> None:
    first, second, third = (generate_key(Policy()) for _ in range(3))
    vault.add(first, "run1")
    vault.mark_active(first.fingerprint(), "run1")
    vault.add(second, "run2")
    vault.path = tmp_path / "gone" / "vault.fsv"  # the directory does not exist: saves fail
    with pytest.raises(VaultError):
        vault.add(third, "run3")
    with pytest.raises(VaultError):
        vault.mark_active(second.fingerprint(), "run2")
    assert vault.find(third.fingerprint()) is None
    current = vault.current()
    assert current is not None and current.fingerprint == first.fingerprint()
    assert [e.status for e in vault.entries()] == [KeyStatus.GENERATED, KeyStatus.ACTIVE]
