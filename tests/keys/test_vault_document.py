"""The vault file as another writer could leave it: sealed right around a wrong document, and
replaced by another process while this one reads it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from farmsync.errors import VaultError
from farmsync.keys.generate import generate_key
from farmsync.keys.vault import _HEADER, FORMAT_VERSION, MAGIC, KeyVault, ScryptParams, VaultSecret

FAST = ScryptParams(n=2**4, r=8, p=1)
PASSPHRASE = "correct horse battery staple"
SECRET = VaultSecret.from_passphrase(PASSPHRASE)


def seal(path: Path, document: bytes) -> None:
    """Write ``document`` as a vault file, following the format (not farmsync's writer)."""
    salt, nonce = os.urandom(16), os.urandom(12)
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, FAST.log2_n, FAST.r, FAST.p, salt, nonce)
    sealed = AESGCM(FAST.derive(SECRET, salt)).encrypt(nonce, document, header)
    path.write_bytes(header + sealed)


def good_document(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "farm": "web",
        "created_at": "2026-11-27T00:00:00+00:00",
        "entries": [],
    }
    doc.update(changes)
    return doc


def test_the_sealer_writes_what_farmsync_reads(tmp_path: Path) -> None:
    # Without this, the refusals below could come from a wrongly sealed file.
    path = tmp_path / "vault.fsv"
    seal(path, json.dumps(good_document()).encode())
    vault = KeyVault.open(path, SECRET, farm="web")
    assert vault.entries() == [] and vault.farm == "web"


UNREADABLE = {
    "not-json": b"\x00\x01 not json",
    "not-utf8": b"\xff\xfe\xfa",
    "json-list": b"[]",
    "no-entries": json.dumps({k: v for k, v in good_document().items() if k != "entries"}),
    "newer-format": json.dumps(good_document(format=FORMAT_VERSION + 1)),
    "farm-not-a-string": json.dumps(good_document(farm=7)),
    "entry-without-key": json.dumps(good_document(entries=[{"fingerprint": "mk-00"}])),
    "entries-not-a-list": json.dumps(good_document(entries=3)),
}


@pytest.mark.parametrize("name", UNREADABLE)
def test_a_vault_that_decrypts_to_an_unreadable_document_is_refused(
    tmp_path: Path, name: str
) -> None:
    document = UNREADABLE[name]
    path = tmp_path / "vault.fsv"
    seal(path, document if isinstance(document, bytes) else document.encode())
    before = path.read_bytes()

    with pytest.raises(VaultError) as caught:
        KeyVault.open(path, SECRET)

    # One error for every way a vault cannot be read: nothing of the document is quoted.
    assert str(caught.value) == f"cannot open vault {path}: wrong passphrase or damaged file"
    assert caught.value.exit_code == 2
    assert path.read_bytes() == before  # refused, never "repaired"


WRITER = textwrap.dedent(
    """
    import select, sys
    from farmsync.keys.generate import generate_key
    from farmsync.keys.vault import KeyVault, VaultSecret

    path, passphrase = sys.argv[1], sys.argv[2]
    vault = KeyVault.open(path, VaultSecret.from_passphrase(passphrase))
    print("WRITING", flush=True)
    saves = 0
    while not select.select([sys.stdin], [], [], 0)[0]:  # until the reader closes stdin
        entry = vault.add(generate_key(), f"run-{saves}")
        vault.mark_active(entry.fingerprint, f"run-{saves}")
        saves += 1
    print(f"DONE {saves}", flush=True)
    """
)


def test_reading_the_vault_while_another_process_saves_it(tmp_path: Path) -> None:
    path = tmp_path / "vault.fsv"
    KeyVault.create(path, SECRET, "web", params=FAST).add(generate_key(), "run-first")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), PASSPHRASE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert writer.stdin is not None and writer.stdout is not None
    assert writer.stdout.readline().strip() == "WRITING"
    seen: list[int] = []
    # Every read overlaps the writer's loop of saves; read until the history has grown.
    while len(seen) < 100 or seen[-1] == seen[0]:
        assert writer.poll() is None
        vault = KeyVault.open(path, SECRET)  # never a torn or half-written file
        entries = vault.entries()
        assert len({e.fingerprint for e in entries}) == len(entries)
        assert sum(e.status.value == "active" for e in entries) <= 1
        seen.append(len(entries))
    out, err = writer.communicate(timeout=60)  # closes its stdin: the writer stops
    assert writer.returncode == 0, err
    saves = int(out.strip().removeprefix("DONE "))
    assert seen == sorted(seen)  # each read sees the history as of some complete save
    assert seen[-1] > seen[0]  # and the history grew while it was being read
    assert len(KeyVault.open(path, SECRET).entries()) == saves + 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vault.fsv"]  # no temp file left
