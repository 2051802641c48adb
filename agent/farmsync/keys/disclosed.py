"""Microsoft's list of publicly disclosed machine keys (hashed), and checking a key against it.

The list (microsoft/mstic RapidReleaseTI/MachineKeys.csv) holds, per disclosed pair, the
lower-case hex SHA-256 of each key's upper-case hex string; an undisclosed half is the hash
of the empty string. A copy ships as package data (``keys/data``, CC BY 4.0, attribution in
``keys/data/NOTICE.md``) so the audit works offline; newer lists can be added beside it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from farmsync.errors import InputError
from farmsync.keys.machinekey import MachineKey, is_auto_generate

Disclosure = Literal["validation", "decryption", "both"]

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_KEY_HEX = re.compile(r"[0-9A-Fa-f]{2,256}")
_EMPTY = hashlib.sha256(b"").hexdigest()
_HEADER = ["validationkey", "decryptionkey"]
BUNDLED_LIST_NAME = "ms-disclosed-machinekeys-sha256.csv"


def key_hash(value: str) -> str:
    """The list's hash of one key value: sha256 of its upper-case hex string."""
    return hashlib.sha256(value.strip().upper().encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class DisclosedKeys:
    validation_hashes: frozenset[str]
    decryption_hashes: frozenset[str]
    rows: int

    @classmethod
    def bundled(cls) -> DisclosedKeys:
        """Microsoft's list as shipped with farmsync (see ``keys/data/NOTICE.md``)."""
        data = resources.files("farmsync.keys").joinpath("data", BUNDLED_LIST_NAME)
        return cls.parse(data.read_text(encoding="utf-8-sig"), f"farmsync:{BUNDLED_LIST_NAME}")

    @classmethod
    def load(cls, path: str | Path) -> DisclosedKeys:
        source = str(path)
        text = _read_list(path)
        return cls.parse(text, source)

    @classmethod
    def parse(cls, text: str, source: str) -> DisclosedKeys:
        lines = text.splitlines()
        if not lines or [c.strip().lower() for c in lines[0].split(",")] != _HEADER:
            raise InputError(
                "not a disclosed-keys list (expected header 'validationKey, decryptionKey')",
                source=source,
                line=1,
            )
        validation: set[str] = set()
        decryption: set[str] = set()
        rows = 0
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            cells = [c.strip().lower() for c in line.split(",")]
            if len(cells) != 2 or not all(_SHA256_HEX.fullmatch(c) for c in cells):
                raise InputError("expected two SHA-256 hex digests", source=source, line=number)
            rows += 1
            if cells[0] != _EMPTY:
                validation.add(cells[0])
            if cells[1] != _EMPTY:
                decryption.add(cells[1])
        return cls(frozenset(validation), frozenset(decryption), rows)

    @classmethod
    def parse_plain(cls, text: str, source: str) -> DisclosedKeys:
        """Plain ``VALIDATIONKEY,DECRYPTIONKEY`` lines (hex; either half may be empty; ``#``
        starts a comment). Errors name the line only, never a value."""
        validation: set[str] = set()
        decryption: set[str] = set()
        rows = 0
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            cells = [c.strip() for c in line.split(",")]
            if (
                len(cells) != 2
                or not any(cells)
                or not all(_KEY_HEX.fullmatch(c) for c in cells if c)
            ):
                raise InputError(
                    "expected VALIDATIONKEY,DECRYPTIONKEY in hexadecimal",
                    source=source,
                    line=number,
                )
            rows += 1
            if cells[0]:
                validation.add(key_hash(cells[0]))
            if cells[1]:
                decryption.add(key_hash(cells[1]))
        return cls(frozenset(validation), frozenset(decryption), rows)

    @classmethod
    def load_any(cls, path: str | Path) -> DisclosedKeys:
        """A list in Microsoft's format (its header line first) or plain key lines."""
        source = str(path)
        text = _read_list(path)
        first = next((line for line in text.splitlines() if line.strip()), "")
        if [c.strip().lower() for c in first.split(",")] == _HEADER:
            return cls.parse(text, source)
        return cls.parse_plain(text, source)

    def merged(self, other: DisclosedKeys) -> DisclosedKeys:
        return DisclosedKeys(
            self.validation_hashes | other.validation_hashes,
            self.decryption_hashes | other.decryption_hashes,
            self.rows + other.rows,
        )

    def __len__(self) -> int:
        return self.rows

    def check(self, key: MachineKey) -> Disclosure | None:
        """Which of ``key``'s explicit keys appear in the list, if any."""
        v = not is_auto_generate(key.validation_key) and (
            key_hash(key.validation_key) in self.validation_hashes
        )
        d = not is_auto_generate(key.decryption_key) and (
            key_hash(key.decryption_key) in self.decryption_hashes
        )
        if v and d:
            return "both"
        if v:
            return "validation"
        if d:
            return "decryption"
        return None


def _read_list(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"cannot read disclosed-keys list: {exc.__class__.__name__}", source=str(path)
        ) from None
