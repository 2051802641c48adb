"""Where the vault secret comes from on the command line: a key file, the environment, or,
on a terminal with neither configured, a prompt (once per run, no echo)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import click

from farmsync.errors import VaultError
from farmsync.keys.vault import KEY_FILE_ENV, PASSPHRASE_ENV, VaultSecret


def _configured(key_file: Path | None) -> bool:
    return bool(key_file or os.environ.get(KEY_FILE_ENV) or os.environ.get(PASSPHRASE_ENV))


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def will_prompt(key_file: Path | None) -> bool:
    """True when reading the vault secret would ask at the terminal."""
    return not _configured(key_file) and _interactive()


def prompt_secret(label: str, *, confirm: bool = False) -> VaultSecret:
    """Read a passphrase from the terminal without echo."""
    text = click.prompt(label, hide_input=True, confirmation_prompt=confirm, err=True)
    if not text:
        raise VaultError("an empty passphrase protects nothing")
    return VaultSecret.from_passphrase(text, "the passphrase typed at the prompt")


def vault_secret_source(key_file: Path | None, *, prompt: bool = True) -> Callable[[], VaultSecret]:
    """A function that returns the vault secret, asking for it at most once (never, without
    ``prompt``)."""
    cached: list[VaultSecret] = []

    def secret() -> VaultSecret:
        if cached:
            return cached[0]
        if prompt and will_prompt(key_file):
            found = prompt_secret("Vault passphrase")
        else:
            found = VaultSecret.from_env(os.environ, str(key_file) if key_file else None)
        cached.append(found)
        return found

    return secret
