"""The vault secret on the command line: a prompt on a terminal (once, no echo) when none is
configured, and ``farmsync vault rekey`` to change it."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from farmsync.keys.vault import KeyVault, VaultSecret
from tests.cli.clikit import CLI, PASSPHRASE, LocalFarm, output_of, run_cli

TYPED = "typed at the prompt 7f3a"


def converse(
    argv: Sequence[str], env: Mapping[str, str], answers: Sequence[tuple[str, str]]
) -> tuple[int, str]:
    """Run on a pseudo-terminal; answer each prompt (text to wait for, line to type)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        list(argv), stdin=slave, stdout=slave, stderr=slave, env=dict(env), close_fds=True
    )
    os.close(slave)
    screen = b""
    pending = list(answers)
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    break
                if not data:
                    break
                screen += data
            if pending and pending[0][0].encode() in screen.split(b"\n")[-1]:
                os.write(master, pending.pop(0)[1].encode() + b"\n")
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, screen.decode("utf-8", "replace")


def test_on_a_terminal_with_no_secret_the_passphrase_is_asked_once_without_echo(
    local_farm: LocalFarm,
) -> None:
    env = {k: v for k, v in local_farm.env().items() if k != "FARMSYNC_VAULT_PASSPHRASE"}
    argv = [*CLI, "rotate", "-i", str(local_farm.inventory)]

    # The first run creates the vault: a typo would seal it for good, so it asks twice.
    code, screen = converse(
        argv, env, [("New vault passphrase", TYPED), ("Repeat for confirmation", TYPED)]
    )
    assert code == 0, screen
    assert TYPED not in screen  # no echo

    code, screen = converse(argv, env, [("Vault passphrase", TYPED)])

    assert code == 0, screen
    assert screen.count("passphrase") == 1, screen  # asked once
    assert TYPED not in screen
    vault = KeyVault.open(local_farm.farm_dir / "vault.fsv", VaultSecret.from_passphrase(TYPED))
    assert len(vault.entries()) == 2 and vault.current() is not None


def test_without_a_terminal_no_secret_is_still_an_error(local_farm: LocalFarm) -> None:
    env = {k: v for k, v in local_farm.env().items() if k != "FARMSYNC_VAULT_PASSPHRASE"}
    result = local_farm.run("rotate", env=env)
    assert result.returncode == 2, output_of(result)
    assert "no vault secret" in result.stderr


def test_vault_rekey_to_a_key_file_then_back_to_a_passphrase(
    local_farm: LocalFarm, tmp_path: Path
) -> None:
    assert local_farm.run("rotate").returncode == 0
    key_file = tmp_path / "vault.key"
    key_file.write_bytes(os.urandom(32).hex().encode())
    key_file.chmod(0o600)
    vault_path = local_farm.farm_dir / "vault.fsv"
    before = KeyVault.open(vault_path, VaultSecret.from_passphrase(PASSPHRASE)).entries()

    rekeyed = run_cli(
        "vault",
        "rekey",
        "-i",
        str(local_farm.inventory),
        "--new-key-file",
        str(key_file),
        env=local_farm.env(),
    )

    assert rekeyed.returncode == 0, output_of(rekeyed)
    assert "the old secret no longer opens it" in rekeyed.stdout
    after = KeyVault.open(vault_path, VaultSecret.from_key_file(key_file)).entries()
    assert [e.fingerprint for e in after] == [e.fingerprint for e in before]
    old = local_farm.run("sync")  # the old passphrase is refused now
    assert old.returncode == 2 and "wrong passphrase" in old.stderr, output_of(old)
    with_file = local_farm.run("sync", env=local_farm.env(FARMSYNC_VAULT_KEY_FILE=str(key_file)))
    assert with_file.returncode == 0, output_of(with_file)

    env = {k: v for k, v in local_farm.env().items() if k != "FARMSYNC_VAULT_PASSPHRASE"}
    code, screen = converse(
        [
            *CLI,
            "vault",
            "rekey",
            "-i",
            str(local_farm.inventory),
            "--vault-key-file",
            str(key_file),
        ],
        env,
        [("New vault passphrase", TYPED), ("Repeat for confirmation", TYPED)],
    )
    assert code == 0, screen
    assert TYPED not in screen
    KeyVault.open(vault_path, VaultSecret.from_passphrase(TYPED))
